"""Where a task's data comes from: a local folder (``--data-dir`` / ``$CCBENCH_DATA``) or the hub.

Both paths go through HF ``datasets``: the local one through the ``imagefolder`` builder, the hub
one through ``load_dataset(path, name, revision=...)``. The returned :class:`RawSplit` carries the
examples, their stable ids and a hash of the data, which keys every cache and goes into records.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ccbench.common.errors import UserError

DATA_ENV = "CCBENCH_DATA"


@dataclass
class RawSplit:
    """One split as loaded: an HF ``Dataset`` with ``image`` and ``label`` columns, an id per row
    (``<split>/<wnid>/<file>`` for a local folder, ``<split>/<row>`` from the hub), the class
    names in label order and the data hash (sha256 hex)."""

    dataset: Any
    ids: list[str]
    classes: list[str]
    data_hash: str
    origin: str


def resolve_data_root(data_dir: str | None) -> Path | None:
    """The local data root: ``data_dir`` if given, else ``$CCBENCH_DATA``, else ``None`` (hub)."""
    value = data_dir or os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


@dataclass
class DataRef:
    """A split located but not yet loaded: its data hash (keys the decoded cache), where it lives,
    and ``load()`` returning the :class:`RawSplit` (only called when the cache misses)."""

    data_hash: str
    origin: str
    load: Callable[[], RawSplit]


def _hash_folder(folder: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def locate_local_imagefolder(root: Path, subdir: str, split_dir: str) -> DataRef:
    """Find ``root/subdir/split_dir/<class>/*`` and hash its files (path and bytes); loading it
    with HF ``datasets``' imagefolder builder is deferred to ``DataRef.load``.

    Raises ``UserError`` naming the folder looked in when it is missing or empty."""
    # absolute (not resolved: symlinked files stay where they are listed), as HF datasets returns its paths
    folder = Path(os.path.abspath(root / subdir))
    split_folder = folder / split_dir
    if not split_folder.is_dir():
        raise UserError(
            f"no data at {root / subdir / split_dir} (looked under --data-dir/${DATA_ENV}={root}); "
            f"expected {subdir}/{split_dir}/<class>/*.JPEG — point ${DATA_ENV} at the folder holding "
            f"'{subdir}/'"
        )
    files = sorted(p for p in split_folder.rglob("*") if p.is_file())
    if not files:
        raise UserError(f"{split_folder} holds no files; expected <class>/*.JPEG inside it")

    def load() -> RawSplit:
        from datasets import Image, load_dataset

        ds = load_dataset("imagefolder", data_files={"split": [str(f) for f in files]}, split="split")
        classes = list(ds.features["label"].names)
        paths = [row["path"] for row in ds.cast_column("image", Image(decode=False))["image"]]
        ids = [Path(os.path.abspath(p)).relative_to(folder).as_posix() for p in paths]
        return RawSplit(ds, ids, classes, digest, origin)

    digest, origin = _hash_folder(folder, files), f"local:{split_folder}"
    return DataRef(digest, origin, load)


def locate_hub(path: str, name: str | None, revision: str, split: str) -> DataRef:
    """A split on the HF hub at a pinned revision; ``load()`` raises ``UserError`` when offline."""

    def load() -> RawSplit:
        from datasets import load_dataset

        try:
            ds = load_dataset(path, name, revision=revision, split=split)
        except Exception as err:  # network, auth, missing revision: all mean "cannot reach the hub"
            raise UserError(
                f"could not load {path}:{name}@{revision[:10]} from the hub ({type(err).__name__}); "
                f"offline, set ${DATA_ENV} (or --data-dir) to a local copy"
            ) from None
        ids = [f"{split}/{i}" for i in range(len(ds))]
        return RawSplit(ds, ids, list(ds.features["label"].names), digest, origin)

    # a pinned revision fixes the bytes, so it identifies the data
    digest = hashlib.sha256(f"{path}:{name}@{revision}:{split}".encode()).hexdigest()
    origin = f"hub:{path}:{name}@{revision}"
    return DataRef(digest, origin, load)
