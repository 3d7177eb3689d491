"""The `gpu` tier's code paths on a CUDA device: the smoke tier moved to CUDA trains and measures every
image method, and `shift` / `transfer` rebuild a CUDA run. Skipped without a GPU (CI has none); on a GPU
machine: `python -m pytest tests/test_cuda.py -m cuda`."""
import json

import pytest
import torch

from ccbench.cli import main
from ccbench.common import catalog
from ccbench.common.registry import Registry

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

IMAGE_METHODS = sorted(name for name in catalog.methods().names()
                       if "image" in catalog.methods().metadata(name)["modalities"])


@pytest.fixture
def cuda_smoke(monkeypatch):
    """Register ``smoke-cuda``: the smoke tier with ``device: cuda`` (no YAML of its own: it is a test tier)."""
    original = catalog.budgets()
    smoke = original.get("smoke")
    spec = smoke.model_copy(update={"name": "smoke-cuda", "device": "cuda"})
    reg = Registry("budget")
    for name in original.names():
        reg.add(name, (lambda n=name: original.get(n)), original.metadata(name))
    reg.add("smoke-cuda", lambda: spec, {**original.metadata("smoke"), "name": "smoke-cuda", "device": "cuda"})
    monkeypatch.setattr(catalog, "budgets", lambda: reg)
    return "smoke-cuda"


KNOB = {"static-depth": ["--knob", "blocks=2"]}  # its default (8 of 12 blocks) does not fit the 4-block smoke ViT


def _run(method, tiny_data, results, budget, task="imagenette"):
    rc = main(["run", "--method", method, "--task", task, "--budget", budget, "--data-dir", str(tiny_data),
               "--results-dir", str(results), "--quiet", *KNOB.get(method, [])])
    assert rc == 0, method
    paths = sorted((results / budget / task / method).glob("*.json"))
    assert paths, method
    return [json.loads(p.read_text()) for p in paths]


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_every_image_method_runs_on_cuda(method, cuda_smoke, tiny_data, isolated_cache, tmp_path):
    source = catalog.methods().metadata(method).get("evaluates_checkpoint_of")
    if source:  # e.g. tome measures dense's fine-tuned model: train that first
        _run(source, tiny_data, tmp_path / "results", cuda_smoke)
    records = _run(method, tiny_data, tmp_path / "results", cuda_smoke)
    for rec in records:
        assert rec["hardware"]["device"] == "cuda" and "gpu" in rec["hardware"]
        m = rec["metrics"]
        # above 1 is allowed: exit heads, gates and static-res's upscaling cost more than dense on the smoke ViT
        assert 0 <= m["top1"] <= 100 and 0 < m["useful_fraction_of_dense"] < 20
        assert m["latency"]["batch1"]["speedup"] > 0 and m["latency"]["batchN"]["speedup"] > 0


def test_shift_and_transfer_rebuild_a_cuda_run(cuda_smoke, tiny_data, isolated_cache, tmp_path):
    results = tmp_path / "results"
    [src] = _run("early-exit", tiny_data, results, cuda_smoke, task="imagenette-a")
    assert main(["transfer", src["id"][:8], "--to", "imagenette-b", "--protocol", "router-only",
                 "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"]) == 0
    [path] = sorted((results / cuda_smoke / "imagenette-b" / "early-exit").glob("*.json"))
    assert json.loads(path.read_text())["source"]["record_id"] == src["id"]
    [dense] = _run("dense", tiny_data, results, cuda_smoke)
    assert main(["shift", dense["id"][:8], "--to", "imagenette-c", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--quiet"]) == 0
    [shift] = sorted((results / cuda_smoke / "imagenette-c" / "dense").glob("shift-*.json"))
    rec = json.loads(shift.read_text())
    assert rec["source"]["prediction_agreement_with_record"] >= 0.999 and len(rec["conditions"]) == 25


def test_cuda_and_cpu_agree_on_a_trained_model(cuda_smoke, tiny_data, isolated_cache, tmp_path):
    """The same trained weights give the same predictions and the same per-sample compute on both devices
    (the decision rules do not depend on where they run)."""
    from ccbench.drivers.from_record import load_record_model
    from ccbench.measurement.cost import useful_macs
    from ccbench.measurement.evaluate import evaluate_split

    results = tmp_path / "results"
    for method in ("dense", "avit", "moe-topk", "early-exit", "dynamicvit", "tome"):  # tome: dense's model
        rec = _run(method, tiny_data, results, cuda_smoke)[0]
        rm = load_record_model(rec["id"][:12], str(tiny_data), results, progress=False)
        table = rm.work.table.with_units(rm.model.cost_units())
        out = {}
        for device in ("cuda", "cpu"):
            ev = evaluate_split(rm.model.to(device), rm.work, rm.work.splits["eval"], 8, device)
            out[device] = (ev.logits.argmax(-1), useful_macs(table, ev.trace))
        agree = float((out["cpu"][0] == out["cuda"][0]).float().mean())
        assert agree >= 0.95, (method, agree)
        assert torch.allclose(out["cpu"][1].double(), out["cuda"][1].double(), rtol=0.05), method
