"""Typed result records (schema version 2): run, shift and transfer records as pydantic models.

Each field the reporting side reads is declared, typed and documented once here; everything else a
record holds (provenance, configs, per-condition details) is kept as written (``extra="allow"``).
Numbers are strict: a JSON ``true`` is no count, and an int stays an int (so labels format as before).

Version-1 files load through :func:`upgrade_v1`, a read adapter: it fills in what version 2 requires
(``metrics.main_score`` from the older ``top1``/``top1_ci95`` fields) in memory only; a committed
file, and so its content id, is never rewritten.

>>> Knob(name="none", value=None).label(), Knob(name="r", value=3.0).label()
('-', 'r=3')
>>> parse_record({"id": "x", "schema_version": 1, "kind": "shift", "task": {"name": "t"}, "budget": {"name": "b"},
...               "method": {"name": "m", "family": "f", "knob": {"name": "none", "value": None}}})
Traceback (most recent call last):
...
ccbench.reporting.record_schema.SchemaError: lacks required field(s) seed, source.record_id, source.task, source.backbone_sha256
"""
from __future__ import annotations

from typing import Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
NO_KNOB = "none"  # the knob name of a method without a knob (its value is then null)

Number = Union[StrictInt, StrictFloat]


class _Open(BaseModel):
    """A record part: declared fields are checked, any other field is kept as written."""

    model_config = ConfigDict(extra="allow", frozen=True)


def knob_label(name: str, value) -> str:
    """The table label of a knob setting: ``name=value`` with numbers in their shortest form (so 3 and
    3.0 are one configuration), ``-`` without a knob value.

    >>> knob_label("threshold", 0.60), knob_label("r", 3.0), knob_label("none", None), knob_label("mode", "x")
    ('threshold=0.6', 'r=3', '-', 'mode=x')
    """
    if value is None:
        return "-"
    return f"{name}={value:g}" if isinstance(value, (int, float)) else f"{name}={value}"


class Knob(_Open):
    """``method.knob``: the compute knob of the measured configuration."""

    name: StrictStr = Field(description=f"knob name; {NO_KNOB!r} for a method without one")
    value: Union[Number, StrictStr, None] = Field(description="knob value of this configuration (null: no knob)")

    def label(self) -> str:
        """:func:`knob_label` of this setting."""
        return knob_label(self.name, self.value)


def grid_label(targets) -> str | None:
    """The table label of a record calibrated to compute-grid ``targets`` (% of dense, from ``method.grid``):
    seeds calibrate their knob on their own model, so a grid row is keyed by its targets, not by the knob
    value; ``None`` when ``targets`` is empty or not numbers.

    >>> grid_label([50.0, 25]), grid_label([]), grid_label(["x"])
    ('grid 25,50 %', None, None)
    """
    try:
        values = sorted({float(t) for t in targets})
    except (TypeError, ValueError):
        return None
    return f"grid {','.join(f'{t:g}' for t in values)} %" if values else None


class Method(_Open):
    """``method``: which method was measured."""

    name: StrictStr = Field(description="registered method name (a folder name under results/<budget>/<task>/)")
    family: StrictStr = Field(description="method family: dense, static, depth, token, width, ...")
    knob: Knob = Field(description="the knob setting measured")
    version: StrictInt = Field(1, ge=1, description="the method implementation's version on the task's modality "
                               "(METADATA versions; absent in records written before versions: 1)")

    def grid_targets(self) -> list:
        """The compute-grid targets (% of dense) this record stands for (``method.grid``, the entries
        :func:`ccbench.common.catalog.counted_grid_entries` counts), ``[]`` for a record off the grid or with a
        malformed grid."""
        from ccbench.common.catalog import counted_grid_entries

        return [e.get("target") for e in counted_grid_entries(self.name, (self.model_extra or {}).get("grid") or [])]

    def grid_target_values(self) -> tuple[float, ...]:
        """:meth:`grid_targets` as sorted distinct numbers (% of dense); malformed entries are left out."""
        out = set()
        for t in self.grid_targets():
            try:
                out.add(float(t))
            except (TypeError, ValueError):
                continue
        return tuple(sorted(out))

    def row_label(self) -> str:
        """The label rows are grouped by: :func:`grid_label` of a grid record (its seeds pool although each
        calibrated its own knob value), else the knob's :func:`knob_label`."""
        return grid_label(self.grid_targets()) or self.knob.label()


