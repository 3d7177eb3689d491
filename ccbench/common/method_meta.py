"""Metadata every method declares (as a literal ``METADATA`` dict in its module)."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from .names import NAME_RULE, is_safe_name


def _safe(kind: str, value: str) -> str:
    """``value`` when it follows :data:`ccbench.common.names.NAME_RULE`, else a ``ValueError`` naming ``kind``."""
    if not is_safe_name(value):
        raise ValueError(f"{kind} {value!r} is not allowed: use {NAME_RULE}")
    return value


class KnobMetadata(BaseModel):
    """The single inference-time trade-off knob. ``direction`` says which way saves compute;
    ``sweep`` lists the values tried when calibrating; ``needs_retraining`` is False when any
    value can be applied to one trained model."""

    model_config = ConfigDict(extra="forbid")
    name: str
    default: float | int | None
    direction: Literal["lower = less compute", "higher = less compute", "none"]
    sweep: list[float] = []
    needs_retraining: bool = False
    # the value is itself the share of dense compute aimed at (0-1]: a compute grid trains at target / 100
    # instead of choosing among candidates by the untrained model's compute (which it does not predict)
    value_is_share: bool = False
    # a sweepable knob whose reach is set in training (A-ViT: the threshold moves compute only a few points
    # around the depth its halting prior trained towards): a compute grid trains one model per target, built
    # with ``compute_target=target / 100`` (a share of dense, 0-1), then calibrates the knob on that model
    trains_per_grid_target: bool = False
    # the knob's domain, checked before any work: integer-valued, and bounds (inclusive unless exclusive)
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    @model_validator(mode="after")
    def _default_and_sweep_in_domain(self) -> "KnobMetadata":
        if self.trains_per_grid_target and self.needs_retraining:
            raise ValueError("a knob that needs retraining already trains per grid target: drop trains_per_grid_target")
        for value in ([self.default] if self.default is not None else []) + list(self.sweep):
            self.check(value)
        return self

    def domain(self) -> str:
        """The allowed values in words, e.g. ``'a number in (0, 1]'`` or ``'an integer >= 0'``.

        >>> KnobMetadata(name="r", default=3, direction="none", integer=True, minimum=0).domain()
        'an integer >= 0'
        >>> KnobMetadata(name="keep", default=0.5, direction="none", minimum=0, maximum=1,
        ...              exclusive_minimum=True).domain()
        'a number in (0, 1]'
        """
        kind = "an integer" if self.integer else "a number"
        low = None if self.minimum is None else f"{self.minimum:g}"
        high = None if self.maximum is None else f"{self.maximum:g}"
        if low is not None and high is not None:
            return f"{kind} in {'(' if self.exclusive_minimum else '['}{low}, {high}]"
        if low is not None:
            return f"{kind} {'>' if self.exclusive_minimum else '>='} {low}"
        if high is not None:
            return f"{kind} <= {high}"
        return f"{kind}"

    def check(self, value: float | int) -> float | int:
        """``value`` if it lies in the knob's domain (integers returned as ``int``), else ``ValueError``.

        >>> knob = KnobMetadata(name="r", default=3, direction="none", integer=True, minimum=0)
        >>> knob.check(2.0), knob.check(5)
        (2, 5)
        >>> knob.check(0.5)
        Traceback (most recent call last):
        ...
        ValueError: r=0.5 is not an integer >= 0
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{self.name}={value!r} is not {self.domain()}")
        bad = ValueError(f"{self.name}={value:g} is not {self.domain()}")
        if self.integer:
            if float(value) != int(value):
                raise bad
            value = int(value)
        if self.minimum is not None and (value < self.minimum or (self.exclusive_minimum and value == self.minimum)):
            raise bad
        if self.maximum is not None and value > self.maximum:
            raise bad
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        """Knob names end up in folder names and table cells."""
        return _safe("knob name", name)


ROUTING_STATISTICS = ("utilization", "dead_experts", "entropy", "jain", "load_imbalance", "class_specialization",
                      "position_specialization", "tokens_without_expert")  # what a width method may declare constant


class ConstantByConstruction(BaseModel):
    """Routing statistics a method's construction fixes (e.g. expert choice: every expert takes exactly its
    capacity from every sample, so its load is uniform and carries no class information); tables show
    them as "n/a (by construction)". ``knob_at_least``: only from this knob value on (MoEfication at
    k = E); ``why``: one sentence for the reader."""

    model_config = ConfigDict(extra="forbid")
    metrics: list[Literal[ROUTING_STATISTICS]]
    knob_at_least: float | None = None
    why: str

    def applies(self, knob_value) -> bool:
        """Whether the declaration holds at ``knob_value`` (``None``: the method's default).

        >>> ConstantByConstruction(metrics=["jain"], knob_at_least=8, why="k = E").applies(4)
        False
        """
        return self.knob_at_least is None or (knob_value is not None and float(knob_value) >= self.knob_at_least)


def constant_statistics(meta: dict, knob_value) -> dict:
    """The routing statistics ``meta`` (a method's ``METADATA``) declares constant by construction at
    ``knob_value``, as a record field: ``{"statistics": [...], "why": "..."}`` (empty lists when none).

    >>> constant_statistics({"constant_by_construction": [{"metrics": ["jain"], "why": "uniform"}]}, 1.0)
    {'statistics': ['jain'], 'why': 'uniform'}
    """
    names: list[str] = []
    why: list[str] = []
    for entry in meta.get("constant_by_construction", []):
        c = ConstantByConstruction.model_validate(entry)
        if c.applies(knob_value):
            names += [m for m in c.metrics if m not in names]
            why.append(c.why)
    return {"statistics": names, "why": "; ".join(why)}


class MethodMetadata(BaseModel):
    """A method's declared metadata (validated; unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    # built-in families: dense, static, token, width, depth; a plug-in may name its own (a safe name), whose
    # shift/transfer analyses it registers with ccbench.measurement.analyses.register_family_analyses
    family: str
    paper: str
    bibtex: str
    knob: KnobMetadata
    modalities: list[Literal["image", "text"]] = ["image"]
    trains: bool = True
    evaluates_checkpoint_of: str | None = None
    starts_from: dict[Literal["image", "text"], str] = {}  # modality -> method whose fine-tuned model it starts from
    constant_by_construction: list[ConstantByConstruction] = []  # width family: statistics fixed by construction
    # modality -> the implementation's version there (default 1): raised when a change alters the method's
    # results on that modality, so that records of the earlier version are re-run, never ranked with the new
    versions: dict[Literal["image", "text"], int] = {}
    description: str

    @field_validator("versions")
    @classmethod
    def _positive_versions(cls, versions: dict) -> dict:
        """Versions count up from 1."""
        for modality, version in versions.items():
            if version < 1:
                raise ValueError(f"versions.{modality} must be an integer >= 1, got {version}")
        return versions

    @field_validator("family")
    @classmethod
    def _safe_family(cls, family: str) -> str:
        """Families are table cells and group keys."""
        return _safe("family", family)


def method_version(meta: dict, modality: str) -> int:
    """The version of a method's implementation on ``modality`` (``"image"`` or ``"text"``) from its
    ``METADATA`` (``versions``; 1 when not declared).

    >>> method_version({"versions": {"text": 2}}, "text"), method_version({"versions": {"text": 2}}, "image")
    (2, 1)
    """
    return int((meta.get("versions") or {}).get(modality, 1))
