"""``ccbench shift``: a trained run (by record id) evaluated on a shifted split without adaptation (issue 8).

For each condition of the target (``ccbench.shift_data``) against the reference (images: the ``clean``
condition, the same images through the same path; text: the source task's eval split) it records

* the score and its drop (reference - condition, in points);
* **compute under shift**: useful GMACs (mean, p90) and their change, the share of dense, the exit
  histogram (depth family) and the per-block keep ratio (token family);
* **routing shift** (width family): per MoE layer, the Jensen-Shannon divergence in bits between the
  expert load on reference and condition, and the chance-corrected NMI between expert and domain on a
  50/50 mix of the two;
* **calibration transfer**: the knob was chosen (or given) on source data; does it land at the same
  share of dense compute on the target?

One shift record per (run record, target), under ``results/<budget>/<target>/<method>/``, with
``kind: shift`` and the source record's id and backbone hash (lineage).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import __version__, catalog
from .cost import dense_macs_per_sample, useful_macs
from .errors import UserError
from .from_record import RecordModel, check_predictions, load_record_model
from .messages import say
from .provenance import git_state, hardware
from .records import commit_record, finalize
from .routing import js_divergence_bits, layer_metrics
from .shift_data import CLEAN, shift_conditions
from .stats import distribution
from .trace import PAD_TOKEN, Trace

SAME_COMPUTE_TOLERANCE = 0.02  # |target - source| share of dense within this: the knob "lands at the same compute"


def compute_summary(table, trace: Trace) -> dict:
    """Useful GMACs per sample (mean, median, p90, max), the share of dense and, for text, MMACs per
    input token, from a trace."""
    useful = useful_macs(table, trace)
    dense = dense_macs_per_sample(table, trace)
    out = {"useful_gmacs": distribution(useful, 1e-9, digits=6),
           "useful_fraction_of_dense": round(useful.sum().item() / dense.sum().item(), 4)}
    if "input_tokens" in trace:
        tokens = trace["input_tokens"].double()
        out["input_tokens_mean"] = round(tokens.mean().item(), 2)
        out["useful_mmacs_per_input_token"] = round(useful.sum().item() / tokens.sum().item() / 1e6, 4)
    return out


def keep_ratio_per_block(trace: Trace, tokens_per_sample: torch.Tensor) -> list[float]:
    """Mean share of each block's input tokens a sample still had, ``[depth]`` (1 = dense; 0 = the block
    did not run). ``tokens_per_sample [S]``: the sample's dense token count."""
    kept = trace["tokens_per_block"].double().sum(0)
    return [round(v, 4) for v in (kept / tokens_per_sample.double().sum()).tolist()]


def exit_histogram(trace: Trace, depth: int) -> dict | None:
    """``{block: samples}`` of the block after which samples left (depth family), else None."""
    if "exit_block" not in trace:
        return None
    blocks = trace["exit_block"].numpy()
    return {"histogram": {b: int((blocks == b).sum()) for b in range(depth)},
            "mean_blocks_run": round(float((blocks + 1).mean()), 4)}


def routing_shift(ref_ids: np.ndarray, tgt_ids: np.ndarray, num_experts: int, seed: int = 0) -> dict:
    """Per MoE layer: JS divergence in bits between the expert loads of ``ref_ids`` and ``tgt_ids``
    (``[S, L, N, K]`` expert per pick, -1 dropped, -2 padding), and the chance-corrected NMI between
    expert and domain on a 50/50 mix (the same number of samples from each, seeded)."""
    rng = np.random.default_rng(seed)
    n = min(len(ref_ids), len(tgt_ids))
    a = ref_ids[rng.permutation(len(ref_ids))[:n]]
    b = tgt_ids[rng.permutation(len(tgt_ids))[:n]]
    width = max(a.shape[2], b.shape[2])  # text: pad the token axis to the longer of the two

    def pad(x):
        out = np.full(x.shape[:2] + (width, x.shape[3]), PAD_TOKEN, dtype=x.dtype)
        out[:, :, :x.shape[2]] = x
        return out

    mixed = np.concatenate([pad(a), pad(b)])
    domain = np.repeat([0, 1], n)
    layers = []
    for layer in range(ref_ids.shape[1]):
        load_ref = np.bincount(ref_ids[:, layer][ref_ids[:, layer] >= 0], minlength=num_experts)
        load_tgt = np.bincount(tgt_ids[:, layer][tgt_ids[:, layer] >= 0], minlength=num_experts)
        mix = layer_metrics(mixed[:, layer], domain, num_experts, seed=seed)["specialization"]
        layers.append({"js_bits": js_divergence_bits(load_ref, load_tgt), "domain_nmi": mix["nmi"],
                       "domain_nmi_raw": mix["raw_nmi"]})
    return {"js_bits_mean": round(float(np.mean([x["js_bits"] for x in layers])), 6),
            "domain_nmi_mean": round(float(np.mean([x["domain_nmi"] for x in layers])), 6),
            "mix_samples_per_domain": int(n), "layers": layers}


