"""``ccbench bench``: how much of each method's compute saving becomes wall-clock saving (issue 18).

Every image method, at chosen operating points, is timed against the dense model on the same inputs,
interleaved in one process (:func:`ccbench.measurement.latency.interleaved_latency`), at batch 1 and batch N, on a
tier's published backbone. Per point it prints useful / dense MACs, the realized speedup (dense time /
method time), the ideal speedup (dense MACs / useful MACs of the timed samples) and the efficiency
(realized / ideal). Variant rows time an alternative execution of the same model (``loop``: MoE
through the loop over experts, as before issue 18; ``sdpa``: ToMe's fused attention). A last row times ccbench's dense forward against timm's own ``VisionTransformer``
of the same configuration with the same weights (speedup >= 0.97 means the harness costs nothing).

Trained method weights come from the cache when a run left them there (``$CCBENCH_CACHE/runs``): the
model ``ccbench run`` trained for exactly this point (its knob's build settings when the knob needs
retraining, else the default configuration; found by the store's run name, which needs the task's
data); otherwise the method's modules are freshly initialised on the backbone (column ``weights``: fresh).
Latency depends on the weights only through data-dependent decisions (halting, exits, routing), and
the ideal speedup is measured on the same calls, so efficiency stays meaningful; the MACs fraction of
a fresh data-dependent method need not be its trained operating point. Inputs: the task's eval images
when the image cache or ``CCBENCH_DATA`` has them, else seeded noise (column ``inputs``).

A benchmark, not a test: nothing here asserts a speed. Records in ``results/`` are never touched.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ccbench.common.errors import UserError

# ~50 %-of-dense points (MoE: their trained k / capacity), plus the other measured points
DEFAULT_POINTS: dict[str, list] = {
    "moe-topk": [1], "moe-expert-choice": [0.5, 1.0], "soft-moe": [1, 2], "moefication": [2, 4],
    "tome": [3, 5], "dynamicvit": [0.5], "evit": [0.5], "random-drop": [0.5], "avit": [0.05],
    "avit-masked": [0.05], "early-exit": [0.8], "patience": [2], "layer-skip": [0.5], "static-depth": [6],
    "static-res": [96],
}


def _loop_experts(model) -> None:
    """Variant: MoE layers through the loop over experts (ccbench before issue 18)."""
    model.set_grouped_experts(False)


def _sdpa_attention(model) -> None:
    """Variant: ToMe's attention through scaled_dot_product_attention."""
    model.fused_attention = True


# extra rows per method: (label, change applied to the built model), timed like the default path
VARIANTS: dict[str, list] = {
    "moe-topk": [("loop", _loop_experts)], "moe-expert-choice": [("loop", _loop_experts)],
    "soft-moe": [("loop", _loop_experts)], "moefication": [("loop", _loop_experts)],
    "tome": [("sdpa", _sdpa_attention)],
}


@dataclass
class BenchRow:
    """One operating point's timing: ``batch`` maps batch size -> ``{speedup, ideal, efficiency,
    method_ms, dense_ms, ok}``; ``useful_fraction``: useful / dense MACs of the timed samples."""

    method: str
    knob: str
    weights: str
    useful_fraction: float
    batch: dict = field(default_factory=dict)
    note: str = ""


def parse_points(specs: list[str] | None) -> dict[str, list]:
    """``["tome=2,5", "evit=0.5"]`` -> ``{"tome": [2.0, 5.0], "evit": [0.5]}``; ``UserError`` on bad text."""
    out: dict[str, list] = {}
    for spec in specs or []:
        name, sep, values = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--point {spec!r}: expected METHOD=V1,V2 (e.g. tome=3,5)") from None
    return out


def _inputs(task, tier, backbone, calls: int, seed: int) -> tuple[torch.Tensor, str]:
    """``[calls_needed, 3, px, px]`` normalised eval images (or seeded noise) and where they came from."""
    px = backbone.config.img_size
    try:
        from ccbench.data.augment import normalize, resize
        from ccbench.data.image_data import load_image_split

        split = load_image_split(task, task.eval_split, tier.cache_px, None)
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(split), generator=g)[:calls]
        return resize(normalize(split.images[idx]), px), f"{task.name} eval images"
    except Exception:  # noqa: BLE001 - no data here: noise is fine for timing
        g = torch.Generator().manual_seed(seed)
        return torch.randn(calls, 3, px, px, generator=g), "seeded noise (no image data)"


