"""The column registry of the run table: each column declared once, from record field to rendered cell.

A :class:`Column` says where its per-record value comes from (a dotted field of the typed record,
:mod:`ccbench.reporting.record_schema`, or a function of it), how the records of one row (seeds) combine, its
markdown header and cell format, and whether higher is better. ``ccbench table`` (markdown and CSV)
and the leaderboard render from :data:`COLUMNS`; a new metric is one more entry here.

>>> [c.key for c in COLUMNS][:6]
['task', 'budget', 'method', 'family', 'knob', 'knob_values']
>>> column("speedup_b1").higher_is_better, column("useful_gmacs").higher_is_better
(True, False)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .markdown import escape_cell
from .record_schema import RunRecord

# one table row per group (seeds are aggregated; an earlier method or task version's records are a row of their own)
GROUP = ("task", "task_version", "budget", "method", "method_version", "knob", "backbone")
SEED_KEY = (*GROUP, "seed")  # the latest record of each counts


def field(record, dotted: str):
    """The value at ``dotted`` in a typed record (attributes, then dict keys); ``None`` when absent.

    >>> field({"a": {"b": 2}}, "a.b"), field({"a": {}}, "a.b")
    (2, None)
    """
    value = record
    for key in dotted.split("."):
        if isinstance(value, dict):
            value = value.get(key)
        else:
            value = getattr(value, key, None)
        if value is None:
            return None
    return value


def _number(value) -> float:
    """``value`` when it is a number (not a bool), else ``TypeError`` (a crafted record)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return value


def _or_nan(value):
    return np.nan if value is None else value


# aggregations: (rows of one group, column key) -> the row's value
def first(g: pd.DataFrame, key: str):
    return g[key].iloc[0]


def mean(g: pd.DataFrame, key: str):
    return g[key].mean()


def any_(g: pd.DataFrame, key: str) -> bool:
    return bool(g[key].any())


def sizes(g: pd.DataFrame, key: str) -> str:
    """The distinct integer values of ``key`` over a row's records, ascending, joined by ``/`` (``"8"``, or
    ``"8/32"`` when seeds were timed at different batch sizes)."""
    return "/".join(str(v) for v in sorted({int(v) for v in g[key]}))


def int_mean(g: pd.DataFrame, key: str) -> int:
    return int(g[key].mean())


def versions(g: pd.DataFrame, key: str) -> tuple:
    """The distinct values of ``key`` over the row's records, sorted: seeds measured under two comparable tier
    versions pool into one row, which keeps both."""
    return tuple(sorted({v for v in g[key] if v is not None and not pd.isna(v)}))


def same_or_none(g: pd.DataFrame, key: str):
    return g[key].iloc[0] if g[key].nunique(dropna=False) == 1 else None


def _fmt(values, pattern: str) -> list[str]:
    return ["-" if pd.isna(v) else pattern.format(v) for v in values]


def escaped(key: str) -> Callable[[pd.DataFrame], list[str]]:
    """Cell format of a record-derived string column: each value escaped for markdown."""
    return lambda df: [escape_cell(v) for v in df[key]]


def pattern(key: str, fmt: str, dash: bool = False) -> Callable[[pd.DataFrame], list[str]]:
    """Cell format ``fmt.format(value)``; with ``dash``, ``-`` for a missing value."""
    if dash:
        return lambda df: _fmt(df[key], fmt)
    return lambda df: [fmt.format(v) for v in df[key]]


@dataclass(frozen=True)
class Column:
    """One column: ``key`` in the table frame (and CSV), ``get`` (dotted field of a
    :class:`~ccbench.reporting.record_schema.RunRecord` or a function of it; ``None``: the group key or computed by
    ``agg``), ``agg`` (rows of one group -> value; ``None`` for the group keys), ``header`` and ``cell``
    (markdown; ``None``: not rendered), ``higher_is_better`` (``None``: not a figure of merit)."""

    key: str
    get: str | Callable[[RunRecord], object] | None
    agg: Callable[[pd.DataFrame, str], object] | None
    header: str | None = None
    cell: Callable[[pd.DataFrame], list[str]] | None = None
    higher_is_better: bool | None = None
    doc: str = ""

    def value(self, record: RunRecord):
        """This column's value for one record."""
        return self.get(record) if callable(self.get) else field(record, self.get)


