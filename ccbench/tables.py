"""Records -> one pandas DataFrame -> markdown (tabulate) or CSV.

One row per (task, budget, method, knob value); seeds are aggregated as the mean with their count.
When one seed was measured more than once, its latest record counts.
Every accuracy carries a 95 % bootstrap CI over eval samples (for several seeds: over samples of the
seed-averaged correctness).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .markdown import escape_cell
from .records import load_records, load_samples, rows_of
from .stats import bootstrap_ci

NOISE_NOTE = ("score: the task's main score (images: top-1 %; GLUE: the official main score, x 100) with a "
              "95 % percentile-bootstrap CI over eval samples; on Imagenette val "
              "(3,925 images) one standard error is about 0.7 points, so differences smaller than the "
              "CIs are noise. GMACs: 1e9 multiply-adds per sample (fvcore convention; FLOPs = 2 x MACs). "
              "exec/useful: fvcore-executed over trace-derived useful MACs at batch 1 ('!' = more than "
              "2 % of the compute is executed but not useful, i.e. masked rather than skipped). speedup: "
              "dense time / method time, interleaved in one process ('?' = the run's dense-vs-dense control or the "
              "spread between repeats says the timing was disturbed; re-measure). eff: speedup / ideal speedup (dense GMACs / "
              "useful GMACs of the timed samples). Width family: active params = parameters a token uses (measured "
              "from the trace), util = share of experts with >= 1 % of the picks, NMI = expert-class normalised "
              "mutual information minus its mean over 20 label shuffles (mean over MoE layers). vs static: score minus "
              "the family's static control (depth: static-depth, token: static-res; with dense as the 100 % point) "
              "interpolated linearly at the row's % of dense compute; '-' outside the control's range.")

COLUMNS = ["task", "budget", "method", "family", "knob", "seeds", "score_name", "top1", "top1_ci95", "useful_gmacs",
           "pct_of_dense", "exec_over_useful_b1", "flag_masked", "speedup_b1", "speedup_bN", "bN", "flag_latency", "eff_b1", "eff_bN",
           "active_params_m", "utilization", "nmi", "train_samples", "backbone", "backbone_name", "budget_version",
           "record_ids"]


def _knob_text(value) -> str:
    """Knob value as a label: numbers in their shortest form, so 3 and 3.0 are one configuration.

    >>> _knob_text(3.0), _knob_text(0.5), _knob_text("x")
    ('3', '0.5', 'x')
    """
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _number(value) -> float:
    """``value`` when it is a number (not a bool), else ``TypeError`` (a crafted record)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return value


def _row(path, record: dict) -> dict:
    m = record["metrics"]
    k = record["method"]["knob"]
    score = m.get("main_score", {"name": "top1", "value": m.get("top1"), "ci95": m.get("top1_ci95")})
    return {
        "task": record["task"]["name"], "budget": record["budget"]["name"],
        "budget_version": record["budget"].get("version"),
        "method": record["method"]["name"], "family": record["method"]["family"],
        "knob": f"{k['name']}={_knob_text(k['value'])}" if k["value"] is not None else "-",
        "seed": record["seed"], "score_name": str(score["name"]), "top1": _number(score["value"]),
        "ci_lo": _number(score["ci95"][0]), "ci_hi": _number(score["ci95"][1]),
        "useful_gmacs": m["useful_gmacs"]["mean"], "pct_of_dense": 100 * m["useful_fraction_of_dense"],
        "exec_over_useful_b1": m["executed_over_useful"]["batch1"],
        "flag_masked": bool(m["flag_executed_exceeds_useful"]),
        "speedup_b1": m["latency"]["batch1"]["speedup"], "speedup_bN": m["latency"]["batchN"]["speedup"],
        "bN": m["latency"]["batchN"]["batch_size"],
        # records older than the latency check have none: they count as unchecked, not as flagged
        "flag_latency": any(not m["latency"][b].get("check", {}).get("ok", True) for b in ("batch1", "batchN")),
        "eff_b1": m["latency"]["batch1"]["efficiency"], "eff_bN": m["latency"]["batchN"]["efficiency"],
        "train_samples": record["budget"]["consumed"]["samples"],
        "backbone": record["backbone"]["sha256"], "backbone_name": record["backbone"]["file"],
        "record_id": record["id"], "path": str(path),
        "date": record["date"],
        "active_params_m": m.get("active_params_per_token", np.nan) / 1e6,
        "utilization": m.get("routing", {}).get("mean_over_layers", {}).get("utilization", np.nan),
        "nmi": m.get("routing", {}).get("mean_over_layers", {}).get("nmi", np.nan),
    }


def _seed_ci(paths: list[str], seed: int = 0) -> tuple[float, float]:
    """CI of seed-averaged per-sample correctness (samples aligned by example id); only for scores
    that are accuracies."""
    per_seed = []
    for p in paths:
        s = load_samples(p)
        order = np.argsort(s["ids"])
        per_seed.append((s["pred"][order] == s["label"][order]).astype(np.float64))
    lo, hi = bootstrap_ci(torch.from_numpy(np.mean(per_seed, axis=0)), seed=seed)
    return 100 * lo, 100 * hi


