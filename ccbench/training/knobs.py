"""A method's compute knob: parse the user's values, turn a value into build settings, calibrate and
choose one on the calibration split, and label a setting.

``knob`` below is a method's ``METADATA["knob"]`` (:class:`ccbench.common.method_meta.KnobMetadata` as a dict);
its name is :data:`ccbench.reporting.record_schema.NO_KNOB` for a method without one.
"""
from __future__ import annotations

from dataclasses import dataclass

from ccbench.common.errors import UserError
from ccbench.common.messages import say
from ccbench.reporting.record_schema import NO_KNOB, knob_label

__all__ = ["CalibrationPoint", "calibrate_knob", "calibration_point", "check_knob_values", "choose_knob", "has_knob", "knob_label",
           "knob_settings", "parse_knob", "record_settings"]


def has_knob(knob: dict) -> bool:
    """Whether the method has a knob at all."""
    return knob["name"] != NO_KNOB


def parse_knob(text: str | None, knob: dict) -> list[float] | None:
    """``"threshold=0.9,0.99"`` (or ``"0.9,0.99"``) -> ``[0.9, 0.99]``, each value checked against the
    knob's declared domain before any work is done.

    >>> knob = {"name": "r", "integer": True, "minimum": 0}
    >>> parse_knob("r=0,2", knob)   # integers stay integers (record values, table labels)
    [0, 2]
    >>> parse_knob("r=0.5", knob)
    Traceback (most recent call last):
    ...
    ccbench.common.errors.UserError: --knob r=0.5: r takes an integer >= 0
    """
    if text is None:
        return None
    from ccbench.common.method_meta import KnobMetadata

    name, _, values = text.rpartition("=")
    if not has_knob(knob):
        raise UserError(f"this method has no knob; drop --knob {text}")
    if name and name != knob["name"]:
        raise UserError(f"this method's knob is {knob['name']!r}, not {name!r} (use --knob {knob['name']}=...)")
    items = [v.strip() for v in values.split(",")]
    if not all(items):
        raise UserError(f"--knob {text} has an empty value; e.g. --knob {knob['name']}={knob.get('default')}")
    domain = KnobMetadata.model_validate({"default": None, "direction": "none",
                                          **{k: v for k, v in knob.items() if k not in ("default", "sweep")}})
    parsed = []
    for item in items:
        try:
            parsed.append(domain.check(_number(item)))
        except ValueError:
            raise UserError(f"--knob {knob['name']}={item}: {knob['name']} takes {domain.domain()}") from None
    return parsed


def _number(text: str) -> int | float:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5 (ValueError otherwise)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def knob_settings(knob: dict, value) -> dict:
    """The build settings (``method.build(backbone, **settings)``) a knob value needs: ``{name: value}``
    when the knob shapes the trained model (``needs_retraining``), else ``{}`` (the value is applied
    with ``set_knob`` to one trained model).

    >>> knob_settings({"name": "slots", "needs_retraining": True}, 4), knob_settings({"name": "r"}, 4)
    ({'slots': 4}, {})
    """
    if value is None or not knob.get("needs_retraining") or not has_knob(knob):
        return {}
    return {knob["name"]: value}


def record_settings(knob: dict, method: dict) -> dict:
    """The build settings that rebuild the model of a record whose ``method`` field is ``method``:
    :func:`knob_settings` of its knob value, and ``compute_target`` (a share of dense, 0-1) when the model
    was trained towards its grid target (a ``trains_per_grid_target`` knob; the entry says
    ``trained_for_target``), as :func:`ccbench.drivers.runner.run_method` built it.

    >>> knob = {"name": "threshold", "trains_per_grid_target": True}
    >>> record_settings(knob, {"name": "avit", "knob": {"value": 0.5},
    ...                        "grid": [{"target": 25.0, "trained_for_target": True}]})
    {'compute_target': 0.25}
    >>> record_settings(knob, {"name": "avit", "knob": {"value": 0.5}, "grid": [{"target": 25.0}]})  # not trained for it
    {}
    """
    from ccbench.common.catalog import counted_grid_entries

    settings = knob_settings(knob, method["knob"]["value"])
    if knob.get("trains_per_grid_target"):
        aimed = counted_grid_entries(method["name"], method.get("grid") or [])
        if aimed:
            settings["compute_target"] = float(aimed[0]["target"]) / 100
    return settings


