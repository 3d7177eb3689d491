"""A result record back to its trained model: what ``ccbench shift`` and ``ccbench transfer`` start from.

The record names the method, task, budget, seed, knob and backbone; the trained weights are the cached
fine-tuned model of that run (``$CCBENCH_CACHE/runs``). The rebuilt model is checked against the record:
same backbone hash, and the same predictions on the record's eval split (:func:`check_predictions`).
Where the cache lacks the model (it was trained on another machine), ``train_missing`` trains it again from
the record's recipe; such a copy agrees with the record on most but not all predictions, and a shift or
transfer that accepts it (``allow_retrained``) says so in its record (``source.trained_again``). A copy trained on
another CPU model than the record's drifts further; it is accepted only when asked (``accept_other_cpu_copy``) as
another draw of the record's recipe, and its record names both CPU models (``source.other_cpu``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ccbench.common import catalog, provenance
from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.common.specs import BudgetSpec, TaskSpec
from ccbench.reporting.records import find_record, load_samples  # noqa: F401  (find_record: its historical import path)

PREDICTION_AGREEMENT_MIN = 0.999  # below this the cached model is not the one that wrote the record
# A model trained again from the record's recipe (method, config, tier, task, seed, backbone) on another machine is
# not bit-for-bit the record's: A-ViT's Imagenette seed-1 model retrained agreed on 98.8 %. Two fine-tuning seeds of
# one recipe agree far less (Imagenette 75-91 %, SST-2/MRPC 56-97 %; the most, MRPC early-exit at 25 %: 96.6 %), so
# a copy below this is another model, not the record's trained again.
RETRAINED_AGREEMENT_MIN = 0.98
# Trained again on another CPU model (other kernels, other rounding), a copy drifts further: the ranking's SST-2
# EViT and MoEfication models (AMD EPYC) trained again on an Intel Xeon agreed on 94.4-96.1 %, and pinning the
# kernels to AVX2 (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, DNNL_MAX_CPU_ISA) moved EViT seed 0 only from 96.1 to
# 97.0 %. Such a copy is another draw of the record's recipe (same method, config, data, seed, backbone), not the
# record's model: a caller may accept it as that (``accept_other_cpu_copy``; the record then says so in
# ``source.other_cpu``) when it agrees on at least this share and its score lies in the record's 95 % interval.
OTHER_CPU_AGREEMENT_MIN = 0.90


@dataclass
class RecordModel:
    """A record's trained model (eval mode, knob set), its workload and specs, and provenance."""

    model: torch.nn.Module
    work: object
    tier: BudgetSpec
    task: TaskSpec
    meta: dict
    record: dict
    record_path: Path
    trained_file: str
    other_cpu: dict | None = None   # set when accepted as a copy trained on another CPU model (see verify_record_model)


def record_backbone_path(record: dict) -> str | None:
    """Where a record's own backbone loads from. Image: the checkpoint found by its weights hash among the
    published and cached checkpoints (the tier's current recipe may have moved on since). Text: the encoder
    the record names (``backbone.file``: the tier's short name, an HF hub id or a folder, as ``ccbench run
    --backbone`` was given it; loaded from safetensors only). The caller checks the loaded weights' hash
    against the record's."""
    from ccbench.training.pretrain import find_backbone_by_hash

    if record["task"].get("modality", "image") != "image":
        return record["backbone"].get("file")
    sha = record["backbone"]["sha256"]
    path = find_backbone_by_hash(sha)
    if path is None:
        raise UserError(f"record {record['id'][:12]}'s backbone {sha[:12]} is neither published in checkpoints/ "
                        f"nor in the cache; restore its checkpoint (git history) or pretrain it")
    return str(path)


