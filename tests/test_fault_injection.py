"""Issue 15: nothing a user or a submitter types crashes ccbench, corrupts its records or runs code in a
reader's browser. Bad record files, concurrent writers, hostile names and markup in records.

Each group of cases sits in its own clearly named test functions: kill + resume, bad record files,
concurrent writers, hostile names, markup in records.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import write_tiny_imagenette

from ccbench.cli import main
from ccbench.common import catalog
from ccbench.common.errors import UserError
from ccbench.common.provenance import content_hash
from ccbench.common.registry import Registry
from ccbench.reporting.records import (
    RecordError,
    commit_record,
    finalize,
    load_samples,
    scan_records,
)
from record_helpers import bypass_validation_gate, run_body, samples


@pytest.fixture(autouse=True)
def no_published_checkpoints(monkeypatch):
    """Skip loading the published image checkpoints (seconds per leaderboard): these records are text."""
    monkeypatch.setattr("ccbench.reporting.leaderboard.published_backbone_hashes", lambda: {})


@pytest.fixture(autouse=True)
def no_validation_gate(monkeypatch):
    """These records carry no audit/determinism evidence; the gate has its own tests (test_validation), and
    here every record the faults leave readable must reach the tables."""
    bypass_validation_gate(monkeypatch)


def commit(body: dict, root: Path) -> Path:
    """Finalize and commit ``body`` under ``root``; the record path."""
    return commit_record(finalize(body), samples(), root)


def _rewrite(path: Path, edit) -> None:
    """Apply ``edit`` to the record at ``path`` and store it with a recomputed (valid) id, in place."""
    record = json.loads(path.read_text())
    body = {k: v for k, v in record.items() if k != "id"}
    edit(body)
    path.write_text(json.dumps({"id": content_hash(body), **body}))


def _renamed(path: Path) -> Path:
    """Move the record (and its samples) to another 12-hex-digit name."""
    new = path.with_name("0123456789ab.json")
    path.rename(new)
    path.with_name(path.stem + ".samples.npz").rename(new.with_name("0123456789ab.samples.npz"))
    return new


def _edited(path: Path) -> None:
    record = json.loads(path.read_text())
    record["metrics"]["main_score"]["value"] = 99.0
    path.write_text(json.dumps(record))


def _samples_of(path: Path) -> Path:
    return path.with_name(path.stem + ".samples.npz")


def _then_same(action):
    """``action`` applied to a record path, returning that path."""
    return lambda p: (action(p), p)[1]


# case -> (corrupt the record at the path and return the bad file's path, expected message)
CORRUPTIONS = {
    "truncated": (_then_same(lambda p: p.write_text(p.read_text()[:40])), "is not valid JSON (truncated? line"),
    "empty": (_then_same(lambda p: p.write_text("")), "is empty"),
    "not_an_object": (_then_same(lambda p: p.write_text("[1, 2]")), "is not a JSON object"),
    "hand_edited": (_then_same(_edited), "id does not match its content (edited by hand?)"),
    "schema_99_recomputed_id": (_then_same(lambda p: _rewrite(p, lambda b: b.update(schema_version=99))),
                                "schema_version 99 is not supported (this ccbench reads 1, 2)"),
    "missing_field_recomputed_id": (_then_same(lambda p: _rewrite(p, lambda b: b.pop("metrics"))),
                                    "lacks required field(s) metrics.useful_gmacs.mean"),
    "renamed": (_renamed, "file name does not match its id"),
    "samples_missing": (_then_same(lambda p: _samples_of(p).unlink()), "its samples file is missing"),
    "samples_tampered": (_then_same(lambda p: np.savez_compressed(_samples_of(p), **samples(pred=(0, 0)))),
                         "its samples file does not match the record's samples_sha256 (altered?)"),
    "samples_corrupt": (_then_same(lambda p: _samples_of(p).write_bytes(b"PK\x03\x04 not a zip")),
                        "the samples file is corrupt"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_bad_record_is_skipped_by_path_and_strict_refuses(case, tmp_path, capsys):
    results = tmp_path / "results"
    commit(run_body("dense"), results)
    victim = commit(run_body("early-exit", knob=("threshold", 0.9)), results)
    corrupt, message = CORRUPTIONS[case]
    bad = corrupt(victim)
    bad_name = str(_samples_of(bad)) if case == "samples_corrupt" else str(bad)
    capsys.readouterr()

    assert main(["table", "--results-dir", str(results)]) == 0
    out, err = capsys.readouterr()
    assert "| dense " in out and "early-exit" not in out  # one bad file does not block the other rows
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"ccbench: skipped {bad_name}: ") and message in err
    assert "restore it from git or delete it" in err

    board = tmp_path / "lb" / "README.md"
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(board)]) == 0
    assert "| dense " in board.read_text()
    assert message in capsys.readouterr().err

    for command in (["table"], ["leaderboard", "--out", str(tmp_path / "strict" / "README.md")]):
        assert main(command + ["--strict", "--results-dir", str(results)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"ccbench: error: {bad_name}: ") and message in err
    assert not (tmp_path / "strict").exists()  # --strict refuses before writing anything


def test_strict_names_every_bad_file_on_its_own_line(tmp_path, capsys):
    results = tmp_path / "results"
    paths = [commit(run_body("dense", seed=s), results) for s in range(3)]
    paths[0].write_text("")
    _edited(paths[1])
    capsys.readouterr()
    assert main(["table", "--strict", "--results-dir", str(results)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[2] for line in lines] == sorted(str(p) for p in paths[:2])


def test_new_records_hash_their_samples_and_old_ones_stay_loadable(tmp_path):
    path = commit(run_body(), tmp_path)
    record = json.loads(path.read_text())
    assert len(record["samples_sha256"]) == 64 and path.stem == record["id"][:12]
    # a record written before samples_sha256 existed: its samples cannot be verified, but it loads
    old = finalize(run_body(seed=7))
    folder = path.parent
    (folder / f"{old['id'][:12]}.json").write_text(json.dumps(old))
    np.savez_compressed(folder / f"{old['id'][:12]}.samples.npz", **samples())
    good, bad = scan_records(tmp_path)
    assert bad == [] and sorted(r["id"] for _, r in good) == sorted([record["id"], old["id"]])
    old_samples = folder / f"{old['id'][:12]}.samples.npz"
    old_samples.write_bytes(old_samples.read_bytes()[:-30])  # truncated: caught without a hash
    _, bad = scan_records(tmp_path)
    assert bad == [f"{folder / old['id'][:12]}.json: its samples file is corrupt (not a complete .npz); "
                   "restore it from git or delete it"]


def test_load_samples_refuses_pickles_and_names_a_corrupt_file(tmp_path):
    path = commit(run_body(), tmp_path)
    np.savez(_samples_of(path), ids=np.array([object()], dtype=object))
    with pytest.raises(RecordError, match=re.escape(str(_samples_of(path))) + ": the samples file is corrupt"):
        load_samples(path)
    _samples_of(path).write_bytes(b"")
    with pytest.raises(RecordError, match="the samples file is corrupt"):
        load_samples(path)


def test_commit_refuses_a_crafted_name_that_leaves_the_results_folder(tmp_path):
    results = tmp_path / "a" / "results"
    with pytest.raises(RecordError, match="names the folder '../../escaped', which is not allowed"):
        commit(run_body(method="../../escaped"), results)
    assert list(tmp_path.rglob("*.json")) == []


def _commit_many(folder: str, bodies: list[dict], start, won) -> None:
    """Worker of the concurrency test: once every worker is at the barrier ``start`` (all imported),
    commit each body; put on the queue ``won`` how many this process committed."""
    start.wait()
    count = 0
    for body in bodies:
        try:
            commit(body, Path(folder))
            count += 1
        except FileExistsError:
            pass
    won.put(count)


def test_concurrent_writers_commit_every_record_exactly_once(tmp_path):
    shared = [run_body(seed=s) for s in range(4)]
    workers = 4
    ctx = multiprocessing.get_context("spawn")
    start, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_commit_many, args=(str(tmp_path), shared + [run_body(seed=100 + w)], start, queue))
             for w in range(workers)]
    for p in procs:
        p.start()
    won = sum(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    good, bad = scan_records(tmp_path)
    assert bad == []
    assert won == len(good) == len(shared) + workers  # each record exactly once, nothing lost
    assert len({r["id"] for _, r in good}) == len(good)
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary files left
    assert len(list(tmp_path.rglob("*.samples.npz"))) == len(good)


_HOLD_THEN_SAVE = """
import sys, time
from pathlib import Path
from ccbench.training.model_store import training_lock
path = Path(sys.argv[1])
with training_lock(path):
    print("held", flush=True)
    time.sleep(1.5)
    path.write_text("trained")
