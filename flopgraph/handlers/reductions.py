"""Section C: reductions, cumulative ops and the softmax family."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import formulas as f
from ..records import Cost, TensorMeta
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms


def reduce(ctx: OpContext) -> Cost:
    return f.reduce(ctx.x.shape, ctx.y.shape)


def max_min(ctx: OpContext) -> Cost:
    # torch.max(a, b) with a tensor b is elementwise; with a dim or none, a reduction
    other = ctx.arg(1, "other")
    if isinstance(other, TensorMeta):
        return f.elementwise(ctx.y.shape)
    return f.reduce(ctx.x.shape, ctx.y.shape)


def mean(ctx: OpContext) -> Cost:
    return f.mean(ctx.x.shape)


def var(ctx: OpContext) -> Cost:
    return f.var(ctx.x.shape, ctx.y.shape, sqrt=False)


def std(ctx: OpContext) -> Cost:
    return f.var(ctx.x.shape, ctx.y.shape, sqrt=True)


def norm(ctx: OpContext) -> Cost:
    # torch.norm(input, p="fro", dim, ...), Tensor.norm(p=...),
    # torch.linalg.vector_norm(x, ord=2, ...), torch.linalg.norm(x, ord=None, ...)
    p = ctx.arg(1, "ord", ctx.kwargs.get("p", "fro"))
    return f.vector_norm(ctx.x.shape, ctx.y.shape, p)


def cumulative(ctx: OpContext) -> Cost:
    x = ctx.x
    dim: Any = ctx.arg(1, "dim", 0)
    size = x.shape[dim] if x.shape else 1
    return f.cumulative(x.shape, size)


def softmax(ctx: OpContext) -> Cost:
    return f.softmax(ctx.x.shape)


def logsumexp(ctx: OpContext) -> Cost:
    return f.softmax(ctx.x.shape)  # 5 per element of the input, as softmax


for _name, _handler in (
    ("sum", reduce), ("nansum", reduce), ("prod", reduce), ("amax", reduce),
    ("amin", reduce), ("max", max_min), ("min", max_min), ("mean", mean),
    ("nanmean", mean), ("var", var), ("std", std), ("var_mean", var), ("std_mean", std),
    ("norm", norm), ("vector_norm", norm), ("cumsum", cumulative), ("cumprod", cumulative),
    ("cummax", cumulative), ("cummin", cumulative),
    ("logsumexp", logsumexp), ("softmax", softmax), ("log_softmax", softmax),
    ("softmin", softmax),
):  # fmt: skip
    DEFAULT.add(forms(_name), Rule(_name, _handler))

for _cls, _name in (
    (nn.Softmax, "softmax"), (nn.LogSoftmax, "log_softmax"), (nn.Softmin, "softmin"),
    (nn.Softmax2d, "softmax"),
):  # fmt: skip
    DEFAULT.add([_cls], Rule(_name, softmax))


def scatter_reduce(ctx: OpContext) -> Cost:
    # scatter_add / index_add / scatter_reduce(input, dim, index, src | source, ...): one
    # add (or multiply, comparison) per source element folded into the output;
    # scatter_reduce's "mean" then divides every output element by its count, and
    # index_add's alpha != 1 scales every source element first
    src = ctx.arg(3, "src", ctx.kwargs.get("source"))
    reduce = ctx.arg(4, "reduce", "sum")
    scale = ctx.kwargs.get("alpha", 1) != 1
    return f.scatter_reduce(src.shape, ctx.y.shape, str(reduce), scale)


DEFAULT.add(
    forms("scatter_add", "index_add", "scatter_reduce"), Rule("scatter_reduce", scatter_reduce)
)


@DEFAULT.handler(torch.histc, "histc", torch.ops.aten.histc, name="histc")
def histc(ctx: OpContext) -> Cost:
    # a histogram is a scatter-add of ones at each element's bin: one add per input
    # element, as scatter_add counts; finding the bin is index arithmetic (principle 4)
    return Cost(0, ctx.x.numel)
