"""The leaderboard's ranking section for one task (markdown; no torch): methods ranked by the area under
their score-compute curve with rank intervals, the compute-grid columns, and paired differences against
dense and against the family's control with significance marks.

:func:`rank_task` computes a task's ranking (:class:`TaskRanking`) and :func:`ranking_markdown` renders it;
:mod:`ccbench.reporting.findings` writes its sentences from the same result. It reads the per-sample files
of the rows it is given (:func:`ccbench.reporting.records.load_samples`); which rows may be ranked is the
caller's ``admitted`` predicate (validation), and the ``avit-masked`` reference is never ranked. With one
seed per row it says so: the intervals then cover eval samples only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ccbench.common.catalog import counted_grid_entries

from .markdown import escape_cell
from .paired import SIGNIFICANT, Bootstrap, Difference, aligned_predictions, difference, holm, interval
from .ranking import FURTHER_LOWS, GRID, GRID_TOLERANCE, HIGH, LOW, auc_weights, rank_stability
from .records import load_samples

NEVER_RANKED = {"avit-masked": "a reference execution of avit's model, not a method"}
# the family's controls a row is compared with at the same grid point; width is compared with dense alone
CONTROLS = {"token": ("static-res", "random-drop"), "depth": ("static-depth",)}


@dataclass
class Row:
    """One table row (method, knob) with its seeds' predictions ``preds [S, N]`` in eval-id order."""

    method: str
    family: str
    knob: str
    pct: float
    score: float
    preds: np.ndarray
    grid: dict = field(default_factory=dict)   # grid target (% of dense) -> {reached, marked}: the grid points it is
    record_ids: tuple[str, ...] = ()   # its seeds' records (id prefixes): rows of one record make one comparison
    seed_ids: tuple[int, ...] = ()     # the seed of each row of ``preds``, ascending
    seed_pcts: tuple[float, ...] = ()  # each seed's own % of dense (``pct`` is their mean)
    key: str = field(init=False)
    seed_key: str = field(init=False)

    def __post_init__(self):
        self.key = f"{self.method}|{self.knob}"
        # the seed draws of the row's paired differences: shared by a method's rows holding the same seeds (a seed
        # is one model calibrated to every grid target, or one training recipe per target: the unit that repeats);
        # its AUC draws seeds once per curve (method_auc)
        self.seed_key = f"{self.method}|seeds={','.join(map(str, self.seed_ids))}" if self.seed_ids else self.key

    @property
    def seeds(self) -> int:
        return len(self.preds)

    @property
    def seed_order(self) -> tuple[int, ...]:
        """The seed of each row of ``preds``: ``seed_ids``, or 0, 1, ... for a row made without them."""
        return self.seed_ids or tuple(range(self.seeds))


def grid_of(records: list[dict]) -> dict:
    """The compute-grid targets one row's records serve (``method.grid`` of each seed, a list of
    ``{target, reached, marked}`` in % of dense; :mod:`ccbench.training.grid`): ``{target: {reached, marked,
    lowest, highest, seeds, marked_seeds}}`` with the mean reached share over the seeds that serve the target
    (and its range), marked if any of them was (and how many); ``{}`` when the records are not grid points
    (or their entries are malformed)."""
    out: dict[float, list] = {}
    try:
        for r in records:
            entries = counted_grid_entries(r.get("method", {}).get("name"), r.get("method", {}).get("grid") or [])
            for e in entries:
                out.setdefault(float(e["target"]), []).append((float(e["reached"]), bool(e.get("marked"))))
    except (AttributeError, KeyError, TypeError, ValueError):
        return {}
    return {t: {"reached": float(np.mean([r for r, _ in v])), "marked": any(m for _, m in v),
                "lowest": min(r for r, _ in v), "highest": max(r for r, _ in v),
                "seeds": len(v), "marked_seeds": sum(m for _, m in v)} for t, v in out.items()}


def reached_label(g: dict) -> str:
    """Where a grid row's seeds landed, % of dense: their mean, or their range when they differ by a point or
    more, and how many of them missed the target when not all did (``g``: a :func:`grid_of` entry).

    >>> reached_label({"reached": 28.0, "lowest": 27.8, "highest": 28.1, "seeds": 3, "marked_seeds": 3})
    '28 %'
    >>> reached_label({"reached": 27.6, "lowest": 25.2, "highest": 30.0, "seeds": 2, "marked_seeds": 1})
    '25-30 %, 1 of 2 seeds out of reach'
    """
    lo, hi = g.get("lowest", g["reached"]), g.get("highest", g["reached"])
    where = f"{lo:.0f}-{hi:.0f} %" if hi - lo >= 1 else f"{g['reached']:.0f} %"
    n, missed = g.get("seeds", 1), g.get("marked_seeds", 1)
    return where + (f", {missed} of {n} seeds out of reach" if 0 < missed < n else "")


