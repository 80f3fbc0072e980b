"""Attention: F.scaled_dot_product_attention and nn.MultiheadAttention.

nn.MultiheadAttention is a leaf of the fx graph; it counts as its parts
(input projections, the attention core per head, output projection), read
from the module's configuration and the shapes of the call, so every path
torch may take inside it (the eval-mode fast path included) counts the same.
"""

from __future__ import annotations

from torch import nn

from .. import formulas as f
from ..options import CAUSAL_TRIANGLE
from ..records import Cost, TensorMeta
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms


def sdpa(ctx: OpContext) -> Cost:
    # scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
    # is_causal=False, scale=None, enable_gqa=False)
    q, k, v = ctx.arg(0, "query"), ctx.arg(1, "key"), ctx.arg(2, "value")
    causal = bool(ctx.arg(5, "is_causal", False))
    masked = ctx.arg(3, "attn_mask") is not None or causal
    dropout = float(ctx.arg(4, "dropout_p", 0.0)) > 0
    triangle = causal and CAUSAL_TRIANGLE.get()
    return f.scaled_dot_product_attention(
        q.shape, k.shape, v.shape, ctx.y.shape, masked, dropout, triangle
    )


def mha_cost(
    m: nn.MultiheadAttention,
    query: tuple[int, ...],
    key: tuple[int, ...],
    *,
    masked: bool,
    average_weights: bool = False,
) -> Cost:
    """The cost of one call of ``m`` on query and key of these shapes:
    [L, N, E] and [S, N, kdim] ([N, L, E] with batch_first; [L, E] unbatched)."""
    if len(query) == 3:
        batch_dim, seq_dim = (0, 1) if m.batch_first else (1, 0)
        batch, tgt_len, src_len = query[batch_dim], query[seq_dim], key[seq_dim]
    else:
        batch, tgt_len, src_len = 1, query[0], key[0]
    return f.multihead_attention(
        batch, tgt_len, src_len, m.embed_dim, m.kdim, m.vdim, m.num_heads,
        in_bias=m.in_proj_bias is not None,
        out_bias=m.out_proj.bias is not None,
        extra_keys=int(m.bias_k is not None) + int(m.add_zero_attn),
        masked=masked,
        dropout=m.training and m.dropout > 0,
        average_weights=average_weights,
    )  # fmt: skip


def multihead_attention(ctx: OpContext) -> Cost:
    # forward(query, key, value, key_padding_mask=None, need_weights=True,
    # attn_mask=None, average_attn_weights=True, is_causal=False)
    m = ctx.module
    assert isinstance(m, nn.MultiheadAttention)
    query, key = ctx.arg(0, "query"), ctx.arg(1, "key")
    masked = (
        isinstance(ctx.arg(3, "key_padding_mask"), TensorMeta)
        or isinstance(ctx.arg(5, "attn_mask"), TensorMeta)
        or bool(ctx.arg(7, "is_causal", False))
    )
    average = bool(ctx.arg(4, "need_weights", True)) and bool(
        ctx.arg(6, "average_attn_weights", True)
    )
    return mha_cost(m, query.shape, key.shape, masked=masked, average_weights=average)


DEFAULT.add(
    forms("scaled_dot_product_attention", methods=False),
    Rule("scaled_dot_product_attention", sdpa),
)
DEFAULT.add([nn.MultiheadAttention], Rule("multihead_attention", multihead_attention))
