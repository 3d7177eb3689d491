"""What an evaluated split costs: useful MACs from its trace (every record kind), and for ``ccbench run``
the executed-MAC audit (fvcore) and latency against dense (interleaved).

Units: MACs (1 multiply-add; ``gmacs`` = 1e9 MACs, ``mmacs`` = 1e6), shares of dense in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ccbench.common.specs import BudgetSpec
from ccbench.core.backbones import count_parameters
from ccbench.core.method import predictions
from ccbench.core.trace import Trace

from .cost import CostTable, dense_macs_per_sample, executed_macs, padding_macs, useful_macs
from .evaluate import Evaluation
from .latency import interleaved_latency
from .stats import distribution

MASKED_COMPUTE_TOLERANCE = 0.02  # executed > useful by more than this fraction is flagged


@dataclass
class ComputeStats:
    """Per-sample MACs of an evaluated split: ``useful [S]`` (from the trace), ``dense [S]`` (the same
    samples through every block), ``tokens [S]`` real input tokens (text) or None (images)."""

    useful: torch.Tensor
    dense: torch.Tensor
    tokens: torch.Tensor | None

    @classmethod
    def of(cls, table: CostTable, trace: Trace) -> "ComputeStats":
        """The split's stats from its ``trace`` and the model's cost ``table``."""
        tokens = trace["input_tokens"].double() if "input_tokens" in trace else None
        return cls(useful_macs(table, trace), dense_macs_per_sample(table, trace), tokens)

    def useful_share(self) -> float:
        """Useful MACs over dense MACs, summed over the samples (unrounded)."""
        return self.useful.sum().item() / self.dense.sum().item()

    def _per_token_mmacs(self, macs: torch.Tensor) -> float:
        return round(macs.sum().item() / self.tokens.sum().item() / 1e6, 4)

    def summary(self) -> dict:
        """Shift and transfer records: useful GMACs per sample (mean, median, p90, max), the share of
        dense and, for text, the mean input tokens and useful MMACs per input token."""
        out = {"useful_gmacs": distribution(self.useful, 1e-9, digits=6),
               "useful_fraction_of_dense": round(self.useful_share(), 4)}
        if self.tokens is not None:
            out["input_tokens_mean"] = round(self.tokens.mean().item(), 2)
            out["useful_mmacs_per_input_token"] = self._per_token_mmacs(self.useful)
        return out

    def run_summary(self) -> dict:
        """Run records: useful GMACs per sample, mean dense GMACs, the share of dense and, for text, the
        input-token distribution and useful and dense MMACs per input token."""
        out = {"useful_gmacs": distribution(self.useful, 1e-9, digits=6),
               "dense_gmacs": round(self.dense.mean().item() / 1e9, 6),
               "useful_fraction_of_dense": round(self.useful_share(), 4)}
        if self.tokens is not None:
            out.update(input_tokens=distribution(self.tokens, digits=2),
                       useful_mmacs_per_input_token=self._per_token_mmacs(self.useful),
                       dense_mmacs_per_input_token=self._per_token_mmacs(self.dense))
        return out


def compute_summary(table: CostTable, trace: Trace) -> dict:
    """:meth:`ComputeStats.summary` of ``trace`` under ``table``."""
    return ComputeStats.of(table, trace).summary()


def seeded_subset(split, n: int, seed: int) -> torch.Tensor:
    """``n`` sample indices of ``split``, a seeded permutation's first ``n``, ``[n]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(split), generator=g)[:n]


def _declared_padding(model, inputs: torch.Tensor, table: CostTable) -> float:
    """MACs the method declares it executed on padding for this call (``padding/*`` trace fields,
    :func:`ccbench.measurement.cost.padding_macs`)."""
    with torch.no_grad():
        trace = model(inputs).trace
    return float(padding_macs(table, trace).sum())


def _executed_audit(model, work, split, table: CostTable, useful: torch.Tensor, tier: BudgetSpec, seed: int,
                    device: str) -> dict:
    """fvcore's executed MACs on a seeded sample of ``split``, one at a time and in (length-grouped)
    batches, against ``useful [S]`` MACs and the padding the method declares."""
    audit = tier.audit
    idx = seeded_subset(split, audit.samples_b1, seed)
    b1_exec, unsupported, uncalled = [], {}, set()
    b1_pad = 0.0
    for i in idx.tolist():
        x = work.inputs(split, torch.tensor([i]), device)
        res = executed_macs(model, x)
        b1_exec.append(res.macs)
        b1_pad += _declared_padding(model, x, table)
        for k, v in res.unsupported_ops.items():
            unsupported[k] = unsupported.get(k, 0) + v
        uncalled.update(res.uncalled_modules)
    useful_b1 = useful[idx].double()
    n_bn = audit.batches * audit.batch_size
    bidx = seeded_subset(split, n_bn, seed + 1)
    bn_exec, bn_pad = 0, 0.0
    for x in work.grouped(split, bidx, audit.batch_size, device):
        bn_exec += executed_macs(model, x).macs
        bn_pad += _declared_padding(model, x, table)
    bn_useful = useful[bidx].sum().item()
    exec_b1 = torch.tensor(b1_exec, dtype=torch.float64)
    # declared padding (grouped MoE execution) is executed work the method owns up to, not masking
    exact_b1 = exec_b1.sum().item() / (useful_b1.sum().item() + b1_pad)
    exact_bn = bn_exec / (bn_useful + bn_pad)
    return {
        "executed_gmacs": {"batch1_per_sample": distribution(exec_b1, 1e-9, digits=6),
                           "batchN_per_sample_mean": round(bn_exec / n_bn / 1e9, 6),
                           "batch_size": audit.batch_size, "audit_samples_b1": len(idx),
                           "audit_samples_bN": n_bn,
                           "batchN_grouping": "text: sorted by length before cutting batches (dynamic padding)"},
        "executed_over_useful": {"batch1": round(exec_b1.sum().item() / useful_b1.sum().item(), 4),
                                 "batchN": round(bn_exec / bn_useful, 4)},
        "declared_padding_gmacs": {"batch1_per_sample_mean": round(b1_pad / len(idx) / 1e9, 6),
                                   "batchN_per_sample_mean": round(bn_pad / n_bn / 1e9, 6)},
        "executed_over_useful_plus_padding": {"batch1": round(exact_b1, 4), "batchN": round(exact_bn, 4)},
        "flag_executed_exceeds_useful": exact_b1 > 1 + MASKED_COMPUTE_TOLERANCE,
        "fvcore_unsupported_ops": unsupported,
        "fvcore_uncalled_modules": sorted(uncalled),
    }


