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

EVAL_SET_FIELDS = ("scheme", "split", "folds", "seed")  # what identifies an eval set (its size and data beside it)


def split_eval_set(split: str | None) -> dict:
    """The identity of an eval set that is a task's whole split ``split`` (the other scheme is a cross-fit:
    :meth:`ccbench.common.specs.CrossFitSpec.identity`).

    >>> split_eval_set("dev")
    {'scheme': 'split', 'split': 'dev'}
    """
    return {"scheme": "split", "split": split}


def eval_set_of(record: dict) -> dict:
    """The identity of the eval set a transfer record was measured on: its ``task.eval_set`` (issue 25:
    ``{"scheme": "cross-fit", "split", "folds", "seed"}``) or, for a record before it, the target's eval
    split (``{"scheme": "split", "split": ...}``).

    >>> eval_set_of({"task": {"eval_split": "val"}})
    {'scheme': 'split', 'split': 'val'}
    >>> eval_set_of({"task": {"eval_set": {"scheme": "cross-fit", "split": "all", "folds": 2, "seed": 0, "n": 9}}})
    {'scheme': 'cross-fit', 'split': 'all', 'folds': 2, 'seed': 0}
    """
    task = record["task"]
    if task.get("eval_set"):
        return {k: task["eval_set"][k] for k in EVAL_SET_FIELDS if k in task["eval_set"]}
    return split_eval_set(task.get("eval_split"))


def dense_reference_key(record: dict, protocol: str | None = None) -> tuple:
    """Which dense transfer a transfer record is compared with: the same tier, target and source task (each at
    the same version, 1 when missing: another version trains on other splits) and source backbone (a text
    encoder's hash is shared by every text source), the same eval set (identity, data hash and size: predictions
    pair by example) and seed, under ``protocol`` (default: the record's :data:`DENSE_REFERENCE`). A dense
    record's own key: pass its (canonical) protocol."""
    if protocol is None:
        protocol = DENSE_REFERENCE[canonical_protocol(record["protocol"])]
    task, source = record["task"], record["source"]
    eval_set = tuple(sorted(eval_set_of(record).items()))
    return (record["budget"]["name"], task["name"], task.get("version") or 1, source["task"],
            source.get("task_version") or 1, source["backbone_sha256"], eval_set, task.get("data_hash"),
            task.get("n_eval"), record["seed"], protocol)
