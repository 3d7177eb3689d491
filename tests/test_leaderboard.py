"""The leaderboard's "Specialization & transfer" section and its helpers (issue 22): which shift and
transfer records it shows (only those of admitted runs), what their rows say (values written out by
hand from the records made here), that strings from records are escaped and file names stay safe, and
that bad records are refused. Tiny records made in the test; no training, no torch."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import ccbench.reporting.leaderboard as lb
from ccbench.common.errors import UserError
from ccbench.reporting.records import RecordError, commit_record, finalize
from record_helpers import bypass_validation_gate, run_body, samples


@pytest.fixture(autouse=True)
def _admit_without_validation(monkeypatch):
    """These tests are about admission by backbone, tier and the shift/transfer sections, on minimal record
    bodies without validation evidence; the validation gate itself is tested in test_validation.py."""
    bypass_validation_gate(monkeypatch)

HOSTILE = "<img src=x onerror=alert(1)>"
SHA = "ab" * 32  # run_body's backbone hash


@pytest.fixture(autouse=True)
def no_published_checkpoints(monkeypatch):
    """No image backbone is published unless a test says so (text rows are admitted by their encoder)."""
    monkeypatch.setattr(lb, "published_backbone_hashes", lambda: {})
    monkeypatch.setattr(lb, "previous_backbones", lambda: {})


def _commit(body: dict, root: Path, prefix: str = "") -> tuple[Path, dict]:
    path = commit_record(finalize(body), samples(), root, prefix=prefix)
    return path, json.loads(path.read_text())


def _shift_body(source: dict, target: str = "imdb", summary: dict | None = None, source_task: str | None = None,
                method: str | None = None) -> dict:
    """A shift record of run ``source``: reference score 80 at 50 % of dense, one condition scoring 77
    at 45 % of dense, routing JS 0.125 bits, domain NMI 0.25, the knob not keeping its compute."""
    condition = {"main_score": {"name": "accuracy", "value": 77.0}, "useful_fraction_of_dense": 0.45,
                 "routing_shift": {"js_bits_mean": 0.125, "domain_nmi_mean": 0.25},
                 "calibration_transfer": {"same_compute": False}}
    return {"kind": "shift", "task": {"name": target, "version": 1}, "budget": {"name": source["budget"]["name"]},
            "method": {**source["method"], **({"name": method} if method else {})}, "seed": 0,
            "source": {"record_id": source["id"], "task": source_task or source["task"]["name"],
                       "task_version": source["task"].get("version"), "backbone_sha256": source["backbone"]["sha256"]},
            "reference": {"main_score": {"name": "accuracy", "value": 80.0}, "useful_fraction_of_dense": 0.5},
            "conditions": [condition],
            "summary": summary or {"all": {"score_drop_mean": 3.0, "fraction_of_dense_change": -0.05}}}


def _transfer_body(source: dict, protocol: str, score: float, target: str = "imdb", decision: bool = False,
                   reuse: tuple | None = None, class_nmi: float | None = None) -> dict:
    """A transfer record of run ``source`` to ``target`` under ``protocol``, at 50 % of dense."""
    metrics = {"main_score": {"name": "accuracy", "value": score}, "useful_fraction_of_dense": 0.5}
    if reuse:
        metrics["module_reuse"] = {"target_share_mean": reuse[0], "source_share_mean": reuse[1]}
    if class_nmi is not None:
        metrics["routing"] = {"mean_over_layers": {"nmi": class_nmi}}
    trainable = {"head": {"params": 10, "trainable": 10}}
    if decision:
        trainable["decision"] = {"params": 4, "trainable": 4}
    return {"kind": "transfer", "task": {"name": target, "version": 1}, "budget": {"name": source["budget"]["name"]},
            "method": source["method"], "seed": 0, "protocol": protocol, "trainable": trainable, "metrics": metrics,
            "source": {"record_id": source["id"], "task": source["task"]["name"],
                       "task_version": source["task"].get("version"), "backbone_sha256": source["backbone"]["sha256"]}}


def _rows(text: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown table rows of ``text`` whose first cell is ``first_cell``."""
    out = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if cells and cells[0] == first_cell:
                out.append(cells)
    return out


def _build(results: Path, tmp_path: Path, strict: bool = False) -> str:
    return lb.write_leaderboard(results, str(tmp_path / "lb" / "README.md"), strict=strict).read_text()


def _section(text: str) -> str:
    head, sep, section = text.partition("## Specialization & transfer")
    assert sep, "no specialization section"
    return section


