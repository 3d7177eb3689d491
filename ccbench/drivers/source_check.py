"""A model one method evaluates or starts from is checked against the records its own method wrote.

A method that evaluates another method's fine-tuned model (``evaluates_checkpoint_of``: avit-masked, patience,
ToMe) measures that very model: its record pairs with the other method's records (same decisions, the same
eval samples), so the model must be the one that wrote them. :func:`check_source_model` finds the run
records under the results folder written by the cached model (same tier, task, seed, backbone and config) and
checks its predictions against the oldest (:func:`ccbench.drivers.from_record.check_predictions`). A model
trained again on another machine is not bit-for-bit the same (CPU kernels differ: A-ViT's seed-1 model
retrained here agreed on 98.8 % of its record's predictions), so such a pair is refused. A method that only
starts from another's model (``starts_from``: MoEfication on text) is warned, not refused: it trains from
a model of the same recipe and seed.
"""
from __future__ import annotations

from pathlib import Path

from ccbench.common import catalog
from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.common.method_meta import method_version
from ccbench.reporting.records import load_records
from ccbench.training.knobs import record_settings
from ccbench.training.model_store import build_for_run


def records_of_model(ctx, method: str, trained: Path) -> list[tuple[Path, dict]]:
    """The run records under ``ctx.results_dir`` written by ``method``'s model cached at ``trained`` (same tier,
    task and version, seed, backbone, and the config that names that file), oldest first."""
    meta = catalog.methods().metadata(method)
    version = method_version(meta, ctx.task.modality)
    out = []
    for path, record in load_records(ctx.results_dir):
        m = record["method"]
        if (m["name"], record["task"]["name"], record["seed"], record["budget"]["name"]) != (
                method, ctx.task.name, ctx.seed, ctx.tier.name):
            continue
        if (record["backbone"]["sha256"] != ctx.work.sha256 or m.get("version", 1) != version
                or (record["task"].get("version") or 1) != ctx.task.version):
            continue
        try:
            built = build_for_run(method, meta, record_settings(meta["knob"], m), ctx.work, ctx.tier, ctx.task,
                                  ctx.seed)
        except UserError:
            continue
        if built.path == trained:
            out.append((path, record))
    return sorted(out, key=lambda pr: pr[1].get("date", ""))


def check_source_model(ctx, method: str, trained: Path, strict: bool = True) -> str | None:
    """Check ``method``'s model cached at ``trained`` against the oldest run record it wrote
    (:func:`records_of_model`); returns that record's id (None when the results folder holds none). A model
    whose predictions differ raises :class:`UserError` when ``strict``, else is reported in one line."""
    from .from_record import record_model_on, verify_record_model

    found = records_of_model(ctx, method, trained)
    if not found:
        say(f"no record of {method}'s model {trained.name} under the results folder to check it against")
        return None
    path, record = found[0]
    rm = record_model_on(ctx.work, path, record, catalog.methods().metadata(method), ctx.tier, ctx.task)
    try:
        _, agreement = verify_record_model(rm, ctx.progress)
    except UserError as err:
        if strict:
            raise UserError(f"{method}'s cached model is not the one that wrote its record ({err}); it was "
                            f"trained again on another machine: measure {method} and the methods that evaluate "
                            f"its model on one machine (delete {trained} to train it again)") from None
        say(f"warning: {method}'s model was trained again and is not the one that wrote its record ({err}); "
            f"this run starts from a model of the same recipe and seed")
        return record["id"]
    say(f"{method}'s model agrees with its record {record['id'][:12]} on {agreement:.1%} of its predictions")
    return record["id"]
