"""The default convention on the aten frontend: rules keyed by aten op packets.

Every family the fx handlers know gets its aten rule here, built from the same
name lists and, where the arguments line up, the very same handler functions;
where aten passes different arguments (``aten.convolution``'s ``transposed``
flag, ``native_batch_norm``'s ``training``) a small adapter calls the same pure
formula. Ops whose aten decomposition would be counted differently from the
spec are counted whole, as composites: see :mod:`.aten_composite`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .. import formulas as f
from ..records import Cost, TensorMeta
from ..registry import Rule
from . import (
    contractions,
    elementwise,
    fft,
    free,
    misc,
    norms,
    pooling,
    reductions,
    sampling,
)  # fmt: skip
from .context import OpContext
from .table import DEFAULT

aten = torch.ops.aten


def packets(*names: str) -> list[Any]:
    """The aten packets named, each with its in-place ``name_`` form where it exists."""
    out: list[Any] = []
    for name in names:
        for n in (name, name + "_"):
            try:
                packet = getattr(aten, n)
            except (AttributeError, RuntimeError):
                continue
            if packet not in out:
                out.append(packet)
    return out


def _add(names: Iterable[str], rule: Rule) -> None:
    DEFAULT.add(packets(*names), rule)


# --- B. elementwise: the fx name lists, with aten's own names for a few ------------------

for _name in elementwise.ARITHMETIC + elementwise.ACTIVATIONS:
    _add([_name], Rule(_name, elementwise.per_element(1)))
for _name, _aliases in elementwise.ALIASES.items():
    _add(_aliases, Rule(_name, elementwise.per_element(1)))
for _name, _aten in (("prelu", "_prelu_kernel"), ("logsigmoid", "log_sigmoid_forward"),
                     ("logsigmoid", "log_sigmoid"), ("rrelu", "rrelu_with_noise")):  # fmt: skip
    _add([_aten], Rule(_name, elementwise.per_element(1)))
_add(["addcmul", "addcdiv"], Rule("addcmul", elementwise.per_element(2)))

# --- C. reductions and softmax -------------------------------------------------------------

for _aten, _name, _handler in (
    ("sum", "sum", reductions.reduce), ("nansum", "nansum", reductions.reduce),
    ("prod", "prod", reductions.reduce), ("amax", "amax", reductions.reduce),
    ("amin", "amin", reductions.reduce), ("max", "max", reductions.max_min),
    ("min", "min", reductions.max_min), ("mean", "mean", reductions.mean),
    ("nanmean", "nanmean", reductions.mean), ("var", "var", reductions.var),
    ("var_mean", "var_mean", reductions.var), ("std", "std", reductions.std),
    ("std_mean", "std_mean", reductions.std), ("norm", "norm", reductions.norm),
    ("linalg_vector_norm", "vector_norm", reductions.norm),
    ("cumsum", "cumsum", reductions.cumulative), ("cumprod", "cumprod", reductions.cumulative),
    ("cummax", "cummax", reductions.cumulative), ("cummin", "cummin", reductions.cumulative),
    ("logsumexp", "logsumexp", reductions.logsumexp), ("_softmax", "softmax", reductions.softmax),
    ("softmax", "softmax", reductions.softmax), ("_safe_softmax", "softmax", reductions.softmax),
    ("_log_softmax", "log_softmax", reductions.softmax),
    ("log_softmax", "log_softmax", reductions.softmax),
):  # fmt: skip
    _add([_aten], Rule(_name, _handler))


# --- A. contractions -----------------------------------------------------------------------


def convolution(ctx: OpContext) -> Cost:
    # convolution(input, weight, bias, stride, padding, dilation, transposed, ...)
    x, w, b = ctx.arg(0, "input"), ctx.arg(1, "weight"), ctx.arg(2, "bias")
    if ctx.arg(6, "transposed", False):
        return f.conv_transpose(x.shape, w.shape, ctx.y.shape, b is not None)
    return f.convolution(ctx.y.shape, w.shape, b is not None)


_add(["mm", "bmm", "mv", "dot", "vdot"], Rule("matmul", contractions.matmul))
_add(["addmm", "baddbmm", "addmv"], Rule("addmm", contractions.addmm))
_add(["addbmm"], Rule("addbmm", contractions.addbmm))
_add(["addr"], Rule("addr", contractions.addr))
_add(["convolution", "_convolution"], Rule("convolution", convolution))

# --- beyond the spec: the fx handlers, where aten's arguments are the call's own ------------

_add(["scatter_add", "index_add", "scatter_reduce"],
     Rule("scatter_reduce", reductions.scatter_reduce))  # fmt: skip
_add(["_weight_norm", "_weight_norm_interface"], Rule("weight_norm", norms.weight_norm))
_add(["grid_sampler", "grid_sampler_2d", "grid_sampler_3d", "cudnn_grid_sampler",
      "_grid_sampler_2d_cpu_fallback"], Rule("grid_sample", sampling.grid_sampler))  # fmt: skip
_add(["affine_grid_generator"], Rule("affine_grid", sampling.affine_grid))
_add(["_fft_c2c"], Rule("fft", fft.fft_c2c))
_add(["_fft_r2c"], Rule("rfft", fft.fft_r2c))
_add(["_fft_c2r"], Rule("irfft", fft.fft_c2r))

# --- D. normalization ----------------------------------------------------------------------


def _bn(ctx: OpContext, training: bool, stats: bool) -> Cost:
    # (input, weight, bias, ...): statistics from the input in training or without stats
    w, b = ctx.arg(1, "weight"), ctx.arg(2, "bias")
    return norms._stats_or_running(ctx, training or not stats, w is not None, b is not None)


def batch_norm(ctx: OpContext) -> Cost:
    # native_batch_norm / _native_batch_norm_legit(input, weight, bias, running_mean,
    # running_var, training, ...); its .no_stats overload drops the two statistics
    if ctx.extra.get("overload") == "no_stats":
        return _bn(ctx, bool(ctx.arg(3, "training")), stats=False)
    stats = isinstance(ctx.arg(3, "running_mean"), TensorMeta)
    return _bn(ctx, bool(ctx.arg(5, "training")), stats)


def batch_norm_eval(ctx: OpContext) -> Cost:
    # _native_batch_norm_legit_no_training(input, weight, bias, running_mean, running_var, ...)
    return _bn(ctx, False, stats=True)


def group_norm(ctx: OpContext) -> Cost:
    # native_group_norm(input, weight, bias, N, C, HxW, group, eps)
    w, b = ctx.arg(1, "weight"), ctx.arg(2, "bias")
    return f.normalization(ctx.y.shape, w is not None, b is not None)


# cudnn_batch_norm / miopen_batch_norm: what batch_norm lowers to on a GPU, same positions
_add(["native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm", "miopen_batch_norm"],
     Rule("batch_norm", batch_norm))  # fmt: skip
_add(["_native_batch_norm_legit_no_training"], Rule("batch_norm", batch_norm_eval))
# native_layer_norm(input, normalized_shape, weight, bias, eps): F.layer_norm's positions
_add(["native_layer_norm"], Rule("layer_norm", norms.layer_norm_function))
_add(["native_group_norm"], Rule("group_norm", group_norm))
_add(["_fused_rms_norm"], Rule("rms_norm", norms.rms_norm_function))

# --- E. pooling ----------------------------------------------------------------------------

for _d in (1, 2, 3):
    _window = Rule(f"max_pool{_d}d", pooling.pooling(_d, 1)[1])
    _add([f"max_pool{_d}d", f"max_pool{_d}d_with_indices"], _window)
    _add([f"avg_pool{_d}d"], Rule(f"avg_pool{_d}d", pooling.pooling(_d, 1)[1]))
    _add([f"_adaptive_avg_pool{_d}d", f"adaptive_avg_pool{_d}d"],
         Rule(f"adaptive_avg_pool{_d}d", pooling.adaptive(_d)))  # fmt: skip
    _add([f"adaptive_max_pool{_d}d"], Rule(f"adaptive_max_pool{_d}d", pooling.adaptive(_d)))

# --- misc: dropout, interpolation ------------------------------------------------------------


def _interpolation(mode: str) -> Any:
    def handler(ctx: OpContext) -> Cost:
        return f.interpolate(mode, ctx.y.shape)

    handler.__name__ = f"interpolate_{mode}"
    return handler


# native_dropout(input, p, train): F.dropout's positions
_add(["native_dropout"], Rule("dropout", misc.dropout_function(True)))
for _aten, _mode in (
    ("upsample_linear1d", "linear"), ("upsample_bilinear2d", "bilinear"),
    ("_upsample_bilinear2d_aa", "bilinear"), ("upsample_trilinear3d", "trilinear"),
    ("upsample_bicubic2d", "bicubic"), ("_upsample_bicubic2d_aa", "bicubic"),
):  # fmt: skip
    _add([_aten], Rule("interpolate", _interpolation(_mode)))

# --- free: the fx lists by name, and aten's own movement ops -----------------------------------

ATEN_MOVEMENT = (
    "_unsafe_view", "alias", "lift_fresh", "lift_fresh_copy", "constant_pad_nd", "slice",
    "index", "_unsafe_index", "index_put", "_index_put_impl", "empty_strided",
    "new_empty_strided", "_reshape_alias", "unsafe_split", "unsafe_split_with_sizes",
    "unsafe_chunk", "slice_scatter", "select_scatter", "diagonal_scatter", "as_strided_scatter",
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
    "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "reflection_pad1d",
    "reflection_pad2d", "reflection_pad3d", "replication_pad1d", "replication_pad2d",
    "replication_pad3d", "_pad_circular", "im2col", "col2im", "fill", "zero", "copy", "_to_copy",
    "embedding_dense_backward", "_local_scalar_dense", "diagonal_copy",
)  # fmt: skip

for _names, _reason in (
    (free.MOVEMENT + ATEN_MOVEMENT, "data movement"),
    (free.CASTS, "dtype or device cast"),
    (free.FACTORIES, "tensor factory"),
    (free.QUERIES, "metadata query"),
):
    for _name in _names:
        for _packet in packets(_name):
            if ("aten", _packet) not in DEFAULT:
                DEFAULT.free([_packet], _name.strip("_"), _reason)
