"""Transposed convolutions, interpolation, einsum and bilinear against the spec."""

import pytest
import torch
import torch.nn.functional as F
from helpers import Fn, cost_of, fn_cost
from torch import nn

import flopgraph
from flopgraph import Cost, Status
from flopgraph import formulas as f


def tconv_out(size, k, stride, pad, dil, out_pad):
    return (size - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1


@pytest.mark.parametrize(
    "dims, cin, cout, k, stride, pad, out_pad, dil, groups, bias, size",
    [
        (1, 3, 5, 4, 3, 1, 2, 1, 1, True, (11,)),
        (2, 4, 6, (3, 2), (2, 3), (1, 0), (1, 2), (1, 2), 2, False, (7, 5)),
        (2, 6, 6, 3, 2, 1, 1, 1, 6, True, (9, 9)),  # depthwise, output_padding 1
        (3, 2, 4, (2, 3, 1), (1, 2, 2), 0, (0, 1, 1), (2, 1, 1), 2, True, (3, 5, 4)),
    ],
)  # fmt: skip
def test_conv_transpose(dims, cin, cout, k, stride, pad, out_pad, dil, groups, bias, size):
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]
    m = cls(cin, cout, k, stride, pad, out_pad, groups, bias, dil)
    n = 2
    out = [
        tconv_out(
            s, m.kernel_size[i], m.stride[i], m.padding[i], m.dilation[i], m.output_padding[i]
        )
        for i, s in enumerate(size)
    ]
    # N * Cin * prod(S_in) * (Cout / g) * prod(k)
    macs = n * cin * _prod(size) * (cout // groups) * _prod(m.kernel_size)
    flops = 2 * macs + (n * cout * _prod(out) if bias else 0)
    assert cost_of(m, (n, cin, *size)) == Cost(macs, flops)
    # the functional form with the module's weight counts the same
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[dims]
    w, b = m.weight.detach(), m.bias.detach() if bias else None
    call = Fn(lambda x: fn(x, w, b, m.stride, m.padding, m.output_padding, groups, m.dilation))
    assert cost_of(call, (n, cin, *size)) == Cost(macs, flops)


def test_conv_transpose_by_hand():
    # 1 x 8 x 5 x 5 -> 4 channels, k 4, stride 2: out 12 x 12
    # macs 8 * 25 * 4 * 16 = 12_800; bias 4 * 144 = 576
    assert cost_of(nn.ConvTranspose2d(8, 4, 4, 2), (1, 8, 5, 5)) == Cost(12_800, 25_600 + 576)


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


@pytest.mark.parametrize(
    "shape, kw, taps",
    [
        ((1, 2, 7), {"scale_factor": 3, "mode": "linear"}, 2),
        ((2, 3, 5, 7), {"size": (9, 4), "mode": "bilinear"}, 4),
        ((2, 3, 5, 7), {"scale_factor": 2, "mode": "bilinear", "align_corners": True}, 4),
        ((1, 2, 5, 7), {"size": (11, 13), "mode": "bicubic"}, 16),
        ((1, 2, 3, 5, 7), {"scale_factor": (2, 1, 3), "mode": "trilinear"}, 8),
        ((1, 2, 5, 7), {"scale_factor": 2, "mode": "nearest"}, 0),
        ((1, 2, 5, 7), {"size": (3, 9), "mode": "nearest-exact"}, 0),
        ((1, 2, 3, 5, 7), {"scale_factor": 2}, 0),  # default mode: nearest
    ],
)
def test_interpolate_every_mode(shape, kw, taps):
    out = F.interpolate(torch.empty(shape, device="meta"), **kw).shape
    macs = taps * _prod(out)  # taps * numel(out)
    assert fn_cost(lambda x: F.interpolate(x, **kw), shape) == Cost(macs, 2 * macs)
    up = nn.Upsample(**kw)
    assert cost_of(up, shape) == Cost(macs, 2 * macs)


def test_interpolate_by_hand():
    # bilinear 1x2x3x4 -> 1x2x6x8: 4 taps * 96 outputs = 384 macs
    got = fn_cost(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (1, 2, 3, 4))
    assert got == Cost(384, 768)


def test_area_interpolation_is_an_adaptive_average_pool():
    # 7 -> 3: windows [0,3) [2,5) [4,7): 3 + 3 + 3 = 9 reads per row of outputs;
    # 5 -> 2: windows [0,3) [2,5): 6; per channel 9 * 6 = 54; 2 channels
    got = fn_cost(lambda x: F.interpolate(x, size=(3, 2), mode="area"), (1, 2, 7, 5))
    assert got == Cost(0, 2 * 54)


@pytest.mark.parametrize(
    "module, taps",
    [(nn.UpsamplingBilinear2d(scale_factor=2), 4), (nn.UpsamplingNearest2d(scale_factor=2), 0)],
)
def test_upsampling_modules(module, taps):
    n = 1 * 3 * 10 * 12  # output elements
    assert cost_of(module, (1, 3, 5, 6)) == Cost(taps * n, 2 * taps * n)


@pytest.mark.filterwarnings("ignore:`nn.functional.upsample:UserWarning")
def test_legacy_upsample_functions():
    n = 1 * 3 * 10 * 12
    assert fn_cost(lambda x: F.upsample_bilinear(x, scale_factor=2), (1, 3, 5, 6)) == Cost(
        4 * n, 8 * n
    )
    assert fn_cost(lambda x: F.upsample(x, scale_factor=2, mode="bicubic"), (1, 3, 5, 6)) == Cost(
        16 * n, 32 * n
    )
    report = flopgraph.analyze(Fn(lambda x: F.upsample_nearest(x, scale_factor=2)), (1, 3, 5, 6))
    assert report.flops == 0 and not report.skipped


@pytest.mark.parametrize(
    "model",
    [nn.PixelShuffle(2), nn.PixelUnshuffle(2), Fn(lambda x: F.pixel_shuffle(x, 2)),
     Fn(lambda x: torch.pixel_unshuffle(x, 2))],
)  # fmt: skip
def test_pixel_shuffle_is_free(model):
    report = flopgraph.analyze(model, (1, 8, 4, 6))
    assert [r.status for r in report.records] == [Status.FREE]
    assert report.flops == 0


@pytest.mark.parametrize(
    "eq, shapes, macs",
    [
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], 2 * 3 * 4 * 5),
        ("i,i->", [(7,)], None),  # one operand listed twice below
        ("ij,kj->ik", [(3, 5), (4, 5)], 3 * 5 * 4),
        ("bhqd,bhkd->bhqk", [(2, 3, 5, 4), (2, 3, 7, 4)], 2 * 3 * 5 * 7 * 4),
        ("...ij,...jk", [(2, 3, 4), (4, 5)], 2 * 3 * 4 * 5),  # ellipsis, implicit output
        ("bij,bjk->bik", [(1, 3, 4), (6, 4, 5)], 6 * 3 * 4 * 5),  # broadcast batch
        ("ij,jk", [(3, 4), (4, 5)], 3 * 4 * 5),  # implicit output ik
        ("i,j->ij", [(3,), (4,)], 12),  # outer product
    ],
)
def test_einsum_two_operands(eq, shapes, macs):
    if macs is None:
        eq, shapes, macs = "i,i->", [(7,), (7,)], 7
    # product of the sizes of all distinct indices
    fn = Fn(lambda *ops: torch.einsum(eq, *ops))
    assert cost_of(fn, *shapes) == Cost(macs, 2 * macs)
    as_list = Fn(lambda *ops: torch.einsum(eq, list(ops)))
    assert cost_of(as_list, *shapes) == Cost(macs, 2 * macs)


