"""Quantized ops (``torch.ao.nn.quantized``): contractions count in every dtype.

A quantized model runs ``quantized::conv2d``, ``quantized::linear`` and kin on
quint8 activations and qint8 weights packed into one object; the aten frontend
records it as ``(weight, bias)`` metadata (see ``shapes.to_meta``). The MACs are
those of the float op (spec principle 4: an int8 multiply-accumulate is a MAC),
so a quantized model counts the MACs of its float original. Everything else a
quantized model runs (``quantized::add``, ``add_relu``, ``cat``, ``hardswish``,
pooling on quint8) has an integer output and counts 0 as handled, like any
integer op; ``quantize_per_tensor`` and ``dequantize`` are dtype casts (free).
Quantized tensors cannot be fake, so such a model is counted from a real run on
copies (the report's ``frontend.real_run``) and needs real inputs.
"""

from __future__ import annotations

import torch

from .. import formulas as f
from ..records import Cost, TensorMeta
from ..registry import Rule, Target
from .context import OpContext
from .table import DEFAULT

quantized = torch.ops.quantized


def _packed(ctx: OpContext) -> tuple[TensorMeta, TensorMeta | None]:
    # quantized::conv2d.new(qx, packed_weight, scale, zero_point): packed as (w, b)
    weight, bias = ctx.arg(1, "packed_weight")
    return weight, bias


def conv(ctx: OpContext) -> Cost:
    weight, bias = _packed(ctx)
    return f.convolution(ctx.y.shape, weight.shape, bias is not None)


def conv_transpose(ctx: OpContext) -> Cost:
    # the packed weight keeps ConvTranspose's layout [Cin, Cout / g, *k]
    weight, bias = _packed(ctx)
    return f.conv_transpose(ctx.x.shape, weight.shape, ctx.y.shape, bias is not None)


def linear(ctx: OpContext) -> Cost:
    weight, bias = _packed(ctx)
    return f.linear(ctx.x.shape, weight.shape, bias is not None)


def _packets(*names: str) -> list[Target]:
    return [getattr(quantized, n) for n in names if hasattr(quantized, n)]


for _d in (1, 2, 3):
    DEFAULT.add(_packets(f"conv{_d}d", f"conv{_d}d_relu", f"conv{_d}d_add", f"conv{_d}d_add_relu"),
                Rule(f"quantized_conv{_d}d", conv))  # fmt: skip
    DEFAULT.add(_packets(f"conv_transpose{_d}d"), Rule(f"quantized_conv_transpose{_d}d",
                                                       conv_transpose))  # fmt: skip
DEFAULT.add(_packets("linear", "linear_relu", "linear_leaky_relu", "linear_tanh"),
            Rule("quantized_linear", linear))  # fmt: skip
# dynamic quantization: a float input quantized inside the kernel, int8 MACs, float output
_DYNAMIC = (
    "linear_dynamic",
    "linear_relu_dynamic",
    "linear_dynamic_fp16",
    "linear_relu_dynamic_fp16",
)
DEFAULT.add(_packets(*_DYNAMIC), Rule("quantized_linear_dynamic", linear))

_CASTS = ("quantize_per_tensor", "quantize_per_tensor_dynamic", "quantize_per_channel",
          "dequantize")  # fmt: skip
DEFAULT.free(
    [getattr(torch.ops.aten, n) for n in _CASTS]
    + [getattr(torch, n) for n in _CASTS if hasattr(torch, n)]
    + ["dequantize"],
    None,
    "dtype cast (to or from a quantized dtype)",
)
