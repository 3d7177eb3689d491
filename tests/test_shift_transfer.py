"""Issue 8: `ccbench shift` and `ccbench transfer` end to end on the tiny image folder, and their parts."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from ccbench.cli import main
from ccbench.common import catalog
from ccbench.common.protocols import NEEDS_DECISION, PROTOCOLS


def _run(method, task, tiny_data, results, extra=()):
    rc = main(["run", "--method", method, "--task", task, "--budget", "smoke", "--data-dir", str(tiny_data),
               "--results-dir", str(results), "--quiet", *extra])
    assert rc == 0
    [path] = sorted((results / "smoke" / task / method).glob("*.json"))
    return path, json.loads(path.read_text())


def test_shift_to_imagenette_c_records_every_condition_and_its_lineage(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    src_path, src = _run("moe-topk", "imagenette", tiny_data, results, ["--knob", "k=2"])
    assert main(["shift", src["id"][:8], "--to", "imagenette-c", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--quiet"]) == 0
    [path] = sorted((results / "smoke" / "imagenette-c" / "moe-topk").glob("shift-*.json"))
    rec = json.loads(path.read_text())
    assert rec["kind"] == "shift" and rec["source"]["record_id"] == src["id"]
    assert rec["source"]["backbone_sha256"] == src["backbone"]["sha256"]
    assert rec["source"]["prediction_agreement_with_record"] == 1.0
    assert rec["reference"]["name"] == "imagenette-c/clean" and rec["reference"]["n"] == 20  # 2 val images per class
    assert len(rec["conditions"]) == 25 and set(rec["summary"]) == {"1", "2", "3", "4", "5"}
    for row in rec["conditions"]:
        shift = row["routing_shift"]
        assert len(shift["layers"]) == 2  # the smoke backbone's MoE blocks 1 and 3
        assert all(0.0 <= layer["js_bits"] <= 1.0 for layer in shift["layers"])
        assert row["calibration_transfer"]["source_fraction_of_dense"] == src["metrics"]["useful_fraction_of_dense"]
        drop = row["score_drop"]
        assert drop == pytest.approx(rec["reference"]["main_score"]["value"] - row["main_score"]["value"], abs=1e-3)
    z = np.load(path.with_name(path.name.replace(".json", ".samples.npz")))
    assert len(z["gaussian_noise/5.pred"]) == 20
    # issue 25: per-sample compute is stored, so the change in compute under shift gets a paired interval
    for name, part in [("reference", rec["reference"]), *((row["condition"], row) for row in rec["conditions"])]:
        useful, dense = z[f"{name}.useful_gmacs"].astype(np.float64), z[f"{name}.dense_gmacs"].astype(np.float64)
        assert useful.shape == dense.shape == (20,) and (useful > 0).all() and np.ptp(dense) == 0  # images: one size
        assert useful.mean() == pytest.approx(part["useful_gmacs"]["mean"], abs=1e-6)   # the record keeps 6 digits
        assert useful.sum() / dense.sum() == pytest.approx(part["useful_fraction_of_dense"], abs=1e-4)
    # issue 24: every routing figure of both records recomputes from their samples files alone
    from ccbench.measurement.routing import routing_from_samples, routing_shift
    from ccbench.reporting.records import load_samples

    routing = src["metrics"]["routing"]
    assert routing_from_samples(routing, load_samples(src_path)) == {
        k: v for k, v in routing.items() if k != "constant_by_construction"}
    assert routing["constant_by_construction"] == {"statistics": [], "why": ""}  # top-k declares none
    mean = routing["mean_over_layers"]
    assert mean["specialization_weighting"] == "per sample" and routing["position_buckets"] == "token"
    assert {"nmi_per_pick", "position_nmi", "requested_max_over_mean", "requested_cv", "requested_drop_rate"} <= set(mean)
    for layer in routing["layers"]:
        # a processed pick is a requested one that was not dropped: the loads differ by the drops alone
        assert 0.0 <= layer["requested"]["drop_rate"] < 1.0 and layer["position"]["positions"] == 17
    samples = load_samples(src_path)
    requested, ids = samples["trace.expert_requested"], samples["trace.expert_ids"]
    assert ((ids == requested) | ((ids == -1) & (requested >= 0))).all()
    assert z["reference.expert_ids"].dtype == np.int8
    for row in rec["conditions"]:
        shift = row["routing_shift"]
        assert routing_shift(z["reference.expert_ids"], z[f"{row['condition']}.expert_ids"], shift["num_experts"],
                             shift["seed"]) == shift
    from ccbench.reporting.shift_tables import plot_severity, shift_markdown, shift_rows

    rows = shift_rows(results)
    text = shift_markdown(rows)
    assert "imagenette → imagenette-c" in text and "drop s5" in text and rec["id"][:12] in text
    # each record is one row; its seed column tells the seeds of one method apart
    header, row = ([c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
                   if "reference score" in line or rec["id"][:12] in line)
    assert header[2] == "seed" and row[2] == str(rec["seed"])
    plot_severity(rows, tmp_path / "severity.png")
    from conftest import assert_drawn
    assert_drawn(tmp_path / "severity.png")
    # a shift record is not a run: tables and the leaderboard's run rows ignore it
    capsys.readouterr()
    assert main(["table", "--results-dir", str(results)]) == 0
    assert "imagenette-c" not in capsys.readouterr().out.split("\n\n")[0]


def test_shift_refuses_targets_with_other_classes_and_unknown_ids(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    _, src = _run("dense", "imagenette", tiny_data, results)
    assert main(["shift", src["id"][:8], "--to", "sst2", "--results-dir", str(results)]) == 2
    assert "not a shift target" in capsys.readouterr().err
    assert main(["shift", "abcdef12", "--to", "imagenette-c", "--results-dir", str(results)]) == 2
    assert "no run record" in capsys.readouterr().err
    assert main(["run", "--method", "dense", "--task", "imagenette-c", "--budget", "smoke"]) == 2
    assert "evaluation-only" in capsys.readouterr().err


def _state(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_transfer_protocols_freeze_what_they_say_and_cite_their_source(tiny_data, isolated_cache, tmp_path, capsys):
    from ccbench.drivers.from_record import find_record

    results = tmp_path / "results"
    _, dense = _run("dense", "imagenette-a", tiny_data, results)
    _, ee = _run("early-exit", "imagenette-a", tiny_data, results, ["--knob", "threshold=0.9"])
    runs = isolated_cache / "runs"
    source_models = {p.name for p in runs.glob("*.safetensors")}

    def transfer(record, protocol):
        before = {p.name for p in runs.glob("transfer-*.safetensors")}
        rc = main(["transfer", record["id"][:8], "--to", "imagenette-b", "--protocol", protocol,
                   "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"])
        assert rc == 0
        [new] = {p.name for p in runs.glob("transfer-*.safetensors")} - before
        return _state(runs / new)

    src_ee = _state(runs / next(n for n in source_models if "early-exit" in n))
    head_only = transfer(ee, "head-only")
    heads = {"backbone.vit.head.weight", "backbone.vit.head.bias"} | {
        k for k in src_ee if k.startswith("exit_heads.") and k.split(".")[2] == "1"}
    for name, value in src_ee.items():
        if name in heads:
            assert not torch.equal(value, head_only[name]), name  # re-initialised and trained
        else:
            assert torch.equal(value, head_only[name]), name      # bit-identical
    router_only = transfer(ee, "router-only")
    assert not torch.equal(src_ee["exit_heads.0.0.weight"], router_only["exit_heads.0.0.weight"])  # exit norms train
    assert torch.equal(src_ee["backbone.vit.blocks.0.attn.qkv.weight"], router_only["backbone.vit.blocks.0.attn.qkv.weight"])
    full = transfer(dense, "full")
    src_dense = _state(runs / next(n for n in source_models if "-dense-" in n))
    assert not torch.equal(src_dense["backbone.vit.blocks.0.attn.qkv.weight"], full["backbone.vit.blocks.0.attn.qkv.weight"])

    recs = [json.loads(p.read_text()) for p in (results / "smoke" / "imagenette-b").rglob("*.json")]
    assert sorted((r["method"]["name"], r["protocol"]) for r in recs) == [
        ("dense", "full"), ("early-exit", "head-only"), ("early-exit", "router-only")]
    for r in recs:
        assert r["kind"] == "transfer" and r["budget"]["consumed"]["samples"] == 64
        _, source = find_record(r["source"]["record_id"], results)        # lineage resolves
        assert source["backbone"]["sha256"] == r["source"]["backbone_sha256"]
        assert source["task"]["name"] == "imagenette-a"
    ee_head = next(r for r in recs if r["protocol"] == "head-only")
    assert ee_head["trainable"]["module"]["trainable"] == 0 and ee_head["trainable"]["decision"]["trainable"] == 0

    from ccbench.reporting.shift_tables import transfer_markdown, transfer_rows

    rows = transfer_rows(results)
    assert rows.set_index(["method", "protocol"]).loc[("dense", "full"), "gain"] == 0.0
    assert pd.isna(rows.set_index(["method", "protocol"]).loc[("early-exit", "router-only"), "gain"])  # no dense head-only
    table = transfer_markdown(rows)
    dense_line = next(line for line in table.splitlines() if line.startswith("| dense"))
    assert dense_line.count("n/a") == 2 and "(+0.00) @100%" in dense_line

    # dense has no decision parameters: router-only is n/a; a 10-class source has seen imagenette-b's labels
    capsys.readouterr()
    assert main(["transfer", dense["id"][:8], "--to", "imagenette-b", "--protocol", "router-only",
                 "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"]) == 2
    assert "n/a" in capsys.readouterr().err
    _, ten = _run("dense", "imagenette", tiny_data, results)
    assert main(["transfer", ten["id"][:8], "--to", "imagenette-b", "--protocol", "full",
                 "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"]) == 2
    assert "cannot be a transfer source" in capsys.readouterr().err


@pytest.mark.parametrize("name", catalog.methods().names())
def test_every_protocol_s_transfer_loss_reaches_every_part_it_trains(name, tiny_config):
    """The loss a transfer trains with reaches every head and decision parameter the protocol trains, and some
    module parameters when modules train (experts a batch does not pick, or skipped blocks, get none). A
    method whose own loss leaves the task out (MoEfication trains only its routers) once transferred with a
    random head that never learned (head-only: no gradient at all)."""
    from ccbench.core.backbones import ViTBackbone
    from ccbench.drivers.transfer import apply_protocol
    from ccbench.training.train import method_loss

    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for protocol, roles_trained in PROTOCOLS.items():
        torch.manual_seed(0)
        model = catalog.methods().get(name).build(ViTBackbone(tiny_config).eval())
        if hasattr(model, "prepare"):
            model.prepare(x)
        roles = model.parameter_roles()
        if protocol in NEEDS_DECISION and "decision" not in roles.values():
            continue
        apply_protocol(model, protocol)
        model.train()
        loss, _ = method_loss(transfer=True)(model, x, y)
        loss.backward()
        reached: dict[str, list[bool]] = {}
        for pname, p in model.named_parameters():
            assert p.requires_grad == (roles[pname] in roles_trained) or pname.endswith("word_embeddings.weight")
            if p.requires_grad:
                reached.setdefault(roles[pname], []).append(p.grad is not None and bool(p.grad.abs().sum() > 0))
        assert all(reached["head"]), (protocol, reached)
        assert all(reached.get("decision", [True])), (protocol, reached)
        assert "module" not in roles_trained or any(reached["module"]), (protocol, reached)


def test_a_source_model_the_cache_lacks_is_trained_again_and_a_copy_is_said_so(tiny_data, isolated_cache, tmp_path,
                                                                                capsys, monkeypatch):
    """Issue 25 on a machine without the ranking's models: shift and transfer train a record's model again from its
    recipe; a copy that is not bit-for-bit the record's is accepted only above the retrained floor, its records say
    so (``source.trained_again``) and the track section lists it; another model is refused."""
    from ccbench.drivers import from_record, runner
    from ccbench.reporting.records import load_records
    from ccbench.reporting.track_section import trained_again_lines
    from ccbench.training.model_store import store_dir

    results = tmp_path / "results"
    _, src = _run("moe-topk", "imagenette", tiny_data, results, ["--knob", "k=2"])       # shifted
    _, src_a = _run("moe-topk", "imagenette-a", tiny_data, results, ["--knob", "k=2"])   # transferred

    def wipe():
        for cached in store_dir().glob("*.safetensors"):
            cached.unlink()

    def derived(kind, source, *args):
        capsys.readouterr()
        rc = main([kind, source["id"][:8], *args, "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"])
        return rc, capsys.readouterr().err

    wipe()
    # a transfer that cannot apply is refused before the missing source is trained again, not after
    rc, err = derived("transfer", src_a, "--to", "imagenette-c", "--protocol", "head-only")
    assert rc == 2 and "evaluation-only" in err and "training it again" not in err, err
    assert not list(store_dir().glob("*.safetensors"))
    rc, err = derived("shift", src, "--to", "imagenette-c")
    assert rc == 0 and "training it again from the record's recipe" in err and "training it first" in err, err
    [shift] = [r for _, r in load_records(results, "shift")]
    # on one machine training reproduces the model bit for bit: the copy is the record's model
    assert shift["source"]["prediction_agreement_with_record"] == 1.0 and shift["source"]["trained_again"] is False

    # a copy trained on another machine agrees on most but not all predictions: simulated by a stricter bar
    wipe()
    monkeypatch.setattr(from_record, "PREDICTION_AGREEMENT_MIN", 1.01)
    rc, err = derived("transfer", src_a, "--to", "imagenette-b", "--protocol", "head-only")
    assert rc == 0 and "a copy trained again from its recipe" in err
    [transfer] = [r for _, r in load_records(results, "transfer")]
    assert transfer["source"]["trained_again"] is True
    assert transfer["metrics"]["module_reuse"]["layers"]   # against the copy's own expert picks on the source
    lines = trained_again_lines(load_records(results, None))
    assert lines == [f"moe-topk on imagenette-a, seed 0 (record {src_a['id'][:12]}; its copy agrees on 100.0 % of the "
                     "record's predictions)"]
    monkeypatch.setattr(from_record, "PREDICTION_AGREEMENT_MIN", 0.999)

    real_train = runner.train

    def other_model(model, *args, **kwargs):   # a retraining that gives another model altogether
        result = real_train(model, *args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        return result

    wipe()
    monkeypatch.setattr(runner, "train", other_model)
    rc, err = derived("shift", src, "--to", "imagenette-c")
    assert rc == 2 and "nor a copy trained again from its recipe" in err
    assert "delete it from the cache to train it again" in err, err   # same CPU model: training again may help
    assert len([r for _, r in load_records(results, "shift")]) == 1
    # the record was trained on another CPU model: training again here gives the same copy, so it is not advised
    from ccbench.common import provenance
    monkeypatch.setattr(provenance, "cpu_model", lambda: "Another CPU")
    rc, err = derived("shift", src, "--to", "imagenette-c")
    assert rc == 2 and "this machine is 'Another CPU'" in err and "measure on a machine like the record's" in err, err
    assert "delete it from the cache" not in err and "--accept-other-cpu-copy" in err
    # accepting a copy trained on another CPU model does not accept another model altogether (< 90 % agreement)
    rc, err = derived("shift", src, "--to", "imagenette-c", "--accept-other-cpu-copy")
    assert rc == 2 and "nor a copy trained again on another CPU model" in err, err
    assert len([r for _, r in load_records(results, "shift")]) == 1

    # a faithful copy trained on another CPU model, simulated by bars above its agreement: refused without the
    # flag, accepted with it as another draw of the recipe, and said so in its record and the track section
    monkeypatch.setattr(runner, "train", real_train)
    wipe()
    monkeypatch.setattr(from_record, "PREDICTION_AGREEMENT_MIN", 1.01)
    monkeypatch.setattr(from_record, "RETRAINED_AGREEMENT_MIN", 1.005)
    rc, err = derived("shift", src, "--to", "imagenette-c")
    assert rc == 2 and "--accept-other-cpu-copy" in err, err
    rc, err = derived("shift", src, "--to", "imagenette-c", "--accept-other-cpu-copy")
    assert rc == 0 and "accepted as another draw of the recipe" in err, err
    [copy] = [r for _, r in load_records(results, "shift") if r["source"]["trained_again"]]
    assert copy["source"]["other_cpu"] == {"record_cpu": src["hardware"]["cpu"], "copy_cpu": "Another CPU",
                                           "copy_score": src["metrics"]["main_score"]["value"]}
    assert copy["hardware"]["cpu"] == "Another CPU"
    [line] = [x for x in trained_again_lines(load_records(results, None)) if "imagenette," in x]
    assert line.endswith(f"trained on Another CPU (the record on {src['hardware']['cpu']}): another draw of its recipe)")


def test_a_copy_from_another_cpu_must_score_within_its_records_interval(monkeypatch):
    """The second condition on a copy trained on another CPU model: its score on the record's eval split lies in
    the record's 95 % interval (a model that agrees on >= 90 % yet scores elsewhere is refused)."""
    from types import SimpleNamespace

    from ccbench.common import provenance
    from ccbench.common.errors import UserError
    from ccbench.drivers.from_record import _accept_other_cpu_copy

    monkeypatch.setattr(provenance, "cpu_model", lambda: "Intel(R) Xeon(R) Processor")
    record = {"id": "ab" * 32, "seed": 3, "hardware": {"cpu": "AMD EPYC"},
              "metrics": {"main_score": {"name": "accuracy", "value": 84.6, "ci95": [82.2, 87.0]}}}

    def copy_scoring(value):
        work = SimpleNamespace(scores=lambda logits, labels, seed: {"main_score": {"value": value, "seed": seed}})
        return SimpleNamespace(record=record, work=work)

    ev = SimpleNamespace(logits=None, labels=None)
    assert _accept_other_cpu_copy(copy_scoring(83.0349), ev, 0.961) == {
        "record_cpu": "AMD EPYC", "copy_cpu": "Intel(R) Xeon(R) Processor", "copy_score": 83.035}
    with pytest.raises(UserError, match=r"scores 81\.90, outside the record's 95 % interval \[82\.20, 87\.00\]"):
        _accept_other_cpu_copy(copy_scoring(81.9), ev, 0.961)
    del record["metrics"]["main_score"]["ci95"]
    with pytest.raises(UserError, match="holds no 95 % interval"):
        _accept_other_cpu_copy(copy_scoring(84.6), ev, 0.961)