"""


def test_a_second_process_waits_for_the_model_another_is_training_then_finds_it(isolated_cache, tmp_path, monkeypatch,
                                                                                  capsys):
    from ccbench.training.model_store import training_lock

    path = tmp_path / "models" / "avit-tiny.safetensors"
    path.parent.mkdir()
    env = {**os.environ, "WORLD_SIZE": "1"}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_THEN_SAVE, str(path)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("WORLD_SIZE", "2")   # under torchrun the ranks train together: no lock, no wait
        with training_lock(path):
            assert not path.exists()
        monkeypatch.setenv("WORLD_SIZE", "1")
        with training_lock(path):
            assert path.read_text() == "trained"   # waited for the holder, which saved the model first
        assert "another process is training avit-tiny.safetensors: waiting" in capsys.readouterr().err
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0


def test_hostile_name_is_rejected_at_registration():
    reg = Registry("method")
    with pytest.raises(UserError) as err:
        reg.add("../../../escaped", "math:sqrt", {}, source="plugin evil-dist")
    assert str(err.value) == ("method name '../../../escaped' from plugin evil-dist is not allowed: use 1-64 "
                              "characters from A-Z a-z 0-9 _ . -, starting with a letter or digit")
    for bad in ("<img src=x onerror=alert(1)>", "a|b", "a\nb", "", ".hidden", "x" * 65):
        with pytest.raises(UserError):
            reg.add(bad, "math:sqrt")
    assert len(reg) == 0


def _plugin(tmp_path, monkeypatch, name: str, knob: str) -> None:
    """Install a fake plug-in distribution ``evil-dist`` whose method module declares ``name``/``knob``."""
    (tmp_path / "evil_plugin_mod.py").write_text(
        f"METADATA = {{'name': {name!r}, 'family': 'token', 'paper': 'p', 'bibtex': 'b', 'description': 'd',\n"
        f"            'knob': {{'name': {knob!r}, 'default': None, 'direction': 'none'}}}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = SimpleNamespace(value="evil_plugin_mod", dist=SimpleNamespace(name="evil-dist"))
    monkeypatch.setattr(catalog, "entry_points", lambda group: [ep])
    catalog.methods.cache_clear()


@pytest.mark.parametrize("name, knob, message", [
    ("../../../escaped", "k", "method name '../../../escaped' from plugin evil-dist is not allowed"),
    ("fine-name", "a|b", "invalid METADATA: knob.name: Value error, knob name 'a|b' is not allowed"),
])
def test_hostile_plugin_is_refused_in_one_line(name, knob, message, tmp_path, monkeypatch, capsys):
    _plugin(tmp_path, monkeypatch, name, knob)
    try:
        assert main(["ls", "methods"]) == 2
    finally:
        catalog.methods.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_every_builtin_name_is_safe():
    from ccbench.common.names import is_safe_name

    for reg in (catalog.methods(), catalog.tasks(), catalog.budgets(), catalog.backbones()):
        assert reg.names() and all(is_safe_name(n) for n in reg.names())
    assert all(is_safe_name(catalog.methods().metadata(n)["knob"]["name"]) for n in catalog.methods().names())


HOSTILE_METHOD = "<img src=x onerror=alert(1)>"
HOSTILE_KNOB = "a|b\n| fake | row | 99.99 |"


def _write_crafted(root: Path, body: dict) -> None:
    """A crafted record with a valid id and samples hash, placed by hand (commit_record refuses its name)."""
    arrays = samples()
    from ccbench.reporting.records import seal

    record = seal(body, arrays)
    folder = root / "cpu" / "sst2" / "crafted"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record['id'][:12]}.json").write_text(json.dumps(record))
    np.savez_compressed(folder / f"{record['id'][:12]}.samples.npz", **arrays)


def _table_shapes(markdown: str) -> list[tuple[int, int]]:
    """(rows, cells per row) of each markdown table: runs of lines starting with '|', cells split at
    unescaped pipes; raises if a table's rows differ in cell count."""
    shapes, block = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            block.append(len(re.split(r"(?<!\\)\|", line)))
        elif block:
            assert len(set(block)) == 1, f"a row has a different number of cells: {block}"
            shapes.append((len(block), block[0]))
            block = []
    return shapes


