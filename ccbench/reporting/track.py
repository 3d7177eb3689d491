"""Paired estimates of the specialization-and-transfer track (issue 25) from ``ccbench shift`` and
``ccbench transfer`` records and their samples files. Reporting only: numpy/pandas, no torch, no run side.

* **Transfer gain** (:func:`transfer_gains`): per (method, knob, protocol) and target, the method's target
  score minus dense's under the matching protocol (:data:`~ccbench.common.protocols.DENSE_REFERENCE`), on
  the same target samples (paired by id) and the same source seeds (paired by seed, where both sides have
  them); several seeds pool through the hierarchical bootstrap of :mod:`ccbench.reporting.paired`.
* **Shift drop difference** (:func:`shift_differences`): per shift condition, the method's drop (reference
  minus shifted score) minus dense's, paired by sample where reference and condition hold the same ids
  (Imagenette-C: the same images, clean and corrupted; text domains hold other samples and are resampled
  on their own) and by seed; and the change of the method's useful share of dense compute under shift,
  in points, with its interval when the samples files hold per-sample compute (:data:`COMPUTE_FIELDS`),
  else the record's point value alone.
* :func:`mark_holm`: one Holm correction over every test of the section.

Estimates are in score points (compute: points of % of dense) with a 95 % percentile interval and a
p-value (:func:`~ccbench.reporting.paired.normal_p`; McNemar's exact test for a one-seed accuracy gain).
Rows are keyed by :meth:`~ccbench.reporting.record_schema.Method.row_label` (a grid record by its targets: its
seeds pool although each calibrated its own knob value) and compared only within one eval set (identity, data
hash and size); each (row, seed) keeps one record: a clean one over a dirty twin, then the newest
(:func:`preferred`, the rule of :func:`ccbench.reporting.tables.load_table`).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ccbench.common.protocols import DENSE_REFERENCE, canonical_protocol, eval_set_of

from .columns import version_label
from .paired import Bootstrap, aligned, difference, from_replicates, holm
from .records import RecordError, field_at, load_samples
from .shift_tables import _knob, class_nmi, eval_set_label, source_label, trained_roles

# per-sample compute a shift samples file must hold, per split, for an interval on the compute change:
# ``<split>.useful_gmacs`` and ``<split>.dense_gmacs`` (GMACs per sample; the share of dense is their sums' ratio)
COMPUTE_FIELDS = ("useful_gmacs", "dense_gmacs")
REFERENCE = "reference"   # the shift samples file's prefix of the reference split
TESTS = (("transfer", "gain"), ("shift", "diff"), ("shift", "compute"))  # (frame, estimate) pairs Holm covers


class Group(NamedTuple):
    """The records that share eval samples and source: budget, source task and target (each named with its version
    when not the registered one: :func:`~ccbench.reporting.columns.version_label`), source backbone, the eval
    set's identity (:func:`~ccbench.common.protocols.eval_set_of`, as sorted items), its data hash and size."""

    budget: str
    source: str
    target: str
    backbone: str
    eval_set: tuple
    data_hash: str | None
    n_eval: int | None

    def family(self) -> tuple:
        """``(budget, source, target, backbone)``: the groups that differ only in the eval set."""
        return self[:4]


def _group(record: dict) -> Group:
    """The :class:`Group` of ``record``."""
    task, source = record["task"], record["source"]
    return Group(record["budget"]["name"], source_label(record), version_label(task["name"], task.get("version")),
                 source["backbone_sha256"],
                 tuple(sorted(eval_set_of(record).items())), task.get("data_hash"), task.get("n_eval"))


def preferred(record: dict) -> tuple:
    """Sort key of one seed's records, the last preferred: a clean record (``git.dirty`` false) over a dirty
    or unknown one whatever their dates, then the newest (``date``), then the id (a tie-break)."""
    return field_at(record, "git.dirty") is False, str(record.get("date", "")), str(record["id"])


def newest_per_seed(records: list[tuple[Path, dict]]) -> dict[int, tuple[Path, dict]]:
    """``{seed: (path, record)}`` of one row's records: per seed the :func:`preferred` one (clean, then newest)."""
    out: dict[int, tuple[Path, dict]] = {}
    for path, r in sorted(records, key=lambda pr: preferred(pr[1])):
        out[int(r["seed"])] = (path, r)
    return dict(sorted(out.items()))


