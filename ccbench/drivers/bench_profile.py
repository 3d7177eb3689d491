"""``ccbench bench --profile``: where a method's inference time goes, next to dense (issue 18).

A forward pass is profiled with ``torch.profiler`` and every operator's self time is put in one of a
few kinds (matmuls, attention core, elementwise and norms, data movement, other); what the profiler
does not see (Python, dispatch, the gap between operators) is the wall time minus the operators'
self time. Figures are milliseconds per forward and per block (divided by the backbone's depth), so
a method's bookkeeping (gathers, sorts, masks) shows beside the matmuls it saves.

A benchmark, not a test: nothing here asserts a speed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

# operator name (without the ``aten::`` prefix) -> kind; the first matching prefix wins
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("matmul", ("addmm", "mm", "bmm", "baddbmm", "linear", "matmul", "_mkl", "mkldnn")),
    ("attention", ("_softmax", "softmax", "_scaled_dot_product", "scaled_dot_product", "_safe_softmax")),
    ("elementwise+norm", ("native_layer_norm", "layer_norm", "gelu", "add", "mul", "div", "sub", "sigmoid",
                          "exp", "log", "rsub", "neg", "clamp", "maximum", "minimum", "ge", "lt", "gt", "le",
                          "eq", "ne", "bitwise", "logical", "abs", "pow", "sqrt", "tanh", "fill_", "zero_")),
    ("data movement", ("gather", "index", "scatter", "cat", "stack", "argsort", "sort", "topk", "where",
                       "masked", "copy_", "clone", "contiguous", "nonzero", "cumsum", "repeat", "expand",
                       "_to_copy", "to", "flip", "narrow", "slice", "select", "unbind", "split", "chunk",
                       "empty", "zeros", "ones", "full", "arange", "new_", "item", "_local_scalar", "any",
                       "all", "sum", "mean", "max", "min", "argmax", "bincount", "one_hot")),
)
VIEW_OPS = ("view", "reshape", "permute", "transpose", "t", "unsqueeze", "squeeze", "flatten", "as_strided",
            "_unsafe_view", "detach", "alias", "lift_fresh", "resolve")


def kind_of(op: str) -> str:
    """The kind of operator ``op`` (``"aten::addmm"`` -> ``"matmul"``); views cost nothing and go to ``"view"``.

    >>> kind_of("aten::addmm"), kind_of("aten::_softmax"), kind_of("aten::gather"), kind_of("aten::view")
    ('matmul', 'attention', 'data movement', 'view')
    """
    name = op.split("::", 1)[-1]
    if name in VIEW_OPS:
        return "view"
    for kind, prefixes in KINDS:
        if any(name == p or name.startswith(p + "_") or name.startswith(p) and p.startswith("_") for p in prefixes):
            return kind
    return "other"


@dataclass
class Profile:
    """One model's profile at one batch size: ``wall_ms`` per forward, ``kinds`` kind -> self ms per
    forward (``"unseen"``: wall minus all operators), ``top`` the costliest operators
    ``(name, calls per forward, self ms per forward)``."""

    label: str
    batch: int
    wall_ms: float
    kinds: dict[str, float] = field(default_factory=dict)
    top: list[tuple[str, float, float]] = field(default_factory=list)


def profile_forward(model, inputs: list[torch.Tensor], label: str, warmup: int = 3, top: int = 8) -> Profile:
    """Profile ``model`` over ``inputs`` (a list of ``[b, 3, px, px]`` batches) in inference mode,
    after ``warmup`` untimed calls; figures are per forward (averaged over the calls)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for x in inputs[:warmup]:
            model(x)
        start = time.perf_counter()
        for x in inputs:
            model(x)
        wall_ms = (time.perf_counter() - start) * 1e3 / len(inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for x in inputs:
                model(x)
    calls = len(inputs)
    kinds: dict[str, float] = {}
    ops = []
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1e3 / calls
        kind = kind_of(event.key)
        if kind == "view":
            kind = "data movement"
        kinds[kind] = kinds.get(kind, 0.0) + ms
        ops.append((event.key, event.count / calls, ms))
    # the profiler's own overhead inflates op times; scale them to the unprofiled wall time when larger
    seen = sum(kinds.values())
    if seen > wall_ms:
        kinds = {k: v * wall_ms / seen for k, v in kinds.items()}
        ops = [(n, c, ms * wall_ms / seen) for n, c, ms in ops]
        seen = wall_ms
    kinds["unseen (python, dispatch)"] = wall_ms - seen
    ops.sort(key=lambda o: -o[2])
    return Profile(label, inputs[0].shape[0], wall_ms, kinds, ops[:top])


def format_profiles(profiles: list[Profile], depth: int) -> str:
    """A table of ``profiles`` side by side: ms per forward and per block (/ ``depth``) per kind, then
    each profile's costliest operators."""
    kinds = [k for k, _ in KINDS] + ["other", "unseen (python, dispatch)"]
    head = f"{'kind':<28}" + "".join(f"{p.label + ' b' + str(p.batch):>26}" for p in profiles)
    lines = [head, f"{'':<28}" + "".join(f"{'ms/fwd  ms/block  share':>26}" for _ in profiles)]
    for kind in kinds + ["total"]:
        cells = []
        for p in profiles:
            ms = p.wall_ms if kind == "total" else p.kinds.get(kind, 0.0)
            cells.append(f"{ms:8.2f} {ms / depth:8.3f} {100 * ms / p.wall_ms:6.1f}%")
        lines.append(f"{kind:<28}" + "".join(f"{c:>26}" for c in cells))
    for p in profiles:
        lines.append(f"\ncostliest operators, {p.label} b{p.batch} (calls/fwd, ms/fwd):")
        lines += [f"  {name:<36} {count:7.1f} {ms:8.3f}" for name, count, ms in p.top]
    return "\n".join(lines)