class Named(_Open):
    """``task`` / ``budget``: a registered spec by name (and version)."""

    name: StrictStr = Field(description="registered name (a folder name under results/)")
    version: Union[StrictInt, None] = Field(None, description="the spec's version when measured")


class Consumed(_Open):
    """``budget.consumed``: what training used."""

    samples: Number = Field(description="training samples seen (count)")


class RunBudget(Named):
    """``budget`` of a run record."""

    consumed: Consumed = Field(description="training actually consumed")


class Backbone(_Open):
    """``backbone``: the pretrained weights the run started from."""

    sha256: StrictStr = Field(description="sha256 of the backbone weights (images) or of the encoder (text)")
    file: StrictStr = Field(description="checkpoint file name (images) or public encoder name (text)")


class MainScore(_Open):
    """``metrics.main_score``: the task's main score."""

    name: StrictStr = Field(description="metric registry key (ccbench.common.metrics): top1, accuracy, matthews, ...")
    value: Number = Field(description="score in % (correlations x 100)")
    ci95: tuple[Number, Number] = Field(description="95 % percentile-bootstrap CI over eval samples, same units")


class Mean(_Open):
    """A distribution summary; only its mean is required."""

    mean: Number = Field(description="mean over eval samples")


class ExecutedOverUseful(_Open):
    """``metrics.executed_over_useful``."""

    batch1: Number = Field(description="fvcore-executed over trace-derived useful MACs at batch 1 (ratio)")


class Timing(_Open):
    """``metrics.latency.batch1``: one batch size's timing."""

    speedup: Number = Field(description="dense time / method time (ratio)")
    efficiency: Number = Field(description="speedup / ideal speedup (ratio)")
    check: Union[dict, None] = Field(None, description="dense-vs-dense control; ``ok: false`` = disturbed timing")

    def disturbed(self) -> bool:
        """True when the timing control says the measurement was disturbed (none recorded: not flagged)."""
        return not (self.check or {}).get("ok", True)


class TimingN(Timing):
    """``metrics.latency.batchN``."""

    batch_size: StrictInt = Field(description="the batch size N")


class Latency(_Open):
    """``metrics.latency``."""

    batch1: Timing
    batchN: TimingN


class RunMetrics(_Open):
    """``metrics`` of a run record."""

    useful_gmacs: Mean = Field(description="useful GMACs per sample (1e9 multiply-adds, fvcore convention)")
    useful_fraction_of_dense: Number = Field(description="useful MACs over the dense model's (ratio, 0-1)")
    executed_over_useful: ExecutedOverUseful
    flag_executed_exceeds_useful: StrictBool = Field(description="more than 2 % of executed MACs are not useful")
    latency: Latency
    main_score: MainScore = Field(description="the task's main score (v1 files: from top1/top1_ci95)")
    active_params_per_token: Union[Number, None] = Field(None, description="parameters a token uses (width family)")
    routing: Union[dict, None] = Field(None, description="routing statistics (width family): utilization, nmi, ...")
    executed_over_useful_plus_padding: Union[dict, None] = Field(
        None, description="fvcore-executed over useful + declared padding MACs, ``batch1`` and ``batchN`` (ratios; "
                          "ccbench validate's audit evidence; absent in older records)")
    determinism: Union[dict, None] = Field(
        None, description="``samples``, ``batch_size``, ``batch1_vs_batchN_mismatches``, ``repeat_mismatches``: "
                          "predictions that changed with the batch or the call (ccbench validate's evidence; absent "
                          "in older records)")


class _Record(_Open):
    """Fields every record kind has."""

    id: StrictStr = Field(description="sha256 of the record's canonical JSON without this field")
    schema_version: StrictInt = Field(description=f"record schema version ({SCHEMA_VERSION} for new records)")
    task: Named = Field(description="the task measured (for shift/transfer: the target)")
    budget: Named = Field(description="the budget tier")
    method: Method
    seed: StrictInt = Field(description="training/eval seed")
    samples_sha256: Union[StrictStr, None] = Field(None, description="records.samples_hash of the per-sample file")
    training_processes: Union[StrictInt, None] = Field(
        None, description="processes that trained the model in the command that wrote the record (torchrun's "
                          "world size; 1: one process); absent when that command trained nothing (a cached model)")


