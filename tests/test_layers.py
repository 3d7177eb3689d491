"""The layers of the README's architecture section, checked on the import statements of ``ccbench/``:
measurement never reaches up into drivers, drivers reach methods only through the registry, nothing
imports the command line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ccbench"
MEASUREMENT = {"trace", "cost", "exits", "routing", "stats", "latency", "sampling", "analyses"}
DRIVERS = {"runner", "shift", "transfer", "from_record", "bench", "model_store", "pretrain", "train", "cli",
           "sweep"}


def imported_modules(path: Path) -> set[str]:
    """The ``ccbench`` modules (first component below the package) and ``baselines`` that ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] in ("ccbench", "baselines"):
                parts = node.module.split(".")
                found.add(parts[1] if parts[0] == "ccbench" and len(parts) > 1 else parts[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in ("ccbench", "baselines"):
                    found.add(parts[1] if parts[0] == "ccbench" and len(parts) > 1 else parts[0])
    return found


def test_import_scan_sees_relative_and_absolute_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from .cost import x\nfrom . import runner, stats\nimport ccbench.shift\nfrom baselines import avit\n")
    assert imported_modules(src) == {"cost", "runner", "stats", "shift", "baselines"}


@pytest.mark.parametrize("module", sorted(MEASUREMENT))
def test_measurement_imports_no_driver_and_no_method(module):
    bad = imported_modules(PACKAGE / f"{module}.py") & (DRIVERS | {"baselines"})
    assert not bad, f"ccbench/{module}.py (measurement) imports {sorted(bad)}"


def test_drivers_reach_methods_only_through_the_registry():
    for module in sorted(DRIVERS):
        path = PACKAGE / f"{module}.py"
        if path.exists():
            assert "baselines" not in imported_modules(path), f"ccbench/{module}.py imports a baseline directly"


def test_nothing_imports_the_command_line():
    for path in PACKAGE.glob("*.py"):
        if path.stem not in ("cli", "__main__"):
            assert "cli" not in imported_modules(path), f"{path.name} imports ccbench.cli"
