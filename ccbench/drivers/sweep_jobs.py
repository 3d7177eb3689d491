"""A sweep file expanded into a graph of jobs, and which of them the results folder already holds.

A job is one driver command: ``ccbench run`` of one method on one task at one seed (all its explicit
operating points together when they share one trained model; one job per point when the knob retrains),
``ccbench shift`` of one source run to one target, or ``ccbench transfer`` of one source run under one
protocol. Each job is keyed by the sha256 of its full configuration (tier and task versions, method,
seed, points; for derived jobs the source run's configuration too). Each *output* of a job (one record)
has an identity matched against the records under ``results/`` through :mod:`ccbench.reporting.records`'s
loader, so a job whose records all exist is skipped and a rerun does only what is missing (a run job
is rerun with only its missing points). Record ids are content hashes that include the measurement
(date, timings), so a job is matched to records by what the records say, not by id.

Dependencies: a shift or transfer waits for the run job that produces its source; a method that
evaluates or starts from another method's fine-tuned model (``evaluates_checkpoint_of``, ``starts_from``)
waits for that method's run jobs on the same task and seed. Where that method's records are already held (so
its job is skipped) but its model is not cached (a fresh machine), ``ccbench run`` trains the model first and
checks it against those records (:mod:`ccbench.drivers.source_check`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ccbench.common.protocols import canonical_protocol, eval_set_of
from ccbench.common.provenance import content_hash

from .sweep_spec import Resources, SourceRun, SweepSpec


@dataclass(frozen=True)
class Output:
    """One record a job writes: ``identity`` (a dict: what a matching record says) and its hash ``key``
    (the claim name of :mod:`ccbench.drivers.sweep_claims`)."""

    identity: dict

    @property
    def key(self) -> str:
        """sha256 hex of the identity."""
        return content_hash(self.identity)


@dataclass
class Job:
    """One driver command of a sweep. ``config`` is its full configuration and ``key`` its hash;
    ``run`` (kind ``run``) or ``source`` (kinds ``shift``/``transfer``) say what it runs; ``depends_on``
    holds the keys of the jobs it waits for."""

    kind: str
    config: dict
    label: str
    resources: Resources
    depends_on: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """sha256 hex of the job's full configuration."""
        return content_hash(self.config)


