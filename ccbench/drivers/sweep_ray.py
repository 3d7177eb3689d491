"""The ``ray`` executor of ``ccbench sweep``: each job a Ray task with its declared resources.

``ray.init()`` starts a local cluster (``num_cpus`` logical CPUs) or, with an address, joins an
existing one. A job that depends on others gets their results as task arguments, so Ray starts it only
once they have finished; if one of them failed it is skipped. Every task runs
:func:`ccbench.drivers.sweep_exec.execute_job`: the driver as a subprocess on the worker's node, writing into
the shared results folder (records are committed atomically, and claims keep two tasks from measuring
one configuration). On a cluster the checkout, ``results/``, the data and ``$CCBENCH_CACHE`` must be at
the same paths on every node (a shared filesystem).

Ray is an optional extra (``pip install -e ".[ray]"``); only this module imports it.
"""
from __future__ import annotations

import os

from ccbench.common.errors import UserError

from .sweep_exec import Context, JobResult, execute_job, skipped
from .sweep_jobs import Job


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install -e \".[ray]\" (or use --executor local)") from None
    return ray


def _run_one(job: Job, ctx: Context, *deps: JobResult) -> JobResult:
    """A Ray task: skip when a dependency did not succeed, else run the job."""
    for dep in deps:
        if dep.status in ("failed", "skipped"):
            return skipped(job, dep.label)
    return execute_job(job, ctx)


def run_ray(jobs: list[Job], ctx: Context, report, address: str | None = None, num_cpus: int | None = None,
            num_gpus: int | None = None) -> None:
    """Submit ``jobs`` (in dependency order) as Ray tasks and ``report(result)`` as each finishes.
    ``address``: join that cluster (``auto``: the one ``ray start`` set up on this node); None starts a
    local one with ``num_cpus`` CPUs (default: all) and ``num_gpus`` GPUs."""
    ray = _ray()
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        [ctx.package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}}
    started = not ray.is_initialized()
    if started:
        kwargs = dict(runtime_env=runtime_env, include_dashboard=False, log_to_driver=False,
                      configure_logging=False)
        if address:
            ray.init(address=address, **kwargs)
        else:
            # Ray runs workers at niceness 15 (background work); here the jobs are the work, and at 15 any
            # other process on the machine starves them
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
    try:
        task = ray.remote(max_retries=0)(_run_one)
        refs, owner = {}, {}
        for job in jobs:
            deps = [refs[d] for d in job.depends_on if d in refs]
            ref = task.options(num_cpus=job.resources.cpus, num_gpus=job.resources.gpus,
                               name=job.label[:100]).remote(job, ctx, *deps)
            refs[job.key], owner[ref] = ref, job
        pending = list(refs.values())
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            job = owner[ready[0]]
            try:
                result = ray.get(ready[0])
            except Exception as err:  # the task itself died (worker killed, node lost)
                result = JobResult(job.key, job.label, "failed", error=f"ray task died: {str(err).splitlines()[0]}")
            report(result)
    finally:
        if started:
            ray.shutdown()
