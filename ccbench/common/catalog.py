"""The registries ccbench ships with, filled lazily.

* methods: every ``baselines/<file>.py`` (package ``ccbench.baselines``) plus modules that other
  installed packages expose through the entry-point group ``ccbench.methods``
  (``name = "pkg.module"``). A method module holds a literal ``METADATA`` dict, read with ``ast``
  without importing the module, and a ``build(backbone, **config)`` function.
* tasks: ``tasks/*.yaml`` (package ``ccbench.taskspecs``).
* budgets: ``budgets/*.yaml`` (package ``ccbench.budgetspecs``).
* backbones: architectures a budget tier can name.
"""
from __future__ import annotations

import ast
import importlib.resources
import importlib.util
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import UserError
from .method_meta import MethodMetadata
from .registry import Registry

METHOD_ENTRY_POINT_GROUP = "ccbench.methods"


def read_literal_metadata(source_file: Path) -> dict | None:
    """The literal ``METADATA = {...}`` assigned at module level in ``source_file``, or ``None`` (also when
    it is not a literal: the caller then imports the module)."""
    tree = ast.parse(Path(source_file).read_text(), filename=str(source_file))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "METADATA" for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def _raw_method_metadata(module: str, source_file: Path | None) -> dict:
    meta = read_literal_metadata(source_file) if source_file else None
    if meta is None:  # not a literal: import the module to read it
        from .registry import load_target
        meta = load_target(module).METADATA
    return dict(meta)


def _validated(module: str, meta: dict, known: dict[str, dict]) -> dict:
    """Validate a method's metadata. A method that evaluates another's checkpoint inherits the
    fields it does not set (paper, bibtex, knob, ...) from that method, and its ``versions`` per modality: the
    higher of its own and the source's (a new version of the model it evaluates is a new version of it)."""
    source = meta.get("evaluates_checkpoint_of")
    if source in known:
        inherited = {k: v for k, v in known[source].items()
                     if k not in ("name", "description", "trains", "evaluates_checkpoint_of")}
        versions = dict(inherited.get("versions") or {})
        for modality, version in (meta.get("versions") or {}).items():
            versions[modality] = max(version, versions.get(modality, 1)) if isinstance(version, int) else version
        meta = {**inherited, **meta, **({"versions": versions} if versions else {})}
    try:
        return MethodMetadata.model_validate(meta).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise UserError(f"method module {module} has invalid METADATA: {where}: {first['msg']}") from None


@lru_cache(maxsize=None)
def methods() -> Registry:
    """Built-in methods and plugin methods from the ``ccbench.methods`` entry points."""
    found: list[tuple[str, dict, str]] = []
    folder = importlib.resources.files("ccbench.baselines")
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".py") and not item.name.startswith("_"):
            module = f"ccbench.baselines.{item.name[:-3]}"
            found.append((module, _raw_method_metadata(module, Path(str(item))), "builtin"))
    for ep in entry_points(group=METHOD_ENTRY_POINT_GROUP):
        module = ep.value.partition(":")[0]
        spec = importlib.util.find_spec(module)
        origin = Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None
        found.append((module, _raw_method_metadata(module, origin), f"plugin {getattr(ep.dist, 'name', '?')}"))
    raw = {meta.get("name"): meta for _, meta, _ in found}
    reg = Registry("method")
    for module, meta, source in found:
        meta = _validated(module, meta, raw)
        reg.add(meta["name"], module, meta, source=source)
    return reg


def registered_version(method: str, modality: str) -> int | None:
    """The version of registered ``method``'s implementation on ``modality``
    (:func:`ccbench.common.method_meta.method_version`), or ``None`` when it is not registered here, or the
    installed methods cannot be read (a plug-in with bad ``METADATA`` must not stop anyone reading records)."""
    from .method_meta import method_version

    try:
        registry = methods()
    except UserError:
        return None
    return method_version(registry.metadata(method), modality) if method in registry else None


def _yaml_registry(kind: str, package: str, loader_factory) -> Registry:
    reg = Registry(kind)
    for item in sorted(importlib.resources.files(package).iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            raw = yaml.safe_load(item.read_text())
            meta = {k: raw.get(k) for k in ("name", "version", "description", "modality", "main_score",
                                              "device")}
            reg.add(raw["name"], loader_factory(Path(str(item))), meta, source=item.name)
    return reg


@lru_cache(maxsize=None)
def tasks() -> Registry:
    """Task specs by name (``TaskSpec`` objects when loaded)."""
    from .specs import TaskSpec, load_yaml_spec
    return _yaml_registry("task", "ccbench.taskspecs",
                          lambda path: (lambda: load_yaml_spec(path, TaskSpec)))


@lru_cache(maxsize=None)
def budgets() -> Registry:
    """Budget tiers by name (``BudgetSpec`` objects when loaded)."""
    from .specs import BudgetSpec, load_yaml_spec
    return _yaml_registry("budget", "ccbench.budgetspecs",
                          lambda path: (lambda: load_yaml_spec(path, BudgetSpec)))


@lru_cache(maxsize=None)
def backbones() -> Registry:
    """Backbone architectures a budget tier names in ``backbone.arch``."""
    reg = Registry("backbone")
    reg.add("vit", "ccbench.core.backbones:ViTBackbone",
            {"description": "timm VisionTransformer (class token, learned positions)"})
    return reg


def trains_per_grid_target(method: str) -> bool:
    """Whether ``method``'s compute grid trains one model per target (its knob's ``trains_per_grid_target``);
    False for a name not registered here (e.g. a plug-in not installed, or one whose metadata does not load:
    reading records must not depend on every installed plug-in being valid)."""
    try:
        registry = methods()
    except UserError:
        return False
    return method in registry and bool(registry.metadata(method)["knob"].get("trains_per_grid_target"))


def counted_grid_entries(method: str, entries) -> list[dict]:
    """The entries of a record's ``method.grid`` (``{target, reached, marked, ...}``, % of dense) that stand
    for their targets: every well-formed entry, except that for a method whose grid trains one model per
    target (:func:`trains_per_grid_target`) only those of a model trained towards the target
    (``trained_for_target``) count. A record calibrated to a target on a model trained for another compute
    is another experiment: a sweep runs the target again and tables show the record off the grid, by its knob.

    >>> counted_grid_entries("evit", [{"target": 25.0}, "bad"])
    [{'target': 25.0}]
    >>> counted_grid_entries("avit", [{"target": 25.0}, {"target": 40.0, "trained_for_target": True}])
    [{'target': 40.0, 'trained_for_target': True}]
    """
    if not isinstance(entries, list):
        return []
    entries = [e for e in entries if isinstance(e, dict)]
    if entries and trains_per_grid_target(method):
        entries = [e for e in entries if e.get("trained_for_target") is True]
    return entries
