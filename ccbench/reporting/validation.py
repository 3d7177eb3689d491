"""``ccbench validate``'s checks: whether a run record may be ranked on the leaderboard.

Each check is a pure function of the record, its samples file and the registered task/tier specs and
published backbones; evidence that needs the model (the batch-1/batch-N audit with declared padding,
determinism) is computed by ``ccbench run`` and stored in the record, and checked here. A record
written before that evidence existed fails those checks with a verdict that says so.

Checks (:data:`CHECKS`): ``record-hash`` (id and samples hash), ``eval-split`` (data hash and ``n_eval``
equal the task spec's ``official_eval``), ``backbone`` (weights hash of the published backbone; text:
the tier's encoder fingerprint), ``budget`` (training samples > 0 and at least what the tier asks),
``audit-b1`` / ``audit-bN`` (fvcore-executed MACs = useful + declared padding within 2 %), ``determinism``
(predictions identical at batch 1 and batch N and across two evaluations), ``not-degenerate`` (not a
constant predictor, above the majority-class baseline's 95 % CI), ``provenance`` (a clean tree of this
repository, or a plug-in's distribution, version and source hash), ``method-version`` (written by the
method's current implementation on the task's modality: ``METADATA["versions"]``), ``task-version`` (measured
on the task spec's current version: a new version changes its training or calibration split).

A shift or transfer record is checked for ``record-hash`` alone, except a transfer to a target whose spec
declares a cross-fitted ``transfer_eval`` (the Amazon domains): its ``eval-split`` is
:func:`check_transfer_eval_set`.

Reporting only: no torch, no run side.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ccbench.common import catalog
from ccbench.common.metrics import metric

from .records import RecordError, field_at, load_samples, read_record, scan_records, typed

CHECKS = ("record-hash", "eval-split", "backbone", "budget", "audit-b1", "audit-bN", "determinism",
          "not-degenerate", "provenance", "method-version", "task-version")
AUDIT_TOLERANCE = 0.02  # executed MACs may differ from useful + declared padding by this share
NO_EVIDENCE = "no evidence: record predates validation; re-run, or `ccbench validate --rerun`"
OUTDATED_METHOD = "written by an earlier version of the method's implementation; re-run it"
OUTDATED_TASK = "measured on another version of the task (another training or calibration split); re-run it"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one record: ``name`` (one of :data:`CHECKS`), ``passed``, the measured
    ``figure`` (e.g. ``"n_eval 3925 = spec 3925"``) and, when it failed, ``detail``: why, and the fix."""

    name: str
    passed: bool
    figure: str
    detail: str = ""

    def line(self) -> str:
        """One line: ``PASS name: figure`` or ``FAIL name: figure (detail)``."""
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.figure}" + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)


def _ok(name: str, figure: str) -> CheckResult:
    return CheckResult(name, True, figure)


def _fail(name: str, figure: str, detail: str) -> CheckResult:
    return CheckResult(name, False, figure, detail)


def check_eval_split(record: dict) -> CheckResult:
    """The record's eval data hash and ``n_eval`` equal its task spec's ``official_eval``."""
    task = field_at(record, "task.name")
    n = field_at(record, "task.n_eval") if field_at(record, "task.n_eval") is not None else field_at(record, "metrics.n_eval")
    data = field_at(record, "task.data_hash")
    if task not in catalog.tasks():
        return _fail("eval-split", f"task {task!r}", "the task is not registered")
    spec = catalog.tasks().get(task).official_eval
    if spec is None:
        return _fail("eval-split", f"n_eval {n}", f"task {task} declares no official_eval in its spec; add it")
    same_n, same_data = n == spec.n, data in spec.data_sha256
    figure = (f"n_eval {n} {'=' if same_n else '!='} spec {spec.n}, data {str(data)[:12]} "
              f"{'=' if same_data else '!='} spec")
    if same_n and same_data:
        return _ok("eval-split", figure)
    return _fail("eval-split", figure, "not the official eval split (a subset or other data); re-run on the whole split")


def _cross_fitted(task: str) -> bool:
    """Whether ``task`` is registered and declares a cross-fitted ``transfer_eval``."""
    return task in catalog.tasks() and catalog.tasks().get(task).transfer_eval is not None


