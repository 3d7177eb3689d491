"""Bad input fails before any work, in one line that names what is wrong and what to do."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_tiny_imagenette

import ccbench.drivers.runner
from ccbench.cli import main
from ccbench.common.errors import UserError
from ccbench.data.glue import read_glue_split


def _no_training(monkeypatch):
    def train(*a, **k):
        raise AssertionError("training started before the input was checked")
    monkeypatch.setattr(ccbench.drivers.runner, "train", train)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("ccbench")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("method, knob, message", [
    ("tome", "r=0.5", "--knob r=0.5: r takes an integer >= 0"),
    ("static-depth", "blocks=2.5", "--knob blocks=2.5: blocks takes an integer >= 1"),
    ("dynamicvit", "keep_ratio=1.5", "--knob keep_ratio=1.5: keep_ratio takes a number in (0, 1]"),
    ("avit", "threshold=", "--knob threshold= has an empty value"),
    ("avit", "threshold=nan", "--knob threshold=nan: threshold takes a number in (0, 1]"),
    ("avit", "threshold=0.5,,0.9", "has an empty value"),
    ("dense", "threshold=0.9", "this method has no knob; drop --knob threshold=0.9"),
    ("early-exit", "threshold=-1", "threshold takes a number >= 0"),
])
def test_bad_knob_values_fail_before_any_work(method, knob, message, isolated_cache, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    import ccbench.training.workload

    def no_workload(*a, **k):
        raise AssertionError("data loaded before the knob was checked")
    monkeypatch.setattr(ccbench.drivers.runner, "make_workload", no_workload)
    rc = main(["run", "--method", method, "--budget", "smoke", "--knob", knob, "--results-dir", str(tmp_path / "r")])
    assert rc == 2
    assert message in _one_line_error(capsys)


def test_a_knob_the_backbone_cannot_take_fails_before_training(tiny_data, isolated_cache, tmp_path, monkeypatch,
                                                               capsys):
    # the smoke backbone has 4 blocks: 20 passes the declared domain but not the model
    _no_training(monkeypatch)
    rc = main(["run", "--method", "static-depth", "--budget", "smoke", "--knob", "blocks=20", "--data-dir",
               str(tiny_data), "--results-dir", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    assert "static-depth cannot be built with blocks=20: blocks must be an integer in [1, 4], got 20" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5"])
def test_bad_seed(seed, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--method", "avit", "--budget", "smoke", "--seed", seed])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is not an integer from 0 to 4294967295" in err


def test_run_method_checks_the_seed_too():
    with pytest.raises(UserError, match="seeds are integers from 0"):
        ccbench.drivers.runner.run_method("dense", budget="smoke", seed=-1)


def _glue(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, message", [
    ("", "train.tsv is empty"),
    ("sentence\tlabel\n", "train.tsv holds no examples"),
    ("a fine film\t1\nawful\t0\n", "the first line is 'a fine film/1', expected GLUE's sst2 header 'sentence/label'"),
    ("text\tscore\na fine film\t1\n", "the first line is 'text/score'"),
    ("sentence\tlabel\na fine film\tyes\n", "row 1 has label 'yes'"),
    ("sentence\tlabel\na fine film\n", "row 1 has 1 columns, expected at least 2"),
])
def test_bad_glue_files(text, message, tmp_path):
    with pytest.raises(UserError) as err:
        read_glue_split(_glue(tmp_path, text), "sst2", "train")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_good_glue_file_keeps_every_row(tmp_path):
    rows = read_glue_split(_glue(tmp_path, "sentence\tlabel\na fine film\t1\nawful\t0\n"), "sst2", "train")
    assert [(r.id, r.texts, r.label) for r in rows] == [("train-0", ("a fine film",), 1), ("train-1", ("awful",), 0)]


def test_zero_byte_image_is_named_without_python_reprs(isolated_cache, tmp_path, capsys):
    root = write_tiny_imagenette(tmp_path / "data", train_per_class=2, val_per_class=1, px=16)
    empty = root / "imagenette" / "train" / "n01440764" / "empty.JPEG"
    empty.write_bytes(b"")
    assert main(["pretrain", "--budget", "smoke", "--data-dir", str(root), "--quiet"]) == 2
    line = _one_line_error(capsys)
    assert f"image {empty} is empty (0 bytes); replace or delete it" in line and "0x" not in line


def test_a_class_missing_from_val_is_named(isolated_cache, tmp_path, capsys):
    import shutil

    root = write_tiny_imagenette(tmp_path / "data", train_per_class=2, val_per_class=1, px=16)
    shutil.rmtree(root / "imagenette" / "val" / "n03888257")
    rc = main(["run", "--method", "dense", "--budget", "smoke", "--data-dir", str(root), "--quiet",
               "--results-dir", str(tmp_path / "r")])
    assert rc == 2
    assert "missing class folders ['n03888257']" in _one_line_error(capsys)


def test_trained_models_are_not_reused_across_training_data(isolated_cache, tmp_path, capsys):
    """The same method, tier and backbone on a different training folder trains anew, and each
    record carries the hash of the data it was trained on."""
    small = write_tiny_imagenette(tmp_path / "small", train_per_class=3, val_per_class=1, px=16)
    large = write_tiny_imagenette(tmp_path / "large", train_per_class=5, val_per_class=1, px=16)
    backbone = tmp_path / "backbone"
    assert main(["pretrain", "--budget", "smoke", "--data-dir", str(small), "--quiet", "--out", str(backbone)]) == 0
    hashes = []
    for data in (small, large):
        results = tmp_path / f"results-{data.name}"
        assert main(["run", "--method", "dense", "--budget", "smoke", "--data-dir", str(data), "--quiet",
                     "--backbone", str(backbone), "--results-dir", str(results)]) == 0
        assert "reusing the fine-tuned model" not in capsys.readouterr().err
        [path] = sorted(results.rglob("*.json"))
        hashes.append(json.loads(path.read_text())["task"]["train_data_hash"])
    assert hashes[0] != hashes[1]


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`ccbench ls methods | head -1`: the closed pipe ends ccbench quietly."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from ccbench.cli import main; sys.exit(main())",
                             "ls", "methods"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before ccbench has written anything: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_leaderboard_out_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["leaderboard", "--results-dir", str(tmp_path / "results"),
                 "--out", str(tmp_path / "taken" / "README.md")]) == 2
    assert "is not a folder" in _one_line_error(capsys)
