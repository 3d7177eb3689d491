"""One-off conversion (issue 23, already done): the published ``checkpoints/*.pt`` pickles became
``checkpoints/*.safetensors``, after which the ``.pt`` files were removed from git.

Each ``.pt`` is read with ``torch.load(weights_only=True)`` only (no code in it can run; the one global
allow-listed is ``torch.torch_version.TorchVersion``, a ``str`` subclass holding the torch version in
``meta["hardware"]``, stored as a plain string in the new file); its fp16
weights, config and meta are written unchanged by :func:`ccbench.training.pretrain.write_checkpoint`, and the
conversion is checked end to end: the backbone hash recomputed from the new file's weights must equal
the hash stated in the old file and the one recomputed from its weights. Kept for anyone holding an
old ``.pt`` checkpoint of their own:

    python scripts/convert_checkpoints.py checkpoints/cpu-imagenette.pt [more.pt ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ccbench.training.pretrain import load_backbone, weights_sha256, write_checkpoint


def convert(old: Path) -> tuple[Path, str]:
    """Write ``old`` (a pickled ``.pt`` checkpoint) beside itself as ``.safetensors``; return the new
    path and the backbone hash, after checking that the hash did not change."""
    with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
        blob = torch.load(old, map_location="cpu", weights_only=True)
    before = weights_sha256(blob["state_dict"])
    stated = blob["meta"].get("backbone_sha256")
    if stated and stated != before:
        sys.exit(f"{old}: weights hash {before[:12]} != stated {stated[:12]}; not converting a corrupt file")
    new = old.with_suffix(".safetensors")
    after = write_checkpoint(blob["state_dict"], blob["config"], blob["meta"], new)
    _, ckpt = load_backbone(new)
    if not before == after == ckpt.sha256 == ckpt.meta["backbone_sha256"]:
        sys.exit(f"{old}: hash changed in conversion ({before[:12]} -> {ckpt.sha256[:12]})")
    return new, after


def main(paths: list[str]) -> None:
    for p in paths:
        new, digest = convert(Path(p))
        print(f"{p} -> {new}: backbone sha256 {digest} (unchanged)")


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(str(p) for p in Path("checkpoints").glob("*.pt")))
