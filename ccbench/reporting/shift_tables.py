"""Tables of ``ccbench shift`` and ``ccbench transfer`` records (the leaderboard's "Specialization &
transfer" section): accuracy and compute under shift per severity, routing shift, transfer score and
gain over dense per protocol, module reuse and specialization NMI. Reporting only: no torch, no run side."""
from __future__ import annotations

import pandas as pd

from ccbench.common.protocols import NEEDS_DECISION, PROTOCOLS, canonical_protocol, dense_reference_key, eval_set_of

from .columns import version_label
from .markdown import escape_cell
from .records import load_records, rows_of, typed


def _knob(record: dict) -> str:
    """The label a record's rows are keyed by (:meth:`ccbench.reporting.record_schema.Method.row_label`): ``grid
    50 %`` for a record calibrated to the compute grid (its seeds pool although each calibrated its own knob
    value), else the knob's label. The one such helper of shift and transfer tables."""
    return typed(record).method.row_label()


def source_label(record: dict) -> str:
    """:func:`version_label` of a shift or transfer record's source task."""
    return version_label(record["source"]["task"], record["source"].get("task_version"))


def derived_records(results_dir, kind: str, records: list | None, admitted_sources: set[str] | None) -> list:
    """``(path, record)`` of ``kind`` from ``records`` (already verified) or the results folder, whose
    source run's 12-character id prefix is in ``admitted_sources`` (all when ``None``)."""
    if records is None:
        records = load_records(results_dir, kind=kind)
    return [(p, r) for p, r in records if r.get("kind", "run") == kind
            and (admitted_sources is None or r["source"]["record_id"][:12] in admitted_sources)]


def shift_rows(results_dir=None, admitted_sources: set[str] | None = None, records: list | None = None) -> pd.DataFrame:
    """One row per shift record (the source run's 12-character id prefix in ``admitted_sources`` when
    given): method, knob, seed, source -> target, reference score and share of dense, per-severity drop and
    change in the share of dense compute, mean JS routing shift, domain NMI and how often the source knob
    kept its compute."""
    return pd.DataFrame(rows_of(derived_records(results_dir, "shift", records, admitted_sources), _shift_row))


def _shift_row(_, r: dict) -> dict:
    """One shift record's row (see :func:`shift_rows`)."""
    ref = r["reference"]
    label, name = source_label(r), r["source"]["task"]
    row = {"budget": r["budget"]["name"], "source": label, "target": r["task"]["name"],
           # the source as a file-name part: its name, with its version when not the registered one
           "source_stem": name if label == name else f"{name}-v{r['source'].get('task_version') or 1}",
           "method": r["method"]["name"], "family": r["method"]["family"], "knob": _knob(r),
           "ref_score": ref["main_score"]["value"], "ref_dense_pct": 100 * ref["useful_fraction_of_dense"],
           "seed": r.get("seed"), "id": r["id"][:12], "source_id": r["source"]["record_id"][:12]}
    for sev, s in r["summary"].items():
        row[f"drop_{sev}"] = s["score_drop_mean"]
        row[f"dense_pp_{sev}"] = 100 * s["fraction_of_dense_change"]
    conds = r["conditions"]
    row["target_score"] = (sum(c["main_score"]["value"] for c in conds) / len(conds))
    row["target_dense_pct"] = 100 * sum(c["useful_fraction_of_dense"] for c in conds) / len(conds)
    js = [c["routing_shift"]["js_bits_mean"] for c in conds if "routing_shift" in c]
    shifts = [c["routing_shift"] for c in conds if "routing_shift" in c]
    # records before issue 24 hold only the per-pick domain NMI, under domain_nmi_mean
    per_sample = [x["domain_nmi_mean"] for x in shifts if "domain_weighting" in x]
    per_pick = [x.get("domain_nmi_per_pick_mean", x["domain_nmi_mean"]) for x in shifts]
    row["js_bits"] = sum(js) / len(js) if js else None
    row["domain_nmi"] = sum(per_sample) / len(per_sample) if per_sample else None
    row["domain_nmi_pick"] = sum(per_pick) / len(per_pick) if per_pick else None
    row["same_compute"] = f"{sum(c['calibration_transfer']['same_compute'] for c in conds)}/{len(conds)}"
    return row