def load_rows(table: pd.DataFrame, records: list[tuple]) -> tuple[list[Row], np.ndarray | None, list[tuple]]:
    """The ranking :class:`Row` of every row of ``table`` (aggregated rows of one task: ``record_ids``
    hold 12-character id prefixes), their shared labels ``[N]`` and ``(method, knob, why)`` per row left
    out (its seeds, or its samples, differ from the task's); strings as the records have them."""
    by_id = {r["id"][:12]: (p, r) for p, r in records}
    rows, labels, ids, left_out = [], None, None, []
    for t in table.itertuples():
        found = sorted((by_id[i] for i in t.record_ids.split(",") if i in by_id), key=lambda pr: pr[1].get("seed", 0))
        try:
            these_ids, these_labels, preds = aligned_predictions([load_samples(p) for p, _ in found])
        except ValueError as err:
            left_out.append((t.method, t.knob, str(err)))
            continue
        if ids is None:
            ids, labels = these_ids, these_labels
        elif not (np.array_equal(ids, these_ids) and np.array_equal(labels, these_labels)):
            left_out.append((t.method, t.knob, "evaluated on other samples"))
            continue
        grid = grid_of([r for _, r in found])
        if t.grid_row_targets:   # a record serving several targets stands in each target's row: only this one's
            grid = {k: v for k, v in grid.items() if k in set(t.grid_row_targets)}
        rows.append(Row(t.method, t.family, t.knob, float(t.pct_of_dense), float(t.top1), preds, grid,
                        tuple(sorted(r["id"][:12] for _, r in found)), tuple(r.get("seed", 0) for _, r in found),
                        tuple(100 * float(r["metrics"]["useful_fraction_of_dense"]) for _, r in found)))
    return rows, labels, left_out


def _fmt_diff(d, significant: bool) -> str:
    return f"{d.value:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}]{' †' if significant else ''}"


@dataclass(frozen=True)
class Comparison:
    """``row`` minus ``reference`` on the task's eval samples: ``column`` (``vs dense``, ``vs static-res``,
    ...), the grid targets (% of dense) the comparison stands for (those both rows serve; against dense,
    the row's own; empty for a row off the grid), the paired difference (score points) and whether it is
    significant (Holm-corrected across every comparison of the task, :data:`~.paired.SIGNIFICANT`)."""

    row: Row
    reference: Row
    column: str
    targets: tuple[float, ...]
    diff: Difference
    significant: bool


@dataclass(frozen=True)
class Rank:
    """One method's place by AUC (score points over 25-100 % of dense): the rank of its point estimate,
    its plausible ranks (the central 95 % over bootstrap resamples), the share of resamples in which it
    ranks first, the AUC and its 95 % bootstrap CI."""

    method: str
    rank: int
    rank_lo: int
    rank_hi: int
    p_first: float
    auc: float
    lo: float
    hi: float


@dataclass
class RangeRanking:
    """The methods ranked by AUC over ``low``-100 % of dense (``ranks``, best first: those whose curve reaches
    ``low``) and those not (``unranked``: their curve starts above it)."""

    low: float
    ranks: list[Rank]
    unranked: list[str]


@dataclass
class TaskRanking:
    """Everything the ranking section of one task is rendered from: the ranked :class:`Row` s (dense
    included), ``ranks`` (methods with an AUC over 25-100 %, best first), ``unranked`` (methods with rows but
    no AUC), the paired ``comparisons``, ``excluded`` (method -> why it is not ranked), ``left_out`` (rows
    whose samples could not be paired: ``(method, knob, why)``) and ``further``: the rankings over the
    narrower ranges :data:`~.ranking.FURTHER_LOWS`-100 %."""

    rows: list[Row]
    dense: Row | None
    ranks: list[Rank]
    unranked: list[str]
    comparisons: list[Comparison]
    excluded: dict[str, str]
    left_out: list[tuple[str, str, str]]
    further: list[RangeRanking] = field(default_factory=list)

    @property
    def shown_further(self) -> list[RangeRanking]:
        """The narrower ranges worth a table and a sentence: each that ranks a method the range before it
        (25-100 % first, then the shown ones) does not. A narrower range never ranks fewer: a curve that
        reaches a low reaches every higher one."""
        shown, before = [], {k.method for k in self.ranks}
        for rr in self.further:
            these = {k.method for k in rr.ranks}
            if these != before:
                shown.append(rr)
                before = these
        return shown

    @property
    def seeds(self) -> tuple[int, int]:
        """The fewest and the most seeds of a row; ``(0, 0)`` without rows."""
        return (min(r.seeds for r in self.rows), max(r.seeds for r in self.rows)) if self.rows else (0, 0)


