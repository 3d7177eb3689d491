"""The layers of the README's architecture section, checked on the import statements: each subpackage of
``ccbench/`` imports only the subpackages below it, drivers reach methods only through the registry,
methods never reach the run side, nothing imports the command line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ccbench"
# subpackage -> the ccbench subpackages it may import (itself always); "baselines" = a method module
MAY_IMPORT = {
    "common": set(),
    "core": {"common"},
    "data": {"common"},
    "measurement": {"common", "core", "data"},
    "training": {"common", "core", "data", "measurement", "reporting"},
    "reporting": {"common"},
    "drivers": {"common", "core", "data", "measurement", "training", "reporting"},
}
# the run side may write records, and nothing else of reporting
TRAINING_MAY_USE_OF_REPORTING = {"ccbench.reporting.records", "ccbench.reporting.record_schema"}
METHODS_MAY_IMPORT = {"common", "core", "measurement", "baselines"}


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the ``ccbench`` modules ``path`` imports (relative imports resolved against the
    file's own package; ``from pkg import name`` gives ``pkg.name``). ``baselines/x.py`` is
    ``ccbench.baselines.x``."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "baselines":
        parts = ["ccbench", *parts]
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "ccbench":
                found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ccbench")
    return found


def subpackage(dotted: str) -> str | None:
    """``ccbench.<subpackage>...`` -> the subpackage; ``cli`` for the command line; None otherwise."""
    parts = dotted.split(".")
    if len(parts) < 2:
        return None
    return parts[1] if parts[1] in (*MAY_IMPORT, "baselines", "cli") else None


def test_import_scan_resolves_relative_and_absolute_imports(tmp_path):
    folder = REPO / "ccbench" / "measurement"
    src = folder / "__scan_probe__.py"
    try:
        src.write_text("from .cost import x\nfrom . import stats\nfrom ..drivers import runner\n"
                       "import ccbench.core.trace\nfrom ccbench.baselines import avit\n")
        assert imported_modules(src) == {"ccbench.measurement.cost.x", "ccbench.measurement.stats",
                                         "ccbench.drivers.runner", "ccbench.core.trace",
                                         "ccbench.baselines.avit"}
    finally:
        src.unlink()


def test_every_module_lives_in_a_subpackage_the_layers_know():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", "cli"))
    assert not loose, f"modules outside a subpackage: {loose}"
    unknown = sorted(p.name for p in PACKAGE.iterdir()  # a worktree's symlinked baselines/ is not a layer
                     if p.is_dir() and not p.is_symlink() and (p / "__init__.py").exists() and p.name not in MAY_IMPORT)
    assert not unknown, f"subpackages the layers do not know: {unknown}"


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_layer_imports_only_the_layers_below_it(layer):
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for dotted in imported_modules(path):
            other = subpackage(dotted)
            if other in (None, layer):
                continue
            assert other in MAY_IMPORT[layer], f"{path.relative_to(REPO)} ({layer}) imports {dotted}"
            if layer == "training" and other == "reporting":
                assert dotted.rsplit(".", 1)[0] in TRAINING_MAY_USE_OF_REPORTING or dotted in \
                    TRAINING_MAY_USE_OF_REPORTING, f"{path.relative_to(REPO)} imports {dotted}"


def test_methods_never_reach_the_run_side_drivers_or_reporting():
    for path in sorted((REPO / "baselines").rglob("*.py")):
        for dotted in imported_modules(path):
            other = subpackage(dotted)
            assert other is None or other in METHODS_MAY_IMPORT, f"{path.relative_to(REPO)} imports {dotted}"


def test_nothing_imports_the_command_line():
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "baselines").rglob("*.py")]:
        if path.name not in ("cli.py", "__main__.py"):
            assert not [d for d in imported_modules(path) if subpackage(d) == "cli"], f"{path} imports ccbench.cli"


def test_repo_root_is_the_checkout_wherever_provenance_lives():
    """Modules moved into subpackages once; the checkout (checkpoints, git state) must still be found."""
    from ccbench.common.provenance import repo_root

    assert repo_root() == REPO
    assert (repo_root() / "checkpoints" / "manifest.json").exists()
