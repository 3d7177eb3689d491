"""The compute grid (ccbench.training.grid): knob values chosen on calibration to land on 25/50/75 % of
dense; refinement between sweep values; out-of-reach targets marked; `ccbench run --grid` on a tiny model
records target, reached and mark, for a sweepable knob and for one that retrains."""
from __future__ import annotations

import json

import pytest

from ccbench.cli import main
from ccbench.training.grid import calibrate_grid, domain_step, grid_entries, parse_grid, values_of
from ccbench.training.knobs import CalibrationPoint


def _linear(calls):
    """A knob whose share of dense is the knob itself (0-1), never below 0.3; score rises with compute."""
    def measure(v):
        calls.append(v)
        return CalibrationPoint(v, 50 + 30 * v, max(v, 0.3))
    return measure


def test_sweep_values_that_hit_the_targets_need_no_refinement():
    calls = []
    grid, measured = calibrate_grid(_linear(calls), [0.25, 0.5, 0.76, 0.9], [25, 50, 75])
    assert calls == [0.25, 0.5, 0.76, 0.9]                   # nothing beyond the sweep
    # 0.25 measures at the 0.3 floor: 5 points off, out of reach, marked; 0.76 is within 2 points of 75
    assert [(g.target, g.point.knob, g.reached, g.marked) for g in grid] == [
        (25, 0.25, 30.0, True), (50, 0.5, 50.0, False), (75, 0.76, 76.0, False)]
    assert len(measured) == 4


def test_a_target_between_sweep_values_is_bisected_to_within_tolerance():
    calls = []
    grid, _ = calibrate_grid(_linear(calls), [0.4, 0.9], [63])
    assert abs(grid[0].reached - 63) <= 2 and not grid[0].marked
    assert calls[:2] == [0.4, 0.9] and calls[2] == pytest.approx(0.65) and len(calls) <= 2 + 6


def test_integer_knobs_try_the_integers_between():
    share = {0: 1.0, 1: 0.9, 2: 0.8, 3: 0.74, 4: 0.65, 5: 0.58, 6: 0.5}   # ToMe-like: higher r, less compute
    calls = []

    def measure(r):
        calls.append(r)
        return CalibrationPoint(r, 70.0 - r, share[r])

    grid, _ = calibrate_grid(measure, [0, 6], [75], integer=True)
    assert grid[0].point.knob == 3 and not grid[0].marked
    assert calls == [0, 6, 3]                                   # the middle integer first, then done


def test_one_value_serving_several_targets_is_measured_once():
    grid, _ = calibrate_grid(lambda v: CalibrationPoint(v, 60.0, 0.6 + 0.3 * v), [0.0, 1.0], [25, 50, 75])
    # 25 and 50 % are out of reach (the cheapest share is 60 %): one value, two marked entries; 75 % is bisected
    assert values_of(grid) == [0.0, 0.5]
    assert [(e["target"], e["reached"], e["marked"]) for e in grid_entries(grid, 0.0)] == [(25, 60.0, True),
                                                                                          (50, 60.0, True)]
    assert [(e["target"], e["reached"], e["marked"]) for e in grid_entries(grid, 0.5)] == [(75, 75.0, False)]


def test_a_target_beyond_the_sweep_is_followed_within_the_knobs_domain():
    """The sweep is where calibration starts: a target below every measured share is followed past the sweep's
    end (halving a keep ratio towards its open minimum), then bisected; where the share stops moving the
    nearest point is taken, marked."""
    keep = domain_step({"direction": "lower = less compute", "minimum": 0, "exclusive_minimum": True, "maximum": 1})
    calls = []
    grid, _ = calibrate_grid(_linear(calls), [0.5, 0.9], [35, 10], step=keep)
    assert calls[:3] == [0.5, 0.9, 0.25] and not grid[0].marked and abs(grid[0].reached - 35) <= 2
    # 10 % lies under the 0.3 floor: one more halving measures the same share, and the search stops there
    assert grid[1].marked and grid[1].reached == 30.0 and calls[-1] == 0.125 and len(calls) <= 2 + 6 + 1
    # a value the model refuses ends the search there
    def refusing(v):
        if v < 0.3:
            raise ValueError("keep ratio too small for this model")
        return _linear([])(v)
    refused, _ = calibrate_grid(refusing, [0.5, 0.9], [35], step=keep)
    assert refused[0].marked and refused[0].reached == 50.0
    # without a step the sweep's end is where it stops (the behaviour before: 35 % marked at 50 %)
    plain, _ = calibrate_grid(_linear([]), [0.5, 0.9], [35])
    assert plain[0].marked and plain[0].reached == 50.0


