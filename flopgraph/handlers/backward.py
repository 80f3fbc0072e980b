"""Backward and optimizer ops of a training step (spec section G), on the aten frontend.

Three kinds of rule, from the most specific to the most general:

- gradients of contractions are contractions with the forward's MACs: a formula
  each (``convolution_backward``, the fused attention kernels' backward); the
  gradients of linear and matmul are plain ``mm``/``bmm`` ops, counted as such;
- every other backward op, and every loss, with a decomposition in torch's table
  counts as the forward rules applied to the ops of that decomposition
  (``native_layer_norm_backward`` is its sums, multiplies and subtractions;
  ``nll_loss_forward`` its gather, negation and mean), run once per shape on meta
  tensors;
- ``_foreach_*`` ops (an optimizer's multi-tensor kernels) count as the per-tensor
  op they stand for, once per tensor of the list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from .. import formulas as f
from ..options import CAUSAL_TRIANGLE
from ..records import Cost, TensorMeta, dtype_from_name
from ..registry import Registry, Rule
from .context import NotCounted, OpContext

aten = torch.ops.aten


def _overload(ctx: OpContext) -> Any:
    """The aten overload counted: recorded by the aten frontend; on fx (a graph that
    calls aten ops, as ``torch.export`` makes) the packet's default overload."""
    op = ctx.extra.get("op")
    if op is None:
        op = ctx.extra["target"]
        if isinstance(op, torch._ops.OpOverloadPacket):
            op = getattr(op, "default", None) or getattr(op, op.overloads()[0])
    return op


def _named(ctx: OpContext, name: str, default: Any = None) -> Any:
    """Argument ``name`` of the aten op, by its schema (backward kernels have long
    signatures that differ from kernel to kernel)."""
    schema = _overload(ctx)._schema
    for i, a in enumerate(schema.arguments):
        if a.name == name:
            if i < len(ctx.args) and not a.kwarg_only:
                return ctx.args[i]
            return ctx.kwargs.get(name, default)
    return default


def convolution_backward(ctx: OpContext) -> Cost:
    # convolution_backward(grad_output, input, weight, bias_sizes, stride, padding,
    # dilation, transposed, output_padding, groups, output_mask)
    grad_out, x, weight = ctx.args[0], ctx.args[1], ctx.args[2]
    transposed = bool(_named(ctx, "transposed", False))
    mask = _named(ctx, "output_mask", (True, True, True))
    # the forward's MACs: numel(out) * prod(weight[1:]), or numel(in) * ... transposed
    rows = x.numel if transposed else grad_out.numel
    forward = rows * TensorMeta(tuple(weight.shape[1:])).numel
    bias_sizes = _named(ctx, "bias_sizes")
    bias = TensorMeta(tuple(bias_sizes)).numel if mask[2] and bias_sizes else None
    return f.convolution_backward(forward, bool(mask[0]), bool(mask[1]), grad_out.numel, bias)


def attention_backward(ctx: OpContext) -> Cost:
    # every fused kernel's backward: grad_out, query, key, value first ([..., L, E])
    grad_out, q, k, v = ctx.args[0], ctx.args[1], ctx.args[2], ctx.args[3]
    mask = _named(ctx, "attn_bias", _named(ctx, "attn_mask"))
    causal = bool(_named(ctx, "is_causal", False))
    masked = isinstance(mask, TensorMeta) or causal
    dropout = float(_named(ctx, "dropout_p", 0.0) or 0.0) > 0
    batch = TensorMeta(tuple(grad_out.shape[:-2])).numel
    triangle = causal and CAUSAL_TRIANGLE.get()
    return f.attention_backward(
        batch, q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1], masked, dropout, triangle
    )


ATTENTION_BACKWARD = (
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward",
)


# --- pooling and interpolation backward (no decomposition in torch's table) ------------
# Each is the transpose of its forward: every output-gradient element goes back to the
# inputs its forward read, added into their gradient, so it counts as its forward
# (avg pooling: prod(kernel) per output element; adaptive pooling: the exact windows;
# interpolation: taps x numel(out) multiply-adds) and a max pool's or nearest
# upsampling's backward adds each output gradient into one input: numel(grad_out).


def avg_pool_backward(ctx: OpContext) -> Cost:
    # avg_pool2d_backward(grad_output, self, kernel_size, stride, padding, ...)
    grad_out, x = ctx.args[0], ctx.args[1]
    dims = len(x.shape) - 2 if len(x.shape) in (4, 5) else len(x.shape) - 1
    kernel = tuple(_named(ctx, "kernel_size"))
    kernel = kernel * dims if len(kernel) == 1 else kernel
    return f.pool(grad_out.shape, kernel)


def adaptive_avg_pool_backward(ctx: OpContext) -> Cost:
    # _adaptive_avg_pool2d_backward(grad_output, self)
    grad_out, x = ctx.args[0], ctx.args[1]
    dims = 3 if "3d" in str(_overload(ctx)) else 2
    return f.adaptive_pool(x.shape, grad_out.shape, dims)


