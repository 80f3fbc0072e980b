"""Which models run quantized kernels, which fake and meta tensors do not have.

``torch.ao.nn.quantized`` modules call ``quantized::conv2d`` and kin on quantized
tensors with packed weights; ``FakeTensorMode`` turns ``quantize_per_tensor``'s
quint8 result into a float32 fake tensor that those kernels then refuse. Such a
model is counted from a real run on copies (aten) and never propagated on fx.
"""

from __future__ import annotations

import torch

from ..tree import named_modules

_PACKAGES = ("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def quantized_modules(model: torch.nn.Module) -> str:
    """The quantized module types in ``model`` (``"Conv2d, Linear"``), or ``""``."""
    found: dict[str, None] = {}
    for m in named_modules(model).values():
        if type(m).__module__.startswith(_PACKAGES):
            found[type(m).__name__] = None
    return ", ".join(found)
