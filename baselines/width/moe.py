"""Mixture-of-experts layers that replace a block's MLP (the width family, issue 5).

Every layer maps the block's normalised tokens ``[B, N, D] -> [B, N, D]`` and leaves on itself, after
each call, a :class:`Routing` record (which expert processed which token, with what weight) that the
method turns into trace fields. Capacity and selection are computed *per sample*, so a sample's output
never depends on the rest of its batch.

Execution is grouped (:class:`ExpertBank`): the experts' weights are stacked once (cached at
evaluation) and every expert runs in one batched matmul per projection (``torch.bmm`` over an
``[E, C, D]`` buffer). Expert-choice and Soft MoE fill that buffer exactly (every expert has the same
number of rows); top-k and MoEfication pad each expert's rows to the busiest expert's, or, when that
would pad more than ``ExpertBank.max_padding`` of the real rows, run each expert on its contiguous
slice of the expert-sorted rows (no padding). Padding is
executed work, not useful work: each layer reports its padded rows (``Routing.padding_rows``) and the
method declares them in the trace (``padding/expert_row``), so fvcore's executed MACs equal useful +
declared padding exactly. :func:`run_experts` (a loop over the E experts) is the reference path and
the fallback for experts that are not ``fc2(act(fc1(x)))``.

Experts are *upcycled*: each starts as a copy of the dense MLP it replaces (Komatsuzaki et al. 2023).
Combine weights are ``p_e / stop_grad(sum of the selected p)``: they sum to 1 over a token's experts
(so at initialisation the layer computes exactly the dense MLP) while the router still receives the
gradient of ``p_e`` (ccbench's choice; Switch uses ``p_e`` itself, which would scale the upcycled
output by ~1/E at the start).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Routing:
    """What one MoE layer did for a batch.

    ``expert_ids [B, N, K]``: expert of each (token, pick), -1 where the pick was dropped (over
    capacity) or does not exist; ``weights [B, N, K]``: combine weight of each pick (0 when dropped);
    ``expert_rows [B]``: token rows the experts processed for each sample (slots for Soft MoE);
    ``aux_loss``: the layer's auxiliary loss (already weighted), scalar; ``routed``: whether the
    router (or slot logits) ran — MoEfication's all-experts path skips it; ``padding_rows``: expert rows
    executed on padding by the whole call (all samples together; grouped execution), an int;
    ``requested_ids [B, N, K]``: token choice only, the router's own top-k choice of each pick before
    capacity (``expert_ids`` differs from it exactly where the pick was dropped), else None."""

    expert_ids: torch.Tensor
    weights: torch.Tensor
    expert_rows: torch.Tensor
    aux_loss: torch.Tensor
    routed: bool = True
    padding_rows: int = 0
    requested_ids: torch.Tensor | None = None


def upcycle(mlp: nn.Module, num_experts: int) -> nn.ModuleList:
    """``num_experts`` independent copies of a dense MLP module."""
    return nn.ModuleList(copy.deepcopy(mlp) for _ in range(num_experts))


def renormalised(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``p / stop_grad(p.sum(dim))``: sums to 1 forward, gradient of ``p`` backward (see module doc)."""
    return p / p.sum(dim, keepdim=True).detach().clamp_min(1e-9)


