"""``ccbench`` command line: run | sweep | shift | transfer | ls | pretrain | cost | table | plot | leaderboard | submit | cite | manifest | bench.

User mistakes print one line and exit with code 2; Ctrl-C exits with 130 and leaves no
half-written record (every file is written to a temporary name and renamed).
"""
from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (what is wrong, where to look), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


OTHER_CPU_HELP = ("accept a source model trained again here, on another CPU model than its record's, as another "
                  "draw of the record's recipe (it must agree on >= 90 %% of the record's predictions and score "
                  "within the record's 95 %% interval); its record says so (source.other_cpu)")


def _seed(text: str) -> int:
    """``--seed`` value: an integer in [0, 2**32)."""
    from ccbench.common.errors import UserError, check_seed

    try:
        return check_seed(int(text))
    except (ValueError, UserError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer from 0 to 4294967295") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="imagenette", help="task name (see `ccbench ls tasks`)")
    p.add_argument("--budget", default="cpu", help="budget tier (see `ccbench ls budgets`)")
    p.add_argument("--data-dir", default=None,
                   help="local data root (default: $CCBENCH_DATA; unset = load from the hub)")
    p.add_argument("--seed", type=_seed, default=None, help="seed (default: the tier's first seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every subcommand."""
    parser = _Parser(prog="ccbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train (under the tier's budget) and measure a method on a task")
    run.add_argument("--method", required=True, help="method name (see `ccbench ls methods`)")
    _common(run)
    run.add_argument("--knob", default=None,
                     help="knob value(s), e.g. `threshold=0.9` or `threshold=0.9,0.99`; default: "
                          "chosen on the calibration split (or the method's default)")
    run.add_argument("--grid", default=None,
                     help="compute grid, e.g. `25,50,75`: the knob values that land on these %% of dense useful "
                          "MACs on the calibration split (+-2 points; else the nearest, marked), one record each; "
                          "a knob that needs retraining picks among the --knob values (default: its sweep)")
    run.add_argument("--results-dir", default=None, help="where records go (default: ./results)")
    run.add_argument("--backbone", default=None, help="explicit backbone checkpoint path (text tasks: an HF model id or folder)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted training run")
    run.add_argument("--train-only", action="store_true",
                     help="fine-tune (or find the cached model) and stop; a later run measures it")

    _add_sweep_parser(sub)

    sh = sub.add_parser("shift", help="evaluate a trained run (record id) on a shifted split, without adaptation")
    sh.add_argument("record", help="id (or its first 6+ characters, or the path) of a `ccbench run` record")
    sh.add_argument("--to", required=True, dest="target",
                    help="shift target task: imagenette-c, imdb, amazon-<books|dvd|electronics|kitchen>")
    sh.add_argument("--data-dir", default=None, help="local data root (default: $CCBENCH_DATA)")
    sh.add_argument("--results-dir", default=None, help="where records are read and written (default: ./results)")
    sh.add_argument("--quiet", action="store_true", help="no progress bars")
    sh.add_argument("--accept-other-cpu-copy", action="store_true", help=OTHER_CPU_HELP)

    tr = sub.add_parser("transfer", help="move a trained run (record id) to a new task under a protocol")
    tr.add_argument("record", help="id (or its first 6+ characters, or the path) of a `ccbench run` record (the source)")
    tr.add_argument("--to", required=True, dest="target", help="target task, e.g. imagenette-b")
    tr.add_argument("--protocol", required=True, help="head-only | router-only | routers-frozen | full")
    tr.add_argument("--data-dir", default=None, help="local data root (default: $CCBENCH_DATA)")
    tr.add_argument("--results-dir", default=None, help="where records are read and written (default: ./results)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument("--accept-other-cpu-copy", action="store_true", help=OTHER_CPU_HELP)

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
    tab.add_argument("--strict", action="store_true",
                     help="refuse (exit 2) when any record file is bad instead of skipping it")

    cost = sub.add_parser("cost", help="print the per-component MAC table of a tier's backbone")
    cost.add_argument("--budget", default="cpu", help="tier whose backbone to describe")
    cost.add_argument("--img-size", type=int, default=None, help="override the input resolution (px)")
    cost.add_argument("--num-classes", type=int, default=10)
    cost.add_argument("--method", default=None, help="also list this method's own components (per unit)")
    cost.add_argument("--task", default=None, help="a text task: describe the tier's text encoder instead")
    cost.add_argument("--tokens", type=int, default=None, help="text: tokens per sample (default: the task's maximum)")

    plot = sub.add_parser("plot", help="pictures of a record (routing heatmaps)")
    plot.add_argument("what", choices=["routing"])
    plot.add_argument("record", help="path of a record JSON in results/")
    plot.add_argument("--out", default=None, help="PNG path (default: beside the record)")

    _add_bench_parser(sub)

    lb = sub.add_parser("leaderboard", help="regenerate leaderboard/README.md from results/")
    lb.add_argument("--results-dir", default=None)
    lb.add_argument("--out", default=None)
    lb.add_argument("--strict", action="store_true",
                    help="refuse (exit 2) when any record file is bad instead of skipping it")
    val = sub.add_parser("validate", help="check records against the leaderboard's rules (exit 1 when any fails)")
    val.add_argument("target", help="a record id (prefix), a record .json, or a results folder")
    val.add_argument("--results-dir", default=None, help="where record ids are looked up (default: results/)")
    val.add_argument("--json", action="store_true", help="machine-readable verdicts")
    val.add_argument("--rerun", action="store_true",
                     help="recompute the audit and determinism evidence from the run's cached trained model")
    val.add_argument("--data-dir", default=None, help="data for --rerun (default: $CCBENCH_DATA)")
    sm = sub.add_parser("submit", help="bundle records, samples, method source and environment for a pull request")
    sm.add_argument("records", nargs="+", help="record ids (6+ leading characters) or record file paths")
    sm.add_argument("--out", required=True, help="the new bundle folder (never written over)")
    sm.add_argument("--results-dir", default=None, help="where record ids are looked up (default: ./results)")
    ci = sub.add_parser("cite", help="BibTeX for a record: ccbench, the method's paper, the record")
    ci.add_argument("record", help="id (6+ leading characters) or path of a run record")
    ci.add_argument("--results-dir", default=None, help="where the record is looked up (default: ./results)")
    ci.add_argument("--leaderboard", default=None,
                    help="leaderboard folder holding version.json (default: the checkout's leaderboard/)")
    man = sub.add_parser("manifest", help="regenerate checkpoints/manifest.json from the checkpoint headers")
    man.add_argument("--check", action="store_true",
                     help="only say whether the manifest agrees with the headers (exit 2 when not)")
    return parser


def cmd_ls(args) -> int:
    """Print a registry's names with their metadata."""
    from tabulate import tabulate

    from ccbench.common import catalog

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
    """Pretrain (or resume) the tier's backbone and print its hash and accuracy."""
    from ccbench.common import catalog
    from ccbench.training.pretrain import backbone_seed, pretrain

    task = catalog.tasks().get(args.task)
    budget = catalog.budgets().get(args.budget)
    if task.modality == "text":
        from ccbench.common.errors import UserError

        name = budget.text.backbone if budget.text else "none"
        raise UserError(f"text tasks start from the tier's pretrained encoder ({name}); nothing to pretrain: "
                        f"run `ccbench run --method dense --task {task.name}`")
    seed = backbone_seed(budget) if args.seed is None else args.seed
    ckpt = pretrain(budget, task, args.data_dir, seed=seed, resume=not args.no_resume,
                    out=args.out, progress=not args.quiet)
    m = ckpt.meta
    print(f"backbone {ckpt.path}\n  sha256 {ckpt.sha256}\n  {task.eval_split} top-1 {m['eval_top1']:.2f}% "
          f"(calibration {m['calib_top1']:.2f}%), {m['samples']} samples, "
          f"{m['train_wall_s'] / 60:.1f} min training")
    return 0


def cmd_shift(args) -> int:
    """Evaluate a run on a shift target and write the shift record."""
    from ccbench.drivers.shift import shift_run

    shift_run(args.record, args.target, args.data_dir, args.results_dir, progress=not args.quiet,
              accept_other_cpu_copy=args.accept_other_cpu_copy)
    return 0


def cmd_transfer(args) -> int:
    """Transfer a run to a new task and write the transfer record."""
    from ccbench.drivers.transfer import transfer_run

    transfer_run(args.record, args.target, args.protocol, args.data_dir, args.results_dir, progress=not args.quiet,
                 accept_other_cpu_copy=args.accept_other_cpu_copy)
    return 0


def cmd_plot(args) -> int:
    """Write a picture of one record."""
    from ccbench.reporting.plots import plot_routing

    print(plot_routing(args.record, args.out))
    return 0


def cmd_cost(args) -> int:
    """Print the per-component MAC table of a tier's backbone."""
    from ccbench.common import catalog
    from ccbench.core.backbones import ViTConfig
    from ccbench.measurement.cost import CostTable

    if args.task and catalog.tasks().get(args.task).modality == "text":
        return _text_cost(args)
    b = catalog.budgets().get(args.budget).backbone
    cfg = ViTConfig(img_size=args.img_size or b.img_size, patch_size=b.patch_size, embed_dim=b.embed_dim,
                    depth=b.depth, num_heads=b.num_heads, mlp_ratio=b.mlp_ratio, num_classes=args.num_classes)
    t = CostTable.from_config(cfg)
    n, d = cfg.num_tokens, cfg.embed_dim
    rows = [["patch embedding (conv)", "per sample", t.patch_embed],
            *_block_rows(t, n),
            ["final LayerNorm (class token) + head", "per sample", t.head],
            ["dense total", f"{cfg.depth} blocks", t.dense_macs()]]
    if args.method:
        import torch

        from ccbench.core.backbones import ViTBackbone

        with torch.device("meta"):  # shapes only: no weights are allocated or initialised
            model = catalog.methods().get(args.method).build(ViTBackbone(cfg))
        for unit, macs in sorted(model.cost_units().items()):
            rows.append([f"{args.method}: {unit}", "per unit (trace field units/" + unit + ")", macs])
    return _print_cost_table(f"{args.budget} backbone at {cfg.img_size}px / patch {cfg.patch_size}: {n} tokens, "
                             f"D={d}, {cfg.depth} blocks, MLP {cfg.mlp_hidden}", rows)


def _print_cost_table(header: str, rows: list[list]) -> int:
    """Print ``header`` and the (component, scope, MACs) ``rows`` as a table; returns exit code 0."""
    from tabulate import tabulate

    print(header)
    print(tabulate([[a, b_, f"{m:,}", f"{m / 1e9:.4f}"] for a, b_, m in rows],
                   headers=["component", "scope", "MACs", "GMACs"], tablefmt="github", disable_numparse=True))
    print("1 MAC = one multiply-add (fvcore's convention); FLOPs = 2 x MACs. Element-wise ops count 0.")
    return 0


def _block_rows(t, n: int) -> list[list]:
    """The per-block rows of a MAC table (component, scope, MACs) at ``n`` tokens."""
    c = t.block_components(n)
    scope = f"per block, {n} tokens"
    return [["LayerNorm x2 (5 per element)", scope, c["attention_norm"] + c["mlp_norm"]],
            ["q, k, v projections", scope, c["qkv"]],
            ["attention scores + weighted values", scope, c["attention"]],
            ["output projection", scope, c["output_projection"]],
            ["MLP fc1 + fc2", scope, c["mlp"]],
            ["one block", f"{n} tokens", t.block(n)]]


def _text_cost(args) -> int:
    """``ccbench cost --task <text task>``: the text encoder's table at ``--tokens`` tokens."""
    from transformers import AutoConfig

    from ccbench.common import catalog
    from ccbench.common.errors import UserError
    from ccbench.core.text_backbone import TextConfig, resolve_text_model
    from ccbench.measurement.cost import CostTable

    task, tier = catalog.tasks().get(args.task), catalog.budgets().get(args.budget)
    if tier.text is None:
        raise UserError(f"budget {args.budget!r} has no text section")
    hf = AutoConfig.from_pretrained(resolve_text_model(tier.text.backbone))
    cfg = TextConfig(hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads, hf.intermediate_size,
                     1 if task.text.regression else len(task.classes), task.text.max_length)
    t = CostTable.from_text_config(cfg)
    n, d = args.tokens or cfg.max_length, cfg.embed_dim
    rows = [["embedding lookups (0) + LayerNorm", f"per sample, {n} tokens", t.embed_per_token * n],
            *_block_rows(t, n),
            ["classifier on [CLS]", "per sample", t.head],
            ["dense total", f"{cfg.depth} blocks, {n} tokens", t.dense_macs(n)]]
    return _print_cost_table(f"{args.budget} text encoder {tier.text.backbone} for {task.name}: {n} tokens, D={d}, "
                             f"{cfg.depth} blocks, MLP {cfg.mlp_hidden}; a sample's cost uses its own (unpadded) length",
                             rows)


def _add_sweep_parser(sub) -> None:
    """``ccbench sweep`` (issue 20): a sweep file's missing jobs, locally or on Ray."""
    sw = sub.add_parser("sweep", help="run the jobs of a sweep file (sweeps/*.yaml) whose records are missing")
    sw.add_argument("file", help="sweep file, e.g. sweeps/smoke.yaml")
    sw.add_argument("--executor", default="local", help="local (default: one job after another) or ray")
    sw.add_argument("--address", default=None,
                    help="ray: join this cluster (e.g. auto, or ray://host:10001) instead of starting a local one")
    sw.add_argument("--num-cpus", type=int, default=None, help="ray: CPUs of the local cluster (default: all)")
    sw.add_argument("--dry-run", action="store_true", help="list the jobs, what each would cost and which are done")
    sw.add_argument("--results-dir", default=None, help="where records are read and written (default: ./results)")
    sw.add_argument("--data-dir", default=None, help="local data root (default: $CCBENCH_DATA)")
    sw.add_argument("--quiet", action="store_true", help="no progress bar (the status lines stay)")
    sw.add_argument("--retime", action="store_true",
                    help="also re-run jobs whose records' latency timing was disturbed (run it on an idle machine: "
                         "the cached fine-tuned models are re-measured and the new records supersede)")
    sw.add_argument("--accept-other-cpu-copies", action="store_true",
                    help="shift and transfer jobs: " + OTHER_CPU_HELP.replace("accept a ", "accept each "))


def cmd_sweep(args) -> int:
    """Run (or list) a sweep's missing jobs; exit 1 when any failed."""
    from ccbench.drivers.sweep import run_sweep

    return run_sweep(args.file, args.executor, args.results_dir, args.data_dir, args.dry_run, args.address,
                     args.num_cpus, progress=not args.quiet, retime=args.retime,
                     accept_other_cpu_copies=args.accept_other_cpu_copies)


def cmd_run(args) -> int:
    """Train and measure one method; write its record(s)."""
    from ccbench.drivers.runner import run_method
    from ccbench.training.grid import parse_grid

    run_method(method=args.method, task=args.task, budget=args.budget, data_dir=args.data_dir,
               seed=args.seed, knob=args.knob, results_dir=args.results_dir,
               backbone_path=args.backbone, resume=args.resume, progress=not args.quiet,
               train_only=args.train_only, grid=parse_grid(args.grid))
    return 0


def cmd_table(args) -> int:
    """Print the results table."""
    from ccbench.reporting.records import require_valid_records
    from ccbench.reporting.tables import load_table, render

    if args.strict:
        require_valid_records(args.results_dir)
    df = load_table(args.results_dir, task=args.task, budget=args.budget)
    print(render(df, args.format))
    return 0


def cmd_leaderboard(args) -> int:
    """Regenerate the leaderboard."""
    from ccbench.reporting.leaderboard import write_leaderboard

    path = write_leaderboard(args.results_dir, args.out, strict=args.strict)
    print(f"wrote {path} and {path.parent / 'site' / 'index.html'}")
    return 0


def cmd_submit(args) -> int:
    """Write a submission bundle; print where its manifest is and what to do next."""
    from ccbench.drivers.submit import submit

    manifest = submit(args.records, args.out, args.results_dir)
    print(f"wrote {manifest}\nnext: copy the bundle over a fork of ccbench (`cp -rn {args.out}/. <checkout>/`) and open "
          f"a pull request; CI runs `ccbench validate` on it (see SUBMITTING.md)")
    return 0


def cmd_cite(args) -> int:
    """Print BibTeX for one record."""
    from pathlib import Path

    from ccbench.common.provenance import repo_root
    from ccbench.reporting.citation import cite, read_version
    from ccbench.reporting.leaderboard import registered_methods
    from ccbench.reporting.records import find_record

    _, record = find_record(args.record, args.results_dir)
    folder = Path(args.leaderboard) if args.leaderboard else (repo_root() or Path.cwd()) / "leaderboard"
    print(cite(record, read_version(folder), registered_methods()), end="")
    return 0


def cmd_validate(args) -> int:
    """Validate records; exit 1 when any check fails."""
    from ccbench.drivers.validate import validate

    return validate(args.target, args.results_dir, args.json, args.rerun, args.data_dir)


def _add_bench_parser(sub) -> None:
    """``ccbench bench`` (issue 18): efficiency of every method against dense, batch 1 and batch N."""
    bench = sub.add_parser("bench", help="time every method against dense (efficiency at batch 1 and N)")
    bench.add_argument("--budget", default="cpu", help="tier whose published backbone to time on")
    bench.add_argument("--task", default="imagenette", help="image task (its eval images are the inputs)")
    bench.add_argument("--method", action="append", default=None, help="only this method (repeatable)")
    bench.add_argument("--point", action="append", default=None,
                       help="operating points METHOD=V1,V2 (knob values) instead of the defaults (repeatable)")
    bench.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    bench.add_argument("--calls", type=int, default=30, help="timed calls per point and batch size")
    bench.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: the tier's)")
    bench.add_argument("--fresh", action="store_true", help="never load cached trained method weights")
    bench.add_argument("--profile", action="store_true",
                       help="instead of the table: where each method's time goes next to dense (per kind of op)")
    bench.add_argument("--no-variants", action="store_true",
                       help="skip the variant rows (MoE's loop over experts, ToMe's SDPA attention)")
    bench.add_argument("--seed", type=_seed, default=0)
    bench.add_argument("--json", default=None, help="also write the rows as JSON here (never under results/)")


def cmd_bench(args) -> int:
    """Print the efficiency table (see ``ccbench.drivers.bench``)."""
    from pathlib import Path

    from ccbench.common.errors import UserError
    from ccbench.drivers.bench import (
        header,
        parse_points,
        run_bench,
        run_profiles,
        write_json,
    )

    try:
        batches = tuple(int(b) for b in args.batch_sizes.split(","))
        if not batches or min(batches) < 1:
            raise ValueError
    except ValueError:
        raise UserError(f"--batch-sizes {args.batch_sizes!r}: expected positive integers like 1,8") from None
    if args.calls < 1 or args.warmup < 0:
        raise UserError("--calls must be >= 1 and --warmup >= 0")
    if args.profile:
        run_profiles(args.budget, args.task, args.method, parse_points(args.point), batches, args.calls,
                     args.seed, args.threads, args.fresh)
        return 0
    print(header(batches))
    rows, setting = run_bench(args.budget, args.task, args.method, parse_points(args.point), batches, args.calls,
                              args.warmup, args.seed, args.threads, args.fresh, not args.no_variants)
    print(f"setting: {setting}; useful = useful / dense MACs; eff = speedup / ideal; "
          f"'?' = the dense-vs-dense control was out of range (a loaded machine)")
    if args.json:
        write_json(rows, setting, Path(args.json))
        print(f"wrote {args.json}")
    return 0


def cmd_manifest(args) -> int:
    """Write (or with ``--check`` verify) ``checkpoints/manifest.json`` from the checkpoint headers."""
    from pathlib import Path

    from ccbench.common.errors import UserError
    from ccbench.common.provenance import repo_root
    from ccbench.reporting.manifest import manifest_problem, write_manifest

    folder = (repo_root() or Path.cwd()) / "checkpoints"
    if args.check:
        problem = manifest_problem(folder)
        if problem:
            raise UserError(problem)
        print(f"{folder / 'manifest.json'} agrees with the checkpoint headers")
        return 0
    print(f"wrote {write_manifest(folder)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    from ccbench.common.errors import UserError
    from ccbench.reporting.records import start_report
    from ccbench.training.distributed import reset_training_stamp

    args = build_parser().parse_args(argv)
    start_report()
    reset_training_stamp()
    handler = {"cost": cmd_cost, "plot": cmd_plot, "ls": cmd_ls, "pretrain": cmd_pretrain, "run": cmd_run, "sweep": cmd_sweep, "shift": cmd_shift,
               "transfer": cmd_transfer,
               "table": cmd_table,
               "leaderboard": cmd_leaderboard, "validate": cmd_validate, "submit": cmd_submit, "cite": cmd_cite,
               "manifest": cmd_manifest, "bench": cmd_bench}[args.command]
    try:
        return handler(args)
    except UserError as err:
        for line in str(err).splitlines():  # one line per problem (e.g. each bad record under --strict)
            print(f"ccbench: error: {line}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ccbench: interrupted; nothing half-written was kept (rerun with --resume to continue "
              "training)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ccbench ls methods | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # as a process ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
