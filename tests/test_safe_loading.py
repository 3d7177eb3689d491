"""Issue 23: reading a model, cache or state file never executes code.

A pickle whose ``__reduce__`` touches a marker file is planted in every place ccbench reads such a
file; the marker must never appear, and the user gets one ``UserError`` line naming the file (caches:
the file is ignored, reported and rebuilt). Plus round trips and hash stability of the conversion."""
from __future__ import annotations

import json
import pathlib
import struct
import subprocess
import sys

import pytest
import torch

from ccbench.cli import main
from ccbench.common import catalog
from ccbench.common.errors import UserError

REPO = pathlib.Path(__file__).resolve().parent.parent


class Evil:
    """Unpickling this touches ``marker``: the proof that a load executed code."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def evil(tmp_path):
    """``plant(path)`` writes an Evil pickle (``torch.save`` format) at ``path``; ``.marker`` is the
    file that appears if anything unpickles it."""
    marker = tmp_path / "EXECUTED"

    class Planter:
        def __init__(self):
            self.marker = marker

        def __call__(self, path: pathlib.Path) -> pathlib.Path:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": Evil(marker), "state_dict": Evil(marker), "meta": Evil(marker)}, path)
            return path

    planter = Planter()
    yield planter
    assert not marker.exists(), "a planted pickle was executed"


def _one_line_naming(err: UserError | str, path: pathlib.Path) -> str:
    text = str(err).strip()
    assert "\n" not in text and str(path) in text, text
    return text


def _smoke_run(tiny_data, results, method="evit", extra=()):
    return main(["run", "--method", method, "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--quiet", *extra])


# ---- backbone checkpoints ----

def test_load_backbone_refuses_a_pickle(evil, tmp_path):
    from ccbench.training.pretrain import load_backbone

    path = evil(tmp_path / "backbone.pt")
    with pytest.raises(UserError) as err:
        load_backbone(path)
    assert "scripts/convert_checkpoints.py" in _one_line_naming(err.value, path)


def test_run_with_a_pickled_backbone_exits_2_in_one_line(evil, tiny_data, isolated_cache, tmp_path, capsys):
    path = evil(tmp_path / "backbone.pt")
    assert _smoke_run(tiny_data, tmp_path / "results", "dense", ["--backbone", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err


def test_published_checkpoint_that_is_a_pickle_is_refused(evil, tmp_path, monkeypatch):
    import ccbench.reporting.leaderboard
    import ccbench.training.pretrain

    budget, task = catalog.budgets().get("smoke"), catalog.tasks().get("imagenette")
    pub = evil(tmp_path / "checkpoints" / "smoke-imagenette.safetensors")
    monkeypatch.setattr(ccbench.training.pretrain, "published_path", lambda b, t: pub)
    with pytest.raises(UserError) as err:
        ccbench.training.pretrain.find_backbone(budget, task, 0, "00" * 32)
    _one_line_naming(err.value, pub)
    # the leaderboard reads only checkpoints/manifest.json; the manifest is built from the headers
    from ccbench.reporting.manifest import manifest_from_headers

    with pytest.raises(UserError) as err:
        manifest_from_headers(pub.parent)
    _one_line_naming(err.value, pub)


@pytest.mark.parametrize("content", [b"", b"\x05\x00", struct.pack("<Q", 1 << 40) + b"{}",
                                     struct.pack("<Q", 100) + b"{}", struct.pack("<Q", 3) + b"[1]",
                                     struct.pack("<Q", 4) + b"\xff\xfe{}"])
def test_malformed_safetensors_headers_are_one_line_errors(content, tmp_path):
    from ccbench.training.pretrain import load_backbone

    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_backbone(path)
    _one_line_naming(err.value, path)


def test_safetensors_not_written_by_ccbench_are_one_line_errors(tiny_backbone, tmp_path):
    from safetensors.torch import save_file

    from ccbench.training.model_store import load_trained
    from ccbench.training.pretrain import load_backbone

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(UserError, match="no 'ccbench' metadata"):
        load_backbone(plain)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"ccbench": json.dumps({"consumed": {}})})
    with pytest.raises(UserError) as err:
        load_trained(tiny_backbone, foreign)
    assert "does not fit this model" in _one_line_naming(err.value, foreign)


def test_backbone_round_trip_keeps_the_hash(tiny_backbone, tmp_path):
    from ccbench.training.pretrain import (
        checkpoint_meta,
        load_backbone,
        save_backbone,
        weights_sha256,
    )

    path = tmp_path / "b.safetensors"
    digest = save_backbone(tiny_backbone, path, {"budget": "smoke", "task": "imagenette", "curve": [{"a": 1.5}]})
    assert digest == weights_sha256(tiny_backbone.state_dict())
    loaded, ckpt = load_backbone(path)
    assert ckpt.sha256 == digest == checkpoint_meta(path)["backbone_sha256"]
    assert ckpt.meta["curve"] == [{"a": 1.5}] and loaded.config == tiny_backbone.config
    assert weights_sha256(loaded.state_dict()) == digest


def test_tampered_backbone_weights_are_detected(tiny_backbone, tmp_path):
    from safetensors.torch import load_file, save_file

    from ccbench.common.safefile import read_header
    from ccbench.training.pretrain import load_backbone, save_backbone

    path = tmp_path / "b.safetensors"
    save_backbone(tiny_backbone, path, {})
    state = load_file(str(path))
    name = sorted(state)[0]
    state[name] = state[name] + 1
    save_file(state, str(path), metadata=read_header(path, "")["__metadata__"])
    with pytest.raises(UserError, match="corrupt: weights hash"):
        load_backbone(path)


def test_published_checkpoints_keep_the_hashes_of_the_records():
    """Every published backbone (current or replaced, listed in checkpoints/previous.json) has the hash
    its records cite, and each current file's weights hash to what its header states."""
    from ccbench.reporting.leaderboard import (
        previous_backbones,
        published_backbone_hashes,
    )
    from ccbench.training.pretrain import load_backbone

    published = published_backbone_hashes()
    assert set(published) == {("cpu", "imagenette"), ("cpu", "imagenette-a")}
    earlier = {(k, e["sha256"]) for k, entries in previous_backbones().items() for e in entries}
    for (budget, task), stated in published.items():
        _, ckpt = load_backbone(REPO / "checkpoints" / f"{budget}-{task}.safetensors")
        assert ckpt.sha256 == stated
    for (budget, task), sha in {*published.items(), *earlier}:
        cited = {json.loads(p.read_text())["backbone"]["sha256"]
                 for p in (REPO / "results" / budget / task / "dense").glob("*.json")}
        assert sha in cited, (task, sha[:12], sorted(c[:12] for c in cited))


