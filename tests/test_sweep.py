"""`ccbench sweep` (issue 20): sweep files, the job graph, reruns, failing jobs, concurrent sweeps into one
results folder, and the Ray executor on a local two-worker cluster. Jobs run at the smoke tier on a tiny
image folder the test writes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ccbench.cli import main
from ccbench.drivers.sweep_spec import load_sweep
from ccbench.reporting.records import scan_records

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"
PENDING = {"cpu-track.yaml"}  # shipped sweeps whose records are not all made yet (issue 25)


def _write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _runs(results: Path) -> list[dict]:
    good, bad = scan_records(results)
    assert bad == []
    return [r for _, r in good]


def _configs(records: list[dict]) -> list[tuple]:
    return sorted((r["method"]["name"], str(r["method"]["knob"]["value"])) for r in records)


# -- the sweep file and the job graph (no job runs) --
@pytest.mark.parametrize("body, message", [
    ("runs: [{task: imagenette, method: avitt}]", "unknown method 'avitt'; did you mean 'avit'"),
    ("runs: [{task: imagenet, method: avit}]", "unknown task 'imagenet'; did you mean 'imagenette'"),
    ("runs: [{task: imagenette, method: avit, points: {r: [1]}}]", "avit's knob is 'threshold', not 'r'"),
    ("runs: [{task: imagenette, method: avit, points: {threshold: [-1]}}]", "threshold takes"),
    ("runs: [{task: sst2, method: tome}]", "does not apply to text task 'sst2'"),
    ("runs: [{task: imagenette, method: dense, knob: 3}]", "Extra inputs are not permitted"),
    ("transfers: [{source: {method: dense, task: imagenette-a}, to: imagenette-b, protocols: [head-onl]}]",
     "did you mean 'head-only'"),
    ("shifts: [{source: {method: dense, task: imagenette}, to: [imagenette-b]}]", "is not a shift target"),
])
def test_a_bad_sweep_file_is_refused_in_one_line(body, message, tmp_path, capsys):
    path = _write(tmp_path, f"name: bad\nbudget: smoke\n{body}\n")
    assert main(["sweep", str(path), "--dry-run", "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err


def test_unknown_executor_gets_a_suggestion(capsys, tmp_path):
    assert main(["sweep", str(SMOKE), "--executor", "rya", "--results-dir", str(tmp_path)]) == 2
    assert "unknown executor 'rya'; did you mean 'ray'?" in capsys.readouterr().err


def test_shipped_sweeps_validate_and_express_the_cpu_leaderboard(capsys):
    """Every shipped sweep file loads; the cpu sweeps' jobs all have their committed records (the
    leaderboard is exactly what they reproduce), validated or from before validation (then the sweep would
    run them again, and says so)."""
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        assert main(["sweep", str(path), "--dry-run", "--results-dir", str(REPO / "results")]) == 0
        out = capsys.readouterr().out
        if path.name.startswith("cpu-") and path.name not in PENDING:
            # no run job lacks a record altogether; a shift/transfer may wait for its re-measured source
            missing = [line for line in out.splitlines()[1:] if line.lstrip().startswith("to run")]
            assert all(line.split()[3] in ("shift", "transfer") for line in missing), missing


def test_ranking_sweep_reruns_records_that_predate_validation_seed_by_seed(tmp_path, capsys):
    """A record without validation evidence (one from before ``ccbench validate`` existed) is stale, not done,
    and the ranking sweep lists every job of seed 0 before any of seed 1. The records are made here: the
    committed ones change as the re-run lands."""
    from ccbench.drivers.sweep_jobs import JobGraph
    from ccbench.drivers.sweep_spec import load_sweep
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    sweep = REPO / "sweeps" / "cpu-ranking.yaml"
    job = next(j for j in JobGraph(load_sweep(sweep)).jobs
               if j.config["task"] == "sst2" and j.config["method"] == "dense" and j.config["seed"] == 0)
    body = run_body("dense", task="sst2")
    body["task"]["version"] = job.config["task_version"]
    body["method"]["knob"]["chosen_by"] = "default"
    body["metrics"].pop("determinism", None)
    commit_record(finalize(body), samples(), tmp_path / "results")
    assert main(["sweep", str(sweep), "--dry-run", "--results-dir", str(tmp_path / "results")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    dense0 = next(line for line in lines if "run dense on sst2 (cpu, seed 0)" in line)
    assert dense0.lstrip().startswith("stale "), dense0
    seeds = [int(re.search(r", seed (\d+)\)", line).group(1)) for line in lines]
    assert seeds == sorted(seeds) and set(seeds) == {0, 1, 2}, seeds
    body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                      "repeat_mismatches": 0}
    commit_record(finalize(body), samples(), tmp_path / "validated")
    assert main(["sweep", str(sweep), "--dry-run", "--results-dir", str(tmp_path / "validated")]) == 0
    dense0 = next(line for line in capsys.readouterr().out.splitlines() if "run dense on sst2 (cpu, seed 0)" in line)
    assert dense0.lstrip().startswith("done "), dense0
    # the same validated record measured on an earlier version of the task (sst2 v1: phrase calibration) is stale
    assert job.config["task_version"] == 2
    body["task"]["version"] = 1
    commit_record(finalize(body), samples(), tmp_path / "task-v1")
    assert main(["sweep", str(sweep), "--dry-run", "--results-dir", str(tmp_path / "task-v1")]) == 0
    dense0 = next(line for line in capsys.readouterr().out.splitlines() if "run dense on sst2 (cpu, seed 0)" in line)
    assert dense0.lstrip().startswith("stale "), dense0


def test_a_record_of_an_earlier_tier_version_counts_only_where_the_tier_keeps_it_comparable(tmp_path):
    """cpu v2 changed only the text recipe (``comparable_since: {image: 1}``): a v1 image record is still done,
    a v1 text record is not."""
    from ccbench.common import catalog
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, is_done
    from ccbench.drivers.sweep_spec import load_sweep
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    tier = catalog.budgets().get("cpu")
    assert tier.comparable_versions("image").start < tier.version == tier.comparable_versions("text").start
    path = _write(tmp_path, """\
        name: v
        budget: cpu
        runs: [{tasks: [imagenette, sst2], method: dense}]
        """)
    jobs = {j.config["task"]: j for j in JobGraph(load_sweep(path)).jobs}
    for task in ("imagenette", "sst2"):
        body = run_body("dense", task=task)
        body["task"]["version"] = jobs[task].config["task_version"]
        body["budget"]["version"] = tier.version - 1
        body["method"]["knob"]["chosen_by"] = "default"
        body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                          "repeat_mismatches": 0}
        commit_record(finalize(body), samples(), tmp_path / "results")
    index = RecordIndex(tmp_path / "results")
    assert is_done(jobs["imagenette"], index) and not is_done(jobs["sst2"], index)


def test_retime_reruns_only_the_records_whose_timing_was_disturbed(tmp_path, capsys):
    """``--retime`` counts a run record whose latency check failed as missing (its job re-measures it); a
    record timed on an idle machine stays done, and without ``--retime`` both are done."""
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, command, is_done
    from ccbench.drivers.sweep_spec import load_sweep
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    path = _write(tmp_path, """\
        name: t
        budget: cpu
        runs: [{task: sst2, method: early-exit, grid: [25, 50]}]
        """)
    job = JobGraph(load_sweep(path)).jobs[0]
    for target, ok in ((25.0, True), (50.0, False)):
        body = run_body("early-exit", knob=("threshold", target / 100))
        body["method"]["grid"] = [{"target": target, "reached": target, "marked": False}]
        body["task"]["version"] = job.config["task_version"]
        body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                          "repeat_mismatches": 0}
        body["metrics"]["latency"]["batchN"]["check"] = {"ok": ok, "dense_vs_dense_speedup": 1.0 if ok else 0.7}
        commit_record(finalize(body), samples(), tmp_path / "results")
    assert is_done(job, RecordIndex(tmp_path / "results"))
    index = RecordIndex(tmp_path / "results", retime=True)
    argv = command(job, index, None)
    assert not is_done(job, index) and argv[argv.index("--grid") + 1] == "50"
    assert main(["sweep", str(path), "--dry-run", "--retime", "--results-dir", str(tmp_path / "results")]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.endswith("1 to run"), head


def test_a_grid_record_does_not_stand_for_a_user_point_at_the_same_value(tmp_path):
    """A grid record that calibrated to threshold 0.5 is its target's row; a job asking for threshold=0.5 by
    name still runs (its row would never appear otherwise)."""
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, is_done
    from ccbench.drivers.sweep_spec import load_sweep
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    path = _write(tmp_path, """\
        name: p
        budget: cpu
        runs: [{task: sst2, method: early-exit, points: {threshold: [0.5]}}]
        """)
    job = JobGraph(load_sweep(path)).jobs[0]
    body = run_body("early-exit", knob=("threshold", 0.5))
    body["task"]["version"] = job.config["task_version"]
    body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                      "repeat_mismatches": 0}
    grid = {**body, "method": {**body["method"], "grid": [{"target": 50.0, "reached": 50.0, "marked": False}]}}
    commit_record(finalize(grid), samples(), tmp_path / "results")
    assert not is_done(job, RecordIndex(tmp_path / "results"))
    commit_record(finalize(body), samples(), tmp_path / "results")
    assert is_done(job, RecordIndex(tmp_path / "results"))


def test_graph_orders_sources_first_and_splits_retraining_knobs(tmp_path):
    from ccbench.drivers.sweep_jobs import JobGraph
    from ccbench.drivers.sweep_spec import load_sweep

    path = _write(tmp_path, """\
        name: g
        budget: smoke
        seeds: [0, 1]
        runs:
          - {task: imagenette, method: tome, points: {r: [1, 2]}}
          - {task: imagenette, method: static-depth, points: {blocks: [2, 3]}}
          - {task: imagenette-a, method: early-exit, points: {threshold: [0.5]}}
        transfers:
          - {source: {method: early-exit, task: imagenette-a, point: 0.5}, to: imagenette-b, protocols: [head-only, full]}
        """)
    graph = JobGraph(load_sweep(path))
    labels = [j.label for j in graph.jobs]
    keys = [j.key for j in graph.jobs]
    assert len(set(keys)) == len(keys)
    # tome evaluates dense's model: dense's run is not listed, so tome runs alone (and fails clearly if the
    # model is missing); static-depth retrains per value: one job per value and seed
    assert sum("static-depth" in label for label in labels) == 4
    assert sum(label.startswith("run tome") for label in labels) == 2
    # each transfer comes after its (implied) source run, with nothing but that source's other derived jobs
    # between them (a machine that must train the source again trains it once for all of them)
    for job in graph.jobs:
        for dep in job.depends_on:
            assert keys.index(dep) < keys.index(job.key)
        if job.kind != "run":
            between = graph.jobs[keys.index(job.depends_on[0]) + 1:keys.index(job.key)]
            assert all(j.kind != "run" and j.depends_on == job.depends_on for j in between), job.label
    assert sum(label.startswith("transfer") for label in labels) == 4
    assert sum(label.startswith("run early-exit on imagenette-a") for label in labels) == 2


def test_the_ranking_sweep_expands_to_every_method_at_the_grid_times_three_seeds(tmp_path):
    from ccbench.common import catalog
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, command
    from ccbench.drivers.sweep_spec import load_sweep

    graph = JobGraph(load_sweep(REPO / "sweeps" / "cpu-ranking.yaml"))
    index = RecordIndex(tmp_path)
    runs = [j for j in graph.jobs if j.kind == "run"]
    methods = catalog.methods()
    image = {m for m in methods.names() if "image" in methods.metadata(m)["modalities"]}
    text = {m for m in methods.names() if "text" in methods.metadata(m)["modalities"]}
    for task, expected in (("imagenette", image), ("sst2", text), ("mrpc", text)):
        jobs = [j for j in runs if j.config["task"] == task]
        assert {j.config["method"] for j in jobs} == expected, task
        for method in expected:   # three seeds, one job each (the avit-masked reference: seed 1's A-ViT models are
            # gone with the machine that trained them, and a retrained copy is refused; see the sweep file)
            seeds = [0, 2] if method == "avit-masked" else [0, 1, 2]
            assert sorted(j.config["seed"] for j in jobs if j.config["method"] == method) == seeds, method
    for job in runs:
        argv = command(job, index, None)
        knob = methods.metadata(job.config["method"])["knob"]
        if job.config["method"] == "dense":
            assert "--grid" not in argv and job.config["points"] is None
            continue
        fig5 = (job.config["method"], job.config["task"]) == ("avit", "imagenette")   # Fig. 5: >= 5 points
        masked_s2 = (job.config["method"], job.config["seed"]) == ("avit-masked", 2)   # its A-ViT models at 25 % only
        assert argv[argv.index("--grid") + 1] == ("25,40,50,60,75,90" if fig5 else "25" if masked_s2 else "25,50,75")
        # a retraining knob's candidates travel with the grid (layer-skip trains at the targets themselves)
        assert ("--knob" in argv) == (knob.get("needs_retraining", False) and not knob.get("value_is_share", False))
    assert len(runs) == 3 * (1 + len(image - {"dense"})) - 1 + 2 * 3 * (1 + len(text - {"dense"}))


def test_a_grid_job_asks_only_for_its_missing_targets(tmp_path):
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, command, is_done
    from ccbench.drivers.sweep_spec import load_sweep
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    path = _write(tmp_path, """\
        name: g
        budget: cpu
        runs: [{task: sst2, method: early-exit, grid: [25, 50, 75]}]
        """)
    job = JobGraph(load_sweep(path)).jobs[0]
    body = run_body("early-exit", knob=("threshold", 0.5))
    body["method"]["grid"] = [{"target": 25.0, "reached": 26.0, "marked": False}]
    body["task"]["version"] = job.config["task_version"]
    body["budget"]["version"] = job.config["budget_version"]
    commit_record(finalize(body), samples(), tmp_path / "results")
    index = RecordIndex(tmp_path / "results")   # a record from before validation (no evidence) is not done
    argv = command(job, index, None)
    assert argv[argv.index("--grid") + 1] == "25,50,75" and not is_done(job, index)
    assert RecordIndex(tmp_path / "results", current_only=False).grid_point(job.config, 25.0) is not None

    body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                      "repeat_mismatches": 0}
    commit_record(finalize(body), samples(), tmp_path / "results")
    index = RecordIndex(tmp_path / "results")
    argv = command(job, index, None)
    assert argv[argv.index("--grid") + 1] == "50,75" and not is_done(job, index)


def test_a_source_at_a_grid_target_resolves_to_the_grid_record_and_no_other(tmp_path):
    """A shift/transfer source named by `grid` waits for the run job whose grid holds its target (the ranking
    sweep's, when both are in one sweep) and resolves to the record calibrated to that target; a source
    without `point` or `grid` never resolves to a grid record (it is the run with the knob chosen on
    calibration)."""
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, command, outputs
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    path = _write(tmp_path, """\
        name: g
        budget: cpu
        runs: [{task: sst2, method: early-exit, grid: [25, 50, 75]}]
        shifts:
          - {source: {method: early-exit, task: sst2, grid: 50}, to: [imdb]}
          - {source: {method: early-exit, task: sst2}, to: [imdb]}
        """)
    graph = JobGraph(load_sweep(path))
    grid_run = graph.jobs[0]
    at_50, default = [j for j in graph.jobs if j.kind == "shift"]
    assert at_50.depends_on == [grid_run.key] and "at grid 50 %" in at_50.label
    assert default.depends_on != [grid_run.key]   # its own (calibrated-knob) run job
    assert graph.job(default.depends_on[0]).config.get("grid") is None

    body = run_body("early-exit", knob=("threshold", 0.5))
    body["method"]["knob"]["chosen_by"] = "grid: calibrated to 25, 50, 75 % of dense useful MACs"
    body["method"]["grid"] = [{"target": 50.0, "reached": 50.4, "marked": False}]
    body["task"]["version"] = grid_run.config["task_version"]
    body["budget"]["version"] = grid_run.config["budget_version"]
    body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                      "repeat_mismatches": 0}
    record_path = commit_record(finalize(body), samples(), tmp_path / "results")
    index = RecordIndex(tmp_path / "results")
    [(out, held)] = outputs(at_50, index)
    assert out.identity["source_id"] == json.loads(record_path.read_text())["id"] and not held
    assert command(at_50, index, None)[:2] == ["shift", str(record_path.resolve())]
    # `ccbench sweep --accept-other-cpu-copies` hands the choice to every shift and transfer job, not to runs
    assert command(at_50, index, None, True)[-1] == "--accept-other-cpu-copy"
    assert "--accept-other-cpu-copy" not in command(at_50, index, None) + command(grid_run, index, None, True)
    assert index.source_record(default.config["source"]) is None   # the grid record is not the default run
    with pytest.raises(Exception, match="at grid 50 %|no run record"):
        command(at_50, RecordIndex(tmp_path / "empty"), None)


def test_the_track_sweep_has_three_seeds_per_transferred_method_and_every_protocol():
    """sweeps/cpu-track.yaml (issue 25): every transferred method has seeds 0-2 under every protocol that
    applies to it on the image pair (all four with decision parameters, head-only and full without) and under
    head-only and full on text (the router protocols left out there for cost, as the file says), image and text pairs
    (sst2 -> an Amazon domain, an Amazon domain -> another), a shift of each seed's model, and its sources on
    the ranking sweep's tasks are the ranking sweep's own configurations (same method, task, seed, grid target)."""
    from ccbench.common.protocols import PROTOCOLS
    from ccbench.drivers.sweep_jobs import JobGraph

    spec = load_sweep(REPO / "sweeps" / "cpu-track.yaml")
    graph = JobGraph(spec)
    transfers = [j for j in graph.jobs if j.kind == "transfer"]
    with_decision = {"early-exit", "moe-topk", "moefication"}   # exit heads, routers
    pairs = set()
    for entry in spec.transfers:
        s = entry.source
        pairs.add((s.task, entry.to))
        text = entry.to.startswith("amazon-")
        want = set(PROTOCOLS) if s.method in with_decision and not text else {"head-only", "full"}
        assert set(entry.protocols) == want, s
        for protocol in want:
            seeds = sorted(j.config["source"]["seed"] for j in transfers if (
                j.config["source"]["method"], j.config["source"]["task"], j.config["to"], j.config["protocol"])
                == (s.method, s.task, entry.to, protocol))
            assert seeds == [0, 1, 2], (s, protocol)
        if s.method != "dense":
            assert s.grid == 50.0, s
    assert ("imagenette-a", "imagenette-b") in pairs and ("sst2", "amazon-kitchen") in pairs
    assert any(a.startswith("amazon-") and b.startswith("amazon-") and a != b for a, b in pairs)
    shifted = {(j.config["source"]["method"], j.config["source"]["task"], j.config["source"]["seed"])
               for j in graph.jobs if j.kind == "shift"}
    for method in ("dense", "avit", "early-exit", "moe-topk"):
        assert {(method, "imagenette", seed) for seed in (0, 1, 2)} <= shifted
    for method in ("dense", "early-exit", "evit", "moefication"):
        assert {(method, task, seed) for task in ("sst2", "amazon-books") for seed in (0, 1, 2)} <= shifted
    ranking = [j.config for j in JobGraph(load_sweep(REPO / "sweeps" / "cpu-ranking.yaml")).jobs]
    for job in graph.jobs:
        src = job.config.get("source")
        if src is None or src["task"] not in {c["task"] for c in ranking}:
            continue
        assert any((c["method"], c["task"], c["seed"]) == (src["method"], src["task"], src["seed"])
                   and (src.get("grid") in (c.get("grid") or []) if src.get("grid") else not c.get("grid"))
                   for c in ranking), job.label


@pytest.mark.parametrize("body, message", [
    ("runs: [{task: imagenette, method: dense, grid: [25]}]", "has no knob, so no compute grid"),
    ("shifts: [{source: {method: dense, task: imagenette, grid: 50}, to: [imagenette-c]}]", "drop the source's `grid`"),
    ("shifts: [{source: {method: avit, task: imagenette, grid: 50, point: 0.5}, to: [imagenette-c]}]", "not both"),
    ("runs: [{task: imagenette, method: avit, grid: [25], points: {threshold: [0.5]}}]", "drop its `points`"),
    ("runs: [{task: imagenette, method: avit, grid: [0]}]", "between 0 and 100"),
])
def test_a_bad_grid_in_a_sweep_is_refused_in_one_line(body, message, tmp_path, capsys):
    test_a_bad_sweep_file_is_refused_in_one_line(body, message, tmp_path, capsys)


# -- running jobs --
@pytest.fixture
def smoke_env(tiny_data, isolated_cache, monkeypatch):
    """Jobs' subprocesses find the tiny data through CCBENCH_DATA and share the test's cache."""
    monkeypatch.setenv("CCBENCH_DATA", str(tiny_data))
    return tiny_data


def _sweep(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ccbench", "sweep", *args, "--quiet"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_concurrent_sweeps_over_overlapping_grids_write_every_record_once(smoke_env, tmp_path):
    results = tmp_path / "results"
    a = _write(tmp_path, """\
        name: a
        budget: smoke
        runs:
          - {task: imagenette, method: dense}
          - {task: imagenette, method: tome, points: {r: [1]}}
        """, "a.yaml")
    b = _write(tmp_path, """\
        name: b
        budget: smoke
        runs:
          - {task: imagenette, method: tome, points: {r: [1, 2]}}
          - {task: imagenette, method: dense}
        """, "b.yaml")
    procs = [_sweep(str(p), "--results-dir", str(results)) for p in (a, b)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    records = _runs(results)
    assert _configs(records) == [("dense", "None"), ("tome", "1"), ("tome", "2")]  # each exactly once
    assert len({r["id"] for r in records}) == 3
    assert not (results / ".claims").exists()


@pytest.fixture
def ray_cluster():
    """A local Ray cluster with two workers (2 CPUs; every smoke job reserves one), shared by the test."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_worker_niceness", "0")  # as ccbench.drivers.sweep_ray does for a cluster it starts
    # workers import this checkout's ccbench (as `ccbench sweep --executor ray` arranges when it starts Ray)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


