"""`ccbench validate` as the leaderboard's gate: planted records (made here, no training) are rejected by the
right check and shown unranked; honest tiny methods pass the audit at batch 1 and batch N."""
import json

import numpy as np
import pytest
import torch

from ccbench.cli import main
from ccbench.common import catalog
from ccbench.reporting.leaderboard import write_leaderboard
from ccbench.reporting.records import commit_record
from ccbench.reporting.validation import (
    CHECKS,
    NO_EVIDENCE,
    majority_baseline,
    status,
    validate_record,
    validate_results,
)
from record_helpers import run_body, samples, valid_run


def _failed(path) -> dict:
    return {c.name: c for c in validate_record(path) if not c.passed}


def _plant(tmp_path, edit=None, arrays_edit=None, **kw):
    body, arrays = valid_run(**kw)
    if edit:
        edit(body)
    if arrays_edit:
        arrays = arrays_edit(arrays)
    return commit_record(body, arrays, tmp_path)


def test_an_honest_record_passes_every_check_and_is_verified(tmp_path):
    path = _plant(tmp_path)
    checks = validate_record(path)
    assert [c.name for c in checks] == list(CHECKS)
    assert all(c.passed for c in checks), [c.line() for c in checks if not c.passed]
    assert status(json.loads(path.read_text()), checks) == "verified"
    assert "n_eval 872 = spec 872" in checks[1].figure


def _masks_at_batch_n(body):
    body["metrics"]["executed_over_useful_plus_padding"] = {"batch1": 1.0, "batchN": 2.071}


def _val_subset(body):
    body["task"].update(n_eval=200, data_hash="ee" * 32)


def _no_training(body):
    body["budget"]["consumed"]["samples"] = 0


def _dirty(body):
    body["git"]["dirty"] = True


PLANTED = {  # case -> (body edit, samples edit, the check that must fail)
    "masks at batch N": (_masks_at_batch_n, None, "audit-bN"),
    "val subset": (_val_subset, None, "eval-split"),
    "zero training": (_no_training, None, "budget"),
    "constant predictor": (None, lambda a: {**a, "pred": np.ones_like(a["pred"])}, "not-degenerate"),
    "dirty twin": (_dirty, None, "provenance"),
}


@pytest.mark.parametrize("case", PLANTED)
def test_each_planted_case_fails_its_check_only(case, tmp_path):
    edit, arrays_edit, check = PLANTED[case]
    failed = _failed(_plant(tmp_path, edit, arrays_edit))
    assert set(failed) == {check}, {k: v.line() for k, v in failed.items()}
    assert failed[check].detail


def test_majority_class_predictor_is_degenerate_even_when_not_constant(tmp_path):
    # 90 % positives, predicting positive on all but one sample: accuracy ~ the majority baseline
    def arrays_edit(a):
        label = np.array([1] * 785 + [0] * 87, dtype=np.int16)
        pred = np.ones(872, dtype=np.int16)
        pred[-1] = 0
        return {**a, "label": label, "pred": pred}

    def edit(body):
        body["metrics"]["main_score"] = {"name": "accuracy", "value": 90.1, "ci95": [88.0, 92.0]}

    failed = _failed(_plant(tmp_path, edit, arrays_edit))
    assert set(failed) == {"not-degenerate"} and "majority class 90.02" in failed["not-degenerate"].figure
    base, upper = majority_baseline(np.array([1] * 785 + [0] * 87), "accuracy")
    assert round(base, 2) == 90.02 and upper > base
    # computed once per eval set: another eval set (same length, other labels, or another dtype) is its own
    assert majority_baseline(np.array([1] * 785 + [0] * 87), "accuracy") == (base, upper)
    assert round(majority_baseline(np.array([1] * 436 + [0] * 436), "accuracy")[0], 2) == 50.0
    assert round(majority_baseline(np.array([1] * 785 + [0] * 87, dtype=np.int32), "accuracy")[0], 2) == 90.02


def test_old_record_fails_the_evidence_checks_with_the_no_evidence_verdict(tmp_path):
    path = commit_record(run_body(), samples(), tmp_path)
    failed = _failed(path)
    assert {"audit-b1", "audit-bN", "determinism"} <= set(failed)
    assert failed["determinism"].detail == NO_EVIDENCE


