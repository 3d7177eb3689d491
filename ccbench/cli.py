"""``ccbench`` command line: run | ls | pretrain | table | leaderboard.

User mistakes print one line and exit with code 2; Ctrl-C exits with 130 and leaves no
half-written record (every file is written to a temporary name and renamed).
"""
from __future__ import annotations

import argparse
import os
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="imagenette", help="task name (see `ccbench ls tasks`)")
    p.add_argument("--budget", default="cpu", help="budget tier (see `ccbench ls budgets`)")
    p.add_argument("--data-dir", default=None,
                   help="local data root (default: $CCBENCH_DATA; unset = load from the hub)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the tier's first seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train (under the tier's budget) and measure a method on a task")
    run.add_argument("--method", required=True, help="method name (see `ccbench ls methods`)")
    _common(run)
    run.add_argument("--knob", default=None,
                     help="knob value(s), e.g. `threshold=0.9` or `threshold=0.9,0.99`; default: "
                          "chosen on the calibration split (or the method's default)")
    run.add_argument("--results-dir", default=None, help="where records go (default: ./results)")
    run.add_argument("--backbone", default=None, help="explicit backbone checkpoint path")
    run.add_argument("--resume", action="store_true", help="continue an interrupted training run")

    ls = sub.add_parser("ls", help="list methods, tasks, budgets or backbones")
    ls.add_argument("what", choices=["methods", "tasks", "budgets", "backbones"])

    pre = sub.add_parser("pretrain", help="train the tier's dense backbone once")
    _common(pre)
    pre.add_argument("--out", default=None, help="checkpoint path (default: the cache)")
    pre.add_argument("--no-resume", action="store_true", help="start over instead of resuming")

    tab = sub.add_parser("table", help="table of result records")
    tab.add_argument("--results-dir", default=None)
    tab.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    tab.add_argument("--task", default=None)
    tab.add_argument("--budget", default=None)

    lb = sub.add_parser("leaderboard", help="regenerate leaderboard/README.md from results/")
    lb.add_argument("--results-dir", default=None)
    lb.add_argument("--out", default=None)
    return parser


def cmd_ls(args) -> int:
    from tabulate import tabulate

    from . import catalog

    reg = {"methods": catalog.methods, "tasks": catalog.tasks, "budgets": catalog.budgets,
           "backbones": catalog.backbones}[args.what]()
    rows = []
    for name in reg.names():
        m = reg.metadata(name)
        if args.what == "methods":
            k = m["knob"]
            rows.append([name, m["family"], m["paper"], f"{k['name']} ({k['direction']})",
                         ",".join(m["modalities"]), reg.entry(name).source])
        elif args.what == "tasks":
            rows.append([name, m["version"], m["modality"], m["main_score"], (m["description"] or "")[:70]])
        elif args.what == "budgets":
            rows.append([name, m["version"], m["device"], (m["description"] or "")[:90]])
        else:
            rows.append([name, m.get("description", "")])
    headers = {"methods": ["method", "family", "paper", "knob", "modalities", "source"],
               "tasks": ["task", "version", "modality", "main score", "description"],
               "budgets": ["budget", "version", "device", "description"],
               "backbones": ["backbone", "description"]}[args.what]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    return 0


def cmd_pretrain(args) -> int:
    from . import catalog
    from .pretrain import pretrain

    task = catalog.tasks().get(args.task)
    budget = catalog.budgets().get(args.budget)
    seed = budget.seeds[0] if args.seed is None else args.seed
    ckpt = pretrain(budget, task, args.data_dir, seed=seed, resume=not args.no_resume,
                    out=args.out, progress=not args.quiet)
    m = ckpt.meta
    print(f"backbone {ckpt.path}\n  sha256 {ckpt.sha256}\n  {task.eval_split} top-1 {m['eval_top1']:.2f}% "
          f"(calibration {m['calib_top1']:.2f}%), {m['samples']} samples, "
          f"{m['train_wall_s'] / 60:.1f} min training")
    return 0


def cmd_run(args) -> int:
    from .runner import run_method

    run_method(method=args.method, task=args.task, budget=args.budget, data_dir=args.data_dir,
               seed=args.seed, knob=args.knob, results_dir=args.results_dir,
               backbone_path=args.backbone, resume=args.resume, progress=not args.quiet)
    return 0


def cmd_table(args) -> int:
    from .tables import load_table, render

    df = load_table(args.results_dir, task=args.task, budget=args.budget)
    print(render(df, args.format))
    return 0


def cmd_leaderboard(args) -> int:
    from .leaderboard import write_leaderboard

    path = write_leaderboard(args.results_dir, args.out)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import UserError

    args = build_parser().parse_args(argv)
    handler = {"ls": cmd_ls, "pretrain": cmd_pretrain, "run": cmd_run, "table": cmd_table,
               "leaderboard": cmd_leaderboard}[args.command]
    try:
        return handler(args)
    except UserError as err:
        print(f"ccbench: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ccbench: interrupted; nothing half-written was kept (rerun with --resume to continue "
              "training)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
