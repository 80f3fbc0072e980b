"""Property tests: random convolution, transposed convolution, matmul and pooling
configurations against the spec's formulas and, for contractions, FlopCounterMode."""

import math

import torch
import torch.nn.functional as F
from conftest import flop_counter_total
from helpers import Fn
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flopgraph

SETTINGS = settings(max_examples=25, deadline=None)
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def analyze(model, *inputs):
    report = flopgraph.analyze(model, inputs)
    assert not report.skipped
    return report


def check_contraction(m, x, macs, flops):
    """The formula's count, and FlopCounterMode's on the real forward (2 * macs)."""
    report = analyze(m, x)
    assert (report.macs, report.flops) == (macs, flops)
    assert 2 * report.macs == flop_counter_total(m, x)


@st.composite
def conv_configs(draw, transposed=False):
    dims = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = [draw(st.integers(1, 4)) for _ in range(dims)]
    stride = [draw(st.integers(1, 3)) for _ in range(dims)]
    dil = [draw(st.integers(1, 2)) for _ in range(dims)]
    pad = [draw(st.integers(0, (ki - 1) * di // 2)) for ki, di in zip(k, dil, strict=True)]
    reach = [di * (ki - 1) + 1 for ki, di in zip(k, dil, strict=True)]  # a window's extent
    low = [max(1, r - 2 * p) for r, p in zip(reach, pad, strict=True)]  # >= 1 output
    size = [draw(st.integers(lo, lo + 6)) for lo in low]
    # output_padding must stay below the stride or the dilation
    limits = [max(s, d) - 1 for s, d in zip(stride, dil, strict=True)]
    out_pad = [draw(st.integers(0, lim)) for lim in limits] if transposed else None
    return dims, groups, cin, cout, k, stride, dil, pad, size, out_pad, draw(st.booleans())


@SETTINGS
@given(conv_configs(), st.integers(1, 2))
def test_conv_random(cfg, n):
    dims, groups, cin, cout, k, stride, dil, pad, size, _, bias = cfg
    m = CONV[dims](cin, cout, k, stride, pad, dil, groups, bias)
    out = [(s + 2 * p - d * (kk - 1) - 1) // st_ + 1
           for s, p, d, kk, st_ in zip(size, pad, dil, k, stride, strict=True)]  # fmt: skip
    # N * Cout * prod(S_out) * (Cin / g) * prod(k)
    macs = n * cout * math.prod(out) * (cin // groups) * math.prod(k)
    flops = 2 * macs + (n * cout * math.prod(out) if bias else 0)
    check_contraction(m, torch.randn(n, cin, *size), macs, flops)


@SETTINGS
@given(conv_configs(transposed=True), st.integers(1, 2))
def test_conv_transpose_random(cfg, n):
    dims, groups, cin, cout, k, stride, dil, pad, size, out_pad, bias = cfg
    m = TCONV[dims](cin, cout, k, stride, pad, out_pad, groups, bias, dil)
    dims_cfg = zip(size, stride, pad, dil, k, out_pad, strict=True)
    out = [(s - 1) * st_ - 2 * p + d * (kk - 1) + op + 1 for s, st_, p, d, kk, op in dims_cfg]
    # N * Cin * prod(S_in) * (Cout / g) * prod(k)
    macs = n * cin * math.prod(size) * (cout // groups) * math.prod(k)
    flops = 2 * macs + (n * cout * math.prod(out) if bias else 0)
    check_contraction(m, torch.randn(n, cin, *size), macs, flops)


@st.composite
def matmul_shapes(draw):
    m, k, n = (draw(st.integers(1, 6)) for _ in range(3))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    # each operand keeps a suffix of the batch dims, with some of them set to 1
    a_batch = [b if draw(st.booleans()) else 1 for b in batch[draw(st.integers(0, len(batch))) :]]
    b_batch = [b if draw(st.booleans()) else 1 for b in batch[draw(st.integers(0, len(batch))) :]]
    a = [m, k] if draw(st.integers(0, 4)) else [k]  # sometimes a vector
    b = [k, n] if draw(st.integers(0, 4)) else [k]
    a = a_batch + a if len(a) == 2 else a
    b = b_batch + b if len(b) == 2 else b
    return tuple(a), tuple(b)


@SETTINGS
@given(matmul_shapes())
def test_matmul_random(shapes):
    a, b = shapes
    out = torch.matmul(torch.empty(a, device="meta"), torch.empty(b, device="meta")).shape
    # every output element is one dot product over K: B * M * N * K
    macs = math.prod(out) * a[-1]
    x, y = torch.randn(a), torch.randn(b)
    report = analyze(Fn(torch.matmul), x, y)
    assert (report.macs, report.flops) == (macs, 2 * macs)
    if min(len(a), len(b)) >= 2:  # mm / bmm; FlopCounterMode counts no mv or dot
        assert 2 * report.macs == flop_counter_total(Fn(torch.matmul), x, y)


@SETTINGS
@given(
    st.integers(1, 3), st.sampled_from(["max", "avg"]), st.integers(1, 4), st.integers(1, 3),
    st.booleans(), st.data(),
)  # fmt: skip
def test_pool_random(dims, kind, k, stride, ceil_mode, data):
    pad = data.draw(st.integers(0, k // 2))
    size = [data.draw(st.integers(k, k + 7)) for _ in range(dims)]
    cls = {"max": (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d),
           "avg": (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)}[kind][dims - 1]  # fmt: skip
    m = cls(k, stride, pad, ceil_mode=ceil_mode)
    shape = (2, 3, *size)
    out = m(torch.empty(shape, device="meta")).shape  # torch's own output size
    # numel(out) * prod(kernel)
    assert analyze(m, torch.empty(shape, device="meta")).flops == math.prod(out) * k**dims


def window_reads(n, m):
    """Sum of window lengths of an adaptive pool, from torch's start/end rule."""
    return sum(math.ceil((i + 1) * n / m) - math.floor(i * n / m) for i in range(m))


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 12)), min_size=1, max_size=3))
def test_adaptive_pool_random(sizes):
    dims = len(sizes)
    ins = [n for n, _ in sizes]
    outs = [m for _, m in sizes]
    fn = {1: F.adaptive_avg_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_avg_pool3d}[dims]
    expected = 2 * 3 * math.prod(window_reads(n, m) for n, m in sizes)
    report = analyze(Fn(lambda x: fn(x, outs)), torch.empty(2, 3, *ins, device="meta"))
    assert report.flops == expected
