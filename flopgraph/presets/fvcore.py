"""``convention="fvcore"``: fvcore's ``FlopCountAnalysis(model, inputs).total()``, exactly.

fvcore traces the model with torch.jit and counts the aten ops a Python program
calls, each a leaf: ``aten::linear`` is counted, the ``addmm`` inside it is never
seen. Its handles count one per multiply-add for contractions (bias ignored),
4 or 5 per element for norms, 1 or 2 for batch norm in eval, 1 per input
element for adaptive average pooling, 1 or 4 per output element for nearest or
bilinear 2-d upsampling; every other op counts 0. This table holds those
handles as composites (a torch call is counted whole; an unknown builtin call
is a free leaf, as in fvcore) and, for ops run inside Python-level torch
functions such as ``F.multi_head_attention_forward``, the aten ops they lower to.

FLOPs are fvcore's numbers; MACs are the same numbers for contractions (fvcore
counts a multiply-add as one) and 0 for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from math import prod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import formulas as f
from ..handlers.context import OpContext
from ..records import Cost
from ..registry import Policy, Registry, Rule

aten = torch.ops.aten
Shape = Sequence[int]


def _contraction(macs: int) -> Cost:
    return Cost(macs, macs)


def _elements(n: int) -> Cost:
    return Cost(0, n)


# --- fvcore's arithmetic, as pure functions of shapes --------------------------------------


def matmul_macs(a: Shape, b: Shape) -> int:
    # matmul_flop_jit: prod(a) * b[-1] (no broadcast of a to b's batch)
    return prod(a) * b[-1]


def einsum_macs(equation: str, shapes: Sequence[Shape]) -> int:
    # einsum_flop_jit: two special cases, else numpy's optimal path's "optimized flop" / 2
    eq = equation.replace(" ", "")
    order = dict.fromkeys(c for c in eq if c.isalpha())
    eq = eq.translate({ord(c): 97 + i for i, c in enumerate(order)})
    if eq == "abc,abd->acd":
        n, c, t = shapes[0]
        return int(n * c * t * shapes[-1][-1])
    if eq == "abc,adc->adb":
        n, t, g = shapes[0]
        return int(n * t * g * shapes[-1][1])
    report = np.einsum_path(eq, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    for line in report.split("\n"):
        if "optimized flop" in line.lower():
            return int(np.floor(float(line.split(":")[-1]) / 2))
    raise NotImplementedError(f"einsum {equation!r}: numpy gave no optimized flop count")


def norm_flops(x: Shape, affine: bool) -> int:
    # norm_flop_counter: 5 per element with an affine weight, else 4
    return prod(x) * (5 if affine else 4)


def batch_norm_flops(x: Shape, training: bool, affine: bool) -> int:
    # batchnorm_flop_jit: training as a norm; eval 2 per element with a weight, else 1
    return norm_flops(x, affine) if training else prod(x) * (2 if affine else 1)


# --- handlers ---------------------------------------------------------------------------------


def linear(ctx: OpContext) -> Cost:
    x, w = ctx.arg(0, "input"), ctx.arg(1, "weight")
    return _contraction(f.linear(x.shape, w.shape, False).macs)


def matmul(ctx: OpContext) -> Cost:
    a, b = ctx.arg(0, "input"), ctx.arg(1, "other")
    if ctx.extra.get("target") is torch.Tensor.__rmatmul__:
        a, b = b, a
    return _contraction(matmul_macs(a.shape, b.shape))


def addmm(ctx: OpContext) -> Cost:
    # addmm_flop_jit: mat1 [n, i], mat2 [i, o]: n * i * o
    return _contraction(matmul_macs(ctx.arg(1, "mat1").shape, ctx.arg(2, "mat2").shape))


def einsum(ctx: OpContext) -> Cost:
    equation, *rest = ctx.args
    operands = [m for r in rest for m in (r if isinstance(r, (list, tuple)) else [r])]
    return _contraction(einsum_macs(str(equation), [m.shape for m in operands]))


def conv(transposed: bool | None) -> Callable[[OpContext], Cost]:
    """conv_flop_jit (bias ignored): the spec's MACs. None: read aten.convolution's flag.

    A ``conv1d/2d/3d`` call with string padding (``"same"``, ``"valid"``) reaches the
    jit trace as ``aten::_convolution_mode``, for which fvcore has no handle: 0."""

    def handler(ctx: OpContext) -> Cost:
        x, w = ctx.arg(0, "input"), ctx.arg(1, "weight")
        if transposed is False and isinstance(ctx.arg(4, "padding", 0), str):
            return Cost()
        flag = bool(ctx.arg(6, "transposed", False)) if transposed is None else transposed
        if flag:
            return _contraction(f.conv_transpose(x.shape, w.shape, ctx.y.shape, False).macs)
        return _contraction(f.convolution(ctx.y.shape, w.shape, False).macs)

    return handler


def norm(weight_at: int) -> Callable[[OpContext], Cost]:
    """layer/group/instance norm: the weight's position in the call's arguments."""

    def handler(ctx: OpContext) -> Cost:
        return _elements(norm_flops(ctx.x.shape, ctx.arg(weight_at, "weight") is not None))

    return handler


def batch_norm(weight_at: int, training_at: int | None) -> Callable[[OpContext], Cost]:
    """batch norm given the positions of weight and training (None: eval)."""

    def handler(ctx: OpContext) -> Cost:
        training = False if training_at is None else bool(ctx.arg(training_at, "training"))
        affine = ctx.arg(weight_at, "weight") is not None
        return _elements(batch_norm_flops(ctx.x.shape, training, affine))

    return handler


def per_output(k: int) -> Callable[[OpContext], Cost]:
    def handler(ctx: OpContext) -> Cost:
        return _elements(k * ctx.y.numel)

    return handler


def per_input(ctx: OpContext) -> Cost:
    return _elements(ctx.x.numel)


def interpolate(ctx: OpContext) -> Cost:
    # F.interpolate lowers to aten::upsample_nearest2d / upsample_bilinear2d on 4-d
    # inputs in those modes; fvcore counts only those two
    mode = str(ctx.arg(3, "mode", "nearest"))
    taps = {"nearest": 1, "bilinear": 4}.get(mode, 0) if len(ctx.x.shape) == 4 else 0
    return _elements(taps * ctx.y.numel)


def upsample_bilinear(ctx: OpContext) -> Cost:
    return _elements(4 * ctx.y.numel if len(ctx.x.shape) == 4 else 0)


def upsample_nearest(ctx: OpContext) -> Cost:
    return _elements(ctx.y.numel if len(ctx.x.shape) == 4 else 0)


NOT_COUNTED = Rule("not_counted", None, "fvcore has no handle for this op")


def _targets(*items: Any) -> Iterable[Any]:
    return [t for t in items if t is not None]


def _build() -> Registry:
    t = Registry(
        policy=Policy(
            unknown_aten=NOT_COUNTED, unknown_builtin=NOT_COUNTED, fx=False, training=False
        )
    )
    whole: list[tuple[Iterable[Any], Rule]] = [
        ([aten.linear], Rule("linear", linear)),
        ([aten.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__], Rule("matmul", matmul)),
        ([aten.mm, aten.bmm], Rule("matmul", matmul)),
        ([aten.addmm], Rule("addmm", addmm)),
        ([aten.einsum, torch.einsum], Rule("einsum", einsum)),
        ([aten.conv1d, aten.conv2d, aten.conv3d], Rule("conv", conv(False))),
        ([aten._convolution_mode], NOT_COUNTED),
        ([aten.convolution, aten._convolution], Rule("conv", conv(None))),
        ([aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d],
         Rule("conv", conv(True))),
        ([aten.batch_norm], Rule("batch_norm", batch_norm(1, 5))),
        ([F.batch_norm], Rule("batch_norm", batch_norm(3, 5))),
        ([aten.layer_norm, F.layer_norm, aten.group_norm, F.group_norm],
         Rule("norm", norm(2))),
        ([aten.instance_norm], Rule("instance_norm", norm(1))),
        ([F.instance_norm], Rule("instance_norm", norm(3))),
        ([F.interpolate, F.upsample], Rule("upsample", interpolate)),
        ([aten.upsample_nearest2d, F.upsample_nearest], Rule("upsample", upsample_nearest)),
        ([aten.upsample_bilinear2d, F.upsample_bilinear], Rule("upsample", upsample_bilinear)),
        ([aten.adaptive_avg_pool2d, F.adaptive_avg_pool2d], Rule("adaptive_avg_pool2d", per_input)),
        ([aten.grid_sampler, F.grid_sample], Rule("grid_sampler", per_output(4))),
    ]  # fmt: skip
    for targets, rule in whole:
        t.composite(_targets(*targets), rule)
    # the aten ops of Python-level torch functions that fvcore's jit trace sees through
    t.add([aten.mm, aten.bmm], Rule("matmul", matmul))
    t.add([aten.addmm], Rule("addmm", addmm))
    t.add([aten.convolution, aten._convolution], Rule("conv", conv(None)))
    # cudnn_batch_norm, miopen_batch_norm: what batch_norm lowers to on a GPU
    batch_norms = [aten.native_batch_norm, aten._native_batch_norm_legit]
    t.add([*batch_norms, aten.cudnn_batch_norm, aten.miopen_batch_norm],
          Rule("batch_norm", batch_norm(1, 5)))  # fmt: skip
    t.add([aten._native_batch_norm_legit_no_training], Rule("batch_norm", batch_norm(1, None)))
    t.add([aten.native_layer_norm], Rule("norm", norm(2)))
    t.add([aten.native_group_norm], Rule("norm", norm(1)))
    t.add([aten.upsample_nearest2d], Rule("upsample", upsample_nearest))
    t.add([aten.upsample_bilinear2d], Rule("upsample", upsample_bilinear))
    t.add([aten._adaptive_avg_pool2d], Rule("adaptive_avg_pool2d", per_input))
    t.add([aten.grid_sampler_2d], Rule("grid_sampler", per_output(4)))
    return t


FVCORE = _build()
