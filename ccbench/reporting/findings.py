"""What the leaderboard says about one task, in sentences built from its ranking only (no torch, no
hand-written claims): which method ranks first by AUC and how surely, which methods beat their family's
control at which grid targets and by how much, and the caveats the data call for (few seeds, missing grid
points, targets out of reach, missing controls).

Every function is pure: it takes :func:`ccbench.reporting.ranking_section.rank_task`'s result (or parts of
it) and returns plain sentences, strings from records as they are; :func:`findings_markdown` escapes them
for markdown and the site's templates escape them for HTML. Differences are in score points, compute in %
of dense useful MACs. The family's control is the one the paired table uses
(:data:`~ccbench.reporting.ranking_section.CONTROLS`: token -> static-res and random-drop, depth ->
static-depth); a family without one (width, plug-ins) is compared with dense.

>>> from ccbench.reporting.paired import Difference
>>> up, flat = Difference(10.0, 6.1, 13.9, 0.001, "mcnemar"), Difference(1.0, -2.0, 4.0, 0.5, "mcnemar")
>>> print(versus_sentence("early-exit", "static-depth", [(25.0, up, True, False), (75.0, flat, False, True)]))
... # doctest: +NORMALIZE_WHITESPACE
early-exit vs static-depth: better at 25 % (+10.00 [+6.10, +13.90]);
no significant difference at 75 %* (+1.00 [-2.00, +4.00]).
"""
from __future__ import annotations

from .markdown import escape_cell
from .paired import Difference
from .ranking import GRID, GRID_TOLERANCE, HIGH, LOW
from .ranking_section import (
    CONTROLS,
    Comparison,
    Rank,
    TaskRanking,
    curve_start,
    distinct_tests,
    partial_seeds,
    reached_label,
    same_test,
)

MIN_SEEDS = 3   # the seeds issue 21 asks of every row
NOTHING_RANKED = "Nothing is ranked on this task yet, so the leaderboard says nothing about it."
NO_FAMILY_CONTROL = {"dense", "static"}   # dense itself and the static controls have no control of their own


def fmt_difference(d: Difference) -> str:
    """``+1.23 [+0.45, +2.01]``: a difference and its 95 % CI in score points, as the paired table shows it."""
    return f"{d.value:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}]"


def _targets(targets, marked) -> str:
    """``25 % and 50 %*``: ``marked`` is one flag for them all (the star at the end) or one per target."""
    if isinstance(marked, tuple):
        return _join([f"{t:g} %{'*' if m else ''}" for t, m in zip(targets, marked)])
    return " and ".join(f"{t:g} %" for t in targets) + ("*" if marked else "")


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def versus_sentence(method: str, reference: str, points: list[tuple]) -> str:
    """One sentence for ``method`` against ``reference`` at its grid points ``(target or targets (% of dense),
    difference (score points), significant, marked)``, in the given order: ``better`` / ``worse`` where the
    difference is significant, ``no significant difference`` where it is not, each with the difference and
    its CI; ``*`` after a target one of the two rows could not reach (``marked``: one flag, or one per target)."""
    better, worse, same = [], [], []
    for targets, d, significant, marked in points:
        at = f"{_targets(targets if isinstance(targets, tuple) else (targets,), marked)} ({fmt_difference(d)})"
        (same if not significant else better if d.value > 0 else worse).append(at)
    clauses = [f"{word} at {_join(at)}" for word, at in
               (("better", better), ("worse", worse), ("no significant difference", same)) if at]
    return f"{method} vs {reference}: " + "; ".join(clauses) + "."


def family_comparisons(comparisons: list[Comparison]) -> list[Comparison]:
    """The comparisons that say whether a method beats its family's control at a grid point: against the
    family's controls (:data:`CONTROLS`), or against dense for a family without one; rows off the grid, and
    dense and the static controls against dense, are left out."""
    out = []
    for c in comparisons:
        if not c.targets or c.row.family in NO_FAMILY_CONTROL:
            continue
        if c.reference.method in CONTROLS.get(c.row.family, ("dense",)):
            out.append(c)
    return out


def _marked_at(c: Comparison, target: float) -> bool:
    return any(r.grid.get(target, {}).get("marked", False) for r in (c.row, c.reference))


def _marked(c: Comparison) -> bool:
    return any(_marked_at(c, t) for t in c.targets)


