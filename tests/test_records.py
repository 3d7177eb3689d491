"""Result records: ids, round trip, never overwritten, tamper-evident."""
import json

import pytest
import torch

from ccbench.core.trace import Trace
from ccbench.reporting.records import (
    finalize,
    load_records,
    load_samples,
    samples_hash,
    verify_record,
    write_record,
)
from record_helpers import run_body


def _body(top1=80.0):
    return run_body("m", task="t", budget="smoke", score=top1)


def test_id_is_stable_and_content_addressed():
    a, b = finalize(_body()), finalize(_body())
    assert a["id"] == b["id"] and len(a["id"]) == 64
    assert finalize(_body(81.0))["id"] != a["id"]
    assert verify_record(a)


def test_round_trip_and_samples(tmp_path):
    rec = finalize(_body())
    trace = Trace({"tokens_per_block": torch.tensor([[5, 3], [5, 0]])})
    path = write_record(rec, ["a", "b"], torch.tensor([1, 2]), torch.tensor([1, 0]), trace, tmp_path)
    assert path.parent == tmp_path / "smoke" / "t" / "m"
    [(p, loaded)] = load_records(tmp_path)
    # committed with the hash of its samples in the body, hence its final id
    assert p == path and path.stem == loaded["id"][:12] and verify_record(loaded)
    assert {k: v for k, v in loaded.items() if k not in ("id", "samples_sha256")} == {
        k: v for k, v in rec.items() if k != "id"}
    assert loaded["samples_sha256"] == samples_hash(load_samples(path))
    s = load_samples(path)
    assert s["ids"].tolist() == ["a", "b"] and s["pred"].tolist() == [1, 0]
    assert s["trace.tokens_per_block"].tolist() == [[5, 3], [5, 0]]
    with pytest.raises(FileExistsError):
        write_record(rec, ["a", "b"], torch.tensor([1, 2]), torch.tensor([1, 0]), trace, tmp_path)
    assert not list(path.parent.glob(".*tmp*"))


def test_hand_edited_record_is_skipped(tmp_path, capsys):
    rec = finalize(_body())
    trace = Trace({"tokens_per_block": torch.tensor([[5]])})
    path = write_record(rec, ["a"], torch.tensor([1]), torch.tensor([1]), trace, tmp_path)
    edited = json.loads(path.read_text())
    edited["metrics"]["main_score"]["value"] = 99.0
    path.write_text(json.dumps(edited))
    assert load_records(tmp_path) == []
    assert capsys.readouterr().err == (f"ccbench: skipped {path}: id does not match its content (edited by hand?); "
                                       "restore it from git or delete it\n")