def version_label(task: str, version) -> str:
    """A task as the run, shift, transfer and track tables name it: its name, and, when ``version`` (1 when
    missing) is not the registered one, that version, e.g. ``sst2 (v1; current v2)``: rows of two versions never
    share a heading or a comparison.

    >>> version_label("sst2", 1), version_label("sst2", 2), version_label("not-registered", 5)
    ('sst2 (v1; current v2)', 'sst2', 'not-registered')
    """
    from ccbench.common.catalog import tasks

    version = version or 1
    registered = tasks()
    current = registered.get(task).version if task in registered else version
    return task if version == current else f"{task} (v{version}; current v{current})"


def _task_cells(df: pd.DataFrame) -> list[str]:
    """The task names, escaped; a row measured on another version of its task than the registered one says so
    (:func:`version_label`; the leaderboard shows such rows only as the previous version)."""
    if "task_version" not in df:
        return [escape_cell(name) for name in df.task]
    return [escape_cell(version_label(name, version)) for name, version in zip(df.task, df.task_version)]


def _method_cells(df: pd.DataFrame) -> list[str]:
    """The method names, escaped; a row written by an earlier version of its method than the registered one says
    so, e.g. ``early-exit (v1; current v2)`` (the leaderboard shows such rows only as the previous version)."""
    from ccbench.common.catalog import registered_version

    cells = []
    modalities = df["modality"] if "modality" in df else ["image"] * len(df)
    versions = df["method_version"] if "method_version" in df else [1] * len(df)
    for name, modality, version in zip(df.method, modalities, versions):
        current = registered_version(name, modality) or version
        cells.append(escape_cell(name) + (f" (v{version}; current v{current})" if version != current else ""))
    return cells


def _timing_ok(batch: str) -> Callable[[RunRecord], bool]:
    # records older than the latency check have none: they count as unchecked, not as flagged
    return lambda r: not getattr(r.metrics.latency, batch).disturbed()


def timed_mean(ok: str) -> Callable[[pd.DataFrame, str], float]:
    """Aggregation of a latency column: the mean over the row's seeds whose timing passed the latency check
    (per-record flag ``ok``, :data:`ROW_ONLY`); over all its seeds when none did (the row is then flagged)."""
    def agg(g: pd.DataFrame, key: str) -> float:
        passed = g[g[ok].astype(bool)]
        return (passed if len(passed) else g)[key].mean()
    return agg


def timed_seeds(ok: str) -> Callable[[pd.DataFrame, str], str]:
    """Aggregation: the seeds (comma-joined, ascending) of the row whose timing passed the check ``ok``."""
    return lambda g, _: ",".join(str(s) for s in sorted(g.seed[g[ok].astype(bool)]))


def _timed(seeds: str) -> int:
    return len(seeds.split(",")) if seeds else 0


def _latency_cells(key: str, timed: str, batch: bool = False) -> Callable[[pd.DataFrame], list[str]]:
    """Cell format of a speedup column: ``1.52x``, with ``(b8)`` for batch N, ``n of m seeds`` when only n of the
    row's m seeds have an undisturbed timing, and `` ?`` when none has (the value is then their mean all the
    same)."""
    def cells(df: pd.DataFrame) -> list[str]:
        out = []
        for _, row in df.iterrows():
            n = _timed(row[timed])
            notes = ([f"b{row.bN}"] if batch else []) + ([f"{n} of {row.seeds} seeds"] if 0 < n < row.seeds else [])
            out.append(f"{row[key]:.2f}x" + (f" ({'; '.join(notes)})" if notes else "") + (" ?" if n == 0 else ""))
        return out
    return cells


def _routing(name: str) -> Callable[[RunRecord], float]:
    return lambda r: _or_nan(field(r.metrics.routing or {}, f"mean_over_layers.{name}"))


