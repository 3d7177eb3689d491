"""The compute grid: a method's knob values chosen on the calibration split to land on fixed shares of
dense useful compute (25, 50 and 75 % by default), so methods are compared at equal compute instead of
by interpolation.

A sweepable knob is calibrated on one trained model: the declared sweep first, then, where a target
falls between two measured values, bisection between them (every integer between them for an integer
knob) until a value lands within the tolerance. Where a target lies beyond every measured share, values
beyond the sweep's end are tried, within the knob's declared domain (:func:`domain_step`): the sweep is
where calibration starts, not what the method can reach. A target no value reaches gets the nearest point
reached, marked. A knob that needs retraining is chosen from its candidate values by the compute of the untrained
model (exact where compute does not depend on the weights: depth, resolution, slots), and the trained
model's share is measured again before it is recorded.

Shares here are fractions of dense (0-1); targets and the record's ``grid`` entries are in % of dense.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ccbench.common.errors import UserError

from .knobs import CalibrationPoint

DEFAULT_GRID = (25.0, 50.0, 75.0)
TOLERANCE = 2.0        # points of % of dense within which a target counts as reached
MAX_REFINE = 6         # extra calibration evaluations per target


@dataclass(frozen=True)
class GridPoint:
    """The knob value chosen for ``target`` (% of dense): its calibration point and whether the target
    was out of reach (``marked``: ``reached`` is more than :data:`TOLERANCE` points away)."""

    target: float
    point: CalibrationPoint

    @property
    def reached(self) -> float:
        """The point's useful share in % of dense."""
        return round(100 * self.point.useful_fraction, 2)

    @property
    def marked(self) -> bool:
        return abs(self.reached - self.target) > TOLERANCE

    def record(self) -> dict:
        """The record's ``method.grid`` entry."""
        return {"target": self.target, "reached": self.reached, "marked": self.marked, "tolerance": TOLERANCE,
                "calibration_score": self.point.top1}


def parse_grid(text: str | None) -> list[float] | None:
    """``"25,50,75"`` -> ``[25.0, 50.0, 75.0]`` (% of dense, each in (0, 100)); ``None`` stays ``None``.

    >>> parse_grid("25, 50,75")
    [25.0, 50.0, 75.0]
    >>> parse_grid("25,150")
    Traceback (most recent call last):
    ...
    ccbench.common.errors.UserError: --grid 25,150: each target is a share of dense compute in % between 0 and 100 (exclusive), e.g. --grid 25,50,75
    """
    if text is None:
        return None
    try:
        values = sorted({float(v) for v in str(text).split(",")})
        if not values or not all(0 < v < 100 for v in values):
            raise ValueError
    except ValueError:
        raise UserError(f"--grid {text}: each target is a share of dense compute in % between 0 and 100 "
                        f"(exclusive), e.g. --grid 25,50,75") from None
    return values


def nearest(points: list[CalibrationPoint], target: float) -> CalibrationPoint:
    """The point whose useful share is nearest ``target`` (% of dense); ties: the better score.

    >>> pts = [CalibrationPoint(0.5, 80.0, 0.30), CalibrationPoint(0.9, 85.0, 0.52)]
    >>> nearest(pts, 50.0).knob, nearest(pts, 10.0).knob
    (0.9, 0.5)
    """
    return min(points, key=lambda p: (abs(100 * p.useful_fraction - target), -p.top1))


def _between(lo, hi, integer: bool) -> list:
    """The values to try between knob values ``lo`` and ``hi``: the midpoint, or every integer strictly
    between them for an integer knob (nearest the middle first)."""
    a, b = sorted((lo, hi))
    if integer:
        mid = (a + b) / 2
        return sorted(range(int(a) + 1, int(b)), key=lambda v: abs(v - mid))
    return [(a + b) / 2]