def _number_equal(a, b) -> bool:
    """Knob values compare as numbers (3 == 3.0); None only equals None."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)))
    except (TypeError, ValueError):
        return a == b


def _point_text(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _where(point, grid) -> str:
    """A source's operating point in a label: ``" at 0.5"``, ``" at grid 50 %"`` or ``""`` (the default run).

    >>> _where(0.5, None), _where(None, 50.0), _where(None, None)
    (' at 0.5', ' at grid 50 %', '')
    """
    if grid is not None:
        return f" at grid {_point_text(grid)} %"
    return "" if point is None else f" at {_point_text(point)}"


class JobGraph:
    """The jobs of a sweep in an order where every job comes after the jobs it depends on."""

    def __init__(self, spec: SweepSpec):
        from ccbench.common import catalog

        self.spec = spec
        self.tier = catalog.budgets().get(spec.budget)
        self._tasks = catalog.tasks()
        self._methods = catalog.methods()
        self.jobs: list[Job] = []
        self._by_key: dict[str, Job] = {}
        seeds = spec.seeds or [self.tier.seeds[0]]
        # seed-major: every run of the first seed before any of the next, so a sweep stopped part-way leaves
        # whole seeds (every method at its grid points) rather than a few methods with all their seeds
        for seed in sorted({s for entry in spec.runs for s in (entry.seeds or seeds)}):
            for entry in spec.runs:
                if seed not in (entry.seeds or seeds):
                    continue
                for task in entry.task_names:
                    for method in entry.method_names:
                        self._add_runs(method, task, seed, entry.points, entry.resources, entry.grid)
        for seed in seeds:
            for sh in spec.shifts:
                for target in sh.to:
                    self._add_derived("shift", sh.source, seed, {"to": target})
            for tr in spec.transfers:
                for protocol in tr.protocols:
                    self._add_derived("transfer", tr.source, seed, {"to": tr.to, "protocol": protocol})
        self._link_checkpoint_sources()
        self.jobs = self._ordered()

    # -- expansion --
    def _resources(self, override: Resources | None) -> Resources:
        if override is not None:
            return override
        if self.spec.resources is not None:
            return self.spec.resources
        return Resources(cpus=self.tier.threads or 1, gpus=1 if self.tier.device == "cuda" else 0)

    def _run_config(self, method: str, task: str, seed: int) -> dict:
        return {"budget": self.tier.name, "budget_version": self.tier.version, "task": task,
                "task_version": self._tasks.get(task).version, "method": method, "seed": seed}

    def _add(self, job: Job) -> Job:
        if job.key not in self._by_key:
            self._by_key[job.key] = job
            self.jobs.append(job)
        return self._by_key[job.key]

    def _add_runs(self, method: str, task: str, seed: int, points: dict | None,
                  resources: Resources | None, grid: list[float] | None = None) -> list[Job]:
        base = self._run_config(method, task, seed)
        knob = self._methods.metadata(method)["knob"]
        if points is None:
            groups = [None]
        else:
            name, values = next(iter(points.items()))
            # a grid's candidates are one job: the grid chooses among them before training
            groups = [[v] for v in values] if knob.get("needs_retraining") and not grid else [list(values)]
        jobs = []
        for group in groups:
            cfg = {"kind": "run", **base,
                   "points": None if group is None else {knob["name"]: group}}
            if grid:
                cfg["grid"] = sorted(float(t) for t in grid)  # only grid jobs carry the key: others keep theirs
            where = f"{method} on {task} ({self.tier.name}, seed {seed})"
            label = (f"run {where}" if group is None else
                     f"run {where} {knob['name']}={','.join(_point_text(v) for v in group)}")
            if grid:
                label += f" grid {','.join(_point_text(t) for t in cfg['grid'])} %"
            jobs.append(self._add(Job("run", cfg, label, self._resources(resources))))
        return jobs

    def _source_job(self, source: SourceRun, seed: int) -> Job:
        """The run job producing ``source`` (added when the sweep does not list it: a grid source's is a grid
        run at its one target, whose record is the one any grid run of that configuration calibrates to it)."""
        for job in self.jobs:
            c = job.config
            if job.kind != "run" or (c["method"], c["task"], c["seed"]) != (source.method, source.task, seed):
                continue
            if source.grid is not None:
                if any(_number_equal(t, source.grid) for t in c.get("grid") or []):
                    return job
                continue
            if c.get("grid"):   # a grid run's records are calibrated to its targets: not a point's or the default's
                continue
            pts = c["points"]
            if source.point is None and pts is None:
                return job
            if source.point is not None and pts is not None and any(
                    _number_equal(v, source.point) for v in next(iter(pts.values()))):
                return job
        if source.grid is not None:
            return self._add_runs(source.method, source.task, seed, None, None, grid=[source.grid])[0]
        knob = self._methods.metadata(source.method)["knob"]["name"]
        points = None if source.point is None else {knob: [source.point]}
        return self._add_runs(source.method, source.task, seed, points, None)[0]

    def _add_derived(self, kind: str, source: SourceRun, seed: int, extra: dict) -> None:
        src = self._source_job(source, seed)
        # a grid source's configuration names its target (a point source's keeps the key it always had)
        grid = {} if source.grid is None else {"grid": float(source.grid)}
        cfg = {"kind": kind, "source": {**self._run_config(source.method, source.task, seed),
                                        "point": source.point, **grid}, **extra}
        point = _where(source.point, source.grid)
        label = f"{kind} {source.method} ({source.task}{point}, seed {seed}) -> {extra['to']}"
        if kind == "transfer":
            label += f" {extra['protocol']}"
        self._add(Job(kind, cfg, label, self._resources(None), depends_on=[src.key]))

    def _link_checkpoint_sources(self) -> None:
        """A run of a method that evaluates or starts from another method's fine-tuned model waits for
        that method's run jobs (same tier, task and seed) in this sweep."""
        for job in self.jobs:
            if job.kind != "run":
                continue
            c = job.config
            meta = self._methods.metadata(c["method"])
            modality = self._tasks.get(c["task"]).modality
            needs = {meta.get("evaluates_checkpoint_of"), meta.get("starts_from", {}).get(modality)} - {None}
            for other in self.jobs:
                o = other.config
                if other.kind == "run" and o["method"] in needs and (o["task"], o["seed"]) == (c["task"], c["seed"]):
                    if other.key not in job.depends_on:
                        job.depends_on.append(other.key)

    def _ordered(self) -> list[Job]:
        """Jobs in declaration order, each moved after what it depends on (depth-first), and every derived
        job (shift, transfer) right after its source's run, beside the other derived jobs of that source.
        A machine whose cache lacks a source model (a new machine, or a sweep resumed on another one) then
        trains it once for all of them, and a sweep stopped part-way leaves whole sources done."""
        derived_of: dict[str, list[Job]] = {}
        for job in self.jobs:
            if job.kind != "run":
                derived_of.setdefault(job.depends_on[0], []).append(job)
        done, out = set(), []

        def visit(job: Job, stack: tuple = ()):
            if job.key in done:
                return
            if job.key in stack:
                raise ValueError(f"dependency cycle through {job.label}")
            for dep in job.depends_on:
                visit(self._by_key[dep], stack + (job.key,))
            done.add(job.key)
            out.append(job)
            for derived in derived_of.get(job.key, []):
                visit(derived, stack)

        for job in self.jobs:
            visit(job)
        return out

    def job(self, key: str) -> Job:
        """The job with ``key``."""
        return self._by_key[key]