def _trained_weights(name: str, meta: dict, value, st: "BenchSetting"):
    """The state dict of the model ``ccbench run`` trained and cached for ``name`` at knob ``value``
    (the same run name: build settings, recipe, training data, seed, backbone), or None when it is not
    cached or the task's data (which names it) is not here."""
    from ccbench.common.safefile import load_tensors
    from ccbench.training.model_store import build_for_run

    if st.work is None:
        return None
    try:
        built = build_for_run(name, meta, _point_settings(meta["knob"], value), st.work, st.tier, st.task, st.seed)
    except (ValueError, UserError):
        return None
    if not built.path.exists():
        return None
    try:
        return load_tensors(built.path, f"delete {built.path}")[0]
    except UserError:
        return None


def _workload(tier, task, path: Path, seed: int):
    """The run workload on the published backbone at ``path`` (it names cached trained models), or
    None without the task's data."""
    from ccbench.training.workload import make_workload

    try:
        return make_workload(task, tier, None, seed, str(path), progress=False)
    except (UserError, OSError):
        return None


def _point_settings(knob: dict, value) -> dict:
    """The build settings of knob ``value`` (typed as the knob's default; ``knobs.knob_settings``)."""
    from ccbench.training.knobs import knob_settings

    return knob_settings(knob, None if value is None else type(knob["default"])(value))


def build_point(name: str, backbone, value, state, warm: torch.Tensor):
    """``(model, trained)``: ``name``'s model on a copy of ``backbone`` at knob ``value``, with the
    trained ``state`` loaded when given and it fits (``trained`` says whether it did)."""
    from ccbench.common import catalog
    from ccbench.training.knobs import has_knob

    knob = catalog.methods().metadata(name)["knob"]
    config = _point_settings(knob, value)
    model = catalog.methods().get(name).build(copy.deepcopy(backbone), **config)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError:   # a cached run of another configuration: fresh modules
            state = None
    if state is None:   # calibration of fresh modules (e.g. A-ViT's beta)
        model.prepare(warm)
    if value is not None and has_knob(knob) and not config:
        model.set_knob(value)
    return model.eval(), state is not None


def time_point(model, dense, table, images: torch.Tensor, batch: int, calls: int, warmup: int) -> dict:
    """Interleaved timing of ``model`` vs ``dense`` on ``calls`` batches of ``batch`` images."""
    from ccbench.measurement.cost import dense_macs_per_sample, useful_macs
    from ccbench.measurement.latency import interleaved_latency

    inputs = [images[(i * batch) % len(images):][:batch] for i in range(calls)]
    inputs = [x if x.shape[0] == batch else images[:batch] for x in inputs]
    with torch.inference_mode():
        traces = [model(x).trace for x in inputs]
    useful = sum(float(useful_macs(table, t).sum()) for t in traces)
    dense_macs = sum(float(dense_macs_per_sample(table, t).sum()) for t in traces)
    r = interleaved_latency(model, dense, inputs, warmup)
    ideal = dense_macs / useful
    return {"speedup": r["speedup"], "ideal": round(ideal, 4), "efficiency": round(r["speedup"] / ideal, 4),
            "method_ms": r["method"]["median_ms"], "dense_ms": r["dense"]["median_ms"],
            "ok": r["check"]["ok"], "useful_fraction": useful / dense_macs}


