"""Pure shape -> Cost formulas of the default convention.

Each function takes shapes (tuples of ints) and scalars, never tensors, nodes
or modules, and carries its arithmetic in a comment. The section letters refer
to the counting spec that docs/conventions.md explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil, floor, prod

from .records import Cost

Shape = Sequence[int]


def numel(shape: Shape) -> int:
    return prod(shape)


# --- A. contractions ---------------------------------------------------------


def linear(x: Shape, weight: Shape, bias: bool) -> Cost:
    # x[..., I] @ W[O, I]^T: numel(x) / I rows, each I * O multiply-adds
    in_features = weight[-1]
    out_features = weight[0] if len(weight) == 2 else 1
    rows = numel(x) // in_features if in_features else 0
    macs = rows * in_features * out_features
    return Cost(macs, 2 * macs + (rows * out_features if bias else 0))


def matmul(a: Shape, b: Shape, out: Shape) -> Cost:
    # every output element is one dot product over K = a[-1] (1-D cases included):
    # B * M * N * K, M * K (mv), K (dot)
    macs = numel(out) * (a[-1] if a else 1)
    return Cost(macs, 2 * macs)


def addmm(m1: Shape, m2: Shape, out: Shape) -> Cost:
    # alpha * (m1 @ m2) + beta * input: mm (or bmm / mv) plus one add per output element
    mm = matmul(m1, m2, out)
    return Cost(mm.macs, mm.flops + numel(out))


def addbmm(batch1: Shape, batch2: Shape, out: Shape) -> Cost:
    # sum over b of batch1[b] @ batch2[b]: b * M * N * K, then one add per output element
    macs = numel(batch1) * batch2[-1]  # b*M*K * N
    return Cost(macs, 2 * macs + numel(out))


def convolution(out: Shape, weight: Shape, bias: bool) -> Cost:
    # N * Cout * prod(S_out) * (Cin / g) * prod(k) = numel(out) * prod(weight[1:])
    macs = numel(out) * numel(weight[1:])
    return Cost(macs, 2 * macs + (numel(out) if bias else 0))


def conv_transpose(x: Shape, weight: Shape, out: Shape, bias: bool) -> Cost:
    # N * Cin * prod(S_in) * (Cout / g) * prod(k) = numel(x) * prod(weight[1:])
    macs = numel(x) * numel(weight[1:])
    return Cost(macs, 2 * macs + (numel(out) if bias else 0))


_INTERP_TAPS = {"linear": 2, "bilinear": 4, "trilinear": 8, "bicubic": 16}


def interpolate(mode: str, out: Shape) -> Cost:
    # taps * numel(out) multiply-adds; nearest modes only move data
    macs = _INTERP_TAPS.get(mode, 0) * numel(out)
    return Cost(macs, 2 * macs)


def interpolation_taps(mode: str) -> int | None:
    """Taps per output element of a weighted mode; None for nearest/area."""
    return _INTERP_TAPS.get(mode)


# --- B. elementwise ------------------------------------------------------------


def elementwise(out: Shape, per_element: int = 1) -> Cost:
    # per_element flops for each element of the output
    return Cost(0, per_element * numel(out))


# --- C. reductions and softmax ----------------------------------------------------


def reduce(inp: Shape, out: Shape) -> Cost:
    # n - 1 adds (or comparisons) per reduced group: numel(in) - numel(out)
    return Cost(0, numel(inp) - numel(out))


def mean(inp: Shape) -> Cost:
    # n - 1 adds and 1 divide per group: numel(in)
    return Cost(0, numel(inp))


def var(inp: Shape, out: Shape, sqrt: bool) -> Cost:
    # mean, subtract, square, accumulate: 4 * numel(in); std adds a sqrt per output
    return Cost(0, 4 * numel(inp) + (numel(out) if sqrt else 0))


def norm2(inp: Shape, out: Shape) -> Cost:
    # square and accumulate: 2 * numel(in); then one sqrt per output element
    return Cost(0, 2 * numel(inp) + numel(out))


def cumulative(inp: Shape, dim_size: int) -> Cost:
    # n - 1 adds along the dim per line: numel(in) - numel(in) / size(dim)
    n = numel(inp)
    return Cost(0, n - (n // dim_size if dim_size else 0))


def softmax(inp: Shape) -> Cost:
    # max, subtract, exp, sum, divide (or log): 5 per element
    return Cost(0, 5 * numel(inp))


# --- D. normalization ------------------------------------------------------------


def batch_norm_eval(out: Shape, affine: bool) -> Cost:
    # subtract mean, multiply by inverse std; + scale and shift when affine
    return Cost(0, (2 + (2 if affine else 0)) * numel(out))


def normalization(out: Shape, weight: bool, bias: bool) -> Cost:
    # statistics from the input: mean 1 + variance 3 + normalize 2 = 6 per element,
    # + 1 per element for each of weight and bias
    return Cost(0, (6 + int(weight) + int(bias)) * numel(out))


def rms_norm(out: Shape, weight: bool) -> Cost:
    # square, mean, multiply by rsqrt: 3 per element; + 1 with a weight
    return Cost(0, (3 + int(weight)) * numel(out))


def normalize_p2(out: Shape) -> Cost:
    # square, sum, divide: 3 per element
    return Cost(0, 3 * numel(out))


def local_response_norm(out: Shape, size: int) -> Cost:
    # (2 * size + 3) per element
    return Cost(0, (2 * size + 3) * numel(out))


# --- E. pooling ---------------------------------------------------------------------


def pool(out: Shape, kernel: Shape) -> Cost:
    # every output element reads prod(kernel) inputs: numel(out) * prod(kernel)
    return Cost(0, numel(out) * numel(kernel))


def adaptive_window_sum(n: int, m: int) -> int:
    """Sum over the m output positions of the window length along one dim.

    Window i spans floor(i*n/m) to ceil((i+1)*n/m), as torch computes it.
    """
    return sum(ceil((i + 1) * n / m) - floor(i * n / m) for i in range(m))


def adaptive_pool(inp: Shape, out: Shape, dims: int) -> Cost:
    # leading (N, C) elements times, over the `dims` spatial dims, the product of the
    # window sums: a global pool is numel(in)
    lead = numel(out[: len(out) - dims])
    per = prod(adaptive_window_sum(n, m) for n, m in zip(inp[-dims:], out[-dims:], strict=True))
    return Cost(0, lead * per)


# --- F. embedding ----------------------------------------------------------------------


def embedding_bag(gathered: int, out: Shape, mode: str) -> Cost:
    # sum / max: n - 1 adds or comparisons per bag; mean: n per bag (the divide included)
    return Cost(0, gathered if mode == "mean" else gathered - numel(out))