def test_markup_in_records_is_escaped_in_table_and_leaderboard(tmp_path, capsys):
    results = tmp_path / "results"
    commit(run_body("dense"), results)
    _write_crafted(results, run_body(HOSTILE_METHOD, knob=("k", HOSTILE_KNOB), score=99.99))
    capsys.readouterr()
    assert main(["table", "--strict", "--results-dir", str(results)]) == 0
    table = capsys.readouterr().out
    assert _table_shapes(table) == [(4, _table_shapes(table)[0][1])]  # header, rule, 2 rows
    assert "<img" not in table and "&lt;img src=x onerror=alert(1)&gt;" in table and "fake" in table

    board = tmp_path / "lb" / "README.md"
    assert main(["leaderboard", "--strict", "--results-dir", str(results), "--out", str(board)]) == 0
    text = board.read_text()
    assert "<img" not in text and "&lt;img" in text
    shapes = _table_shapes(text)
    # the sst2 table (2 rows), its ranking section's two tables (1 row each), the GLUE table (2 rows)
    assert [rows for rows, _ in shapes] == [4, 3, 3, 4]
    assert not any(line.startswith("| fake") for line in text.splitlines())


def test_escape_keeps_the_committed_leaderboard_values():
    from ccbench.reporting.markdown import escape_cell

    for value in ("keep_ratio=0.5", "moe-expert-choice", "threshold=0.99", "imagenette-c", "amazon-books", "-"):
        assert escape_cell(value) == value


