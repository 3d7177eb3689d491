"""`ccbench` end to end on a tiny image folder the test writes, and every bad input."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_drawn as _assert_drawn
from conftest import write_tiny_imagenette

from ccbench.cli import main
from record_helpers import bypass_validation_gate


def _records(results: Path):
    return sorted(results.rglob("*.json"))


def test_smoke_run_end_to_end(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    for method in ("dense", "avit"):
        rc = main(["run", "--method", method, "--budget", "smoke", "--data-dir", str(tiny_data),
                   "--results-dir", str(results), "--quiet"])
        assert rc == 0
    paths = _records(results)
    assert [p.parent.name for p in paths] == ["avit", "dense"]
    avit = json.loads(paths[0].read_text())
    dense = json.loads(paths[1].read_text())
    assert avit["backbone"]["sha256"] == dense["backbone"]["sha256"]  # one shared backbone
    assert avit["budget"]["consumed"]["samples"] == dense["budget"]["consumed"]["samples"] == 128
    assert avit["method"]["knob"]["name"] == "threshold" and avit["method"]["calibration_sweep"]
    m = dense["metrics"]
    assert m["n_eval"] == 20 and 0 <= m["top1"] <= 100
    assert m["top1_ci95"][0] <= m["top1"] <= m["top1_ci95"][1]
    assert m["useful_fraction_of_dense"] == 1.0
    assert m["executed_over_useful"]["batch1"] == 1.0 and not m["flag_executed_exceeds_useful"]
    assert m["latency"]["batch1"]["speedup"] > 0 and m["latency"]["batchN"]["batch_size"] == 4
    assert avit["metrics"]["executed_over_useful"]["batch1"] == 1.0  # removal: nothing masked
    for key in ("git", "hardware", "date", "wall_s", "schema_version", "id"):
        assert key in avit
    assert paths[0].with_name(paths[0].name.replace(".json", ".samples.npz")).exists()

    capsys.readouterr()
    assert main(["table", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "| imagenette | smoke    | avit" in out and "bootstrap" in out
    assert main(["table", "--results-dir", str(results), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("task,budget,method")
    board = tmp_path / "lb" / "README.md"
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(board)]) == 0
    text = board.read_text()
    assert "do not edit by hand" in text and "Not ranked (fail `ccbench validate`" in text  # smoke: a subset of val
    from ccbench.reporting.validation import validate_record

    for path in paths:  # dense and avit, measured by `ccbench run`: their audit and determinism evidence holds
        verdicts = {c.name: c for c in validate_record(path)}
        assert all(verdicts[k].passed for k in ("record-hash", "audit-b1", "audit-bN", "determinism", "budget")), \
            [c.line() for c in verdicts.values()]
        assert not verdicts["eval-split"].passed          # the smoke tier evaluates 64 samples of val


def test_rerun_reuses_the_fine_tuned_model_and_knob_sweep(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    args = ["run", "--method", "avit", "--budget", "smoke", "--data-dir", str(tiny_data),
            "--results-dir", str(results), "--quiet"]
    assert main(args) == 0
    assert main(args + ["--knob", "threshold=0.5,0.99"]) == 0
    err = capsys.readouterr().err
    assert "reusing the fine-tuned model" in err
    recs = [json.loads(p.read_text()) for p in _records(results)]
    user_values = [r["method"]["knob"]["value"] for r in recs if r["method"]["knob"]["chosen_by"] == "user"]
    assert sorted(user_values) == [0.5, 0.99]


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "avitt", "--budget", "smoke"], "did you mean 'avit'"),
    (["run", "--method", "avit", "--budget", "smok"], "did you mean 'smoke'"),
    (["run", "--method", "avit", "--task", "imagenet", "--budget", "smoke"], "did you mean 'imagenette'"),
    (["run", "--method", "avit", "--budget", "smoke", "--knob", "keep=0.5"], "knob is 'threshold'"),
])
def test_bad_names_exit_2_with_suggestion(argv, message, isolated_cache, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_data_says_where_it_looked(isolated_cache, tmp_path, monkeypatch, capsys):
    assert main(["run", "--method", "dense", "--budget", "smoke", "--data-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nope" / "imagenette" / "train") in err and "CCBENCH_DATA" in err
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "--method", "dense", "--budget", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "$CCBENCH_DATA" in err and "hub" in err


def test_unreadable_image_names_its_path(isolated_cache, tmp_path, capsys):
    root = write_tiny_imagenette(tmp_path / "data", train_per_class=2, val_per_class=1, px=16)
    bad = root / "imagenette" / "train" / "n01440764" / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    assert main(["pretrain", "--budget", "smoke", "--data-dir", str(root), "--quiet"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_interrupt_leaves_no_record(tiny_data, isolated_cache, tmp_path, monkeypatch, capsys):
    import ccbench.measurement.measure

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ccbench.measurement.measure, "interleaved_latency", boom)
    results = tmp_path / "results"
    rc = main(["run", "--method", "dense", "--budget", "smoke", "--data-dir", str(tiny_data),
               "--results-dir", str(results), "--quiet"])
    assert rc == 130
    written = [p for p in results.rglob("*") if p.is_file()] if results.exists() else []
    assert written == []


def test_ls_prints_metadata(capsys):
    assert main(["ls", "methods"]) == 0
    out = capsys.readouterr().out
    assert "| avit" in out and "threshold (lower = less compute)" in out and "Yin et al. 2022" in out


def test_avit_masked_evaluates_avit_and_is_flagged(tiny_data, isolated_cache, tmp_path, capsys):
    import numpy as np

    from ccbench.reporting.records import load_samples

    results = tmp_path / "results"
    base = ["--budget", "smoke", "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"]
    # on a fresh cache avit-masked trains avit's model first (nothing to check it against yet) ...
    assert main(["run", "--method", "avit-masked", "--knob", "threshold=0.5"] + base[:-1]) == 0
    err = capsys.readouterr().err
    assert "avit's fine-tuned model is not in the cache: training it first" in err
    assert "no record of avit's model" in err
    # ... which avit's own run then reuses
    assert main(["run", "--method", "avit", "--knob", "threshold=0.5"] + base[:-1]) == 0
    assert "reusing the fine-tuned model" in capsys.readouterr().err
    [avit_path] = (results / "smoke" / "imagenette" / "avit").glob("*.json")
    [masked_path] = (results / "smoke" / "imagenette" / "avit-masked").glob("*.json")
    avit, masked = json.loads(avit_path.read_text()), json.loads(masked_path.read_text())
    a, m = load_samples(avit_path), load_samples(masked_path)
    assert np.array_equal(a["pred"], m["pred"])  # identical decisions and predictions
    assert np.array_equal(a["trace.tokens_per_block"], m["trace.tokens_per_block"])
    assert masked["metrics"]["useful_gmacs"] == avit["metrics"]["useful_gmacs"]
    assert masked["metrics"]["executed_gmacs"]["batch1_per_sample"]["mean"] == masked["metrics"]["dense_gmacs"]
    if avit["metrics"]["useful_fraction_of_dense"] < 0.98:
        assert masked["metrics"]["flag_executed_exceeds_useful"]
        assert not avit["metrics"]["flag_executed_exceeds_useful"]
    assert masked["budget"]["consumed"]["samples"] == avit["budget"]["consumed"]["samples"]
    capsys.readouterr()
    assert main(["table", "--results-dir", str(results)]) == 0


def test_sweep_from_one_model_and_retraining_knob(tiny_data, isolated_cache, tmp_path, capsys):
    """ToMe sweeps r on dense's one fine-tuned model; static-res trains one model per resolution."""
    results = tmp_path / "results"
    common = ["--budget", "smoke", "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"]
    assert main(["run", "--method", "dense", *common]) == 0
    assert main(["run", "--method", "tome", "--knob", "r=0,2", *common]) == 0
    tome = [json.loads(p.read_text()) for p in _records(results / "smoke" / "imagenette" / "tome")]
    dense = json.loads(_records(results / "smoke" / "imagenette" / "dense")[0].read_text())
    by_r = {r["method"]["knob"]["value"]: r["metrics"] for r in tome}
    assert sorted(by_r) == [0, 2]
    assert by_r[0]["top1"] == dense["metrics"]["top1"] and by_r[0]["useful_fraction_of_dense"] == 1.0
    assert by_r[2]["useful_fraction_of_dense"] < 1.0
    assert all(r["budget"]["consumed"]["label"].startswith("evaluates dense") for r in tome)
    assert main(["run", "--method", "static-res", "--knob", "resolution=24,16", *common]) == 0
    static = [json.loads(p.read_text()) for p in _records(results / "smoke" / "imagenette" / "static-res")]
    assert sorted(r["method"]["config"]["resolution"] for r in static) == [16, 24]
    assert all(r["budget"]["consumed"]["samples"] == 128 for r in static)  # each trained under the budget
    assert {r["metrics"]["useful_gmacs"]["mean"] for r in static}.__len__() == 2


