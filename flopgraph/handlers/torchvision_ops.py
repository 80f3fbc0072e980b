"""torchvision.ops functions that fx keeps as single calls (``torch.fx.wrap``).

Installed into the default registry the first time an analysis runs after
torchvision was imported, so importing flopgraph never imports torchvision.
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


def install(registry: Registry) -> None:
    from torchvision import ops

    registry.add([ops.stochastic_depth], Rule("stochastic_depth", stochastic_depth))
