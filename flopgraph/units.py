"""Human-readable numbers: 4089184256 -> '4.09 G'.

Imports nothing heavy: :func:`format` is public (``flopgraph.format``) and answers
without torch.
"""

from __future__ import annotations

from typing import Any

_PREFIXES = ((10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))
_SCALE = {prefix: scale for scale, prefix in _PREFIXES}

_GLUED = frozenset({"FLOPs", "FLOPS", "FLOP", "MACs", "MAC", "Macs", "Mac"})
"""Units written right after the prefix, as thop and ptflops users read them (``GFLOPs``,
``GMac``)."""
_SPACED = frozenset({"params"})
"""Units written after a space (``25.56 M params``)."""
UNITS = _GLUED | _SPACED
"""The base units :func:`format` knows; any of them may carry a prefix."""


def human(n: int, digits: int = 2) -> str:
    """Decimal SI prefix with ``digits`` decimals; exact below 1000."""
    for scale, prefix in _PREFIXES:
        if abs(n) >= scale:
            return f"{n / scale:.{digits}f} {prefix}"
    return str(n)


def human_bytes(n: int) -> str:
    """Bytes in binary units (MiB, GiB), as memory is usually quoted."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


def format(n: Any, unit: str = "", digits: int = 2) -> str:
    """``n`` (a count) as people read it, the way flopgraph's tables show it.

    ``unit`` is ``[prefix][base]``: prefix one of ``K M G T P`` (10**3 .. 10**15), base
    one of ``FLOPs``, ``FLOP``, ``FLOPS``, ``MACs``, ``MAC``, ``Macs``, ``Mac``,
    ``params``, either one optional:

    - no prefix: the prefix fits the number (exact below 1000), as the tables show it:
      ``format(4_089_184_256)`` is ``'4.09 G'``, ``format(..., 'FLOPs')``
      ``'4.09 GFLOPs'``, ``format(512, 'FLOPs')`` ``'512 FLOPs'``,
      ``format(25_557_032, 'params')`` ``'25.56 M params'``;
    - a prefix: that scale whatever the number, as thop's ``clever_format`` and
      ptflops print a column of models: ``format(4_089_184_256, 'GMac')`` is
      ``'4.09 GMac'``, ``format(4_089_184_256, 'MFLOPs')`` ``'4089.18 MFLOPs'``,
      ``format(n, 'G')`` ``'4.09 G'``.

    ``digits`` decimals after a prefix. A symbolic count (a formula of named sizes)
    gives its short formula and the base unit, unscaled. Any other unit raises ``ValueError``."""
    prefix, base = _split(unit)
    if not isinstance(n, int):  # a sympy formula of symbolic sizes
        from .symbolic import formula_text

        return _join(formula_text(n), "", base)  # a formula is not scaled
    if prefix:
        return _join(f"{n / _SCALE[prefix]:.{digits}f}", prefix, base)
    number, _, auto = human(n, digits).partition(" ")
    return _join(number, auto, base)


def _split(unit: str) -> tuple[str, str]:
    """``'GFLOPs'`` -> ``('G', 'FLOPs')``; ``'MACs'`` is a base, not M + ACs."""
    if unit == "" or unit in UNITS:
        return "", unit
    if unit[0] in _SCALE and (unit[1:] == "" or unit[1:] in UNITS):
        return unit[0], unit[1:]
    known = ", ".join(sorted(UNITS))
    raise ValueError(
        f"unknown unit {unit!r}: expected an optional prefix (K, M, G, T, P) and an optional "
        f"base ({known}), e.g. 'GFLOPs', 'GMac', 'M'"
    )


def _join(number: str, prefix: str, base: str) -> str:
    if base in _SPACED:
        return " ".join(x for x in (number, prefix, base) if x)
    return f"{number} {prefix}{base}".rstrip()