def transfer_rows(results_dir=None, admitted_sources: set[str] | None = None, records: list | None = None) -> pd.DataFrame:
    """One row per transfer record with its gain over the dense transfer it compares with (same source task
    and backbone, eval set and seed, under the reference protocol: :func:`dense_reference_key`; None when
    that dense record is missing) and a label of its eval set."""
    records = derived_records(results_dir, "transfer", records, admitted_sources)
    dense = dict(rows_of([(p, r) for p, r in records if r["method"]["name"] == "dense"], _dense_score))

    def row(_, r: dict) -> dict:
        protocol = canonical_protocol(r["protocol"])
        key = dense_reference_key(r)
        score = r["metrics"]["main_score"]["value"]
        reuse = r["metrics"].get("module_reuse")
        routing = r["metrics"].get("routing")
        nmi, weighting = class_nmi(routing)
        return {"budget": r["budget"]["name"], "source": source_label(r), "target": r["task"]["name"],
                "method": r["method"]["name"], "knob": _knob(r), "protocol": protocol, "score": score,
                "eval_set": eval_set_label(r), "seed": r["seed"],
                "gain": round(score - dense[key], 3) if key in dense else None,
                "dense_pct": 100 * r["metrics"]["useful_fraction_of_dense"],
                "reuse": reuse["target_share_mean"] if reuse else None,
                "reuse_source": reuse["source_share_mean"] if reuse else None,
                "class_nmi": nmi, "class_nmi_weighting": weighting,
                "trained": trained_roles(r["trainable"]),
                "has_decision": "decision" in r["trainable"], "id": r["id"][:12]}
    return pd.DataFrame(rows_of(records, row))


def class_nmi(routing: dict | None) -> tuple[float | None, str | None]:
    """``(chance-corrected class NMI, its weighting)`` of a record's routing section: per sample when the
    record has it (issue 24), else the per-pick value older records hold."""
    if not routing:
        return None, None
    mean = routing["mean_over_layers"]
    if "specialization_weighting" in mean:
        return mean["nmi"], "sample"
    return mean["nmi"], "pick"


def _count(n: int) -> str:
    """A parameter count in words: ``965``, ``9.2k``, ``17.9M``.

    >>> _count(965), _count(9216), _count(17_884_160)
    ('965', '9.2k', '17.9M')
    """
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def trained_roles(trainable: dict) -> str:
    """The parameter roles that trained, with counts, from a transfer record's ``trainable``
    (``{role: {"params", "trainable"}}``), e.g. ``head 965 + module 17.9M``; frozen roles are left out."""
    parts = [f"{role} {_count(int(c['trainable']))}" for role, c in sorted(trainable.items()) if c["trainable"]]
    return " + ".join(parts) if parts else "nothing"


def _dense_score(_, r: dict) -> tuple[tuple, float]:
    """``(its own dense_reference_key, score)`` of a dense transfer record."""
    return dense_reference_key(r, canonical_protocol(r["protocol"])), r["metrics"]["main_score"]["value"]


def eval_set_label(record: dict) -> str:
    """What a transfer record was scored on, in words: ``val (1,960)`` or ``2-fold cross-fit of all (2,000)``.

    >>> eval_set_label({"task": {"eval_split": "val", "n_eval": 1960}})
    'val (1,960)'
    >>> eval_set_label({"task": {"n_eval": 2000, "eval_set": {"scheme": "cross-fit", "split": "all", "folds": 2}}})
    '2-fold cross-fit of all (2,000)'
    """
    es, n = eval_set_of(record), record["task"].get("n_eval")
    size = f" ({n:,})" if isinstance(n, int) else ""
    if es.get("scheme") == "cross-fit":
        return f"{es['folds']}-fold cross-fit of {es['split']}{size}"
    return f"{es.get('split') or 'eval split'}{size}"


def _f(v, pattern: str) -> str:
    return "-" if v is None or (isinstance(v, float) and pd.isna(v)) else pattern.format(v)


def shift_markdown(df: pd.DataFrame) -> str:
    """Markdown tables of shift rows, one per (source, target)."""
    from tabulate import tabulate

    parts = []
    for (source, target), g in df.groupby(["source", "target"], sort=True):
        severities = sorted(c[5:] for c in g.columns if c.startswith("drop_") and g[c].notna().any())
        head = ["method", "knob", "seed", "reference score", "% dense (ref)"]
        if severities != ["all"]:
            head += [f"drop s{s}" for s in severities] + [f"Δ% dense s{s}" for s in severities]
        else:
            head += ["target score", "drop", "% dense (target)", "Δ% dense"]
        head += ["routing JS (bits)", "domain NMI per sample (per pick)", "knob kept compute", "record"]
        body = []
        for _, r in g.sort_values(["method", "knob", "seed"]).iterrows():
            row = [escape_cell(r.method), escape_cell(r.knob), _f(r.seed, "{:.0f}"), f"{r.ref_score:.2f}",
                   f"{r.ref_dense_pct:.1f}"]
            if severities != ["all"]:
                row += [_f(r[f"drop_{s}"], "{:+.2f}") for s in severities]
                row += [_f(r[f"dense_pp_{s}"], "{:+.1f}") for s in severities]
            else:
                row += [f"{r.target_score:.2f}", _f(r["drop_all"], "{:+.2f}"), f"{r.target_dense_pct:.1f}",
                        _f(r["dense_pp_all"], "{:+.1f}")]
            domain = f"{_f(r.domain_nmi, '{:.4f}')} ({_f(r.domain_nmi_pick, '{:.4f}')})"
            row += [_f(r.js_bits, "{:.4f}"), domain, r.same_compute, f"`{escape_cell(r.id)}`"]
            body.append(row)
        parts.append(_heading(source, target) + tabulate(body, headers=head, tablefmt="github", disable_numparse=True))
    return "\n\n".join(parts)