# -- what the results folder holds --
def _disturbed_timing(record: dict) -> bool:
    """Whether run ``record``'s latency timing failed its check at batch 1 or N (``metrics.latency.<batch>.check``:
    the machine was busy while it timed; :meth:`ccbench.reporting.record_schema.Timing.disturbed`)."""
    from ccbench.reporting.records import typed

    if record.get("kind", "run") != "run":
        return False
    latency = typed(record).metrics.latency
    return latency.batch1.disturbed() or latency.batchN.disturbed()


def _comparable_versions(budget: str, version: int, task: str) -> range:
    """The tier versions whose run records of ``task`` stand for tier ``budget`` at ``version`` (a version that
    changed only the other modality keeps them: ``BudgetSpec.comparable_since``); just ``version`` when the
    tier or task is not registered or the tier is at another version."""
    from ccbench.common import catalog

    if budget not in catalog.budgets() or task not in catalog.tasks():
        return range(version, version + 1)
    tier = catalog.budgets().get(budget)
    if tier.version != version:
        return range(version, version + 1)
    return tier.comparable_versions(catalog.tasks().get(task).modality)


def _not_shown_deterministic(record: dict) -> bool:
    """Whether ``record`` is a run record whose determinism check (``ccbench validate``) does not pass: written
    before validation existed (no evidence; the leaderboard shows it as the previous version), or its
    predictions depended on the batch or the call. The leaderboard never ranks either, so a sweep does not
    count it as done and runs its configuration again."""
    from ccbench.reporting.validation import check_determinism

    return record.get("kind", "run") == "run" and not check_determinism(record).passed


def _outdated_method(record: dict) -> bool:
    """Whether ``record`` is a run record written by an earlier version of its method's implementation on its
    modality (``ccbench validate``'s ``method-version``): the leaderboard shows it as the previous version, so
    a sweep runs its configuration again with the current implementation."""
    from ccbench.reporting.validation import check_method_version

    return record.get("kind", "run") == "run" and not check_method_version(record).passed


def _outdated_task(record: dict) -> bool:
    """Whether ``record`` is a run record measured on an earlier version of its task (``ccbench validate``'s
    ``task-version``: another training or calibration split)."""
    from ccbench.reporting.validation import check_task_version

    return record.get("kind", "run") == "run" and not check_task_version(record).passed