def timm_row(backbone, images: torch.Tensor, batches: list[int], calls: int, warmup: int) -> BenchRow:
    """ccbench's dense forward vs timm's ``VisionTransformer`` (same config and weights): speedup =
    timm time / ccbench time."""
    from ccbench.measurement.latency import interleaved_latency

    vit = copy.deepcopy(backbone.vit).eval()
    ours = copy.deepcopy(backbone).eval()
    row = BenchRow("ccbench dense vs timm", "-", "same", 1.0, note="speedup = timm / ccbench")
    for b in batches:
        inputs = [images[(i * b) % len(images):][:b] for i in range(calls)]
        inputs = [x if x.shape[0] == b else images[:b] for x in inputs]
        r = interleaved_latency(ours, vit, inputs, warmup)
        row.batch[b] = {"speedup": r["speedup"], "ideal": 1.0, "efficiency": r["speedup"],
                        "method_ms": r["method"]["median_ms"], "dense_ms": r["dense"]["median_ms"],
                        "ok": r["check"]["ok"]}
    return row


@dataclass
class BenchSetting:
    """What every timed point shares: the tier, task, published backbone (and its checkpoint), the
    input images ``[n, 3, px, px]`` and where they came from, the dense model, the method names, the
    fine-tuning seed and the run workload that names cached trained models (None without data)."""

    tier: object
    task: object
    backbone: object
    ckpt: object
    images: torch.Tensor
    source: str
    dense: object
    names: list[str]
    seed: int = 0
    work: object = None


def bench_setting(budget: str, task_name: str, methods: list[str] | None, n_images: int, seed: int,
                  threads: int | None, fresh: bool = False) -> BenchSetting:
    """Load the tier's published backbone for ``task_name`` and ``n_images`` inputs; ``UserError`` for a
    text task, a missing checkpoint or an unknown method; with ``fresh`` no workload (no cached weights)."""
    from ccbench.common import catalog
    from ccbench.training.pretrain import load_backbone, published_path

    tier = catalog.budgets().get(budget)
    task = catalog.tasks().get(task_name)
    if task.modality != "image":
        raise UserError(f"ccbench bench times image methods; {task_name!r} is a {task.modality} task")
    path = published_path(tier, task)
    if path is None or not path.exists():
        raise UserError(f"no published backbone checkpoints/{tier.name}-{task.name}.safetensors in this checkout")
    names = methods or [n for n in catalog.methods().names()
                        if n != "dense" and "image" in catalog.methods().metadata(n).get("modalities", [])]
    unknown = [n for n in names if n not in catalog.methods()]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)} (see `ccbench ls methods`)")
    torch.set_num_threads(threads or tier.threads or torch.get_num_threads())
    torch.manual_seed(seed)
    backbone, ckpt = load_backbone(path)
    backbone.eval()
    images, source = _inputs(task, tier, backbone, n_images, seed)
    dense = catalog.methods().get("dense").build(copy.deepcopy(backbone)).eval()
    work = None if fresh else _workload(tier, task, path, seed)
    return BenchSetting(tier, task, backbone, ckpt, images, source, dense, names, seed, work)


def _points(name: str, points: dict[str, list] | None) -> list:
    """The knob values ``name`` is timed at (``[None]`` for a method without a knob)."""
    from ccbench.common import catalog
    from ccbench.training.knobs import has_knob

    meta = catalog.methods().metadata(name)
    if not has_knob(meta["knob"]):
        return [None]
    return {**DEFAULT_POINTS, **(points or {})}.get(name, [meta["knob"].get("default")])


