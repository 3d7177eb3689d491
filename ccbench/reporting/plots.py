"""Pictures of records: ``ccbench plot routing <record>`` (per MoE layer, an expert x class heatmap and
beside it, below, an expert x token-position heatmap)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ccbench.common.errors import UserError

from .records import load_samples, read_record


def routing_counts(expert_ids: np.ndarray, labels: np.ndarray, num_experts: int, num_labels: int) -> np.ndarray:
    """``expert_ids [S, L, N, K]`` and ``labels [S]`` -> counts ``[L, E, C]`` of (pick, label) pairs.

    >>> routing_counts(np.array([[[[0], [1]]], [[[1], [-1]]]]), np.array([0, 1]), 2, 2)[0].tolist()
    [[1, 0], [1, 1]]
    """
    s, layers = expert_ids.shape[:2]
    out = np.zeros((layers, num_experts, num_labels), dtype=np.int64)
    for layer in range(layers):
        ids = expert_ids[:, layer]
        valid = ids >= 0
        lab = np.broadcast_to(labels[:, None, None], ids.shape)[valid]
        out[layer] = np.bincount(ids[valid] * num_labels + lab, minlength=num_experts * num_labels).reshape(
            num_experts, num_labels)
    return out


def position_counts(expert_ids: np.ndarray, num_experts: int, buckets: str | None) -> np.ndarray:
    """``expert_ids [S, L, N, K]`` -> counts ``[L, E, P]`` of processed picks per expert and position:
    the token index, or with ``buckets="log2"`` (text) its log2 bucket (0, 1, 2-3, 4-7, ...), as
    ``ccbench.measurement.routing.position_index`` buckets them.

    >>> position_counts(np.array([[[[0], [1], [1]]]]), 2, "log2")[0].tolist()
    [[1, 0, 0], [0, 1, 1]]
    """
    layers, n = expert_ids.shape[1], expert_ids.shape[2]
    pos = np.arange(n)
    if buckets == "log2":
        pos = np.where(pos == 0, 0, np.floor(np.log2(np.maximum(pos, 1))).astype(np.int64) + 1)
    experts, positions = num_experts, int(pos.max()) + 1
    out = np.zeros((layers, experts, positions), dtype=np.int64)
    for layer in range(layers):
        ids = expert_ids[:, layer]
        valid = ids >= 0
        p = np.broadcast_to(pos[None, :, None], ids.shape)[valid]
        out[layer] = np.bincount(ids[valid] * positions + p, minlength=experts * positions).reshape(experts, positions)
    return out


def plot_routing(record_path: str | Path, out: str | Path | None = None, record: dict | None = None) -> Path:
    """Write a PNG of per-layer expert x class heatmaps (share of each class's picks going to each
    expert) for a record of a routed method; returns its path. ``record``: the record at
    ``record_path`` already read and verified (it is then not read again)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record_path = Path(record_path)
    if not record_path.exists():
        raise UserError(f"no record at {record_path}")
    if record is None:
        record = read_record(record_path)
    samples = load_samples(record_path)
    if "trace.expert_ids" not in samples:
        raise UserError(f"record {record_path.name} ({record['method']['name']}) has no routing trace; "
                        "`ccbench plot routing` needs a width-family record")
    ids = samples["trace.expert_ids"].astype(np.int64)
    labels = samples["label"].astype(np.int64)
    experts = record["metrics"]["routing"]["num_experts"]
    classes = int(labels.max()) + 1
    counts = routing_counts(ids, labels, experts, classes)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    routing = record["metrics"]["routing"]
    buckets = routing.get("position_buckets") or "token"
    by_position = position_counts(ids, experts, buckets)
    pos_share = by_position / np.maximum(by_position.sum(1, keepdims=True), 1)
    layers = counts.shape[0]
    blocks = record["method"]["config"].get("moe_blocks", list(range(layers)))
    fig, axes = plt.subplots(2, layers, figsize=(2.6 * layers + 1, 6.4), squeeze=False)
    for i in range(layers):
        layer = routing["layers"][i]
        spec = layer["specialization"]
        weighting = "per sample" if "weighting" in spec else "per pick"
        ax = axes[0, i]
        im = ax.imshow(share[i], vmin=0, vmax=float(share.max()), cmap="viridis", aspect="auto")
        ax.set_title(f"block {blocks[i]}\nclass NMI {spec['nmi']:.3f} ({weighting})", fontsize=8)
        ax.set_xlabel("class", fontsize=7)
        ax.set_xticks(range(classes))
        ax.set_yticks(range(experts))
        ax.tick_params(labelsize=6)
        ax = axes[1, i]
        im_pos = ax.imshow(pos_share[i], vmin=0, vmax=float(pos_share.max()), cmap="magma", aspect="auto")
        pos = layer.get("position")
        ax.set_title("position" + (f" NMI {pos['nmi']:.3f}" if pos else ""), fontsize=8)
        ax.set_xlabel("token index" if buckets == "token" else "token position (log2 bucket)", fontsize=7)
        ax.set_yticks(range(experts))
        ax.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("expert", fontsize=7)
    axes[1, 0].set_ylabel("expert", fontsize=7)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of the class's picks")
    fig.colorbar(im_pos, ax=axes[1].tolist(), shrink=0.8, label="share of the position's picks")
    k = record["method"]["knob"]
    fig.suptitle(f"{record['method']['name']} {k['name']}={k['value']} on {record['task']['name']} "
                 f"(record {record['id'][:12]})", fontsize=9, y=1.08)
    out = Path(out) if out else record_path.with_name(record_path.name[:-len(".json")] + ".routing.png")
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out
