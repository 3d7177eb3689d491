"""The sweep file (``ccbench sweep <file>``): a declarative grid of runs, shifts and transfers.

A sweep names one budget tier, its seeds, and three lists (every name is checked against the registries
before any work, an unknown one with the closest known names suggested)::

    name: cpu-imagenette
    budget: cpu
    seeds: [0]                     # default: the tier's first seed
    resources: {cpus: 2, gpus: 0}  # per job, for the ray executor (default: the tier's threads; 1 GPU on cuda tiers)
    runs:                          # one `ccbench run` per (task, method, seed) ...
      - {tasks: [imagenette], methods: [dense]}
      - {tasks: [imagenette], method: avit, points: {threshold: [0.05, 0.1]}}   # explicit operating points
      - {tasks: [imagenette], methods: [evit, tome], grid: [25, 50, 75]}       # the compute grid (% of dense)
      - {tasks: [imagenette], method: static-depth, grid: [25, 50, 75], points: {blocks: [3, 6, 9]}}
    shifts:                        # `ccbench shift` of a source run to each target
      - {source: {method: avit, task: imagenette, point: 0.1}, to: [imagenette-c]}
      - {source: {method: evit, task: imagenette, grid: 50}, to: [imagenette-c]}   # the grid run's 50 % record
    transfers:                     # `ccbench transfer` of a source run under each protocol
      - {source: {method: dense, task: imagenette-a}, to: imagenette-b, protocols: [head-only, full]}

``points`` are knob values (the method's knob, named as in ``ccbench ls methods``); without them the
knob is chosen on the calibration split, as ``ccbench run`` does. ``grid`` (shares of dense useful MACs,
in %) is ``ccbench run --grid``: one record per target, the knob calibrated to it (a knob that needs
retraining picks among its ``points``, else its sweep; a method without a knob cannot take a grid). A source
with ``grid`` is the record a grid run calibrated to that target (the same record whichever sweep made it);
one without ``point`` or ``grid`` is the run whose knob was not given by the user nor set by a grid (chosen
on calibration, or a method without a knob). A source's run is part of the sweep even when ``runs`` does
not list it (a grid source: a grid run at its one target).
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ccbench.common.errors import UserError, unknown_name_error
from ccbench.common.specs import load_yaml_spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """What one job reserves on a Ray node: ``cpus`` (logical CPUs) and ``gpus`` (whole GPUs)."""

    cpus: float = Field(1, gt=0)
    gpus: float = Field(0, ge=0)


class RunEntry(_Strict):
    """Runs of ``methods`` x ``tasks`` x seeds; ``points`` (one method only) maps its knob to values."""

    method: str | None = None
    methods: list[str] = []
    task: str | None = None
    tasks: list[str] = []
    points: dict[str, list[float | int]] | None = None
    grid: list[float] | None = Field(None, min_length=1)  # targets, % of dense useful MACs
    seeds: list[int] | None = None  # default: the sweep's
    resources: Resources | None = None

    @model_validator(mode="after")
    def _one_or_many(self) -> "RunEntry":
        if (self.method is None) == (not self.methods):
            raise ValueError("give either `method` or `methods`")
        if (self.task is None) == (not self.tasks):
            raise ValueError("give either `task` or `tasks`")
        if self.points is not None and len(self.method_names) != 1:
            raise ValueError("`points` needs exactly one method (the knob is the method's)")
        if self.points is not None and (len(self.points) != 1 or not next(iter(self.points.values()))):
            raise ValueError("`points` is one knob name with a non-empty list of values, e.g. {threshold: [0.5, 0.9]}")
        if self.grid is not None and not all(0 < t < 100 for t in self.grid):
            raise ValueError("`grid` targets are shares of dense compute in % between 0 and 100, e.g. [25, 50, 75]")
        return self

    @property
    def method_names(self) -> list[str]:
        """The methods of this entry."""
        return [self.method] if self.method else list(self.methods)

    @property
    def task_names(self) -> list[str]:
        """The tasks of this entry."""
        return [self.task] if self.task else list(self.tasks)


class SourceRun(_Strict):
    """The run a shift or transfer starts from: ``method`` on ``task`` at knob value ``point``, or at the
    compute-grid target ``grid`` (% of dense: the record ``ccbench run --grid`` calibrated to it); with
    neither, the run whose knob was not user-given nor calibrated to a grid."""

    method: str
    task: str
    point: float | int | None = None
    grid: float | None = Field(None, gt=0, lt=100)

    @model_validator(mode="after")
    def _point_or_grid(self) -> SourceRun:
        if self.point is not None and self.grid is not None:
            raise ValueError("a source names its knob `point` or its `grid` target (% of dense), not both")
        return self


class ShiftEntry(_Strict):
    """``ccbench shift`` of ``source`` to each task of ``to``."""

    source: SourceRun
    to: list[str] = Field(min_length=1)


class TransferEntry(_Strict):
    """``ccbench transfer`` of ``source`` to ``to`` under each of ``protocols``."""

    source: SourceRun
    to: str
    protocols: list[str] = Field(min_length=1)


class SweepSpec(_Strict):
    """A whole sweep file (see the module docstring)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    description: str = ""
    budget: str
    seeds: list[int] | None = None
    resources: Resources | None = None
    runs: list[RunEntry] = []
    shifts: list[ShiftEntry] = []
    transfers: list[TransferEntry] = []