def _condition_metrics(rm: RecordModel, name: str, ev, ref_ev, ref_summary: dict, ref_score: float,
                       table, seed: int) -> dict:
    work = rm.work
    scores = work.scores(ev.logits, ev.labels, seed)
    summary = compute_summary(table, ev.trace)
    out = {"condition": name, "n": len(ev.ids), "main_score": scores["main_score"],
           "score_drop": round(ref_score - scores["main_score"]["value"], 3), **summary,
           "useful_gmacs_change": {
               "mean_ratio": round(summary["useful_gmacs"]["mean"] / ref_summary["useful_gmacs"]["mean"], 4),
               "p90_ratio": round(summary["useful_gmacs"]["p90"] / ref_summary["useful_gmacs"]["p90"], 4)},
           "fraction_of_dense_change": round(summary["useful_fraction_of_dense"]
                                             - ref_summary["useful_fraction_of_dense"], 4)}
    depth = len(rm.model.backbone.blocks)
    exits = exit_histogram(ev.trace, depth)
    if exits:
        out["exits"] = exits
    if rm.meta["family"] == "token":
        out["keep_ratio_per_block"] = keep_ratio_per_block(ev.trace, _dense_tokens(rm, ev.trace))
    if "expert_ids" in ev.trace:
        num_experts = len(rm.model.moe_layers[0].experts)
        out["routing_shift"] = routing_shift(ref_ev.trace["expert_ids"].numpy(), ev.trace["expert_ids"].numpy(),
                                             num_experts, seed)
    return out


def _dense_tokens(rm: RecordModel, trace: Trace) -> torch.Tensor:
    """Tokens each sample would give every block when dense, ``[S]``."""
    if "input_tokens" in trace:
        return trace["input_tokens"]
    return torch.full((len(trace["tokens_per_block"]),), rm.work.table.num_tokens)