def _comparisons(rows: list[Row], dense: Row | None) -> list[tuple[Row, Row, str, tuple[float, ...]]]:
    """``(row, reference, column, targets)``: every non-dense row against dense, and every grid point of a
    token/depth row against its family's controls at the same grid target."""
    out = []
    for r in rows:
        if r.method == "dense":
            continue
        if dense is not None:
            out.append((r, dense, "vs dense", tuple(sorted(r.grid))))
        for control in CONTROLS.get(r.family, ()):
            same = [c for c in rows if c.method == control and set(c.grid) & set(r.grid)]
            if same and r.method != control:
                out.append((r, same[0], f"vs {control}", tuple(sorted(set(same[0].grid) & set(r.grid)))))
    return out


def same_test(row: Row, reference: Row) -> tuple:
    """What makes two comparisons one test: the same records on both sides (rows without record ids, e.g.
    built by hand, are told apart by their keys)."""
    return (row.record_ids or row.key, reference.record_ids or reference.key)


def distinct_tests(comparisons: list[Comparison]) -> int:
    """How many tests ``comparisons`` hold (the Holm family's size): a record standing in several grid rows
    is compared with the same reference once."""
    return len({same_test(c.row, c.reference) for c in comparisons})


def rank_task(table: pd.DataFrame, records: list[tuple], metric_name: str,
              admitted: Callable[[pd.Series], bool] = lambda row: True, n_boot: int = 1000,
              seed: int = 0) -> TaskRanking:
    """The ranking of one task: ``table`` is its aggregated rows (:func:`load_table`), ``records`` the
    verified ``[(path, record)]`` they come from, ``metric_name`` the task's main score. Rows for which
    ``admitted(row)`` is false, and :data:`NEVER_RANKED` methods, are neither ranked nor compared.
    Differences and ranks use one shared set of ``n_boot`` bootstrap resamples (``seed``)."""
    keep = pd.Series([bool(admitted(r)) and r.method not in NEVER_RANKED for _, r in table.iterrows()],
                     index=table.index, dtype=bool)
    excluded = {m: why for m, why in NEVER_RANKED.items() if m in set(table[~keep].method)}
    excluded.update({m: "did not pass validation" for m in sorted(set(table[~keep].method) - set(NEVER_RANKED))})
    rows, labels, left_out = load_rows(table[keep], records)
    dense = next((r for r in rows if r.method == "dense"), None)
    if not rows:
        return TaskRanking([], None, [], [], [], excluded, left_out)
    boot = Bootstrap(labels, n_boot=n_boot, seed=seed)
    per_seed = {r.key: boot.per_seed_scores(r.preds, metric_name) for r in rows}
    dense_reps = None if dense is None else boot.over_seeds(per_seed[dense.key][1], dense.seed_key)
    ranks, unranked = _ranks(rows, dense, dense_reps, boot, per_seed)
    further = [RangeRanking(low, *_ranks(rows, dense, dense_reps, boot, per_seed, low=low)) for low in FURTHER_LOWS]
    pairs = _comparisons(rows, dense)
    # normal p from the bootstrap SE: the share-of-replicates p bottoms out at 2/(n_boot+1), which Holm over a
    # three-seed table's ~60 comparisons could never reject
    # a record serving several grid targets stands in each target's row: its comparison with the same reference
    # record is one test, computed and counted once
    tests: dict[tuple, int] = {}
    diffs = []
    for r, ref, _, _ in pairs:
        if tests.setdefault(same_test(r, ref), len(diffs)) == len(diffs):
            diffs.append(difference(boot, r.preds, ref.preds, metric_name, r.seed_key, ref.seed_key, normal=True))
    reject, _ = holm([d.p for d in diffs])
    comparisons = []
    for r, ref, col, targets in pairs:
        test = tests[same_test(r, ref)]
        comparisons.append(Comparison(r, ref, col, targets, diffs[test], bool(reject[test])))
    return TaskRanking(rows, dense, ranks, unranked, comparisons, excluded, left_out, further)


