"""Fine-tuning seeds pool: every seed fine-tunes the tier's one backbone, and the table shows one row
per method/knob/task/backbone with the seed count."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ccbench.cli import main


def test_seed_1_fine_tunes_the_same_backbone_and_pools_with_seed_0(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    for seed in ("0", "1"):
        assert main(["run", "--method", "dense", "--budget", "smoke", "--data-dir", str(tiny_data),
                     "--results-dir", str(results), "--seed", seed, "--quiet"]) == 0
    records = [json.loads(p.read_text()) for p in sorted(Path(results).rglob("*.json"))]
    assert sorted(r["seed"] for r in records) == [0, 1]
    assert records[0]["backbone"]["sha256"] == records[1]["backbone"]["sha256"]
    # one backbone was pretrained, not one per seed
    assert len(list((isolated_cache / "checkpoints").glob("*.safetensors"))) == 1
    capsys.readouterr()
    assert main(["table", "--results-dir", str(results), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["seeds"] == "2"  # the two seeds are one row