def _rows(records: list[tuple[Path, dict]], key) -> dict[Group, dict[tuple, dict[int, tuple[Path, dict]]]]:
    """``{group: {row key: {seed: (path, record)}}}`` with ``key(record)`` the row key (method, row label, ...);
    groups in a stable order (their fields may be ``None``)."""
    grouped: dict[Group, dict[tuple, list]] = {}
    for path, r in records:
        grouped.setdefault(_group(r), {}).setdefault(key(r), []).append((path, r))
    return {g: {k: newest_per_seed(v) for k, v in sorted(rows.items())}
            for g, rows in sorted(grouped.items(), key=lambda kv: repr(kv[0]))}


def _dense_sets(records: list[tuple[Path, dict]], protocol_of) -> dict[tuple, dict[Group, str]]:
    """``{(family, protocol): {group: eval set label}}`` of the dense records among ``records``
    (:meth:`Group.family`, ``protocol_of(record)``: its canonical protocol, ``None`` for shift records)."""
    out: dict[tuple, dict[Group, str]] = {}
    for _, r in records:
        if r["method"]["name"] == "dense":
            g = _group(r)
            out.setdefault((g.family(), protocol_of(r)), {})[g] = eval_set_label(r)
    return out


def _no_dense(label: str, group: Group, mine: str, dense_sets: dict[Group, str], what: str) -> str:
    """Why the row ``label`` of ``group`` (scored on ``mine``, an eval set label) has no dense reference:
    ``what`` (e.g. ``no dense transfer under full``) and, where dense has such records on other eval sets
    (``dense_sets``: group -> label), that the row's eval set differs from theirs."""
    others = sorted({v if v != mine else f"{v}, other data" for g, v in dense_sets.items() if g != group})
    if not others:
        return f"{label} → {group.target}: {what}"
    return (f"{label} → {group.target}: scored on {mine}, dense on {'; '.join(others)}: another eval set, "
            f"not compared")


def usable(path: Path, record: dict) -> tuple[Path, dict]:
    """``(path, record)`` when every field the paired tables key on can be read: the :class:`Group`, method,
    row label, seed, source run id, score name, the conditions of a shift record and a known protocol of a
    transfer record. Otherwise raises (``KeyError``, ``TypeError``, ``ValueError``: records are untrusted
    submissions), for :func:`~ccbench.reporting.records.rows_of` to skip the record with one line."""
    hash(_group(record))
    eval_set_label(record)
    _ = record["method"]["name"], _knob(record), int(record["seed"]), record["source"]["record_id"][:12]
    if record.get("kind") == "transfer":
        protocol = canonical_protocol(record["protocol"])
        if protocol not in DENSE_REFERENCE:
            raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(sorted(DENSE_REFERENCE))})")
        _ = record["metrics"]["main_score"]["name"]
    else:
        _ = record["reference"]["main_score"]["name"], [c["condition"] for c in record["conditions"]]
    return path, record


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def _pairing(seeds: list[int], ref_seeds: list[int]) -> tuple[list[int], list[int], bool]:
    """``(row seeds, reference seeds, paired)``: the seeds both sides have, paired, when there are any;
    otherwise every seed of each side, unpaired."""
    common = sorted(set(seeds) & set(ref_seeds))
    return (common, common, True) if common else (sorted(seeds), sorted(ref_seeds), False)


