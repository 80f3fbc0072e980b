"""Sampling at computed coordinates: grid_sample and the affine grids it reads.

``grid_sample`` interpolates its input at arbitrary points, so it takes
interpolate's rule (spec A): taps multiply-adds per output element and channel,
with the same taps per mode. ``affine_grid`` is a batched matmul of the base
grid by theta, counted as spec A counts a matmul.
"""

from __future__ import annotations

import torch.nn.functional as F

from .. import formulas as f
from ..records import Cost
from ..registry import Rule
from .context import OpContext
from .table import DEFAULT, forms

GRID_MODES = ("bilinear", "nearest", "bicubic")
"""grid_sampler's ``interpolation_mode`` integers, in order."""
_TAPS = {(2, "bilinear"): 4, (2, "bicubic"): 16, (3, "bilinear"): 8}
"""Taps per (spatial rank, mode); a 5-D input's "bilinear" is trilinear; nearest is 0."""


def grid_taps(spatial: int, mode: str | int) -> int:
    """Taps per output element of grid_sample in ``spatial`` dims (0: nearest)."""
    name = GRID_MODES[mode] if isinstance(mode, int) else mode
    return _TAPS.get((spatial, name), 0)


def grid_sample_function(ctx: OpContext) -> Cost:
    # F.grid_sample(input, grid, mode="bilinear", padding_mode, align_corners)
    spatial = len(ctx.arg(0, "input").shape) - 2
    return f.grid_sample(ctx.y.shape, grid_taps(spatial, ctx.arg(2, "mode", "bilinear")))


def grid_sampler(ctx: OpContext) -> Cost:
    # grid_sampler[_2d|_3d](input, grid, interpolation_mode: int, padding_mode, align_corners)
    # cudnn_grid_sampler(input, grid) is bilinear; the 2-D op returns one tensor
    spatial = len(ctx.arg(0, "input").shape) - 2
    return f.grid_sample(ctx.y.shape, grid_taps(spatial, int(ctx.arg(2, "interpolation_mode", 0))))


def affine_grid(ctx: OpContext) -> Cost:
    # F.affine_grid(theta[N, K-1, K], size, align_corners) / affine_grid_generator(theta,
    # size, align_corners): out [N, *S, K-1]
    return f.affine_grid(ctx.y.shape, ctx.arg(0, "theta").shape[-1])


DEFAULT.add([F.grid_sample], Rule("grid_sample", grid_sample_function))
DEFAULT.add(forms("grid_sampler", methods=False), Rule("grid_sample", grid_sampler))
DEFAULT.add([F.affine_grid, *forms("affine_grid_generator", methods=False)],
            Rule("affine_grid", affine_grid))  # fmt: skip