class RecordIndex:
    """The verified records under a results folder (read once through :func:`ccbench.reporting.records.load_records`,
    bad files reported and skipped), with the lookups a sweep needs. With ``current_only`` (the default) run
    records that predate ``ccbench validate``, that an earlier version of their method wrote, or that were
    measured under a tier version the tier no longer compares with its own or on another version of their task,
    are left out: a sweep runs their configurations again (without it, they count, so a dry run can call the job
    stale). With ``retime`` so are run
    records whose latency timing failed its check (:func:`_disturbed_timing`)."""

    def __init__(self, results_dir: str | os.PathLike, current_only: bool = True, retime: bool = False):
        from ccbench.reporting.records import load_records

        self.results_dir = Path(results_dir)
        self.current_only = current_only
        self._all = load_records(results_dir, kind=None)
        outdated = (_not_shown_deterministic, _outdated_method, _outdated_task)
        self.records = [(path, r) for path, r in self._all
                        if not (current_only and any(check(r) for check in outdated))
                        and not (retime and _disturbed_timing(r))]

    def _runs(self, cfg: dict):
        versions = (_comparable_versions(cfg["budget"], cfg["budget_version"], cfg["task"]) if self.current_only
                    else range(0, cfg["budget_version"] + 1))
        for path, r in self.records:
            if r.get("kind", "run") != "run":
                continue
            task_version = r["task"].get("version") if self.current_only else cfg["task_version"]
            if (r["budget"]["name"], r["task"]["name"], task_version, r["method"]["name"],
                    r["seed"]) == (cfg["budget"], cfg["task"], cfg["task_version"], cfg["method"], cfg["seed"]) \
                    and r["budget"].get("version") in versions:
                yield path, r

    def run_point(self, cfg: dict, point) -> tuple[Path, dict] | None:
        """The latest run record of the run configuration ``cfg`` at knob value ``point`` (``None``: a
        run whose knob was neither given by the user nor calibrated to a grid target), or ``None``."""
        hits = []
        for path, r in self._runs(cfg):
            knob = r["method"]["knob"]
            if point is None and knob.get("chosen_by") != "user" and not r["method"].get("grid"):
                hits.append((path, r))
            elif point is not None and not r["method"].get("grid") and _number_equal(knob.get("value"), point):
                hits.append((path, r))   # a grid record that landed on this value is its target's row, not this
        return max(hits, key=lambda h: h[1].get("date", "")) if hits else None

    def grid_point(self, cfg: dict, target: float) -> tuple[Path, dict] | None:
        """The latest run record of the run configuration ``cfg`` calibrated to grid ``target`` (% of
        dense; its ``method.grid`` names the target), or ``None``. For a method whose grid trains one model
        per target (``trains_per_grid_target``) only a record of the model trained towards ``target`` counts:
        one calibrated on a model trained for another compute is a different experiment."""
        from ccbench.common.catalog import counted_grid_entries

        hits = [(path, r) for path, r in self._runs(cfg)
                if any(_number_equal(e.get("target"), target)
                       for e in counted_grid_entries(cfg["method"], r["method"].get("grid") or []))]
        return max(hits, key=lambda h: h[1].get("date", "")) if hits else None

    def source_record(self, source: dict) -> tuple[Path, dict] | None:
        """The run record a derived job's ``source`` configuration names: its grid target's record
        (:meth:`grid_point`) or its knob point's (:meth:`run_point`), or ``None``."""
        if source.get("grid") is not None:
            return self.grid_point(source, source["grid"])
        return self.run_point(source, source["point"])

    def derived(self, kind: str, source_id: str, target: str, protocol: str | None = None,
                eval_set: dict | None = None) -> tuple[Path, dict] | None:
        """A ``shift``/``transfer`` record of the source run ``source_id`` on ``target`` (and ``protocol``;
        and, given ``eval_set``, measured on that eval set: :func:`ccbench.common.protocols.eval_set_of`) at the
        target's registered version, or ``None``."""
        from ccbench.common.catalog import tasks

        version = tasks().get(target).version if target in tasks() else None
        for path, r in self.records:
            if (r.get("kind") == kind and r["source"]["record_id"] == source_id and r["task"]["name"] == target
                    and (version is None or (r["task"].get("version") or 1) == version)
                    and (protocol is None or canonical_protocol(r.get("protocol", "")) == canonical_protocol(protocol))
                    and (eval_set is None or eval_set_of(r) == eval_set)):
                return path, r
        return None

    def mean_wall_s(self, kind: str, budget: str, task: str, method: str) -> float | None:
        """Mean seconds per record of earlier records of this kind, tier, task and method (an estimate of a
        job's cost), or ``None``: :func:`seconds_per_record` of their ``(seed, date, wall_s)``."""
        stamps = [(r.get("seed"), r.get("date"), r["wall_s"]) for _, r in self._all
                  if r.get("kind", "run") == kind and r["budget"]["name"] == budget
                  and r["task"]["name"] == task and r["method"]["name"] == method
                  and isinstance(r.get("wall_s"), (int, float))]
        return seconds_per_record(stamps)