def load_record_model(record_id: str, data_dir: str | None = None, results_dir=None,
                      progress: bool = True, train_missing: bool = False,
                      check: Callable[[TaskSpec, BudgetSpec, torch.nn.Module], None] | None = None) -> RecordModel:
    """Rebuild the trained model of the run record ``record_id`` from the cache (see module docstring); when the
    cache lacks it, train it again from the record's recipe if ``train_missing``, else raise
    :class:`~ccbench.training.model_store.MissingTrainedModel`. ``check(task, tier, model)`` (the record's
    task and tier, its model's structure) raises when the caller cannot use this record: it runs before
    anything is trained."""
    from ccbench.training.model_store import MissingTrainedModel
    from ccbench.training.workload import make_workload

    path, record = find_record(record_id, results_dir)
    method = record["method"]["name"]
    meta = catalog.methods().metadata(method)
    task = catalog.tasks().get(record["task"]["name"])
    tier = catalog.budgets().get(record["budget"]["name"])
    if tier.threads:
        torch.set_num_threads(tier.threads)
    torch.manual_seed(record["seed"])
    backbone = record_backbone_path(record)
    work = make_workload(task, tier, data_dir, record["seed"], backbone, progress)
    if work.sha256 != record["backbone"]["sha256"]:
        where = (f"encoder {backbone!r} loads weights {work.sha256[:12]} here: the model it names has changed since"
                 if task.modality == "text" else
                 f"this checkout resolves {work.sha256[:12]}: use the checkout that wrote the record")
        raise UserError(f"record {record['id'][:12]} was measured on backbone {record['backbone']['sha256'][:12]}, "
                        f"but {where}")
    try:
        rm = record_model_on(work, path, record, meta, tier, task)
    except MissingTrainedModel as missing:
        if not train_missing:
            raise
        if check is not None and missing.model is not None:
            check(task, tier, missing.model)
        from ccbench.training.run_context import RunContext

        from .runner import train_cached_model

        say(f"record {record['id'][:12]}'s model is not in the cache (trained on another machine?): training it "
            f"again from the record's recipe")
        ctx = RunContext(task, tier, record["seed"], work, results_dir, progress, resume=True)
        train_cached_model(ctx, missing.method, missing.config)
        rm = record_model_on(work, path, record, meta, tier, task)
    if check is not None:
        check(task, tier, rm.model)
    say(f"record {record['id'][:12]}: {method} on {task.name} ({tier.name}), model {rm.trained_file}")
    return rm


def record_model_on(work, path: Path, record: dict, meta: dict, tier: BudgetSpec, task: TaskSpec) -> RecordModel:
    """The run ``record``'s (at ``path``) trained model rebuilt from the store on an already made workload
    ``work``, in eval mode on the tier's device."""
    from ccbench.training.model_store import rebuild_record_model

    built = rebuild_record_model(record, meta, work, tier, task)
    built.model.to(tier.device).eval()
    return RecordModel(built.model, work, tier, task, meta, record, path, built.path.name)


def verify_record_model(rm: RecordModel, progress: bool = True, allow_retrained: bool = False,
                        accept_other_cpu_copy: bool = False):
    """Evaluate ``rm``'s model on its record's eval split and check its predictions against the record's
    (:func:`check_predictions`; with ``allow_retrained`` a copy trained again from the record's recipe passes
    too, and with ``accept_other_cpu_copy`` also a copy trained on another CPU model than the record's, see
    :data:`OTHER_CPU_AGREEMENT_MIN`: ``rm.other_cpu`` then says so); returns the evaluation and the agreement
    (a share)."""
    from ccbench.measurement.evaluate import evaluate_split

    say(f"checking the model against its record on {rm.task.name}/{rm.task.eval_split}")
    ev = evaluate_split(rm.model, rm.work, rm.work.splits["eval"], rm.tier.eval_batch_size, rm.tier.device,
                        progress)
    other_cpu = allow_retrained and accept_other_cpu_copy and _other_cpu(rm.record) is not None
    agreement = check_predictions(rm, ev.predictions, ev.ids,
                                  OTHER_CPU_AGREEMENT_MIN if other_cpu else
                                  RETRAINED_AGREEMENT_MIN if allow_retrained else PREDICTION_AGREEMENT_MIN)
    if other_cpu and agreement < RETRAINED_AGREEMENT_MIN:
        rm.other_cpu = _accept_other_cpu_copy(rm, ev, agreement)
    if agreement < PREDICTION_AGREEMENT_MIN:
        say(f"warning: the cached model {rm.trained_file} is not the one that wrote record {rm.record['id'][:12]} "
            f"but a copy trained again from its recipe (it agrees on {agreement:.1%} of the record's predictions); "
            f"every score of this record is the copy's own, and its record says so (source.trained_again)")
    return ev, agreement


def _other_cpu(record: dict) -> tuple[str, str] | None:
    """``(the record's CPU model, this machine's)`` when they differ, else None (also when the record names none)."""
    theirs, here = (record.get("hardware") or {}).get("cpu"), provenance.cpu_model()
    return (theirs, here) if theirs and theirs != here else None


def _accept_other_cpu_copy(rm: RecordModel, ev, agreement: float) -> dict:
    """``source.other_cpu`` of a copy trained on another CPU model than its record's (the record's CPU, this
    one's, the copy's score on the record's eval split): raises :class:`UserError` unless that score lies in
    the record's 95 % interval of its main score."""
    theirs, here = _other_cpu(rm.record)
    score = float(rm.work.scores(ev.logits, ev.labels, rm.record["seed"])["main_score"]["value"])
    ci = ((rm.record.get("metrics") or {}).get("main_score") or {}).get("ci95")
    has_ci = isinstance(ci, list) and len(ci) == 2
    if not (has_ci and ci[0] <= score <= ci[1]):
        where = (f"outside the record's 95 % interval [{ci[0]:.2f}, {ci[1]:.2f}]" if has_ci
                 else "and the record holds no 95 % interval to compare it with")
        raise UserError(f"record {rm.record['id'][:12]}: the copy trained here on {here!r} (the record on {theirs!r}) "
                        f"agrees on {agreement:.1%} of its predictions but scores {score:.2f}, {where}: it is not "
                        f"accepted as another draw of the record's recipe; measure on a machine like the record's")
    say(f"warning: record {rm.record['id'][:12]} was trained on {theirs!r}, this copy on {here!r}: it agrees on "
        f"{agreement:.1%} of the record's predictions and scores {score:.2f} (the record: "
        f"{rm.record['metrics']['main_score']['value']:.2f}); accepted as another draw of the recipe "
        f"(--accept-other-cpu-copy), and its record says so (source.other_cpu)")
    return {"record_cpu": theirs, "copy_cpu": here, "copy_score": round(score, 3)}