def domain_step(knob: dict) -> Callable[[float, bool], float | None]:
    """``step(value, less)``: the next knob value beyond ``value`` towards less compute (``less``) or more,
    within the knob's declared domain (``direction``, ``minimum``/``exclusive_minimum``, ``maximum``,
    ``integer``; :class:`ccbench.common.method_meta.KnobMetadata`), or ``None`` at the domain's end. Towards
    a bound it goes halfway there; away from an open end it doubles.

    >>> tome = domain_step({"direction": "higher = less compute", "integer": True, "minimum": 0})
    >>> tome(5, True), tome(0, True), tome(1, False), tome(0, False)
    (10, 1, 0, None)
    >>> keep = domain_step({"direction": "lower = less compute", "minimum": 0, "exclusive_minimum": True, "maximum": 1})
    >>> keep(0.4, True), keep(0.9, False), keep(1.0, False)
    (0.2, 0.95, None)
    >>> domain_step({"direction": "none"})(3, True) is None
    True
    """
    direction = knob.get("direction")
    integer = bool(knob.get("integer"))
    low, high = knob.get("minimum"), knob.get("maximum")

    def step(value, less: bool):
        if direction not in ("lower = less compute", "higher = less compute"):
            return None
        down = less == (direction == "lower = less compute")   # the knob value goes down
        if down:
            bound = low
            nxt = value / 2 if bound is None or bound == 0 else (value + bound) / 2
            if integer:
                nxt = min(int(nxt), int(value) - 1)
            if bound is not None and (nxt < bound or (knob.get("exclusive_minimum") and nxt <= bound)):
                return None
        else:
            nxt = (value + high) / 2 if high is not None else (value * 2 if value > 0 else 1)
            if integer:
                nxt = max(int(round(nxt)), int(value) + 1)
            if high is not None and nxt > high:
                return None
        nxt = nxt if integer else round(float(nxt), 6)
        return None if nxt == value else nxt

    return step


def calibrate_grid(measure: Callable[[float], CalibrationPoint], sweep: list, targets: list[float],
                   integer: bool = False, max_refine: int = MAX_REFINE,
                   step: Callable[[float, bool], float | None] | None = None
                   ) -> tuple[list[GridPoint], list[CalibrationPoint]]:
    """Choose a knob value per target (% of dense): ``measure(value)`` evaluates one value on the
    calibration split. Measures ``sweep``, then refines between the two measured values whose shares
    bracket a target not yet within :data:`TOLERANCE`; a target beyond every measured share is followed
    past the sweep's end with ``step`` (:func:`domain_step`; ``None``: no further) until it is bracketed,
    the domain ends or the share stops moving; at most ``max_refine`` evaluations per target. Returns
    the grid (one :class:`GridPoint` per target, in target order) and every point measured (by knob)."""
    measured: dict = {}

    def at(value) -> CalibrationPoint:
        if value not in measured:
            measured[value] = measure(value)
        return measured[value]

    for v in sweep:
        at(v)
    grid = []
    for target in targets:
        for _ in range(max_refine):
            best = nearest(list(measured.values()), target)
            if abs(100 * best.useful_fraction - target) <= TOLERANCE:
                break
            pts = sorted(measured.values(), key=lambda p: p.knob)
            bracket = next(((a, b) for a, b in zip(pts, pts[1:])
                            if min(a.useful_fraction, b.useful_fraction) * 100 < target
                            < max(a.useful_fraction, b.useful_fraction) * 100), None)
            if bracket is None:
                if step is None or not _step_beyond(measured, target, step, at):
                    break                      # out of the knob's reach: the nearest point, marked
                continue
            fresh = [v for v in _between(bracket[0].knob, bracket[1].knob, integer) if v not in measured]
            if not fresh:
                break
            at(fresh[0])
        grid.append(GridPoint(target, nearest(list(measured.values()), target)))
    return grid, sorted(measured.values(), key=lambda p: p.knob)


def _step_beyond(measured: dict, target: float, step, at) -> bool:
    """Measure the next value past the measured end nearest ``target`` (% of dense; beyond every measured
    share); False when the domain ends there, the model refuses the value, it was measured, or the share
    did not move."""
    by_share = sorted(measured.values(), key=lambda p: p.useful_fraction)
    less = target < 100 * by_share[0].useful_fraction
    end = by_share[0] if less else by_share[-1]
    value = step(end.knob, less)
    if value is None or value in measured:
        return False
    try:
        point = at(value)
    except ValueError:   # a value the declared domain allows but this model refuses (``set_knob``)
        return False
    return abs(point.useful_fraction - end.useful_fraction) > 1e-6


def values_of(grid: list[GridPoint]) -> list:
    """The distinct knob values of a grid, in target order (one record per value; a value that serves
    several targets, e.g. the cheapest a method reaches, is measured once)."""
    out = []
    for g in grid:
        if g.point.knob not in out:
            out.append(g.point.knob)
    return out


def grid_entries(grid: list[GridPoint], value) -> list[dict]:
    """The record's ``method.grid``: the entries of every target that ``value`` serves."""
    return [g.record() for g in grid if g.point.knob == value]
