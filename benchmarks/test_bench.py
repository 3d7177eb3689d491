"""Speed figures (not pass/fail tests: they assert nothing by design and are deselected from the test
run by the ``benchmark`` marker; regressions are caught by ``tests/``). Run:

    python -m pytest benchmarks -m benchmark -s

P1  A-ViT speedup efficiency (realized / ideal) at batch 1 and 8, with 64 and 196 patch tokens.
P2  ccbench's evaluation loop throughput over a bare ``torch.no_grad()`` loop on the same model/data.
P3  time to compute useful MACs for a whole split from its traces, as a share of evaluation time.

Figures are ratios measured in one process, printed and stored in the benchmark's ``extra_info``.
"""
from __future__ import annotations

import time

import pytest
import torch

from ccbench.baselines.avit import build as build_avit
from ccbench.baselines.dense import build as build_dense
from ccbench.core.backbones import ViTBackbone, ViTConfig
from ccbench.data.image_data import ImageSplit
from ccbench.measurement.cost import CostTable, useful_macs
from ccbench.measurement.evaluate import evaluate
from ccbench.measurement.latency import interleaved_latency

pytestmark = pytest.mark.benchmark


def _models(img_size: int, target_depth: float):
    torch.manual_seed(0)
    cfg = ViTConfig(img_size=img_size, patch_size=16, num_classes=10)
    avit = build_avit(ViTBackbone(cfg), target_depth=target_depth)
    avit.prepare(torch.randn(32, 3, img_size, img_size))
    return cfg, avit.eval(), build_dense(ViTBackbone(cfg)).eval()


@pytest.mark.parametrize("img_size", [128, 224])
@pytest.mark.parametrize("batch", [1, 8])
def test_p1_avit_speedup_efficiency(benchmark, img_size, batch):
    torch.set_num_threads(2)
    cfg, avit, dense = _models(img_size, target_depth=6.0)
    table = CostTable.from_config(cfg)
    calls = 40 if batch == 1 else 12
    inputs = [torch.randn(batch, 3, img_size, img_size) for _ in range(calls)]
    with torch.inference_mode():
        useful = torch.cat([useful_macs(table, avit(x).trace) for x in inputs])
    ideal = table.dense_macs() / useful.mean().item()
    res = benchmark.pedantic(lambda: interleaved_latency(avit, dense, inputs, warmup=3), rounds=1, iterations=1)
    eff = res["speedup"] / ideal
    benchmark.extra_info.update(tokens=cfg.num_patches, batch=batch, realized=res["speedup"],
                                ideal=round(ideal, 3), efficiency=round(eff, 3))
    print(f"\nP1 {cfg.num_patches} tokens batch {batch}: realized {res['speedup']:.2f}x ideal {ideal:.2f}x "
          f"efficiency {eff:.2f}")


def _split(n: int, px: int) -> ImageSplit:
    g = torch.Generator().manual_seed(0)
    return ImageSplit(torch.randint(0, 255, (n, 3, px, px), dtype=torch.uint8, generator=g),
                      torch.randint(0, 10, (n,), generator=g), [str(i) for i in range(n)], [], "bench")


def test_p2_eval_loop_overhead(benchmark):
    torch.set_num_threads(2)
    cfg, avit, _ = _models(128, target_depth=6.0)
    split = _split(512, 128)
    from ccbench.data.augment import normalize

    def bare():
        with torch.no_grad():
            for i in range(0, len(split), 128):
                avit(normalize(split.images[i:i + 128]))

    def ours():
        evaluate(avit, split, 128, 128)

    bare()  # warm-up
    times = {"bare": [], "ccbench": []}
    for _ in range(3):
        for name, fn in (("bare", bare), ("ccbench", ours)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ratio = min(times["bare"]) / min(times["ccbench"])
    benchmark.pedantic(ours, rounds=1, iterations=1)
    benchmark.extra_info.update(throughput_ratio=round(ratio, 4))
    print(f"\nP2 ccbench eval throughput / bare loop: {ratio:.3f}")


def test_p3_cost_share_of_eval(benchmark):
    torch.set_num_threads(2)
    cfg, avit, _ = _models(128, target_depth=6.0)
    split = _split(512, 128)
    t0 = time.perf_counter()
    ev = evaluate(avit, split, 128, 128)
    eval_s = time.perf_counter() - t0
    table = CostTable.from_config(cfg)
    # a full Imagenette val split's worth of traces (3,925 samples)
    reps = -(-3925 // len(split))
    from ccbench.core.trace import Trace
    big = Trace.cat([ev.trace] * reps)
    res = benchmark(lambda: useful_macs(table, big))
    share = benchmark.stats.stats.mean / (eval_s * reps)
    benchmark.extra_info.update(share_of_eval=round(share, 6))
    print(f"\nP3 useful-MAC computation for {big.batch_size} samples: {share:.4%} of their evaluation time")
    assert res.shape[0] == big.batch_size
