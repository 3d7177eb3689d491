"""Transfer protocols (``ccbench transfer``) as plain data, shared by the run side and the tables.

A protocol names the parameter roles that train on the target; a protocol dense cannot have maps to
the dense reference that trains the same modules (see :mod:`ccbench.drivers.transfer`).
``routers-frozen`` (head + modules train, the decision parameters stay) was called ``modules-frozen``
before issue 24; records holding the old name are read under the new one (:func:`canonical_protocol`)
and never rewritten.

>>> PROTOCOLS["router-only"], DENSE_REFERENCE["router-only"]
(('head', 'decision'), 'head-only')
>>> canonical_protocol("modules-frozen")
'routers-frozen'
"""
from __future__ import annotations

PROTOCOLS = {"head-only": ("head",), "router-only": ("head", "decision"),
             "routers-frozen": ("head", "module"), "full": ("head", "decision", "module")}
DENSE_REFERENCE = {"head-only": "head-only", "router-only": "head-only", "routers-frozen": "full", "full": "full"}
NEEDS_DECISION = ("router-only", "routers-frozen")  # n/a for a method without decision parameters
ALIASES = {"modules-frozen": "routers-frozen"}      # old name -> current name (read-time only)


def canonical_protocol(name: str) -> str:
    """The current name of protocol ``name`` (an old record's name maps through :data:`ALIASES`)."""
    return ALIASES.get(name, name)
