"""Each peer's counting rules, restated over flopgraph's records.

For every op flopgraph recorded, a ``Share`` says what the peer counts for it,
in the peer's unit: so the gap between the peer's total and flopgraph's can be
split op by op into conventions (bias, which ops count and how much), ops the
peer cannot see, and ops it counts twice. These restate the rules of the
versions the project tests against (thop 0.1.1, ptflops 0.7.5, fvcore 0.1.5,
torch 2.x FlopCounterMode) and read the peers' own rule tables where they are
public; whatever they do not capture shows as an "unexplained" gap, never
silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..handlers import DEFAULT
from ..records import OpRecord
from ..report import _ancestors
from ..shapes import describe_target
from .results import BIASED_OPS, Share, ShareFn

CONTRACTIONS = frozenset(
    {"linear", "matmul", "addmm", "addbmm", "einsum", "bilinear"}
    | {f"conv{d}d" for d in (1, 2, 3)}
    | {f"conv_transpose{d}d" for d in (1, 2, 3)}
)
FUNCTIONAL = "functional op: forward hooks never see it"


def _x(r: OpRecord) -> int:
    return r.inputs[0].numel if r.inputs else 0


def _y(r: OpRecord) -> int:
    return r.outputs[0].numel if r.outputs else 0


def _affine(m: nn.Module) -> bool:
    return bool(getattr(m, "affine", False) or getattr(m, "elementwise_affine", False))


def _modules(model: nn.Module) -> Callable[[OpRecord], nn.Module | None]:
    found = dict(model.named_modules())
    return lambda r: found.get(r.module) if r.kind == "call_module" else None


def _unmodeled(what: str) -> Share:
    return Share(note=f"{what}: not modeled here")


# --- thop: forward hooks, one rule per exact module type --------------------------


def _attr(m: nn.Module, name: str) -> Any:
    """A module setting read by name (conv ``groups``, softmax ``dim``); ``Any``
    because nn.Module's type stubs type unknown attributes as tensors or modules."""
    return getattr(m, name)


def _xy(r: OpRecord) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (r.inputs[0].shape if r.inputs else ()), (r.outputs[0].shape if r.outputs else ())


