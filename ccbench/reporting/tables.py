"""Records -> one pandas DataFrame -> markdown (tabulate) or CSV.

One row per (task, budget, method, knob value); seeds are aggregated as the mean with their count.
When one seed was measured more than once, its latest record counts.
Every accuracy carries a 95 % bootstrap CI over eval samples (for several seeds: over samples of the
seed-averaged correctness). The columns are declared once in :mod:`ccbench.reporting.columns`; records are read
through their typed models (:mod:`ccbench.reporting.record_schema`). No torch: the bootstrap is numpy.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ccbench.common.errors import UserError

from . import columns as C
from .markdown import escape_cell
from .record_schema import grid_label
from .records import load_records, load_samples, rows_of, typed

NOISE_NOTE = ("score: the task's main score (images: top-1 %; GLUE: the official main score, x 100) with a "
              "95 % percentile-bootstrap CI over eval samples; on Imagenette val "
              "(3,925 images) one standard error is about 0.7 points, so differences smaller than the "
              "CIs are noise. GMACs: 1e9 multiply-adds per sample (fvcore convention; FLOPs = 2 x MACs). "
              "exec/useful: fvcore-executed over trace-derived useful MACs at batch 1 ('!' = more than "
              "2 % of the compute is executed but not useful, i.e. masked rather than skipped). speedup: "
              "dense time / method time, interleaved in one process; at each batch size, the mean over the row's "
              "seeds whose timing passed the latency check (the run's dense-vs-dense control and the spread "
              "between repeats), 'n of m seeds' when only n of its m seeds did, '?' when none did (then the mean "
              "over all its seeds, each timing disturbed; re-measure). eff: speedup / ideal speedup (dense GMACs / "
              "useful GMACs of the timed samples), over the same seeds. Width family: active params = parameters a token uses (measured "
              "from the trace), util = share of experts with >= 1 % of the picks; class NMI = expert-class normalised "
              "mutual information minus its mean over 20 label shuffles (mean over MoE layers), each sample's expert "
              "distribution weighted equally, each processed pick once in brackets; position NMI = the same between "
              "expert and token position (shuffles within samples); requested load = the router's top-k choices "
              "before capacity, max/mean (coefficient of variation); dropped % = requested picks over capacity; "
              "'n/a (by construction)' = constant for that method by its construction (declared in its METADATA). vs static: score minus "
              "the family's static control (depth: static-depth, token: static-res; with dense as the 100 % point) "
              "interpolated linearly at the row's % of dense compute; '-' outside the control's range.")

COLUMNS = [c.key for c in C.COLUMNS]


def _row(path, record: dict) -> dict:
    """One run record's per-record values (:func:`ccbench.reporting.columns.row`)."""
    return C.row(path, typed(record))


