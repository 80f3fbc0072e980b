"""Dropout, interpolation and embeddings: ops whose cost depends on a mode."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .. import formulas as f
from ..records import ZERO, Cost
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms

_DROPOUT_MODULES = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)  # fmt: skip
_DROPOUT_FUNCTIONS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "feature_dropout")
# F.alpha_dropout and F.feature_alpha_dropout default to training=False
_ALPHA_DROPOUT_FUNCTIONS = ("alpha_dropout", "feature_alpha_dropout")


def dropout_module(ctx: OpContext) -> Cost:
    # eval, or p = 0: the identity (torch returns the input); training: one scaled-mask
    # multiply per element
    assert ctx.module is not None
    active = ctx.module.training and float(getattr(ctx.module, "p", 0.5)) > 0
    return f.elementwise(ctx.y.shape) if active else ZERO


def dropout_function(default_training: bool) -> Callable[[OpContext], Cost]:
    """Handler for functional dropouts whose ``training`` flag defaults as given."""

    def handler(ctx: OpContext) -> Cost:
        # F.dropout(input, p=0.5, training=True); torch.dropout(input, p, train); p = 0
        # is the identity, as in eval
        training = ctx.arg(2, "training", ctx.kwargs.get("train", default_training))
        active = training and float(ctx.arg(1, "p", 0.5)) > 0
        return f.elementwise(ctx.y.shape) if active else ZERO

    return handler


def _interpolate(ctx: OpContext, mode: str) -> Cost:
    if mode == "area":  # area interpolation is an adaptive average pool
        return f.adaptive_pool(ctx.x.shape, ctx.y.shape, len(ctx.y.shape) - 2)
    return f.interpolate(mode, ctx.y.shape)


def interpolate_function(ctx: OpContext) -> Cost:
    return _interpolate(ctx, str(ctx.arg(3, "mode", "nearest")))


def upsample_module(ctx: OpContext) -> Cost:
    return _interpolate(ctx, str(getattr(ctx.module, "mode", "nearest")))


def upsample_bilinear(ctx: OpContext) -> Cost:
    return f.interpolate("bilinear", ctx.y.shape)


def embedding_bag_module(ctx: OpContext) -> Cost:
    # forward(input, offsets=None, per_sample_weights=None)
    m = ctx.module
    assert isinstance(m, nn.EmbeddingBag)
    weighted = ctx.arg(2, "per_sample_weights") is not None
    return _embedding_bag(ctx, m.embedding_dim, m.mode, weighted)


def embedding_bag_function(ctx: OpContext) -> Cost:
    # F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq,
    #                 mode="mean", sparse, per_sample_weights, ...)
    weighted = ctx.arg(8, "per_sample_weights") is not None
    dim = ctx.arg(1, "weight").shape[-1]
    return _embedding_bag(ctx, dim, str(ctx.arg(6, "mode", "mean")), weighted)


def _embedding_bag(ctx: OpContext, dim: int, mode: str, weighted: bool) -> Cost:
    gathered = ctx.x.numel * dim  # one row of `dim` values per index
    cost = f.embedding_bag(gathered, ctx.y.shape, mode)
    # per_sample_weights (mode sum): one multiply per gathered value
    return Cost(0, cost.flops + (gathered if weighted else 0))


DEFAULT.add(_DROPOUT_MODULES, Rule("dropout", dropout_module))
DEFAULT.add(forms(*_DROPOUT_FUNCTIONS, methods=False), Rule("dropout", dropout_function(True)))
DEFAULT.add(
    forms(*_ALPHA_DROPOUT_FUNCTIONS, methods=False), Rule("dropout", dropout_function(False))
)
DEFAULT.add(
    forms("interpolate", "upsample", methods=False), Rule("interpolate", interpolate_function)
)
# UpsamplingNearest2d / UpsamplingBilinear2d keep Upsample's forward and set its mode
DEFAULT.add([nn.Upsample], Rule("interpolate", upsample_module))
DEFAULT.add(forms("upsample_bilinear", methods=False), Rule("interpolate", upsample_bilinear))
DEFAULT.add([nn.EmbeddingBag], Rule("embedding_bag", embedding_bag_module))
DEFAULT.add(forms("embedding_bag", methods=False), Rule("embedding_bag", embedding_bag_function))
