"""Fault injection: a run killed with SIGKILL in the middle of fine-tuning leaves nothing half-written,
and `--resume` finishes it with the same predictions and scores as a run that was never interrupted."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import write_tiny_imagenette

# runs ccbench's CLI in a child process whose optimizer kills the process (SIGKILL: no cleanup, no
# handler) right before its KILL_AT_STEP-th step, counted from the start of that process
CHILD = """
import os, signal, sys, torch
kill_at = int(os.environ.get("KILL_AT_STEP", "0"))
if kill_at:
    step = torch.optim.AdamW.step
    count = {"n": 0}
    def killing_step(self, *a, **k):
        count["n"] += 1
        if count["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, *a, **k)
    torch.optim.AdamW.step = killing_step
from ccbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _ccbench(args: list[str], cache: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "CCBENCH_CACHE": str(cache), "KILL_AT_STEP": str(kill_at)}
    env.pop("CCBENCH_DATA", None)
    return subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _records(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def test_sigkill_during_fine_tuning_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = write_tiny_imagenette(tmp_path / "data")
    run = ["run", "--method", "avit", "--task", "imagenette", "--budget", "smoke", "--knob", "threshold=0.5",
           "--data-dir", str(data), "--quiet"]

    # the reference: never interrupted (its backbone, pretrained here, is shared with the killed run)
    ref_cache, ref_results = tmp_path / "cache-ref", tmp_path / "results-ref"
    done = _ccbench(run + ["--results-dir", str(ref_results)], ref_cache)
    assert done.returncode == 0, done.stderr[-2000:]
    [ref] = _records(ref_results)

    cache, results = tmp_path / "cache", tmp_path / "results"
    shutil.copytree(ref_cache / "checkpoints", cache / "checkpoints")
    killed = _ccbench(run + ["--results-dir", str(results)], cache, kill_at=3)
    assert killed.returncode == -signal.SIGKILL
    # nothing half-written: no record, no samples file, no temporary file, no trained model
    assert not results.exists() or not any(p.is_file() for p in results.rglob("*"))
    assert not (cache / "runs").exists() or not list((cache / "runs").iterdir())
    assert list((cache / "train_state").glob("*")), "the killed run saved no state to resume from"

    # resumed, not restarted: a restart would take 4 steps and be killed at its 3rd again
    resumed = _ccbench(run + ["--results-dir", str(results), "--resume"], cache, kill_at=3)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    [out] = _records(results)
    a, b = json.loads(ref.read_text()), json.loads(out.read_text())
    assert b["budget"]["consumed"]["samples"] == a["budget"]["consumed"]["samples"] > 0
    assert b["metrics"]["main_score"] == a["metrics"]["main_score"]
    assert b["metrics"]["useful_gmacs"] == a["metrics"]["useful_gmacs"]
    sa = np.load(ref.with_name(ref.name.replace(".json", ".samples.npz")))
    sb = np.load(out.with_name(out.name.replace(".json", ".samples.npz")))
    assert (sa["pred"] == sb["pred"]).all() and (sa["ids"] == sb["ids"]).all()
    assert not [p for p in results.rglob("*") if p.is_file() and ".tmp" in p.name]
