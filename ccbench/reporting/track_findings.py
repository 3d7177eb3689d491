"""One finding paragraph per table of the specialization-and-transfer track, written from its numbers
(:mod:`ccbench.reporting.track` estimates, marked by :func:`~ccbench.reporting.track.mark_holm`): which
sub-modules transfer better or worse than dense, under which protocol, at what compute; which methods drop
more or less than dense under shift and spend more or less compute there, with intervals; and how many
seeds the figures rest on. Pure functions of a DataFrame; the text holds record strings as they are
(method, knob, condition): the caller escapes it for markdown, the site's templates for HTML.

>>> seeds_sentence(pd.DataFrame({"method": ["avit", "evit"], "knob": ["-", "-"], "seeds": [1, 1]}))
'These figures are single-seed: the intervals cover the eval samples only, not seed-to-seed variation.'
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def row_name(method: str, knob: str) -> str:
    """``method (knob)``, or the method alone without a knob (``-``)."""
    return method if knob == "-" else f"{method} ({knob})"


def _ci(value: float, lo: float, hi: float, digits: int = 2) -> str:
    """``+1.23 [+0.40, +2.10]`` (points)."""
    return f"{value:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def seeds_sentence(rows: pd.DataFrame) -> str:
    """What the seed counts of a table's estimates make of its intervals: ``rows`` holds one estimate per row with
    its ``method``, ``knob`` and ``seeds``; the rows on fewer than three seeds are named, with their fewest."""
    seeds = rows.seeds
    lo, hi = int(seeds.min()), int(seeds.max())
    if hi <= 1:
        return "These figures are single-seed: the intervals cover the eval samples only, not seed-to-seed variation."
    if lo < 3:
        few = rows[seeds < 3].groupby(["method", "knob"], sort=True).seeds.min()
        named = ", ".join(f"{row_name(m, k)} on {int(n)}" for (m, k), n in few.items())
        rest = seeds[seeds >= 3]
        others = "" if rest.empty else f"; the others on {_span(int(rest.min()), int(rest.max()))}"
        return (f"Some figures rest on fewer than three seeds ({named}{others}); single-seed ones have intervals over "
                f"the eval samples only, not seed-to-seed variation.")
    return f"Each figure pools {_span(lo, hi)} seeds: the intervals cover seeds and eval samples."


def _span(lo: int, hi: int) -> str:
    """``3`` or ``3 to 5``."""
    return str(lo) if lo == hi else f"{lo} to {hi}"


def _excluding_zero(df: pd.DataFrame, estimate: str) -> pd.Series:
    """Whether each estimate's 95 % interval excludes zero."""
    return (df[f"{estimate}_lo"] > 0) | (df[f"{estimate}_hi"] < 0)


_UNADJUSTED_ONLY = "not significant after the Holm correction, though its 95 % interval excludes zero (°)"


def _unadjusted_count(g: pd.DataFrame, estimate: str) -> str:
    """``; k with a 95 % interval that excludes zero (°)`` for the non-significant estimates of ``g`` whose
    unadjusted interval excludes zero, or nothing when none does."""
    k = int(_excluding_zero(g, estimate).sum())
    return f"; {k} with a 95 % interval that excludes zero (°)" if k else ""


def _rest(df: pd.DataFrame, estimate: str, what: str) -> str:
    """The estimates of ``df`` that are not significant: their range, and how many exclude zero unadjusted
    (``what``: the estimates' name, singular)."""
    if df.empty:
        return ""
    unadjusted = int(_excluding_zero(df, estimate).sum())
    if len(df) == 1:
        said = _UNADJUSTED_ONLY if unadjusted else "not significant after the Holm correction"
        return f"The other {what} ({df[estimate].iloc[0]:+.2f} points) is {said}."
    lo, hi = f"{df[estimate].min():+.2f}", f"{df[estimate].max():+.2f}"
    spread = f"{'both' if len(df) == 2 else 'each'} {lo}" if lo == hi else f"{lo} to {hi}"
    text = f"The other {len(df)} {what}s ({spread} points) are not significant after the Holm correction"
    if not unadjusted:
        return text + "."
    verb = "has" if unadjusted == 1 else "have"
    return text + f"; {unadjusted} of them {verb} a 95 % interval that excludes zero (°)."


def transfer_finding(df: pd.DataFrame) -> str:
    """The paragraph under one transfer table: ``df`` holds its rows (:func:`~ccbench.reporting.track.transfer_gains`
    of one source -> target, with ``gain_sig``); dense reference rows and rows without a gain are ignored."""
    rows = df[(df.method != "dense") & df.get("gain", pd.Series(np.nan, index=df.index)).notna()]
    if rows.empty:
        return "No method has a dense transfer under its matching protocol here: there is no gain to report."

    def said(r) -> str:
        return (f"{row_name(r.method, r.knob)} under {r.protocol}, {_ci(r.gain, r.gain_lo, r.gain_hi)} points at "
                f"{r.dense_pct:.0f} % of dense compute")

    sig = rows.gain_sig.astype(bool)
    better, worse = rows[sig & (rows.gain > 0)], rows[sig & (rows.gain < 0)]
    parts = []
    if better.empty:
        parts.append("No method has sub-modules that transfer measurably better than dense under any protocol "
                     "measured.")
    else:
        parts.append("Transfer better than dense: " + "; ".join(said(r) for r in better.itertuples()) + ".")
    if not worse.empty:
        parts.append("Worse than dense: " + "; ".join(said(r) for r in worse.itertuples()) + ".")
    parts.append(_rest(rows[~sig], "gain", "gain"))
    parts.append(seeds_sentence(rows))
    return " ".join(p for p in parts if p)