def scatter_back(ctx: OpContext) -> Cost:
    return Cost(0, ctx.args[0].numel)


def interpolation_backward(mode: str) -> Callable[[OpContext], Cost]:
    def handler(ctx: OpContext) -> Cost:
        return f.interpolate(mode, ctx.args[0].shape)

    handler.__name__ = f"{mode}_backward"
    return handler


POOLING_BACKWARD = {
    **dict.fromkeys(("avg_pool2d_backward", "avg_pool3d_backward"),
                    Rule("avg_pool_backward", avg_pool_backward)),
    **dict.fromkeys(("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
                     "adaptive_avg_pool3d_backward"),
                    Rule("adaptive_avg_pool_backward", adaptive_avg_pool_backward)),
    **dict.fromkeys(("adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward",
                     "max_pool3d_with_indices_backward", "fractional_max_pool2d_backward",
                     "fractional_max_pool3d_backward", "upsample_nearest1d_backward",
                     "upsample_nearest2d_backward", "upsample_nearest3d_backward",
                     "_upsample_nearest_exact1d_backward", "_upsample_nearest_exact2d_backward",
                     "_upsample_nearest_exact3d_backward"),
                    Rule("scatter_backward", scatter_back)),
    "upsample_linear1d_backward": Rule("interpolate_backward", interpolation_backward("linear")),
    "upsample_bilinear2d_backward": Rule("interpolate_backward",
                                         interpolation_backward("bilinear")),
    "upsample_trilinear3d_backward": Rule("interpolate_backward",
                                          interpolation_backward("trilinear")),
    "upsample_bicubic2d_backward": Rule("interpolate_backward",
                                        interpolation_backward("bicubic")),
}  # fmt: skip


# --- the decomposition rule ------------------------------------------------------------

DECOMPOSED = ("backward", "loss", "entropy")
"""Aten ops with these words in their names and a decomposition in torch's table, and
no rule of their own, count by that decomposition: the backward ops and the losses
(whose forward and backward then follow the same arithmetic)."""

_SEEN: dict[Any, Cost] = {}
"""(op, argument metadata) -> cost: a decomposition runs once per distinct call."""


class _Parts(TorchDispatchMode):
    """Collects the aten ops a decomposition runs on meta tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple[Any, ...], dict[str, Any], Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.namespace != "prim":
            self.ops.append((func, args, kwargs, out))
        return out


def _meta(v: Any) -> Any:
    if isinstance(v, TensorMeta):
        return torch.empty(v.shape, dtype=dtype_from_name(v.dtype), device="meta")
    return v


def _key(ctx: OpContext) -> Any:
    def hashable(v: Any) -> Any:
        return tuple(map(hashable, v)) if isinstance(v, (list, tuple)) else v

    return _overload(ctx), hashable(ctx.args), hashable(tuple(sorted(ctx.kwargs.items())))


def decomposed(registry: Callable[[], Registry]) -> Callable[[OpContext], Cost]:
    """A handler counting an op as ``registry()``'s rules applied to the ops of its
    decomposition in torch's table (spec G: "the forward rules applied to torch's own
    decomposition of that op")."""

    def handler(ctx: OpContext) -> Cost:
        key = _key(ctx)
        try:
            cost = _SEEN.get(key)
        except TypeError:  # an unhashable argument: count without the memo
            key, cost = None, None
        if cost is None:
            cost = _count_parts(ctx, registry())
            if key is not None:
                _SEEN[key] = cost
        return cost

    return handler


def _count_parts(ctx: OpContext, registry: Registry) -> Cost:
    from ..count_aten import _op_record  # the aten counting pass, for the parts
    from ..frontends.aten import AtenOp
    from ..records import Status
    from ..shapes import to_meta

    op = _overload(ctx)
    parts = _Parts()
    with parts:
        result = decomposition_table[op](*tree_map(_meta, ctx.args), **tree_map(_meta, ctx.kwargs))
    total, names = Cost(), {}  # type: ignore[var-annotated]
    for func, args, kwargs, out in _live(parts.ops, result):
        part = AtenOp(func, to_meta(args), to_meta(kwargs), to_meta(out), "")
        record = _op_record(part, registry, names)
        if record.status is Status.SKIPPED:
            raise NotCounted(f"{func} in its decomposition has no rule")
        total = total + record.cost
    return total