def seeds_ci(paths: list[str], metric_name: str, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The hierarchical bootstrap 95 % CI (%) of the mean over seeds of a row's main score, from its seeds'
    sample files ``paths`` (aligned by example id): each replicate resamples the seeds, then the eval samples
    (:class:`~ccbench.reporting.paired.Bootstrap`), so seed-to-seed variation widens it; any registered
    metric (F1, Matthews and correlations too)."""
    from .paired import Bootstrap, aligned_predictions, interval

    _, labels, preds = aligned_predictions([load_samples(p) for p in paths])
    _, reps = Bootstrap(labels, n_boot=n_boot, seed=seed).scores(preds, metric_name, "table")
    return interval(reps)


def score_ci(g: pd.DataFrame) -> str:
    """The ``95% CI`` cell of one row's records ``g``: the record's own CI for one seed; for several, the
    hierarchical bootstrap CI over seeds and eval samples (:func:`seeds_ci`)."""
    if len(g) == 1:
        lo, hi = g.ci_lo.iloc[0], g.ci_hi.iloc[0]
    else:
        try:
            lo, hi = seeds_ci(list(g.path), g.score_name.iloc[0])
        except (ValueError, UserError):   # seeds evaluated on different samples, or an unknown score: no interval
            lo, hi = np.nan, np.nan
    return "-" if np.isnan(lo) else f"{lo:.1f}-{hi:.1f}"


def one_row_per_grid_target(df: pd.DataFrame) -> pd.DataFrame:
    """Per-record rows with a grid record that serves several targets (a knob that reached none of them, an
    integer knob landing on one value) repeated once per target, keyed ``grid T %``: each target's row then
    pools every seed that serves it, whichever targets a seed's values happened to share."""
    multi = df.grid_targets.map(len) > 1
    if not multi.any():
        return df
    repeated = df[multi].explode("grid_targets")
    repeated["knob"] = [grid_label([t]) for t in repeated.grid_targets]
    repeated["grid_targets"] = [(float(t),) for t in repeated.grid_targets]
    return pd.concat([df[~multi], repeated], ignore_index=True)


def load_table(results_dir=None, task: str | None = None, budget: str | None = None,
               records: list | None = None) -> pd.DataFrame:
    """Aggregated table of every run record under ``results_dir`` (or of the already verified
    ``records``, ``[(path, record)]``), filtered by task/budget: one row per :data:`ccbench.reporting.columns.GROUP`,
    a column per :data:`ccbench.reporting.columns.COLUMNS` entry."""
    if records is None:
        records = load_records(results_dir)
    df = pd.DataFrame(rows_of(records, _row))
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    if task:
        df = df[df.task == task]
    if budget:
        df = df[df.budget == budget]
    df = one_row_per_grid_target(df)
    # a re-measured configuration replaces the earlier record of the same seed (both stay on disk); a record
    # from a clean tree wins over a dirty twin whatever their dates
    df = df.sort_values(["clean", "date"]).drop_duplicates(list(C.SEED_KEY), keep="last")
    out = []
    for key, g in df.groupby(list(C.GROUP), sort=True):
        row = dict(zip(C.GROUP, key))
        row.update({c.key: c.agg(g, c.key) for c in C.COLUMNS if c.agg is not None})
        row["top1_ci95"] = score_ci(g)
        out.append(row)
    return pd.DataFrame(out, columns=COLUMNS)


def curve_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of an aggregated ``table`` (:func:`load_table`) that make each method's accuracy-compute curve:
    a method with rows on the compute grid by those alone, any other method by all its rows. A method's
    off-grid rows (records made before the grid, or calibrated on a model trained for another compute) stay
    in the table but are neither ranked nor drawn: the ranking compares the grid's equal-compute points."""
    if table.empty or "grid_row_targets" not in table:
        return table
    on_grid = table.grid_row_targets.map(lambda t: bool(t) if isinstance(t, tuple) else False)
    gridded = set(table[on_grid].method)
    return table[on_grid | ~table.method.isin(gridded)]


STATIC_CONTROL = {"depth": "static-depth", "token": "static-res"}


def static_gap(df: pd.DataFrame) -> pd.Series:
    """Score minus the family's static control at the same compute (points), per row: the control's
    curve (its knob values plus ``dense`` at 100 %) is interpolated linearly in % of dense compute;
    NaN outside its range or without a control (``STATIC_CONTROL``: depth -> static-depth, token ->
    static-res).

    >>> df = pd.DataFrame({"task": ["t"] * 4, "budget": ["b"] * 4, "family": ["dense", "static", "static", "depth"],
    ...                    "method": ["dense", "static-depth", "static-depth", "early-exit"],
    ...                    "pct_of_dense": [100.0, 40.0, 60.0, 50.0], "top1": [70.0, 60.0, 64.0, 65.0]})
    >>> static_gap(df).tolist()[3]   # the control at 50 % is 62.0
    3.0
    """
    out = pd.Series(np.nan, index=df.index)
    by = ["task", "task_version", "budget"] if "task_version" in df else ["task", "budget"]   # one version's curve
    for _, g in df.groupby(by):
        for family, control in STATIC_CONTROL.items():
            curve = g[(g.method == control) | (g.method == "dense")].sort_values("pct_of_dense")
            if (curve.method == control).sum() < 1 or len(curve) < 2:
                continue
            rows = g[g.family == family]
            x, y = curve.pct_of_dense.to_numpy(), curve.top1.to_numpy()
            inside = (rows.pct_of_dense >= x.min()) & (rows.pct_of_dense <= x.max())
            out[rows.index[inside]] = rows.top1[inside] - np.interp(rows.pct_of_dense[inside], x, y)
    return out


def merge_shared_grid_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of an aggregated table (:func:`load_table`) with the grid rows that stand on exactly the same
    records (a knob that reached none of its targets, or landed on one value for several) merged into one row
    keyed by all their targets, e.g. ``grid 25,50,75 %``: its figures are one measurement, shown once. The
    per-target rows stay in the table itself (CSV, plots, ranking).

    >>> t = pd.DataFrame({"task": ["t"] * 3, "method": ["m"] * 3, "knob": ["grid 25 %", "grid 50 %", "grid 75 %"],
    ...                   "record_ids": ["a", "a", "b"], "grid_row_targets": [(25.0,), (50.0,), (75.0,)]})
    >>> merge_shared_grid_rows(t)[["knob", "record_ids"]].values.tolist()
    [['grid 25,50 %', 'a'], ['grid 75 %', 'b']]
    """
    if df.empty or "grid_row_targets" not in df or "record_ids" not in df:
        return df
    keys = [k for k in (*C.GROUP, "record_ids") if k in df and k != "knob"]
    on_grid = df.grid_row_targets.map(lambda t: bool(t) if isinstance(t, tuple) else False)
    out, seen = [], {}
    for i, row in df.iterrows():
        if not on_grid[i]:
            out.append(row)
            continue
        key = tuple(row[k] for k in keys)
        if key in seen:
            first = out[seen[key]]
            targets = tuple(sorted(set(first.grid_row_targets) | set(row.grid_row_targets)))
            out[seen[key]] = first.copy()
            out[seen[key]]["grid_row_targets"] = targets
            out[seen[key]]["knob"] = grid_label(targets)
            continue
        seen[key] = len(out)
        out.append(row)
    return pd.DataFrame(out).reset_index(drop=True)


def render(df: pd.DataFrame, fmt: str = "markdown", note: bool = True) -> str:
    """Markdown (with the noise note unless ``note=False``) or CSV text of a table from
    :func:`load_table`; the markdown columns are :data:`ccbench.reporting.columns.MARKDOWN` (routing columns only
    when some row has routing statistics, ``vs static`` only when some row has a static control). Markdown shows
    grid rows that stand on the same records once (:func:`merge_shared_grid_rows`); CSV keeps one row per target."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if df.empty:
        return "(no records)"
    from tabulate import tabulate

    df = merge_shared_grid_rows(df)

    cells = {}
    for key in C.MARKDOWN:
        if key == "vs static":
            gap = static_gap(df)
            if not gap.isna().all():
                cells[key] = C._fmt(gap, "{:+.2f}")
        elif key not in C.ROUTING or not df.utilization.isna().all():
            c = C.column(key)
            cells[c.header] = c.cell(df)
    text = tabulate(pd.DataFrame(cells), headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
    return text + "\n\n" + NOISE_NOTE if note else text


GLUE_TASKS = ["sst2", "mrpc", "cola", "rte", "stsb"]


def glue_table(df: pd.DataFrame) -> str:
    """Markdown: one row per (budget, method, knob) on GLUE tasks, each task's main score with its
    share of dense compute, and the average of the five main scores (only when all five exist)."""
    from tabulate import tabulate

    glue = df[df.task.isin(GLUE_TASKS)]
    if glue.empty:
        return "(no GLUE records)"
    rows = []
    for (budget, method, knob), g in glue.groupby(["budget", "method", "knob"], sort=True):
        by_task = {t: g[g.task == t].iloc[0] for t in GLUE_TASKS if (g.task == t).any()}
        row = {"budget": escape_cell(budget), "method": escape_cell(method), "knob": escape_cell(knob)}
        for t in GLUE_TASKS:
            row[t] = (f"{by_task[t].top1:.2f} ({by_task[t].pct_of_dense:.0f}%)" if t in by_task else "-")
        row["average"] = (f"{np.mean([by_task[t].top1 for t in GLUE_TASKS]):.2f}"
                          if len(by_task) == len(GLUE_TASKS) else "-")
        rows.append(row)
    return tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