def _split(seeds: dict[int, tuple[Path, dict]], chosen: list[int], prefix: str = "", compute: bool = False,
           cache: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(ids [N], labels [N], {"pred", and with compute the COMPUTE_FIELDS: [S, N]})`` of the ``chosen`` seeds'
    samples (arrays named ``<prefix>ids``, ...), in id order (:func:`~ccbench.reporting.paired.aligned`).
    ``cache`` maps a record path to its loaded samples."""
    cache = {} if cache is None else cache
    files = []
    for s in chosen:
        path = seeds[s][0]
        if path not in cache:
            cache[path] = load_samples(path)
        z = cache[path]
        if f"{prefix}ids" not in z:
            raise KeyError(f"{prefix}ids")
        files.append({k[len(prefix):]: v for k, v in z.items() if k.startswith(prefix)})
    return aligned(files, ("pred",) + (COMPUTE_FIELDS if compute else ()))


def transfer_gains(records: list[tuple[Path, dict]], n_boot: int = 1000,
                   seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """The transfer gains of ``records`` (verified transfer records): one row per (budget, source, target,
    eval set, method, row label, protocol), dense rows included as the references (no gain), and one line per
    row that could not be compared (a row on another eval set than dense's is compared with none). Columns:
    ``eval_set`` (:func:`~ccbench.reporting.shift_tables.eval_set_label`), ``seeds`` (in the gain), ``paired``
    (by seed), ``score`` and ``dense_pct`` (means over the row's seeds: main score in %, useful share of dense
    compute in %), ``gain`` with
    ``gain_lo``/``gain_hi`` (95 % CI) and ``gain_p``, ``dense_protocol``, ``trained``, ``reuse``/``reuse_source``,
    ``class_nmi``, ``ids`` (12-character record ids)."""
    out, left_out = [], []
    dense_sets = _dense_sets(records, lambda r: canonical_protocol(r["protocol"]))
    for group, rows in _rows(records, _transfer_key).items():
        budget, source, target = group[:3]
        cache: dict = {}
        first = next(r for seeds in rows.values() for _, r in seeds.values())
        metric_name, eval_set = first["metrics"]["main_score"]["name"], eval_set_label(first)
        loaded, labels_of = {}, None
        for key, seeds in sorted(rows.items(), key=lambda kv: kv[0][0] != "dense"):  # dense's samples set the target's
            try:
                ids, labels, arrays = _split(seeds, list(seeds), cache=cache)
            except (KeyError, ValueError, RecordError) as err:
                left_out.append(f"{_label(key)} → {target}: {_why(err)}")
                continue
            if labels_of is None:
                labels_of = (ids, labels)
            elif not (np.array_equal(ids, labels_of[0]) and np.array_equal(labels, labels_of[1])):
                left_out.append(f"{_label(key)} → {target}: evaluated on other target samples")
                continue
            loaded[key] = (list(seeds), arrays["pred"])
        if labels_of is None:
            continue
        boot = Bootstrap(labels_of[1], n_boot=n_boot, seed=seed)
        for key, (seed_list, preds) in loaded.items():
            method, knob, protocol = key
            row = {"budget": budget, "source": source, "target": target, "eval_set": eval_set, "method": method,
                   "knob": knob, "protocol": protocol, **_transfer_fields(rows[key])}
            reference = DENSE_REFERENCE[protocol]
            dense_key = next((k for k in loaded if k[0] == "dense" and k[2] == reference), None)
            if method == "dense" or dense_key is None:
                if method != "dense":
                    left_out.append(_no_dense(_label(key), group, eval_set,
                                              dense_sets.get((group.family(), reference), {}),
                                              f"no dense transfer under {reference}"))
                out.append({**row, "seeds": len(seed_list), "paired": False})
                continue
            dense_seeds, dense_preds = loaded[dense_key]
            mine, theirs, paired = _pairing(seed_list, dense_seeds)
            d = difference(boot, preds[[seed_list.index(s) for s in mine]],
                           dense_preds[[dense_seeds.index(s) for s in theirs]], metric_name,
                           key="|".join(key), ref_key="|".join(dense_key), paired_seeds=paired, normal=True)
            out.append({**row, "seeds": len(mine), "paired": paired, "dense_protocol": dense_key[2],
                        "gain": d.value, "gain_lo": d.lo, "gain_hi": d.hi, "gain_p": d.p, "gain_test": d.test})
    return pd.DataFrame(out), left_out


def _transfer_key(record: dict) -> tuple[str, str, str]:
    return record["method"]["name"], _knob(record), canonical_protocol(record["protocol"])


def _transfer_fields(seeds: dict[int, tuple[Path, dict]]) -> dict:
    """Means over a transfer row's seeds of what its records state: score, share of dense (%), module reuse,
    class NMI; the trained roles (of the newest seed) and the 12-character record ids."""
    recs = [r for _, r in seeds.values()]
    reuse = [field_at(r, "metrics.module_reuse") or {} for r in recs]
    nmi = [class_nmi(field_at(r, "metrics.routing")) for r in recs]
    return {"score": _mean(r["metrics"]["main_score"]["value"] for r in recs),
            "dense_pct": 100 * _mean(r["metrics"]["useful_fraction_of_dense"] for r in recs),
            "trained": trained_roles(recs[-1]["trainable"]),
            "reuse": _mean(x.get("target_share_mean") for x in reuse),
            "reuse_source": _mean(x.get("source_share_mean") for x in reuse),
            "class_nmi": _mean(v for v, _ in nmi), "class_nmi_weighting": nmi[-1][1],
            "ids": ",".join(r["id"][:12] for r in recs)}


def _label(key: tuple) -> str:
    """A row key as text: ``method knob [protocol]``."""
    return " ".join(str(k) for k in key)


def _why(err: Exception) -> str:
    """One line on why a row's samples could not be read or aligned."""
    if isinstance(err, KeyError):
        return f"its samples file lacks {err.args[0]!r}"
    return str(err)


def shift_differences(records: list[tuple[Path, dict]], n_boot: int = 1000,
                      seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """The shift drop differences of ``records`` (verified shift records): one row per (budget, source,
    target, eval set, method, row label, condition) of every method with a dense shift record from the same
    source backbone and eval set, and one line per row that could not be compared. Columns: ``eval_set``
    (dense's, :func:`~ccbench.reporting.shift_tables.eval_set_label`), ``seeds`` and ``paired`` (by seed),
    ``by_sample`` (reference and condition hold the same samples), ``ref_score``/``score`` (the method's
    reference and shifted score, %), ``drop`` and ``dense_drop`` (reference minus shifted score, points),
    ``diff`` = drop - dense drop with ``diff_lo``/``diff_hi``/``diff_p``, ``gap`` = the method's shifted score
    minus dense's with ``gap_lo``/``gap_hi`` (points; descriptive, not tested: the clean difference minus ``diff``,
    it tells a smaller drop from less to lose), ``ref_pct`` (the method's useful share
    of dense on the reference, %), ``compute`` = its change under shift (points of % of dense) with
    ``compute_lo``/``compute_hi``/``compute_p`` (NaN unless the samples hold :data:`COMPUTE_FIELDS`) and
    ``compute_from`` (``samples`` or ``record``), ``ids``."""
    out, left_out = [], []
    dense_sets = _dense_sets(records, lambda r: None)
    for group, rows in _rows(records, lambda r: (r["method"]["name"], _knob(r))).items():
        budget, source, target = group[:3]
        dense_key = next((k for k in rows if k[0] == "dense"), None)
        if dense_key is None:
            mine = eval_set_label(next(r for seeds in rows.values() for _, r in seeds.values()))
            left_out += [_no_dense(_label(k), group, mine, dense_sets.get((group.family(), None), {}),
                                   "no dense shift record from the same backbone") for k in rows]
            continue
        ctx = _ShiftGroup(rows[dense_key], n_boot, seed)
        eval_set = eval_set_label(next(iter(rows[dense_key].values()))[1])
        for key, seeds in rows.items():
            if key == dense_key:
                continue
            try:
                found = ctx.compare(key, seeds)
            except (KeyError, ValueError, RecordError) as err:
                left_out.append(f"{_label(key)} → {target}: {_why(err)}")
                continue
            out += [{"budget": budget, "source": source, "target": target, "eval_set": eval_set, "method": key[0],
                     "knob": key[1], **f}
                    for f in found]
    return pd.DataFrame(out), left_out


class _ShiftGroup:
    """One :class:`Group` of shift records: the dense row's seeds, the bootstraps of
    its splits (one per distinct sample set) and the loaded samples files."""

    def __init__(self, dense: dict[int, tuple[Path, dict]], n_boot: int, seed: int):
        self.dense, self.n_boot, self.seed = dense, n_boot, seed
        self.cache: dict = {}
        self.boots: dict[str, tuple[np.ndarray, Bootstrap]] = {}

    def boot(self, split: str, ids: np.ndarray, labels: np.ndarray) -> Bootstrap:
        """The bootstrap of ``split``: the reference's when the split holds the reference's samples (paired by
        sample), else its own sample draws (``stream``); a split met again (dense's first) must hold the same
        ids."""
        if split not in self.boots:
            ref = self.boots.get(REFERENCE)
            same = ref is not None and np.array_equal(ref[0], ids)
            stream = None if split == REFERENCE else split
            b = ref[1] if same else Bootstrap(labels, self.n_boot, self.seed, stream=stream)
            self.boots[split] = (ids, b)
        if not np.array_equal(self.boots[split][0], ids):
            raise ValueError(f"{split} holds other samples than dense's {split}")
        return self.boots[split][1]

    def compare(self, key: tuple[str, str], seeds: dict[int, tuple[Path, dict]]) -> list[dict]:
        """Every condition's row (see :func:`shift_differences`) of the method row ``key`` with ``seeds``."""
        mine, theirs, paired = _pairing(list(seeds), list(self.dense))
        row_key = "|".join(key)
        dense_key = row_key if paired else "dense"
        recs = [seeds[s][1] for s in mine]
        metric_name = recs[0]["reference"]["main_score"]["name"]
        conditions = [c["condition"] for c in recs[-1]["conditions"]]
        computed = all(f"{REFERENCE}.{f}" in self._samples(seeds[s][0]) for s in mine for f in COMPUTE_FIELDS)
        dense_ref = self._scores(self.dense, theirs, REFERENCE, dense_key, metric_name)  # dense's samples first
        ref = self._scores(seeds, mine, REFERENCE, row_key, metric_name, computed)
        out = []
        for cond in conditions:
            d = self._scores(self.dense, theirs, cond, dense_key, metric_name)
            m = self._scores(seeds, mine, cond, row_key, metric_name, computed)
            drop, dense_drop = ref["score"][0] - m["score"][0], dense_ref["score"][0] - d["score"][0]
            diff = from_replicates(drop - dense_drop, (ref["score"][1] - m["score"][1])
                                   - (dense_ref["score"][1] - d["score"][1]))
            gap = from_replicates(m["score"][0] - d["score"][0], m["score"][1] - d["score"][1])
            row = {"condition": cond, "seeds": len(mine), "paired": paired, "by_sample": m["by_sample"],
                   "ref_score": ref["score"][0], "score": m["score"][0], "drop": drop, "dense_drop": dense_drop,
                   "diff": diff.value, "diff_lo": diff.lo, "diff_hi": diff.hi, "diff_p": diff.p,
                   "gap": gap.value, "gap_lo": gap.lo, "gap_hi": gap.hi,
                   "ref_pct": 100 * _mean(r["reference"]["useful_fraction_of_dense"] for r in recs),
                   "ids": ",".join(r["id"][:12] for r in recs)}
            if computed:
                c = from_replicates(100 * (m["share"][0] - ref["share"][0]), 100 * (m["share"][1] - ref["share"][1]))
                row.update(compute=c.value, compute_lo=c.lo, compute_hi=c.hi, compute_p=c.p, compute_from="samples")
            else:
                change = [next(c for c in r["conditions"] if c["condition"] == cond)["fraction_of_dense_change"]
                          for r in recs]
                row.update(compute=100 * _mean(change), compute_lo=np.nan, compute_hi=np.nan, compute_p=np.nan,
                           compute_from="record")
            out.append(row)
        return out

    def _samples(self, path: Path) -> dict:
        if path not in self.cache:
            self.cache[path] = load_samples(path)
        return self.cache[path]

    def _scores(self, seeds: dict, chosen: list[int], split: str, key: str, metric_name: str,
                computed: bool = False) -> dict:
        """``{"score": (point, reps [B]), "share": (point, reps) with computed, "by_sample": bool}`` of the
        ``chosen`` seeds on ``split`` (seed draws of ``key``)."""
        ids, labels, arrays = _split(seeds, chosen, f"{split}.", computed, self.cache)
        boot = self.boot(split, ids, labels)
        out = {"score": boot.scores(arrays["pred"], metric_name, key),
               "by_sample": boot is self.boots[REFERENCE][1]}
        if computed:
            out["share"] = boot.means(arrays["useful_gmacs"], key, per=arrays["dense_gmacs"])
        return out


def mark_holm(frames: dict[str, pd.DataFrame]) -> None:
    """One Holm correction (:func:`~ccbench.reporting.paired.holm`) over every p-value of the section: the
    ``<estimate>_p`` column of each (frame, estimate) in :data:`TESTS` (``frames``: ``{"transfer": ...,
    "shift": ...}``). Adds ``<estimate>_holm`` (adjusted p) and ``<estimate>_sig`` (bool) in place; a missing
    p-value (no test) stays NaN and is not counted."""
    present = [(frames[f], e) for f, e in TESTS if f in frames and f"{e}_p" in frames[f]]
    if not present:
        return
    ps = [df[f"{e}_p"].to_numpy(dtype=np.float64) for df, e in present]
    reject, adjusted = holm(np.concatenate(ps))
    start = 0
    for (df, e), p in zip(present, ps):
        df[f"{e}_holm"] = adjusted[start:start + len(p)]
        df[f"{e}_sig"] = reject[start:start + len(p)]
        start += len(p)
