"""``ccbench sweep <file>``: a sweep file expanded into jobs, what is missing run by an executor.

Steps: the file is validated (:mod:`ccbench.drivers.sweep_spec`), expanded into a job graph
(:mod:`ccbench.drivers.sweep_jobs`), each job is looked up in the results folder, and the jobs that lack a
record go to the executor: ``local`` (sequential, :mod:`ccbench.drivers.sweep_exec`; imports nothing extra) or
``ray`` (:mod:`ccbench.drivers.sweep_ray`). Progress is a bar over the jobs (stderr) and one status line per
finished, failed or skipped job (stdout); a failing job does not stop the others (only the jobs that
depend on it are skipped). Exit code 0 when every job succeeded, 1 when any failed, 2 for a bad sweep
file. Each job's output is in ``$CCBENCH_CACHE/sweep-logs/<sweep>/<job key>.log``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

EXECUTORS = ("local", "ray")


def log_folder(sweep_name: str) -> Path:
    """Where the job logs of sweep ``sweep_name`` go: ``$CCBENCH_CACHE/sweep-logs/<name>``."""
    cache = Path(os.environ.get("CCBENCH_CACHE", Path.home() / ".cache" / "ccbench")).expanduser()
    return cache / "sweep-logs" / sweep_name


def run_sweep(path: str, executor: str = "local", results_dir: str | None = None, data_dir: str | None = None,
              dry_run: bool = False, address: str | None = None, num_cpus: int | None = None,
              progress: bool = True, retime: bool = False, accept_other_cpu_copies: bool = False) -> int:
    """Run (or with ``dry_run`` list) the jobs of the sweep file ``path`` that lack their records (with
    ``retime``, or whose run records' latency timing was disturbed); returns the exit code (0 all done, 1 some
    job failed). ``accept_other_cpu_copies``: shift and transfer jobs pass ``--accept-other-cpu-copy``."""
    from ccbench.common.errors import UserError, unknown_name_error
    from ccbench.reporting.records import results_root

    from .sweep_exec import make_context
    from .sweep_jobs import JobGraph, RecordIndex, cost, is_done
    from .sweep_spec import load_sweep

    if executor not in EXECUTORS:
        raise unknown_name_error("executor", executor, EXECUTORS)
    if address and executor != "ray":
        raise UserError("--address joins a Ray cluster: add --executor ray")
    spec = load_sweep(path)
    graph = JobGraph(spec)
    results = results_root(results_dir).resolve()
    index = RecordIndex(results, retime=retime)
    todo = [job for job in graph.jobs if not is_done(job, index)]
    legacy = RecordIndex(results, current_only=False, retime=retime)
    stale = [job for job in todo if is_done(job, legacy)]
    print(f"sweep {spec.name} ({spec.budget}): {len(graph.jobs)} jobs, {len(graph.jobs) - len(todo)} with "
          f"their records in {results}, {len(todo)} to run"
          + (f" ({len(stale)} of them held only by records from before validation, an earlier tier version or "
             "an earlier method or task version)" if stale else "")
          + ("" if dry_run else f" ({executor})"), flush=True)
    if dry_run:
        for job in graph.jobs:
            state = "done  " if job not in todo else "stale " if job in stale else "to run"
            after = f" [after {', '.join(d[:8] for d in job.depends_on)}]" if job.depends_on else ""
            print(f"  {state} {job.key[:8]} {job.label}: {cost(job, graph, index)}{after}")
        return 0
    if not todo:
        return 0
    ctx = make_context(results, data_dir, log_folder(spec.name), retime, accept_other_cpu_copies)
    report, summary = _reporter(len(todo), progress)
    t0 = time.time()
    try:
        if executor == "ray":
            from .sweep_ray import run_ray

            run_ray(todo, ctx, report, address=address, num_cpus=num_cpus)
        else:
            from .sweep_exec import run_local

            run_local(todo, ctx, report)
    finally:
        counts = summary()
    print(f"sweep {spec.name}: {counts.get('ok', 0)} ran, {counts.get('exists', 0)} already there, "
          f"{counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped in {time.time() - t0:.0f} s",
          flush=True)
    return 1 if counts.get("failed", 0) or counts.get("skipped", 0) else 0


def _reporter(total: int, progress: bool):
    """``(report, summary)``: ``report(result)`` prints one status line per job and advances a tqdm bar
    over the jobs (stderr); ``summary()`` closes the bar and returns the count of each status."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="jobs", unit="job", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    counts: dict[str, int] = {}

    def report(result) -> None:
        counts[result.status] = counts.get(result.status, 0) + 1
        n = sum(counts.values())
        line = f"[{n}/{total}] {result.status:<7} {result.label}"
        if result.status == "ok":
            line += f" ({result.seconds:.0f} s)"
        if result.error:
            line += f": {result.error}"
        if result.status == "failed" and result.log:
            line += f" (log: {result.log})"
        bar.write(line, file=sys.stdout)
        sys.stdout.flush()
        bar.update(1)

    def summary() -> dict[str, int]:
        bar.close()
        return counts

    return report, summary
