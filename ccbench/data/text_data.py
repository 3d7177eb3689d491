"""Text task splits (issue 7): GLUE from ``CCBENCH_DATA/glue/<TASK>/{train,dev}.tsv`` or from the hub
(``nyu-mll/glue`` at the spec's pinned revision), with the same calibration slice rule as images.

Ids are ``<split>-<row>`` (local files) or ``<split>/<index>`` (hub); a split's ``data_hash`` is the
sha256 of the file bytes (local) or of the pinned hub reference, so records identify their data.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ccbench.common.errors import UserError
from ccbench.common.specs import TaskSpec

from .data_source import resolve_data_root
from .glue import LAYOUTS, read_glue_split
from .image_data import calibration_mask
from .sentences import contained_mask, whole_sentence_mask

HUB_TEXT_FIELDS = {"sst2": ("sentence",), "cola": ("sentence",), "mrpc": ("sentence1", "sentence2"),
                   "rte": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2")}


@dataclass
class TextSplit:
    """Examples of one split: ``ids``, ``texts`` (one or two strings each), ``labels`` ``[N]`` (long for
    classes, float for regression) and the ``data_hash`` of its source."""

    ids: list[str]
    texts: list[tuple[str, ...]]
    labels: torch.Tensor
    data_hash: str

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: torch.Tensor | list[int]) -> "TextSplit":
        """The examples at ``index`` (same hash: a subset is identified by its ids)."""
        idx = torch.as_tensor(index, dtype=torch.long).tolist()
        return TextSplit([self.ids[i] for i in idx], [self.texts[i] for i in idx], self.labels[idx], self.data_hash)


def _spec_text(task: TaskSpec):
    if task.text is None or task.modality != "text":
        raise UserError(f"task {task.name!r} is not a text task")
    return task.text


def _read_local(task: TaskSpec, root, split: str) -> tuple[list[str], list[tuple[str, ...]], list, str]:
    """``(ids, texts, labels, sha256 of the file)`` of a local split, by the spec's reader."""
    text = task.text
    file_split = task.local.splits[split]
    if text.reader == "glue":
        examples = read_glue_split(root, text.glue_task, file_split)
        path = root / "glue" / LAYOUTS[text.glue_task].folder / f"{file_split}.tsv"
        rows = [(e.id, e.texts, e.label) for e in examples]
    else:
        path = root / task.local.subdir / (f"{file_split}.tsv" if text.reader == "sentence_label_tsv"
                                           else f"{file_split}.jsonl")
        if not path.exists():
            raise UserError(f"{task.name}: file not found: {path} (set CCBENCH_DATA to the folder holding "
                            f"{task.local.subdir}/)")
        rows = (read_sentence_label_tsv(path, file_split) if text.reader == "sentence_label_tsv"
                else read_jsonl(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], digest


def read_sentence_label_tsv(path, split: str) -> list[tuple[str, tuple[str], int]]:
    """Rows of a ``sentence<TAB>label`` file with a header whose fields may be CSV-quoted (texts with
    newlines, tabs or quotes): ``(id "<split>-<row>", (text,), label)``."""
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, [])
        if header[:2] != ["sentence", "label"]:
            raise UserError(f"{path}: expected the header 'sentence<TAB>label', got {header[:2]}")
        out = []
        for i, r in enumerate(rows):
            try:
                out.append((f"{split}-{i}", (r[0],), int(r[1])))
            except (IndexError, ValueError):
                raise UserError(f"{path}: row {i + 1} is not 'sentence<TAB>integer label': {r[:2]!r}"[:200]) from None
    if not out:
        raise UserError(f"{path} holds no examples")
    return out


def read_jsonl(path) -> list[tuple[str, tuple[str], int]]:
    """Rows of a JSON-lines file of ``{"id", "text", "label"}`` objects: ``(id, (text,), label)``."""
    import json

    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                    out.append((str(obj["id"]), (str(obj["text"]),), int(obj["label"])))
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"{path}: line {n} is not a JSON object with id, text and an integer "
                                    f"label") from None
    if not out:
        raise UserError(f"{path} holds no examples")
    return out


def load_text_split(task: TaskSpec, split: str, data_dir: str | None = None) -> TextSplit:
    """``split`` (the spec's name, e.g. ``train`` or ``dev``) of a text task, local or from the hub."""
    text = _spec_text(task)
    root = resolve_data_root(data_dir)
    if root is not None:
        ids, texts, labels, digest = _read_local(task, root, split)
    else:
        from datasets import load_dataset

        hub = task.hub
        if hub is None:
            raise UserError(f"task {task.name!r} has no hub copy: set $CCBENCH_DATA (or --data-dir) to a folder "
                            f"holding {task.local.subdir}/")
        try:
            ds = load_dataset(hub.path, hub.name, revision=hub.revision, split=hub.splits[split])
        except Exception as err:
            raise UserError(f"could not load {hub.path}:{hub.name}@{hub.revision[:10]} from the hub "
                            f"({type(err).__name__}); offline, set $CCBENCH_DATA (or --data-dir) to a local copy") from None
        fields = text.hub_fields or HUB_TEXT_FIELDS[text.glue_task]
        ids = [f"{split}/{i}" for i in range(len(ds))]
        texts = [tuple(row[f] for f in fields) for row in ds]
        labels = list(ds["label"])
        digest = hashlib.sha256(f"{hub.path}:{hub.name}@{hub.revision}:{split}".encode()).hexdigest()
    dtype = torch.float32 if text.regression else torch.long
    return TextSplit(ids, texts, torch.tensor(labels, dtype=dtype), digest)


def text_task_splits(task: TaskSpec, data_dir: str | None = None) -> dict[str, TextSplit]:
    """``{'train', 'calibration', 'eval'}``: train minus the calibration slice (stratified by class,
    or by the rounded score for regression), the slice, and the reported split. With ``calibration.unit:
    sentence`` the slice is drawn from the whole sentences and training also drops their phrases."""
    full = load_text_split(task, task.calibration.source, data_dir)
    strata = full.labels.round().long() if full.labels.is_floating_point() else full.labels
    if task.calibration.unit == "sentence":
        if any(len(t) != 1 for t in full.texts):
            raise UserError(f"task {task.name!r} sets calibration.unit: sentence but its examples are sentence pairs; "
                            f"use unit: example in tasks/{task.name}.yaml")
        sentences = torch.nonzero(whole_sentence_mask(full.texts)).flatten()
        calib = torch.zeros(len(full), dtype=torch.bool)
        calib[sentences[calibration_mask([full.ids[i] for i in sentences.tolist()], strata[sentences],
                                         task.calibration)]] = True
        train = ~contained_mask(full.texts, calib)
    else:
        calib = calibration_mask(full.ids, strata, task.calibration)
        train = ~calib
    return {"train": full.subset(torch.nonzero(train).flatten()),
            "calibration": full.subset(torch.nonzero(calib).flatten()),
            "eval": load_text_split(task, task.eval_split, data_dir)}
