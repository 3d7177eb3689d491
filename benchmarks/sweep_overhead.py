"""Overhead of the Ray executor against ``local`` on the smoke sweep (issue 20), as a ratio in one run.

    python benchmarks/sweep_overhead.py [--data-dir DIR] [--ray-cpus 1]

A tiny Imagenette-shaped folder is written (unless ``--data-dir`` is given) and a fresh cache is used. A
warm-up sweep pretrains the smoke backbone and fine-tunes every model, so the timed sweeps only measure
(cached models); then ``sweeps/smoke.yaml`` runs with ``--executor local`` and with ``--executor ray`` on
a local cluster of ``--ray-cpus`` CPUs (1: one job at a time, like local, so the difference is Ray's
own cost: starting the cluster and its workers, scheduling, shutdown), each into an empty results folder.
Prints both wall times and ray / local.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's ccbench, also when run as a script


def _timed(**kwargs) -> float:
    from ccbench.drivers.sweep import run_sweep

    t0 = time.perf_counter()
    rc = run_sweep(str(REPO / "sweeps" / "smoke.yaml"), progress=False, **kwargs)
    if rc != 0:
        sys.exit(f"the smoke sweep failed ({kwargs.get('executor')})")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ray-cpus", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ccbench-sweep-overhead-"))
    os.environ["CCBENCH_CACHE"] = str(tmp / "cache")
    data = args.data_dir
    if data is None:
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import write_tiny_imagenette

        data = str(write_tiny_imagenette(tmp / "data"))
    os.environ["CCBENCH_DATA"] = data
    os.chdir(REPO)
    _timed(executor="local", results_dir=str(tmp / "warmup"))
    local = _timed(executor="local", results_dir=str(tmp / "local"))
    ray = _timed(executor="ray", results_dir=str(tmp / "ray"), num_cpus=args.ray_cpus)
    print(f"smoke sweep (4 jobs, cached models): local {local:.1f} s, ray ({args.ray_cpus} CPU) {ray:.1f} s, "
          f"ray / local = {ray / local:.2f}")


if __name__ == "__main__":
    main()
