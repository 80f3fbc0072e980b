"""The user's module tree, walked once per analysis.

An analysis asks for ``model.named_modules()`` about ten times (module paths, shadows,
rules, quantized modules, experts, positions, the report's tree), and each walk of
nested generators costs about 1.7 ms on the 1,047 modules of an 80-layer Llama.
Inside :func:`walking` (which ``analyze`` enters), :func:`named_modules` walks a model
once and hands out the same dict: the model does not change while it is analysed
(flopgraph runs a shadow of it, never the model).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

import torch

from .options import setting

P = ParamSpec("P")
R = TypeVar("R")

_WALKS: ContextVar[dict[int, tuple[torch.nn.Module, dict[str, torch.nn.Module]]] | None] = (
    ContextVar("walks", default=None)
)


def named_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """``dict(model.named_modules())``; inside :func:`walking`, one walk per model.
    The dict is shared: read it, do not change it."""
    walks = _WALKS.get()
    if walks is None:
        return dict(model.named_modules())
    found = walks.get(id(model))
    if found is None or found[0] is not model:
        found = walks[id(model)] = (model, dict(model.named_modules()))
    return found[1]


def walking() -> AbstractContextManager[None]:
    """Walk each model once while the block runs (an analysis, nested ones included)."""
    return nullcontext() if _WALKS.get() is not None else setting(_WALKS, {})


def walked(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run inside :func:`walking`."""

    @functools.wraps(fn)
    def inner(*args: P.args, **kwargs: P.kwargs) -> R:
        with walking():
            return fn(*args, **kwargs)

    return inner