def control_sentences(comparisons: list[Comparison]) -> list[str]:
    """One :func:`versus_sentence` per (method, control) of :func:`family_comparisons`, by method name, then
    control, each control's points by target; then one sentence on what significant means here (``[]``
    when no method is compared with its control)."""
    chosen = family_comparisons(comparisons)
    if not chosen:
        return []
    groups: dict[tuple[str, str], list[Comparison]] = {}
    for c in chosen:
        groups.setdefault((c.row.method, c.reference.method), []).append(c)
    out = []
    for (method, reference), cs in sorted(groups.items()):
        # one record standing for several grid targets (the nearest point to each, out of reach) is one test:
        # one clause naming its targets
        tests: dict[tuple, list[Comparison]] = {}
        for c in sorted(cs, key=lambda c: (c.targets, c.row.pct)):
            tests.setdefault(same_test(c.row, c.reference), []).append(c)
        points = []
        for same in tests.values():
            marks = {t: _marked_at(c, t) for c in same for t in c.targets}
            targets = tuple(sorted(marks))
            points.append((targets, same[0].diff, same[0].significant, tuple(marks[t] for t in targets)))
        out.append(versus_sentence(method, reference, points))
    n = distinct_tests(comparisons)
    star = "; * = a target one of the two rows could not reach" if any(_marked(c) for c in chosen) else ""
    out.append(f"Better or worse means significant: Holm-corrected p below 0.05 across all {n} paired "
               f"comparison{'s' if n != 1 else ''} of the task; brackets hold the paired 95 % CI in score "
               f"points, not widened for the number of comparisons (so one can exclude zero where the "
               f"Holm-corrected p does not pass){star}.")
    return out


def _auc(k: Rank) -> str:
    return f"{k.auc:.2f} [{k.lo:.2f}, {k.hi:.2f}], plausible ranks {k.rank_lo}-{k.rank_hi}, P(first) {k.p_first:.2f}"


def leader_sentences(ranks: list[Rank], unranked: dict[str, float], has_dense: bool = True,
                     low: float = LOW) -> list[str]:
    """Who ranks first by AUC over ``low``-100 % of dense (``ranks`` best first, :class:`Rank`), with its interval,
    plausible ranks and probability of being first; which others could plausibly be first; which methods
    have no AUC (``unranked``: method -> where its curve starts, % of dense: :func:`~.ranking_section.curve_start`).

    >>> leader_sentences([Rank("a", 1, 1, 2, 0.7, 80.0, 78.5, 81.5), Rank("b", 2, 1, 2, 0.3, 79.0, 77.0, 80.0)],
    ...                  {"c": 60.0})  # doctest: +NORMALIZE_WHITESPACE
    ['a ranks first of 2 methods by AUC over 25-100 % of dense: 80.00 [78.50, 81.50], plausible ranks 1-2,
      P(first) 0.70.', 'Also plausibly first: b (P(first) 0.30).',
     'No AUC, not ranked: c (its curve starts at 60 % of dense).']
    """
    out = []
    first = [k for k in ranks if k.rank == 1]
    by_auc = f"by AUC over {low:.0f}-{HIGH:.0f} % of dense"
    if len(ranks) == 1:
        out.append(f"{first[0].method} is the only method ranked {by_auc}: {_auc(first[0])}.")
    elif len(first) == 1:
        out.append(f"{first[0].method} ranks first of {len(ranks)} methods {by_auc}: {_auc(first[0])}.")
    elif first:
        out.append(f"{_join([k.method for k in first])} tie for first of {len(ranks)} methods {by_auc}: "
                   + "; ".join(f"{k.method} {_auc(k)}" for k in first) + ".")
    else:
        out.append(f"No method has an AUC, so none ranks first (a curve must start within {GRID_TOLERANCE:g} points "
                   f"of {low:.0f} % of dense)." if has_dense else
                   "No method has an AUC, so none ranks first: there is no ranked dense row to end a curve at.")
    others = [k for k in ranks if k.rank != 1 and k.rank_lo == 1]
    if others:
        out.append("Also plausibly first: " + ", ".join(f"{k.method} (P(first) {k.p_first:.2f})" for k in others) + ".")
    elif len(ranks) > len(first) > 0:
        out.append("No other method is plausibly first.")
    if ranks and unranked:
        out.append("No AUC, not ranked: " + ", ".join(f"{m} (its curve starts at {pct:.0f} % of dense)"
                                                      for m, pct in sorted(unranked.items())) + ".")
    return out