def transfer_markdown(df: pd.DataFrame) -> str:
    """Markdown tables of transfer rows: per (source, target) one row per method, a column per protocol
    with the target score, the gain over dense in brackets and the useful share of dense compute (%)
    after '@' ('n/a': the method has no such modules); then, per protocol, the parameter roles that
    trained and how many parameters each (from the records' ``trainable``)."""
    from tabulate import tabulate

    parts = []
    if "eval_set" not in df:
        df = df.assign(eval_set="")
    for (source, target, eval_set), g in df.groupby(["source", "target", "eval_set"], sort=True):
        head = (["method", "knob"] + [f"{p} ({' + '.join(PROTOCOLS[p])})" for p in PROTOCOLS]
                + ["module reuse (source share)", "class NMI (full)"])
        body, trained = [], []
        for (method, knob), m in g.groupby(["method", "knob"], sort=True):
            by = {r.protocol: r for _, r in m.iterrows()}
            cells, counts = [], []
            for p in PROTOCOLS:
                if p in by:
                    r = by[p]
                    cells.append(f"{r.score:.2f} ({_f(r.gain, '{:+.2f}')}) @{r.dense_pct:.0f}%")
                    counts.append(escape_cell(r.trained) if "trained" in r and isinstance(r.trained, str) else "-")
                else:
                    no_decision = not m.has_decision.any()
                    cells.append("n/a" if no_decision and p in NEEDS_DECISION else "-")
                    counts.append(cells[-1])
            full = by.get("full")
            reuse = (f"{full.reuse:.3f} ({full.reuse_source:.3f})" if full is not None and pd.notna(full.reuse)
                     else "-")
            body.append([escape_cell(method), escape_cell(knob)] + cells + [reuse, _nmi_cell(full)])
            trained.append([escape_cell(method), escape_cell(knob)] + counts)
        parts.append(_heading(source, target, eval_set)
                     + tabulate(body, headers=head, tablefmt="github", disable_numparse=True)
                     + "\n\nParameters trained per protocol (role and count):\n\n"
                     + tabulate(trained, headers=["method", "knob"] + list(PROTOCOLS), tablefmt="github",
                                disable_numparse=True))
    return "\n\n".join(parts)


def _nmi_cell(full) -> str:
    """The full protocol's class NMI, marked ``(per pick)`` when the record predates per-sample weighting."""
    if full is None or full.class_nmi is None or pd.isna(full.class_nmi):
        return "-"
    weighting = full.get("class_nmi_weighting") if hasattr(full, "get") else None
    return f"{full.class_nmi:.4f}" + (" (per pick)" if weighting == "pick" else "")


def _heading(source: str, target: str, eval_set: str = "") -> str:
    """``**source → target**`` (and ``, scored on <eval set>``) and a blank line, the names escaped (they come
    from records)."""
    on = f", scored on {escape_cell(eval_set)}" if eval_set else ""
    return f"**{escape_cell(source)} → {escape_cell(target)}**{on}\n\n"


def plot_severity(df: pd.DataFrame, path) -> None:
    """Severity curves of corrupted-image shift rows: score and share of dense compute vs severity
    (0 = clean), one line per method (and knob). Written atomically to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    severities = sorted(int(c[5:]) for c in df.columns if c.startswith("drop_") and c[5:].isdigit())
    fig, (ax_score, ax_cost) = plt.subplots(1, 2, figsize=(10, 4))
    for _, r in df.sort_values(["method", "knob"]).iterrows():
        label = r.method if r.knob == "-" else f"{r.method} {r.knob}"
        ax_score.plot([0] + severities, [r.ref_score] + [r.ref_score - r[f"drop_{s}"] for s in severities],
                      marker="o", label=label)
        ax_cost.plot([0] + severities, [r.ref_dense_pct] + [r.ref_dense_pct + r[f"dense_pp_{s}"] for s in severities],
                     marker="o", label=label)
    ax_score.set(xlabel="severity (0 = clean)", ylabel="score, mean over corruptions", title="accuracy under shift")
    ax_cost.set(xlabel="severity (0 = clean)", ylabel="% of dense compute (useful)", title="compute under shift")
    ax_score.grid(alpha=0.3)
    ax_cost.grid(alpha=0.3)
    ax_score.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