def run_bench(budget: str = "cpu", task_name: str = "imagenette", methods: list[str] | None = None,
              points: dict[str, list] | None = None, batches: tuple[int, ...] = (1, 8), calls: int = 30,
              warmup: int = 5, seed: int = 0, threads: int | None = None, fresh: bool = False,
              variants: bool = True, progress=print) -> tuple[list[BenchRow], dict]:
    """Time every method (default: all image methods but dense) at its points, and with ``variants``
    also the alternative executions of :data:`VARIANTS` (MoE's loop over experts, ToMe's SDPA);
    returns the rows and the setting (threads, inputs, backbone)."""
    from ccbench.common import catalog
    from ccbench.measurement.cost import CostTable

    st = bench_setting(budget, task_name, methods, max(batches) * calls, seed, threads, fresh)
    backbone, images = st.backbone, st.images
    rows = []
    for name in st.names:
        meta = catalog.methods().metadata(name)
        for value in _points(name, points):
            state = _trained_weights(name, meta, value, st)
            try:
                model, trained = build_point(name, backbone, value, state, images[:8])
            except (ValueError, UserError) as err:
                rows.append(BenchRow(name, str(value), "-", float("nan"), note=f"skipped: {err}"))
                progress(format_row(rows[-1], batches))
                continue
            table = CostTable.from_config(backbone.config, units=model.cost_units())
            knob = f"{meta['knob']['name']}={value:g}" if value is not None else "-"
            for label, change in [("", None)] + (VARIANTS.get(name, []) if variants else []):
                if change is not None:
                    change(model)
                row = BenchRow(name, f"{knob} {label}".strip(), "trained" if trained else "fresh", float("nan"))
                for b in batches:
                    res = time_point(model, st.dense, table, images, b, calls, warmup)
                    row.useful_fraction = res.pop("useful_fraction")
                    row.batch[b] = res
                rows.append(row)
                progress(format_row(row, batches))
    rows.append(timm_row(backbone, images, list(batches), calls, warmup))
    progress(format_row(rows[-1], batches))
    setting = {"budget": st.tier.name, "task": st.task.name, "threads": torch.get_num_threads(), "inputs": st.source,
               "calls_per_point": calls, "warmup": warmup, "torch": torch.__version__}
    return rows, setting


def run_profiles(budget: str = "cpu", task_name: str = "imagenette", methods: list[str] | None = None,
                 points: dict[str, list] | None = None, batches: tuple[int, ...] = (1, 8), calls: int = 30,
                 seed: int = 0, threads: int | None = None, fresh: bool = False, progress=print) -> None:
    """Print, per method at its first point and per batch size, where dense's and the method's
    inference time goes (:mod:`ccbench.drivers.bench_profile`)."""
    from ccbench.common import catalog

    from .bench_profile import format_profiles, profile_forward

    st = bench_setting(budget, task_name, methods, max(batches) * calls, seed, threads, fresh)
    depth = len(st.backbone.blocks)
    for name in st.names:
        meta = catalog.methods().metadata(name)
        value = _points(name, points)[0]
        state = _trained_weights(name, meta, value, st)
        model, trained = build_point(name, st.backbone, value, state, st.images[:8])
        knob = f"{meta['knob']['name']}={value:g}" if value is not None else "-"
        profiles = []
        for b in batches:
            inputs = [st.images[(i * b) % len(st.images):][:b] for i in range(calls)]
            inputs = [x if x.shape[0] == b else st.images[:b] for x in inputs]
            profiles += [profile_forward(st.dense, inputs, "dense"), profile_forward(model, inputs, name)]
        progress(f"\n== {name} {knob} ({'trained' if trained else 'fresh'} weights; {st.source}; "
                 f"{torch.get_num_threads()} threads)")
        progress(format_profiles(profiles, depth))


def format_row(row: BenchRow, batches) -> str:
    """One line of the table."""
    cells = [f"{row.method:<22}", f"{row.knob:<16}", f"{row.weights:<7}",
             f"{row.useful_fraction:6.3f}" if row.useful_fraction == row.useful_fraction else "     -"]
    for b in batches:
        r = row.batch.get(b)
        cells.append(f"{r['speedup']:6.3f} {r['ideal']:6.3f} {r['efficiency']:6.3f}{'' if r['ok'] else '?'}"
                     if r else " " * 20)
    return "  ".join(cells) + (f"  {row.note}" if row.note else "")


def header(batches) -> str:
    """Column names of :func:`format_row`."""
    cells = [f"{'method':<22}", f"{'point':<16}", f"{'weights':<7}", "useful"]
    cells += [f"b{b}: speedup  ideal   eff" for b in batches]
    return "  ".join(cells)


def write_json(rows: list[BenchRow], setting: dict, path: Path) -> None:
    """The rows and the setting as JSON at ``path`` (never under results/)."""
    path.write_text(json.dumps({"setting": setting, "rows": [row.__dict__ for row in rows]}, indent=1))