def _thop_conv(r: OpRecord, m: nn.Module) -> Share:
    x, y = _xy(r)
    macs = prod(y) * (x[1] // _attr(m, "groups")) * prod(_attr(m, "weight").shape[2:])
    return Share(macs, note="multiply-adds; bias not counted")


def _thop_norm(r: OpRecord, m: nn.Module) -> Share:
    per = 4 if _affine(m) else 2
    return Share(per * _x(r), note=f"{per} per element, reported as MACs")


def _thop_adaptive_avg(r: OpRecord, m: nn.Module) -> Share:
    x, y = _xy(r)  # thop divides sizes in float64: window = prod(in / out)
    kernel = prod(float(i) / float(o) for i, o in zip(x[2:], y[2:], strict=True))
    return Share(int((kernel + 1) * prod(y)), note="window + 1 per output element")


def _thop_softmax(r: OpRecord, m: nn.Module) -> Share:
    x, _ = _xy(r)
    if _attr(m, "dim") is None:
        return _unmodeled("thop softmax with dim=None")
    f = x[_attr(m, "dim")]
    return Share(prod(x) // f * (3 * f - 1), note="exp, add, divide: 3 per element - 1 per row")


_ZERO = Share(0, note="counted as 0")
# thop's rule function name -> what it counts (thop.vision.basic_hooks)
_THOP: dict[str, Callable[[OpRecord, nn.Module], Share]] = {
    "count_convNd": _thop_conv,
    "count_linear": lambda r, m: Share(
        _attr(m, "in_features") * _y(r), note="multiply-adds; bias not counted"
    ),
    "count_normalization": _thop_norm,
    "zero_ops": lambda r, m: _ZERO,
    "count_relu": lambda r, m: _ZERO,
    "count_prelu": lambda r, m: Share(0 if m.training else _x(r), note="1 per element in eval"),
    "count_avgpool": lambda r, m: Share(_y(r), note="1 per output element"),
    "count_adap_avgpool": _thop_adaptive_avg,
    "count_softmax": _thop_softmax,
}


def thop(model: nn.Module) -> ShareFn:
    from thop.profile import register_hooks  # the peer's own table: type -> rule

    module = _modules(model)

    def share(r: OpRecord) -> Share:
        m = module(r)
        if m is None:
            return Share(seen=False, note=FUNCTIONAL)
        rule = register_hooks.get(type(m))
        if rule is None:
            return Share(seen=False, note=f"no thop rule for {type(m).__name__}")
        counted = _THOP.get(rule.__name__)
        return counted(r, m) if counted else _unmodeled(f"thop rule {rule.__name__}")

    return share


# --- ptflops, pytorch backend: module hooks plus patched functions -----------------

# F.* functions ptflops patches (count_functional=True), and the torch modules
# whose forward calls one of them: those are counted by the hook and again
# by the patched function
_PATCHED_F = (
    "relu", "prelu", "elu", "relu6", "gelu", "silu", "softmax",
    *(f"{k}_pool{d}d" for k in ("avg", "max", "adaptive_avg", "adaptive_max") for d in (1, 2, 3)),
)  # fmt: skip
_PATCHED_TENSOR = ("matmul", "mm", "bmm", "addmm", "mul", "add")
_CALLS_PATCHED: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.PReLU: "prelu", nn.ELU: "elu", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.Softmax: "softmax",
    **{getattr(nn, f"{k}Pool{d}d"): f"{s}_pool{d}d" for d in (1, 2, 3)
       for k, s in (("Max", "max"), ("Avg", "avg"), ("AdaptiveAvg", "adaptive_avg"),
                    ("AdaptiveMax", "adaptive_max"))},
}  # fmt: skip


def _label(fn: Any, kind: str = "call_function") -> tuple[str, str]:
    """(flopgraph op name, call target label) of a callable, as records carry them."""
    key = ("function", fn) if kind == "call_function" else ("method", fn)
    rule = DEFAULT.get(key)  # type: ignore[arg-type]
    name = rule.name if rule is not None else ""
    return name, describe_target(SimpleNamespace(op=kind, target=fn))  # type: ignore[arg-type]


def _ptflops_patched() -> dict[tuple[str, str], str]:
    """(op, target) of every call ptflops counts through a patch -> its counting kind."""
    out = {_label(getattr(F, n)): "numel" for n in _PATCHED_F}
    for n in _PATCHED_TENSOR:
        out[_label(getattr(torch, n))] = n
        out[_label(n, "call_method")] = n
    out[_label(torch.baddbmm)] = "addmm"
    return out


def _ptflops_product(r: OpRecord, m: nn.Module) -> Share:
    # conv and linear hooks: multiply-adds, plus one per output element for a bias
    bias = _y(r) if _attr(m, "bias") is not None else 0
    return Share(r.macs + bias, bias=bias, note="multiply-adds + bias")


# ptflops' hook function name -> what it counts (ptflops.pytorch_ops)
_PTFLOPS: dict[str, Callable[[OpRecord, nn.Module], Share]] = {
    "conv_flops_counter_hook": _ptflops_product,
    "linear_flops_counter_hook": _ptflops_product,
    "relu_flops_counter_hook": lambda r, m: Share(_y(r), note="1 per element, as a MAC"),
    "pool_flops_counter_hook": lambda r, m: Share(_x(r), note="1 per input element, as a MAC"),
    "bn_flops_counter_hook": lambda r, m: Share(
        (2 if getattr(m, "affine", False) else 1) * _x(r),
        note="1 per element, doubled when affine, as MACs",
    ),
    "upsample_flops_counter_hook": lambda r, m: Share(
        _y(r) // r.outputs[0].shape[0], note="1 per element of the first sample"
    ),
    "empty_flops_counter_hook": lambda r, m: _ZERO,
}


def _ptflops_hook(hook: Any, r: OpRecord, m: nn.Module) -> Share:
    name = getattr(hook, "func", hook).__name__  # a functools.partial for transposed convs
    counted = _PTFLOPS.get(name)
    return counted(r, m) if counted else _unmodeled(f"ptflops hook {name}")


def _ptflops_function(kind: str, r: OpRecord) -> Share:
    note = "patched function, reported as MACs"
    if kind == "numel":
        return Share(_x(r), note=note)
    if kind in ("matmul", "mm", "bmm"):
        return Share(r.inputs[0].numel * r.inputs[1].shape[-1], note=note)
    if kind == "addmm":
        bias = r.inputs[0].numel
        return Share(r.inputs[1].numel * r.inputs[2].shape[-1] + bias, bias=bias, note=note)
    return Share(_y(r), note=note)  # add, mul: one per (broadcast) element


def ptflops_pytorch(model: nn.Module) -> ShareFn:
    from ptflops.pytorch_ops import MODULES_MAPPING

    module, patched = _modules(model), _ptflops_patched()
    types = {path: type(m) for path, m in model.named_modules()}

    def share(r: OpRecord) -> Share:
        m = module(r)
        if m is None:
            kind = patched.get((r.op, r.target))
            if kind is None:
                return Share(seen=False, note=f"{FUNCTIONAL} and ptflops does not patch it")
            return _ptflops_function(kind, r)
        owners = [p for p in _ancestors(r.module)[:-1] if types.get(p) in MODULES_MAPPING]
        if owners:  # ptflops adds the owner's own formula and ignores what runs inside
            owner = types[owners[-1]].__name__
            return Share(seen=False, note=f"inside {owner}, counted by ptflops' {owner} formula")
        hook = MODULES_MAPPING.get(type(m))
        inner = _CALLS_PATCHED.get(type(m))
        again = _x(r) if inner else 0
        if hook is None:
            note = f"its forward calls the patched F.{inner}" if inner else "no ptflops rule"
            return Share(again, seen=bool(inner), note=note)
        s = _ptflops_hook(hook, r, m)
        if again:
            twice = f"counted by the {type(m).__name__} hook and again by the patched F.{inner}"
            return Share(s.raw + again, bias=s.bias, repeat=again, note=s.note, again=twice)
        return s

    return share


# --- dispatch-level counters: ptflops aten, FlopCounterMode; fvcore's jit trace ------


def _contraction(r: OpRecord, factor: int, bias: bool) -> Share:
    # factor 1: multiply-adds; 2: FLOPs. A bias (or addmm's added input) is one
    # per output element, what flopgraph counts beyond 2 per MAC for these ops
    b = r.flops - 2 * r.macs if bias and r.op in BIASED_OPS else 0
    return Share(factor * r.macs + b, bias=b, note="bias counted" if b else "no bias")


def ptflops_aten(model: nn.Module) -> ShareFn:
    counted = CONTRACTIONS - {"bilinear"}

    def share(r: OpRecord) -> Share:
        if r.op in counted:
            return _contraction(r, 1, bias=True)
        return Share(0, note="ptflops' aten backend counts only mm, bmm, addmm and convolution")

    return share


def flop_counter_mode(model: nn.Module) -> ShareFn:
    def share(r: OpRecord) -> Share:
        if r.op in CONTRACTIONS:
            return _contraction(r, 2, bias=False)
        return Share(0, note="FlopCounterMode counts matrix products and convolutions only")

    return share


def _fvcore_norm(r: OpRecord, m: nn.Module | None) -> Share:
    n = _x(r)
    if m is None:
        affine = len(r.inputs) > 1  # F.layer_norm(x, shape, weight, bias): tensors x, w, b
        if r.op == "batch_norm":
            return _unmodeled("functional batch_norm")
    else:
        affine = _affine(m)
    from_input = r.op != "batch_norm" or (m is not None and m.training)
    per = (5 if affine else 4) if from_input else (2 if affine else 1)
    return Share(per * n, note=f"{per} per element")


def fvcore(model: nn.Module) -> ShareFn:
    module = _modules(model)
    norms = {"batch_norm", "layer_norm", "group_norm", "instance_norm"}

    def share(r: OpRecord) -> Share:
        if r.op in CONTRACTIONS:
            return _contraction(r, 1, bias=False)
        if r.op in norms:
            return _fvcore_norm(r, module(r))
        if r.op == "adaptive_avg_pool2d":
            return Share(_x(r), note="1 per input element")
        if r.op == "interpolate" and len(r.outputs[0].shape) == 4:
            taps = r.macs // _y(r) if _y(r) else 0
            return Share(_y(r) * max(taps, 1), note="nearest 1, bilinear 4 per output element")
        return Share(0, note="fvcore has no handle for it: counted 0")

    return share


MODELS: Mapping[str, Callable[[nn.Module], ShareFn]] = {
    "thop": thop,
    "ptflops (pytorch)": ptflops_pytorch,
    "ptflops (aten)": ptflops_aten,
    "fvcore": fvcore,
    "FlopCounterMode": flop_counter_mode,
}

__all__ = ["MODELS"]
