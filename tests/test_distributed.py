"""Data-parallel training (issue 20): `torchrun --nproc_per_node 2 -m ccbench run` at the smoke tier on gloo
reaches the weights one process reaches with the same global batch and seed, and writes one record that
says two processes trained it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ccbench.cli import main
from ccbench.common.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_two_gloo_processes_reach_the_weights_of_one(tiny_data, isolated_cache, tmp_path, capsys):
    from safetensors.torch import load_file

    base = ["--method", "dense", "--budget", "smoke", "--data-dir", str(tiny_data), "--quiet"]
    assert main(["run", *base, "--train-only"]) == 0  # pretrains the backbone, then one process fine-tunes
    single = list((isolated_cache / "runs").glob("*.safetensors"))
    assert len(single) == 1
    ddp_cache = tmp_path / "ddp-cache"
    shutil.copytree(isolated_cache, ddp_cache, ignore=shutil.ignore_patterns("runs", "train_state"))
    results = tmp_path / "results"
    env = {**__import__("os").environ, "CCBENCH_CACHE": str(ddp_cache), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "ccbench", "run", *base, "--results-dir", str(results)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    twin = ddp_cache / "runs" / single[0].name  # same run name: same data, recipe, seed and global batch
    a, b = load_file(single[0]), load_file(twin)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4, msg=k)
    records = sorted(results.rglob("*.json"))
    assert len(records) == 1  # rank 0 alone evaluates and writes
    record = json.loads(records[0].read_text())
    assert record["training_processes"] == 2
    assert record["budget"]["consumed"]["samples"] == 128  # the budget counts global samples
    assert main(["table", "--results-dir", str(results)]) == 0  # the new field reads back


def test_shard_and_refusals(monkeypatch):
    from ccbench.training import distributed

    ctx = distributed.DistContext(rank=1, world=2)
    assert ctx.shard(torch.arange(6)).tolist() == [1, 3, 5]
    assert distributed.DistContext().shard(torch.arange(3)).tolist() == [0, 1, 2]
    distributed.reset_training_stamp()
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match="does not split over 3 processes"):
        distributed.context("cpu", 32)
    distributed._state["trained"] = True
    with pytest.raises(UserError, match="under torchrun a command trains once"):
        distributed.context("cpu", 33)
    distributed.reset_training_stamp()


def test_old_records_without_the_field_still_load():
    from ccbench.reporting.record_schema import parse_record
    from record_helpers import run_body

    body = {"id": "x", "schema_version": 2, **run_body()}
    assert parse_record(body).training_processes is None
    assert parse_record({**body, "training_processes": 2}).training_processes == 2