def seconds_per_record(stamps: list[tuple]) -> float | None:
    """Mean seconds per record of records stamped ``(seed, date, wall_s)`` (``date`` ISO 8601, ``wall_s``
    seconds since their command started). One command that writes several records (a grid run) stamps
    each with the time since it started, so records of one seed whose start (date minus wall_s) lies within
    2 s of the previous one's are one command: its last stamp is split over its records.

    >>> seconds_per_record([(0, "2026-01-01T00:10:00+00:00", 600.0), (0, "2026-01-01T00:20:00+00:00", 1200.0),
    ...                     (1, "2026-01-01T01:00:00+00:00", 300.0)])   # (1,200 + 300) s / 3 records
    500.0
    >>> seconds_per_record([]) is None
    True
    """
    from datetime import datetime

    by_seed: dict = {}
    commands: list[list[float]] = []   # the wall_s stamps of each command
    for seed, date, wall in stamps:
        try:
            by_seed.setdefault(seed, []).append((datetime.fromisoformat(date).timestamp() - wall, wall))
        except (TypeError, ValueError):   # no usable date: the record is a command of its own
            commands.append([wall])
    for runs in by_seed.values():
        last = None
        for start, wall in sorted(runs):
            if last is not None and start - last <= 2.0:
                commands[-1].append(wall)
            else:
                commands.append([wall])
            last = start
    records = sum(len(c) for c in commands)
    return sum(max(c) for c in commands) / records if records else None


def outputs(job: Job, index: RecordIndex) -> list[tuple[Output, bool]]:
    """Each record ``job`` writes, with whether the results folder already holds it. A derived job
    whose source record does not exist yet has one output, not held."""
    from ccbench.common import catalog

    c = job.config
    if job.kind == "run":
        ident = {k: c[k] for k in ("budget", "budget_version", "task", "task_version", "method", "seed")}
        if c.get("grid"):
            return [(Output({"kind": "run", **ident, "grid_target": t}), index.grid_point(c, t) is not None)
                    for t in c["grid"]]
        points = [None] if c["points"] is None else next(iter(c["points"].values()))
        return [(Output({"kind": "run", **ident, "point": p}), index.run_point(c, p) is not None) for p in points]
    src = index.source_record(c["source"])
    if src is None:
        return [(Output({k: v for k, v in c.items()}), False)]
    ident = {"kind": job.kind, "source_id": src[1]["id"], "to": c["to"], "protocol": c.get("protocol")}
    # measured on the eval set the target's spec declares today: one measured on another (before the spec
    # declared it) does not count as done
    eval_set = catalog.tasks().get(c["to"]).transfer_eval_set() if job.kind == "transfer" else None
    return [(Output(ident), index.derived(job.kind, src[1]["id"], c["to"], c.get("protocol"), eval_set) is not None)]