def seed_curves(mine: list[Row]) -> dict[int, list[tuple[Row, int]]]:
    """Each complete seed's own curve through one method's rows ``mine``: ``{seed: [(row, index of the seed in
    the row's preds)]}``, at that seed's own compute (``row.seed_pcts``). A seed is complete when it has a
    record in every row (one serving several grid targets stands in each; a marked record stands in for a
    target out of reach); a seed still missing a row (a re-run part-way) is left out (:func:`partial_seeds`).
    """
    curves: dict[int, list[tuple[Row, int]]] = {}
    for r in mine:
        for i, s in enumerate(r.seed_order):
            curves.setdefault(s, []).append((r, i))
    return {s: c for s, c in curves.items() if len(c) == len(mine)}


def partial_seeds(mine: list[Row]) -> list[int]:
    """The seeds of one method's rows ``mine`` that lack a row (not yet run at every grid target): left out of
    its AUC."""
    have = {s for r in mine for s in r.seed_order}
    return sorted(have - set(seed_curves(mine)))


def _pct_of(r: Row, i: int) -> float:
    return r.seed_pcts[i] if r.seed_pcts else r.pct


def curve_start(mine: list[Row]) -> float:
    """Where one method's curve starts, % of dense: the cheapest point of the complete seed whose cheapest point
    is the costliest (the AUC over a range needs every complete seed's curve to reach its low end); without a
    complete seed, the cheapest row's mean."""
    curves = seed_curves(mine)
    if not curves:
        return min(r.pct for r in mine)
    return max(min(_pct_of(r, i) for r, i in curve) for curve in curves.values())


def method_auc(boot: Bootstrap, mine: list[Row], per_seed: dict, dense: Row, dense_reps: np.ndarray,
               low: float = LOW) -> tuple[float, np.ndarray] | None:
    """One method's AUC over ``low``-100 % of dense (score points) and its ``[B]`` hierarchical replicates, or
    ``None`` when a seed's curve starts above ``low`` (:func:`~.ranking.auc_weights`) or no seed is complete.
    Each complete seed's AUC (:func:`seed_curves`) is the area under its own curve (its rows at its own compute,
    then dense at 100 %; ``per_seed[row.key]``: the row's ``(scores [S], replicates [S, B])`` per seed); the
    method's is their mean, and each replicate resamples the seeds once for the whole curve, then the eval
    samples."""
    curves = seed_curves(mine)
    if not curves:
        return None
    aucs, reps = [], []
    for curve in curves.values():
        w = auc_weights([_pct_of(r, i) for r, i in curve], low=low)
        if w is None:
            return None
        aucs.append(w @ np.array([per_seed[r.key][0][i] for r, i in curve] + [dense.score]))
        reps.append(w @ np.stack([per_seed[r.key][1][i] for r, i in curve] + [dense_reps]))
    return float(np.mean(aucs)), boot.over_seeds(np.stack(reps), f"{mine[0].method}|curve")


def _ranks(rows: list[Row], dense: Row | None, dense_reps: np.ndarray | None, boot: Bootstrap, per_seed: dict,
           low: float = LOW) -> tuple[list[Rank], list[str]]:
    """Methods with an AUC over ``low``-100 % of dense ranked (:func:`~.ranking.rank_stability`; AUC:
    :func:`method_auc`, with dense's hierarchical replicates ``dense_reps [B]``), and the methods without one (a
    seed's curve starts above ``low``)."""
    methods = sorted({r.method for r in rows if r.method != "dense"})
    names, points, boots, unranked = [], [], [], []
    for m in methods:
        mine = [r for r in rows if r.method == m]
        auc = method_auc(boot, mine, per_seed, dense, dense_reps, low) if dense is not None else None
        if auc is None:
            unranked.append(m)
            continue
        names.append(m)
        points.append(auc[0])
        boots.append(auc[1])
    if not names:
        return [], unranked
    ranks = []
    for _, k in rank_stability(names, np.array(points), np.stack(boots)).iterrows():
        lo, hi = interval(boots[names.index(k["name"])])
        ranks.append(Rank(k["name"], int(k["rank"]), int(k.rank_lo), int(k.rank_hi), float(k.p_first),
                          float(k.value), lo, hi))
    return ranks, unranked