def test_train_only_then_cost_with_method_units(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--method", "evit", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--quiet", "--train-only"]) == 0
    assert not results.exists() or not _records(results)
    assert list((isolated_cache / "runs").glob("smoke-imagenette-evit-*.safetensors"))
    assert main(["cost", "--budget", "cpu", "--method", "evit"]) == 0
    assert "evit_fused_token" in capsys.readouterr().out


def test_width_method_record_has_routing_and_plots(tiny_data, isolated_cache, tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    assert main(["run", "--method", "moe-topk", "--knob", "k=1,2", "--budget", "smoke", "--data-dir",
                 str(tiny_data), "--results-dir", str(results), "--quiet"]) == 0
    paths = _records(results)
    records = [json.loads(p.read_text()) for p in paths]
    for r in records:
        routing = r["metrics"]["routing"]
        assert len(routing["layers"]) == len(r["method"]["config"]["moe_blocks"])
        for layer in routing["layers"]:   # utilization: share of experts with >= 1 % of the picks
            assert layer["utilization"] == round(float(np.mean(np.array(layer["load"]) >= 0.01)), 4)
            assert sum(layer["load"]) == pytest.approx(1.0, abs=1e-4)
        assert routing["mean_over_layers"]["utilization"] == round(
            float(np.mean([layer["utilization"] for layer in routing["layers"]])), 4)
        assert r["metrics"]["executed_over_useful"]["batch1"] == 1.0
    by_k = {r["method"]["knob"]["value"]: r["metrics"] for r in records}
    assert by_k[2]["active_params_per_token"] > by_k[1]["active_params_per_token"]
    capsys.readouterr()
    assert main(["plot", "routing", str(paths[0]), "--out", str(tmp_path / "r.png")]) == 0
    _assert_drawn(tmp_path / "r.png")
    assert main(["table", "--results-dir", str(results)]) == 0
    assert "NMI" in capsys.readouterr().out
    # admitted rows (pretend the smoke backbone is published and the smoke tier, which subsets its eval
    # split, admissible) get a routing heatmap on the leaderboard
    import ccbench.reporting.leaderboard as lb
    monkeypatch.setattr(lb, "published_backbone_hashes",
                        lambda: {("smoke", "imagenette"): records[0]["backbone"]["sha256"]})
    monkeypatch.setattr(lb, "tier_refusal", lambda budget, versions, modality="image": None)
    bypass_validation_gate(monkeypatch)
    board = tmp_path / "lb" / "README.md"
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(board)]) == 0
    assert "![routing](smoke-imagenette-routing.png)" in board.read_text()
    assert (board.parent / "smoke-imagenette-routing.png").exists()


