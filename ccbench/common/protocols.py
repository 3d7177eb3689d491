"""Transfer protocols (``ccbench transfer``) as plain data, shared by the run side and the tables.

A protocol names the parameter roles that train on the target; a protocol dense cannot have maps to
the dense reference that trains the same modules (see :mod:`ccbench.drivers.transfer`).

>>> PROTOCOLS["router-only"], DENSE_REFERENCE["router-only"]
(('head', 'decision'), 'head-only')
"""
from __future__ import annotations

PROTOCOLS = {"head-only": ("head",), "router-only": ("head", "decision"),
             "modules-frozen": ("head", "module"), "full": ("head", "decision", "module")}
DENSE_REFERENCE = {"head-only": "head-only", "router-only": "head-only", "modules-frozen": "full", "full": "full"}
