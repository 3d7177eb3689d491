"""Claims: one sweep at a time produces a given record, so concurrent sweeps into one results folder
never measure the same configuration twice.

:func:`ccbench.reporting.records.commit_record` already makes each commit atomic and never overwrites, but a
record's id includes its measurement (date, timings), so two sweeps that both ran the same job would
commit two different records of one configuration. Before running a job a sweep therefore creates
``<results>/.claims/<output key>.claim`` for each record the job writes, with ``O_CREAT | O_EXCL``
(atomic create-if-absent, also on NFS v3+); a sweep that finds a claim waits until it is released
and then looks at the results folder again. A claim names its host and process; one left by a
process of this host that no longer runs (a killed sweep) is taken over.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

POLL_S = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(path: Path) -> bool:
    """True when the claim at ``path`` was left by a process of this host that is gone."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return False  # being written right now, or removed: not stale
    return info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", 0)))


def try_claim(folder: Path, key: str) -> bool:
    """Create the claim ``key`` under ``folder``; False when another live process holds it."""
    path = folder / f"{key}.claim"
    for _ in range(5):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileNotFoundError:  # another sweep removed the emptied folder just now
            continue
        except FileExistsError:
            if _stale(path):
                path.unlink(missing_ok=True)
                continue
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
        return True
    return False


def release(folder: Path, key: str) -> None:
    """Remove the claim ``key`` (and the claims folder once empty)."""
    (folder / f"{key}.claim").unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


@contextmanager
def claimed(results_dir: Path, keys: list[str], on_wait=None):
    """Hold the claims ``keys`` (taken in sorted order, so two sweeps never wait on each other in a
    cycle) for the body of the ``with``; waits, polling every second, while another sweep holds one,
    calling ``on_wait(key)`` once when it starts waiting."""
    folder = Path(results_dir) / ".claims"
    held: list[str] = []
    try:
        for key in sorted(set(keys)):
            told = False
            while not try_claim(folder, key):
                if on_wait is not None and not told:
                    on_wait(key)
                    told = True
                time.sleep(POLL_S)
            held.append(key)
        yield
    finally:
        for key in held:
            release(folder, key)