def test_checkpoint_header_is_read_without_torch():
    code = ("import sys, ccbench.common.safefile as s; m = s.read_meta('checkpoints/cpu-imagenette.safetensors', '');"
            "assert 'torch' not in sys.modules; print(m['meta']['backbone_sha256'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert len(out.stdout.strip()) == 64


# ---- the trained-model cache ----

def test_trained_model_cache_that_is_a_pickle_is_refused(evil, tiny_data, isolated_cache, tmp_path, capsys):
    assert _smoke_run(tiny_data, tmp_path / "results", extra=["--train-only"]) == 0
    [cached] = (isolated_cache / "runs").glob("smoke-imagenette-evit-*.safetensors")
    evil(cached)
    capsys.readouterr()
    assert _smoke_run(tiny_data, tmp_path / "results") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(cached) in err and "delete" in err


@pytest.mark.parametrize("method", sorted(m for m in catalog.methods().names()
                                          if "image" in catalog.methods().metadata(m)["modalities"]))
def test_trained_model_cache_round_trips_every_image_method(method, tiny_backbone, tmp_path):
    import copy

    from ccbench.training.model_store import load_trained, save_trained

    torch.manual_seed(1)
    trained = catalog.methods().get(method).build(copy.deepcopy(tiny_backbone))
    for p in trained.parameters():
        p.data.add_(torch.randn_like(p))
    consumed = {"samples": 128, "steps": 4, "train_wall_s": 1.5, "label": "fine-tuned"}
    save_trained(trained, consumed, tmp_path / "m.safetensors")
    fresh = catalog.methods().get(method).build(copy.deepcopy(tiny_backbone))
    assert load_trained(fresh, tmp_path / "m.safetensors") == consumed
    want, got = trained.state_dict(), fresh.state_dict()
    assert want.keys() == got.keys()
    for name in want:  # bit-identical, same dtype (NaN buffers such as statistics not yet gathered included)
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, equal_nan=True, msg=name)


