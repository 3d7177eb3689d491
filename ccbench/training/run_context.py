"""What one driver invocation (``run``, ``shift``, ``transfer``) works under, and the record it writes.

:class:`RunContext` gathers the task, budget tier, seed, workload, options and provenance that every
step of a driver needs, instead of long parameter lists; :meth:`RunContext.record` wraps a record body
in the header and footer every record kind shares (version, code state, hardware, date, wall time) and
stamps its id.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ccbench.common.provenance import code_version, git_state, hardware
from ccbench.common.specs import BudgetSpec, TaskSpec
from ccbench.reporting.records import finalize


@dataclass
class RunContext:
    """One driver invocation: ``task`` / ``tier`` specs, ``seed``, the ``work``-load (data splits,
    backbone, scoring) and where records go. ``started`` (epoch seconds) and ``code_state`` (the code
    this process imported, not whatever the checkout holds later) are taken when it is created."""

    task: TaskSpec
    tier: BudgetSpec
    seed: int
    work: object
    results_dir: str | None = None
    progress: bool = True
    resume: bool = False
    started: float = field(default_factory=time.time)
    code_state: dict = field(default_factory=git_state)

    @property
    def device(self) -> str:
        """The tier's device (``cpu`` / ``cuda``)."""
        return self.tier.device

    def record(self, body: dict, kind: str | None = None) -> dict:
        """The finished record of ``body`` (its own fields, in order): ``kind`` (absent for run records),
        code version (:func:`ccbench.common.provenance.code_version`) and code state first; hardware, date and wall time (seconds since ``started``) last."""
        return finalize({
            **({"kind": kind} if kind else {}),
            "ccbench_version": code_version(),
            "git": self.code_state,
            **body,
            "hardware": hardware(self.device),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(time.time() - self.started, 1),
        })