def _live(ops: list[Any], result: Any) -> list[Any]:
    """The parts whose values reach the decomposition's result: a decomposition may
    compute terms only some of its outputs need (layer norm's grad-input terms when the
    input needs no gradient), which the kernel does not run."""
    needed = {id(t) for t in tree_leaves(result) if isinstance(t, torch.Tensor)}
    kept = []
    for op in reversed(ops):
        func, args, kwargs, out = op
        outs = [id(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if func._schema.is_mutable or any(o in needed for o in outs):
            kept.append(op)
            needed.update(id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
    return kept[::-1]


# --- foreach ops -----------------------------------------------------------------------


def foreach(rule: Rule) -> Callable[[OpContext], Cost]:
    """``_foreach_op(list, ...)``: the rule of ``op`` once per tensor of the list, with
    the i-th item of every list argument (the in-place forms return nothing: each
    tensor of the first list is its own output)."""
    handler = rule.handler
    assert handler is not None

    def counted(ctx: OpContext) -> Cost:
        first = ctx.args[0]
        n = len(first)

        def item(v: Any, i: int) -> Any:
            return v[i] if isinstance(v, (list, tuple)) and len(v) == n else v

        outs = ctx.out if isinstance(ctx.out, (list, tuple)) and len(ctx.out) == n else first
        total = Cost()
        for i in range(n):
            args = tuple(item(a, i) for a in ctx.args)
            kwargs = {k: item(v, i) for k, v in ctx.kwargs.items()}
            one = OpContext("aten", args, kwargs, outs[i], None, ctx.node, ctx.extra)
            cost = handler(one)
            total = total + (cost if isinstance(cost, Cost) else Cost(0, int(cost)))
        return total

    counted.__name__ = f"foreach_{getattr(handler, '__name__', 'handler')}"
    return counted


# --- fused optimizer kernels -----------------------------------------------------------


def fused_adam(decoupled: bool) -> Callable[[OpContext], Cost]:
    """``_fused_adam(w)_``: per parameter element the ops of torch's for-loop Adam:
    lerp 1, mul 1, addcmul 2, sqrt 1, the bias correction's divide 1, + eps 1,
    addcdiv 2; weight decay 1 (AdamW's decoupled multiply or Adam's add), amsgrad's
    maximum 1, maximize's negation 1."""

    def handler(ctx: OpContext) -> Cost:
        n = sum(p.numel for p in ctx.args[0])
        decay = float(_named(ctx, "weight_decay", 0.0) or 0.0) != 0
        extra = int(decay) + int(bool(_named(ctx, "amsgrad"))) + int(bool(_named(ctx, "maximize")))
        return Cost(0, (9 + extra) * n)

    handler.__name__ = "fused_adamw" if decoupled else "fused_adam"
    return handler


def fused_sgd(ctx: OpContext) -> Cost:
    """``_fused_sgd_``: per element the for-loop's ops: the update 1; weight decay 1;
    maximize's negation 1; with momentum, after the first step, buf * m + g 2 and
    Nesterov's g + m * buf 1."""
    n = sum(p.numel for p in ctx.args[0])
    momentum = float(_named(ctx, "momentum", 0.0) or 0.0) != 0
    later = momentum and not bool(_named(ctx, "is_first_step"))
    per = (
        1
        + int(float(_named(ctx, "weight_decay", 0.0) or 0.0) != 0)
        + int(bool(_named(ctx, "maximize")))
        + 2 * int(later)
        + int(momentum and bool(_named(ctx, "nesterov")))
    )
    return Cost(0, per * n)


FUSED = {
    "_fused_adam": Rule("fused_adam", fused_adam(False)),
    "_fused_adamw": Rule("fused_adamw", fused_adam(True)),
    "_fused_sgd": Rule("fused_sgd", fused_sgd),
}


def install(registry: Registry, rules_of: Callable[[], Registry]) -> None:
    """Add the training-step rules to ``registry`` (after every forward rule is in it:
    the foreach and decomposition rules are built from those)."""
    registry.add([aten.convolution_backward], Rule("convolution_backward", convolution_backward))
    for name, rule in POOLING_BACKWARD.items():
        packet = getattr(aten, name, None)
        if packet is not None and registry.get(("aten", packet)) is None:
            registry.add([packet], rule)
    for name, rule in FUSED.items():
        forms = [getattr(aten, n) for n in (name, name + "_") if hasattr(aten, n)]
        registry.add(forms, rule)
    for name in ATTENTION_BACKWARD:
        packet = getattr(aten, name, None)
        if packet is not None:
            registry.add([packet], Rule("scaled_dot_product_attention_backward",
                                        attention_backward))  # fmt: skip
    handler = decomposed(rules_of)
    packets: set[Any] = {
        op.overloadpacket  # type: ignore[attr-defined]
        for op in decomposition_table
        if any(word in str(op) for word in DECOMPOSED)
    }  # fmt: skip
    for packet in sorted(packets, key=lambda p: p.__name__):
        if registry.get(("aten", packet)) is None:
            registry.add([packet], Rule(packet.__name__, handler))
    foreach_names = {
        n.removeprefix("aten::").split(".")[0] for n in torch._C._dispatch_get_all_op_names()
        if n.startswith("aten::_foreach_")
    }  # fmt: skip
    for name in sorted(foreach_names):
        base = name.removeprefix("_foreach_").removesuffix("_")
        packet = getattr(aten, base, None)
        per_tensor = registry.get(("aten", packet)) if packet is not None else None
        target = getattr(aten, name)
        if per_tensor is None or registry.get(("aten", target)) is not None:
            continue
        if per_tensor.handler is None:  # a copy or a zero fill: free as what it stands for
            registry.add([target], Rule(per_tensor.name, None, per_tensor.reason))
        else:
            registry.add([target], Rule(per_tensor.name, foreach(per_tensor)))
