"""Data-parallel training under ``torchrun --nproc_per_node N -m ccbench run|pretrain ...``.

torchrun starts N processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`context` joins them
in one process group (gloo on CPU, NCCL on CUDA) the first time :func:`ccbench.training.train.train` runs. Then:

* the budget counts **global** samples: every step consumes one global batch of ``recipe.batch_size``
  samples, drawn and augmented exactly as a single process would (same permutation, same augmentation
  generator); rank r trains on rows ``r, r+N, r+2N, ...`` of it (its shard, ``batch_size / N`` samples);
* the model is wrapped in ``DistributedDataParallel``, which averages the gradients over the ranks, so
  the update equals one process's on the whole global batch (a loss that is a mean over samples);
* rank 0 alone writes the resume state and shows progress; when training ends every other rank leaves
  (exit code 0) and rank 0 goes on alone: it evaluates and writes the record, which says how many
  processes trained the model (``training_processes``).

One training per torchrun command: a command that would train twice (a missing backbone pretrained
before fine-tuning, several retraining knob values) is refused on its second training, after the first
one's result is saved; rerun it and the saved result is reused. A loss must run the model through its
call (``m(x)``), which DDP wraps; other attributes reach the module itself (``m.loss``), so a loss that runs
parts of the model one by one (feature distillation in pretraining) is refused under torchrun. Outside
torchrun nothing changes.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

_state = {"trained": False, "processes": None}


@dataclass
class DistContext:
    """This process's place in training: ``rank`` of ``world`` processes (1: not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """True on the process that writes states, shows progress and goes on after training."""
        return self.rank == 0

    def shard(self, batch):
        """This rank's rows of a global batch ``[B, ...]`` (rows ``rank::world``); the batch itself when
        not distributed."""
        return batch[self.rank::self.world] if self.active else batch

    def wrap(self, model, device: str):
        """``model`` as a DistributedDataParallel module (unused parameters allowed: conditional
        computation skips some per batch), or ``model`` when not distributed."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [int(os.environ.get("LOCAL_RANK", 0))] if device.startswith("cuda") else None
        return _ModuleView(DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True))

    def finish(self) -> None:
        """End of a training: remember how many processes trained; leave the process group; every
        rank but 0 exits here (status 0)."""
        _state["processes"] = self.world
        if not self.active:
            return
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
        if not self.main:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # nothing of the command after training is this rank's (evaluation, records)


class _ModuleView:
    """A DDP-wrapped model as the training loss sees it: calls go through DDP (gradient sync), every
    other attribute (``loss``, ``backbone``, ...) is the wrapped module's."""

    def __init__(self, ddp):
        self.ddp = ddp

    def __call__(self, *args, **kwargs):
        return self.ddp(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.ddp.module, name)


def env_world() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def context(device: str, batch_size: int) -> DistContext:
    """The :class:`DistContext` of a training about to start, joining the process group under torchrun
    (gloo on CPU, NCCL on CUDA). A global ``batch_size`` that the processes cannot split evenly, or a
    second training in one torchrun command, raises :class:`ccbench.common.errors.UserError`."""
    from ccbench.common.errors import UserError

    world = env_world()
    if world <= 1:
        _state["trained"] = True
        return DistContext()
    if _state["trained"]:
        raise UserError("under torchrun a command trains once; its first training is saved: run the same "
                        "command again (e.g. pretrain the backbone first with `torchrun ... -m ccbench pretrain`, "
                        "or give one retraining knob value per command)")
    if batch_size % world:
        raise UserError(f"the global batch of {batch_size} samples does not split over {world} processes: "
                        f"use a --nproc_per_node that divides {batch_size}")
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    _state["trained"] = True
    return DistContext(dist.get_rank(), dist.get_world_size())


def training_processes() -> int | None:
    """How many processes ran the last training of this process (None: none ran here, e.g. the model
    came from the cache)."""
    return _state["processes"]


def reset_training_stamp() -> None:
    """Forget the trainings of earlier commands run in this process (``cli.main`` calls this first)."""
    _state["trained"], _state["processes"] = False, None


def leave_unless_rank_zero() -> None:
    """Under torchrun, end every process but rank 0 here (status 0): called before a record is written,
    so that a command whose model came from the cache (no training, so no rank left after it) still
    writes its record once."""
    if env_world() > 1 and int(os.environ.get("RANK", "0")) != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def stamp_for_commit(record: dict) -> dict:
    """``record`` ready to be committed from this process: under torchrun every rank but 0 ends here
    (:func:`leave_unless_rank_zero`), and a record written after a training in this process says how
    many processes ran it (``training_processes``: 1, or torchrun's world size). Drivers call this just
    before ``records.write_record`` / ``commit_record``, which know nothing of processes."""
    leave_unless_rank_zero()
    processes = training_processes()
    if processes is not None and "training_processes" not in record:
        record = {**record, "training_processes": processes}
    return record
