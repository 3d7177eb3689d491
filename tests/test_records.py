"""Result records: ids, round trip, never overwritten, tamper-evident."""
import json

import pytest
import torch

from ccbench.records import finalize, load_records, load_samples, verify_record, write_record
from ccbench.trace import Trace


def _body(top1=80.0):
    return {"task": {"name": "t"}, "budget": {"name": "smoke"}, "method": {"name": "m"},
            "metrics": {"top1": top1}, "seed": 0}


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
    assert p == path and loaded == rec
    s = load_samples(path)
    assert s["ids"].tolist() == ["a", "b"] and s["pred"].tolist() == [1, 0]
    assert s["trace.tokens_per_block"].tolist() == [[5, 3], [5, 0]]
    with pytest.raises(FileExistsError):
        write_record(rec, ["a", "b"], torch.tensor([1, 2]), torch.tensor([1, 0]), trace, tmp_path)
    assert not list(path.parent.glob(".*tmp*"))


def test_hand_edited_record_is_rejected(tmp_path):
    rec = finalize(_body())
    trace = Trace({"tokens_per_block": torch.tensor([[5]])})
    path = write_record(rec, ["a"], torch.tensor([1]), torch.tensor([1]), trace, tmp_path)
    edited = json.loads(path.read_text())
    edited["metrics"]["top1"] = 99.0
    path.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="edited by hand"):
        load_records(tmp_path)