def test_an_integer_knob_with_an_open_end_doubles_until_it_brackets_the_target():
    share = lambda r: max(1.0 - 0.07 * r, 0.1)   # ToMe-like: higher r, less compute, a floor at 10 %  # noqa: E731
    calls = []

    def measure(r):
        calls.append(r)
        return CalibrationPoint(r, 70.0 - r, share(r))

    tome = domain_step({"direction": "higher = less compute", "integer": True, "minimum": 0})
    grid, _ = calibrate_grid(measure, [0, 1, 2, 3, 4, 5], [25], integer=True, step=tome)
    # past r = 5 (65 %): r = 10 (30 %), r = 20 (the floor) brackets 25 %, then the integers between: r = 11, 23 %
    assert calls[6:8] == [10, 20] and grid[0].point.knob == 11 and not grid[0].marked
    assert len(calls) <= 6 + 6


def test_parse_grid_refuses_out_of_range():
    assert parse_grid(None) is None and parse_grid("75,25") == [25.0, 75.0]
    for bad in ("0", "100", "abc", "25,"):
        with pytest.raises(Exception, match="--grid"):
            parse_grid(bad)


def _records(results):
    return [json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))]


def test_run_grid_on_a_tiny_model_records_target_reached_and_mark(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--method", "evit", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--grid", "40,70", "--quiet"]) == 0
    records = _records(results)
    entries = [e for r in records for e in r["method"]["grid"]]
    assert sorted(e["target"] for e in entries) == [40.0, 70.0]
    sweep = {p["knob"]: p["useful_fraction"] for r in records for p in r["method"]["calibration_sweep"]}
    for r in records:
        assert r["method"]["knob"]["chosen_by"].startswith("grid")
        for e in r["method"]["grid"]:
            assert e["reached"] == pytest.approx(100 * sweep[r["method"]["knob"]["value"]], abs=0.01)
            assert e["marked"] == (abs(e["reached"] - e["target"]) > 2)
            # no other measured value is nearer the target
            assert all(abs(100 * f - e["target"]) >= abs(e["reached"] - e["target"]) - 1e-6 for f in sweep.values())


def test_run_grid_for_a_retraining_knob_trains_the_nearest_candidates(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--method", "static-depth", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--grid", "25,50,75", "--knob", "blocks=1,2,3", "--quiet"]) == 0
    by_target = {e["target"]: (r["method"]["knob"]["value"], e) for r in _records(results) for e in r["method"]["grid"]}
    assert [by_target[t][0] for t in (25.0, 50.0, 75.0)] == [1, 2, 3]   # of a 4-block backbone
    for value, e in by_target.values():
        assert 100 * value / 4 - 10 < e["reached"] < 100 * value / 4 + 10  # blocks plus embedding and head


def test_grid_is_refused_for_a_method_without_a_knob(isolated_cache, capsys):
    assert main(["run", "--method", "dense", "--budget", "smoke", "--grid", "25"]) == 2
    assert "no knob" in capsys.readouterr().err


def test_run_grid_for_a_knob_that_is_the_share_trains_at_the_targets(tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--method", "layer-skip", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--grid", "50", "--quiet"]) == 0
    [record] = _records(results)
    assert record["method"]["knob"]["value"] == 0.5 and record["method"]["knob"]["chosen_by"] == "grid: the target share itself"
    [entry] = record["method"]["grid"]
    # what the trained model reached on calibration is recorded, and marked when off by more than 2 points
    assert entry["target"] == 50.0 and entry["marked"] == (abs(entry["reached"] - 50.0) > 2)
    assert 0 < entry["reached"] <= 110   # gates cost a little: a model that skips nothing exceeds 100 %