def test_module_reuse_and_routing_shift_by_hand():
    from ccbench.measurement.routing import module_reuse, routing_shift

    src = np.array([[[[0], [0], [1], [2]]]])          # [S=1, L=1, N=4, K=1]: expert 0 takes half
    tgt = np.array([[[[3], [3], [0], [-1]]]])         # one dropped pick
    reuse = module_reuse(src, tgt, num_experts=4, k=1)
    assert reuse["layers"][0] == {"top_experts": [0], "source_share": 0.5, "target_share": round(1 / 3, 4)}
    same = routing_shift(src.repeat(10, 0), src.repeat(10, 0), num_experts=4)
    assert same["layers"][0]["js_bits"] == 0.0 and same["layers"][0]["domain_nmi_raw"] == 0.0
    apart = routing_shift(np.zeros((5, 1, 3, 1), int), np.ones((5, 1, 3, 1), int), num_experts=2)
    assert apart["layers"][0]["js_bits"] == 1.0 and apart["layers"][0]["domain_nmi_raw"] == pytest.approx(1.0)


def test_review_readers_keep_quoted_newlines_and_tabs(tmp_path):
    from ccbench.data.text_data import read_jsonl, read_sentence_label_tsv

    tsv = tmp_path / "all.tsv"
    tsv.write_text('sentence\tlabel\n"Great\n\tbook, said ""me"""\t1\nbad\t0\n', encoding="utf-8")
    assert read_sentence_label_tsv(tsv, "all") == [("all-0", ('Great\n\tbook, said "me"',), 1), ("all-1", ("bad",), 0)]
    jl = tmp_path / "test.jsonl"
    jl.write_text('{"id": "test/neg/0_2.txt", "label": 0, "text": "a\\tb"}\n', encoding="utf-8")
    assert read_jsonl(jl) == [("test/neg/0_2.txt", ("a\tb",), 0)]