def load_table(results_dir=None, task: str | None = None, budget: str | None = None) -> pd.DataFrame:
    """Aggregated table of every record under ``results_dir`` (filtered by task/budget)."""
    rows = rows_of(load_records(results_dir), _row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    if task:
        df = df[df.task == task]
    if budget:
        df = df[df.budget == budget]
    # a re-measured configuration replaces the earlier record of the same seed (both stay on disk)
    df = (df.sort_values("date")
            .drop_duplicates(["task", "budget", "method", "knob", "backbone", "seed"], keep="last"))
    out = []
    for key, g in df.groupby(["task", "budget", "method", "knob", "backbone"], sort=True):
        if len(g) == 1:
            lo, hi = g.ci_lo.iloc[0], g.ci_hi.iloc[0]
        elif g.score_name.iloc[0] in ("top1", "accuracy"):
            lo, hi = _seed_ci(list(g.path))
        else:  # F1, Matthews, correlations are not means of per-sample scores: no pooled CI across seeds yet
            lo, hi = np.nan, np.nan
        out.append({
            "task": key[0], "budget": key[1], "method": key[2], "family": g.family.iloc[0], "knob": key[3],
            "seeds": len(g), "score_name": g.score_name.iloc[0], "top1": g.top1.mean(),
            "top1_ci95": "-" if np.isnan(lo) else f"{lo:.1f}-{hi:.1f}",
            "useful_gmacs": g.useful_gmacs.mean(), "pct_of_dense": g.pct_of_dense.mean(),
            "exec_over_useful_b1": g.exec_over_useful_b1.mean(), "flag_masked": bool(g.flag_masked.any()),
            "speedup_b1": g.speedup_b1.mean(), "speedup_bN": g.speedup_bN.mean(), "bN": int(g.bN.iloc[0]),
            "flag_latency": bool(g.flag_latency.any()),
            "eff_b1": g.eff_b1.mean(), "eff_bN": g.eff_bN.mean(),
            "active_params_m": g.active_params_m.mean(), "utilization": g.utilization.mean(), "nmi": g.nmi.mean(),
            "train_samples": int(g.train_samples.mean()), "backbone": key[4],
            "backbone_name": g.backbone_name.iloc[0],
            "budget_version": g.budget_version.iloc[0] if g.budget_version.nunique(dropna=False) == 1 else None,
            "record_ids": ",".join(i[:12] for i in g.record_id),
        })
    return pd.DataFrame(out, columns=COLUMNS)


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
    for (task, budget), g in df.groupby(["task", "budget"]):
        for family, control in STATIC_CONTROL.items():
            curve = g[(g.method == control) | (g.method == "dense")].sort_values("pct_of_dense")
            if (curve.method == control).sum() < 1 or len(curve) < 2:
                continue
            rows = g[g.family == family]
            x, y = curve.pct_of_dense.to_numpy(), curve.top1.to_numpy()
            inside = (rows.pct_of_dense >= x.min()) & (rows.pct_of_dense <= x.max())
            out[rows.index[inside]] = rows.top1[inside] - np.interp(rows.pct_of_dense[inside], x, y)
    return out


def _fmt(values, pattern: str) -> list[str]:
    return ["-" if pd.isna(v) else pattern.format(v) for v in values]


def _routing_columns(df: pd.DataFrame) -> dict:
    """Width-family columns, only when some row has routing statistics."""
    if df.utilization.isna().all():
        return {}
    return {"active params (M)": _fmt(df.active_params_m, "{:.2f}"), "util": _fmt(df.utilization, "{:.2f}"),
            "NMI (chance-corr.)": _fmt(df.nmi, "{:.3f}")}


def _static_columns(df: pd.DataFrame) -> dict:
    """``vs static``: score minus the static control at equal compute, when any row has one."""
    gap = static_gap(df)
    if gap.isna().all():
        return {}
    return {"vs static": _fmt(gap, "{:+.2f}")}


def _escaped(column: pd.Series) -> list[str]:
    """Each value of a record-derived column escaped for a markdown cell (:func:`escape_cell`)."""
    return [escape_cell(v) for v in column]


def render(df: pd.DataFrame, fmt: str = "markdown", note: bool = True) -> str:
    """Markdown (with the noise note unless ``note=False``) or CSV text of a table from
    :func:`load_table`."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if df.empty:
        return "(no records)"
    from tabulate import tabulate

    cell = _escaped
    view = pd.DataFrame({
        "task": cell(df.task), "budget": cell(df.budget), "method": cell(df.method), "knob": cell(df.knob),
        "seeds": df.seeds,
        "score": [f"{v:.2f}" + ("" if n == "top1" else f" ({escape_cell(n)})") for v, n in zip(df.top1, df.score_name)],
        "95% CI": df.top1_ci95,
        "GMACs": df.useful_gmacs.map("{:.3f}".format), "% dense": df.pct_of_dense.map("{:.1f}".format),
        "exec/useful": [f"{v:.3f}{' !' if f else ''}" for v, f in zip(df.exec_over_useful_b1, df.flag_masked)],
        "speedup b1": [f"{v:.2f}x{' ?' if f else ''}" for v, f in zip(df.speedup_b1, df.flag_latency)],
        "speedup bN": [f"{v:.2f}x (b{n}){' ?' if f else ''}" for v, n, f in zip(df.speedup_bN, df.bN, df.flag_latency)],
        "eff b1": df.eff_b1.map("{:.2f}".format), "eff bN": df.eff_bN.map("{:.2f}".format),
        **_routing_columns(df),
        **_static_columns(df),
        "train samples": df.train_samples, "backbone": cell(df.backbone.str[:10]),
    })
    text = tabulate(view, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
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