def caveats(t: TaskRanking) -> list[str]:
    """What limits the sentences above, computed from the rows: rows with fewer than :data:`MIN_SEEDS`
    seeds, seeds left out of an AUC (:func:`~.ranking_section.partial_seeds`), methods missing a grid point, grid targets out of reach, family controls or dense missing."""
    out = []
    methods = sorted({r.method for r in t.rows} - {"dense"})
    few = [r for r in t.rows if r.seeds < MIN_SEEDS]
    if few and all(r.seeds == 1 for r in t.rows):
        out.append("Every row has one seed: its intervals cover eval samples only, not seed-to-seed variation.")
    elif few:
        one = " (with one seed, intervals cover eval samples only)" if any(r.seeds == 1 for r in few) else ""
        out.append(f"{len(few)} of {len(t.rows)} rows have fewer than {MIN_SEEDS} seeds{one}: "
                   f"{', '.join(sorted({r.method for r in few}))}.")
    partial = {m: partial_seeds([r for r in t.rows if r.method == m]) for m in methods}
    partial = {m: seeds for m, seeds in partial.items() if seeds}
    if partial:
        out.append("Not yet at every grid point, so left out of the AUC: "
                   + "; ".join(f"{m} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                               for m, seeds in sorted(partial.items())) + ".")
    served = {m: {g for r in t.rows if r.method == m for g in r.grid} for m in methods}
    off = [m for m in methods if not served[m]]
    if off:
        out.append(f"No grid point, so not compared with a control at equal compute: {', '.join(off)}.")
    missing = [f"{m} at {_join([f'{g} %' for g in GRID if float(g) not in served[m]])}" for m in methods
               if served[m] and not all(float(g) in served[m] for g in GRID)]
    if missing:
        out.append(f"Missing grid points: {'; '.join(missing)}.")
    reach = [f"{r.method} at {target:g} % (reached {reached_label(g)})"
             for r in sorted(t.rows, key=lambda r: (r.method, r.pct)) for target, g in sorted(r.grid.items())
             if g.get("marked")]
    if reach:
        out.append(f"Out of reach, the nearest point stands in: {'; '.join(reach)}.")
    families = sorted({r.family for r in t.rows if r.grid})
    for family in families:
        for control in CONTROLS.get(family, ()):
            if control not in methods:
                out.append(f"No {control} rows: {family} methods are not compared with it.")
    if t.dense is None:
        out.append("No dense row: nothing is compared with dense.")
    return out


def what_it_says(t: TaskRanking | None) -> list[str]:
    """The sentences of one task's "What the leaderboard says", in order: who ranks first
    (:func:`leader_sentences`), each method against its family's control (:func:`control_sentences`), then
    the :func:`caveats`; one sentence (:data:`NOTHING_RANKED`) when no row is ranked."""
    if t is None or not t.rows:
        return [NOTHING_RANKED]
    if not any(r.method != "dense" for r in t.rows):
        return ["Only dense is ranked on this task: there is nothing to compare it with."]
    cheapest = {m: curve_start([r for r in t.rows if r.method == m]) for m in {r.method for r in t.rows}}
    out = leader_sentences(t.ranks, {m: cheapest[m] for m in t.unranked}, t.dense is not None)
    for rr in t.shown_further:
        out += leader_sentences(rr.ranks, {m: cheapest[m] for m in rr.unranked}, t.dense is not None, low=rr.low)
    return out + control_sentences(t.comparisons) + caveats(t)


def findings_markdown(sentences: list[str]) -> str:
    """The section's markdown: a heading and one bullet per sentence, each escaped
    (:func:`~ccbench.reporting.markdown.escape_cell`); one line when nothing is ranked.

    >>> print(findings_markdown(["a|b ranks first."]), end="")
    <BLANKLINE>
    ### What the leaderboard says
    <BLANKLINE>
    - a\\|b ranks first.
    >>> print(findings_markdown(what_it_says(None)), end="")
    <BLANKLINE>
    **What the leaderboard says:** Nothing is ranked on this task yet, so the leaderboard says nothing about it.
    """
    if sentences == [NOTHING_RANKED]:
        return f"\n**What the leaderboard says:** {NOTHING_RANKED}\n"
    return "\n### What the leaderboard says\n\n" + "".join(f"- {escape_cell(s)}\n" for s in sentences)