def check_transfer_eval_set(record: dict, samples: dict[str, np.ndarray]) -> CheckResult:
    """A transfer record to a target that declares ``transfer_eval`` (a cross-fitted eval set) was measured
    on it: the same scheme, split, folds and seed, its size and data hash, and a samples file holding each
    of its ``n`` examples once with its fold."""
    from ccbench.common.protocols import eval_set_of

    task = field_at(record, "task.name")
    spec = catalog.tasks().get(task).transfer_eval
    said, want = eval_set_of(record), spec.identity()
    n, data = field_at(record, "task.n_eval"), field_at(record, "task.data_hash")
    ids, fold = samples.get("ids", np.array([])), samples.get("fold")
    figure = (f"{said.get('scheme')} {said.get('folds', '')} over {said.get('split')}, n_eval {n} vs spec "
              f"{spec.folds}-fold over {spec.split}, n {spec.n}")
    problems = [what for what, bad in (
        ("another eval set", said != want), ("another size", n != spec.n),
        ("other data", data not in spec.data_sha256), ("repeated or missing examples", len(set(ids.tolist())) != spec.n),
        ("no fold per example", fold is None or len(fold) != len(ids)
         or sorted(set(fold.tolist())) != list(range(spec.folds))),
    ) if bad]
    if not problems:
        return _ok("eval-split", figure)
    return _fail("eval-split", figure, f"{', '.join(problems)}: re-run `ccbench transfer` with this checkout "
                                       f"(it cross-fits {task} as its spec says)")


def published_backbones(budget: str, task: str) -> dict[str, str]:
    """``{sha256: what it is}`` of the backbones a (budget, task) row may start from: the checkpoint
    published in ``checkpoints/manifest.json``, earlier ones in ``checkpoints/previous.json``, and for
    text the tier's encoder fingerprint (``text.backbone_sha256``)."""
    from .leaderboard import previous_backbones, published_backbone_hashes

    out = {}
    tier = catalog.budgets().get(budget) if budget in catalog.budgets() else None
    if tier is not None and tier.text is not None and tier.text.backbone_sha256:
        out[tier.text.backbone_sha256] = f"encoder {tier.text.backbone}"
    sha = published_backbone_hashes().get((budget, task))
    if sha:
        out[sha] = "published checkpoint"
    for e in previous_backbones().get((budget, task), []):
        out.setdefault(e["sha256"], f"previous checkpoint (tier v{e['budget_version']})")
    return out


def check_backbone(record: dict, published: dict[str, str] | None = None) -> CheckResult:
    """The record's backbone weights hash is a published one (``published``: ``{sha256: label}``,
    default :func:`published_backbones`); a text encoder is checked by its hash, not its name."""
    sha = str(field_at(record, "backbone.sha256"))
    if published is None:
        published = published_backbones(field_at(record, "budget.name"), field_at(record, "task.name"))
    if sha in published:
        return _ok("backbone", f"{sha[:12]} = {published[sha]}")
    return _fail("backbone", f"{sha[:12]} not published",
                 "start from the published backbone (checkpoints/manifest.json; text: the tier's encoder)")


def asked_samples(record: dict) -> int | None:
    """Training samples the record's tier asks of its task: the image recipe's, a text task's fixed
    budget, else what the run's recipe said (text budgets in epochs depend on the train split)."""
    budget, task = field_at(record, "budget.name"), field_at(record, "task.name")
    if budget in catalog.budgets():
        tier = catalog.budgets().get(budget)
        if field_at(record, "task.modality") == "text" and tier.text is not None:
            fixed = tier.text.tasks.get(task)
            if fixed is not None and fixed.samples is not None:
                return fixed.samples
        elif field_at(record, "task.modality") != "text":
            return tier.finetune.samples
    asked = field_at(record, "budget.finetune.samples")
    return asked if isinstance(asked, int) else None


def check_budget(record: dict) -> CheckResult:
    """Training consumed more than zero samples and at least what the tier asks."""
    seen, asked = field_at(record, "budget.consumed.samples"), asked_samples(record)
    figure = f"trained {seen} samples, tier asks {asked}"
    if not isinstance(seen, (int, float)) or seen <= 0:
        return _fail("budget", figure, "the model was not fine-tuned; train it under the tier's budget")
    if asked is not None and seen < asked:
        return _fail("budget", figure, "less training than the tier's budget; re-run under the budget")
    return _ok("budget", figure)


def check_audit(record: dict, batch: str) -> CheckResult:
    """fvcore-executed MACs over useful + declared padding within :data:`AUDIT_TOLERANCE` of 1 at
    ``batch`` (``"batch1"`` or ``"batchN"``)."""
    name = "audit-b1" if batch == "batch1" else "audit-bN"
    ratio = field_at(record, f"metrics.executed_over_useful_plus_padding.{batch}")
    size = 1 if batch == "batch1" else field_at(record, "metrics.executed_gmacs.batch_size")
    if not isinstance(ratio, (int, float)):
        return _fail(name, "exec/(useful+pad) not recorded", NO_EVIDENCE)
    figure = f"exec/(useful+pad) {ratio:.3f} @ b{size}"
    if abs(ratio - 1) <= AUDIT_TOLERANCE:
        return _ok(name, figure)
    return _fail(name, figure, "executed compute that is neither useful nor declared padding (masked instead of "
                                "removed?); remove it, or declare the padding in the trace (padding/...)")


