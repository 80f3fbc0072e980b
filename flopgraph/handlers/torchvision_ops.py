"""torchvision functions that fx keeps as single calls (``torch.fx.wrap``).

Installed into the default registry the first time an analysis runs after
torchvision was imported, so importing flopgraph never imports torchvision.
A wrapped function that computes counts as its parts, following the spec's
rule for composites (nn.MultiheadAttention): each part is the op it runs.

Detection ops are registered twice: as the Python functions fx keeps whole and
as the ``torchvision::`` ops the aten frontend records, both on one formula.
RoIAlign's cost is its bilinear samples (4 taps each, as interpolation) and
the mean over each bin's samples. Where a bin's work depends on box sizes
(adaptive sampling, RoIPool), only values could tell, and counting never sees
values: the least work the op can do is counted, one sample per bin.
"""

from __future__ import annotations

from .. import formulas as f
from ..records import ZERO, Cost
from ..registry import Registry, Rule
from .context import OpContext


def stochastic_depth(ctx: OpContext) -> Cost:
    # stochastic_depth(input, p, mode, training): the identity in eval mode or with
    # p = 0; in training one scaled-mask multiply per element, as dropout
    p, training = ctx.arg(1, "p", 0.0), ctx.arg(3, "training", True)
    return f.elementwise(ctx.y.shape) if training and p > 0 else ZERO


