"""The default convention's registry and the helper that names an op's forms.

One op (``add``) is reachable under many call targets: ``torch.add``, the
``+`` operator, ``x.add(...)``, ``x.add_(...)``, ``F.relu`` next to
``torch.relu``. :func:`forms` lists them all so each rule is written once.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F

from ..registry import Registry, Target

DEFAULT = Registry()
"""The default convention (the counting spec); :func:`flopgraph.register` adds here."""

_OPERATORS: dict[str, tuple[Any, ...]] = {
    "add": (operator.add, operator.iadd),
    "sub": (operator.sub, operator.isub),
    "mul": (operator.mul, operator.imul),
    "div": (operator.truediv, operator.itruediv),
    "floor_divide": (operator.floordiv, operator.ifloordiv),
    "remainder": (operator.mod, operator.imod),
    "pow": (operator.pow, operator.ipow),
    "neg": (operator.neg,),
    "abs": (operator.abs,),
    "matmul": (operator.matmul, operator.imatmul),
}
_DUNDERS: dict[str, tuple[str, ...]] = {
    "add": ("__add__", "__radd__", "__iadd__"),
    "sub": ("__sub__", "__rsub__", "__isub__"),
    "mul": ("__mul__", "__rmul__", "__imul__"),
    "div": ("__truediv__", "__rtruediv__", "__itruediv__", "__div__", "__rdiv__"),
    "floor_divide": ("__floordiv__", "__rfloordiv__", "__ifloordiv__"),
    "remainder": ("__mod__", "__rmod__", "__imod__"),
    "pow": ("__pow__", "__rpow__", "__ipow__"),
    "neg": ("__neg__",),
    "abs": ("__abs__",),
    "matmul": ("__matmul__", "__rmatmul__"),
}
_NAMESPACES = (torch, F, torch.special, torch.linalg, torch.Tensor)


def forms(*names: str, methods: bool = True) -> list[Target]:
    """Every call target of the named ops: functions in torch, torch.nn.functional,
    torch.special and torch.linalg, their in-place ``name_`` variants, Python
    operators, and (unless ``methods=False``) the tensor method names."""
    out: list[Target] = []
    for name in names:
        for ns in _NAMESPACES:
            for n in (name, name + "_"):
                fn = getattr(ns, n, None)
                if callable(fn) and not isinstance(fn, type) and fn not in out:
                    out.append(fn)
        for fn in _OPERATORS.get(name, ()):
            if fn not in out:
                out.append(fn)
        if methods:
            for m in (name, name + "_", *_DUNDERS.get(name, ())):
                if m not in out:
                    out.append(m)
    return out