def check_determinism(record: dict) -> CheckResult:
    """Predictions identical at batch 1 and batch N, and across two evaluations (``metrics.determinism``)."""
    d = field_at(record, "metrics.determinism")
    if not isinstance(d, dict):
        return _fail("determinism", "not recorded", NO_EVIDENCE)
    n, bn = d.get("samples"), d.get("batch_size")
    b1, again = d.get("batch1_vs_batchN_mismatches"), d.get("repeat_mismatches")
    figure = f"b1 vs b{bn}: {b1}/{n} differ, repeat: {again}/{n} differ"
    if b1 == 0 and again == 0:
        return _ok("determinism", figure)
    return _fail("determinism", figure, "predictions depend on the batch or the call; make inference deterministic")


def majority_baseline(labels: np.ndarray, score_name: str, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """``(score, upper end of its 95 % percentile-bootstrap CI)`` of the best constant predictor (one
    class for every sample) under ``score_name``, in the score's units (%); NaN scores count as 0.

    It depends on the eval labels alone, so it is computed once per eval set and score (the leaderboard
    checks hundreds of records on the same few eval sets)."""
    labels = np.ascontiguousarray(labels)
    return _majority_baseline(labels.tobytes(), labels.dtype.str, score_name, n_boot, seed)


@functools.lru_cache(maxsize=64)
def _majority_baseline(labels_bytes: bytes, dtype: str, score_name: str, n_boot: int, seed: int) -> tuple[float, float]:
    labels = np.frombuffer(labels_bytes, dtype=dtype)
    m = metric(score_name)
    classes = np.unique(labels)

    def best(y: np.ndarray) -> float:
        vals = [m.main(np.full_like(y, c), y) for c in classes]
        return max(0.0 if np.isnan(v) else float(v) for v in vals)

    rng = np.random.default_rng(seed)
    boot = [best(labels[rng.integers(0, len(labels), len(labels))]) for _ in range(n_boot)]
    return best(labels), float(np.quantile(boot, 0.975))


def check_not_degenerate(record: dict, samples: dict[str, np.ndarray]) -> CheckResult:
    """Not a constant predictor, and (classification) a main score above the upper end of the
    majority-class baseline's 95 % CI."""
    pred, label = samples["pred"], samples["label"]
    distinct = len(np.unique(pred))
    if distinct < 2:
        return _fail("not-degenerate", f"one prediction ({pred[0] if len(pred) else '-'}) for all {len(pred)} samples",
                     "a constant predictor; its compute savings mean nothing")
    if pred.dtype.kind == "f" or label.dtype.kind == "f":
        return _ok("not-degenerate", f"{distinct} distinct predictions (regression)")
    main = typed(record).metrics.main_score  # version-1 records: from top1 (the schema's read adapter)
    score, name = main.value, main.name
    base, upper = majority_baseline(label.astype(np.int64), name)
    figure = f"{name} {score:.2f} vs majority class {base:.2f} (CI upper {upper:.2f})"
    if score > upper:
        return _ok("not-degenerate", figure)
    return _fail("not-degenerate", figure, "not better than predicting the majority class")


def check_provenance(record: dict) -> CheckResult:
    """A built-in method run from a clean tree of this repository (``git``), or a plug-in with its
    distribution name, version and source hash (``method.provenance``)."""
    prov = field_at(record, "method.provenance") or {}
    if prov.get("origin") == "plugin":
        fields = [prov.get(k) for k in ("distribution", "version", "source_sha256")]
        figure = f"plug-in {fields[0]} {fields[1]}, source {str(fields[2])[:12]}"
        if all(isinstance(f, str) and f for f in fields):
            return _ok("provenance", figure)
        return _fail("provenance", figure, "install the plug-in as a versioned distribution and re-run")
    commit, dirty = field_at(record, "git.commit"), field_at(record, "git.dirty")
    if commit and dirty is False:
        return _ok("provenance", f"clean tree at {str(commit)[:12]}")
    if commit and dirty:
        return _fail("provenance", f"dirty tree at {str(commit)[:12]}",
                     "written with uncommitted changes; commit them and re-run")
    return _fail("provenance", "no git commit recorded", "run from a git checkout of ccbench")


def check_method_version(record: dict) -> CheckResult:
    """The record's ``method.version`` (1 when absent: written before versions existed) equals the registered
    method's version on the record's modality (:func:`ccbench.common.catalog.registered_version`). A method
    not registered here (a plug-in not installed, or installed methods that cannot be read) cannot be compared
    and passes with that said."""
    name, modality = field_at(record, "method.name"), field_at(record, "task.modality") or "image"
    written = field_at(record, "method.version")
    written = 1 if written is None else written
    current = catalog.registered_version(name, modality)
    if current is None:
        return _ok("method-version", f"v{written} (method not registered here: not compared)")
    figure = f"v{written}, current {modality} v{current}"
    if written == current:
        return _ok("method-version", figure)
    return _fail("method-version", figure, OUTDATED_METHOD)


def check_task_version(record: dict) -> CheckResult:
    """The record's ``task.version`` (1 when absent, as every table reads it) equals the registered task spec's
    version. A record of a task not registered here passes with that said.

    >>> check_task_version({"task": {"name": "sst2", "version": 1}}).detail == OUTDATED_TASK
    True
    """
    name, written = field_at(record, "task.name"), field_at(record, "task.version")
    written = 1 if written is None else written
    if name not in catalog.tasks():
        return _ok("task-version", f"v{written} (task not registered here: not compared)")
    current = catalog.tasks().get(name).version
    figure = f"v{written}, current v{current}"
    if written == current:
        return _ok("task-version", figure)
    return _fail("task-version", figure, OUTDATED_TASK)


def check_record(record: dict, samples: dict[str, np.ndarray], published: dict[str, str] | None = None) -> list[CheckResult]:
    """Every check but ``record-hash`` (see :func:`validate_record`) of a verified run record and its
    samples; ``published``: ``{sha256: label}`` backbones (default :func:`published_backbones`)."""
    return [check_eval_split(record), check_backbone(record, published), check_budget(record),
            check_audit(record, "batch1"), check_audit(record, "batchN"), check_determinism(record),
            check_not_degenerate(record, samples), check_provenance(record), check_method_version(record),
            check_task_version(record)]


def validate_record(path: Path, published: dict[str, str] | None = None, evidence: dict | None = None) -> list[CheckResult]:
    """Every check of :data:`CHECKS` on the run record file ``path``, in that order. A record that
    cannot be read or verified gets one failed ``record-hash`` result. ``evidence`` (from
    ``ccbench validate --rerun``: ``metrics`` fields such as ``executed_over_useful_plus_padding``
    and ``determinism``) replaces the stored evidence."""
    try:
        record = read_record(Path(path))
        samples = load_samples(Path(path))
    except RecordError as err:
        return [_fail("record-hash", "record or samples do not verify", str(err))]
    hash_ok = _ok("record-hash", f"id {record['id'][:12]} and samples verify"
                  + ("" if "samples_sha256" in record else " (no samples hash: older record)"))
    kind = record.get("kind", "run")
    if kind == "transfer" and _cross_fitted(field_at(record, "task.name")):
        return [hash_ok, check_transfer_eval_set(record, samples)]
    if kind != "run":
        return [hash_ok]
    if evidence:
        record = {**record, "metrics": {**record["metrics"], **evidence}}
    return [hash_ok, *check_record(record, samples, published)]


def validate_results(root: Path, published: dict[str, str] | None = None) -> dict[str, list[CheckResult]]:
    """``{record id: checks}`` of every run record under ``root`` (a bad file: keyed by its path, one
    failed ``record-hash``)."""
    good, bad = scan_records(root)
    out: dict[str, list[CheckResult]] = {line.split(": ", 1)[0]: [_fail("record-hash", "record does not verify", line)]
                                         for line in bad}
    for path, record in good:
        if record.get("kind", "run") == "run":
            out[record["id"]] = validate_record(path, published)
    return out


def is_previous_version(failed: list[CheckResult]) -> bool:
    """Whether every failed check in ``failed`` (non-empty) failed only because the record belongs to an earlier
    version of the leaderboard: it predates validation (the audit and determinism evidence is missing), was
    written by an earlier version of its method (``method-version``) or measured on an earlier version of its task
    (``task-version``). The leaderboard shows such a record as the previous version, unranked; any other failure
    lists it as failing."""
    return bool(failed) and all(c.detail in (NO_EVIDENCE, OUTDATED_METHOD, OUTDATED_TASK) for c in failed)


def passed(checks: list[CheckResult]) -> bool:
    """Whether every check passed."""
    return all(c.passed for c in checks)


def status(record: dict, checks: list[CheckResult]) -> str:
    """``verified`` (validates, a built-in method from a clean tree of this repository: re-run from
    source by ccbench's own scripts), ``submitted`` (validates, e.g. a plug-in: not re-run) or
    ``rejected``."""
    if not passed(checks):
        return "rejected"
    return "submitted" if field_at(record, "method.provenance.origin") == "plugin" else "verified"
