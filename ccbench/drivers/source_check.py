"""A source model trained again is checked against the records it wrote before.

A method that evaluates or starts from another method's fine-tuned model (``evaluates_checkpoint_of``,
``starts_from``) finds it in the trained-model store; on a fresh machine ``ccbench run`` trains it first
(same tier, task, seed and config). When the results folder already holds a run record of that source
model, the model trained now must be the one that wrote it (:func:`ccbench.drivers.from_record.check_predictions`:
the same predictions on the record's eval split), or the pair (say A-ViT and its masked execution) would
compare two different models.
"""
from __future__ import annotations

from pathlib import Path

from ccbench.common import catalog
from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.common.method_meta import method_version
from ccbench.reporting.records import load_records
from ccbench.training.knobs import record_settings
from ccbench.training.model_store import build_for_run, rebuild_record_model


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


def check_retrained_source(ctx, method: str, trained: Path) -> str | None:
    """Check ``method``'s model just trained into ``trained`` against the first run record it wrote before
    (:func:`records_of_model`); returns that record's id (None when there is none to check against) and raises
    :class:`UserError` when its predictions differ from the record's."""
    from .from_record import RecordModel, verify_record_model

    found = records_of_model(ctx, method, trained)
    if not found:
        say(f"no earlier record of {method}'s model {trained.name} under the results folder to check it against")
        return None
    path, record = found[0]
    meta = catalog.methods().metadata(method)
    built = rebuild_record_model(record, meta, ctx.work, ctx.tier, ctx.task)
    built.model.to(ctx.tier.device).eval()
    rm = RecordModel(built.model, ctx.work, ctx.tier, ctx.task, meta, record, path, trained.name)
    try:
        _, agreement = verify_record_model(rm, ctx.progress)
    except UserError as err:
        raise UserError(f"{method}'s model was trained again on this machine and differs from the one that wrote "
                        f"its record ({err}); delete {trained} and measure both methods again on one machine") from None
    say(f"{method}'s retrained model agrees with record {record['id'][:12]} on {agreement:.1%} of its predictions")
    return record["id"]