@pytest.mark.parametrize(
    "eq, shape, flops",
    [
        ("ij->j", (3, 5), 15 - 5),
        ("ii->", (4, 4), 3),
        ("ii->i", (4, 4), 0),
        ("ijk->kji", (2, 3, 4), 0),
    ],
)
def test_einsum_one_operand_is_a_reduction(eq, shape, flops):
    assert fn_cost(lambda x: torch.einsum(eq, x), shape) == Cost(0, flops)


def test_einsum_three_operands_left_to_right():
    # torch contracts left to right when opt_einsum is unavailable or disabled:
    # (ij, jk) over i, j, k: 2 * 50 * 3 = 300; then (ik, kl): 2 * 3 * 40 = 240
    previous = torch.backends.opt_einsum.enabled
    torch.backends.opt_einsum.enabled = False
    try:
        fn = Fn(lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c))
        assert cost_of(fn, (2, 50), (50, 3), (3, 40)) == Cost(540, 1080)
    finally:
        torch.backends.opt_einsum.enabled = previous


def test_einsum_formula_follows_a_given_path():
    shapes = [(2, 50), (50, 3), (3, 40)]
    # opt_einsum convention: (1, 2) first: j, k, l = 50 * 3 * 40 = 6_000, keeping j, l;
    # then (ij, jl): 2 * 50 * 40 = 4_000
    assert f.einsum("ij,jk,kl->il", shapes, [(1, 2), (0, 1)]) == Cost(10_000, 20_000)
    assert f.einsum("ij,jk,kl->il", shapes) == Cost(540, 1_080)
    # four operands left to right: (ab,bc) 2*3*4 = 24 -> ac; (ac,cd) 2*4*5 = 40 -> ad;
    # (ad,de) 2*5*6 = 60
    assert f.einsum("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 6)]) == Cost(124, 248)


@pytest.mark.parametrize("bias", [True, False])
def test_bilinear(bias):
    # x1 [2, 5, 3], x2 [2, 5, 4], W [7, 3, 4]: B = 10 rows, 10 * 7 * 3 * 4 = 840 macs
    expected = Cost(840, 1680 + (70 if bias else 0))
    assert cost_of(nn.Bilinear(3, 4, 7, bias=bias), (2, 5, 3), (2, 5, 4)) == expected
    w, b = torch.randn(7, 3, 4), torch.randn(7) if bias else None
    assert fn_cost(lambda x, y: F.bilinear(x, y, w, b), (2, 5, 3), (2, 5, 4)) == expected
