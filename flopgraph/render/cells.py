"""How one value reads in a table cell; shared by every text renderer."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

from ..records import TensorMeta
from ..symbolic import formula_text
from ..units import format as human_format
from ..units import human_bytes

Units = Literal["auto", "raw"]
"""``auto``: decimal prefixes (``4.09 G``); ``raw``: exact integers (``4,089,184,256``)."""


def number(n: int, units: Units = "auto") -> str:
    """``4.09 G`` (:func:`flopgraph.format`) or ``4,089,184,256``."""
    if units == "auto":
        return human_format(n)
    return f"{n:,}" if isinstance(n, int) else formula_text(n, short=False)


def exact(n: int) -> str:
    """``4,089,184,256``; a formula of symbolic sizes as its exact text."""
    return f"{n:,}" if isinstance(n, int) else str(n)


def with_unit(n: int, unit: str, units: Units = "auto") -> str:
    """``1.23 GFLOPs``, ``512 FLOPs``, ``4,089,184,256 MACs``."""
    return human_format(n, unit) if units == "auto" else f"{number(n, units)} {unit}"


def nbytes(n: int, units: Units = "auto") -> str:
    if not isinstance(n, int):
        return f"{formula_text(n)} B"
    return human_bytes(n) if units == "auto" else f"{n:,} B"


def percent(part: int, whole: int) -> str:
    """``12.3%``; empty when the whole is 0 (a percentage of nothing) or a formula."""
    if not (isinstance(part, int) and isinstance(whole, int)):
        return ""
    return f"{100 * part / whole:.1f}%" if whole else ""


def shape(m: TensorMeta, sep: str = "×") -> str:
    """``1×64×56×56`` (``scalar`` for none), with ``dtype:`` in front unless float32,
    as ``--input`` is written."""
    dims = sep.join(map(str, m.shape)) or "scalar"
    return dims if m.dtype == "float32" else f"{m.dtype}:{dims}"


def shapes(metas: Sequence[TensorMeta], sep: str = "×", join: str = ", ") -> str:
    return join.join(shape(m, sep) for m in metas)


def intensity(x: Fraction | None) -> str:
    """FLOPs per byte with two decimals; empty for an op that moves nothing."""
    return "" if x is None else f"{float(x):.2f}"