def test_text_shift_row_shows_reference_target_drop_and_routing_shift(tmp_path):
    """A shift record of an admitted text run is one row: its seed, reference score and share of dense, the
    target's score, the drop, the target's share of dense and its change (points), the routing JS and
    domain NMI, how many conditions kept their compute, and the record id. The record predates issue 24:
    its domain NMI is per pick, so the per-sample cell is '-' and the per-pick one in brackets."""
    results = tmp_path / "results"
    _, run = _commit(run_body("moe-topk", knob=("k", 2)), results)
    _, shift = _commit(_shift_body(run), results, prefix="shift-")
    section = _section(_build(results, tmp_path))
    assert "### Under shift, without adaptation" in section and "**sst2 → imdb**" in section
    assert _rows(section, "moe-topk") == [["moe-topk", "k=2", "0", "80.00", "50.0", "77.00", "+3.00", "45.0", "-5.0",
                                           "0.1250", "- (0.2500)", "0/1", f"`{shift['id'][:12]}`"]]
    assert "### Transfer" not in section  # no transfer record: no transfer table
    assert "![severity curves" not in section  # a text shift has no severities to plot


def test_transfer_rows_give_the_gain_over_the_matching_dense_protocol(tmp_path, monkeypatch):
    """Transfer records of runs that predate validation keep their one-seed table (issue 25's paired table
    is for validated runs, tests/test_track.py): per method one row, a cell per protocol: score, gain over
    the dense run of the same backbone under the reference protocol (router-only vs dense head-only, full vs
    dense full), share of dense; '-' for a protocol not run, 'n/a' for router/modules protocols of a method
    without a decision module; module reuse with the source's share in brackets and the class NMI of the
    full protocol."""
    monkeypatch.setattr(lb, "_validated", lambda runs, checks: ([], {}, runs))  # every run predates validation
    results = tmp_path / "results"
    _, dense = _commit(run_body("dense"), results)
    _, moe = _commit(run_body("moe-topk", knob=("k", 2)), results)
    _commit(_transfer_body(dense, "head-only", 60.0), results)
    _commit(_transfer_body(dense, "full", 70.0), results)
    _commit(_transfer_body(moe, "router-only", 65.0, decision=True), results)
    _commit(_transfer_body(moe, "full", 74.0, decision=True, reuse=(0.75, 0.8), class_nmi=0.3), results)
    # a record written before issue 24 under the protocol's old name: shown as routers-frozen, vs dense full
    _commit(_transfer_body(moe, "modules-frozen", 72.0, decision=True), results)
    section = _section(_build(results, tmp_path))
    assert "### Under shift" not in section and "modules-frozen" not in section
    assert "routers-frozen (head + module)" in section
    # protocols in PROTOCOLS order: head-only, router-only, routers-frozen, full; then the trained-parameter
    # table (roles with their counts; frozen roles left out)
    assert _rows(section, "dense") == [["dense", "-", "60.00 (+0.00) @50%", "n/a", "n/a", "70.00 (+0.00) @50%",
                                        "-", "-"], ["dense", "-", "head 10", "n/a", "n/a", "head 10"]]
    # the class NMI of a record before issue 24 is per pick, and says so
    assert _rows(section, "moe-topk") == [["moe-topk", "k=2", "-", "65.00 (+5.00) @50%", "72.00 (+2.00) @50%",
                                           "74.00 (+4.00) @50%", "0.750 (0.800)", "0.3000 (per pick)"],
                                          ["moe-topk", "k=2", "-", "decision 4 + head 10", "decision 4 + head 10",
                                           "decision 4 + head 10"]]


def test_derived_records_of_runs_that_are_not_admitted_are_left_out(tmp_path):
    """Shift and transfer records whose source run is not admitted (here: a smoke-tier run, which
    evaluates only part of the eval split) get no section at all; an admitted one is shown alone."""
    results = tmp_path / "results"
    _, smoke = _commit(run_body("dense", budget="smoke"), results)
    _, hidden = _commit(_shift_body(smoke), results, prefix="shift-")
    _commit(_transfer_body(smoke, "full", 70.0), results)
    text = _build(results, tmp_path)
    assert "Specialization & transfer" not in text and hidden["id"][:12] not in text

    _, run = _commit(run_body("dense", seed=1), results)
    _, shown = _commit(_shift_body(run), results, prefix="shift-")
    section = _section(_build(results, tmp_path))
    assert shown["id"][:12] in section and hidden["id"][:12] not in section
    assert "### Transfer" not in section  # the only transfer record is the smoke run's