def run_experts(experts: nn.ModuleList, x: torch.Tensor, rows: torch.Tensor, expert: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
    """Sum of ``weight * experts[expert](x[rows])`` into each row: ``x [T, D]``; ``rows``, ``expert``,
    ``weight``: ``[M]`` (one entry per kept (row, expert) pick). Returns ``[T, D]``."""
    out = torch.zeros_like(x)
    for e, module in enumerate(experts):
        sel = (expert == e).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        r = rows[sel]
        out = out.index_add(0, r, module(x[r]) * weight[sel, None])
    return out


def _expert_parts(module: nn.Module):
    """``(fc1, act, fc2, drops)`` of an expert computing ``fc2(act(fc1(x)))`` (timm ``Mlp`` with no
    norm, ccbench's ``TextMLP``, or a ``Sequential(Linear, act, Linear)``), else None."""
    if isinstance(module, nn.Sequential) and len(module) == 3 and isinstance(module[0], nn.Linear) \
            and isinstance(module[2], nn.Linear):
        return module[0], module[1], module[2], ()
    fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
    if not (isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear)):
        return None
    if not isinstance(getattr(module, "norm", nn.Identity()), nn.Identity):
        return None
    drops = tuple(d for d in (getattr(module, "drop1", None), getattr(module, "drop2", None)) if d is not None)
    return fc1, module.act, fc2, drops


class ExpertBank:
    """The E experts of a layer as stacked weights, run together: ``run(buf [E, C, D]) -> [E, C, D_out]``
    with one ``torch.bmm`` per projection (fvcore counts ``E * C * D * H`` MACs each, padding included).

    At evaluation the stacked weights are cached, keyed by the experts' parameters' in-place version
    counters and storage (a load or an update restacks them); in training they are stacked on every
    call, so gradients reach each expert's own parameters."""

    max_padding = 0.25  # pad (one bmm) while padded rows <= this fraction of the real rows, else slices

    def __init__(self, experts: nn.ModuleList):
        self.experts = experts
        self.parts = [_expert_parts(m) for m in experts]
        self.grouped = all(p is not None for p in self.parts) and len(experts) > 0
        self._cache: tuple | None = None

    def _weights(self, training: bool) -> tuple:
        params = [p for m in self.experts for p in m.parameters()]
        key = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
        if not training and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        fc1s, fc2s = [p[0] for p in self.parts], [p[2] for p in self.parts]

        def bias(layers):
            if layers[0].bias is None:
                return None
            return torch.stack([m.bias for m in layers])[:, None, :]           # [E, 1, out]

        weights = (torch.stack([m.weight.t() for m in fc1s]), bias(fc1s),    # [E, D, H], [E, 1, H]
                   torch.stack([m.weight.t() for m in fc2s]), bias(fc2s))    # [E, H, D_out], [E, 1, D_out]
        if training:
            self._cache = None
        else:
            weights = tuple(None if w is None else w.detach().contiguous() for w in weights)
            self._cache = (key, weights)
        return weights

    def run(self, buf: torch.Tensor, training: bool) -> torch.Tensor:
        """``buf [E, C, D]`` (row c of expert e's input) -> ``[E, C, D_out]``."""
        w1, b1, w2, b2 = self._weights(training)
        act, drops = self.parts[0][1], self.parts[0][3]
        h = torch.bmm(buf, w1)
        if b1 is not None:
            h = h + b1
        h = act(h)
        if drops:
            h = drops[0](h)
        y = torch.bmm(h, w2)
        if b2 is not None:
            y = y + b2
        if len(drops) > 1:
            y = drops[1](y)
        return y