def _mismatches(a: torch.Tensor, b: torch.Tensor) -> int:
    """Samples whose predictions ``a [S]`` and ``b [S]`` differ (regression values: by more than 1e-4)."""
    if a.is_floating_point() or b.is_floating_point():
        return int((~torch.isclose(a.double(), b.double(), rtol=0, atol=1e-4)).sum())
    return int((a != b).sum())


@torch.no_grad()
def determinism_evidence(model, work, split, tier: BudgetSpec, seed: int, device: str) -> dict:
    """Whether ``model``'s predictions depend on the batch or the call, on the audit's seeded sample of
    ``split`` (``audit.batches * audit.batch_size`` samples): each sample alone (batch 1), the same samples
    in batches of ``audit.batch_size`` (batch N, in that order), and batch N a second time. Returns
    counts of samples whose prediction differs (``ccbench validate`` requires 0)."""
    audit = tier.audit
    idx = seeded_subset(split, audit.batches * audit.batch_size, seed + 4)

    def predict(size: int) -> torch.Tensor:
        return torch.cat([predictions(model(work.inputs(split, idx[i:i + size], device)).logits.float()).cpu()
                          for i in range(0, len(idx), size)])

    one, batch, again = predict(1), predict(audit.batch_size), predict(audit.batch_size)
    return {"samples": len(idx), "batch_size": audit.batch_size,
            "batch1_vs_batchN_mismatches": _mismatches(one, batch),
            "repeat_mismatches": _mismatches(batch, again)}


def _latency(model, dense_ref, work, split, stats: ComputeStats, tier: BudgetSpec, seed: int, device: str) -> dict:
    """Batch-1 and batch-N latency of ``model`` interleaved with ``dense_ref`` on seeded samples, with the
    ideal speedup (dense / useful MACs) of exactly the timed samples."""
    lat = tier.latency
    lidx = seeded_subset(split, lat.samples_b1, seed + 2)
    b1_inputs = [work.inputs(split, torch.tensor([i]), device) for i in lidx.tolist()]
    nidx = seeded_subset(split, lat.batches * lat.batch_size, seed + 3)
    bn_inputs = work.grouped(split, nidx, lat.batch_size, device)
    b1 = interleaved_latency(model, dense_ref, b1_inputs, lat.warmup, device)
    bn = interleaved_latency(model, dense_ref, bn_inputs, lat.warmup, device)
    for r, timed in ((b1, lidx), (bn, nidx)):
        r["ideal_speedup"] = round(stats.dense[timed].sum().item() / stats.useful[timed].sum().item(), 4)
        r["efficiency"] = round(r["speedup"] / r["ideal_speedup"], 4)
    return {"batch1": b1, "batchN": bn, "threads": torch.get_num_threads(),
            "speedup": "total dense time / total method time over the same inputs",
            "ideal_speedup": "dense GMACs / useful GMACs of the timed samples (each at its own length)",
            "efficiency": "speedup / ideal_speedup"}


def run_metrics(model, dense_ref, ev: Evaluation, work, table: CostTable, tier: BudgetSpec, seed: int,
                device: str) -> dict:
    """A run record's ``metrics`` for ``model`` evaluated on ``work``'s eval split (``ev``): the method's
    own metrics, the task's scores, useful / dense / executed MACs and latency against ``dense_ref``."""
    split = work.splits["eval"]
    stats = ComputeStats.of(table, ev.trace)
    audit = _executed_audit(model, work, split, table, stats.useful, tier, seed, device)
    latency = _latency(model, dense_ref, work, split, stats, tier, seed, device)
    return {
        **model.extra_metrics(ev.trace, ev.labels, ev.predictions,
                              lambda: work.batches(split, tier.eval_batch_size, device)),
        **work.scores(ev.logits, ev.labels, seed),
        "top1_ci_method": "percentile bootstrap over eval samples (2000 resamples; main score of a text task: 1000)",
        "n_eval": len(ev.ids),
        **stats.run_summary(),
        **audit,
        "determinism": determinism_evidence(model, work, split, tier, seed, device),
        "params": count_parameters(model),
        "latency": latency,
        "unit": "gmacs = 1e9 multiply-adds (fvcore convention); FLOPs = 2 x MACs",
    }