def test_smoke_tier_and_other_budget_versions_are_not_admitted(tmp_path, capsys):
    results = tmp_path / "results"
    commit(run_body("dense", budget="smoke"), results)
    commit(run_body("dense", task="rte", version=3), results)
    commit(run_body("dense", task="mrpc"), results)
    board = tmp_path / "lb" / "README.md"
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(board)]) == 0
    text = board.read_text()
    assert "Not admitted (tier smoke evaluates only 64 samples of the eval split): dense" in text
    from ccbench.common import catalog

    version = catalog.budgets().get("cpu").version
    assert f"Not admitted (budget version differs from tier cpu's version {version}): dense" in text
    assert re.search(r"^\| mrpc +\| cpu ", text, re.M) and not re.search(r"^\| rte +\| cpu ", text, re.M)
    assert not re.search(r"^\| sst2 +\| smoke ", text, re.M)
    assert [rows for rows, _ in _table_shapes(text)] == [3, 3]  # mrpc's table and the GLUE table


def test_markup_in_shift_and_transfer_rows_is_escaped():
    import pandas as pd

    from ccbench.reporting.shift_tables import shift_markdown, transfer_markdown

    shift = pd.DataFrame([{"source": "sst2", "target": HOSTILE_METHOD, "method": HOSTILE_METHOD, "knob": HOSTILE_KNOB,
                           "ref_score": 80.0, "ref_dense_pct": 100.0, "drop_all": 1.0, "dense_pp_all": 0.0,
                           "target_score": 79.0, "target_dense_pct": 100.0, "js_bits": None, "domain_nmi": None,
                           "domain_nmi_pick": None,
                           "same_compute": "1/1", "seed": 0, "id": "0123456789ab"}])
    transfer = pd.DataFrame([{"source": "imagenette-a", "target": "imagenette-b", "method": HOSTILE_METHOD,
                              "knob": HOSTILE_KNOB, "protocol": "full", "score": 70.0, "gain": None,
                              "dense_pct": 100.0, "reuse": None, "reuse_source": None, "class_nmi": None,
                              "has_decision": False, "id": "0123456789ab"}])
    # header, rule, one row; a transfer adds the table of parameters trained per protocol
    for text, tables in ((shift_markdown(shift), [3]), (transfer_markdown(transfer), [3, 3])):
        assert "<img" not in text and "&lt;img" in text
        assert [rows for rows, _ in _table_shapes(text)] == tables


# -- kill + resume --

