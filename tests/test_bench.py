"""``ccbench bench`` (issue 18): argument checking and one tiny timing pass (no speed is asserted)."""
import pytest

from ccbench.cli import main
from ccbench.common.errors import UserError
from ccbench.drivers.bench import BenchRow, format_row, parse_points


def test_parse_points():
    assert parse_points(["tome=3,5", "evit=0.5"]) == {"tome": [3.0, 5.0], "evit": [0.5]}
    with pytest.raises(UserError, match="METHOD=V1,V2"):
        parse_points(["tome"])
    with pytest.raises(UserError, match="METHOD=V1,V2"):
        parse_points(["tome=a"])


def test_bench_refuses_bad_arguments(capsys):
    assert main(["bench", "--batch-sizes", "0"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err
    assert main(["bench", "--method", "no-such-method", "--calls", "1"]) == 2


def test_format_row_marks_an_unreliable_timing():
    row = BenchRow("tome", "r=3", "fresh", 0.5, {1: {"speedup": 1.2, "ideal": 2.0, "efficiency": 0.6,
                                                      "method_ms": 1.0, "dense_ms": 1.2, "ok": False}})
    line = format_row(row, [1])
    assert "0.600?" in line and "tome" in line


def test_bench_times_a_method_against_dense(capsys):
    assert main(["bench", "--method", "static-depth", "--point", "static-depth=6", "--batch-sizes", "1",
                 "--calls", "2", "--warmup", "0", "--fresh"]) == 0
    out = capsys.readouterr().out
    assert "static-depth" in out and "blocks=6" in out and "ccbench dense vs timm" in out
    line = next(l for l in out.splitlines() if l.startswith("static-depth"))
    assert float(line.split()[3]) == pytest.approx(0.5, abs=0.02)   # 6 of 12 blocks: about half the MACs


def test_profile_splits_the_wall_time_into_kinds_of_operator():
    """The kinds (unseen time included) add up to the forward's wall time; a linear layer's time is
    mostly a matmul, and a gather shows as data movement."""
    import torch

    from ccbench.drivers.bench_profile import format_profiles, profile_forward

    lin = torch.nn.Linear(256, 256)
    model = lambda x: torch.gather(lin(x), 1, torch.zeros_like(x, dtype=torch.long))  # noqa: E731
    prof = profile_forward(model, [torch.randn(64, 256) for _ in range(5)], "toy", warmup=1)
    assert sum(prof.kinds.values()) == pytest.approx(prof.wall_ms, rel=1e-6)
    assert prof.kinds["matmul"] > 0 and prof.kinds["data movement"] > 0
    assert any("addmm" in name or "linear" in name for name, _, _ in prof.top)
    table = format_profiles([prof], depth=2)
    assert "matmul" in table and "toy b64" in table and "total" in table


def test_bench_profile_prints_dense_and_the_method(capsys):
    assert main(["bench", "--profile", "--method", "static-depth", "--point", "static-depth=6",
                 "--batch-sizes", "1", "--calls", "2", "--fresh"]) == 0
    out = capsys.readouterr().out
    assert "== static-depth blocks=6" in out and "dense b1" in out and "static-depth b1" in out


def test_bench_loads_the_model_run_trained_for_that_point(tiny_data, isolated_cache, tmp_path):
    """Cached weights are found by the store's run name of the point's build settings, so a knob that
    retrains (static-depth's blocks) gets its own model, and a point nobody trained gets none."""
    import dataclasses

    import torch

    from ccbench.common import catalog
    from ccbench.common.safefile import load_tensors
    from ccbench.drivers.bench import BenchSetting, _trained_weights
    from ccbench.training.model_store import store_dir
    from ccbench.training.workload import make_workload

    assert main(["run", "--method", "static-depth", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(tmp_path / "results"), "--knob", "blocks=1", "--train-only", "--quiet"]) == 0
    [cached] = store_dir().glob("smoke-imagenette-static-depth-s0-*.safetensors")
    task, tier = catalog.tasks().get("imagenette"), catalog.budgets().get("smoke")
    work = make_workload(task, tier, str(tiny_data), 0, None, False)
    st = BenchSetting(tier, task, work.backbone, None, torch.zeros(0), "", None, ["static-depth"], 0, work)
    meta = catalog.methods().metadata("static-depth")
    state, expected = _trained_weights("static-depth", meta, 1, st), load_tensors(cached, "")[0]
    assert state is not None and state.keys() == expected.keys()
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    assert _trained_weights("static-depth", meta, 2, st) is None          # blocks=2 was never trained
    assert _trained_weights("static-depth", meta, 1, dataclasses.replace(st, work=None)) is None   # no data
