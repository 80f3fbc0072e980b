"""Whole small models, each total derived by hand from the counting spec."""

import pytest
import torch

import flopgraph
from flopgraph.examples import BasicBlock, LeNet, TinyTransformerBlock


def test_lenet():
    report = flopgraph.analyze(LeNet().eval(), (1, 1, 28, 28))
    macs = (
        6 * 28 * 28 * 1 * 3 * 3  # conv1 1->6 k3 p1: out 6x28x28           = 42_336
        + 16 * 10 * 10 * 6 * 5 * 5  # conv2 6->16 k5: out 16x10x10          = 240_000
        + 400 * 120  # fc1                                                  = 48_000
        + 120 * 84  # fc2                                                   = 10_080
        + 84 * 10  # fc3                                                    = 840
    )
    flops = (
        2 * 42_336 + 6 * 28 * 28  # conv1 + bias
        + 6 * 28 * 28  # relu
        + 6 * 14 * 14 * 2 * 2  # maxpool 2: numel(out) * prod(kernel)
        + 2 * 240_000 + 16 * 10 * 10  # conv2 + bias
        + 16 * 10 * 10  # relu
        + 16 * 5 * 5 * 2 * 2  # maxpool 2
        + 2 * 48_000 + 120 + 120  # fc1 + bias, relu
        + 2 * 10_080 + 84 + 84  # fc2 + bias, relu
        + 2 * 840 + 10  # fc3 + bias
    )  # fmt: skip
    assert report.macs == macs == 341_256
    assert report.flops == flops == 701_842
    assert report.params.total == (6 * 9 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (
        120 * 84 + 84
    ) + (84 * 10 + 10)
    assert not report.skipped


@pytest.mark.parametrize("training", [False, True])
def test_basic_block_inplace_residual(training):
    block = BasicBlock(64).train(training)
    report = flopgraph.analyze(block, (1, 64, 56, 56))
    n = 64 * 56 * 56  # every activation in the block                   = 200_704
    conv_macs = n * 64 * 3 * 3  # per conv, no bias                      = 115_605_504
    bn = (6 + 2) * n if training else (2 + 2) * n  # batch stats vs running stats, affine
    assert report.macs == 2 * conv_macs
    assert report.flops == 2 * (2 * conv_macs) + 2 * bn + 2 * n + n  # convs, bns, relus, +=
    adds = [r for r in report.records if r.op == "add"]
    assert len(adds) == 1 and adds[0].flops == n and adds[0].module == ""


def test_tiny_transformer_block():
    report = flopgraph.analyze(TinyTransformerBlock(64, 4, 256).eval(), (1, 16, 64))
    t, d, h, hd, hidden = 16, 64, 4, 16, 256
    linear = t * d * d  # q, k, v, proj: 16 * 64 * 64                      = 65_536
    scores = h * t * t * hd  # q @ k^T: [1,4,16,16] outputs, K = 16        = 16_384
    mlp = t * d * hidden  # fc1 and fc2 each                               = 262_144
    assert report.macs == 4 * linear + 2 * scores + 2 * mlp == 819_200
    flops = (
        2 * (6 + 2) * t * d  # two LayerNorms with weight and bias
        + 4 * (2 * linear + t * d)  # q, k, v, proj with bias
        + 2 * scores + h * t * t + 5 * h * t * t  # q @ k^T, scaling, softmax
        + 2 * scores  # attn @ v
        + 2 * t * d  # two residual adds
        + 2 * mlp + t * hidden + t * hidden  # fc1 + bias, gelu
        + 2 * mlp + t * d  # fc2 + bias
    )  # fmt: skip
    assert report.flops == flops
    by_op = report.by_operator()
    assert by_op["matmul"] == flopgraph.Cost(2 * scores, 4 * scores)
    assert by_op["softmax"].flops == 5 * h * t * t


def test_meta_model_same_counts_as_cpu():
    cpu = LeNet().eval()
    with torch.device("meta"):
        meta = LeNet().eval()
    a = flopgraph.analyze(cpu, (2, 1, 28, 28))
    b = flopgraph.analyze(meta, (2, 1, 28, 28))
    assert (a.macs, a.flops) == (b.macs, b.flops)
    assert a.macs == 2 * 341_256  # batch 2 doubles every op
