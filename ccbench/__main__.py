"""``python -m ccbench ...``: the CLI, also under ``torchrun --nproc_per_node N -m ccbench run ...``
(data-parallel training, :mod:`ccbench.training.distributed`)."""
import sys

from .cli import main

if __name__ == "__main__":  # not when a tool (pytest's doctest collection) merely imports it
    sys.exit(main())
