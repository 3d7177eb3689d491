"""The trained-model store: fine-tuned models cached as ``$CCBENCH_CACHE/runs/<run name>.safetensors``.

A run name says everything a model was trained from and how, so a model is trained once and found
again by ``ccbench run`` (another knob value, ``--train-only`` then a measuring run), by methods that
evaluate or start from another method's model, and by ``ccbench shift`` / ``transfer`` (rebuilding a
record's model). Files hold the ``state_dict`` and, in the header, ``consumed`` (the training budget
spent); they are written atomically and never unpickled.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ccbench.common import catalog
from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.common.method_meta import method_version
from ccbench.common.provenance import content_hash
from ccbench.common.safefile import load_tensors, save_tensors
from ccbench.common.specs import BudgetSpec, TaskSpec
from ccbench.data.image_data import cache_root
from ccbench.training.distributed import env_world

from .knobs import record_settings


def run_name(method: str, budget: BudgetSpec, task: TaskSpec, seed: int, work, config: dict) -> str:
    """Cache name of a trained model: everything it was trained from and how (the backbone, the
    training data's hash, the method config, the recipe and the modality's training settings, e.g.
    frozen word embeddings), and the method's and the task's versions where they are above 1 (a model
    trained by an earlier implementation, or on an earlier version's training split, is never reused: a text
    split's ``data_hash`` names its source file, not which of its examples train; names at version 1 are as
    before versions existed)."""
    ident = [config, work.recipe.model_dump(), work.train_settings, work.splits["train"].data_hash]
    version = catalog.registered_version(method, task.modality) or 1
    if version > 1:
        ident.append({"method_version": version})
    if task.version > 1:
        ident.append({"task_version": task.version})
    return f"{_run_prefix(method, budget.name, task.name, seed, work.sha256)}-{content_hash(ident)[:10]}"


def _run_prefix(method: str, budget: str, task: str, seed: int, backbone_sha256: str) -> str:
    """What every cached model of ``method`` on this tier, task, seed and backbone is named by."""
    return f"{budget}-{task}-{method}-s{seed}-{backbone_sha256[:12]}"


def store_dir() -> Path:
    """The folder of the cached trained models."""
    return cache_root() / "runs"


def trained_path(name: str) -> Path:
    """Where the trained model called ``name`` (a :func:`run_name`) is cached."""
    return store_dir() / f"{name}.safetensors"


def save_trained(model, consumed: dict, path: Path) -> None:
    """Cache a trained model: its ``state_dict`` as safetensors, ``consumed`` (the training budget
    spent) as JSON in the header; written atomically."""
    save_tensors(model.state_dict(), {"consumed": consumed}, path)


def load_trained(model, path: Path) -> dict:
    """Load the cached weights at ``path`` into ``model`` (never unpickles); returns ``consumed``."""
    fix = f"delete {path} and re-run to train it again"
    state, meta = load_tensors(path, fix)
    if not isinstance(meta.get("consumed"), dict):
        raise UserError(f"{path} has no 'consumed' budget in its header; {fix}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{path} does not fit this model ({str(err).splitlines()[0]}); {fix}") from None
    return meta["consumed"]


@contextmanager
def training_lock(path: Path):
    """Hold ``<cache>/locks/<name>.lock`` while this process trains (or loads) the model cached at ``path``: a
    second process that needs the same model (two sweep jobs run in parallel from one source the cache lacks)
    waits, then finds the model saved and reuses it instead of training it too. An OS file lock (``filelock``):
    released when the holder ends, killed or not. No lock under torchrun, whose ranks train together."""
    from filelock import FileLock, Timeout

    if env_world() > 1:     # torchrun's ranks train one model together: a lock would leave rank 1 waiting on rank 0
        yield
        return
    locks = cache_root() / "locks"   # beside, not in, the models' folder: a lock file is no model
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks / f"{path.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"another process is training {path.name}: waiting for it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class MissingTrainedModel(UserError):
    """A fine-tuned model (``method`` built with ``config``, same tier, task and seed) the store does not hold:
    the model another method starts from (``ccbench run`` trains it first) or a record's own model
    (``ccbench shift`` and ``ccbench transfer`` train it again). ``model``: the record's model as built,
    untrained (where a record's own model is missing), for checks that need its structure only."""

    def __init__(self, message: str, method: str, config: dict, model=None):
        super().__init__(message)
        self.method, self.config, self.model = method, dict(config), model


def _fine_tuned_backbone(method: str, work, tier: BudgetSpec, task: TaskSpec, seed: int):
    """The backbone of ``method``'s fine-tuned model on this task (default config), and its run name:
    the starting point of a method that transforms a fine-tuned model (``starts_from``)."""
    model = catalog.methods().get(method).build(work.new_backbone())
    name = run_name(method, tier, task, seed, work, model.method_config())
    path = trained_path(name)
    if not path.exists():
        raise MissingTrainedModel(f"this method starts from {method!r}'s fine-tuned model, which is not in the cache "
                                  f"yet: run `ccbench run --method {method} --task {task.name} --budget {tier.name}` "
                                  "first", method, {})
    load_trained(model, path)
    say(f"starting from {method}'s fine-tuned model {path.name}")
    return model.backbone, name


@dataclass
class BuiltModel:
    """An untrained model and where its trained weights live: ``source`` is the method whose trained
    model it evaluates (``evaluates_checkpoint_of``, else None), ``start_run`` the run name of the
    fine-tuned model it starts from (``starts_from``, else None), ``settings`` its build settings."""

    model: object
    source: str | None
    run_name: str
    path: Path
    start_run: str | None
    settings: dict = field(default_factory=dict)   # the build settings it was made with (knob, compute_target)


def build_for_run(method: str, meta: dict, config: dict, work, tier: BudgetSpec, task: TaskSpec,
                  seed: int) -> BuiltModel:
    """``method``'s untrained model with ``config`` on the workload's backbone (or on the fine-tuned
    backbone it ``starts_from``), and where its trained weights live."""
    methods = catalog.methods()
    starts_from = meta.get("starts_from", {}).get(work.modality)
    backbone, start_run = (_fine_tuned_backbone(starts_from, work, tier, task, seed) if starts_from
                           else (work.new_backbone(), None))
    try:
        model = methods.get(method).build(backbone, **config)
    except ValueError as err:  # a knob value that needs retraining, out of range for this backbone
        if not config:
            raise
        settings = ", ".join(f"{k}={v}" for k, v in config.items())
        raise UserError(f"{method} cannot be built with {settings}: {err}") from None
    source = meta.get("evaluates_checkpoint_of")
    trainer_config = (methods.get(source).build(work.new_backbone(), **config).method_config()
                      if source else model.method_config())
    if "compute_target" in config and "compute_target" not in trainer_config:
        # a per-target grid model is named by its target even where the method's config leaves it out
        trainer_config = {**trainer_config, "compute_target": config["compute_target"]}
    if start_run:
        trainer_config = {**trainer_config, "starts_from": start_run}
    name = run_name(source or method, tier, task, seed, work, trainer_config)
    return BuiltModel(model, source, name, trained_path(name), start_run, dict(config))


def rebuild_record_model(record: dict, meta: dict, work, tier: BudgetSpec, task: TaskSpec) -> BuiltModel:
    """The trained model that wrote the run ``record`` (``meta``: its method's metadata), loaded from the
    store with the record's knob set; raises :class:`MissingTrainedModel` (the model to train and its
    config) when it is not cached."""
    knob = record["method"]["knob"]
    config = record_settings(meta["knob"], record["method"])
    method = record["method"]["name"]
    written, current = record["method"].get("version", 1), method_version(meta, task.modality)
    if written != current:   # the current implementation cannot reproduce it: no model to rebuild
        raise UserError(f"record {record['id'][:12]} was written by {method} v{written} and {method} is v{current} "
                        f"on {task.modality} now: its model cannot be rebuilt; re-run it with `ccbench run --method "
                        f"{method} --task {task.name} --budget {tier.name}`")
    measured_on = record["task"].get("version") or 1
    if measured_on != task.version:
        raise UserError(f"record {record['id'][:12]} was measured on {task.name} v{measured_on} and the "
                        f"task is v{task.version} now (another training or calibration split): its model cannot be "
                        f"rebuilt; re-run it with `ccbench run --method {method} --task {task.name} --budget {tier.name}`")
    built = build_for_run(method, meta, config, work, tier, task, record["seed"])
    if not built.path.exists():
        knob_arg = (f" --knob {knob['name']}={knob['value']}" if meta["knob"].get("needs_retraining") and config else
                    f" --grid {100 * config['compute_target']:g}" if "compute_target" in config else "")
        raise MissingTrainedModel(
            f"the trained model of record {record['id'][:12]} is not in the cache ({built.path.name}): run "
            f"`ccbench run --method {built.source or method} --task {task.name} --budget {tier.name}{knob_arg} "
            f"--seed {record['seed']} --train-only` first", built.source or method,
            built.settings if built.source else config, model=built.model)
    load_trained(built.model, built.path)
    if knob["value"] is not None:
        built.model.set_knob(knob["value"])
    return built
