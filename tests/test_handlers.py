"""Each handler on its own, with odd shapes; expected values from the spec's formulas."""

import operator

import pytest
import torch
import torch.nn.functional as F
from helpers import cost_of, fn_cost
from torch import nn

from flopgraph import Cost


def conv_out(size, k, stride=1, pad=0, dil=1):
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


@pytest.mark.parametrize(
    "cin, cout, k, stride, pad, dil, groups, bias, hw",
    [
        (3, 8, (3, 5), (2, 1), (1, 2), (1, 2), 1, True, (17, 23)),
        (6, 9, (1, 3), 1, 0, 1, 3, False, (9, 10)),
        (8, 8, 3, 2, 1, 1, 8, True, (15, 15)),  # depthwise
        (4, 6, 2, 3, 0, 3, 2, True, (31, 20)),
    ],
)
def test_conv2d_module(cin, cout, k, stride, pad, dil, groups, bias, hw):
    conv = nn.Conv2d(cin, cout, k, stride, pad, dil, groups, bias=bias)
    kh, kw = conv.kernel_size
    oh = conv_out(hw[0], kh, conv.stride[0], conv.padding[0], conv.dilation[0])
    ow = conv_out(hw[1], kw, conv.stride[1], conv.padding[1], conv.dilation[1])
    n = 2
    macs = n * cout * oh * ow * (cin // groups) * kh * kw
    flops = 2 * macs + (n * cout * oh * ow if bias else 0)
    assert cost_of(conv, (n, cin, *hw)) == Cost(macs, flops)


@pytest.mark.parametrize("bias", [True, False])
def test_conv1d_and_conv3d_functional(bias):
    w1 = torch.randn(5, 3, 4)
    b1 = torch.randn(5) if bias else None
    # 1-d: L = 20, k = 4, stride 3 -> L_out = 6
    got = fn_cost(lambda x: F.conv1d(x, w1, b1, stride=3), (2, 3, 20))
    macs = 2 * 5 * 6 * 3 * 4
    assert got == Cost(macs, 2 * macs + (2 * 5 * 6 if bias else 0))
    conv3 = nn.Conv3d(2, 4, (2, 3, 1), padding=(0, 1, 0), bias=bias)
    # input 1x2x5x6x7: out 1x4x4x6x7
    macs3 = 4 * 4 * 6 * 7 * 2 * 2 * 3 * 1
    bias3 = 4 * 4 * 6 * 7 if bias else 0
    assert cost_of(conv3, (1, 2, 5, 6, 7)) == Cost(macs3, 2 * macs3 + bias3)


def test_linear_on_3d_input_bias_on_and_off():
    # x[2, 7, 13] @ W[5, 13]: 14 rows of 13 * 5
    assert cost_of(nn.Linear(13, 5), (2, 7, 13)) == Cost(14 * 13 * 5, 2 * 14 * 13 * 5 + 14 * 5)
    assert cost_of(nn.Linear(13, 5, bias=False), (2, 7, 13)) == Cost(910, 1820)
    w = torch.randn(5, 13)
    assert fn_cost(lambda x: F.linear(x, w), (3, 13)) == Cost(3 * 13 * 5, 2 * 3 * 13 * 5)


@pytest.mark.parametrize(
    "fn, a, b, macs",
    [
        (operator.matmul, (2, 1, 3, 4), (5, 4, 6), 2 * 5 * 3 * 6 * 4),  # broadcast batch
        (torch.matmul, (4,), (4,), 4),  # dot
        (torch.matmul, (7,), (3, 7, 2), 3 * 2 * 7),  # 1-D @ batched
        (torch.matmul, (3, 5, 7), (7,), 3 * 5 * 7),  # batched @ 1-D
        (torch.mm, (3, 9), (9, 11), 3 * 11 * 9),
        (torch.bmm, (4, 3, 9), (4, 9, 2), 4 * 3 * 2 * 9),
        (lambda x, y: x.matmul(y), (6, 5), (5, 1), 6 * 1 * 5),
    ],
)
def test_matmul_family(fn, a, b, macs):
    assert fn_cost(fn, a, b) == Cost(macs, 2 * macs)


def test_addmm_family():
    # addmm: mm + one add per output element
    assert fn_cost(torch.addmm, (3, 5), (3, 4), (4, 5)) == Cost(60, 120 + 15)
    # baddbmm: [2,3,4] @ [2,4,5] + input
    assert fn_cost(torch.baddbmm, (2, 3, 5), (2, 3, 4), (2, 4, 5)) == Cost(120, 240 + 30)
    # addmv: [3,4] @ [4] + input
    assert fn_cost(torch.addmv, (3,), (3, 4), (4,)) == Cost(12, 24 + 3)
    # addbmm: sum over batch 6 of [3,4] @ [4,5], + input
    assert fn_cost(torch.addbmm, (3, 5), (6, 3, 4), (6, 4, 5)) == Cost(360, 720 + 15)


@pytest.mark.parametrize(
    "fn, k",
    [
        (lambda x: x + 1, 1), (lambda x: x * x, 1), (lambda x: x.add_(2), 1),
        (torch.exp, 1), (torch.rsqrt, 1), (lambda x: x.pow(2), 1), (torch.sigmoid, 1),
        (F.relu, 1), (F.gelu, 1), (lambda x: F.gelu(x, approximate="tanh"), 1), (F.silu, 1),
        (F.hardswish, 1), (F.leaky_relu, 1), (lambda x: x.clamp(0, 1), 1),
        (lambda x: torch.addcmul(x, x, x), 2), (lambda x: torch.where(x > 0, x, 0.0), 1),
        (nn.ReLU6(), 1), (nn.Hardsigmoid(), 1), (nn.Mish(), 1), (nn.ELU(), 1),
    ],
)  # fmt: skip
def test_elementwise(fn, k):
    assert fn_cost(fn, (2, 3, 5)) == Cost(0, k * 30)


def test_glu_counts_its_output():
    assert fn_cost(lambda x: F.glu(x, -1), (3, 8)) == Cost(0, 12)


def test_broadcast_add_counts_output_elements():
    assert fn_cost(operator.add, (4, 1, 3), (5, 1)) == Cost(0, 4 * 5 * 3)


@pytest.mark.parametrize(
    "fn, flops",
    [
        (lambda x: x.sum(), 60 - 1),
        (lambda x: x.sum(dim=1), 60 - 20),  # 3 - 1 adds for each of 4*5 groups
        (lambda x: torch.amax(x, dim=(0, 2)), 60 - 3),
        (lambda x: x.max(dim=-1).values, 60 - 12),
        (lambda x: x.mean(dim=-1), 60),
        (lambda x: x.softmax(-1), 5 * 60),
        (lambda x: F.log_softmax(x, dim=1), 5 * 60),
        (nn.Softmax(dim=0), 5 * 60),
    ],
)
def test_reductions_and_softmax(fn, flops):
    assert fn_cost(fn, (4, 3, 5)) == Cost(0, flops)


def test_binary_max_is_elementwise():
    assert fn_cost(torch.max, (4, 5), (4, 5)) == Cost(0, 20)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval_and_train(affine):
    bn = nn.BatchNorm2d(3, affine=affine)
    n = 2 * 3 * 5 * 7
    assert cost_of(bn.eval(), (2, 3, 5, 7)) == Cost(0, (2 + (2 if affine else 0)) * n)
    assert cost_of(bn.train(), (2, 3, 5, 7)) == Cost(0, (6 + (2 if affine else 0)) * n)


def test_layer_and_group_norm():
    n = 2 * 6 * 4 * 4
    assert cost_of(nn.LayerNorm([4, 4]), (2, 6, 4, 4)) == Cost(0, 8 * n)
    assert cost_of(nn.LayerNorm(4, bias=False), (2, 6, 4, 4)) == Cost(0, 7 * n)
    assert cost_of(nn.LayerNorm(4, elementwise_affine=False), (2, 6, 4, 4)) == Cost(0, 6 * n)
    assert cost_of(nn.GroupNorm(3, 6), (2, 6, 4, 4)) == Cost(0, 8 * n)
    assert fn_cost(lambda x: F.layer_norm(x, (4,)), (2, 6, 4, 4)) == Cost(0, 6 * n)


@pytest.mark.parametrize(
    "pool, shape, flops",
    [
        (nn.MaxPool2d(3, 2, 1), (1, 4, 9, 9), 4 * 5 * 5 * 9),
        (nn.MaxPool2d((2, 3), ceil_mode=True), (1, 2, 7, 7), 2 * 4 * 3 * 6),
        (nn.AvgPool2d(2), (2, 3, 8, 6), 2 * 3 * 4 * 3 * 4),
        (nn.AvgPool1d(4, 2), (1, 3, 10), 3 * 4 * 4),
        (nn.MaxPool3d(2), (1, 1, 4, 4, 4), 8 * 8),
        (nn.AdaptiveAvgPool2d(1), (2, 3, 7, 5), 2 * 3 * 7 * 5),  # global: numel(in)
        # 5 -> 3 windows of 2, 3, 2 (sum 7); 7 -> 3 windows of 3, 3, 3 (sum 9)
        (nn.AdaptiveAvgPool2d(3), (1, 2, 5, 7), 2 * 7 * 9),
        (nn.AdaptiveMaxPool1d(3), (1, 2, 5), 2 * 7),
    ],
)
def test_pooling(pool, shape, flops):
    assert cost_of(pool, shape) == Cost(0, flops)


def test_functional_pools():
    assert fn_cost(lambda x: F.max_pool2d(x, 2), (1, 3, 8, 8)) == Cost(0, 3 * 16 * 4)
    assert fn_cost(lambda x: F.adaptive_avg_pool2d(x, (1, 1)), (1, 3, 8, 8)) == Cost(0, 192)


def test_dropout_eval_free_train_counts():
    from flopgraph import Status, analyze

    drop = nn.Dropout(0.1)
    r = analyze(drop.eval(), (4, 5))
    assert r.flops == 0 and r.records[0].status is Status.COUNTED
    assert analyze(drop.train(), (4, 5)).flops == 20


def test_interpolate_modes():
    assert fn_cost(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (1, 2, 3, 4)) == (
        Cost(4 * 2 * 6 * 8, 2 * 4 * 2 * 6 * 8)
    )
