"""Score-compute plots a reader can read (matplotlib, no torch): colour by family, a marker and line style
per method, controls dashed, dense as a reference line, the task's Pareto front behind the curves, the
legend outside the data, a band over the seeds' range where a row has more than one seed, one panel per
family when one plot would be crowded; and the
survey's Fig. 5 (A-ViT's accuracy-GMACs curve with DynamicViT, EViT, ToMe, random-drop and static-res).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .markdown import escape_cell
from .records import typed

FAMILY_COLOURS = {"token": "#1f77b4", "depth": "#d62728", "width": "#2ca02c", "static": "#7f7f7f",
                  "dense": "#000000"}
OTHER_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e"]  # plug-in families
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h"]
LINESTYLES = ["-", "-.", (0, (1, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (3, 1, 1, 1))]  # never "--": controls
CONTROLS = {"static-res", "static-depth", "random-drop"}     # drawn dashed: the baselines a method must beat
# which controls appear in which family's panel
PANEL_CONTROLS = {"token": ("static-res", "random-drop"), "depth": ("static-depth",)}
FIG5 = ("avit", "dynamicvit", "evit", "tome", "random-drop", "static-res")
CROWDED = 8   # more methods than this: one panel per family
NEVER_ON_FRONT = {"avit-masked"}   # a reference execution of avit's model, not a method


def seed_points(table: pd.DataFrame, records: list[tuple]) -> pd.DataFrame:
    """One point per table row: ``method, family, knob, pct, gmacs, score`` (means over seeds),
    ``lo``/``hi`` (the seeds' lowest and highest score; NaN with one seed) and ``seeds``, from the
    aggregated ``table`` rows (their ``record_ids``) and the verified ``records``."""
    by_id = {r["id"][:12]: r for _, r in records}
    out = []
    for t in table.itertuples():
        # through the typed record: version-1 files have their main score only through the read adapter
        scores = [float(typed(by_id[i]).metrics.main_score.value) for i in t.record_ids.split(",") if i in by_id]
        many = len(scores) > 1
        out.append({"method": t.method, "family": t.family, "knob": t.knob, "pct": float(t.pct_of_dense),
                    "gmacs": float(t.useful_gmacs), "score": float(t.top1), "seeds": len(scores),
                    "lo": min(scores) if many else np.nan, "hi": max(scores) if many else np.nan})
    return pd.DataFrame(out, columns=["method", "family", "knob", "pct", "gmacs", "score", "seeds", "lo", "hi"])


def styles(points: pd.DataFrame) -> dict[str, dict]:
    """``{method: matplotlib kwargs}``: the family's colour, a marker and line style of its own within the
    family (in name order), dashed for controls. Deterministic, so a method looks the same on every plot.

    >>> s = styles(pd.DataFrame({"method": ["avit", "evit", "static-res"], "family": ["token", "token", "static"]}))
    >>> s["avit"]["color"] == s["evit"]["color"], s["avit"]["marker"] != s["evit"]["marker"], s["static-res"]["linestyle"]
    (True, True, '--')
    """
    out, others = {}, iter(OTHER_COLOURS * 4)
    colours = dict(FAMILY_COLOURS)
    for family, g in points.groupby("family", sort=True):
        colour = colours.get(family) or colours.setdefault(family, next(others))
        for i, method in enumerate(sorted(set(g.method))):
            out[method] = {"color": colour, "marker": MARKERS[i % len(MARKERS)],
                           "linestyle": "--" if method in CONTROLS else LINESTYLES[i % len(LINESTYLES)]}
    return out


def _draw(ax, points: pd.DataFrame, methods: list[str], style: dict, x: str) -> None:
    """``methods``' curves on ``ax`` (x column ``x``), dense as a horizontal reference line."""
    dense = points[points.method == "dense"]
    if not dense.empty:
        ax.axhline(dense.score.iloc[0], color="black", lw=1, ls=":", label="dense (reference)", zorder=1)
    for method in methods:
        g = points[points.method == method].sort_values(x)
        if g.empty or method == "dense":
            continue
        st = style[method]
        ax.plot(g[x], g.score, label=method, color=st["color"], marker=st["marker"], linestyle=st["linestyle"],
                markersize=5, lw=1.4, zorder=3)
        for run in band_runs(g.lo.to_numpy(dtype=float), g.hi.to_numpy(dtype=float)):
            band = g.iloc[run]
            if len(run) > 1:
                ax.fill_between(band[x], band.lo, band.hi, color=st["color"], alpha=0.15, lw=0, zorder=2)
            else:   # a lone multi-seed point between one-seed points: its interval as a bar, not a bridge
                ax.vlines(band[x], band.lo, band.hi, color=st["color"], alpha=0.35, lw=3, zorder=2)
    ax.grid(alpha=0.3)


def band_runs(lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """Index runs ``[k]`` of consecutive points (in x order) that all have a seed band (finite ``lo`` and
    ``hi [K]``): a band is drawn over each run alone, never across a point without one.

    >>> [r.tolist() for r in band_runs(np.array([1.0, np.nan, 2, 3, np.nan]), np.array([2.0, np.nan, 3, 4, 5]))]
    [[0], [2, 3]]
    """
    ok = np.isfinite(lo) & np.isfinite(hi)
    runs, start = [], None
    for i, has in enumerate(np.append(ok, False)):
        if has and start is None:
            start = i
        elif not has and start is not None:
            runs.append(np.arange(start, i))
            start = None
    return runs


def _front(ax, points: pd.DataFrame, x: str) -> None:
    """The task's Pareto front (every method, dense included; :func:`ccbench.reporting.ranking.pareto_front`)
    as a wide pale line behind the curves."""
    from .ranking import pareto_front

    pts = points[~points.method.isin(NEVER_ON_FRONT)]
    on = pts[pareto_front(pts[x], pts.score)].sort_values(x)
    if len(on) > 1:
        ax.plot(on[x], on.score, color="#f0c040", lw=6, alpha=0.45, solid_capstyle="round", label="Pareto front",
                zorder=0)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def plot_curves(points: pd.DataFrame, path: Path, title: str, ylabel: str) -> Path:
    """Score against % of dense useful compute for every method of ``points`` (:func:`seed_points`),
    written to ``path`` (PNG); one panel per family (with its controls and dense) when more than
    :data:`CROWDED` methods share the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = styles(points)
    methods = sorted(set(points.method) - {"dense"})
    if len(methods) <= CROWDED:
        panels = [(title, methods)]
    else:
        families = sorted(set(points.family) - {"dense", "static"})
        panels = [(f"{title}: {fam}", sorted(set(points[points.family == fam].method)
                                              | (set(PANEL_CONTROLS.get(fam, ())) & set(methods))))
                  for fam in families]
        leftover = sorted(set(methods) - {m for _, ms in panels for m in ms})
        if leftover:
            panels.append((f"{title}: controls", leftover))
    # panels stacked, so each legend sits right of its own panel without covering the next
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.5, 3.4 * len(panels)), squeeze=False, sharex=True,
                             sharey=True)
    for ax, (name, ms) in zip(axes[:, 0], panels):
        _front(ax, points, "pct")
        _draw(ax, points, ms, style, "pct")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    axes[-1][0].set_xlabel("useful compute (% of dense)")
    fig.tight_layout()
    if points.seeds.max() > 1:
        fig.text(0.01, -0.02, "bands: the range of the seeds' scores", fontsize=7)
    _save(fig, path)
    return path


def plot_fig5(points: pd.DataFrame, path: Path, title: str, ylabel: str = "top-1 (%)") -> Path | None:
    """The survey's Fig. 5: accuracy against useful GMACs of A-ViT with DynamicViT, EViT, ToMe, random-drop
    and static-res (those of them present), dense as the reference; ``None`` (nothing written) without A-ViT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not (points.method == "avit").any():
        return None
    style = styles(points)
    fig, ax = plt.subplots(figsize=(6, 4))
    _draw(ax, points, [m for m in FIG5 if (points.method == m).any()], style, "gmacs")
    dense = points[points.method == "dense"]
    if not dense.empty:
        ax.axvline(dense.gmacs.iloc[0], color="black", lw=0.8, ls=":", zorder=1)
    ax.set_xlabel("useful GMACs per sample")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    _save(fig, path)
    return path


def curve_plots(table: pd.DataFrame, records: list[tuple], out_dir: Path, stem: str, title: str) -> str:
    """Write a task's plots to ``out_dir`` (``<stem>.png``; ``<stem>-fig5.png`` when it has A-ViT rows)
    and return their markdown links. ``stem`` must be a safe file stem (:func:`ccbench.common.names.file_stem`)."""
    points = seed_points(table, records)
    name = table.score_name.iloc[0]
    ylabel = "top-1 (%)" if name == "top1" else f"{name} (x 100)"
    main = plot_curves(points, Path(out_dir) / f"{stem}.png", title, ylabel)
    out = f"\n![score vs % of dense compute]({escape_cell(main.name)})\n"
    fig5 = plot_fig5(points, Path(out_dir) / f"{stem}-fig5.png", f"{title}: A-ViT and token methods (survey Fig. 5)",
                     ylabel)
    if fig5 is not None:
        out += f"\n![A-ViT accuracy-GMACs curve with the token methods]({escape_cell(fig5.name)})\n"
    return out