def is_done(job: Job, index: RecordIndex) -> bool:
    """True when every record ``job`` writes is already in the results folder."""
    return all(held for _, held in outputs(job, index))


def command(job: Job, index: RecordIndex, data_dir: str | None, accept_other_cpu_copy: bool = False) -> list[str]:
    """The ``ccbench`` argv that does what ``job`` still lacks (a run job: only its missing points),
    with records going to ``index.results_dir`` (a shift or transfer job: with ``--accept-other-cpu-copy`` when
    ``accept_other_cpu_copy``). A derived job whose source record is missing raises :class:`UserError`."""
    from ccbench.common.errors import UserError

    c = job.config
    results = str(Path(index.results_dir).resolve())
    extra = ["--results-dir", results, "--quiet"] + (["--data-dir", data_dir] if data_dir else [])
    if job.kind == "run":
        argv = ["run", "--method", c["method"], "--task", c["task"], "--budget", c["budget"],
                "--seed", str(c["seed"]), "--resume", *extra]
        if c.get("grid"):
            missing = [t for t in c["grid"] if index.grid_point(c, t) is None]
            argv += ["--grid", ",".join(_point_text(t) for t in missing or c["grid"])]
            if c["points"] is not None:   # the candidates of a knob that retrains
                name, values = next(iter(c["points"].items()))
                argv += ["--knob", f"{name}={','.join(_point_text(v) for v in values)}"]
            return argv
        if c["points"] is not None:
            name, values = next(iter(c["points"].items()))
            missing = [v for v in values if index.run_point(c, v) is None]
            argv += ["--knob", f"{name}={','.join(_point_text(v) for v in missing or values)}"]
        return argv
    s = c["source"]
    src = index.source_record(s)
    if src is None:
        point = _where(s["point"], s.get("grid"))
        raise UserError(f"no run record of {s['method']} on {s['task']}{point} (seed {s['seed']}) under {results}: "
                        f"its source run did not land")
    argv = [job.kind, str(src[0].resolve()), "--to", c["to"]]
    if job.kind == "transfer":
        argv += ["--protocol", c["protocol"]]
    return argv + extra + (["--accept-other-cpu-copy"] if accept_other_cpu_copy else [])


def cost(job: Job, graph: JobGraph, index: RecordIndex) -> str:
    """What ``job`` would cost, in words: training samples and records, and the mean wall time of
    earlier records like it."""
    c = job.config
    tier = graph.tier
    if job.kind == "run":
        meta = graph._methods.metadata(c["method"])
        n = (len(c["grid"]) if c.get("grid") else
             1 if c["points"] is None else len(next(iter(c["points"].values()))))
        if meta.get("evaluates_checkpoint_of"):
            train = (f"no training (evaluates {meta['evaluates_checkpoint_of']}'s model; trains it first "
                     "where the cache lacks it)")
        elif not meta.get("trains", True):
            train = "no training"
        elif graph._tasks.get(c["task"]).modality == "text" and tier.text is not None:
            b = tier.text.tasks.get(c["task"])
            train = (f"trains {b.samples} samples" if b and b.samples else
                     f"trains {b.epochs:g} epochs" if b else "trains (no text budget)")
        else:
            train = f"trains {tier.finetune.samples} samples"
        per_value = meta["knob"].get("needs_retraining") or meta["knob"].get("trains_per_grid_target")
        if c.get("grid") and per_value and train.startswith("trains"):
            train += " per grid value"
        text = f"{train}, {n} record{'s' if n > 1 else ''}"
        wall = index.mean_wall_s("run", c["budget"], c["task"], c["method"])
    else:
        s = c["source"]
        recipe = tier.transfer_recipe(graph._tasks.get(c["to"]).modality)
        text = "evaluation only" if job.kind == "shift" else f"trains {recipe.samples if recipe else '?'} samples"
        text += " (and the source model first, where the cache lacks it)"
        wall = index.mean_wall_s(job.kind, s["budget"], c["to"], s["method"])
    if wall is not None:
        text += f", ~{wall / 60:.1f} min per record before"
    return text
