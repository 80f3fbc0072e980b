"""torch.nn's Transformer modules, counted as their parts.

fx cannot trace through them (their forward branches on tensor properties to
pick a fused fast path), so each is a leaf whose cost is the sum of its parts:
attention (see :func:`attention.mha_cost`), feed-forward linears and
activation, residual adds, layer norms, and dropouts in training mode. The
activation counts 1 flop per element, as every activation of the spec does.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import formulas as f
from ..records import Cost, TensorMeta
from ..registry import Rule
from .attention import mha_cost
from .context import OpContext
from .contractions import weight_shape
from .table import DEFAULT

Shape = tuple[int, ...]


def _given(*values: Any) -> bool:
    """A mask is applied when a mask tensor is passed or causality is asked."""
    return any(isinstance(v, TensorMeta) or v is True for v in values)


def _norm(norm: nn.Module | None, x: Shape) -> Cost:
    if norm is None:
        return Cost()
    w, b = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if isinstance(norm, nn.RMSNorm):
        return f.rms_norm(x, w is not None)
    return f.normalization(x, w is not None, b is not None)


def _feed_forward(
    layer: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer, x: Shape, residuals: int
) -> Cost:
    """linear1, activation, linear2; the layer's residual adds and norms; and in
    training one multiply per element for each dropout (one after the activation,
    one per residual branch)."""
    l1, l2 = layer.linear1, layer.linear2
    hidden = (*x[:-1], l1.out_features)
    cost = f.linear(x, weight_shape(l1), l1.bias is not None)
    cost += f.elementwise(hidden)  # activation
    cost += f.linear(hidden, weight_shape(l2), l2.bias is not None)
    cost += f.elementwise(x, residuals)  # residual adds
    for i in range(1, residuals + 1):
        cost += _norm(getattr(layer, f"norm{i}"), x)
    if layer.training:  # a dropout with p = 0 is the identity, as in eval
        cost += f.elementwise(hidden) if layer.dropout.p > 0 else Cost()
        active = sum(getattr(layer, f"dropout{i}").p > 0 for i in range(1, residuals + 1))
        cost += f.elementwise(x, active)
    return cost


def encoder_layer_cost(layer: nn.TransformerEncoderLayer, x: Shape, masked: bool) -> Cost:
    attn = mha_cost(layer.self_attn, x, x, masked=masked)
    return attn + _feed_forward(layer, x, residuals=2)


def decoder_layer_cost(
    layer: nn.TransformerDecoderLayer,
    x: Shape,
    memory: Shape,
    self_masked: bool,
    cross_masked: bool,
) -> Cost:
    attn = mha_cost(layer.self_attn, x, x, masked=self_masked)
    cross = mha_cost(layer.multihead_attn, x, memory, masked=cross_masked)
    return attn + cross + _feed_forward(layer, x, residuals=3)


def encoder_cost(enc: nn.TransformerEncoder, x: Shape, masked: bool) -> Cost:
    cost = Cost()
    for layer in enc.layers:
        cost += encoder_layer_cost(layer, x, masked)
    return cost + _norm(enc.norm, x)


def decoder_cost(
    dec: nn.TransformerDecoder, x: Shape, memory: Shape, self_masked: bool, cross_masked: bool
) -> Cost:
    cost = Cost()
    for layer in dec.layers:
        cost += decoder_layer_cost(layer, x, memory, self_masked, cross_masked)
    return cost + _norm(dec.norm, x)


def encoder_layer(ctx: OpContext) -> Cost:
    # forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)
    masked = _given(
        ctx.arg(1, "src_mask"), ctx.arg(2, "src_key_padding_mask"), ctx.arg(3, "is_causal")
    )
    return encoder_layer_cost(ctx.module, ctx.x.shape, masked)  # type: ignore[arg-type]


def encoder(ctx: OpContext) -> Cost:
    # forward(src, mask=None, src_key_padding_mask=None, is_causal=None)
    masked = _given(ctx.arg(1, "mask"), ctx.arg(2, "src_key_padding_mask"), ctx.arg(3, "is_causal"))
    return encoder_cost(ctx.module, ctx.x.shape, masked)  # type: ignore[arg-type]


def _decoder_masks(ctx: OpContext, first: int) -> tuple[bool, bool]:
    # (tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
    #  tgt_is_causal, memory_is_causal) from position `first` on
    a = [ctx.arg(first + i, n) for i, n in enumerate((
        "tgt_mask", "memory_mask", "tgt_key_padding_mask", "memory_key_padding_mask",
        "tgt_is_causal", "memory_is_causal"))]  # fmt: skip
    return _given(a[0], a[2], a[4]), _given(a[1], a[3], a[5])


def decoder_layer(ctx: OpContext) -> Cost:
    self_m, cross_m = _decoder_masks(ctx, 2)
    x, memory = ctx.arg(0, "tgt").shape, ctx.arg(1, "memory").shape
    return decoder_layer_cost(ctx.module, x, memory, self_m, cross_m)  # type: ignore[arg-type]


def decoder(ctx: OpContext) -> Cost:
    self_m, cross_m = _decoder_masks(ctx, 2)
    x, memory = ctx.arg(0, "tgt").shape, ctx.arg(1, "memory").shape
    return decoder_cost(ctx.module, x, memory, self_m, cross_m)  # type: ignore[arg-type]


def transformer(ctx: OpContext) -> Cost:
    # forward(src, tgt, src_mask, tgt_mask, memory_mask, src_key_padding_mask,
    #         tgt_key_padding_mask, memory_key_padding_mask, src_is_causal,
    #         tgt_is_causal, memory_is_causal)
    m = ctx.module
    assert isinstance(m, nn.Transformer)
    if not isinstance(m.encoder, nn.TransformerEncoder) or not isinstance(
        m.decoder, nn.TransformerDecoder
    ):
        raise TypeError("nn.Transformer with a custom encoder or decoder has no fx handler")
    src, tgt = ctx.arg(0, "src").shape, ctx.arg(1, "tgt").shape
    enc_masked = _given(ctx.arg(2, "src_mask"), ctx.arg(5, "src_key_padding_mask"),
                        ctx.arg(8, "src_is_causal"))  # fmt: skip
    self_masked = _given(ctx.arg(3, "tgt_mask"), ctx.arg(6, "tgt_key_padding_mask"),
                         ctx.arg(9, "tgt_is_causal"))  # fmt: skip
    cross_masked = _given(ctx.arg(4, "memory_mask"), ctx.arg(7, "memory_key_padding_mask"),
                          ctx.arg(10, "memory_is_causal"))  # fmt: skip
    # the encoder's output (the memory) has the shape of src
    return encoder_cost(m.encoder, src, enc_masked) + decoder_cost(
        m.decoder, tgt, src, self_masked, cross_masked
    )


DEFAULT.add([nn.TransformerEncoderLayer], Rule("transformer_encoder_layer", encoder_layer))
DEFAULT.add([nn.TransformerDecoderLayer], Rule("transformer_decoder_layer", decoder_layer))
DEFAULT.add([nn.TransformerEncoder], Rule("transformer_encoder", encoder))
DEFAULT.add([nn.TransformerDecoder], Rule("transformer_decoder", decoder))
DEFAULT.add([nn.Transformer], Rule("transformer", transformer))