def trained_again(agreement: float) -> bool:
    """Whether a model that agrees with its record on ``agreement`` (a share) of its predictions is a copy
    trained again from the record's recipe rather than the model that wrote it."""
    return agreement < PREDICTION_AGREEMENT_MIN


def source_fields(rm: RecordModel, agreement: float) -> dict:
    """A shift or transfer record's ``source``: the run record it starts from (lineage)."""
    return {"record_id": rm.record["id"], "task": rm.task.name, "task_version": rm.task.version,
            "backbone_sha256": rm.record["backbone"]["sha256"], "trained_model": rm.trained_file,
            "prediction_agreement_with_record": agreement, "trained_again": trained_again(agreement),
            **({"other_cpu": rm.other_cpu} if rm.other_cpu else {})}


def method_fields(rm: RecordModel, paper: bool = False) -> dict:
    """A shift or transfer record's ``method``: the source run's method, its version, config, knob and compute-grid
    targets (``grid``, when the run was calibrated to the grid: the derived records of its seeds then share
    one row although each seed calibrated its own knob value), and the method's paper when ``paper``."""
    m = rm.record["method"]
    return {"name": m["name"], "family": rm.meta["family"], "version": m.get("version", 1),
            **({"paper": rm.meta["paper"]} if paper else {}),
            "config": m["config"], "knob": m["knob"], **({"grid": m["grid"]} if m.get("grid") else {})}


def _retrain_advice(record: dict) -> str:
    """What to do about a cached model that is not ``record``'s nor a faithful copy: train it again, unless the record
    was trained on another CPU model (then a copy trained here differs as much again: other kernels, other rounding)."""
    other = _other_cpu(record)
    if other:
        return (f"the record was trained on {other[0]!r} and this machine is {other[1]!r}; a copy trained again on "
                f"another CPU model can differ more, and training it again here gives the same copy: measure on a "
                f"machine like the record's, or accept the copy as another draw of the record's recipe with "
                f"--accept-other-cpu-copy (it must agree on >= {OTHER_CPU_AGREEMENT_MIN:.0%} and score within the "
                f"record's 95 % interval)")
    return "delete it from the cache to train it again"


def check_predictions(rm: RecordModel, preds: torch.Tensor, ids: list[str],
                      minimum: float = PREDICTION_AGREEMENT_MIN) -> float:
    """Share of the record's eval samples on which ``preds [S]`` (the rebuilt model's) equal the stored
    predictions; raises when below ``minimum`` (a share)."""
    stored = load_samples(rm.record_path)
    if list(stored["ids"]) != list(ids):
        raise UserError(f"record {rm.record['id'][:12]}: the eval split's ids differ from the record's (other data?)")
    mine = preds.numpy()
    theirs = stored["pred"]
    agree = float(np.isclose(mine.astype(np.float64), theirs.astype(np.float64), atol=1e-2).mean()
                  if theirs.dtype.kind == "f" else (mine == theirs).mean())
    if agree < minimum:
        raise UserError(f"record {rm.record['id'][:12]}: the cached model {rm.trained_file} agrees with the record's "
                        f"predictions on only {agree:.1%} of samples; it is not the model that wrote the record"
                        f"{_nor_a_copy(rm.record, minimum)}")
    return round(agree, 6)


def _nor_a_copy(record: dict, minimum: float) -> str:
    """The end of :func:`check_predictions`' refusal: which kind of copy the model is not either, by the bar
    ``minimum`` it was held to, and what to do ('' when only the record's own model was accepted)."""
    if minimum >= PREDICTION_AGREEMENT_MIN:
        return ""
    if minimum >= RETRAINED_AGREEMENT_MIN:
        return (f" nor a copy trained again from its recipe (those agree on >= {RETRAINED_AGREEMENT_MIN:.0%}): "
                f"{_retrain_advice(record)}")
    return (f" nor a copy trained again on another CPU model (accepted from {OTHER_CPU_AGREEMENT_MIN:.0%}): "
            f"measure on a machine like the record's")
