"""Registries: lazy listing, duplicates, suggestions, plugin methods through entry points."""
import subprocess
import sys
import textwrap

import pytest

from ccbench.common import catalog
from ccbench.common.errors import UserError
from ccbench.common.registry import DuplicateNameError, Registry


def test_builtin_names_and_metadata():
    methods = catalog.methods()
    assert {"dense", "avit"} <= set(methods.names())
    meta = methods.metadata("avit")
    assert meta["family"] == "token" and meta["knob"]["name"] == "threshold"
    assert "imagenette" in catalog.tasks().names()
    assert {"smoke", "cpu", "gpu"} <= set(catalog.budgets().names())


def test_unknown_name_suggests_closest():
    with pytest.raises(UserError, match="did you mean 'avit'"):
        catalog.methods().get("avitt")
    with pytest.raises(UserError, match="did you mean 'imagenette'"):
        catalog.tasks().get("imagenet")


def test_duplicates_rejected():
    r = Registry("method")
    r.add("x", "math:sqrt")
    with pytest.raises(DuplicateNameError):
        r.add("x", "math:floor", source="plugin p")


def test_listing_does_not_import_torch():
    code = ("import sys, ccbench.common.catalog as c; c.methods().names(); c.tasks().names(); "
            "c.budgets().names(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entry_point_plugin_method_is_listed(tmp_path):
    pkg = tmp_path / "mymethod_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fancy.py").write_text(textwrap.dedent('''
        METADATA = {"name": "fancy", "family": "token", "paper": "Me 2026", "bibtex": "@misc{me}",
                    "knob": {"name": "keep", "default": 0.5, "direction": "lower = less compute"},
                    "description": "a submitted method"}
        def build(backbone, **config):
            raise NotImplementedError
    '''))
    dist = tmp_path / "mymethod_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mymethod-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ccbench.methods]\nfancy = mymethod_pkg.fancy\n")
    code = "from ccbench.cli import main; raise SystemExit(main(['ls', 'methods']))"
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if row.startswith("| fancy"))
    assert "plugin mymethod-pkg" in line and "token" in line and "keep (lower = less compute)" in line


def test_a_plugin_may_name_its_own_family_and_register_its_analyses():
    """A new family is a safe name; unsafe ones are refused; its shift/transfer analyses are registered
    under it, and an unregistered family gets none."""
    import pytest
    from pydantic import ValidationError

    from ccbench.common.errors import UserError
    from ccbench.common.method_meta import MethodMetadata
    from ccbench.measurement.analyses import (
        FamilyAnalyses,
        family_analyses,
        register_family_analyses,
    )

    meta = {"name": "fancy", "paper": "Me 2026", "bibtex": "@misc{me}", "description": "d",
            "knob": {"name": "keep", "default": 0.5, "direction": "lower = less compute"}}
    assert MethodMetadata(**meta, family="layer-merging").family == "layer-merging"
    with pytest.raises(ValidationError, match="family"):
        MethodMetadata(**meta, family="<script>")

    class Merging(FamilyAnalyses):
        def of_split(self, model, trace, table):
            return {"merged": 1}

    assert type(family_analyses("layer-merging")) is FamilyAnalyses
    register_family_analyses("layer-merging", Merging())
    assert family_analyses("layer-merging").of_split(None, None, None) == {"merged": 1}
    with pytest.raises(UserError, match="not allowed"):
        register_family_analyses("../x", Merging())


def test_constant_statistics_are_declared_in_metadata_and_checked():
    """Issue 24: expert choice declares its load and class statistics constant at every capacity,
    MoEfication everything only at k = E = 8, top-k nothing; a statistic outside the vocabulary is refused."""
    import pytest
    from pydantic import ValidationError

    from ccbench.common.method_meta import MethodMetadata, constant_statistics

    methods = catalog.methods()
    ec = constant_statistics(methods.metadata("moe-expert-choice"), 0.5)["statistics"]
    assert {"utilization", "jain", "entropy", "class_specialization"} <= set(ec) and "position_specialization" not in ec
    assert constant_statistics(methods.metadata("moefication"), 4)["statistics"] == []
    assert "position_specialization" in constant_statistics(methods.metadata("moefication"), 8)["statistics"]
    assert constant_statistics(methods.metadata("moe-topk"), 1) == {"statistics": [], "why": ""}
    meta = {**methods.metadata("moe-topk"), "constant_by_construction": [{"metrics": ["accuracy"], "why": "x"}]}
    with pytest.raises(ValidationError, match="constant_by_construction"):
        MethodMetadata(**meta)
