"""Discrete Fourier transforms: torch.fft's functions and the aten ops they run.

The classic count, 5 * N * log2(N) flops per complex transform of length N (see
:func:`flopgraph.formulas.fft` for several dims, real signals, lengths that are
not a power of two, and normalization). A torch.fft call is counted whole, on fx
and on aten alike, from its signal: the full-length (padded or trimmed) signal
along the transformed dims. Its aten ops (``_fft_c2c``, ``_fft_r2c``,
``_fft_c2r``) carry the same rule for code that reaches them some other way
(``torch.stft``, a direct ``torch.ops.aten`` call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .. import formulas as f
from ..records import Cost, TensorMeta, dtype_from_name
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT

Kind = str  # "c2c": complex (or real, full) in and out; "r2c": onesided; "c2r": real out
_FUNCTIONS: dict[str, tuple[Kind, int, bool]] = {
    # name -> (kind, dims the signature defaults to: 1, 2 or 0 for all, inverse)
    "fft": ("c2c", 1, False), "ifft": ("c2c", 1, True),
    "fft2": ("c2c", 2, False), "ifft2": ("c2c", 2, True),
    "fftn": ("c2c", 0, False), "ifftn": ("c2c", 0, True),
    "rfft": ("r2c", 1, False), "irfft": ("c2r", 1, True),
    "rfft2": ("r2c", 2, False), "irfft2": ("c2r", 2, True),
    "rfftn": ("r2c", 0, False), "irfftn": ("c2r", 0, True),
    "hfft": ("c2r", 1, False), "ihfft": ("r2c", 1, True),
    "hfft2": ("c2r", 2, False), "ihfft2": ("r2c", 2, True),
    "hfftn": ("c2r", 0, False), "ihfftn": ("r2c", 0, True),
}  # fmt: skip


def _dims(ctx: OpContext, ndim: int, default: int) -> tuple[list[int], list[int | None]]:
    """The transformed dims (non-negative) and the signal length asked for along each
    (None: the input's own); torch.fft's (input, n | s, dim, norm) signatures."""
    if default == 1:
        n = ctx.arg(1, "n")
        return [int(ctx.arg(2, "dim", -1)) % ndim], [n]
    sizes: Sequence[int] | None = ctx.arg(1, "s")
    dim = ctx.arg(2, "dim", (-2, -1) if default == 2 else None)
    if dim is None:
        dim = range(ndim - len(sizes), ndim) if sizes is not None else range(ndim)
    elif isinstance(dim, int):
        dim = (dim,)
    dims = [int(d) % ndim for d in dim]
    given = list(sizes) if sizes is not None else [None] * len(dims)
    return dims, [None if s is None or s == -1 else int(s) for s in given]


def _scaled(norm: str | None, inverse: bool) -> bool:
    # "backward" (the default) scales the inverse by 1/n, "forward" the forward one,
    # "ortho" both by 1/sqrt(n)
    if norm == "ortho":
        return True
    return inverse if norm in (None, "backward") else not inverse


def fft_function(kind: Kind, default: int, inverse: bool) -> Callable[[OpContext], Cost]:
    """Handler for one torch.fft function."""

    def handler(ctx: OpContext) -> Cost:
        x: TensorMeta = ctx.arg(0, "input")
        out = ctx.y
        dims, sizes = _dims(ctx, len(out.shape), default)
        signal = list(out.shape)  # the full-length signal: out's shape, but for a onesided
        if kind == "r2c":  # r2c, whose last dim holds N // 2 + 1 of N frequencies
            last = dims[-1]
            signal[last] = sizes[-1] if sizes[-1] is not None else x.shape[last]
        real = kind != "c2c" or not dtype_from_name(x.dtype).is_complex
        scaled = out.numel if _scaled(ctx.arg(3, "norm"), inverse) else 0
        return f.fft(tuple(signal), tuple(signal[d] for d in dims), real, scaled)

    return handler


def _normalized(ctx: OpContext) -> int:
    # aten's normalization: 0 none, 1 by 1/sqrt(n), 2 by 1/n; a multiply per output element
    return ctx.y.numel if int(ctx.arg(2, "normalization", 0)) else 0


def fft_c2c(ctx: OpContext) -> Cost:
    # _fft_c2c(self, dim, normalization, forward)
    x = ctx.arg(0, "self")
    dims = ctx.arg(1, "dim")
    return f.fft(x.shape, tuple(x.shape[d] for d in dims), False, _normalized(ctx))


def fft_r2c(ctx: OpContext) -> Cost:
    # _fft_r2c(self, dim, normalization, onesided): the real signal is the input
    x = ctx.arg(0, "self")
    dims = ctx.arg(1, "dim")
    return f.fft(x.shape, tuple(x.shape[d] for d in dims), True, _normalized(ctx))


def fft_c2r(ctx: OpContext) -> Cost:
    # _fft_c2r(self, dim, normalization, last_dim_size): the real signal is the output
    y = ctx.y
    dims = ctx.arg(1, "dim")
    return f.fft(y.shape, tuple(y.shape[d] for d in dims), True, _normalized(ctx))


for _name, (_kind, _default, _inverse) in _FUNCTIONS.items():
    _fn = getattr(torch.fft, _name, None)
    if _fn is not None:
        DEFAULT.add([_fn], Rule(_name, fft_function(_kind, _default, _inverse)))
for _name in ("fftshift", "ifftshift"):
    DEFAULT.free([getattr(torch.fft, _name)], _name, "data movement (a roll)")
for _name in ("fftfreq", "rfftfreq"):
    DEFAULT.free([getattr(torch.fft, _name)], _name, "tensor factory")