def grouped_experts(bank: ExpertBank, x: torch.Tensor, rows: torch.Tensor, expert: torch.Tensor,
                    weight: torch.Tensor | None, training: bool) -> tuple[torch.Tensor, int]:
    """:func:`run_experts` through ``bank`` in one pass: picks sorted by expert (stable), each expert's
    rows packed into an ``[E, C, D]`` buffer with ``C`` = the busiest expert's rows, one batched matmul
    per projection, one weighted ``index_add`` back. When padding to ``C`` would add more than
    ``bank.max_padding`` of the real rows, each expert runs on its contiguous slice of the sorted rows
    instead (one gather, no padding). ``x [T, D]``; ``rows``, ``expert``, ``weight``
    ``[M]`` (``weight`` None: all 1). Returns ``(out [T, D_out], padding rows executed)``; a row's
    contributions are summed in expert order, as :func:`run_experts` does."""
    e = len(bank.experts)
    d_out = bank.parts[0][2].out_features
    m = int(expert.shape[0])
    if m == 0:
        return x.new_zeros(x.shape[0], d_out), 0
    counts = torch.bincount(expert, minlength=e)                          # [E]
    cap = int(counts.max())
    order = torch.argsort(expert, stable=True)
    src_rows = rows[order]
    if e * cap - m <= bank.max_padding * m:
        sorted_e = expert[order]
        slot = torch.arange(m, device=x.device) - (counts.cumsum(0) - counts)[sorted_e]
        dest = sorted_e * cap + slot                                      # [M]: place in the buffer
        buf = x.new_zeros(e * cap, x.shape[1]).index_copy_(0, dest, x[src_rows])
        y = bank.run(buf.view(e, cap, -1), training).reshape(e * cap, d_out)[dest]
        pad = e * cap - m
    else:   # too uneven to pad: each expert on its contiguous slice of the sorted rows, no padding
        xs = x[src_rows]
        bounds = [0] + counts.cumsum(0).tolist()
        y = torch.cat([bank.experts[i](xs[bounds[i]:bounds[i + 1]]) for i in range(e)
                       if bounds[i + 1] > bounds[i]])
        pad = 0
    if weight is not None:
        y = y * weight[order, None]
    out = x.new_zeros(x.shape[0], d_out).index_add_(0, src_rows, y)
    return out, pad


def expert_bank(layer: nn.Module) -> ExpertBank:
    """``layer.experts`` as an :class:`ExpertBank`, made once per layer (kept outside the module's
    parameters and state dict)."""
    bank = layer.__dict__.get("_bank")
    if bank is None or bank.experts is not layer.experts:
        bank = layer.__dict__["_bank"] = ExpertBank(layer.experts)
    return bank