def test_image_shift_severity_plot_is_linked_with_escaped_names_and_a_safe_file_name(tmp_path, monkeypatch):
    """Corrupted-image shift rows (per-severity summary) get a severity-curve plot next to the
    leaderboard; a source task name taken from the record is escaped in the link text, and a name that
    is not a safe file name is replaced by a hash in the plot's file name (no path outside the folder)."""
    monkeypatch.setattr(lb, "published_backbone_hashes", lambda: {("cpu", "imagenette"): SHA})
    results = tmp_path / "results"
    body = run_body("dense", task="imagenette")
    body["task"]["modality"] = "image"
    body["backbone"]["file"] = "cpu-imagenette.safetensors"
    _, run = _commit(body, results)
    per_severity = {str(s): {"score_drop_mean": float(s), "fraction_of_dense_change": 0.01 * s} for s in (1, 2)}
    _commit(_shift_body(run, target="imagenette-c", summary=per_severity), results, prefix="shift-")
    _commit(_shift_body(run, target="imagenette-c", summary=per_severity, source_task=f"../{HOSTILE}",
                        method="moe-topk"), results, prefix="shift-")
    text = _build(results, tmp_path)
    section = _section(text)
    # severities as columns: drop s1, drop s2, Δ% dense s1, Δ% dense s2
    assert _rows(section, "dense")[0][:9] == ["dense", "-", "0", "80.00", "50.0", "+1.00", "+2.00", "+1.0", "+2.0"]
    assert "![severity curves imagenette -> imagenette-c](cpu-imagenette-to-imagenette-c.png)" in section
    assert (tmp_path / "lb" / "cpu-imagenette-to-imagenette-c.png").stat().st_size > 0
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in section
    [crafted] = re.findall(r"!\[severity curves \.\./&lt;img[^\]]*\]\((name-[0-9a-f]{12}\.png)\)", section)
    assert (tmp_path / "lb" / crafted).is_file()
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == sorted(
        ["cpu-imagenette-to-imagenette-c.png", crafted, "cpu-imagenette.png"])


def test_a_tampered_shift_record_is_not_shown_and_strict_refuses_it(tmp_path, capsys):
    """A shift record edited after it was written (its id no longer matches) is skipped with one line
    on stderr; with ``strict`` the build is refused before anything is written."""
    results = tmp_path / "results"
    _, run = _commit(run_body("dense"), results)
    path, shift = _commit(_shift_body(run), results, prefix="shift-")
    edited = json.loads(path.read_text())
    edited["reference"]["main_score"]["value"] = 99.0
    path.write_text(json.dumps(edited))
    text = _build(results, tmp_path)
    assert "Specialization & transfer" not in text and shift["id"][:12] not in text
    assert "id does not match its content" in capsys.readouterr().err
    with pytest.raises(RecordError, match="id does not match its content"):
        lb.write_leaderboard(results, str(tmp_path / "strict" / "README.md"), strict=True)
    assert not (tmp_path / "strict").exists()


def _with_previous(monkeypatch, tmp_path: Path, content: str | None):
    """``previous_backbones`` reading ``checkpoints/previous.json`` under a repository root in ``tmp_path``."""
    monkeypatch.undo()  # the real previous_backbones, not the autouse stub
    monkeypatch.setattr(lb, "repo_root", lambda: tmp_path)
    if content is not None:
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "previous.json").write_text(content)
    return lb.previous_backbones()


def test_previous_backbones_are_grouped_by_budget_and_task(tmp_path, monkeypatch):
    """Entries of ``checkpoints/previous.json`` are grouped by (budget, task), in file order; no file:
    no previous backbones."""
    assert _with_previous(monkeypatch, tmp_path / "empty", None) == {}
    entry = {"budget": "cpu", "task": "imagenette", "budget_version": 1, "sha256": "11" * 32, "eval_top1": 68.3,
             "recipe": "from scratch", "checkpoint": "git 2eee781"}
    second = {**entry, "sha256": "22" * 32}
    other = {**entry, "task": "imagenette-a"}
    got = _with_previous(monkeypatch, tmp_path, json.dumps([entry, other, second]))
    assert got == {("cpu", "imagenette"): [entry, second], ("cpu", "imagenette-a"): [other]}


@pytest.mark.parametrize("content", ["{not json", json.dumps({"budget": "cpu"}),
                                     json.dumps([{"budget": "cpu", "task": "imagenette"}])])
def test_a_malformed_previous_backbones_file_is_refused(tmp_path, monkeypatch, content):
    """Not JSON, not a list, or an entry lacking a field: one UserError naming the file and the fix."""
    with pytest.raises(UserError) as err:
        _with_previous(monkeypatch, tmp_path, content)
    assert str(tmp_path / "checkpoints" / "previous.json") in str(err.value) and "restore it from git" in str(err.value)


def test_an_unregistered_tier_has_no_text_encoder_and_is_refused():
    """Rows of a budget tier that is not registered are refused with the reason; such a tier names no
    text encoder (the registered cpu tier names its public one)."""
    assert lb.tier_refusal("no-such-tier", {1}) == "the budget tier is not registered"
    assert lb.text_backbone_name("no-such-tier") is None
    assert lb.text_backbone_name("cpu") == "minilm-l6"


def test_a_regenerated_leaderboard_removes_the_plots_it_no_longer_links(tmp_path):
    (tmp_path / "cpu-gone.png").write_bytes(b"\x89PNG")
    (tmp_path / "cpu-kept.png").write_bytes(b"\x89PNG")
    (tmp_path / "notes.txt").write_text("not a plot")
    assert lb._remove_unlinked_plots(tmp_path, "text ![plot](cpu-kept.png)\n") == ["cpu-gone.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu-kept.png", "notes.txt"]