# runs ccbench's CLI in a child process whose optimizer kills the process (SIGKILL: no cleanup, no
# handler) right before its KILL_AT_STEP-th step, counted from the start of that process
CHILD = """
import os, signal, sys, torch
kill_at = int(os.environ.get("KILL_AT_STEP", "0"))
if kill_at:
    step = torch.optim.AdamW.step
    count = {"n": 0}
    def killing_step(self, *a, **k):
        count["n"] += 1
        if count["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, *a, **k)
    torch.optim.AdamW.step = killing_step
from ccbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _ccbench(args: list[str], cache: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "CCBENCH_CACHE": str(cache), "KILL_AT_STEP": str(kill_at)}
    env.pop("CCBENCH_DATA", None)
    return subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _record_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def test_sigkill_during_fine_tuning_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = write_tiny_imagenette(tmp_path / "data")
    run = ["run", "--method", "avit", "--task", "imagenette", "--budget", "smoke", "--knob", "threshold=0.5",
           "--data-dir", str(data), "--quiet"]

    # the reference: never interrupted (its backbone, pretrained here, is shared with the killed run)
    ref_cache, ref_results = tmp_path / "cache-ref", tmp_path / "results-ref"
    done = _ccbench(run + ["--results-dir", str(ref_results)], ref_cache)
    assert done.returncode == 0, done.stderr[-2000:]
    [ref] = _record_files(ref_results)

    cache, results = tmp_path / "cache", tmp_path / "results"
    shutil.copytree(ref_cache / "checkpoints", cache / "checkpoints")
    killed = _ccbench(run + ["--results-dir", str(results)], cache, kill_at=3)
    assert killed.returncode == -signal.SIGKILL
    # nothing half-written: no record, no samples file, no temporary file, no trained model
    assert not results.exists() or not any(p.is_file() for p in results.rglob("*"))
    assert not (cache / "runs").exists() or not list((cache / "runs").iterdir())
    assert list((cache / "train_state").glob("*")), "the killed run saved no state to resume from"

    # resumed, not restarted: a restart would take 4 steps and be killed at its 3rd again
    resumed = _ccbench(run + ["--results-dir", str(results), "--resume"], cache, kill_at=3)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list((cache / "train_state").glob("*")), "the resume state outlived the saved model"
    [out] = _record_files(results)
    a, b = json.loads(ref.read_text()), json.loads(out.read_text())
    assert b["budget"]["consumed"]["samples"] == a["budget"]["consumed"]["samples"] > 0
    assert b["metrics"]["main_score"] == a["metrics"]["main_score"]
    assert b["metrics"]["useful_gmacs"] == a["metrics"]["useful_gmacs"]
    sa = np.load(ref.with_name(ref.name.replace(".json", ".samples.npz")))
    sb = np.load(out.with_name(out.name.replace(".json", ".samples.npz")))
    assert (sa["pred"] == sb["pred"]).all() and (sa["ids"] == sb["ids"]).all()
    assert not [p for p in results.rglob("*") if p.is_file() and ".tmp" in p.name]


@pytest.fixture
def cpu_v2(monkeypatch):
    """The cpu tier as a version 2 that changed only the image backbone (text comparable since v1)."""
    import ccbench.common.catalog as cat

    v2 = catalog.budgets().get("cpu").model_copy(update={"version": 2, "comparable_since": {"text": 1}})
    registry = Registry("budget")
    registry.add("cpu", lambda: v2, {})
    monkeypatch.setattr(cat, "budgets", lambda: registry)
    return v2


def test_rows_on_a_replaced_backbone_show_as_the_previous_version(tmp_path, monkeypatch, cpu_v2):
    """Image rows of tier version 1 on the backbone version 2 replaced: in a collapsed "previous
    version" block with the old backbone named, not ranked and not refused; version-2 rows on the
    published backbone are the table."""
    import ccbench.reporting.leaderboard as lb

    old, new = "11" * 32, "22" * 32
    monkeypatch.setattr(lb, "published_backbone_hashes", lambda: {("cpu", "imagenette"): new})
    monkeypatch.setattr(lb, "previous_backbones", lambda: {("cpu", "imagenette"): [
        {"budget": "cpu", "task": "imagenette", "budget_version": 1, "sha256": old, "eval_top1": 68.3,
         "recipe": "from scratch", "checkpoint": "git 2eee781"}]})
    results = tmp_path / "results"
    for method, sha, version in (("dense", old, 1), ("avit", old, 1), ("dense", new, 2)):
        body = run_body(method, knob=("threshold", 0.5) if method == "avit" else ("none", None),
                        task="imagenette", version=version)
        body["task"]["modality"] = "image"
        body["backbone"] = {"sha256": sha, "file": "cpu-imagenette.safetensors"}
        commit(body, results)
    board = tmp_path / "lb" / "README.md"
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(board)]) == 0
    text = board.read_text()
    current, _, previous = text.partition("<details>")
    assert re.search(r"^\| imagenette +\| cpu +\| dense ", current, re.M)
    assert not re.search(r"^\| imagenette +\| cpu +\| avit ", current, re.M) and "Not admitted" not in text
    assert f"Previous leaderboard version: tier cpu v1, backbone <code>{old[:16]}</code> (from scratch" in previous
    assert re.search(r"^\| imagenette +\| cpu +\| avit ", previous, re.M) and "</details>" in previous


def test_a_tier_can_keep_one_modality_comparable_across_versions(cpu_v2):
    """A version that changes only the image backbone declares text comparable since the old version."""
    from ccbench.reporting.leaderboard import tier_refusal

    assert list(cpu_v2.comparable_versions("text")) == [1, 2] and list(cpu_v2.comparable_versions("image")) == [2]
    assert tier_refusal("cpu", {1}, "text") is None
    assert tier_refusal("cpu", {1}, "image") == "budget version differs from tier cpu's version 2"
    assert "comparable for text: 1-2" in tier_refusal("cpu", {3}, "text")