# ---- decode and shift image caches ----

def test_decode_cache_that_is_a_pickle_is_rebuilt(evil, tiny_data, isolated_cache, capsys):
    from ccbench.data.image_data import load_image_split

    task = catalog.tasks().get("imagenette")
    first = load_image_split(task, "val", 32, str(tiny_data))
    [cached] = (isolated_cache / "images").glob("*-32px.safetensors")
    evil(cached)
    capsys.readouterr()
    again = load_image_split(task, "val", 32, str(tiny_data))
    assert torch.equal(again.images, first.images) and again.ids == first.ids
    assert f"ignoring cache file: {cached}" in capsys.readouterr().err
    hit = load_image_split(task, "val", 32, str(tiny_data))  # rebuilt: a plain hit now
    assert hit.ids == first.ids and torch.equal(hit.labels, first.labels)
    assert "ignoring" not in capsys.readouterr().err


def test_shift_image_cache_that_is_a_pickle_is_rebuilt(evil, tiny_data, isolated_cache, capsys):
    from ccbench.data.shift_data import image_conditions

    task = catalog.tasks().get("imagenette-c")
    first = image_conditions(task, 32, str(tiny_data), progress=False)
    planted = sorted((isolated_cache / "images").glob("imagenette-c-*.safetensors"))
    assert len(planted) == len(first)
    for path in planted:
        evil(path)
    capsys.readouterr()
    again = image_conditions(task, 32, str(tiny_data), progress=False)
    assert all(torch.equal(again[k].images, first[k].images) for k in first)
    err = capsys.readouterr().err
    assert all(f"ignoring cache file: {p}" in err for p in planted)


# ---- the resume state ----

def _train(state_path, resume, ema_decay=None):
    from ccbench.data.image_data import ImageSplit
    from ccbench.training.train import train

    torch.manual_seed(0)
    from ccbench.core.backbones import ViTBackbone, ViTConfig
    model = ViTBackbone(ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=2))
    data = ImageSplit(torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8), torch.arange(16) % 2,
                      [f"x{i}" for i in range(16)], ["a", "b"], "h")
    recipe = catalog.budgets().get("smoke").finetune.model_copy(update={"samples": 64, "batch_size": 8,
                                                                        "ema_decay": ema_decay})

    def loss_fn(m, x, y):
        logits = m(x)
        return torch.nn.functional.cross_entropy(logits, y), logits

    result = train(model, loss_fn, recipe, data, 32, 0, state_path=state_path, resume=resume, progress=False)
    return model, result


def test_resume_state_that_is_a_pickle_is_refused(evil, tmp_path):
    path = evil(tmp_path / "train_state" / "run.pt")
    with pytest.raises(UserError) as err:
        _train(path, resume=True)
    assert "delete it" in _one_line_naming(err.value, path)


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_state_loads_weights_only(tmp_path, ema_decay):
    path = tmp_path / "state.pt"
    model, done = _train(path, resume=False, ema_decay=ema_decay)
    assert path.exists()
    resumed, again = _train(path, resume=True, ema_decay=ema_decay)  # already finished: nothing left to train
    assert again.steps == done.steps and again.curve == done.curve
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))


def test_the_planted_pickle_is_live(tmp_path):
    """Sanity check of the tests above: plain unpickling of Evil does run code."""
    import pickle

    marker = tmp_path / "live"
    pickle.loads(pickle.dumps(Evil(marker)))
    assert marker.exists()