def window_attention(
    x: tuple[int, ...],
    window: tuple[int, int],
    num_heads: int,
    shift: tuple[int, int],
    *,
    qkv_bias: bool,
    proj_bias: bool,
    logit_scale: int,
    dropouts: tuple[bool, bool],
) -> Cost:
    """torchvision's swin ``shifted_window_attention`` on x[B, H, W, C] as its parts.

    ``logit_scale`` is the numel of the cosine-attention scale (Swin V2), 0 for
    scaled dot products (V1). ``dropouts``: whether the dropout on the attention
    weights and the one on the output act (training and p > 0; p = 0 is the identity).
    The feature map is padded to whole windows; a window larger than the (padded) map
    disables the shift along that dim.
    """  # fmt: skip
    b, h, w, c = x
    pad_h, pad_w = -(-h // window[0]) * window[0], -(-w // window[1]) * window[1]
    shifted = (window[0] < pad_h and shift[0] > 0) or (window[1] < pad_w and shift[1] > 0)
    n_windows = (pad_h // window[0]) * (pad_w // window[1])
    tokens = window[0] * window[1]
    rows = (b * n_windows, tokens, c)  # windows as a batch of token rows
    scores = (b * n_windows, num_heads, tokens, tokens)
    head_dim = c // num_heads
    cost = f.linear(rows, (3 * c, c), qkv_bias)  # qkv projection
    if logit_scale:  # cosine attention: normalize q and k, clamp and exp the scale, scale
        cost += f.normalize_p2(rows) + f.normalize_p2(rows)
        cost += f.elementwise((logit_scale,), 2) + f.elementwise(scores)
    else:  # q * head_dim ** -0.5
        cost += f.elementwise(rows)
    cost += f.matmul((*scores[:2], tokens, head_dim), (head_dim, tokens), scores)  # q @ k^T
    cost += f.elementwise(scores)  # + relative position bias
    if shifted:  # mask of region ids: one subtract per (window, token, token), then the add
        cost += f.elementwise((n_windows, tokens, tokens)) + f.elementwise(scores)
    cost += f.softmax(scores)
    cost += f.matmul(scores, (tokens, head_dim), (*scores[:3], head_dim))  # attn @ v
    cost += f.linear(rows, (c, c), proj_bias)  # output projection
    # F.dropout on the weights and on the output
    cost += f.elementwise(scores, dropouts[0]) + f.elementwise(rows, dropouts[1])
    return cost


def shifted_window_attention(ctx: OpContext) -> Cost:
    # (input, qkv_weight, proj_weight, relative_position_bias, window_size, num_heads,
    #  shift_size, attention_dropout, dropout, qkv_bias, proj_bias, logit_scale, training)
    scale = ctx.arg(11, "logit_scale")
    training = bool(ctx.arg(12, "training", True))
    p_attention, p_out = float(ctx.arg(7, "attention_dropout")), float(ctx.arg(8, "dropout"))
    return window_attention(
        ctx.x.shape,
        tuple(ctx.arg(4, "window_size")),  # type: ignore[arg-type]
        int(ctx.arg(5, "num_heads")),
        tuple(ctx.arg(6, "shift_size")),  # type: ignore[arg-type]
        qkv_bias=ctx.arg(9, "qkv_bias") is not None,
        proj_bias=ctx.arg(10, "proj_bias") is not None,
        logit_scale=scale.numel if scale is not None else 0,
        dropouts=(training and p_attention > 0, training and p_out > 0),
    )


def samples_per_bin(sampling_ratio: int) -> int:
    """Samples RoIAlign averages per bin: ratio x ratio, or for an adaptive ratio
    (<= 0; ceil(box size / bins) per axis, box-dependent) its least, 1."""
    return sampling_ratio * sampling_ratio if sampling_ratio > 0 else 1


def roi_align_function(ctx: OpContext) -> Cost:
    # roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned);
    # ps_roi_align alike without aligned; output [K, C, PH, PW]
    return f.roi_align(ctx.y.shape, samples_per_bin(int(ctx.arg(4, "sampling_ratio", -1))))


def roi_align_op(ctx: OpContext) -> Cost:
    # torchvision::roi_align(input, rois, spatial_scale, pooled_height, pooled_width,
    # sampling_ratio, aligned); torchvision::ps_roi_align alike without aligned
    return f.roi_align(ctx.y.shape, samples_per_bin(int(ctx.arg(5, "sampling_ratio"))))


def multiscale_roi_align(ctx: OpContext) -> Cost:
    # _multiscale_roi_align(x_filtered, boxes, output_size, sampling_ratio, scales, mapper):
    # one roi_align per level, each box on one level: the formula on the merged output
    return f.roi_align(ctx.y.shape, samples_per_bin(int(ctx.arg(3, "sampling_ratio"))))


def roi_pool(ctx: OpContext) -> Cost:
    # roi_pool (max) and ps_roi_pool (average) over a bin spanning part of a box: a
    # pool whose window only box values tell; its least, one element per bin
    return f.pool(ctx.y.shape, (1,))


def _install_detection(registry: Registry) -> None:
    import torch
    from torchvision import ops
    from torchvision.ops import poolers

    tv = torch.ops.torchvision
    registry.add([ops.roi_align, ops.ps_roi_align], Rule("roi_align", roi_align_function))
    registry.add([tv.roi_align, tv.ps_roi_align], Rule("roi_align", roi_align_op))
    registry.add([poolers._multiscale_roi_align], Rule("roi_align", multiscale_roi_align))
    registry.free([poolers._filter_input], "filter_input", "data movement")  # picks maps by name
    registry.add([ops.roi_pool, ops.ps_roi_pool, tv.roi_pool, tv.ps_roi_pool],
                 Rule("roi_pool", roi_pool))  # fmt: skip
    registry.free([tv.nms], "nms", "comparisons (the kept indices are integers)")


def install(registry: Registry) -> None:
    from torchvision import ops
    from torchvision.models import swin_transformer as swin

    _install_detection(registry)

    registry.add([ops.stochastic_depth], Rule("stochastic_depth", stochastic_depth))
    registry.add(
        [swin.shifted_window_attention], Rule("shifted_window_attention", shifted_window_attention)
    )
    registry.free([swin._get_relative_position_bias], "relative_position_bias", "indexing")
    registry.free([swin._patch_merging_pad], "patch_merging_pad", "data movement")