def test_ray_smoke_sweep_writes_four_records_then_schedules_nothing(smoke_env, ray_cluster, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["sweep", str(SMOKE), "--executor", "ray", "--results-dir", str(results), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok ") == 4 and "4 ran, 0 already there, 0 failed" in out
    records = _runs(results)
    assert _configs(records) == [("avit", "0.5"), ("dense", "None"), ("early-exit", "0.5"), ("tome", "1")]
    assert all(r["training_processes"] == 1 for r in records if r["method"]["name"] != "tome")
    assert main(["sweep", str(SMOKE), "--executor", "ray", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "4 jobs, 4 with their records" in out and "0 to run" in out and " ok " not in out
    assert len(_runs(results)) == 4


def test_ray_a_failing_job_is_reported_and_the_others_land(smoke_env, ray_cluster, tmp_path, capsys):
    results = tmp_path / "results"
    path = _write(tmp_path, """\
        name: failing
        budget: smoke
        resources: {cpus: 1}
        runs:
          - {task: imagenette, method: dense}
          - {task: imagenette, method: avit, points: {threshold: [0.5]}}
          - {task: imagenette, method: static-depth, points: {blocks: [9]}}   # the smoke backbone has 4 blocks
          - {task: imagenette, method: early-exit, points: {threshold: [0.5]}}
        """)
    assert main(["sweep", str(path), "--executor", "ray", "--results-dir", str(results), "--quiet"]) == 1
    out = capsys.readouterr().out
    failed = [ln for ln in out.splitlines() if " failed " in ln and "static-depth" in ln]
    assert len(failed) == 1 and "blocks=9" in failed[0] and "ccbench: error:" in failed[0], out
    assert "3 ran, 0 already there, 1 failed" in out
    assert _configs(_runs(results)) == [("avit", "0.5"), ("dense", "None"), ("early-exit", "0.5")]


def test_local_failing_source_skips_its_dependents(smoke_env, tmp_path, capsys):
    """A shift whose source run fails is skipped (and reported), not run."""
    path = _write(tmp_path, """\
        name: dep
        budget: smoke
        shifts:
          - {source: {method: static-depth, task: imagenette, point: 9}, to: [imagenette-c]}
        """)
    assert main(["sweep", str(path), "--results-dir", str(tmp_path / "r"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "failed  run static-depth" in out and "skipped shift static-depth" in out
    assert "not run: run static-depth on imagenette (smoke, seed 0) blocks=9 failed" in out


def test_a_per_target_grid_counts_only_records_of_models_trained_for_their_target(tmp_path):
    """A-ViT's grid trains one model per target: a record calibrated to 25 % on a model trained for another
    compute (the default prior, before per-target training) does not stand for the 25 % point."""
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, command, cost
    from ccbench.drivers.sweep_spec import load_sweep
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    path = _write(tmp_path, """\
        name: a
        budget: cpu
        runs: [{task: imagenette, method: avit, grid: [25, 50]}]
        """)
    graph = JobGraph(load_sweep(path))
    [job] = graph.jobs
    body = run_body("avit", knob=("threshold", 0.05), task="imagenette")
    body["task"].update(version=job.config["task_version"], modality="image")
    body["budget"]["version"] = job.config["budget_version"]
    body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 0,
                                      "repeat_mismatches": 0}
    body["method"]["grid"] = [{"target": 25.0, "reached": 58.5, "marked": True}]
    commit_record(finalize(body), samples(), tmp_path / "results")
    index = RecordIndex(tmp_path / "results")
    assert index.grid_point(job.config, 25.0) is None
    body["method"]["grid"] = [{"target": 25.0, "reached": 26.0, "marked": False, "trained_for_target": True}]
    commit_record(finalize(body), samples(), tmp_path / "results")
    index = RecordIndex(tmp_path / "results")
    assert index.grid_point(job.config, 25.0) is not None
    argv = command(job, index, None)
    assert argv[argv.index("--grid") + 1] == "50"
    assert "per grid value" in cost(job, graph, index)


def test_a_record_whose_predictions_depended_on_the_batch_is_run_again(tmp_path):
    """A record failing validate's determinism check is never ranked, so the sweep does not count it as done."""
    from ccbench.drivers.sweep_jobs import JobGraph, RecordIndex, command
    from ccbench.drivers.sweep_spec import load_sweep
    from ccbench.reporting.records import commit_record, finalize
    from record_helpers import run_body, samples

    path = _write(tmp_path, """\
        name: d
        budget: cpu
        runs: [{task: sst2, method: early-exit, grid: [25]}]
        """)
    job = JobGraph(load_sweep(path)).jobs[0]
    body = run_body("early-exit", knob=("threshold", 0.3))
    body["method"]["grid"] = [{"target": 25.0, "reached": 25.0, "marked": False}]
    body["task"]["version"] = job.config["task_version"]
    body["budget"]["version"] = job.config["budget_version"]
    body["metrics"]["determinism"] = {"samples": 32, "batch_size": 8, "batch1_vs_batchN_mismatches": 8,
                                      "repeat_mismatches": 0}
    commit_record(finalize(body), samples(), tmp_path / "results")
    assert RecordIndex(tmp_path / "results").grid_point(job.config, 25.0) is None
    assert "--grid" in command(job, RecordIndex(tmp_path / "results"), None)
    body["metrics"]["determinism"]["batch1_vs_batchN_mismatches"] = 0
    commit_record(finalize(body), samples(), tmp_path / "results")
    assert RecordIndex(tmp_path / "results").grid_point(job.config, 25.0) is not None
