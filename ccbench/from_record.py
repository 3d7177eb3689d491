"""A result record back to its trained model: what ``ccbench shift`` and ``ccbench transfer`` start from.

The record names the method, task, budget, seed, knob and backbone; the trained weights are the cached
fine-tuned model of that run (``$CCBENCH_CACHE/runs``). The rebuilt model is checked against the record:
same backbone hash, and the same predictions on the record's eval split (:func:`check_predictions`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import catalog
from .errors import UserError
from .messages import say
from .record_schema import NO_KNOB
from .records import find_record, load_samples  # noqa: F401  (find_record: its historical import path)
from .specs import BudgetSpec, TaskSpec

PREDICTION_AGREEMENT_MIN = 0.999  # below this the cached model is not the one that wrote the record


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


def record_backbone_path(record: dict) -> str | None:
    """The checkpoint of an image record's own backbone, found by its weights hash among the published
    and cached checkpoints (the tier's current recipe may have moved on since); ``None`` for text
    (the encoder is named, not hashed into a file)."""
    from .pretrain import find_backbone_by_hash

    if record["task"].get("modality", "image") != "image":
        return None
    sha = record["backbone"]["sha256"]
    path = find_backbone_by_hash(sha)
    if path is None:
        raise UserError(f"record {record['id'][:12]}'s backbone {sha[:12]} is neither published in checkpoints/ "
                        f"nor in the cache; restore its checkpoint (git history) or pretrain it")
    return str(path)


def load_record_model(record_id: str, data_dir: str | None = None, results_dir=None,
                      progress: bool = True) -> RecordModel:
    """Rebuild the trained model of the run record ``record_id`` from the cache (see module docstring)."""
    from .runner import build_for_run, _load_trained
    from .workload import make_workload

    path, record = find_record(record_id, results_dir)
    method = record["method"]["name"]
    meta = catalog.methods().metadata(method)
    task = catalog.tasks().get(record["task"]["name"])
    tier = catalog.budgets().get(record["budget"]["name"])
    seed = record["seed"]
    if tier.threads:
        torch.set_num_threads(tier.threads)
    torch.manual_seed(seed)
    work = make_workload(task, tier, data_dir, seed, record_backbone_path(record), progress)
    if work.sha256 != record["backbone"]["sha256"]:
        raise UserError(f"record {record['id'][:12]} was measured on backbone {record['backbone']['sha256'][:12]}, "
                        f"but this checkout resolves {work.sha256[:12]}: use the checkout that wrote the record")
    knob = record["method"]["knob"]
    config = {knob["name"]: knob["value"]} if meta["knob"].get("needs_retraining") and knob["name"] != NO_KNOB else {}
    model, source, run_name, trained_path, _ = build_for_run(method, meta, config, work, tier, task, seed)
    if not trained_path.exists():
        knob_arg = f" --knob {knob['name']}={knob['value']}" if config else ""
        raise UserError(f"the trained model of record {record['id'][:12]} is not in the cache ({trained_path.name}): "
                        f"run `ccbench run --method {source or method} --task {task.name} --budget {tier.name}"
                        f"{knob_arg} --train-only` first")
    _load_trained(model, trained_path)
    if knob["value"] is not None:
        model.set_knob(knob["value"])
    model.to(tier.device).eval()
    say(f"record {record['id'][:12]}: {method} on {task.name} ({tier.name}), model {trained_path.name}")
    return RecordModel(model, work, tier, task, meta, record, path, trained_path.name)


def check_predictions(rm: RecordModel, preds: torch.Tensor, ids: list[str]) -> float:
    """Share of the record's eval samples on which ``preds [S]`` (the rebuilt model's) equal the stored
    predictions; raises when below :data:`PREDICTION_AGREEMENT_MIN`."""
    stored = load_samples(rm.record_path)
    if list(stored["ids"]) != list(ids):
        raise UserError(f"record {rm.record['id'][:12]}: the eval split's ids differ from the record's (other data?)")
    mine = preds.numpy()
    theirs = stored["pred"]
    agree = float(np.isclose(mine.astype(np.float64), theirs.astype(np.float64), atol=1e-2).mean()
                  if theirs.dtype.kind == "f" else (mine == theirs).mean())
    if agree < PREDICTION_AGREEMENT_MIN:
        raise UserError(f"record {rm.record['id'][:12]}: the cached model {rm.trained_file} agrees with the record's "
                        f"predictions on only {agree:.1%} of samples; it is not the model that wrote the record")
    return round(agree, 6)