def load_sweep(path: str | Path) -> SweepSpec:
    """Parse and check the sweep file at ``path``: its shape (pydantic, unknown keys refused) and every
    name in it (tier, tasks, methods, knobs and their values, shift targets, protocols). A mistake raises
    a one-line :class:`UserError` naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist (the shipped ones are in sweeps/)")
    spec = load_yaml_spec(path, SweepSpec)
    try:
        check_names(spec)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    return spec


def check_names(spec: SweepSpec) -> None:
    """Raise :class:`UserError` for the first unknown or inapplicable name of ``spec``."""
    from ccbench.common import catalog
    from ccbench.common.method_meta import KnobMetadata
    from ccbench.common.protocols import PROTOCOLS

    methods, tasks = catalog.methods(), catalog.tasks()
    catalog.budgets().entry(spec.budget)

    def method_on(method: str, task: str) -> None:
        meta = methods.metadata(method)
        modality = tasks.metadata(task)["modality"]
        if modality not in meta["modalities"]:
            raise UserError(f"method {method!r} does not apply to {modality} task {task!r} "
                            f"(it supports: {', '.join(meta['modalities'])})")

    def point_ok(method: str, knob_name: str | None, value) -> None:
        knob = methods.metadata(method)["knob"]
        if knob_name is not None and knob_name != knob["name"]:
            raise UserError(f"{method}'s knob is {knob['name']!r}, not {knob_name!r}")
        if knob["name"] == "none":
            raise UserError(f"method {method!r} has no knob; drop its points")
        domain = KnobMetadata.model_validate({"default": None, "direction": "none",
                                              **{k: v for k, v in knob.items() if k not in ("default", "sweep")}})
        try:
            domain.check(value)
        except ValueError:
            raise UserError(f"{knob['name']}={value} for {method}: {knob['name']} takes {domain.domain()}") from None

    for entry in spec.runs:
        for method in entry.method_names:
            for task in entry.task_names:
                method_on(method, task)
            knob = methods.metadata(method)["knob"]
            if entry.grid is not None and knob["name"] == "none":
                raise UserError(f"method {method!r} has no knob, so no compute grid: list it in a run without `grid`")
            if entry.grid is not None and entry.points is not None and not knob.get("needs_retraining"):
                raise UserError(f"{method}: `grid` chooses {knob['name']!r} on calibration; drop its `points` "
                                f"(only a knob that retrains takes candidate points with a grid)")
        for knob_name, values in (entry.points or {}).items():
            for v in values:
                point_ok(entry.method_names[0], knob_name, v)
    for entry in [*spec.shifts, *spec.transfers]:
        method_on(entry.source.method, entry.source.task)
        if entry.source.point is not None:
            point_ok(entry.source.method, None, entry.source.point)
        if entry.source.grid is not None and methods.metadata(entry.source.method)["knob"]["name"] == "none":
            raise UserError(f"method {entry.source.method!r} has no knob, so no grid record: drop the source's `grid`")
    for entry in spec.shifts:
        for target in entry.to:
            meta = tasks.get(target)
            if meta.shift is None:
                raise UserError(f"task {target!r} is not a shift target (shift targets: "
                                f"{', '.join(n for n in tasks.names() if tasks.get(n).shift is not None)})")
    for entry in spec.transfers:
        tasks.entry(entry.to)
        for protocol in entry.protocols:
            if protocol not in PROTOCOLS:
                raise unknown_name_error("transfer protocol", protocol, PROTOCOLS)
