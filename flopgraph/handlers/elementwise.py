"""Section B: elementwise arithmetic and activations, a fixed count per output element."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .. import formulas as f
from ..records import Cost
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms


def per_element(k: int) -> Callable[[OpContext], Cost]:
    """Handler factory: ``k`` flops for each element of the op's output."""

    def handler(ctx: OpContext) -> Cost:
        return f.elementwise(ctx.y.shape, k)

    handler.__name__ = f"per_element_{k}"
    return handler


_ONE, _TWO = per_element(1), per_element(2)

ARITHMETIC = (
    "add", "sub", "mul", "div", "remainder", "pow", "neg", "abs", "sqrt", "rsqrt", "exp",
    "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "sigmoid", "tanh",
    "erf", "erfc", "reciprocal", "square", "sign", "clamp", "clip", "maximum", "minimum",
    "fmod", "where", "lerp", "floor", "ceil", "round", "trunc",
)  # fmt: skip
# Same arithmetic under other names, and ops the spec leaves out that follow its
# principle (one operation per output element): documented in docs/conventions.md.
ALIASES = {
    "sub": ("subtract", "rsub"), "mul": ("multiply",), "div": ("divide", "true_divide"),
    "neg": ("negative",), "abs": ("absolute",), "clamp": ("clamp_min", "clamp_max"),
    "sigmoid": ("expit",), "pow": ("float_power",), "floor_divide": ("floor_divide",),
    "fmax": ("fmax",), "fmin": ("fmin",), "atan": ("atan", "arctan"), "asin": ("asin",),
    "acos": ("acos",), "sinh": ("sinh",), "cosh": ("cosh",), "atan2": ("atan2",),
    "hypot": ("hypot",), "xlogy": ("xlogy",), "frac": ("frac",), "copysign": ("copysign",),
    "nan_to_num": ("nan_to_num",), "erfinv": ("erfinv",), "logit": ("logit",),
    "sgn": ("sgn",), "angle": ("angle",), "i0": ("i0",),
}  # fmt: skip
ACTIVATIONS = (
    "relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish",
    "hardswish", "hardsigmoid", "hardtanh", "softplus", "softsign", "logsigmoid",
    "threshold", "glu", "rrelu", "softshrink", "hardshrink",
)  # fmt: skip
ACTIVATION_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu",
    nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.Mish: "mish", nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid",
    nn.Hardtanh: "hardtanh", nn.Softplus: "softplus", nn.Softsign: "softsign",
    nn.LogSigmoid: "logsigmoid", nn.Threshold: "threshold", nn.GLU: "glu",
    nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.RReLU: "rrelu", nn.Softshrink: "softshrink",
    nn.Hardshrink: "hardshrink",
}  # fmt: skip

for _name in ARITHMETIC:
    DEFAULT.add(forms(_name), Rule(_name, _ONE))
for _name, _aliases in ALIASES.items():
    DEFAULT.add(forms(*_aliases), Rule(_name, _ONE))
for _name in ACTIVATIONS:
    DEFAULT.add(forms(_name), Rule(_name, _ONE))
for _cls, _name in ACTIVATION_MODULES.items():
    DEFAULT.add([_cls], Rule(_name, _ONE))

# x - tanh(x): two operations per element
DEFAULT.add([nn.Tanhshrink, *forms("tanhshrink")], Rule("tanhshrink", _TWO))
DEFAULT.add(forms("addcmul"), Rule("addcmul", _TWO))
DEFAULT.add(forms("addcdiv"), Rule("addcdiv", _TWO))
