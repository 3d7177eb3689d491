"""The paired tables of the leaderboard's "Specialization & transfer" section (issue 25): per (budget,
source -> target) a table of transfer gains and a table of shift drop differences and compute changes,
each with its finding paragraph (:mod:`ccbench.reporting.track_findings`), Holm-corrected together
(:func:`ccbench.reporting.track.mark_holm`). :func:`track_tables` builds one view that both the markdown
(:func:`track_markdown`, record strings escaped by :func:`~ccbench.reporting.markdown.escape_cell`) and the
site (jinja2, autoescaped) render. Reporting only: no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .markdown import escape_cell
from .records import rows_of
from .track import mark_holm, shift_differences, transfer_gains, usable
from .track_findings import shift_finding, transfer_finding

SIGNIFICANT_TRACK = (
    "† significant: the estimate's p-value, Holm-corrected across every transfer gain, drop difference and "
    "compute change of this section, is below 0.05 (McNemar's exact test for a one-seed accuracy gain, otherwise "
    "the normal approximation with the standard error of the paired hierarchical bootstrap, which resamples the "
    "seeds, then the eval samples); ° the 95 % interval excludes zero, but the estimate is not significant after "
    "Holm's correction.")
TRANSFER_NOTE = (
    "Gain: the method's target score minus dense's under the matching protocol (router-only vs dense head-only, "
    "routers-frozen vs dense full), on the same target samples and, where both have them, the same source seeds; "
    "score and % dense are means over the row's seeds.")
SHIFT_NOTE = (
    "Drop: reference minus shifted score (points); drop difference: the method's drop minus dense's, on the same "
    "samples and seeds; score - dense score: the method's shifted score minus dense's (points; not tested, so not "
    "marked: it is the clean difference minus the drop difference, and tells a smaller drop from less to lose); "
    "Δ% dense: the change of the method's useful share of dense compute from the reference to "
    "the condition (points; '(record)': the record's value, without an interval, when the samples files hold no "
    "per-sample compute).")


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, a numeric sort key (``None``: text) and whether the text comes from a record
    (escaped in markdown; the site escapes every cell)."""

    text: str
    sort: float | None = None
    record: bool = False


@dataclass
class TrackTable:
    """One paired table: ``kind`` (``transfer`` or ``shift``), its title (source -> target, budget; names
    from records), column headers, rows of :class:`Cell` and the finding paragraph (record strings as they are)."""

    kind: str
    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    finding: str = ""


@dataclass
class TrackView:
    """The section's paired tables and one line per row left out of them (record strings as they are)."""

    tables: list[TrackTable] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    trained_again: list[str] = field(default_factory=list)   # one line per source model trained again


def trained_again_lines(records: list) -> list[str]:
    """One line per source run of the derived ``records`` (``(path, record)``; others are skipped) whose model was
    trained again from its record's recipe (``source.trained_again``: the record's own model was not in the
    cache), with the copy's agreement with the record's predictions and, for a copy trained on another CPU model
    than the record's (``source.other_cpu``), both CPU models (record strings as they are)."""
    seen = {}
    for _, r in records:
        src = r.get("source")
        if isinstance(src, dict) and src.get("trained_again") is True and str(src.get("record_id"))[:12] not in seen:
            agreement = src.get("prediction_agreement_with_record")
            share = f"{100 * agreement:.1f} %" if isinstance(agreement, (int, float)) else "an unrecorded share"
            method = r["method"].get("name") if isinstance(r.get("method"), dict) else None
            other = src.get("other_cpu")
            cpus = (f", trained on {other.get('copy_cpu')} (the record on {other.get('record_cpu')}): another draw of "
                    f"its recipe" if isinstance(other, dict) else "")
            seen[str(src.get("record_id"))[:12]] = (
                f"{method} on {src.get('task')}, seed {r.get('seed')} (record {str(src.get('record_id'))[:12]}; "
                f"its copy agrees on {share} of the record's predictions{cpus})")
    return [seen[k] for k in sorted(seen)]


def mark(sig, lo: float, hi: float) -> str:
    """`` †`` when significant after Holm, `` °`` when only the unadjusted 95 % interval excludes zero, else ''."""
    if bool(sig):
        return " †"
    return " °" if (lo > 0 or hi < 0) else ""


def _num(value: float, pattern: str) -> Cell:
    return Cell("-" if pd.isna(value) else pattern.format(value), None if pd.isna(value) else float(value))


def _estimate(r, name: str, digits: int = 2, tested: bool = True) -> Cell:
    """``+1.23 [+0.40, +2.10] †`` of estimate ``name`` of row ``r``, sorted by its value; ``-`` when the row has none
    (a table whose rows were all left out of the comparison has no such column); unmarked unless ``tested``."""
    value = getattr(r, name, float("nan"))
    lo, hi = getattr(r, f"{name}_lo", float("nan")), getattr(r, f"{name}_hi", float("nan"))
    if pd.isna(value):
        return Cell("-")
    if pd.isna(lo):
        return Cell(f"{value:+.{digits}f} (record)", float(value))
    marked = mark(getattr(r, f"{name}_sig"), lo, hi) if tested else ""
    return Cell(f"{value:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{marked}", float(value))