def test_text_backbone_is_checked_by_hash_not_name(tmp_path):
    def edit(body):
        body["backbone"]["sha256"] = "ab" * 32       # the name still says minilm-l6
    assert set(_failed(_plant(tmp_path, edit))) == {"backbone"}


def test_plugin_needs_distribution_version_and_source_hash(tmp_path):
    def edit(body):
        body["git"]["dirty"] = True                   # a plug-in's own checkout does not matter
        body["method"]["provenance"] = {"origin": "plugin", "distribution": "mymethods", "version": "1.0",
                                        "source_sha256": "12" * 32}
    path = _plant(tmp_path, edit)
    checks = validate_record(path)
    assert all(c.passed for c in checks) and status(json.loads(path.read_text()), checks) == "submitted"

    def unversioned(body):
        edit(body)
        body["method"]["provenance"]["version"] = None
    assert set(_failed(_plant(tmp_path / "b", unversioned))) == {"provenance"}


def test_cli_validate_over_a_results_folder_exits_0_then_1(tmp_path, capsys):
    _plant(tmp_path)
    _plant(tmp_path, seed=1, rng_seed=1)
    assert main(["validate", str(tmp_path)]) == 0
    assert "2 of 2 record(s) valid" in capsys.readouterr().out
    bad = _plant(tmp_path, _masks_at_batch_n, seed=2, rng_seed=2)
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL audit-bN: exec/(useful+pad) 2.071 @ b8" in out and "2 of 3 record(s) valid" in out
    assert main(["validate", str(bad), "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)[bad.stem]
    assert verdict["passed"] is False and [c["name"] for c in verdict["checks"] if not c["passed"]] == ["audit-bN"]
    assert main(["validate", json.loads(bad.read_text())["id"][:10], "--results-dir", str(tmp_path)]) == 1
    assert set(validate_results(tmp_path)) == {json.loads(p.read_text())["id"] for p in tmp_path.rglob("*.json")}


def test_leaderboard_ranks_exactly_what_validates_and_a_clean_twin_wins(tmp_path):
    good = _plant(tmp_path)
    dirty_twin = _plant(tmp_path, lambda b: (_dirty(b), b.update(date="2026-06-01T00:00:00+00:00")))
    planted = {case: _plant(tmp_path, edit, arrays_edit, knob=("threshold", 0.5 + i / 10), rng_seed=i + 3)
               for i, (case, (edit, arrays_edit, _)) in enumerate(PLANTED.items()) if case != "dirty twin"}
    out = write_leaderboard(tmp_path, str(tmp_path / "lb" / "README.md"))
    text = out.read_text()
    ranked, _, unranked = text.partition("Not ranked (fail `ccbench validate`")
    good_id = json.loads(good.read_text())["id"][:12]
    assert f"`{good_id}`" in ranked and "verified" in ranked
    for case, (_, _, check) in PLANTED.items():
        path = dirty_twin if case == "dirty twin" else planted[case]
        rid = json.loads(path.read_text())["id"][:12]
        assert rid not in ranked, case
        line = next(ln for ln in unranked.splitlines() if rid in ln)
        assert f"{check} (" in line, (case, line)
    assert "threshold=0.8" in ranked and "threshold=0.5" not in ranked   # the planted knobs stay unranked


class _Work:
    """The two workload methods the audit and determinism evidence use, over images held in memory."""

    def __init__(self, images):
        self.images = images

    def inputs(self, split, index, device):
        return self.images[torch.as_tensor(index)]

    def grouped(self, split, index, batch_size, device):
        return [self.inputs(split, index[i:i + batch_size], device) for i in range(0, len(index), batch_size)]


IMAGE_METHODS = [n for n in catalog.methods().names() if "image" in catalog.methods().metadata(n)["modalities"]]


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_builtin_methods_pass_the_audit_at_batch1_and_batchN_or_are_caught_masking(name, tiny_backbone, tiny_config):
    """`ccbench run`'s own audit (fvcore executed vs useful + declared padding) on a tiny model at batch 1 and
    batch 4, and its determinism evidence: every method that removes compute passes both within 2 %;
    the masked reference (avit-masked) fails."""
    from test_cost import TINY_SAVING_KNOB

    from ccbench.measurement.cost import CostTable, useful_macs
    from ccbench.measurement.measure import _executed_audit, determinism_evidence
    from ccbench.reporting.validation import check_audit, check_determinism

    torch.manual_seed(0)
    model = catalog.methods().get(name).build(tiny_backbone)
    x = torch.randn(12, 3, 32, 32)
    if hasattr(model, "prepare"):
        model.prepare(x[:6])
    model.eval()
    if catalog.methods().metadata(name)["knob"]["name"] != "none" and TINY_SAVING_KNOB.get(name, 0.5) is not None:
        model.set_knob(TINY_SAVING_KNOB.get(name, 0.5))
    tier = catalog.budgets().get("smoke")        # audit: 3 samples at batch 1, one batch of 4
    table = CostTable.from_config(tiny_config, units=model.cost_units())
    work, split = _Work(x), list(range(12))
    with torch.no_grad():
        useful = useful_macs(table, model(x).trace)
    audit = _executed_audit(model, work, split, table, useful, tier, 0, "cpu")
    record = {"metrics": {**audit, "determinism": determinism_evidence(model, work, split, tier, 0, "cpu")}}
    verdicts = [check_audit(record, "batch1"), check_audit(record, "batchN")]
    if model.execution == "masked":
        assert not any(v.passed for v in verdicts)
    else:
        assert all(v.passed for v in verdicts), [v.line() for v in verdicts]
    assert check_determinism(record).passed, check_determinism(record).line()


def test_a_record_that_only_predates_validation_is_shown_as_the_previous_version_unranked(tmp_path):
    from ccbench.reporting.validation import is_previous_version

    def strip_evidence(body):
        del body["metrics"]["determinism"], body["metrics"]["executed_over_useful_plus_padding"]

    old = _plant(tmp_path, strip_evidence, knob=("threshold", 0.6), rng_seed=7)
    failed = list(_failed(old).values())
    assert is_previous_version(failed) and {c.name for c in failed} == {"audit-b1", "audit-bN", "determinism"}
    constant = _plant(tmp_path, *PLANTED["constant predictor"][:2], knob=("threshold", 0.7), rng_seed=8)
    assert not is_previous_version(list(_failed(constant).values()))
    text = write_leaderboard(tmp_path, str(tmp_path / "lb" / "README.md")).read_text()
    old_id = json.loads(old.read_text())["id"][:12]
    assert "nothing is ranked" in text
    before, _, previous = text.partition("records written before validation existed")
    assert old_id not in before and f"`{old_id}`" in previous
    row = next(ln for ln in previous.splitlines() if "threshold=0.6" in ln)
    assert "unvalidated" in [cell.strip() for cell in row.split("|")]


def test_a_row_pools_comparable_tier_versions_and_only_an_incomparable_row_is_refused(tmp_path, monkeypatch):
    """Seeds measured under two tier versions the tier keeps comparable pool into one admitted row; a row with a
    seed under a version it does not compare with is refused alone, the task's other rows stand."""
    tier = catalog.budgets().get("cpu")
    monkeypatch.setattr(type(tier), "comparable_versions", lambda self, modality: range(self.version - 1,
                                                                                       self.version + 1))
    _plant(tmp_path, seed=0, rng_seed=0)
    _plant(tmp_path, lambda b: b["budget"].update(version=tier.version - 1), seed=1, rng_seed=1)
    text = write_leaderboard(tmp_path, str(tmp_path / "lb" / "README.md")).read_text()
    ranked = text.partition("Not ranked (fail `ccbench validate`")[0]
    assert "| early-exit | threshold=0.8 | verified | 2 " in ranked.replace("  ", " ").replace("  ", " ")

    monkeypatch.setattr(type(tier), "comparable_versions",    # now only the current version compares
                        lambda self, modality: range(self.version, self.version + 1))
    _plant(tmp_path, knob=("threshold", 0.6), seed=0, rng_seed=2)
    text = write_leaderboard(tmp_path, str(tmp_path / "lb2" / "README.md")).read_text()
    assert "Not admitted (budget version differs" in text and "threshold=0.6" in text.split("Not admitted")[0]


def test_a_record_of_an_earlier_method_version_is_the_previous_version_and_the_sweep_reruns_it(tmp_path):
    """early-exit's text implementation is version 2 (exit heads read the mean of the real tokens): a text
    record written before (no ``method.version``: version 1) fails ``method-version`` alone, is shown as the
    previous leaderboard version, unranked, and a sweep does not count it as done; the same record at the
    current version passes."""
    from ccbench.common.method_meta import method_version
    from ccbench.drivers.sweep_jobs import RecordIndex
    from ccbench.reporting.validation import check_method_version, is_previous_version

    assert method_version(catalog.methods().metadata("early-exit"), "text") == 2
    assert method_version(catalog.methods().metadata("patience"), "text") == 2      # inherits: same model
    assert method_version(catalog.methods().metadata("early-exit"), "image") == 1

    def version_1(body):
        del body["method"]["version"]

    old = _plant(tmp_path / "old", version_1, knob=("threshold", 0.6), rng_seed=7)
    failed = list(_failed(old).values())
    assert [c.name for c in failed] == ["method-version"] and failed[0].figure == "v1, current text v2"
    assert is_previous_version(failed)
    text = write_leaderboard(tmp_path / "old", str(tmp_path / "lb" / "README.md")).read_text()
    old_id = json.loads(old.read_text())["id"][:12]
    before, _, previous = text.partition("Previous leaderboard version")
    assert old_id not in before and f"`{old_id}`" in previous and "earlier version of their method" in previous
    assert RecordIndex(tmp_path / "old").records == [] and len(RecordIndex(tmp_path / "old", current_only=False).records) == 1

    current = _plant(tmp_path / "new", knob=("threshold", 0.6), rng_seed=7)
    assert check_method_version(json.loads(current.read_text())).passed
    assert len(RecordIndex(tmp_path / "new").records) == 1
    # another failure beside it lists the record as failing, not as the previous version
    constant = _plant(tmp_path / "old", version_1, PLANTED["constant predictor"][1], knob=("threshold", 0.7),
                      rng_seed=8)
    assert not is_previous_version(list(_failed(constant).values()))


def test_the_table_keeps_an_earlier_method_versions_seeds_apart_and_marks_them(tmp_path):
    """Seeds written by early-exit's text v1 and v2 at one knob are two rows of ``ccbench table``, not one pooled
    row; the v1 row's method cell says it is an earlier version."""
    from ccbench.reporting.records import load_records
    from ccbench.reporting.tables import load_table, render

    _plant(tmp_path, lambda b: b["method"].pop("version"), knob=("threshold", 0.6), seed=0, rng_seed=1)
    _plant(tmp_path, knob=("threshold", 0.6), seed=1, rng_seed=2)
    table = load_table(records=load_records(tmp_path), task="sst2")
    assert sorted(zip(table.method_version, table.seeds)) == [(1, 1), (2, 1)]
    text = render(table, "markdown", note=False)
    assert "early-exit (v1; current v2)" in text and text.count("early-exit") == 2


def test_an_outdated_record_is_not_rebuilt_and_a_checkpoint_evaluator_takes_the_higher_version():
    """``validate --rerun``, shift and transfer refuse a record an earlier method version wrote (the current code
    cannot rebuild its model; training it again would never match) in one line naming the fix; a method that
    evaluates another's checkpoint takes the higher of its own and its source's version per modality."""
    from types import SimpleNamespace

    from ccbench.common.catalog import _validated
    from ccbench.common.errors import UserError
    from ccbench.training.model_store import rebuild_record_model

    meta = catalog.methods().metadata("early-exit")
    record = {"id": "ab" * 32, "seed": 0, "method": {"name": "early-exit", "knob": {"name": "threshold", "value": 0.6}}}
    task, tier = SimpleNamespace(name="sst2", modality="text"), SimpleNamespace(name="cpu")
    with pytest.raises(UserError, match=r"written by early-exit v1 and early-exit is v2 on text now.*ccbench run"):
        rebuild_record_model(record, meta, None, tier, task)
    known = {"early-exit": meta}
    mine = {k: v for k, v in catalog.methods().metadata("patience").items() if k in ("name", "description", "knob",
                                                                                   "evaluates_checkpoint_of")}
    assert _validated("p", {**mine, "versions": {"image": 3}}, known)["versions"] == {"text": 2, "image": 3}
    assert _validated("p", {**mine, "versions": {"text": 1}}, known)["versions"] == {"text": 2}


def test_a_record_of_an_earlier_task_version_is_the_previous_version_and_a_row_of_its_own(tmp_path):
    """SST-2 is at version 2 (calibration on whole sentences): a record measured on version 1 fails
    ``task-version`` alone, is shown as the previous leaderboard version, is a table row of its own marked
    ``sst2 (v1; current v2)``, a sweep runs its job again, and its trained model is not rebuilt."""
    from ccbench.drivers.sweep_jobs import RecordIndex
    from ccbench.reporting.tables import load_table, render
    from ccbench.reporting.validation import OUTDATED_TASK, check_task_version, is_previous_version

    assert catalog.tasks().get("sst2").version == 2

    def task_v1(body):
        body["task"]["version"] = 1

    results = tmp_path / "results"
    old = _plant(results, task_v1, knob=("threshold", 0.6), rng_seed=7)
    failed = list(_failed(old).values())
    assert [(c.name, c.figure, c.detail) for c in failed] == [("task-version", "v1, current v2", OUTDATED_TASK)]
    assert is_previous_version(failed)
    new = _plant(results, knob=("threshold", 0.6), rng_seed=7)
    assert check_task_version(json.loads(new.read_text())).passed
    text = write_leaderboard(results, str(tmp_path / "lb" / "README.md")).read_text()
    old_id = json.loads(old.read_text())["id"][:12]
    before, _, previous = text.partition("Previous leaderboard version")
    assert old_id not in before and f"`{old_id}`" in previous and "earlier version of the task" in previous
    site = tmp_path / "lb" / "site"   # the site shows it too, under the previous version, with its record page
    assert (site / "record" / f"{old_id}.html").is_file()
    page = next(p.read_text() for p in site.glob("*.html") if old_id in p.read_text() and p.name != "index.html")
    assert "Previous leaderboard version" in page and "earlier version of the task" in page
    assert "unvalidated" in page and "verified" not in page.split("Previous leaderboard version")[1]
    table = load_table(results)
    assert sorted(table.task_version) == [1, 2] and set(table.seeds) == {1}   # not pooled as two seeds
    assert "sst2 (v1; current v2)" in render(table, "markdown", note=False)
    assert [r["task"]["version"] for _, r in RecordIndex(results).records] == [2]


def test_a_task_version_keys_trained_models_and_an_earlier_versions_model_is_not_rebuilt():
    """A task version above 1 enters the trained-model name (a text split's data hash names its file, not which
    examples train), and a record of another version is refused for rebuilding in one line naming the fix."""
    from types import SimpleNamespace

    from ccbench.common.errors import UserError
    from ccbench.training.model_store import rebuild_record_model, run_name

    work = SimpleNamespace(recipe=SimpleNamespace(model_dump=lambda: {"lr": 1e-4}), train_settings={},
                           splits={"train": SimpleNamespace(data_hash="d" * 64)}, sha256="e" * 64)
    tier = SimpleNamespace(name="cpu")
    names = {v: run_name("dense", tier, SimpleNamespace(name="sst2", modality="text", version=v), 0, work, {})
             for v in (1, 2, 3)}
    assert len(set(names.values())) == 3 and all(n.startswith("cpu-sst2-dense-s0-eeeeeeeeeeee-") for n in names.values())
    meta = catalog.methods().metadata("early-exit")
    record = {"id": "ab" * 32, "seed": 0, "task": {"name": "sst2", "version": 1},
              "method": {"name": "early-exit", "version": 2, "knob": {"name": "threshold", "value": 0.6}}}
    task = SimpleNamespace(name="sst2", modality="text", version=2)
    with pytest.raises(UserError, match=r"measured on sst2 v1 and the task is v2 now.*ccbench run --method early-exit"):
        rebuild_record_model(record, meta, None, tier, task)
