"""Human-readable numbers: 4089184256 -> '4.09 G'."""

from __future__ import annotations

_PREFIXES = ((10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


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