def ranking_section(table: pd.DataFrame, records: list[tuple], metric_name: str,
                    admitted: Callable[[pd.Series], bool] = lambda row: True, n_boot: int = 1000,
                    seed: int = 0) -> str:
    """Markdown of the ranking section of one task (:func:`rank_task`, then :func:`ranking_markdown`)."""
    return ranking_markdown(rank_task(table, records, metric_name, admitted, n_boot, seed))


def ranking_markdown(t: TaskRanking) -> str:
    """Markdown of one task's ranking: the seeds said plainly, the rank table with the grid columns, the
    paired differences and what is not ranked. Every string from a record is escaped."""
    out = ["\n### Ranking\n\n"]
    if not t.rows:
        return out[0] + "No rankable rows.\n"
    min_seeds, max_seeds = t.seeds
    if max_seeds == 1:
        out.append("Every row has **one seed**: intervals cover the eval samples only, not seed-to-seed "
                   "variation, and no seed bands are drawn.\n\n")
    else:
        counts = f"{max_seeds}" if min_seeds == max_seeds else f"{min_seeds} to {max_seeds}"
        out.append(f"Rows have {counts} seeds; intervals are hierarchical bootstrap intervals (seeds, then eval "
                   f"samples). With so few seeds the seed resampling is coarse: a 95 % interval's ends sit near the "
                   f"worst and best seed's own score, and it covers the seed-to-seed spread only as far as these "
                   f"{max_seeds} seeds show it.\n\n")
    out.append(_rank_table(t))
    out += [_further_table(rr) for rr in t.shown_further]
    out.append(_paired_table(t.comparisons))
    notes = [f"{escape_cell(m)}: {why}" for m, why in t.excluded.items()]
    notes += [f"{escape_cell(m)} {escape_cell(k)}: {why}" for m, k, why in t.left_out]
    if notes:
        out.append("\nNot ranked: " + "; ".join(notes) + ".\n")
    return "".join(out)


def _rank_table(t: TaskRanking) -> str:
    """Methods ranked by AUC with rank intervals and P(first), plus the grid columns."""
    from tabulate import tabulate

    auc = f"AUC {LOW:.0f}-{HIGH:.0f} %"
    table = []
    for k in t.ranks:
        row = {"rank": k.rank, "method": escape_cell(k.method), "plausible ranks": f"{k.rank_lo}-{k.rank_hi}",
               "P(first)": f"{k.p_first:.2f}", auc: f"{k.auc:.2f} [{k.lo:.2f}, {k.hi:.2f}]"}
        row.update(_grid_cells([r for r in t.rows if r.method == k.method]))
        table.append(row)
    for m in t.unranked:  # listed below the ranked ones with their grid points, without rank or AUC
        mine = [r for r in t.rows if r.method == m]
        table.append({"rank": "-", "method": escape_cell(m), "plausible ranks": "-", "P(first)": "-",
                      auc: f"- (from {curve_start(mine):.0f} %)", **_grid_cells(mine)})
    if not table:
        return "No method besides dense on this task: nothing to rank.\n"
    lines = [tabulate(pd.DataFrame(table), headers="keys", tablefmt="github", showindex=False,
                      disable_numparse=True) + "\n\n"]
    lines.append(f"AUC: the mean score over {LOW:.0f}-{HIGH:.0f} % of dense useful compute of the curve through the "
                 f"method's rows (its grid rows alone when it has any) and dense at 100 % (linear between points; a curve must start within 2 points of "
                 f"{LOW:.0f} %); with several seeds, the mean of each seed's own AUC (its rows at its own compute), "
                 f"every seed's curve starting within 2 points. Plausible ranks: the central 95 % of the method's rank over bootstrap resamples; "
                 f"P(first): the share of resamples in which it ranks first. Grid columns: the score at the row "
                 f"calibrated to that share of dense (* = the target was out of reach: the nearest point, its share "
                 f"in brackets); - = no grid point measured.\n")
    if t.unranked:
        lines.append(f"\nNot ranked, no AUC (the curve does not start within 2 points of {LOW:.0f} % of dense"
                     f"{'' if t.dense is not None else ', or there is no dense row'}): "
                     + ", ".join(escape_cell(m) for m in t.unranked) + ".\n")
    return "".join(lines)


