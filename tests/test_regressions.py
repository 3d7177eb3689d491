"""Regression tests for one-line bugs that once survived the whole suite (issue 22).

Each test is written against the behaviour (a hand case or a written-out reference), so that the
bug named in its docstring turns it red whatever the current numbers are."""
import json
import math

import numpy as np
import pytest
import torch

from ccbench.common import catalog
from ccbench.core.backbones import ViTBackbone, ViTConfig
from ccbench.measurement.cost import CostTable, useful_macs
from ccbench.measurement.routing import layer_metrics
from ccbench.measurement.stats import bootstrap_ci, bootstrap_ci_metric

# ------------------------------------------------------------------ routing: chance-corrected NMI

def test_chance_correction_removes_the_small_sample_bias_of_nmi():
    """Bug: ``nmi - chance_nmi`` -> ``nmi``. With 16 samples, 8 experts and 4 labels drawn
    independently, the raw NMI is far from 0 (small-sample bias); the corrected one is 0 on average."""
    rng = np.random.default_rng(1)
    raw, corrected, raw_mi, corrected_mi = [], [], [], []
    for _ in range(30):
        ids = rng.integers(0, 8, size=(16, 1, 1))
        labels = rng.integers(0, 4, size=16)
        spec = layer_metrics(ids, labels, num_experts=8, permutations=40, seed=2)["specialization"]
        raw.append(spec["raw_nmi"])
        corrected.append(spec["nmi"])
        raw_mi.append(spec["raw_mi_over_h_label"])
        corrected_mi.append(spec["mi_over_h_label"])
    assert np.mean(raw) > 0.2 and np.mean(raw_mi) > 0.2        # the bias the correction removes
    assert abs(np.mean(corrected)) < 0.03 and abs(np.mean(corrected_mi)) < 0.03


# ------------------------------------------------------------------ ToMe

def _duplicate_pair_image(batch: int = 2) -> torch.Tensor:
    """Images of a 4 x 4 grid of 8-px patches whose columns 0/1 and 2/3 are equal: with no position
    embedding, patch token 2k (set A) is an exact copy of patch token 2k - 1 (set B)."""
    torch.manual_seed(3)
    x = torch.randn(batch, 3, 32, 32)
    x[..., 8:16] = x[..., 0:8]
    x[..., 24:32] = x[..., 16:24]
    return x


def test_tome_merging_exact_duplicates_is_lossless_with_proportional_attention():
    """Bug: ToMe without proportional attention (no ``log(size)`` key bias). Merging a token into its
    exact copy leaves one token of size 2; attention that weights it by its size (``+ log 2`` on its
    logits) sees exactly what the dense model sees with both copies, so ToMe equals dense. Block 0
    merges all 8 duplicate pairs, block 1 attends over tokens of size 2 (and its own merges come after
    the class token's attention, so they cannot change the output)."""
    cfg = ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    torch.manual_seed(0)
    bb = ViTBackbone(cfg).eval()
    with torch.no_grad():
        bb.vit.pos_embed.zero_()
    model = catalog.methods().get("tome").build(bb, r=8).eval()
    x = _duplicate_pair_image()
    with torch.no_grad():
        dense, out = bb(x), model(x)
    assert out.trace["tokens_per_block"][0].tolist() == [17, 9]      # all 8 pairs merged in block 0
    assert torch.allclose(out.logits, dense, atol=1e-5)
    # the same merge without the size bias is not lossless: the check above can fail
    from ccbench.baselines import tome as tome_module
    from ccbench.core.token_ops import add_attention, block_attention, block_mlp
    with torch.no_grad():
        t = bb.embed(x)
        size = t.new_ones(t.shape[0], t.shape[1], 1)
        res = block_attention(bb.blocks[0], t)
        t = add_attention(bb.blocks[0], t, res.out)
        t, size = tome_module.merge_tokens(t, size, tome_module.bipartite_merge_plan(res.keys, 8))
        t = block_mlp(bb.blocks[0], t)
        assert size[:, 1:].eq(2).all()
        unbiased = bb.classify(bb.blocks[1](t)[:, 0])
    assert not torch.allclose(unbiased, dense, atol=1e-3)