def shift_run(record_id: str, target: str, data_dir: str | None = None, results_dir=None,
              progress: bool = True) -> Path:
    """Evaluate the run ``record_id`` on the shift target ``target`` and write the shift record."""
    from .runner import evaluate_split

    t0 = time.time()
    code_state = git_state()
    tgt = catalog.tasks().get(target)
    if tgt.shift is None:
        shift_targets = [n for n in catalog.tasks().names() if catalog.tasks().get(n).shift is not None]
        raise UserError(f"task {target!r} is not a shift target; shift targets: {', '.join(shift_targets)}")
    rm = load_record_model(record_id, data_dir, results_dir, progress)
    src = rm.task
    if tgt.modality != src.modality or tgt.classes != src.classes:
        raise UserError(f"{target!r} does not share {src.name!r}'s classes ({len(src.classes)} {src.modality} classes): "
                        f"`ccbench shift` evaluates without adaptation; a new label set is `ccbench transfer`")
    work, tier, seed, device = rm.work, rm.tier, rm.record["seed"], rm.tier.device
    table = work.table.with_units(rm.model.cost_units())
    bs = tier.eval_batch_size

    say(f"checking the model against the record on {src.name}/{src.eval_split}")
    src_ev = evaluate_split(rm.model, work, work.splits["eval"], bs, device, progress)
    preds = src_ev.logits[:, 0] if src_ev.logits.shape[-1] == 1 else src_ev.logits.argmax(-1)
    agreement = check_predictions(rm, preds, src_ev.ids)

    px = getattr(work, "px", None)
    conditions = shift_conditions(tgt, px, data_dir, progress)
    if tgt.modality == "text":
        work.set_max_length(tgt.text.max_length)
    evals = {}
    for name, split in conditions.items():
        say(f"evaluating {name} ({len(split)} samples)")
        evals[name] = evaluate_split(rm.model, work, split, bs, device, progress)
    if CLEAN in evals:
        ref_name, ref_ev = f"{target}/{CLEAN}", evals.pop(CLEAN)
    else:
        ref_name, ref_ev = f"{src.name}/{src.eval_split}", src_ev
    ref_scores = work.scores(ref_ev.logits, ref_ev.labels, seed)
    ref_summary = compute_summary(table, ref_ev.trace)
    ref_score = ref_scores["main_score"]["value"]
    reference = {"name": ref_name, "n": len(ref_ev.ids), "main_score": ref_scores["main_score"], **ref_summary}
    depth = len(rm.model.backbone.blocks)
    if "exit_block" in ref_ev.trace:
        reference["exits"] = exit_histogram(ref_ev.trace, depth)
    if rm.meta["family"] == "token":
        reference["keep_ratio_per_block"] = keep_ratio_per_block(ref_ev.trace, _dense_tokens(rm, ref_ev.trace))
    rows = [_condition_metrics(rm, name, ev, ref_ev, ref_summary, ref_score, table, seed) for name, ev in evals.items()]
    for row in rows:
        row["calibration_transfer"] = {
            "knob": rm.record["method"]["knob"]["name"], "value": rm.record["method"]["knob"]["value"],
            "chosen_by": rm.record["method"]["knob"]["chosen_by"],
            "source_fraction_of_dense": rm.record["metrics"]["useful_fraction_of_dense"],
            "target_fraction_of_dense": row["useful_fraction_of_dense"],
            "same_compute": abs(row["useful_fraction_of_dense"] - rm.record["metrics"]["useful_fraction_of_dense"])
            <= SAME_COMPUTE_TOLERANCE}
    record = finalize({
        "kind": "shift",
        "ccbench_version": __version__,
        "git": code_state,
        "task": {"name": tgt.name, "version": tgt.version, "modality": tgt.modality,
                 "shift": tgt.shift.model_dump(), "conditions": list(evals),
                 "data_hashes": {k: v.data_hash for k, v in conditions.items()}},
        "source": {"record_id": rm.record["id"], "task": src.name, "task_version": src.version,
                   "backbone_sha256": rm.record["backbone"]["sha256"], "trained_model": rm.trained_file,
                   "prediction_agreement_with_record": agreement},
        "method": {"name": rm.record["method"]["name"], "family": rm.meta["family"],
                   "config": rm.record["method"]["config"], "knob": rm.record["method"]["knob"]},
        "budget": {"name": tier.name, "version": tier.version},
        "seed": seed,
        "reference": reference,
        "conditions": rows,
        "summary": _summary(rows),
        "hardware": hardware(device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - t0, 1),
    })
    out = _write(record, evals, ref_ev, results_dir)
    _print(record, out)
    return out


def _summary(rows: list[dict]) -> dict:
    """Means over conditions of the score drop and compute change, per severity when conditions are
    ``<corruption>/<severity>``."""
    def mean(key, subset):
        return round(float(np.mean([key(r) for r in subset])), 4)

    groups = {}
    for r in rows:
        sev = r["condition"].rsplit("/", 1)[1] if "/" in r["condition"] else "all"
        groups.setdefault(sev, []).append(r)
    return {sev: {"conditions": len(g), "score_drop_mean": mean(lambda r: r["score_drop"], g),
                  "useful_gmacs_mean_ratio": mean(lambda r: r["useful_gmacs_change"]["mean_ratio"], g),
                  "fraction_of_dense_change": mean(lambda r: r["fraction_of_dense_change"], g)}
            for sev, g in sorted(groups.items())}


def _write(record: dict, evals: dict, ref_ev, results_dir) -> Path:
    """The per-condition predictions beside the record, then the record (``commit_record``)."""
    arrays = {}
    for name, ev in [("reference", ref_ev), *evals.items()]:
        pred = ev.logits[:, 0] if ev.logits.shape[-1] == 1 else ev.logits.argmax(-1)
        arrays[f"{name}.ids"] = np.asarray(ev.ids)
        arrays[f"{name}.label"] = ev.labels.numpy()
        arrays[f"{name}.pred"] = pred.numpy()
        if "exit_block" in ev.trace:
            arrays[f"{name}.exit_block"] = ev.trace["exit_block"].numpy().astype(np.int16)
    return commit_record(record, arrays, results_dir, prefix="shift-")


def _print(record: dict, path: Path) -> None:
    ref = record["reference"]
    print(f"{record['method']['name']} ({record['source']['task']} -> {record['task']['name']}): reference "
          f"{ref['name']} {ref['main_score']['value']:.2f} at {ref['useful_fraction_of_dense']:.1%} of dense")
    for sev, s in record["summary"].items():
        print(f"  {sev:>4}: drop {s['score_drop_mean']:+.2f} points, useful GMACs x{s['useful_gmacs_mean_ratio']:.3f}, "
              f"share of dense {s['fraction_of_dense_change']:+.4f}")
    print(f"  record: {path}")
