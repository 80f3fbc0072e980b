"""Section E: max, average, power-average and adaptive pooling."""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import formulas as f
from ..records import Cost
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms


def _kernel(k: Any, dims: int) -> tuple[int, ...]:
    return tuple(k) if isinstance(k, (tuple, list)) else (int(k),) * dims


def pooling(dims: int, kernel_pos: int) -> tuple[Any, Any]:
    """Module and function handlers for a windowed pool of ``dims`` dims;
    ``kernel_pos`` is the position of kernel_size in the functional call."""

    def module(ctx: OpContext) -> Cost:
        assert ctx.module is not None
        return f.pool(ctx.y.shape, _kernel(ctx.module.kernel_size, dims))

    def function(ctx: OpContext) -> Cost:
        return f.pool(ctx.y.shape, _kernel(ctx.arg(kernel_pos, "kernel_size"), dims))

    return module, function


def adaptive(dims: int) -> Any:
    def handler(ctx: OpContext) -> Cost:
        return f.adaptive_pool(ctx.x.shape, ctx.y.shape, dims)

    return handler


_MODULES: dict[int, dict[str, type[nn.Module]]] = {
    1: {"max": nn.MaxPool1d, "avg": nn.AvgPool1d, "lp": nn.LPPool1d,
        "adaptive_avg": nn.AdaptiveAvgPool1d, "adaptive_max": nn.AdaptiveMaxPool1d},
    2: {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "lp": nn.LPPool2d,
        "adaptive_avg": nn.AdaptiveAvgPool2d, "adaptive_max": nn.AdaptiveMaxPool2d},
    3: {"max": nn.MaxPool3d, "avg": nn.AvgPool3d, "lp": nn.LPPool3d,
        "adaptive_avg": nn.AdaptiveAvgPool3d, "adaptive_max": nn.AdaptiveMaxPool3d},
}  # fmt: skip

for _d, _mods in _MODULES.items():
    for _kind, _kpos in (("max", 1), ("avg", 1), ("lp", 2)):
        _name = f"{_kind}_pool{_d}d"
        _mod, _fn = pooling(_d, _kpos)
        DEFAULT.add([_mods[_kind]], Rule(_name, _mod))
        _extra = forms(f"{_name}_with_indices", methods=False) if _kind == "max" else []
        DEFAULT.add([*forms(_name, methods=False), *_extra], Rule(_name, _fn))
    for _kind in ("adaptive_avg", "adaptive_max"):
        _name = f"{_kind}_pool{_d}d"
        _extra = forms(f"{_name}_with_indices", methods=False) if _kind == "adaptive_max" else []
        DEFAULT.add(
            [_mods[_kind], *forms(_name, methods=False), *_extra], Rule(_name, adaptive(_d))
        )