def test_stratified_subset_is_fixed_and_balanced():
    from ccbench.common.specs import SubsetSpec
    from ccbench.data.shift_data import stratified_subset

    ids = [f"r{i}" for i in range(60)]
    labels = torch.tensor([0] * 40 + [1] * 20)
    a = stratified_subset(ids, labels, SubsetSpec(per_class=10, seed=0))
    # the same examples in another file order: the same examples are chosen
    order = torch.randperm(60, generator=torch.Generator().manual_seed(5))
    b = stratified_subset([ids[i] for i in order], labels[order], SubsetSpec(per_class=10, seed=0))
    assert {ids[i] for i in a.tolist()} == {ids[order[i]] for i in b.tolist()}
    assert len(set(a.tolist())) == 20
    assert (labels[a] == 0).sum() == 10 and (labels[a] == 1).sum() == 10
    assert not torch.equal(a, stratified_subset(ids, labels, SubsetSpec(per_class=10, seed=1)))


@pytest.mark.realdata
def test_real_shift_targets_have_the_documented_sizes():
    from conftest import real_data_root

    from ccbench.common import catalog
    from ccbench.data.shift_data import text_conditions

    root = real_data_root()
    if root is None or not (root / "imdb" / "test.jsonl").exists():
        pytest.skip("needs CCBENCH_DATA with imdb/ and amazon_multidomain/")
    [imdb] = text_conditions(catalog.tasks().get("imdb"), str(root)).values()
    assert len(imdb) == 2000 and int(imdb.labels.sum()) == 1000
    [books] = text_conditions(catalog.tasks().get("amazon-books"), str(root)).values()
    assert len(books) == 2000 and int(books.labels.sum()) == 1000