def test_tome_similarity_pairs_are_a_times_b_per_merging_block(tiny_backbone, tiny_config):
    """Bug: a wrong ``pairs`` count. Tiny config: 17 tokens, r = 2, so blocks see 17, 15, 13, 11
    tokens; set A holds ceil(n/2) (class token included: its row is computed, then masked), B floor(n/2)."""
    model = catalog.methods().get("tome").build(tiny_backbone, r=2).eval()
    trace = model(torch.randn(3, 3, 32, 32)).trace
    assert trace["tokens_per_block"][0].tolist() == [17, 15, 13, 11]
    assert trace["units/tome_pair"].tolist() == [9 * 8 + 8 * 7 + 7 * 6 + 6 * 5] * 3
    assert model.cost_units() == {"tome_pair": tiny_config.embed_dim // tiny_config.num_heads}
    table = CostTable.from_config(tiny_config, units=model.cost_units())
    mlp = [15, 13, 11, 9]
    hand = (table.patch_embed + table.head + sum(table.attention_part(n) for n in (17, 15, 13, 11))
            + sum(table.mlp_part(n) for n in mlp) + 200 * 16)
    assert useful_macs(table, trace).tolist() == [hand] * 3


# ------------------------------------------------------------------ stats: the CI's level

def _normal_width(p: float, n: int, level: float) -> float:
    z = {0.95: 1.959964, 0.9: 1.644854}[level]
    return 2 * z * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_bootstrap_ci_width_matches_the_normal_approximation_at_its_level(level):
    """Bug: ``alpha = (1 - level) / 2`` -> ``1 - level`` (a 90 % interval labelled 95 %). For a
    proportion of 0.7 over 400 samples the normal interval is 0.0898 wide at 95 %, 0.0754 at 90 %;
    the bootstrap's width must be within 10 % of the one at its own level (the two differ by 16 %)."""
    values = torch.tensor([1.0] * 280 + [0.0] * 120)
    lo, hi = bootstrap_ci(values, level=level)
    assert lo < 0.7 < hi
    assert abs((hi - lo) / _normal_width(0.7, 400, level) - 1) < 0.08
    pred = np.array([1] * 280 + [0] * 120)
    lo, hi = bootstrap_ci_metric(lambda p, y: float((p == y).mean()), pred, np.ones(400, dtype=int), level=level)
    assert abs((hi - lo) / _normal_width(0.7, 400, level) - 1) < 0.08


# ------------------------------------------------------------------ records: tamper evidence

def test_a_record_with_any_changed_field_fails_verification(tmp_path):
    """Bug: record hash verification switched off."""
    from ccbench.core.trace import Trace
    from ccbench.reporting.records import (
        RecordError,
        finalize,
        read_record,
        require_valid_records,
        verify_record,
        write_record,
    )
    from record_helpers import run_body

    rec = finalize(run_body("m", task="t", budget="smoke"))
    assert verify_record(rec)
    for change in ({"seed": 1}, {"date": "2026-01-02T00:00:00+00:00"}, {"id": "0" * 64}):
        assert not verify_record({**rec, **change})
    path = write_record(rec, ["a"], torch.tensor([1]), torch.tensor([1]),
                        Trace({"tokens_per_block": torch.tensor([[5]])}), tmp_path)
    read_record(path)                                           # the untouched record reads back
    body = json.loads(path.read_text())
    body["metrics"]["useful_fraction_of_dense"] = 0.5
    path.write_text(json.dumps(body))
    with pytest.raises(RecordError, match="id does not match"):
        read_record(path)
    with pytest.raises(RecordError, match=str(path.name)):
        require_valid_records(tmp_path)


# ------------------------------------------------------------------ depth: exit-head MACs

def test_every_exit_head_a_sample_ran_is_counted(tiny_backbone, tiny_config):
    """Bug: early-exit head MACs counted once. A sample that leaves after block e ran the heads of
    blocks 0..e; one that reaches the end ran all depth - 1 exit heads and the final classifier."""
    model = catalog.methods().get("patience").build(tiny_backbone).eval()
    model.set_knob(1)
    table = CostTable.from_config(tiny_config, units=model.cost_units())
    head = 5 * tiny_config.embed_dim + tiny_config.embed_dim * tiny_config.num_classes
    block = table.block(tiny_config.num_tokens)
    depth = tiny_config.depth
    torch.manual_seed(0)
    trace = model(torch.randn(16, 3, 32, 32)).trace
    exits = trace["exit_block"].tolist()
    assert any(1 <= e < depth - 1 for e in exits)                 # someone ran 2+ exit heads and left
    expected = [table.patch_embed + (e + 1) * block + (e + 1) * head if e < depth - 1
                else table.dense_macs() + (depth - 1) * head for e in exits]
    assert useful_macs(table, trace).tolist() == expected


# ------------------------------------------------------------------ GLUE: F1's positive class

def test_mrpc_f1_is_the_f1_of_the_positive_class():
    """Bug: F1 on the wrong positive class. Hand case: class 1 has tp 2, 3 predicted, 3 true
    (F1 2/3); class 0 has tp 1, 2 predicted, 2 true (F1 1/2)."""
    from ccbench.common.text_metrics import f1_binary, glue_scores

    pred, label = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    assert f1_binary(pred, label) == pytest.approx(2 / 3)
    assert f1_binary(pred, label, positive=0) == pytest.approx(1 / 2)
    scores = glue_scores("mrpc", pred, label)
    assert scores["f1"] == pytest.approx(200 / 3) and scores["accuracy"] == pytest.approx(60.0)
    assert scores["main"] == pytest.approx((200 / 3 + 60) / 2)
