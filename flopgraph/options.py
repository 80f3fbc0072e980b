"""Counting options that change a rule's arithmetic for one analysis.

They are context variables, set by ``analyze`` around its counting pass and read by
the few handlers they concern, so that a handler stays a function of one op's
metadata and the option reaches it without threading through every frontend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, TypeVar

Attention = Literal["full", "causal"]
ATTENTIONS: tuple[str, ...] = ("full", "causal")

CAUSAL_TRIANGLE: ContextVar[bool] = ContextVar("causal_triangle", default=False)
"""True: a causal attention call (``is_causal``) counts only the unmasked score
positions (spec section A's option for model FLOPs), forward and backward; False:
the full L x S square dense kernels compute."""


T = TypeVar("T")


@contextmanager
def setting(var: ContextVar[T], value: T) -> Iterator[None]:
    """``var`` set to ``value`` while the block runs: an option for one analysis (how
    causal attention counts, block reuse, capacity routing, a whole cache)."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def counting(attention: str) -> contextlib.AbstractContextManager[None]:
    return setting(CAUSAL_TRIANGLE, attention == "causal")