def dispatch(layer: nn.Module, x: torch.Tensor, rows: torch.Tensor, expert: torch.Tensor,
             weight: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Run ``layer.experts`` on the picks (``x [T, D]``; ``rows``, ``expert``, ``weight [M]``) grouped
    when the experts allow it (:func:`grouped_experts`), else by :func:`run_experts`. Returns
    ``(out [T, D_out], padding rows executed)``."""
    bank = expert_bank(layer)
    if bank.grouped:
        return grouped_experts(bank, x, rows, expert, weight, layer.training)
    if weight is None:
        weight = x.new_ones(rows.shape[0])
    return run_experts(layer.experts, x, rows, expert, weight), 0


def positions_in_queue(onehot: torch.Tensor) -> torch.Tensor:
    """``onehot [B, M, E]`` picks in priority order -> 1-based position of each pick in its expert's
    queue within its sample, ``[B, M]`` (0 where the row picks nothing)."""
    return ((onehot.cumsum(1) * onehot).sum(-1)).long()


class TopKMoE(nn.Module):
    """Token-choice top-k routing (Switch / V-MoE) with a per-sample capacity of
    ``ceil(capacity_factor * k * N / E)`` rows per expert; first choices of all tokens take their
    places before second choices (GShard's priority), in token order. Aux loss: Switch load balancing
    ``E * sum_e f_e * P_e`` on first choices plus the router z-loss ``mean(logsumexp(logits)^2)``."""

    def __init__(self, mlp: nn.Module, dim: int, num_experts: int = 8, k: int = 1, capacity_factor: float = 1.25,
                 balance_weight: float = 0.01, z_weight: float = 1e-3):
        super().__init__()
        self.experts = upcycle(mlp, num_experts)
        self.router = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.num_experts, self.k, self.capacity_factor = num_experts, k, capacity_factor
        self.balance_weight, self.z_weight = balance_weight, z_weight
        self.routing: Routing | None = None

    def capacity(self, tokens: int) -> int:
        """Rows each expert takes per sample."""
        return math.ceil(self.capacity_factor * self.k * tokens / self.num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        e, k = self.num_experts, min(self.k, self.num_experts)
        logits = self.router(x)                                    # [B, N, E]
        probs = logits.softmax(-1)
        top_p, top_e = probs.topk(k, dim=-1)                       # [B, N, k]
        # priority: all first choices (in token order), then all second choices, ...
        picks = top_e.transpose(1, 2).reshape(b, k * n)            # [B, kN]
        onehot = F.one_hot(picks, e)
        kept = positions_in_queue(onehot) <= self.capacity(n)
        kept = kept.reshape(b, k, n).transpose(1, 2)               # [B, N, k]
        weights = renormalised(top_p) * kept
        rows = torch.arange(b * n, device=x.device)[:, None].expand(-1, k).reshape(-1)
        flat_kept = kept.reshape(-1)
        out, pad = dispatch(self, x.reshape(b * n, d), rows[flat_kept], top_e.reshape(-1)[flat_kept],
                            weights.reshape(-1)[flat_kept])
        aux = x.new_zeros(())
        if self.training:
            f = F.one_hot(top_e[..., 0], e).float().mean((0, 1))
            aux = (self.balance_weight * e * (f * probs.mean((0, 1))).sum()
                   + self.z_weight * torch.logsumexp(logits, -1).pow(2).mean())
        self.routing = Routing(torch.where(kept, top_e, -1), weights.detach(), kept.sum((1, 2)), aux,
                               padding_rows=pad, requested_ids=top_e)
        return out.reshape(b, n, d)


class ExpertChoiceMoE(nn.Module):
    """Expert-choice routing (Zhou et al. 2022): in each sample every expert takes the
    ``ceil(capacity_factor * N / E)`` tokens with the highest router probability for it; a token's
    output sums the experts that took it (weights renormalised over them); a token no expert took
    gets 0 (the residual carries it)."""

    def __init__(self, mlp: nn.Module, dim: int, num_experts: int = 8, capacity_factor: float = 1.0):
        super().__init__()
        self.experts = upcycle(mlp, num_experts)
        self.router = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.num_experts, self.capacity_factor = num_experts, capacity_factor
        self.routing: Routing | None = None

    def capacity(self, tokens: int) -> int:
        """Tokens each expert takes per sample (at most all of them)."""
        return min(tokens, math.ceil(self.capacity_factor * tokens / self.num_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        e = self.num_experts
        probs = self.router(x).softmax(-1)                         # [B, N, E]
        c = self.capacity(n)
        chosen = probs.topk(c, dim=1).indices                      # [B, c, E]: tokens per expert
        taken = torch.zeros_like(probs).scatter(1, chosen, 1.0)    # [B, N, E]
        gate = renormalised(probs * taken + (taken.sum(-1, keepdim=True) == 0) * 1e-9) * taken
        # expert by expert (sample-major within each): an exact [E, B*c] dispatch, no padding
        rows = (chosen + torch.arange(b, device=x.device)[:, None, None] * n).permute(2, 0, 1).reshape(-1)
        ei = torch.arange(e, device=x.device).repeat_interleave(b * c)
        out, _ = dispatch(self, x.reshape(b * n, d), rows, ei, gate.gather(1, chosen).permute(2, 0, 1).reshape(-1))
        ids = torch.where(taken.bool(), torch.arange(e, device=x.device), -1)      # [B, N, E]
        self.routing = Routing(ids, gate.detach(), taken.sum((1, 2)).long(), x.new_zeros(()))
        return out.reshape(b, n, d)


class SoftMoE(nn.Module):
    """Soft MoE (Puigcerver et al. 2024): ``slots`` per expert; dispatch weights = softmax over the
    sample's tokens of ``X Phi`` (each slot a convex mix of tokens), combine weights = softmax over
    all slots (each token a convex mix of slot outputs). No token is dropped; every expert processes
    exactly its slots."""

    def __init__(self, mlp: nn.Module, dim: int, num_experts: int = 8, slots: int = 1):
        super().__init__()
        self.experts = upcycle(mlp, num_experts)
        self.phi = nn.Parameter(torch.randn(dim, num_experts * slots) * dim ** -0.5)
        self.num_experts, self.slots = num_experts, slots
        self.routing: Routing | None = None

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, D] -> [B, N, E * slots]``: ``X Phi``."""
        return x @ self.phi

    def slot_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dispatch, combine)``, both ``[B, N, E * slots]``: dispatch sums to 1 over tokens for
        each slot, combine sums to 1 over slots for each token."""
        logits = self.slot_logits(x)
        return logits.softmax(dim=1), logits.softmax(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        dispatch, combine = self.slot_weights(x)
        slot_in = dispatch.transpose(1, 2) @ x                     # [B, E*S, D]
        slot_in = slot_in.reshape(b, self.num_experts, self.slots, d)
        bank = expert_bank(self)
        if bank.grouped:   # every expert has exactly B * slots rows: one exact [E, B*S, D] buffer
            grouped = slot_in.transpose(0, 1).reshape(self.num_experts, b * self.slots, d)
            slot_out = bank.run(grouped, self.training).reshape(self.num_experts, b, self.slots, -1).transpose(0, 1)
        else:
            slot_out = torch.stack([self.experts[i](slot_in[:, i]) for i in range(self.num_experts)], 1)
        out = combine @ slot_out.reshape(b, self.num_experts * self.slots, -1)
        # for routing statistics: each token's strongest slot's expert (marked 'soft' in metrics)
        top_w, top_slot = combine.max(-1)
        self.routing = Routing((top_slot // self.slots)[..., None], top_w.detach()[..., None],
                               torch.full((b,), self.num_experts * self.slots, device=x.device, dtype=torch.long),
                               x.new_zeros(()))
        return out


def balanced_kmeans(points: torch.Tensor, clusters: int, iters: int = 20, seed: int = 0) -> torch.Tensor:
    """Partition ``points [M, D]`` into ``clusters`` groups of exactly ``M / clusters`` by k-means with
    a balanced (greedy, nearest-first) assignment. Returns the group of each point, ``[M]``.

    >>> balanced_kmeans(torch.tensor([[0.0], [0.1], [5.0], [5.1]]), 2).tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
    True
    """
    m = points.shape[0]
    if m % clusters:
        raise ValueError(f"{m} points do not split into {clusters} equal groups")
    size = m // clusters
    g = torch.Generator().manual_seed(seed)
    # farthest-point initialisation: a random first centre, then each next centre the point farthest
    # from those chosen (random initial centres can land in one cluster and never separate)
    chosen = [int(torch.randint(m, (1,), generator=g))]
    for _ in range(clusters - 1):
        chosen.append(int(torch.cdist(points, points[chosen]).min(1).values.argmax()))
    centres = points[chosen].clone()
    assign = torch.zeros(m, dtype=torch.long)
    for _ in range(iters):
        dist = torch.cdist(points, centres)                        # [M, C]
        owner, fill = [-1] * m, [0] * clusters
        for flat in dist.flatten().argsort().tolist():             # greedy: nearest pairs first
            p, c = divmod(flat, clusters)
            if owner[p] < 0 and fill[c] < size:
                owner[p] = c
                fill[c] += 1
        assign = torch.tensor(owner)
        centres = torch.stack([points[assign == c].mean(0) for c in range(clusters)])
    return assign


class MoEficationMLP(nn.Module):
    """MoEfication (Zhang et al. 2022): the dense MLP's hidden units split into ``num_experts``
    groups by balanced k-means on the first layer's (normalised) weight rows; expert ``e`` =
    ``fc2[:, group_e] @ act(fc1[group_e] x)``; a linear router regresses each expert's positive
    activation mass (experts frozen); at inference the top-``k`` experts by predicted mass run and
    the second layer's bias is added once. ``k = num_experts`` runs the original dense MLP: exact."""

    def __init__(self, mlp: nn.Module, dim: int, num_experts: int = 8, k: int = 4):
        super().__init__()
        fc1, fc2 = mlp.fc1, mlp.fc2
        hidden = fc1.out_features
        group = balanced_kmeans(F.normalize(fc1.weight.detach(), dim=1), num_experts)
        self.register_buffer("perm", group.argsort(stable=True))  # hidden units, expert by expert
        h = hidden // num_experts
        experts = []
        for e in range(num_experts):
            units = self.perm[e * h:(e + 1) * h]
            first, second = nn.Linear(fc1.in_features, h), nn.Linear(h, fc2.out_features, bias=False)
            with torch.no_grad():
                first.weight.copy_(fc1.weight[units])
                first.bias.copy_(fc1.bias[units])
                second.weight.copy_(fc2.weight[:, units])
            experts.append(nn.Sequential(first, copy.deepcopy(mlp.act), second))
        self.experts = nn.ModuleList(experts)
        self.out_bias = nn.Parameter(fc2.bias.detach().clone())
        self.act = copy.deepcopy(mlp.act)
        self.router = nn.Linear(dim, num_experts)
        self.num_experts, self.k = num_experts, k
        self.routing: Routing | None = None
        self._dense_weights: tuple | None = None

    def _dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The original MLP (weights back in their original order) and each expert's positive
        activation mass ``[..., E]``."""
        # experts are frozen: at evaluation the original MLP is reassembled once, not on every call;
        # the cache is keyed by the parameters' in-place version counters (a load or an update redoes it)
        params = [p for e in self.experts for p in e.parameters()]
        key = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
        if self.training or self._dense_weights is None or self._dense_weights[0] != key:
            inv = self.perm.argsort()
            weights = (torch.cat([e[0].weight for e in self.experts])[inv],
                       torch.cat([e[0].bias for e in self.experts])[inv],
                       torch.cat([e[2].weight for e in self.experts], dim=1)[:, inv])
            self._dense_weights = None if self.training else (key, tuple(w.detach() for w in weights))
        else:
            weights = self._dense_weights[1]
        w1, b1, w2 = weights
        hidden = self.act(F.linear(x, w1, b1))
        mass = hidden[..., self.perm].relu().unflatten(-1, (self.num_experts, -1)).sum(-1)
        return F.linear(hidden, w2, self.out_bias), mass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        if self.training or self.k >= self.num_experts:
            out, mass = self._dense(x)
            # the router's output is unused at k = E: it only runs (and counts) in training
            # the regression trains the router alone: when a transfer trains the body too, its gradient through
            # x pulled the features towards predictable activation mass until they collapsed (constant logits)
            aux = F.mse_loss(self.router(x.detach()), mass.detach()) if self.training else x.new_zeros(())
            ids = torch.arange(self.num_experts, device=x.device).expand(b, n, -1)
            self.routing = Routing(ids, torch.ones(b, n, self.num_experts, device=x.device),
                                   torch.full((b,), n * self.num_experts, device=x.device, dtype=torch.long), aux,
                                   routed=self.training)
            return out
        pred = self.router(x)                                      # predicted mass [B, N, E]
        top = pred.topk(self.k, dim=-1).indices                    # [B, N, k]
        rows = torch.arange(b * n, device=x.device)[:, None].expand(-1, self.k).reshape(-1)
        out, pad = dispatch(self, x.reshape(b * n, d), rows, top.reshape(-1), None)
        self.routing = Routing(top, torch.ones(b, n, self.k, device=x.device),
                               torch.full((b,), n * self.k, device=x.device, dtype=torch.long), x.new_zeros(()),
                               padding_rows=pad)
        return out.reshape(b, n, d) + self.out_bias