def _further_table(rr: RangeRanking) -> str:
    """The ranking over ``rr.low``-100 % of dense: every method whose curve reaches ``rr.low``, so methods
    that cannot go down to 25 % are ranked at equal compute too."""
    from tabulate import tabulate

    auc = f"AUC {rr.low:.0f}-{HIGH:.0f} %"
    table = [{"rank": k.rank, "method": escape_cell(k.method), "plausible ranks": f"{k.rank_lo}-{k.rank_hi}",
              "P(first)": f"{k.p_first:.2f}", auc: f"{k.auc:.2f} [{k.lo:.2f}, {k.hi:.2f}]"} for k in rr.ranks]
    note = (f"\nNot ranked over {rr.low:.0f}-{HIGH:.0f} % either (the curve starts above "
            f"{rr.low + GRID_TOLERANCE:g} %): " + ", ".join(escape_cell(m) for m in rr.unranked) + ".\n"
            if rr.unranked else "")
    return (f"\nOver {rr.low:.0f}-{HIGH:.0f} % of dense, every method whose curve reaches {rr.low:.0f} % "
            f"(same statistics over the narrower range):\n\n"
            + tabulate(pd.DataFrame(table), headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
            + "\n" + note)


def _grid_cells(mine: list[Row]) -> dict:
    """``{"@ 25 %": cell, ...}`` of one method's grid points."""
    cells = {}
    for target in GRID:
        at = [r for r in mine if float(target) in r.grid]
        if not at:
            cells[f"@ {target} %"] = "-"
            continue
        r = at[0]
        g = r.grid[float(target)]
        mark = f"* ({reached_label(g)})" if g["marked"] else ""
        cells[f"@ {target} %"] = f"{r.score:.2f}{mark}"
    return cells


def _grid_label(rows: list[Row]) -> str:
    """The knob cell of ``rows`` that stand on the same records with the same comparisons (one record serving
    several grid targets, or one row): each grid target once, ``*`` where the record does not reach it; a row
    off the grid keeps its own label.

    >>> r = lambda t, marked: Row("m", "width", f"grid {t} %", 73.3, 60.0, np.zeros((1, 2)),
    ...                           {float(t): {"reached": 73.3, "marked": marked}})
    >>> _grid_label([r(25, True)]), _grid_label([r(25, True), r(50, True), r(75, False)]), _grid_label([r(75, False)])
    ('grid 25* %', 'grid 25*, 50*, 75 %', 'grid 75 %')
    """
    if len(rows) == 1 and not rows[0].grid:
        return rows[0].knob
    marked: dict[float, bool] = {}
    for r in rows:
        for target, g in r.grid.items():
            marked[target] = marked.get(target, False) or bool(g["marked"])
    if len(marked) != len(rows):   # not one grid target per row: list the rows' own labels
        return " / ".join(r.knob for r in rows)
    return "grid " + ", ".join(f"{t:g}{'*' if marked[t] else ''}" for t in sorted(marked)) + " %"


def _paired_table(comparisons: list[Comparison]) -> str:
    """Every row's paired differences (against dense and the family's controls), Holm-corrected together. Rows
    of one record serving several grid targets with the same tests are one line (``grid 25*, 50*, 75 %``)."""
    from tabulate import tabulate

    if not comparisons:
        return ""
    by_row: dict[str, list[Comparison]] = {}
    for c in comparisons:
        by_row.setdefault(c.row.key, []).append(c)
    lines: dict[tuple, list[list[Comparison]]] = {}   # same records and same tests -> the rows they stand in
    for mine in by_row.values():
        r = mine[0].row
        tests = tuple(sorted((c.column, same_test(r, c.reference)) for c in mine))
        lines.setdefault((r.record_ids or (r.key,), tests), []).append(mine)
    cells = []
    for group in lines.values():
        r = group[0][0].row
        row = {"method": escape_cell(r.method), "knob": escape_cell(_grid_label([g[0].row for g in group])),
               "seeds": r.seeds, "% dense": f"{r.pct:.1f}", "score": f"{r.score:.2f}"}
        for c in group[0]:
            row[escape_cell(c.column)] = _fmt_diff(c.diff, c.significant)
        cells.append(row)
    df = pd.DataFrame(cells).fillna("-")
    n = distinct_tests(comparisons)
    starred = any("*" in str(k) for k in df["knob"])
    return ("\nPaired differences (score points, 95 % CI; † = significant; "
            f"{n} comparison{'s' if n > 1 else ''}):\n\n"
            + tabulate(df, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
            + f"\n\n† {SIGNIFICANT}. Controls are compared at the same grid point only."
            + (" \\* = a grid target the method does not reach: the row is its nearest point, at the % of dense "
               "shown." if starred else "") + "\n")
