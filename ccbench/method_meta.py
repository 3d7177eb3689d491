"""Metadata every method declares (as a literal ``METADATA`` dict in its module)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from .names import NAME_RULE, is_safe_name


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

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        """Knob names end up in folder names and table cells: :data:`ccbench.names.NAME_RULE`."""
        if not is_safe_name(name):
            raise ValueError(f"knob name {name!r} is not allowed: use {NAME_RULE}")
        return name


class MethodMetadata(BaseModel):
    """A method's declared metadata (validated; unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    family: Literal["dense", "static", "token", "width", "depth"]
    paper: str
    bibtex: str
    knob: KnobMetadata
    modalities: list[Literal["image", "text"]] = ["image"]
    trains: bool = True
    evaluates_checkpoint_of: str | None = None
    starts_from: dict[Literal["image", "text"], str] = {}  # modality -> method whose fine-tuned model it starts from
    description: str
