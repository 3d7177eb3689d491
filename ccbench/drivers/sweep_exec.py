"""Running one sweep job, and the ``local`` executor (sequential, in this process's order).

A job runs the existing driver as a **subprocess**, ``python -m ccbench <argv>`` (the argv a user would
type, see :func:`ccbench.drivers.sweep_jobs.command`), rather than calling ``cli.main`` in-process: each job gets a
fresh process (torch thread settings, RNG state, memory and any crash stay with it), its output goes to
one log file per job, and the same function serves the local executor and a Ray worker, whose process
is reused across tasks. The cost is an interpreter and torch import per job (a few seconds), small next
to any job of the cpu tier. Only what the job still lacks is run, under the claims of
:mod:`ccbench.drivers.sweep_claims`, so concurrent sweeps into one results folder never measure one
configuration twice.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .sweep_jobs import Job, RecordIndex, command, outputs

ENV_PREFIXES = ("CCBENCH_", "HF_", "OMP_", "MKL_")  # what a job takes from the sweep's environment


@dataclass
class Context:
    """What every job of one sweep shares: the results folder (absolute), the data root, where job
    logs go, the working directory and environment the drivers run in, and the folder holding the
    ``ccbench`` package (put first on ``PYTHONPATH``, so every process imports the same code)."""

    results_dir: str
    data_dir: str | None
    log_dir: str
    cwd: str
    env: dict
    package_root: str
    retime: bool = False   # records with a disturbed latency timing count as missing
    accept_other_cpu_copies: bool = False   # shift and transfer jobs pass --accept-other-cpu-copy


def make_context(results_dir: Path, data_dir: str | None, log_dir: Path, retime: bool = False,
                 accept_other_cpu_copies: bool = False) -> Context:
    """The :class:`Context` of a sweep started in this process."""
    import ccbench

    root = str(Path(ccbench.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    return Context(str(Path(results_dir).resolve()), data_dir, str(Path(log_dir).resolve()), os.getcwd(), env, root,
                   retime, accept_other_cpu_copies)


@dataclass
class JobResult:
    """How a job ended: ``status`` is ``ok``, ``failed``, ``exists`` (its records were there, maybe
    written by a concurrent sweep) or ``skipped`` (a job it depends on failed); ``error`` is one line;
    ``seconds`` the wall time; ``log`` the job's log file."""

    key: str
    label: str
    status: str
    seconds: float = 0.0
    error: str = ""
    log: str = ""


def _error_line(log: Path) -> str:
    """The line of a failed job's log that says why: the CLI's ``ccbench: error:`` line, else the last
    non-empty line (a traceback's exception)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("ccbench: error:")]
    return (errors[-1] if errors else lines[-1] if lines else "no output")[:300]


def execute_job(job: Job, ctx: Context, on_wait=None) -> JobResult:
    """Run what ``job`` lacks and return how it ended (never raises for a failing job: its error is in
    the result). Waits while a concurrent sweep holds a claim on one of its records."""
    from ccbench.common.errors import UserError

    from .sweep_claims import claimed

    t0 = time.time()
    log = Path(ctx.log_dir) / f"{job.key[:12]}.log"
    try:
        missing = [o.key for o, held in outputs(job, RecordIndex(ctx.results_dir, retime=ctx.retime)) if not held]
        if not missing:
            return JobResult(job.key, job.label, "exists")
        with claimed(Path(ctx.results_dir), missing, on_wait):
            index = RecordIndex(ctx.results_dir, retime=ctx.retime)  # a concurrent sweep may have written them
            if all(held for _, held in outputs(job, index)):
                return JobResult(job.key, job.label, "exists", time.time() - t0)
            argv = command(job, index, ctx.data_dir, ctx.accept_other_cpu_copies)
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, **ctx.env,
                   "PYTHONPATH": os.pathsep.join([ctx.package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
            with open(log, "w") as out:
                out.write(f"$ ccbench {' '.join(argv)}\n")
                out.flush()
                rc = subprocess.call([sys.executable, "-m", "ccbench", *argv], cwd=ctx.cwd, env=env,
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except UserError as err:
        return JobResult(job.key, job.label, "failed", time.time() - t0, str(err).splitlines()[0], "")
    if rc != 0:
        return JobResult(job.key, job.label, "failed", time.time() - t0, f"exit {rc}: {_error_line(log)}", str(log))
    return JobResult(job.key, job.label, "ok", time.time() - t0, "", str(log))


def skipped(job: Job, because: str) -> JobResult:
    """The result of a job not run because the job ``because`` names failed."""
    return JobResult(job.key, job.label, "skipped", error=f"not run: {because} failed")


def run_local(jobs: list[Job], ctx: Context, report) -> None:
    """The ``local`` executor: each job in order (dependencies first), one at a time, in this process;
    ``report(result)`` after each. A job whose dependency failed (or was skipped) is skipped."""
    bad: dict[str, str] = {}
    for job in jobs:
        failed_dep = next((bad[d] for d in job.depends_on if d in bad), None)
        def on_wait(key: str, job: Job = job) -> None:
            print(f"waiting: another sweep is writing a record of {job.label} (claim {key[:12]} in "
                  f"{ctx.results_dir}/.claims)", flush=True)

        result = skipped(job, failed_dep) if failed_dep else execute_job(job, ctx, on_wait)
        if result.status in ("failed", "skipped"):
            bad[job.key] = job.label
        report(result)