def test_a_grid_for_a_knob_set_in_training_trains_one_model_per_target(tiny_data, isolated_cache, tmp_path, capsys):
    """A-ViT's threshold only trims the compute its halting prior trained towards: its grid trains one model per
    target (the prior's depth that share of the blocks), calibrates the threshold on it, and says so per entry;
    avit-masked then evaluates the model trained for its target."""
    results = tmp_path / "results"
    assert main(["run", "--method", "avit", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--grid", "30,70", "--quiet"]) == 0
    records = _records(results)
    by_target = {e["target"]: (r, e) for r in records for e in r["method"]["grid"]}
    assert sorted(by_target) == [30.0, 70.0]
    depth = {}
    for target, (r, e) in by_target.items():
        config = r["method"]["config"]
        assert config["compute_target"] == target / 100 and e["trained_for_target"] is True
        depth[target] = config["target_depth"]
        assert r["method"]["knob"]["chosen_by"].startswith("grid")
        assert e["marked"] == (abs(e["reached"] - target) > 2)
    assert depth[30.0] < depth[70.0]
    # shift and transfer rebuild each record's own model (trained towards its target), not the default one
    from ccbench.drivers.from_record import load_record_model, verify_record_model

    for target, (r, _) in by_target.items():
        rm = load_record_model(r["id"][:12], data_dir=str(tiny_data), results_dir=results, progress=False)
        assert rm.model.target_depth == depth[target] and rm.trained_file.endswith(".safetensors")
        assert verify_record_model(rm, progress=False)[1] == 1.0
    assert main(["run", "--method", "avit-masked", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(tmp_path / "masked"), "--grid", "30", "--quiet"]) == 0
    [masked] = _records(tmp_path / "masked")
    assert masked["method"]["config"]["target_depth"] == depth[30.0]
    assert masked["budget"]["consumed"]["samples"] == by_target[30.0][0]["budget"]["consumed"]["samples"] > 0


def test_per_target_models_are_named_by_their_target_even_where_the_config_omits_it(tiny_data, isolated_cache,
                                                                                    monkeypatch):
    """A plug-in whose ``method_config`` leaves ``compute_target`` out still gets one cached model per target."""
    from ccbench.baselines.avit import AViT
    from ccbench.common import catalog
    from ccbench.training.model_store import build_for_run
    from ccbench.training.workload import make_workload

    original = AViT.method_config
    monkeypatch.setattr(AViT, "method_config", lambda self: {k: v for k, v in original(self).items()
                                                             if k not in ("compute_target", "target_depth")})
    task, tier = catalog.tasks().get("imagenette"), catalog.budgets().get("smoke")
    work = make_workload(task, tier, str(tiny_data), 0, None, False)
    meta = catalog.methods().metadata("avit")
    names = {t: build_for_run("avit", meta, {"compute_target": t}, work, tier, task, 0).run_name for t in (0.3, 0.7)}
    default = build_for_run("avit", meta, {}, work, tier, task, 0).run_name
    assert len({names[0.3], names[0.7], default}) == 3


def test_a_new_method_version_never_reuses_a_model_an_earlier_implementation_trained(tiny_data, isolated_cache,
                                                                                    monkeypatch):
    """The cached model's name carries the method's version on the modality where it is above 1 (so a model the
    earlier implementation trained is not loaded into the new one); at version 1 names stay as they were."""
    from ccbench.common import catalog
    from ccbench.training import model_store
    from ccbench.training.workload import make_workload

    task, tier = catalog.tasks().get("imagenette"), catalog.budgets().get("smoke")
    work = make_workload(task, tier, str(tiny_data), 0, None, False)
    meta = catalog.methods().metadata("early-exit")
    v1 = model_store.build_for_run("early-exit", meta, {}, work, tier, task, 0).run_name
    ident = [model_store.build_for_run("early-exit", meta, {}, work, tier, task, 0).model.method_config(),
             work.recipe.model_dump(), work.train_settings, work.splits["train"].data_hash]
    assert v1.endswith(model_store.content_hash(ident)[:10])          # version 1: the name before versions existed
    monkeypatch.setattr(catalog, "registered_version", lambda method, modality: 2 if modality == "image" else 1)
    v2 = model_store.build_for_run("early-exit", meta, {}, work, tier, task, 0).run_name
    assert v2 != v1 and v2.rsplit("-", 1)[0] == v1.rsplit("-", 1)[0]


def test_a_source_model_missing_from_the_cache_is_trained_again_and_checked_against_its_records(
        tiny_data, isolated_cache, tmp_path, capsys, monkeypatch):
    """On a fresh machine (records held, cache empty) avit-masked trains avit's model for its target again and
    checks it against avit's record: the same model passes, a different one is refused."""
    import torch

    from ccbench.drivers import runner
    from ccbench.training.model_store import store_dir

    results = tmp_path / "results"
    base = ["--budget", "smoke", "--data-dir", str(tiny_data), "--results-dir", str(results)]
    assert main(["run", "--method", "avit", "--grid", "30", "--quiet"] + base) == 0
    [avit] = _records(results)
    for cached in store_dir().glob("*.safetensors"):
        cached.unlink()
    capsys.readouterr()
    assert main(["run", "--method", "avit-masked", "--grid", "30"] + base) == 0
    err = capsys.readouterr().err
    assert "is not in the cache: training it first" in err
    assert f"avit's model agrees with its record {avit['id'][:12]} on 100.0%" in err
    masked = [r for r in _records(results) if r["method"]["name"] == "avit-masked"]
    assert len(masked) == 1 and masked[0]["budget"]["consumed"]["samples"] == avit["budget"]["consumed"]["samples"]

    real_train = runner.train

    def other_model(model, *args, **kwargs):   # a retraining that does not reproduce the recorded model
        result = real_train(model, *args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        return result

    for cached in store_dir().glob("*.safetensors"):
        cached.unlink()
    monkeypatch.setattr(runner, "train", other_model)
    assert main(["run", "--method", "avit-masked", "--grid", "30", "--quiet",
                 "--results-dir", str(tmp_path / "other")] + base[:-2]) == 0   # nothing to check against: runs
    for cached in store_dir().glob("*.safetensors"):
        cached.unlink()
    capsys.readouterr()
    assert main(["run", "--method", "avit-masked", "--grid", "30", "--quiet"] + base) == 2
    assert "avit's cached model is not the one that wrote its record" in capsys.readouterr().err
    # the mismatching model stays cached, and is refused on load too (not only after training)
    assert main(["run", "--method", "avit-masked", "--grid", "30", "--quiet"] + base) == 2
    err = capsys.readouterr().err
    assert "training it first" not in err and "is not the one that wrote its record" in err
    assert len([r for r in _records(results) if r["method"]["name"] == "avit-masked"]) == 1
