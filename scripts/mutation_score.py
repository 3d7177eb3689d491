"""Mutation score of ccbench's measurement core (issue 22): a small AST mutation runner.

Each mutant changes ONE operator or constant of a module (``+``/``-``, ``*``/``/``, ``<``/``<=``,
``==``/``!=``, ``and``/``or``, ``not x`` -> ``x``, ``-x`` -> ``x``, an integer ``n`` -> ``n + 1``, a
float ``x`` -> ``x / 2`` (not 0.0), ``True``/``False``, ``None`` defaults are left alone; docstrings and other
strings are never touched) and is run against that module's fast test files (and its doctests). A
mutant is *killed* when a test fails or the run exceeds the timeout, *survives* otherwise.

Speed: the parent imports torch, numpy, timm, fvcore, hypothesis and pytest once and forks one child
per mutant; the child installs the mutated module in ``sys.modules`` before pytest imports ccbench, so
no file on disk is changed and no bytecode cache can serve a stale module.

Not part of CI (slow: every mutant reruns the module's tests). Run, at low priority::

    nice -n 19 python scripts/mutation_score.py stats sampling exits routing cost
    nice -n 19 python scripts/mutation_score.py --list            # modules and their test files
    nice -n 19 python scripts/mutation_score.py routing --tests tests/test_routing.py   # quick lower bound

It prints one line per surviving mutant (``module:line  original -> mutant``) and the score
``killed / total``; ``--json PATH`` writes every mutant's outcome. Judging which survivors are
equivalent (no behaviour change) is left to a reader; see ``scripts/mutation_equivalent.md``.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> (file, its fast test files). Doctests of the module run too.
R, P = "tests/test_regressions.py", "tests/test_properties.py"
MODULES: dict[str, tuple[str, list[str]]] = {
    "stats": ("ccbench/measurement/stats.py", ["tests/test_stats.py", f"{R}::test_bootstrap_ci_width_matches_the_normal_approximation_at_its_level",
                                   f"{P}::test_bootstrap_ci_width_is_within_ten_percent_of_the_normal_approximation",
                                   "tests/test_tables.py"]),
    "sampling": ("ccbench/core/sampling.py", ["tests/test_sampling.py", "tests/test_exits_and_priors.py", "tests/test_avit.py::test_hand_checked_halting_depths_remainders_and_output",
                                         f"{P}::test_halting_depth_is_the_first_block_reaching_the_threshold"]),
    "exits": ("ccbench/core/exits.py", ["tests/test_depth.py", "tests/test_exits_and_priors.py", f"{R}::test_every_exit_head_a_sample_ran_is_counted"]),
    "routing": ("ccbench/measurement/routing.py", ["tests/test_routing.py", "tests/test_moe.py::test_routing_metrics_hand_case",
                                       "tests/test_moe.py::test_chance_corrected_nmi_zero_when_independent_one_for_a_bijection",
                                       f"{R}::test_chance_correction_removes_the_small_sample_bias_of_nmi",
                                       f"{P}::test_nmi_of_a_bijection_is_one_raw_and_near_one_corrected",
                                       "tests/test_shift_transfer.py::test_module_reuse_and_routing_shift_by_hand"]),
    "cost": ("ccbench/measurement/cost.py", ["tests/test_cost_toys.py", "tests/test_cost.py", f"{R}::test_tome_similarity_pairs_are_a_times_b_per_merging_block",
                                 f"{R}::test_every_exit_head_a_sample_ran_is_counted", f"{P}::test_useful_macs_are_monotone_in_tokens_and_units",
                                 f"{P}::test_expert_rows_add_their_cost_and_dense_trace_is_dense"]),
    "trace": ("ccbench/core/trace.py", ["tests/test_trace.py", f"{P}::test_trace_cat_pads_per_token_fields_and_select_inverts_it",
                                   "tests/test_records.py"]),
    "latency": ("ccbench/measurement/latency.py", ["tests/test_latency.py"]),
    "records": ("ccbench/reporting/records.py", ["tests/test_records.py", f"{R}::test_a_record_with_any_changed_field_fails_verification",
                                       "tests/test_fault_injection.py"]),
    "tome": ("baselines/tome.py", ["tests/test_token_methods.py", f"{R}::test_tome_merging_exact_duplicates_is_lossless_with_proportional_attention",
                                   f"{R}::test_tome_similarity_pairs_are_a_times_b_per_merging_block"]),
    "early_exit": ("baselines/early_exit.py", ["tests/test_depth.py", f"{R}::test_every_exit_head_a_sample_ran_is_counted"]),
}
PACKAGE_OF = {"ccbench": "ccbench", "baselines": "ccbench.baselines"}

SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
        ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE,
        ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
        ast.In: ast.NotIn, ast.NotIn: ast.In, ast.And: ast.Or, ast.Or: ast.And, ast.BitAnd: ast.BitOr,
        ast.BitOr: ast.BitAnd}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def mutation_sites(tree: ast.AST) -> list[tuple[int, str, str]]:
    """``(node index in ast.walk order, original, mutant)`` of every single-point mutation."""
    docs = _docstring_nodes(tree)
    sites = []
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP:
            sites.append((i, type(node.op).__name__, SWAP[type(node.op)].__name__))
        elif isinstance(node, ast.BoolOp):
            sites.append((i, type(node.op).__name__, SWAP[type(node.op)].__name__))
        elif isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in SWAP:
                    sites.append((i, f"{type(op).__name__}#{j}", SWAP[type(op)].__name__))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            sites.append((i, type(node.op).__name__, "drop"))
        elif isinstance(node, ast.Constant) and id(node) not in docs:
            v = node.value
            if isinstance(v, bool):
                sites.append((i, repr(v), repr(not v)))
            elif isinstance(v, int):
                sites.append((i, repr(v), repr(v + 1)))
            elif isinstance(v, float) and v != 0.0:  # halving 0.0 changes nothing: not a mutant
                sites.append((i, repr(v), repr(v / 2)))
    return sites


def _in_fstring_or_annotation(tree: ast.AST) -> set[int]:
    """Ids of nodes inside f-strings, annotations or ``raise`` statements (messages, not behaviour)."""
    out = set()
    for node in ast.walk(tree):
        roots = []
        if isinstance(node, ast.JoinedStr):
            roots.append(node)
        if isinstance(node, (ast.arg, ast.AnnAssign)) and getattr(node, "annotation", None) is not None:
            roots.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        if isinstance(node, ast.Raise) and node.exc is not None:
            roots.append(node.exc)
        for r in roots:
            out.update(id(n) for n in ast.walk(r))
    return out


def apply(tree: ast.AST, index: int) -> tuple[ast.AST, int]:
    """A copy of ``tree`` with the mutation at walk index ``index`` applied; also its line."""
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[index]
    if isinstance(node, (ast.BinOp, ast.AugAssign, ast.BoolOp)):
        node.op = SWAP[type(node.op)]()
    elif isinstance(node, ast.Compare):
        raise AssertionError("use apply_compare")
    elif isinstance(node, ast.UnaryOp):
        parent = next(p for p in ast.walk(tree) for f, v in ast.iter_fields(p)
                      if v is node or (isinstance(v, list) and any(x is node for x in v)))
        for f, v in ast.iter_fields(parent):
            if v is node:
                setattr(parent, f, node.operand)
            elif isinstance(v, list):
                setattr(parent, f, [node.operand if x is node else x for x in v])
    elif isinstance(node, ast.Constant):
        v = node.value
        node.value = (not v) if isinstance(v, bool) else (v + 1 if isinstance(v, int) else v / 2)
    return ast.fix_missing_locations(tree), node.lineno


def mutate(tree: ast.AST, index: int, original: str) -> tuple[str, int]:
    """Source of the mutant and the line it changes."""
    if "#" in original:                                           # a comparison operator
        tree = copy.deepcopy(tree)
        node = list(ast.walk(tree))[index]
        j = int(original.split("#")[1])
        node.ops[j] = SWAP[type(node.ops[j])]()
        return ast.unparse(ast.fix_missing_locations(tree)), node.lineno
    new, line = apply(tree, index)
    return ast.unparse(new), line


def run_mutant(path: str, source: str, tests: list[str], timeout: float) -> str:
    """``killed``, ``survived`` or ``timeout`` for ``source`` installed as the module of file ``path``
    (relative to the repository root), its tests run by pytest in a forked child."""
    pid = os.fork()
    if pid == 0:                                                  # child
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import importlib.util

            package = PACKAGE_OF[path.split("/")[0]]
            name = f"{package}.{Path(path).stem}"
            import ccbench  # noqa: F401  (the package itself is not mutated)
            if package != "ccbench":
                importlib.import_module(package)
            spec = importlib.util.spec_from_file_location(name, ROOT / path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            exec(compile(source, str(ROOT / path), "exec"), mod.__dict__)
            import pytest

            code = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", "--no-header",
                                "-o", "addopts=--doctest-modules -m 'not benchmark'", str(ROOT / path), *tests])
            os._exit(0 if code == 0 else 1)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.05)


def preload() -> None:
    """Import the heavy dependencies once, before forking (ccbench itself is imported by each child)."""
    os.chdir(ROOT)
    sys.path[:0] = [str(ROOT / "tests")]
    import fvcore.nn  # noqa: F401
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant (a timeout counts as killed)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many mutants per module (0: all)")
    ap.add_argument("--json", type=Path, help="write every mutant's outcome here")
    ap.add_argument("--list", action="store_true", help="list modules and their test files, then exit")
    ap.add_argument("--tests", nargs="+", metavar="TEST",
                    help="run these test files/nodes instead of the module's list (fewer tests kill no more "
                         "mutants: the score is then a lower bound)")
    args = ap.parse_args(argv)
    if args.list:
        for m, (path, tests) in MODULES.items():
            print(f"{m:11s} {path:28s} {' '.join(tests)}")
        return 0
    preload()

    results, total_killed, total = [], 0, 0
    for module in args.modules or list(MODULES):
        path, tests = MODULES[module]
        tests = args.tests or tests
        src = (ROOT / path).read_text()
        tree = ast.parse(src)
        skip = _in_fstring_or_annotation(tree)
        walk = list(ast.walk(tree))
        sites = [s for s in mutation_sites(tree) if id(walk[s[0]]) not in skip]
        if args.limit:
            sites = sites[:args.limit]
        killed = 0
        t0 = time.monotonic()
        for index, original, new in sites:
            mutant, line = mutate(tree, index, original)
            outcome = run_mutant(path, mutant, tests, args.timeout)
            killed += outcome != "survived"
            results.append({"module": module, "line": line, "from": original, "to": new, "outcome": outcome})
            if outcome == "survived":
                print(f"SURVIVED {path}:{line}  {original} -> {new}  | {src.splitlines()[line - 1].strip()}", flush=True)
        total_killed += killed
        total += len(sites)
        print(f"{module}: {killed}/{len(sites)} killed ({100 * killed / max(len(sites), 1):.1f} %) "
              f"in {time.monotonic() - t0:.0f} s", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(f"TOTAL: {total_killed}/{total} killed ({100 * total_killed / max(total, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
