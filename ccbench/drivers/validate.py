"""``ccbench validate``: the leaderboard's gate, one line per check with its figure.

The target is a record id (prefix), a record file or a results folder; the checks are
:mod:`ccbench.reporting.validation`'s. With ``rerun`` the model-based evidence (the executed-MACs
audit with declared padding at batch 1 and N, determinism) is recomputed from the run's cached
trained model (``ccbench.training.model_store``) instead of read from the record.
"""
from __future__ import annotations

import json
from pathlib import Path

from ccbench.common.errors import UserError
from ccbench.reporting.records import find_record, results_root
from ccbench.reporting.validation import CheckResult, passed, validate_record, validate_results


def rerun_evidence(record_path: Path, data_dir: str | None = None, progress: bool = False) -> dict:
    """``metrics`` evidence fields recomputed from the record's cached trained model: the audit
    (``executed_over_useful_plus_padding``) and ``determinism``. Needs the data and the cache."""
    from ccbench.measurement.measure import ComputeStats, _executed_audit, determinism_evidence

    from .from_record import load_record_model, verify_record_model

    rm = load_record_model(str(record_path), data_dir, progress=progress)
    if rm.record["method"]["knob"]["value"] is not None:
        rm.model.set_knob(rm.record["method"]["knob"]["value"])
    ev, _ = verify_record_model(rm, progress)
    split, seed, device = rm.work.splits["eval"], rm.record["seed"], rm.tier.device
    table = rm.work.table.with_units(rm.model.cost_units())
    stats = ComputeStats.of(table, ev.trace)
    audit = _executed_audit(rm.model, rm.work, split, table, stats.useful, rm.tier, seed, device)
    return {"executed_over_useful_plus_padding": audit["executed_over_useful_plus_padding"],
            "executed_gmacs": audit["executed_gmacs"],
            "determinism": determinism_evidence(rm.model, rm.work, split, rm.tier, seed, device)}


def resolve_target(target: str, results_dir: str | None) -> tuple[str, Path]:
    """``("dir", folder)`` or ``("record", path)`` of a record id, record file or results folder."""
    p = Path(target)
    if p.is_dir():
        return "dir", p
    if p.suffix == ".json" and p.is_file():
        return "record", p
    if p.suffix == ".json":
        raise UserError(f"{target}: no such record file")
    return "record", find_record(target, results_dir)[0]


def validate(target: str, results_dir: str | None = None, as_json: bool = False, rerun: bool = False,
             data_dir: str | None = None) -> int:
    """Print every check of ``target`` (one line each, or JSON) and return the exit code: 0 when every
    check of every record passed, 1 otherwise."""
    kind, path = resolve_target(target, results_dir)
    if kind == "dir":
        if rerun:
            raise UserError("--rerun recomputes one record's evidence: give a record id or file, not a folder")
        results = validate_results(path)
    else:
        evidence = rerun_evidence(path, data_dir) if rerun else None
        results = {path.stem: validate_record(path, evidence=evidence)}
    if as_json:
        print(json.dumps({rid: {"passed": passed(checks), "checks": [c.as_dict() for c in checks]}
                          for rid, checks in results.items()}, indent=1))
    else:
        _print_results(results, path if kind == "dir" else results_root(results_dir))
    return 0 if all(passed(c) for c in results.values()) else 1


def _print_results(results: dict[str, list[CheckResult]], where: Path) -> None:
    bad = 0
    for rid, checks in results.items():
        ok = passed(checks)
        bad += not ok
        print(f"{rid[:12]}: {'valid' if ok else 'INVALID'}")
        for c in checks:
            print(f"  {c.line()}")
    print(f"{len(results) - bad} of {len(results)} record(s) valid" + (f" under {where}" if len(results) > 1 else ""))
