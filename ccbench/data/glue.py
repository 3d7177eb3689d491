"""Reading GLUE's TSV files (``CCBENCH_DATA/glue/<TASK>/{train,dev}.tsv``) with a CSV reader.

Each task has its own column layout (see each folder's SOURCE.txt); :data:`LAYOUTS` says where the
text fields and the label are. Rows are returned as ``(id, texts, label)``; the id is
``<split>-<row number>`` so calibration slices and per-sample records can refer to examples.
Quoting is off (GLUE's files contain bare quote characters) and MRPC's header starts with a BOM.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ccbench.common.errors import UserError


@dataclass(frozen=True)
class Layout:
    """Where a task's fields are: ``text_columns`` (1 or 2), ``label_column``, whether the file has a
    header, and how a label string maps to a class index (``None`` = float regression target)."""

    folder: str
    text_columns: tuple[int, ...]
    label_column: int
    header: tuple[str, ...] | None  # the header line's fields, checked; None: the file has no header
    labels: tuple[str, ...] | None


LAYOUTS = {
    "sst2": Layout("SST-2", (0,), 1, ("sentence", "label"), ("0", "1")),
    "cola": Layout("CoLA", (3,), 1, None, ("0", "1")),
    "mrpc": Layout("MRPC", (3, 4), 0, ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"), ("0", "1")),
    "rte": Layout("RTE", (1, 2), 3, ("index", "sentence1", "sentence2", "label"), ("entailment", "not_entailment")),
    "stsb": Layout("STS-B", (7, 8), 9, ("index", "genre", "filename", "year", "old_index", "source1", "source2",
                                        "sentence1", "sentence2", "score"), None),
}


@dataclass(frozen=True)
class TextExample:
    """One example: ``id``, its one or two ``texts`` and ``label`` (class index, or a float score)."""

    id: str
    texts: tuple[str, ...]
    label: int | float


def read_glue_split(root: str | Path, task: str, split: str) -> list[TextExample]:
    """Examples of ``split`` (``train`` or ``dev``) of GLUE ``task`` under ``root/glue``."""
    if task not in LAYOUTS:
        raise UserError(f"unknown GLUE task {task!r}; known: {', '.join(sorted(LAYOUTS))}")
    layout = LAYOUTS[task]
    path = Path(root) / "glue" / layout.folder / f"{split}.tsv"
    if not path.exists():
        raise UserError(f"GLUE file not found: {path} (set CCBENCH_DATA to the folder holding glue/)")
    out = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if layout.header:
            first = next(rows, None)
            if first is None:
                raise UserError(f"{path} is empty; restore the file from GLUE")
            header = tuple(c.strip() for c in first)
            if header != layout.header:
                raise UserError(f"{path}: the first line is {'/'.join(header)[:80]!r}, expected GLUE's {task} header "
                                f"{'/'.join(layout.header)!r} (tab-separated); restore the file from GLUE")
        for i, row in enumerate(rows):
            if not row:
                continue
            need = max(*layout.text_columns, layout.label_column) + 1
            if len(row) < need:
                raise UserError(f"{path}: row {i + 1} has {len(row)} columns, expected at least {need}")
            raw = row[layout.label_column].strip()
            if layout.labels is None:
                try:
                    label: int | float = float(raw)
                except ValueError:
                    raise UserError(f"{path}: row {i + 1} has score {raw!r}, expected a number") from None
            elif raw in layout.labels:
                label = layout.labels.index(raw)
            else:
                raise UserError(f"{path}: row {i + 1} has label {raw!r}, expected one of {layout.labels}")
            out.append(TextExample(f"{split}-{i}", tuple(row[c].strip() for c in layout.text_columns), label))
    if not out:
        raise UserError(f"{path} holds no examples; restore the file from GLUE")
    return out
