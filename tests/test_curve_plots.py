"""Readable score-compute plots (ccbench.reporting.curve_plots), rendered from points and records made in
the test: every method distinguishable, panels when crowded, seed bands, the Fig. 5 plot. The PNGs are
decoded and checked for size and content, never pixel by pixel."""
from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
from conftest import assert_drawn

from ccbench.reporting.curve_plots import curve_plots, plot_curves, plot_fig5, seed_points, styles

FAMILIES = {"dense": "dense", "avit": "token", "dynamicvit": "token", "evit": "token", "tome": "token",
            "random-drop": "token", "static-res": "static", "moe-topk": "width", "moe-expert-choice": "width",
            "soft-moe": "width", "moefication": "width", "early-exit": "depth", "patience": "depth",
            "static-depth": "static", "layer-skip": "depth", "avit-masked": "token"}


def _points(seeds: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"method": "dense", "family": "dense", "knob": "-", "pct": 100.0, "gmacs": 0.3, "score": 80.0,
             "seeds": seeds, "lo": np.nan, "hi": np.nan}]
    for method, family in FAMILIES.items():
        if method == "dense":
            continue
        for pct in (25.0, 50.0, 75.0):
            score = 60 + 0.2 * pct + rng.normal(0, 1)
            spread = (score - 1, score + 1) if seeds > 1 else (np.nan, np.nan)
            rows.append({"method": method, "family": family, "knob": f"k={pct:g}", "pct": pct, "gmacs": 0.3 * pct / 100,
                         "score": score, "seeds": seeds, "lo": spread[0], "hi": spread[1]})
    return pd.DataFrame(rows)


def test_every_method_has_its_own_look_and_families_share_a_colour():
    st = styles(_points())
    looks = {(s["color"], s["marker"], str(s["linestyle"])) for s in st.values()}
    assert len(looks) == len(st) == len(FAMILIES)
    assert st["avit"]["color"] == st["evit"]["color"] != st["early-exit"]["color"]
    assert all(st[m]["linestyle"] == "--" for m in ("static-res", "static-depth", "random-drop"))


def test_a_crowded_plot_gets_one_panel_per_family_with_bands(tmp_path):
    crowded = plot_curves(_points(seeds=3), tmp_path / "all.png", "imagenette (cpu)", "top-1 (%)")
    few = plot_curves(_points()[lambda d: d.method.isin(["dense", "avit", "evit"])], tmp_path / "few.png",
                      "imagenette (cpu)", "top-1 (%)")
    assert_drawn(crowded) and assert_drawn(few)
    tall, narrow = matplotlib.image.imread(crowded), matplotlib.image.imread(few)
    assert tall.shape[0] > 2.5 * narrow.shape[0]       # token, depth and width panels, one above the other


def test_fig5_draws_avit_with_the_token_methods_or_nothing(tmp_path):
    assert_drawn(plot_fig5(_points(), tmp_path / "fig5.png", "Fig. 5"))
    assert plot_fig5(_points()[lambda d: d.method != "avit"], tmp_path / "none.png", "Fig. 5") is None
    assert not (tmp_path / "none.png").exists()


def test_curve_plots_from_records_made_in_the_test(tmp_path):
    from test_ranking_section import _board

    table, records = _board(tmp_path / "results", seeds=(0, 1))
    points = seed_points(table, records)
    assert set(points.seeds) == {2} and (points.lo <= points.score).all() and (points.score <= points.hi).all()
    md = curve_plots(table, records, tmp_path, "cpu-sst2", "sst2 (cpu)")
    assert "(cpu-sst2.png)" in md and "fig5" not in md            # no A-ViT rows: no Fig. 5
    assert_drawn(tmp_path / "cpu-sst2.png")


def test_a_seed_band_never_bridges_a_point_without_one(tmp_path):
    """Rows at 25 and 40 % (2 seeds), 50 % (1 seed) and 75 % (2 seeds): the band covers 25-40 % and no band
    spans 50 %, where the one-seed point may lie outside any band drawn between its neighbours; the lone banded
    point at 75 % gets its own bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection

    from ccbench.reporting.curve_plots import _draw

    pts = pd.DataFrame([
        {"method": "dense", "family": "dense", "pct": 100.0, "score": 68.0, "lo": np.nan, "hi": np.nan},
        {"method": "evit", "family": "token", "pct": 25.0, "score": 50.0, "lo": 48.0, "hi": 52.0},
        {"method": "evit", "family": "token", "pct": 40.0, "score": 56.0, "lo": 54.0, "hi": 58.0},
        {"method": "evit", "family": "token", "pct": 50.0, "score": 62.0, "lo": np.nan, "hi": np.nan},
        {"method": "evit", "family": "token", "pct": 75.0, "score": 64.0, "lo": 62.0, "hi": 66.0}])
    fig, ax = plt.subplots()
    _draw(ax, pts, ["evit"], styles(pts), "pct")
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    spans = [(path.vertices[:, 0].min(), path.vertices[:, 0].max()) for c in polys for path in c.get_paths()]
    assert spans == [(25.0, 40.0)]                            # the 25-40 % run is one band, stopping before 50 %
    assert sorted(float(seg[0][0]) for c in bars for seg in c.get_segments()) == [75.0]   # the lone 75 % point
    plt.close(fig)
