"""Section A: linear layers, matrix products and convolutions."""

from __future__ import annotations

import torch
from torch import nn

from .. import formulas as f
from ..records import Cost, TensorMeta
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms


def weight_shape(m: nn.Module) -> tuple[int, ...]:
    """Shape of a module's ``weight`` (read as metadata, never as data)."""
    w = m.weight
    assert isinstance(w, torch.Tensor), f"{type(m).__name__}.weight is not a tensor"
    return tuple(w.shape)


def _shape(m: TensorMeta | None) -> tuple[int, ...]:
    return m.shape if m is not None else ()


@DEFAULT.handler(nn.Linear, name="linear")
def linear_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert m is not None
    return f.linear(ctx.x.shape, weight_shape(m), m.bias is not None)


@DEFAULT.handler(*forms("linear", methods=False), name="linear")
def linear_function(ctx: OpContext) -> Cost:
    x, w, b = ctx.arg(0, "input"), ctx.arg(1, "weight"), ctx.arg(2, "bias")
    return f.linear(x.shape, w.shape, b is not None)


@DEFAULT.handler(*forms("matmul", "mm", "bmm", "mv", "dot", "vdot", "inner"), name="matmul")
def matmul(ctx: OpContext) -> Cost:
    a, b = ctx.arg(0, "input"), ctx.arg(1, "other")
    if ctx.extra.get("method") == "__rmatmul__":  # fx's call_method, aten's tensor method
        a, b = b, a
    return f.matmul(_shape(a), _shape(b), ctx.y.shape)


@DEFAULT.handler(*forms("outer", "ger"), name="outer")
def outer(ctx: OpContext) -> Cost:
    # an outer product is a contraction over K = 1: one multiply per output element
    return Cost(ctx.y.numel, 2 * ctx.y.numel)


@DEFAULT.handler(*forms("addmm", "baddbmm", "addmv"), name="addmm")
def addmm(ctx: OpContext) -> Cost:
    # the operands by position, or by their names in each form: addmm(mat1, mat2),
    # baddbmm(batch1, batch2), addmv(mat, vec) (Bloom calls baddbmm(batch1=..., ...))
    first = _named_operand(ctx, 1, ("mat1", "batch1", "mat"))
    second = _named_operand(ctx, 2, ("mat2", "batch2", "vec"))
    return f.addmm(first.shape, second.shape, ctx.y.shape)


def _named_operand(ctx: OpContext, index: int, names: tuple[str, ...]) -> TensorMeta:
    if index < len(ctx.args):
        return ctx.args[index]  # type: ignore[no-any-return]
    for name in names:
        if name in ctx.kwargs:
            return ctx.kwargs[name]  # type: ignore[no-any-return]
    raise ValueError(f"{ctx.node}: no operand at position {index} or named {', '.join(names)}")


@DEFAULT.handler(*forms("addbmm"), name="addbmm")
def addbmm(ctx: OpContext) -> Cost:
    return f.addbmm(ctx.arg(1, "batch1").shape, ctx.arg(2, "batch2").shape, ctx.y.shape)


@DEFAULT.handler(*forms("addr"), name="addr")
def addr(ctx: OpContext) -> Cost:
    # outer product (one multiply per output) plus the add of input
    return Cost(ctx.y.numel, 3 * ctx.y.numel)


def conv_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert m is not None
    return f.convolution(ctx.y.shape, weight_shape(m), m.bias is not None)


def conv_transpose_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert m is not None
    return f.conv_transpose(ctx.x.shape, weight_shape(m), ctx.y.shape, m.bias is not None)


def conv_function(ctx: OpContext) -> Cost:
    w, b = ctx.arg(1, "weight"), ctx.arg(2, "bias")
    return f.convolution(ctx.y.shape, w.shape, b is not None)


def conv_transpose_function(ctx: OpContext) -> Cost:
    x, w, b = ctx.arg(0, "input"), ctx.arg(1, "weight"), ctx.arg(2, "bias")
    return f.conv_transpose(x.shape, w.shape, ctx.y.shape, b is not None)


for _d, _conv, _convt in (
    (1, nn.Conv1d, nn.ConvTranspose1d),
    (2, nn.Conv2d, nn.ConvTranspose2d),
    (3, nn.Conv3d, nn.ConvTranspose3d),
):
    DEFAULT.add([_conv], Rule(f"conv{_d}d", conv_module))
    DEFAULT.add(forms(f"conv{_d}d", methods=False), Rule(f"conv{_d}d", conv_function))
    DEFAULT.add([_convt], Rule(f"conv_transpose{_d}d", conv_transpose_module))
    DEFAULT.add(
        forms(f"conv_transpose{_d}d", methods=False),
        Rule(f"conv_transpose{_d}d", conv_transpose_function),
    )


def einsum_path(equation: str, shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]] | None:
    """The contraction order torch.einsum uses: opt_einsum's path (with torch's
    strategy) when opt_einsum is installed and enabled and there are 3+ operands,
    else None (left to right, torch's own order)."""
    oe = torch.backends.opt_einsum
    if len(shapes) < 3 or not (oe.is_available() and oe.enabled):
        return None
    path, _ = oe.get_opt_einsum().contract_path(
        equation, *shapes, shapes=True, optimize=oe.strategy
    )
    return [tuple(p) for p in path]


@DEFAULT.handler(*forms("einsum", methods=False), name="einsum")
def einsum(ctx: OpContext) -> Cost:
    # torch.einsum(equation, *operands); fx records the sublist and list forms so too
    equation, *rest = ctx.args
    operands = [m for r in rest for m in (r if isinstance(r, (list, tuple)) else [r])]
    shapes = [m.shape for m in operands]
    return f.einsum(str(equation), shapes, einsum_path(str(equation), shapes))


@DEFAULT.handler(*forms("bilinear", methods=False), name="bilinear")
def bilinear_function(ctx: OpContext) -> Cost:
    # F.bilinear(input1, input2, weight, bias=None)
    x1, x2, w = ctx.arg(0, "input1"), ctx.arg(1, "input2"), ctx.arg(2, "weight")
    return f.bilinear(x1.shape, x2.shape, w.shape, ctx.arg(3, "bias") is not None)


@DEFAULT.handler(nn.Bilinear, name="bilinear")
def bilinear_module(ctx: OpContext) -> Cost:
    m = ctx.module
    assert isinstance(m, nn.Bilinear)
    x1, x2 = ctx.arg(0, "input1"), ctx.arg(1, "input2")
    return f.bilinear(x1.shape, x2.shape, tuple(m.weight.shape), m.bias is not None)


@DEFAULT.handler(torch._grouped_mm, torch.ops.aten._grouped_mm, name="grouped_mm")
def grouped_mm(ctx: OpContext) -> Cost:
    """The expert products of a mixture-of-experts layer (``torch._grouped_mm``).

    Each row of a 2-D ``self`` [M, K] meets the matrix of the group its offsets put it
    in (``mat2`` [G, K, N]), so the work is M * K * N whichever group a row is in: the
    count does not depend on the routing (spec section H). 3-D operands are a batch of
    G products; two 2-D operands split K into groups, each giving one [M, N] output."""
    a, b = ctx.arg(0, "self"), ctx.arg(1, "mat2")
    out = ctx.y
    k = a.shape[-1]
    macs = out.numel * k
    if len(a.shape) == 2 and len(b.shape) == 2:  # K split in G groups: out [G, M, N]
        macs = out.numel // out.shape[0] * k
    # (torch refuses its ``bias`` argument so far: "not supported yet")
    return Cost(macs, 2 * macs)
