"""The record layer is a layer (issue 16): typed records with a version-1 read adapter, reporting without
torch or the run side, a checkpoint manifest instead of opening checkpoints, one read per record."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ccbench.common.provenance import content_hash
from record_helpers import run_body, samples

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "timm", "transformers", "fvcore")
# every subpackage but ``common`` and ``reporting`` itself is the run side as far as reporting is concerned
RUN_SIDE = ("ccbench.core", "ccbench.data", "ccbench.measurement", "ccbench.training", "ccbench.drivers",
            "ccbench.baselines")


def test_reporting_imports_neither_torch_nor_the_run_side():
    code = ("import sys, json, ccbench.reporting.records, ccbench.reporting.tables, ccbench.reporting.leaderboard, "
            "ccbench.reporting.shift_tables, ccbench.reporting.manifest; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    assert not [m for m in loaded if m.startswith(RUN_SIDE)]


def test_manifest_agrees_with_the_checkpoint_headers():
    from ccbench.reporting.manifest import manifest_problem

    problem = manifest_problem(REPO / "checkpoints")
    assert problem is None, problem  # the message ends with the fix: run `ccbench manifest`


def test_a_stale_manifest_is_one_line_with_the_fix(tmp_path):
    from ccbench.reporting.leaderboard import published_backbone_hashes  # noqa: F401  (reads only the manifest)
    from ccbench.reporting.manifest import (
        manifest_problem,
        published_hashes,
        write_manifest,
    )

    src = REPO / "checkpoints" / "cpu-imagenette-a.safetensors"
    (tmp_path / src.name).write_bytes(src.read_bytes())
    write_manifest(tmp_path)
    assert manifest_problem(tmp_path) is None
    assert published_hashes(tmp_path) == {("cpu", "imagenette-a"): json.loads(
        (tmp_path / "manifest.json").read_text())[0]["backbone_sha256"]}
    (tmp_path / "cpu-imagenette.safetensors").write_bytes((REPO / "checkpoints" / "cpu-imagenette.safetensors")
                                                          .read_bytes())
    problem = manifest_problem(tmp_path)
    assert "cpu-imagenette.safetensors" in problem and "ccbench manifest" in problem and "\n" not in problem


def _v1(body: dict) -> dict:
    """``body`` as a version-1 file held it (schema_version 1, id over that content)."""
    body = json.loads(json.dumps({**body, "schema_version": 1}))
    return {"id": content_hash(body), **body}


def test_version_1_records_load_through_the_adapter_unchanged(tmp_path):
    from ccbench.reporting.records import KIND_PREFIXES, load_records, typed

    body = run_body(score=70.0)
    m = body["metrics"]
    del m["main_score"]
    m.update(top1=70.0, top1_ci95=[69.0, 71.0])  # an early image record: no main_score
    record = _v1(body)
    folder = tmp_path / "cpu" / "sst2" / "dense"
    folder.mkdir(parents=True)
    path = folder / f"{KIND_PREFIXES['run'][0]}{record['id'][:12]}.json"
    text = json.dumps(record, indent=1) + "\n"
    path.write_text(text)
    np.savez_compressed(folder / f"{record['id'][:12]}.samples.npz", **samples())
    [(_, loaded)] = load_records(tmp_path)
    assert loaded == record and path.read_text() == text  # never rewritten, same id
    score = typed(loaded).metrics.main_score
    assert (score.name, score.value, tuple(score.ci95)) == ("top1", 70.0, (69.0, 71.0))


def test_new_records_are_version_2_and_must_fit_the_schema(tmp_path):
    from ccbench.reporting.records import (
        RecordError,
        commit_record,
        finalize,
        read_record,
    )

    path = commit_record(finalize(run_body()), samples(), tmp_path)
    assert read_record(path)["schema_version"] == 2
    bad = run_body()
    del bad["metrics"]["useful_gmacs"]
    with pytest.raises(RecordError, match="metrics.useful_gmacs"):
        commit_record(finalize(bad), samples(), tmp_path)


def test_a_leaderboard_build_reads_each_record_once(tmp_path, monkeypatch):
    import ccbench.reporting.records as records
    from ccbench.reporting.leaderboard import write_leaderboard
    from ccbench.reporting.records import commit_record, finalize

    monkeypatch.setattr("ccbench.reporting.leaderboard.published_backbone_hashes", lambda: {})
    for method, knob in (("dense", ("none", None)), ("early-exit", ("threshold", 0.6))):
        commit_record(finalize(run_body(method, knob)), samples(), tmp_path / "results")
    reads = []
    real = records.read_record
    monkeypatch.setattr(records, "read_record", lambda p: reads.append(Path(p).name) or real(p))
    out = write_leaderboard(tmp_path / "results", str(tmp_path / "lb" / "README.md"))
    assert len(reads) == 2 and len(set(reads)) == 2
    assert "threshold=0.6" in out.read_text()


def test_record_lookup_and_knob_label_exist_once():
    import ccbench.drivers.from_record
    import ccbench.reporting.leaderboard
    import ccbench.reporting.records
    from ccbench.reporting.columns import column
    from ccbench.reporting.record_schema import parse_record
    from ccbench.reporting.shift_tables import _knob

    assert ccbench.drivers.from_record.find_record is ccbench.reporting.records.find_record
    assert not hasattr(ccbench.reporting.leaderboard, "_record_path")
    record = _v1(run_body("early-exit", ("threshold", 0.60)))
    assert column("knob").value(parse_record(record)) == _knob(record) == "threshold=0.6"


def test_metric_registry_scores_as_glue_did():
    from ccbench.common.metrics import GLUE_MAIN_SCORE, metric
    from ccbench.common.text_metrics import glue_scores

    pred, label = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1])  # F1 4/6, accuracy 3/5
    assert glue_scores("mrpc", pred, label)["main"] == pytest.approx((100 * 4 / 6 + 100 * 3 / 5) / 2)
    assert glue_scores("cola", pred, label) == metric("matthews").scores(pred, label)
    assert set(GLUE_MAIN_SCORE.values()) <= {"accuracy", "matthews", "mean of f1 and accuracy",
                                             "mean of pearson and spearman"}


def test_a_task_spec_names_a_registered_main_score():
    from pydantic import ValidationError

    from ccbench.common import catalog
    from ccbench.common.errors import UserError
    from ccbench.common.specs import TaskSpec

    spec = catalog.tasks().get("imdb").model_dump()
    with pytest.raises((ValidationError, UserError), match="unknown main score"):
        TaskSpec.model_validate({**spec, "main_score": "bleu"})