def _gap(r: pd.Series, there: str = "") -> str:
    """``score minus dense score[ there]: -4.00 [-5.10, -2.90] points`` (the shifted scores' difference, which
    tells a smaller drop from less to lose), or '' when the row has none."""
    if pd.isna(r.get("gap", np.nan)):
        return ""
    return f"score minus dense score{there}: {_ci(r['gap'], r['gap_lo'], r['gap_hi'])} points"


def _one_condition(g: pd.DataFrame, estimate: str, digits: int, differs, alike: str, aside: str = "") -> str:
    """The clause of a table with one condition (its estimate and interval, not a range over conditions):
    ``differs(way)`` (``way``: ``more`` or ``less``) when the estimate is significant after Holm or its unadjusted
    interval excludes zero (then said so), else ``alike``; ``aside`` (e.g. :func:`_gap`) follows a difference."""
    r = g.iloc[0]
    said = f"{_ci(r[estimate], r[f'{estimate}_lo'], r[f'{estimate}_hi'], digits)} points"
    way = "more" if r[estimate] > 0 else "less"
    if bool(r[f"{estimate}_sig"]):
        return f"{differs(way)}, {said}" + (f" ({aside})" if aside else "")
    if _excluding_zero(g, estimate).iloc[0]:
        return f"{differs(way)} ({said}{'; ' + aside if aside else ''}), {_UNADJUSTED_ONLY}"
    return f"{alike} ({said}, not significant)"


def _drop_clause(g: pd.DataFrame, n: int) -> str:
    """How one method's drop compares with dense's over the ``n`` conditions of a shift table."""
    name = row_name(g.method.iloc[0], g.knob.iloc[0])
    sig = g.diff_sig.astype(bool)
    if n == 1:
        return _one_condition(g, "diff", 2, lambda way: f"{name} drops {way} than dense", f"{name} drops like dense",
                              _gap(g.iloc[0]))
    more, less = int((sig & (g["diff"] > 0)).sum()), int((sig & (g["diff"] < 0)).sum())
    if not (more or less):
        return (f"{name} drops like dense (differences {g['diff'].min():+.2f} to {g['diff'].max():+.2f} points, "
                f"none significant{_unadjusted_count(g, 'diff')})")
    top = g[sig].loc[g[sig]["diff"].abs().idxmax()]
    gap = _gap(top, " there")
    return (f"{name} drops more than dense in {more} of {n} conditions and less in {less} (largest "
            f"{_ci(top['diff'], top.diff_lo, top.diff_hi)} points on {top.condition}{'; ' + gap if gap else ''})")


def _compute_clause(g: pd.DataFrame, n: int) -> str:
    """Whether one method spends more or less of dense's compute under shift, over a table's ``n`` conditions:
    the direction of most significant changes, mixed when as many go up as down (points of % of dense)."""
    name, mean = row_name(g.method.iloc[0], g.knob.iloc[0]), float(g.compute.mean())
    if g.compute_p.isna().all():
        return (f"{name} {mean:+.1f} points{' on average' if n > 1 else ''} (no interval: per-sample compute is not "
                f"in its samples files)")
    sig = g.compute_sig.astype(bool)
    if n == 1:
        return _one_condition(g, "compute", 1, lambda way: f"{name} spends {way}",
                              f"{name} spends about what it spends on the reference")
    up, down = int((sig & (g.compute > 0)).sum()), int((sig & (g.compute < 0)).sum())
    if not (up or down):
        return (f"{name} spends about what it spends on the reference ({g.compute.min():+.1f} to "
                f"{g.compute.max():+.1f} points, none significant{_unadjusted_count(g, 'compute')})")
    top = g[sig].loc[g[sig].compute.abs().idxmax()]
    verb = ("spends more" if up > down else "spends less" if down > up
            else "is mixed: spends more on some conditions, less on others")
    largest = _ci(top.compute, top.compute_lo, top.compute_hi, 1)
    return (f"{name} {verb}, {mean:+.1f} points on average (significant in {up + down} of {n} conditions: "
            f"{up} more, {down} less; largest {largest} on {top.condition})")


def shift_finding(df: pd.DataFrame) -> str:
    """The paragraph under one shift table: ``df`` holds its rows (:func:`~ccbench.reporting.track.shift_differences`
    of one source -> target, with ``diff_sig`` and, where per-sample compute exists, ``compute_sig``)."""
    if df.empty:
        return "No method has a dense shift record to compare with here."
    n = df.condition.nunique()
    pairing = ("paired by sample (the same samples clean and shifted) and" if df.by_sample.all()
               else "the reference and shifted samples differ, so each is resampled on its own;")
    groups = [g for _, g in df.groupby(["method", "knob"], sort=True)]
    return (f"Over {n} condition{'s' if n > 1 else ''}, {pairing} paired by seed where both have it: "
            + "; ".join(_drop_clause(g, n) for g in groups) + ". Useful share of dense compute under shift, change "
            "from the reference in points: " + "; ".join(_compute_clause(g, n) for g in groups) + ". "
            + seeds_sentence(df))
