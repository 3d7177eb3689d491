"""Text task splits (issue 7): GLUE from ``CCBENCH_DATA/glue/<TASK>/{train,dev}.tsv`` or from the hub
(``nyu-mll/glue`` at the spec's pinned revision), with the same calibration slice rule as images.

Ids are ``<split>-<row>`` (local files) or ``<split>/<index>`` (hub); a split's ``data_hash`` is the
sha256 of the file bytes (local) or of the pinned hub reference, so records identify their data.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from .data_source import resolve_data_root
from .errors import UserError
from .glue import LAYOUTS, read_glue_split
from .image_data import calibration_mask
from .specs import TaskSpec

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


def load_text_split(task: TaskSpec, split: str, data_dir: str | None = None) -> TextSplit:
    """``split`` (the spec's name, e.g. ``train`` or ``dev``) of a text task, local or from the hub."""
    text = _spec_text(task)
    root = resolve_data_root(data_dir)
    if root is not None:
        examples = read_glue_split(root, text.glue_task, task.local.splits[split])
        path = root / "glue" / LAYOUTS[text.glue_task].folder / f"{task.local.splits[split]}.tsv"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        ids = [e.id for e in examples]
        texts = [e.texts for e in examples]
        labels = [e.label for e in examples]
    else:
        from datasets import load_dataset

        hub = task.hub
        try:
            ds = load_dataset(hub.path, hub.name, revision=hub.revision, split=hub.splits[split])
        except Exception as err:
            raise UserError(f"could not load {hub.path}:{hub.name}@{hub.revision[:10]} from the hub "
                            f"({type(err).__name__}); offline, set $CCBENCH_DATA (or --data-dir) to a local copy") from None
        fields = HUB_TEXT_FIELDS[text.glue_task]
        ids = [f"{split}/{i}" for i in range(len(ds))]
        texts = [tuple(row[f] for f in fields) for row in ds]
        labels = list(ds["label"])
        digest = hashlib.sha256(f"{hub.path}:{hub.name}@{hub.revision}:{split}".encode()).hexdigest()
    dtype = torch.float32 if text.regression else torch.long
    return TextSplit(ids, texts, torch.tensor(labels, dtype=dtype), digest)


def text_task_splits(task: TaskSpec, data_dir: str | None = None) -> dict[str, TextSplit]:
    """``{'train', 'calibration', 'eval'}``: train minus the calibration slice (stratified by class,
    or by the rounded score for regression), the slice, and the reported split."""
    full = load_text_split(task, task.calibration.source, data_dir)
    strata = full.labels.round().long() if full.labels.is_floating_point() else full.labels
    calib = calibration_mask(full.ids, strata, task.calibration)
    return {"train": full.subset(torch.nonzero(~calib).flatten()),
            "calibration": full.subset(torch.nonzero(calib).flatten()),
            "eval": load_text_split(task, task.eval_split, data_dir)}