class RunRecord(_Record):
    """A ``ccbench run`` record."""

    kind: Literal["run"] = "run"
    date: StrictStr = Field(description="ISO 8601 time the record was written (latest re-measurement counts)")
    budget: RunBudget
    backbone: Backbone
    metrics: RunMetrics


class Source(_Open):
    """``source`` of a derived (shift/transfer) record: the run it started from."""

    record_id: StrictStr = Field(description="full id of the source run record")
    task: StrictStr = Field(description="the source run's task")
    backbone_sha256: StrictStr = Field(description="the source run's backbone hash")


class ShiftRecord(_Record):
    """A ``ccbench shift`` record (the run's model on a shifted split)."""

    kind: Literal["shift"]
    source: Source


class TransferRecord(_Record):
    """A ``ccbench transfer`` record (the run's model moved to a new task)."""

    kind: Literal["transfer"]
    source: Source


MODELS = {"run": RunRecord, "shift": ShiftRecord, "transfer": TransferRecord}
AnyRecord = Union[RunRecord, ShiftRecord, TransferRecord]


_UNION_TAGS = {"int", "float", "str", "bool", "none", "dict"}  # pydantic's names of union members in error paths


class SchemaError(ValueError):
    """A record that does not fit its schema; ``str()`` is one short reason."""


def upgrade_v1(raw: dict) -> dict:
    """The version-2 shape of a version-1 record body, in memory (the file is never rewritten): a run
    record without ``metrics.main_score`` gets one from ``top1`` and ``top1_ci95`` (images: top-1 %)."""
    metrics = raw.get("metrics")
    if raw.get("kind", "run") != "run" or not isinstance(metrics, dict) or "main_score" in metrics:
        return raw
    if "top1" not in metrics or "top1_ci95" not in metrics:
        return raw
    main = {"name": "top1", "value": metrics["top1"], "ci95": metrics["top1_ci95"]}
    return {**raw, "metrics": {**metrics, "main_score": main}}


def _required_leaves(model: type[BaseModel], dotted: str) -> list[str]:
    """The required leaf fields under the missing field ``dotted`` of ``model`` (itself when a leaf),
    so that a record lacking ``metrics`` is told which metrics it needs.

    >>> _required_leaves(RunRecord, "backbone")
    ['backbone.sha256', 'backbone.file']
    """
    for key in dotted.split("."):
        info = model.model_fields.get(key) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if info is None:
            return [dotted]
        model = info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return [dotted]
    return [f"{dotted}.{leaf}" for name, info in model.model_fields.items() if info.is_required()
            for leaf in _required_leaves(model, name)]


def parse_record(raw: dict, check: bool = True) -> AnyRecord:
    """The typed record of the parsed JSON object ``raw`` (version 1 through :func:`upgrade_v1`);
    :class:`SchemaError` names the missing or mistyped fields (dotted) or the unknown kind/version.
    ``check=False`` skips the schema-version check (for bodies not yet finalized)."""
    if check and raw.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        raise SchemaError(f"schema_version {raw.get('schema_version')!r} is not supported "
                          f"(this ccbench reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})")
    kind = raw.get("kind", "run")
    if not isinstance(kind, str) or kind not in MODELS:
        raise SchemaError(f"kind {kind!r} is unknown (known: {', '.join(MODELS)})")
    body = upgrade_v1(raw) if raw.get("schema_version") == 1 else raw
    if not check:
        body = {"id": "", "schema_version": SCHEMA_VERSION, **body}
    try:
        return MODELS[kind].model_validate(body)
    except ValidationError as err:
        fields = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"] if str(p) not in _UNION_TAGS and "[" not in str(p))
            for f in (_required_leaves(MODELS[kind], loc) if e["type"] == "missing" else [loc]):
                if f not in fields:
                    fields.append(f)
        raise SchemaError(f"lacks required field(s) {', '.join(fields)}") from None