def _class_nmi_pick(r: RunRecord) -> float:
    """Per-pick class NMI: its own key since issue 24; before, the only one, under ``nmi``."""
    mean = (r.metrics.routing or {}).get("mean_over_layers", {})
    return _or_nan(mean.get("nmi_per_pick", mean.get("nmi")))


def _class_nmi_sample(r: RunRecord) -> float:
    """Per-sample class NMI (the headline), NaN for records before issue 24 (they hold per-pick only)."""
    mean = (r.metrics.routing or {}).get("mean_over_layers", {})
    return _or_nan(mean.get("nmi")) if "specialization_weighting" in mean else np.nan


def _constants(r: RunRecord) -> str:
    """Routing statistics the method's METADATA declares constant by construction at this record's
    knob (stored in the record by the run), comma-joined; empty when none."""
    declared = (r.metrics.routing or {}).get("constant_by_construction") or {}
    return ",".join(str(s) for s in declared.get("statistics", []))


NOT_APPLICABLE = "n/a (by construction)"


def _or_constant(key: str, statistic: str, fmt: str, suffix: Callable[[pd.Series], str] = lambda row: ""):
    """Cell format: ``n/a (by construction)`` where the row's method declares ``statistic`` constant,
    ``-`` where the value is missing, else ``fmt`` (and ``suffix(row)``)."""
    def cells(df: pd.DataFrame) -> list[str]:
        out = []
        for _, row in df.iterrows():
            if statistic in str(row.get("constant", "")).split(","):
                out.append(NOT_APPLICABLE)
            elif pd.isna(row[key]):
                out.append("-")
            else:
                out.append(fmt.format(row[key]) + suffix(row))
        return out
    return cells


def _class_nmi_cells(df: pd.DataFrame) -> list[str]:
    """``per sample (per pick)``; records before issue 24 show their per-pick value only."""
    out = []
    for _, row in df.iterrows():
        if "class_specialization" in str(row.get("constant", "")).split(","):
            out.append(NOT_APPLICABLE)
        elif pd.isna(row.nmi_pick):
            out.append("-")
        elif pd.isna(row.nmi):
            out.append(f"- ({row.nmi_pick:.3f})")
        else:
            out.append(f"{row.nmi:.3f} ({row.nmi_pick:.3f})")
    return out


def _requested_cells(df: pd.DataFrame) -> list[str]:
    """Requested-load imbalance ``max/mean (CV)`` of token-choice rows."""
    return ["-" if pd.isna(m) else f"{m:.2f} ({c:.2f})" for m, c in zip(df.req_max_over_mean, df.req_cv)]


def _score_cells(df: pd.DataFrame) -> list[str]:
    return [f"{v:.2f}" + ("" if n == "top1" else f" ({escape_cell(n)})") for v, n in zip(df.top1, df.score_name)]


# per-record values only the aggregation reads (not table columns)
ROW_ONLY = {
    "seed": "seed",
    "ci_lo": lambda r: _number(r.metrics.main_score.ci95[0]),
    "ci_hi": lambda r: _number(r.metrics.main_score.ci95[1]),
    "record_id": "id",
    "grid_targets": lambda r: r.method.grid_target_values(),
    "date": "date",
    "clean": lambda r: field(r, "git.dirty") is False,  # a clean record wins over a dirty twin (tables.load_table)
    "ok_b1": _timing_ok("batch1"),
    "ok_bN": _timing_ok("batchN"),
}


def provenance_status(record) -> str:
    """``submitted`` for a plug-in method (validated, not re-run from this repository), else ``verified``
    (re-run from source by ccbench's own scripts); the leaderboard ranks validated rows only."""
    return "submitted" if field(record, "method.provenance.origin") == "plugin" else "verified"


def _any_submitted(g: pd.DataFrame, key: str) -> str:
    return "submitted" if (g[key] == "submitted").any() else "verified"

