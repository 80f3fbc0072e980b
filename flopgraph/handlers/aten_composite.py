"""Composites of the default convention: torch calls the aten frontend counts whole.

Some calls decompose into aten ops that the spec would count differently from
the call: ``F.normalize`` becomes a norm, a clamp and a divide; the math path of
``F.scaled_dot_product_attention`` scales q and k separately; ``F.multi_head_attention_forward``
and the recurrent kernels run dozens of ops; ``torch.outer`` becomes a multiply.
For those the aten frontend counts the call itself. Where fx has a rule for the
same function, that very rule is used, so the two frontends cannot disagree;
the rest (multi-head attention, recurrent kernels, attention kernels) are small
adapters over the formulas the fx module handlers use.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import formulas as f
from ..options import CAUSAL_TRIANGLE
from ..records import Cost, TensorMeta
from ..registry import Rule, builtin_packet

# the fx rules these composites reuse must be registered first
from . import (  # noqa: F401
    attention,
    contractions,
    elementwise,
    misc,
    norms,
    pooling,
    reductions,  # noqa: F401
)
from .context import OpContext
from .table import DEFAULT

aten = torch.ops.aten

WHOLE = (
    F.scaled_dot_product_attention, F.normalize, F.softsign, F.softmin, F.lp_pool1d,
    F.lp_pool2d, F.lp_pool3d, F.local_response_norm, F.rms_norm, torch.rms_norm,
    F.instance_norm, F.dropout, torch.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.feature_alpha_dropout, torch.alpha_dropout, torch.feature_alpha_dropout,
    torch.feature_dropout, F.embedding_bag, torch.outer, torch.ger, F.bilinear, torch.einsum,
    torch.logsumexp,
)  # fmt: skip
"""Functions counted whole on the aten frontend by their fx function rule."""


def reuse_function_rules(functions: tuple[Any, ...]) -> None:
    """Register each function's fx rule (if fx has one) as its composite rule, under the
    function and, for a builtin, under the aten op it names (so ``x.outer(y)`` is found)."""
    for fn in functions:
        rule = DEFAULT.get(("function", fn))
        if rule is None:
            continue
        packet = builtin_packet(fn)
        targets = [fn] if packet is None else [fn, packet]
        DEFAULT.composite([t for t in targets if ("composite", t) not in DEFAULT], rule)


def multi_head_attention(ctx: OpContext) -> Cost:
    # F.multi_head_attention_forward(query, key, value, embed_dim, num_heads, in_proj_weight,
    #   in_proj_bias, bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight,
    #   out_proj_bias, training, key_padding_mask, need_weights, attn_mask, ...,
    #   average_attn_weights (23), is_causal (24)); query [L, N, E] or [L, E]
    query, key, value = ctx.arg(0, "query"), ctx.arg(1, "key"), ctx.arg(2, "value")
    batched = len(query.shape) == 3
    masked = (
        isinstance(ctx.arg(14, "key_padding_mask"), TensorMeta)
        or isinstance(ctx.arg(16, "attn_mask"), TensorMeta)
        or bool(ctx.arg(24, "is_causal", False))
    )
    need_weights = bool(ctx.arg(15, "need_weights", True))
    return f.multihead_attention(
        query.shape[1] if batched else 1, query.shape[0], key.shape[0],
        int(ctx.arg(3, "embed_dim_to_check")), key.shape[-1], value.shape[-1],
        int(ctx.arg(4, "num_heads")),
        in_bias=ctx.arg(6, "in_proj_bias") is not None,
        out_bias=ctx.arg(12, "out_proj_bias") is not None,
        extra_keys=int(ctx.arg(7, "bias_k") is not None) + int(bool(ctx.arg(9, "add_zero_attn"))),
        masked=masked,
        dropout=bool(ctx.arg(13, "training", True)) and float(ctx.arg(10, "dropout_p")) > 0,
        average_weights=need_weights and bool(ctx.arg(23, "average_attn_weights", True)),
    )  # fmt: skip


_KIND = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn", "rnn_relu": "rnn"}


def recurrent(ctx: OpContext) -> Cost:
    # _VF.lstm(input, hx, weights, has_biases, num_layers, dropout, train, bidirectional,
    # batch_first), or with a packed sequence (data, batch_sizes, hx, weights, ...);
    # gru, rnn_tanh and rnn_relu alike. Weights per layer and direction: w_ih, w_hh,
    # [b_ih, b_hh], [w_hr (LSTM projection)].
    packet = builtin_packet(ctx.extra["target"])
    x, second = ctx.args[0], ctx.args[1]
    at = 3 if isinstance(second, TensorMeta) and not second.is_floating else 2
    weights, bias, layers = ctx.args[at], bool(ctx.args[at + 1]), int(ctx.args[at + 2])
    directions = 2 if ctx.args[at + 5] else 1
    per = len(weights) // (layers * directions)
    w_ih, w_hh = weights[0].shape, weights[1].shape
    proj = weights[per - 1].shape[0] if per in (3, 5) else 0
    hidden = weights[per - 1].shape[1] if proj else w_hh[1]
    kind = _KIND[str(packet.__name__)]
    rows = x.numel // w_ih[1]
    return f.recurrent(kind, w_ih[1], hidden, layers, directions, bias, proj, rows)


def recurrent_cell(ctx: OpContext) -> Cost:
    # _VF.lstm_cell(input, hx, w_ih, w_hh, b_ih, b_hh); gru_cell, rnn_*_cell alike
    kind = _KIND[str(builtin_packet(ctx.extra["target"]).__name__).removesuffix("_cell")]
    x, w_ih, w_hh = ctx.args[0], ctx.arg(2, "w_ih"), ctx.arg(3, "w_hh")
    step = f.recurrent_step(kind, w_ih.shape[1], w_hh.shape[1], ctx.arg(4, "b_ih") is not None)
    rows = x.numel // w_ih.shape[1]
    return Cost(step.macs * rows, step.flops * rows)


_KERNELS = {  # attention kernel -> positions of (attn_mask, dropout_p, is_causal)
    "_scaled_dot_product_flash_attention_for_cpu": (None, 3, 4),
    "_scaled_dot_product_flash_attention": (None, 3, 4),
    "_scaled_dot_product_efficient_attention": (3, 5, 6),
    "_scaled_dot_product_cudnn_attention": (3, 5, 6),
}


def attention_kernel(positions: tuple[int | None, int, int]) -> Any:
    """Handler for one of torch's fused attention kernels (q, k, v first; the mask,
    dropout and causal flag at kernel-specific positions; output first)."""
    mask_at, dropout_at, causal_at = positions

    def handler(ctx: OpContext) -> Cost:
        q, k, v = ctx.args[0], ctx.args[1], ctx.args[2]
        mask = ctx.arg(mask_at, "attn_bias") if mask_at is not None else None
        mask = mask if mask is not None else ctx.kwargs.get("attn_mask")
        causal = bool(ctx.arg(causal_at, "is_causal", False))
        masked = isinstance(mask, TensorMeta) or causal
        dropout = float(ctx.arg(dropout_at, "dropout_p", 0.0)) > 0
        triangle = causal and CAUSAL_TRIANGLE.get()
        return f.scaled_dot_product_attention(
            q.shape, k.shape, v.shape, ctx.y.shape, masked, dropout, triangle
        )

    return handler


reuse_function_rules(WHOLE)
# a function rule: fx counts a direct call (open_clip's attention pool) by it, aten too
DEFAULT.add([F.multi_head_attention_forward], Rule("multihead_attention", multi_head_attention))
for _packet, _name in ((aten.lstm, "lstm"), (aten.gru, "gru"), (aten.rnn_tanh, "rnn"),
                       (aten.rnn_relu, "rnn")):  # fmt: skip
    DEFAULT.composite([_packet], Rule(_name, recurrent))
    DEFAULT.composite(
        [getattr(aten, f"{_packet.__name__}_cell")], Rule(f"{_name}_cell", recurrent_cell)
    )
for _name, _positions in _KERNELS.items():
    DEFAULT.add(
        [getattr(aten, _name)], Rule("scaled_dot_product_attention", attention_kernel(_positions))
    )