def test_derived_records_keep_the_source_runs_grid_targets():
    """A shift or transfer record of a grid run carries its ``method.grid``, so that its seeds (each calibrated to
    its own knob value) share one row; a run off the grid adds no key."""
    from types import SimpleNamespace

    from ccbench.drivers.from_record import method_fields
    from ccbench.reporting.record_schema import Method

    grid = [{"target": 50.0, "reached": 49.8, "marked": False}]
    knob = {"name": "threshold", "value": 0.42, "direction": "none", "chosen_by": "grid"}
    method = {"name": "early-exit", "config": {}, "knob": knob, "grid": grid}
    rm = SimpleNamespace(record={"method": method}, meta={"family": "depth", "paper": "p"})
    fields = method_fields(rm)
    assert fields["grid"] == grid
    assert Method.model_validate(fields).row_label() == "grid 50 %"
    off = SimpleNamespace(record={"method": {k: v for k, v in method.items() if k != "grid"}}, meta=rm.meta)
    assert "grid" not in method_fields(off, paper=True)

def test_transfer_table_shows_compute_per_protocol_and_no_nan_reuse():
    from ccbench.reporting.shift_tables import transfer_markdown

    def row(method, protocol, score, gain, pct, reuse=None, decision=False):
        return {"budget": "cpu", "source": "imagenette-a", "target": "imagenette-b", "method": method,
                "knob": "-" if method == "dense" else "k=1", "protocol": protocol, "score": score, "gain": gain,
                "dense_pct": pct, "reuse": reuse, "reuse_source": None if reuse is None else 0.168,
                "class_nmi": None if reuse is None else 0.016, "has_decision": decision, "id": method[:4]}

    df = pd.DataFrame([row("dense", "head-only", 52.6, 0.0, 100.0), row("dense", "full", 66.5, 0.0, 100.0),
                       row("moe-topk", "router-only", 54.3, 1.7, 89.2, 0.142, True),
                       row("moe-topk", "full", 67.7, 1.2, 90.0, 0.143, True)])
    table = transfer_markdown(df)
    assert "nan" not in table
    moe = next(line for line in table.splitlines() if line.startswith("| moe-topk"))
    assert "54.30 (+1.70) @89%" in moe and "67.70 (+1.20) @90%" in moe and "0.143 (0.168)" in moe
    cells = [c.strip() for c in moe.strip("|").split("|")]
    assert cells[2] == cells[4] == "-"  # head-only and routers-frozen not run: '-', not 'n/a'


def test_leaderboard_admits_every_text_task_by_its_encoder():
    from ccbench.reporting.leaderboard import _is_text

    assert all(_is_text(t) for t in ("sst2", "imdb", "amazon-books", "amazon-kitchen"))
    assert not any(_is_text(t) for t in ("imagenette", "imagenette-c", "imagenette-a"))