def _names(r) -> list[Cell]:
    return [Cell(str(r.method), record=True), Cell(str(r.knob), record=True)]


TRAINED_AGAIN_NOTE = ("Source models trained again from their record's recipe (method, config, tier, task, seed "
                      "and backbone; the original was not in the cache of the machine that ran the shift or "
                      "transfer), so every score of their rows is the copy's own")
SITE_SECTIONS = (("shift", "Under shift: drop difference and compute against dense", SHIFT_NOTE),
                 ("transfer", "Transfer to a new task: gain over dense", TRANSFER_NOTE))
TRANSFER_HEADERS = ["method", "knob", "protocol", "seeds", "score", "% dense", "gain over dense [95 % CI]",
                    "vs dense", "trained", "module reuse (source share)", "class NMI", "records"]
SHIFT_HEADERS = ["method", "knob", "condition", "seeds", "drop", "dense drop", "drop - dense drop [95 % CI]",
                 "score - dense score [95 % CI]",
                 "% dense (ref)", "Δ% dense under shift [95 % CI]", "records"]


def _transfer_table(title: str, g: pd.DataFrame) -> TrackTable:
    t = TrackTable("transfer", title, TRANSFER_HEADERS, finding=transfer_finding(g))
    for r in g.sort_values(["method", "knob", "protocol"]).itertuples():
        reference = r.method == "dense"
        reuse = "-" if pd.isna(r.reuse) else f"{r.reuse:.3f} ({r.reuse_source:.3f})"
        t.rows.append(_names(r) + [
            Cell(str(r.protocol), record=True), _num(r.seeds, "{:.0f}"), _num(r.score, "{:.2f}"),
            _num(r.dense_pct, "{:.0f}"), Cell("reference") if reference else _estimate(r, "gain"),
            Cell("-" if reference or pd.isna(getattr(r, "dense_protocol", None)) else str(r.dense_protocol)),
            Cell(str(r.trained), record=True), Cell(reuse),
            _num(r.class_nmi, "{:.4f}" + (" (per pick)" if r.class_nmi_weighting == "pick" else "")),
            Cell(r.ids, record=True)])
    return t


def _shift_table(title: str, g: pd.DataFrame) -> TrackTable:
    t = TrackTable("shift", title, SHIFT_HEADERS, finding=shift_finding(g))
    for r in g.itertuples():
        t.rows.append(_names(r) + [
            Cell(str(r.condition), record=True), _num(r.seeds, "{:.0f}"), _num(r.drop, "{:+.2f}"),
            _num(r.dense_drop, "{:+.2f}"), _estimate(r, "diff"), _estimate(r, "gap", tested=False),
            _num(r.ref_pct, "{:.1f}"), _estimate(r, "compute", 1), Cell(r.ids, record=True)])
    return t


def track_tables(records: list, admitted_sources: set[str], n_boot: int = 1000, seed: int = 0) -> TrackView:
    """The paired tables of the shift and transfer ``records`` (verified ``(path, record)``, any kind) whose
    source run's 12-character id is in ``admitted_sources``, Holm-corrected together, one table per (budget,
    source, target, eval set), and one line per row left out (no dense counterpart, another eval set, other
    samples, no samples arrays): a :class:`TrackView`. A record whose fields cannot be read (an unknown
    protocol, no source task: :func:`~ccbench.reporting.track.usable`) is skipped with one line on stderr."""
    def of(kind: str) -> list:
        mine = rows_of([(p, r) for p, r in records if r.get("kind", "run") == kind], usable)
        return [(p, r) for p, r in mine if r["source"]["record_id"][:12] in admitted_sources]

    transfer, left_t = transfer_gains(of("transfer"), n_boot, seed)
    shift, left_s = shift_differences(of("shift"), n_boot, seed)
    mark_holm({"transfer": transfer, "shift": shift})
    tables = []
    for kind, df, build in (("shift", shift, _shift_table), ("transfer", transfer, _transfer_table)):
        if df.empty:
            continue
        for (budget, source, target, eval_set), g in df.groupby(["budget", "source", "target", "eval_set"],
                                                                sort=True):
            on = f", scored on {eval_set}" if kind == "transfer" else ""
            tables.append(build(f"{source} → {target} (budget {budget}{on})", g))
    return TrackView(tables, left_s + left_t, trained_again_lines(of("shift") + of("transfer")))


def _markdown_table(t: TrackTable) -> str:
    from tabulate import tabulate

    body = [[escape_cell(c.text) if c.record else c.text for c in row] for row in t.rows]
    return tabulate(body, headers=t.headers, tablefmt="github", disable_numparse=True)


def track_markdown(view: TrackView, kind: str) -> str:
    """The markdown of the ``kind`` tables of ``view``: per table its escaped title, the table and its finding
    paragraph (escaped whole: it names methods and conditions from records); '' when there is none."""
    mine = [t for t in view.tables if t.kind == kind]
    if not mine:
        return ""
    note = TRANSFER_NOTE if kind == "transfer" else SHIFT_NOTE
    parts = [note]
    for t in mine:
        parts.append(f"**{escape_cell(t.title)}**\n\n{_markdown_table(t)}\n\nFinding: {escape_cell(t.finding)}")
    return "\n\n".join(parts) + "\n"