def test_plot_routing_refuses_a_record_without_routing(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--method", "dense", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--quiet"]) == 0
    assert main(["plot", "routing", str(_records(results)[0])]) == 2
    assert "no routing trace" in capsys.readouterr().err


def test_text_task_with_an_image_method_is_refused_in_one_line(isolated_cache, capsys):
    assert main(["run", "--method", "tome", "--task", "sst2", "--budget", "smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not apply to text tasks" in err[0]


def _skip_blocks_1_and_3(monkeypatch):
    """Layer-skip models whose gates for blocks 1 and 3 start on "skip" (bias (0, 3)), the others on
    "run": the smoke tier's 4 training steps cannot move a gate from its start (a 3-logit gap), so
    without this a smoke layer-skip run skips nothing."""
    from ccbench.baselines.layer_skip import LayerSkip

    init = LayerSkip.__init__

    def skipping(self, *args, **kwargs):
        init(self, *args, **kwargs)
        for i in (1, 3):
            self.gates[i].bias.data = torch.tensor([0.0, 3.0])
    monkeypatch.setattr(LayerSkip, "__init__", skipping)


def test_depth_methods_record_exit_diagnostics(tiny_data, isolated_cache, tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    common = ["--budget", "smoke", "--data-dir", str(tiny_data), "--results-dir", str(results), "--quiet"]
    assert main(["run", "--method", "early-exit", "--knob", "threshold=0,1.01", *common]) == 0
    assert main(["run", "--method", "patience", "--knob", "patience=1", *common]) == 0
    _skip_blocks_1_and_3(monkeypatch)
    assert main(["run", "--method", "layer-skip", "--knob", "target=0.5", *common]) == 0
    records = {(json.loads(p.read_text())["method"]["name"], json.loads(p.read_text())["method"]["knob"]["value"]):
               json.loads(p.read_text()) for p in _records(results)}
    first, last = records[("early-exit", 0)]["metrics"], records[("early-exit", 1.01)]["metrics"]
    assert first["exits"]["exit_histogram"]["0"] == first["n_eval"]           # every sample left at block 0
    assert last["exits"]["exit_histogram"][str(3)] == last["n_eval"]           # smoke backbone: 4 blocks
    assert first["useful_fraction_of_dense"] < last["useful_fraction_of_dense"]
    # exiting at the first (last) exit, the reported score is that exit's accuracy alone
    assert first["exits"]["accuracy_of_each_exit_alone"]["0"] == pytest.approx(first["top1"], abs=1e-3)
    assert last["exits"]["accuracy_of_each_exit_alone"]["3"] == pytest.approx(last["top1"], abs=1e-3)
    assert last["exits"]["overthinking_rate"] == first["exits"]["overthinking_rate"]   # a property of the heads
    assert set(last["exits"]["accuracy_of_each_exit_alone"]) == {"0", "1", "2", "3"}
    pat = records[("patience", 1)]
    assert pat["budget"]["consumed"]["label"].startswith("evaluates early-exit")
    skip = records[("layer-skip", 0.5)]
    assert skip["method"]["config"]["target"] == 0.5
    # 2 of the 4 blocks skipped for every sample: the record says so (a run that skipped nothing has
    # a useful fraction >= 1, its gates' cost on top of dense); embedding and head keep it above 1/2
    assert 0.5 < skip["metrics"]["useful_fraction_of_dense"] < 0.75
    assert main(["table", "--results-dir", str(results)]) == 0                # every record verifies from disk