def _per_seed(g: pd.DataFrame, key: str) -> str:
    """``key``'s value over the row's records: the one value when the seeds agree, else each seed's in seed
    order (``s0 threshold=0.3, s1 threshold=0.4``).

    >>> _per_seed(pd.DataFrame({"seed": [1, 0], "k": ["a=2", "a=1"]}), "k"), _per_seed(pd.DataFrame({"seed": [0, 1], "k": ["a=1"] * 2}), "k")
    ('s0 a=1, s1 a=2', 'a=1')
    """
    if g[key].nunique() <= 1:
        return str(g[key].iloc[0]) if len(g) else ""
    return ", ".join(f"s{seed} {value}" for seed, value in sorted(zip(g.seed, g[key]), key=lambda sv: sv[0]))


def _knob_cells(df: pd.DataFrame) -> list[str]:
    """A grid row shows its target(s) and the knob value each seed calibrated to: ``grid 25 % (s0 threshold=0.3, s1
    threshold=0.4)``."""
    out = []
    for knob, values in zip(df.knob, df.get("knob_values", df.knob)):
        out.append(escape_cell(f"{knob} ({values})" if str(knob).startswith("grid ") and values != knob else knob))
    return out


COLUMNS: tuple[Column, ...] = (
    Column("task", "task.name", None, "task", _task_cells),
    Column("budget", "budget.name", None, "budget", escaped("budget")),
    Column("method", "method.name", None, "method", _method_cells),
    Column("family", "method.family", first, doc="method family"),
    Column("knob", lambda r: r.method.row_label(), None, "knob", _knob_cells,
           doc="the knob setting, or the compute-grid target(s) a grid row was calibrated to (% of dense)"),
    Column("knob_values", lambda r: r.method.knob.label(), _per_seed, doc="the knob value of each of the row's seeds"),
    Column("method_version", "method.version", None,
           doc="the method implementation's version the row's records were written by (METADATA versions)"),
    Column("modality", lambda r: field(r, "task.modality") or "image", first,
           doc="the task's modality (image or text; records before modalities: image)"),
    Column("task_version", lambda r: field(r, "task.version") or 1, None,
           doc="the task spec's version the row's records were measured on (a new version changes its splits)"),
    Column("status", provenance_status, _any_submitted, "status", lambda df: list(df.status),
           doc="verified (re-run from source by ccbench) or submitted (validated, not re-run: a plug-in)"),
    Column("seeds", None, lambda g, _: len(g), "seeds", lambda df: list(df.seeds), doc="records (seeds) averaged"),
    Column("score_name", lambda r: str(r.metrics.main_score.name), first, doc="metric registry key"),
    Column("top1", lambda r: _number(r.metrics.main_score.value), mean, "score", _score_cells, True,
           "main score (%), mean over seeds"),
    Column("top1_ci95", None, None, "95% CI", lambda df: list(df.top1_ci95), doc="see tables.score_ci"),
    Column("useful_gmacs", "metrics.useful_gmacs.mean", mean, "GMACs", pattern("useful_gmacs", "{:.3f}"), False),
    Column("pct_of_dense", lambda r: 100 * r.metrics.useful_fraction_of_dense, mean, "% dense",
           pattern("pct_of_dense", "{:.1f}"), False),
    Column("exec_over_useful_b1", "metrics.executed_over_useful.batch1", mean, "exec/useful",
           lambda df: [f"{v:.3f}{' !' if f else ''}" for v, f in zip(df.exec_over_useful_b1, df.flag_masked)], False),
    Column("flag_masked", "metrics.flag_executed_exceeds_useful", any_),
    Column("speedup_b1", "metrics.latency.batch1.speedup", timed_mean("ok_b1"), "speedup b1",
           _latency_cells("speedup_b1", "timed_b1"), True, "mean over the seeds whose batch-1 timing passed"),
    Column("speedup_bN", "metrics.latency.batchN.speedup", timed_mean("ok_bN"), "speedup bN",
           _latency_cells("speedup_bN", "timed_bN", batch=True), True,
           "mean over the seeds whose batch-N timing passed"),
    Column("bN", "metrics.latency.batchN.batch_size", sizes, doc="batch N of the seeds' timings (8, or 8/32)"),
    Column("timed_b1", None, timed_seeds("ok_b1"), doc="seeds whose batch-1 timing passed the latency check"),
    Column("timed_bN", None, timed_seeds("ok_bN"), doc="seeds whose batch-N timing passed the latency check"),
    Column("flag_latency", None, lambda g, _: not (g.ok_b1.any() and g.ok_bN.any()),
           doc="no seed's timing passed the latency check at batch 1, or none at batch N"),
    Column("eff_b1", "metrics.latency.batch1.efficiency", timed_mean("ok_b1"), "eff b1", pattern("eff_b1", "{:.2f}"),
           True, "the same seeds as speedup b1"),
    Column("eff_bN", "metrics.latency.batchN.efficiency", timed_mean("ok_bN"), "eff bN", pattern("eff_bN", "{:.2f}"),
           True, "the same seeds as speedup bN"),
    Column("active_params_m", lambda r: _or_nan(r.metrics.active_params_per_token) / 1e6, mean, "active params (M)",
           pattern("active_params_m", "{:.2f}", dash=True), False),
    Column("constant", _constants, first, doc="routing statistics constant by construction (METADATA)"),
    Column("utilization", _routing("utilization"), mean, "util",
           _or_constant("utilization", "utilization", "{:.2f}"), True),
    Column("nmi", _class_nmi_sample, mean, "class NMI per sample (per pick)", _class_nmi_cells,
           doc="chance-corrected NMI(expert; class), each sample weighted equally"),
    Column("nmi_pick", _class_nmi_pick, mean, doc="chance-corrected NMI(expert; class), each processed pick once"),
    Column("pos_nmi", _routing("position_nmi"), mean, "position NMI",
           _or_constant("pos_nmi", "position_specialization", "{:.3f}"),
           doc="chance-corrected NMI(expert; token position), per pick"),
    Column("req_max_over_mean", _routing("requested_max_over_mean"), mean, "requested load max/mean (CV)",
           _requested_cells, doc="router's requested top-k load before capacity: max / mean"),
    Column("req_cv", _routing("requested_cv"), mean, doc="requested load: coefficient of variation"),
    Column("drop_pct", lambda r: 100 * _routing("requested_drop_rate")(r), mean, "dropped %",
           pattern("drop_pct", "{:.1f}", dash=True), False, "share of requested picks over capacity (%)"),
    Column("train_samples", "budget.consumed.samples", int_mean, "train samples", lambda df: list(df.train_samples)),
    Column("backbone", "backbone.sha256", None, "backbone", lambda df: [escape_cell(v) for v in df.backbone.str[:10]]),
    Column("backbone_name", "backbone.file", first),
    Column("budget_version", "budget.version", versions, doc="the tier versions the row's seeds were measured under"),
    Column("record_ids", None, lambda g, _: ",".join(i[:12] for i in g.record_id)),
    Column("grid_row_targets", None, lambda g, _: tuple(sorted(set().union(*g.grid_targets))),
           doc="the compute-grid target(s) of a grid row (% of dense); () off the grid"),
)

# shown only when some row has routing statistics
ROUTING = ("active_params_m", "utilization", "nmi", "pos_nmi", "req_max_over_mean", "drop_pct")
# markdown column order (the CSV keeps the order of COLUMNS); "vs static" is derived (tables.static_gap)
MARKDOWN = ("task", "budget", "method", "knob", "status", "seeds", "top1", "top1_ci95", "useful_gmacs", "pct_of_dense",
            "exec_over_useful_b1", "speedup_b1", "speedup_bN", "eff_b1", "eff_bN", *ROUTING, "vs static",
            "train_samples", "backbone")


def column(key: str) -> Column:
    """The registered column ``key``."""
    return next(c for c in COLUMNS if c.key == key)


def row(path, record: RunRecord) -> dict:
    """Every per-record value (columns with a source and :data:`ROW_ONLY`) of one run record, plus its path."""
    out = {c.key: c.value(record) for c in COLUMNS if c.get is not None}
    out.update({k: (g(record) if callable(g) else field(record, g)) for k, g in ROW_ONLY.items()})
    out["path"] = str(path)
    return out
