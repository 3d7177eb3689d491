"""`ccbench submit` (issue 19): a plug-in method installed from a tiny package made here (a ``*.dist-info`` with
an entry point of group ``ccbench.methods`` and a RECORD, on sys.path) runs at the smoke tier, and its record
is bundled with its samples, the plug-in's distribution name, version and source hash, and the environment;
the bundle reads back whole, is refused when altered, and is never written over."""
from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from ccbench.cli import main
from ccbench.common import catalog
from ccbench.common.method_source import method_source
from ccbench.reporting.records import commit_record, finalize
from ccbench.reporting.submission import bundle_problems, read_bundle
from record_helpers import run_body, samples

PLUGIN_FILES = {
    "tinyplug/__init__.py": '"""A tiny ccbench plug-in made by a test."""\n',
    "tinyplug/method.py": textwrap.dedent('''\
        METADATA = {"name": "tinyplug", "family": "token", "paper": "Doe 2026, A Tiny Plug-in",
                    "bibtex": "@misc{doe2026tiny, title={A Tiny Plug-in}, author={Doe, Jane}, year={2026}}",
                    "knob": {"name": "none", "default": None, "direction": "none"},
                    "description": "the dense model under another name, shipped as a plug-in"}


        def build(backbone, **config):
            from ccbench.baselines import dense

            return dense.build(backbone)
        '''),
}


def install_plugin(root: Path, monkeypatch) -> dict[str, str]:
    """Install distribution ``tinyplug`` 0.3 into ``root`` (put on sys.path): its package, and a dist-info with
    METADATA, the entry point and a RECORD listing the files. Returns ``{path: sha256}`` of its .py files."""
    for rel, text in PLUGIN_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    dist = root / "tinyplug-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[ccbench.methods]\ntinyplug = tinyplug.method\n")
    listed = [*PLUGIN_FILES, "tinyplug-0.3.dist-info/METADATA", "tinyplug-0.3.dist-info/entry_points.txt",
              "tinyplug-0.3.dist-info/RECORD"]
    (dist / "RECORD").write_text("".join(f"{rel},,\n" for rel in listed))
    monkeypatch.syspath_prepend(str(root))
    catalog.methods.cache_clear()
    return {rel: hashlib.sha256(text.encode()).hexdigest() for rel, text in PLUGIN_FILES.items()}


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "tinyplug"]:  # another test's copy, imported
        monkeypatch.delitem(sys.modules, name)
    hashes = install_plugin(tmp_path / "site-packages", monkeypatch)
    yield hashes
    catalog.methods.cache_clear()
    for name in [m for m in sys.modules if m.split(".")[0] == "tinyplug"]:
        del sys.modules[name]


def test_a_plugin_run_is_submitted_and_the_bundle_reads_back(plugin, tiny_data, isolated_cache, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--method", "tinyplug", "--budget", "smoke", "--data-dir", str(tiny_data),
                 "--results-dir", str(results), "--quiet"]) == 0
    [source] = list(results.rglob("*.json"))
    record = json.loads(source.read_text())
    out = tmp_path / "submission"
    capsys.readouterr()
    assert main(["submit", record["id"][:10], "--out", str(out), "--results-dir", str(results)]) == 0
    assert "SUBMITTING.md" in capsys.readouterr().out

    manifest, records = read_bundle(out)
    assert [r for _, r in records] == [record]  # the record and its samples (hash checked) read back whole
    rel = f"results/smoke/imagenette/tinyplug/{record['id'][:12]}"
    samples_file = source.with_name(source.name.replace(".json", ".samples.npz"))
    assert manifest["files"] == {f"{rel}.json": hashlib.sha256(source.read_bytes()).hexdigest(),
                                 f"{rel}.samples.npz": hashlib.sha256(samples_file.read_bytes()).hexdigest()}
    assert manifest["records"] == [{"id": record["id"], "kind": "run", "method": "tinyplug", "task": "imagenette",
                                    "budget": "smoke", "record": f"{rel}.json", "samples": f"{rel}.samples.npz"}]
    ref = manifest["methods"]["tinyplug"]
    assert (ref["origin"], ref["distribution"], ref["version"], ref["module"]) == ("plugin", "tinyplug", "0.3",
                                                                                   "tinyplug.method")
    assert ref["files"] == plugin  # each file of the plug-in's package with its sha256
    assert ref["source_sha256"] == record["method"]["provenance"]["source_sha256"]  # the hash the run stored
    assert {"python", "torch", "numpy", "cpu"} <= set(manifest["environment"])
    assert manifest["ccbench"]["version"] and "commit" in manifest["ccbench"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folder left

    try:  # part A's validator, when this ccbench has it, reads the submitted record
        from ccbench.reporting.validation import validate_record
    except ImportError:
        validate_record = None
    if validate_record is not None:
        checks = validate_record(out / f"{rel}.json")
        assert checks and all(isinstance(c.passed, bool) and c.name for c in checks)

    assert main(["submit", record["id"][:10], "--out", str(out), "--results-dir", str(results)]) == 2
    assert "exists" in capsys.readouterr().err  # never written over

    (out / f"{rel}.samples.npz").write_bytes(b"altered")
    (out / "results" / "smoke" / "extra.txt").write_text("x")
    problems = bundle_problems(out)
    assert any("sha256 differs from the manifest" in p for p in problems)
    assert any("extra.txt: not listed in the manifest" in p for p in problems)


def test_a_plugin_source_hash_follows_its_files(plugin, tmp_path):
    before = method_source("tinyplug")
    (tmp_path / "site-packages" / "tinyplug" / "method.py").write_text(PLUGIN_FILES["tinyplug/method.py"] + "# v2\n")
    after = method_source("tinyplug")
    assert before["source_sha256"] != after["source_sha256"]
    assert before["files"]["tinyplug/__init__.py"] == after["files"]["tinyplug/__init__.py"]
    builtin = method_source("avit")
    assert builtin["origin"] == "builtin" and list(builtin["files"]) == ["ccbench/baselines/avit.py"]


def test_submit_refuses_a_method_that_is_not_installed_and_leaves_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    path = commit_record(finalize(run_body("ghost-method")), samples(), results)
    out = tmp_path / "bundles" / "b1"
    assert main(["submit", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown method 'ghost-method'" in err
    assert list((tmp_path / "bundles").iterdir()) == []  # neither the bundle nor its temporary folder
    assert main(["submit", "0123456789", "--out", str(out), "--results-dir", str(results)]) == 2
    assert "no run record with id" in capsys.readouterr().err