def check_knob_values(model, knob: dict, values: list | None) -> None:
    """Apply each user-given knob value to the untrained ``model`` once, so that a value the model
    refuses (beyond what the declared domain says, e.g. more blocks than the backbone has) fails
    before any training rather than after it."""
    if not values or not has_knob(knob):
        return
    initial = model.knob
    for value in values:
        try:
            model.set_knob(value)
        except ValueError as err:
            raise UserError(f"--knob {knob['name']}={value}: {err}") from None
    model.set_knob(initial)


@dataclass
class CalibrationPoint:
    """One knob value measured on the calibration split: main score (top-1 % for images; the task's
    main score for text, kept in the ``top1`` field) and useful share of dense."""

    knob: float
    top1: float
    useful_fraction: float


def choose_knob(points: list[CalibrationPoint], max_fraction: float) -> tuple[CalibrationPoint, bool]:
    """Best calibration top-1 among points at ``<= max_fraction`` of dense useful MACs (ties: less
    compute). When none qualifies, the cheapest point and ``False``.

    >>> pts = [CalibrationPoint(0.5, 80.0, 0.4), CalibrationPoint(0.9, 85.0, 0.55), CalibrationPoint(0.99, 90.0, 0.7)]
    >>> choose_knob(pts, 0.6)
    (CalibrationPoint(knob=0.9, top1=85.0, useful_fraction=0.55), True)
    """
    ok = [p for p in points if p.useful_fraction <= max_fraction]
    if ok:
        return max(ok, key=lambda p: (p.top1, -p.useful_fraction)), True
    return min(points, key=lambda p: p.useful_fraction), False


def calibration_point(model, value, work, table, batch_size: int, device: str, seed: int) -> CalibrationPoint:
    """``model`` at knob ``value`` (``None``: as it is) on ``work``'s calibration split (``table``: its cost
    table): main score and useful share of dense."""
    from ccbench.measurement.evaluate import evaluate_split
    from ccbench.measurement.measure import ComputeStats

    if value is not None:
        model.set_knob(value)
    ev = evaluate_split(model, work, work.splits["calibration"], batch_size, device)
    frac = ComputeStats.of(table, ev.trace).useful_share()
    score = work.scores(ev.logits, ev.labels, seed)["main_score"]["value"]
    return CalibrationPoint(value, round(score, 3), round(frac, 4))


def calibrate_knob(model, knob: dict, work, table, batch_size: int, device: str, max_compute: float,
                   seed: int) -> tuple[list[CalibrationPoint], list, str]:
    """Sweep the knob on ``work``'s calibration split (``table``: the model's cost table); return the
    sweep, the chosen value (as a one-item list) and how it was chosen: the best score at
    ``<= max_compute`` (a share) of dense useful MACs."""
    points = [calibration_point(model, v, work, table, batch_size, device, seed)
              for v in model.calibration_sweep(knob["sweep"]) or [knob["default"]]]
    best, met = choose_knob(points, max_compute)
    chosen_by = (f"calibration: best calibration score at <= {max_compute:.0%} of dense useful MACs"
                 if met else f"calibration: no value reached <= {max_compute:.0%} of dense; cheapest taken")
    say(f"knob {knob['name']}={best.knob} ({chosen_by}; calibration score {best.top1:.1f}, "
        f"{best.useful_fraction:.1%} of dense MACs)")
    return points, [best.knob], chosen_by
