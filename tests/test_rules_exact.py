"""Each rule against counts derived by hand from the counting spec.

These tests are the ones scripts/mutate.py runs against every mutant of
flopgraph/formulas.py and flopgraph/handlers/: a rule checked only fx-against-aten
passes however wrong it is (both frontends call the same rule), so every count
here is an integer worked out in the test, with its arithmetic, from
shared spec sections A-F and docs/conventions.md. Each case runs on both
frontends unless it says why not; they are small so that the mutation run stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from helpers import RoI
from torch import nn

import flopgraph
from flopgraph import Cost

BOTH = ("fx", "aten")


class Fn(nn.Module):
    """A function of up to three inputs as a model (weights and other constants are
    closed over)."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x, y=None, z=None):
        return self.fn(*(a for a in (x, y, z) if a is not None))


@dataclass(frozen=True)
class Case:
    id: str
    model: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...] | flopgraph.TensorSpec, ...]
    expected: Cost
    frontends: tuple[str, ...] = BOTH


def counted(model: nn.Module, shapes: tuple, frontend: str) -> Cost:
    specs = tuple(s if isinstance(s, flopgraph.TensorSpec) else flopgraph.TensorSpec(s)
                  for s in shapes)  # fmt: skip
    report = flopgraph.analyze(model, specs, frontend=frontend)
    assert not report.skipped, report.skipped
    return Cost(report.macs, report.flops)


def check(case: Case) -> None:
    for frontend in case.frontends:
        got = counted(case.model(), case.shapes, frontend)
        assert got == case.expected, f"{case.id} on {frontend}: {got} != {case.expected}"


def fn(f: Callable[..., torch.Tensor]) -> Callable[[], nn.Module]:
    return lambda: Fn(f)


def module(cls: type[nn.Module], *args, train: bool = False, **kwargs) -> Callable[[], nn.Module]:
    return lambda: cls(*args, **kwargs).train(train)


def cases(*cs: Case):
    return pytest.mark.parametrize("case", cs, ids=[c.id for c in cs])


# --- A. contractions: outer, addr, vdot, inner ---------------------------------------------


@cases(
    # outer product a[5] x b[7]: a contraction over K = 1, one MAC per output element
    # (5 * 7 = 35), flops = 2 * macs
    Case("outer", fn(torch.outer), ((5,), (7,)), Cost(35, 70)),
    Case("ger", fn(torch.ger), ((5,), (7,)), Cost(35, 70)),
    Case("outer-method", fn(lambda a, b: a.outer(b)), ((4,), (3,)), Cost(12, 24)),
    # addr(M[5, 7], a[5], b[7]): the outer product (35 MACs) + one add per output element
    Case("addr", fn(torch.addr), ((5, 7), (5,), (7,)), Cost(35, 2 * 35 + 35)),
    Case("addr-method", fn(lambda m, a, b: m.addr(a, b)), ((2, 3), (2,), (3,)), Cost(6, 18)),
    # vdot(a[7], b[7]): dot over K = 7
    Case("vdot", fn(torch.vdot), ((7,), (7,)), Cost(7, 14)),
    Case("dot", fn(torch.dot), ((6,), (6,)), Cost(6, 12)),
    # inner(a[3, 7], b[4, 7]) -> out[3, 4], each a dot over K = 7: 12 * 7 = 84 MACs
    Case("inner", fn(torch.inner), ((3, 7), (4, 7)), Cost(84, 168)),
    # mv(A[4, 6], x[6]): 4 dots of 6
    Case("mv", fn(torch.mv), ((4, 6), (6,)), Cost(24, 48)),
    # bmm(A[2, 3, 5], B[2, 5, 4]): B*M*N*K = 2*3*4*5 = 120
    Case("bmm", fn(torch.bmm), ((2, 3, 5), (2, 5, 4)), Cost(120, 240)),
    # matmul broadcast A[2, 1, 3, 5] @ B[4, 5, 6] -> [2, 4, 3, 6]: 144 outputs * K = 5
    Case("matmul-broadcast", fn(torch.matmul), ((2, 1, 3, 5), (4, 5, 6)), Cost(720, 1440)),
    # x[3] @ W[3, 4]: 4 outputs of a dot over 3 (the 1-D left operand)
    Case("matmul-vec-mat", fn(lambda a, b: a @ b), ((3,), (3, 4)), Cost(12, 24)),
    # reflected: W[2, 3] on the right of a Python scalar-free x.__rmatmul__ (y @ x)
    Case(
        "rmatmul", fn(lambda a, b: a.__rmatmul__(b)), ((3, 4), (2, 3)), Cost(24, 48), ("fx",)
    ),  # fmt: skip
)
def test_contractions(case):
    check(case)


W5x13, B5 = torch.randn(5, 13), torch.randn(5)


@cases(
    # Linear(13, 5) on x[2, 7, 13]: 14 rows * 13 * 5 = 910 MACs; bias adds 14 * 5 = 70
    Case("linear", module(nn.Linear, 13, 5), ((2, 7, 13),), Cost(910, 2 * 910 + 70)),
    Case("linear-no-bias", module(nn.Linear, 13, 5, bias=False), ((2, 7, 13),), Cost(910, 1820)),
    # F.linear(x[3, 13], W[5, 13]): 3 * 13 * 5 = 195; with bias + 3 * 5
    Case("F.linear", fn(lambda x: F.linear(x, W5x13)), ((3, 13),), Cost(195, 390)),
    Case("F.linear-bias", fn(lambda x: F.linear(x, W5x13, B5)), ((3, 13),), Cost(195, 405)),
    # a 1-D weight [13] is one output feature: 3 rows * 13 * 1
    Case("F.linear-1d-weight", fn(lambda x: F.linear(x, W5x13[0])), ((3, 13),), Cost(39, 78)),
    # addmm(M[4, 5], A[4, 3], B[3, 5]): mm 4*5*3 = 60, + 20 adds
    Case("addmm", fn(torch.addmm), ((4, 5), (4, 3), (3, 5)), Cost(60, 120 + 20)),
    # baddbmm(M[2, 4, 5], A[2, 4, 3], B[2, 3, 5]): 2*4*5*3 = 120, + 40 adds
    Case("baddbmm", fn(torch.baddbmm), ((2, 4, 5), (2, 4, 3), (2, 3, 5)), Cost(120, 280)),
    # addmv(v[4], A[4, 3], x[3]): 12, + 4 adds
    Case("addmv", fn(torch.addmv), ((4,), (4, 3), (3,)), Cost(12, 28)),
    # addbmm(M[4, 5], b1[2, 4, 3], b2[2, 3, 5]): sum over 2 of 4*3*5 = 120, + 20 adds
    Case("addbmm", fn(torch.addbmm), ((4, 5), (2, 4, 3), (2, 3, 5)), Cost(120, 260)),
    # Conv2d(3, 8, 3) on [2, 3, 7, 9] -> [2, 8, 5, 7] = 560 outputs * 3*3*3 = 15120 MACs
    Case("conv2d", module(nn.Conv2d, 3, 8, 3), ((2, 3, 7, 9),), Cost(15120, 30240 + 560)),
    # groups 2: weight [6, 2, 2, 2]; [1, 4, 3, 3] -> [1, 6, 2, 2] = 24 outputs * 8
    Case(
        "conv2d-groups",
        module(nn.Conv2d, 4, 6, 2, groups=2, bias=False),
        ((1, 4, 3, 3),),
        Cost(192, 384),
    ),  # fmt: skip
    # F.conv1d(x[2, 3, 20], W[5, 3, 4], stride 3): L_out = (20 - 4) // 3 + 1 = 6;
    # 2*5*6 = 60 outputs * 3*4 = 720 MACs; bias + 60
    Case(
        "F.conv1d",
        fn(lambda x: F.conv1d(x, torch.randn(5, 3, 4), stride=3)),
        ((2, 3, 20),),
        Cost(720, 1440),
    ),  # fmt: skip
    Case(
        "F.conv1d-bias",
        fn(lambda x: F.conv1d(x, torch.randn(5, 3, 4), torch.randn(5), stride=3)),
        ((2, 3, 20),),
        Cost(720, 1500),
    ),  # fmt: skip
    # ConvTranspose2d(3, 4, 2, stride 2) on [1, 3, 3, 3] -> [1, 4, 6, 6] = 144:
    # numel(x) 27 * weight[1:] 4*2*2 = 432 MACs, bias + 144
    Case(
        "conv_transpose2d",
        module(nn.ConvTranspose2d, 3, 4, 2, stride=2),
        ((1, 3, 3, 3),),
        Cost(432, 864 + 144),
    ),  # fmt: skip
    # F.conv_transpose1d(x[1, 2, 5], W[2, 3, 3]) -> [1, 3, 7]: 10 * 9 = 90; bias + 21
    Case(
        "F.conv_transpose1d",
        fn(lambda x: F.conv_transpose1d(x, torch.randn(2, 3, 3))),
        ((1, 2, 5),),
        Cost(90, 180),
    ),  # fmt: skip
    Case(
        "F.conv_transpose1d-bias",
        fn(lambda x: F.conv_transpose1d(x, torch.randn(2, 3, 3), torch.randn(3))),
        ((1, 2, 5),),
        Cost(90, 201),
    ),  # fmt: skip
    # einsum ij,jk->ik on [3, 4], [4, 5]: i*j*k = 60
    Case(
        "einsum-2",
        fn(lambda a, b: torch.einsum("ij,jk->ik", a, b)),
        ((3, 4), (4, 5)),
        Cost(60, 120),
    ),  # fmt: skip
    # three operands [2, 3, 4] [2, 4, 5] [2, 5, 6], left to right (also the cheapest
    # path): b*i*j*k = 120, then b*i*k*l = 180 -> 300 (the other order: 240 + 144)
    Case(
        "einsum-3",
        fn(lambda a, b, c: torch.einsum("bij,bjk,bkl->bil", a, b, c)),
        ((2, 3, 4), (2, 4, 5), (2, 5, 6)),
        Cost(300, 600),
    ),  # fmt: skip
    # one operand ij->i on [3, 4]: a reduction, 12 - 3 = 9
    Case("einsum-1", fn(lambda a: torch.einsum("ij->i", a)), ((3, 4),), Cost(0, 9)),
    # F.bilinear(x1[2, 3], x2[2, 4], W[5, 3, 4], b[5]): 2 rows * 5*3*4 = 120; bias + 10
    Case(
        "F.bilinear",
        fn(lambda a, b: F.bilinear(a, b, torch.randn(5, 3, 4), torch.randn(5))),
        ((2, 3), (2, 4)),
        Cost(120, 250),
    ),  # fmt: skip
    Case("bilinear", module(nn.Bilinear, 3, 4, 5, bias=False), ((2, 3), (2, 4)), Cost(120, 240)),
)
def test_contractions_more(case):
    check(case)


# --- A. attention ----------------------------------------------------------------------


class Attend(nn.Module):
    """nn.MultiheadAttention(8, 2, **kw) in eval mode, called with need_weights."""

    def __init__(self, need_weights: bool, **kw) -> None:
        super().__init__()
        self.attn, self.need_weights = nn.MultiheadAttention(8, 2, **kw).eval(), need_weights

    def forward(self, q, k, v):
        return self.attn(q, k, v, need_weights=self.need_weights)[0]


def _mha(need_weights: bool = True, **kw) -> Callable[[], nn.Module]:
    return lambda: Attend(need_weights, **kw).eval()


@cases(
    # q[2, 3, 4, 8], k[2, 3, 6, 8], v[2, 3, 6, 5]: B = 6, L = 4, S = 6, E = 8, Ev = 5;
    # scores 6*4*6 = 144; MACs 144*8 + 144*5 = 1872; flops 2*1872 + 144 * (1 scale + 5 softmax)
    Case("sdpa", fn(F.scaled_dot_product_attention), ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)),
         Cost(1872, 3744 + 144 * 6)),  # fmt: skip
    # causal: + 1 masking add per score
    Case("sdpa-causal", fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
         ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)), Cost(1872, 3744 + 144 * 7)),  # fmt: skip
    # a mask tensor and dropout: + 1 masking add + 1 dropout multiply per score
    Case("sdpa-mask-dropout",
         fn(lambda q, k, v: F.scaled_dot_product_attention(
             q, k, v, attn_mask=torch.zeros(4, 6), dropout_p=0.5)),
         ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)), Cost(1872, 3744 + 144 * 8)),  # fmt: skip
    # MultiheadAttention(8, 2), q [L 4, N 2, 8], k = v [S 6, N 2, 8]: q proj 8 rows * 64 = 512
    # MACs (+ 64 bias), k and v proj 12 rows * 64 = 768 (+ 96 each); core with heads folded:
    # B 4, L 4, S 6, head dim 4: scores 96, MACs 96*4 + 96*4 = 768, flops 1536 + 96*6;
    # out proj 512 (+ 64); need_weights averages the weights over heads: 2*2*4*6 = 96
    Case("mha", _mha(), ((4, 2, 8), (6, 2, 8), (6, 2, 8)),
         Cost(512 + 768 + 768 + 768 + 512,
              (1024 + 64) + 2 * (1536 + 96) + (1536 + 576) + (1024 + 64) + 96)),  # fmt: skip
    # no biases, add_bias_kv and add_zero_attn: 2 extra keys (S' = 8), no weights:
    # core scores 4*4*8 = 128, MACs 128*8 = 1024, flops 2048 + 128*6
    Case("mha-extra-keys", _mha(False, bias=False, add_bias_kv=True, add_zero_attn=True),
         ((4, 2, 8), (6, 2, 8), (6, 2, 8)),
         Cost(512 + 768 + 768 + 1024 + 512, 1024 + 1536 + 1536 + (2048 + 768) + 1024)),
)  # fmt: skip
def test_attention(case):
    check(case)


# --- A. recurrent layers -----------------------------------------------------------------


@cases(
    # LSTM(3, 4) on [5, 2, 3]: 10 (row, step) pairs; per step G*H*(I + H) = 16*7 = 112 MACs,
    # flops 2*112 + G*H 16 + biases 2*16 + cell 9*4 = 308
    Case("lstm", module(nn.LSTM, 3, 4), ((5, 2, 3),), Cost(10 * 112, 10 * 308)),
    # GRU(3, 4, 2 layers, bidirectional, no bias), 10 pairs * 2 directions: layer 0:
    # 12*(3+4) = 84 MACs, 168 + 12 + cell 8*4 = 212; layer 1 reads 2*4 = 8:
    # 12*(8+4) = 144, 288 + 12 + 32 = 332
    Case(
        "gru-2-layers-bidirectional",
        module(nn.GRU, 3, 4, num_layers=2, bidirectional=True, bias=False),
        ((5, 2, 3),),
        Cost(20 * 84 + 20 * 144, 20 * 212 + 20 * 332),
    ),  # fmt: skip
    # RNN(3, 4): 4*7 = 28 MACs, 56 + 4 + 8 + 4 = 72 per step
    Case("rnn", module(nn.RNN, 3, 4), ((5, 2, 3),), Cost(280, 720)),
    # LSTM(3, 4, proj_size=2): 16*(3 + 2) + 4*2 = 88 MACs, 176 + 16 + 32 + 36 = 260
    Case("lstm-proj", module(nn.LSTM, 3, 4, proj_size=2), ((5, 2, 3),), Cost(880, 2600)),
    # cells on 2 rows: one step each
    Case("lstm_cell", module(nn.LSTMCell, 3, 4), ((2, 3),), Cost(224, 616)),
    Case("gru_cell", module(nn.GRUCell, 3, 4, bias=False), ((2, 3),), Cost(168, 424)),
    Case("rnn_cell", module(nn.RNNCell, 3, 4), ((2, 3),), Cost(56, 144)),
)
def test_recurrent(case):
    check(case)


# --- B. elementwise ------------------------------------------------------------------------

# a[3, 1, 5] with b[4, 5] broadcasts to out[3, 4, 5]: 60 elements, 1 flop each
BINARY = (
    "floor_divide",
    "fmax",
    "fmin",
    "atan2",
    "hypot",
    "xlogy",
    "copysign",
    "subtract",
    "rsub",
    "multiply",
    "divide",
    "true_divide",
    "float_power",
    "maximum",
    "minimum",
)
# x[3, 4, 5]: 60 elements, 1 flop each
UNARY = ("atan", "arctan", "asin", "acos", "sinh", "cosh", "frac", "nan_to_num", "erfinv",
         "logit", "sgn", "angle", "i0", "negative", "absolute", "exp2", "trunc")  # fmt: skip


@pytest.mark.parametrize("name", BINARY)
def test_extra_binary_elementwise(name):
    check(Case(name, fn(getattr(torch, name)), ((3, 1, 5), (4, 5)), Cost(0, 60)))


@pytest.mark.parametrize("name", UNARY)
def test_extra_unary_elementwise(name):
    check(Case(name, fn(getattr(torch, name)), ((3, 4, 5),), Cost(0, 60)))


@cases(
    Case("clamp_min", fn(lambda x: torch.clamp_min(x, 0.5)), ((3, 4, 5),), Cost(0, 60)),
    Case("clamp_max", fn(lambda x: x.clamp_max(0.5)), ((3, 4, 5),), Cost(0, 60)),
    Case("expit", fn(torch.special.expit), ((3, 4, 5),), Cost(0, 60)),
    Case("relu", module(nn.ReLU), ((3, 4, 5),), Cost(0, 60)),
    # x - tanh(x): 2 per element
    Case("tanhshrink", module(nn.Tanhshrink), ((3, 4, 5),), Cost(0, 120)),
    # t + v * a * b: 2 per element of out[3, 4, 5]
    Case("addcmul", fn(torch.addcmul), ((3, 4, 5), (4, 5), (3, 1, 5)), Cost(0, 120)),
    Case("addcdiv", fn(torch.addcdiv), ((3, 4, 5), (4, 5), (3, 1, 5)), Cost(0, 120)),
)
def test_elementwise(case):
    check(case)


# --- C. reductions and softmax ----------------------------------------------------------
# x[3, 4, 5]: numel(in) = 60


@cases(
    # n - 1 per group: 60 - numel(out)
    Case("sum-dim1", fn(lambda x: x.sum(1)), ((3, 4, 5),), Cost(0, 60 - 15)),
    Case("nansum-dim1", fn(lambda x: torch.nansum(x, 1)), ((3, 4, 5),), Cost(0, 60 - 15)),
    Case("prod-dim2", fn(lambda x: x.prod(2)), ((3, 4, 5),), Cost(0, 60 - 12)),
    Case("amax", fn(lambda x: x.amax((1, 2))), ((3, 4, 5),), Cost(0, 60 - 3)),
    Case("amin", fn(lambda x: torch.amin(x, 0)), ((3, 4, 5),), Cost(0, 60 - 20)),
    Case("max-dim", fn(lambda x: x.max(1).values), ((3, 4, 5),), Cost(0, 60 - 15)),
    Case("min-all", fn(torch.min), ((3, 4, 5),), Cost(0, 60 - 1)),
    # with a tensor other, max and min are elementwise: 1 per element of out
    Case("max-tensor", fn(torch.max), ((3, 4, 5), (4, 5)), Cost(0, 60)),
    Case("min-tensor", fn(lambda a, b: a.min(b)), ((3, 4, 5), (4, 5)), Cost(0, 60)),
    # mean and nanmean: numel(in)
    Case("mean", fn(lambda x: x.mean(1)), ((3, 4, 5),), Cost(0, 60)),
    Case("nanmean", fn(lambda x: torch.nanmean(x, 1)), ((3, 4, 5),), Cost(0, 60)),
    # var: 4 * 60; std: + one sqrt per output (15)
    Case("var", fn(lambda x: x.var(1)), ((3, 4, 5),), Cost(0, 240)),
    Case("std", fn(lambda x: x.std(1)), ((3, 4, 5),), Cost(0, 255)),
    Case("var_mean", fn(lambda x: torch.var_mean(x, 1)[0]), ((3, 4, 5),), Cost(0, 240), ("fx",)),
    Case("std_mean", fn(lambda x: torch.std_mean(x, 1)[0]), ((3, 4, 5),), Cost(0, 255), ("fx",)),
    # 2-norm: square and accumulate 2 * 60, one sqrt per output (15)
    Case("norm-fro", fn(lambda x: x.norm(dim=1)), ((3, 4, 5),), Cost(0, 120 + 15)),
    Case("norm-p2", fn(lambda x: torch.norm(x, p=2, dim=1)), ((3, 4, 5),), Cost(0, 135)),
    # p = 1 (abs, accumulate), inf (abs, compare), 0 (compare, count): 2 * 60, no root
    Case(
        "vector_norm-1", fn(lambda x: torch.linalg.vector_norm(x, 1, 1)), ((3, 4, 5),), Cost(0, 120)
    ),  # fmt: skip
    Case(
        "vector_norm-inf",
        fn(lambda x: torch.linalg.vector_norm(x, float("inf"), 1)),
        ((3, 4, 5),),
        Cost(0, 120),
    ),  # fmt: skip
    Case(
        "vector_norm-0", fn(lambda x: torch.linalg.vector_norm(x, 0, 1)), ((3, 4, 5),), Cost(0, 120)
    ),  # fmt: skip
    # any other p: abs, power, accumulate 3 * 60, then the 1/p power per output (15)
    Case(
        "vector_norm-3",
        fn(lambda x: torch.linalg.vector_norm(x, 3, 1)),
        ((3, 4, 5),),
        Cost(0, 180 + 15),
    ),  # fmt: skip
    # cumulative along a dim of size s: 60 - 60 / s
    Case("cumsum-dim1", fn(lambda x: x.cumsum(1)), ((3, 4, 5),), Cost(0, 60 - 15)),
    Case("cumprod-dim2", fn(lambda x: torch.cumprod(x, 2)), ((3, 4, 5),), Cost(0, 60 - 12)),
    Case("cummax-dim1", fn(lambda x: torch.cummax(x, 1).values), ((3, 4, 5),), Cost(0, 45)),
    Case("cummin-dim0", fn(lambda x: x.cummin(0)[0]), ((3, 4, 5),), Cost(0, 60 - 20)),
    # softmax family and logsumexp: 5 per element of the input
    Case("softmax", fn(lambda x: x.softmax(1)), ((3, 4, 5),), Cost(0, 300)),
    Case("log_softmax", fn(lambda x: F.log_softmax(x, 2)), ((3, 4, 5),), Cost(0, 300)),
    Case("softmin", fn(lambda x: F.softmin(x, 0)), ((3, 4, 5),), Cost(0, 300)),
    Case("logsumexp", fn(lambda x: torch.logsumexp(x, 1)), ((3, 4, 5),), Cost(0, 300)),
    Case("Softmax", module(nn.Softmax, 1), ((3, 4, 5),), Cost(0, 300)),
    Case("LogSoftmax", module(nn.LogSoftmax, 1), ((3, 4, 5),), Cost(0, 300)),
    Case("Softmin", module(nn.Softmin, 1), ((3, 4, 5),), Cost(0, 300)),
    # Softmax2d over the channels of [2, 3, 4, 5]: 5 * 120
    Case("Softmax2d", module(nn.Softmax2d), ((2, 3, 4, 5),), Cost(0, 600)),
)
def test_reductions(case):
    check(case)


# --- D. normalization ----------------------------------------------------------------------
# [2, 4, 3, 3]: 72 elements; [2, 3, 5]: 30 elements

RM, RV, W4 = torch.zeros(4), torch.ones(4), torch.ones(4)


@cases(
    # eval (running statistics): 2 per element + 2 affine
    Case("batch_norm-eval", module(nn.BatchNorm2d, 4), ((2, 4, 3, 3),), Cost(0, 4 * 72)),
    Case(
        "batch_norm-eval-no-affine",
        module(nn.BatchNorm2d, 4, affine=False),
        ((2, 4, 3, 3),),
        Cost(0, 2 * 72),
    ),  # fmt: skip
    # SyncBatchNorm in eval on CPU is batch norm
    Case("sync_batch_norm-eval", module(nn.SyncBatchNorm, 4), ((2, 4, 3, 3),), Cost(0, 288)),
    # training, or no running statistics: from the input, 6 + 2 affine
    Case(
        "batch_norm-train", module(nn.BatchNorm2d, 4, train=True), ((2, 4, 3, 3),), Cost(0, 8 * 72)
    ),  # fmt: skip
    Case(
        "batch_norm-no-stats",
        module(nn.BatchNorm1d, 4, affine=False, track_running_stats=False),
        ((2, 4, 3),),
        Cost(0, 6 * 24),
    ),
    # functional, only a weight: 2 + 1 per element (eval), 6 + 1 (training)
    Case(
        "F.batch_norm-weight",
        fn(lambda x: F.batch_norm(x, RM, RV, W4)),
        ((2, 4, 3, 3),),
        Cost(0, 3 * 72),
    ),  # fmt: skip
    Case(
        "F.batch_norm-train",
        fn(lambda x: F.batch_norm(x, None, None, None, W4, True)),
        ((2, 4, 3, 3),),
        Cost(0, 7 * 72),
    ),  # fmt: skip
    # instance norm: from the input (6), or running statistics when tracked in eval (2 + 2)
    Case("instance_norm", module(nn.InstanceNorm2d, 4), ((2, 4, 3, 3),), Cost(0, 6 * 72)),
    Case(
        "instance_norm-running",
        module(nn.InstanceNorm2d, 4, affine=True, track_running_stats=True),
        ((2, 4, 3, 3),),
        Cost(0, 4 * 72),
    ),  # fmt: skip
    Case("F.instance_norm", fn(F.instance_norm), ((2, 4, 3, 3),), Cost(0, 6 * 72)),
    Case(
        "F.instance_norm-running",
        fn(lambda x: F.instance_norm(x, RM, RV, W4, None, use_input_stats=False)),
        ((2, 4, 3, 3),),
        Cost(0, 3 * 72),
    ),  # fmt: skip
    # layer norm on [2, 3, 5]: 6 + weight + bias
    Case("layer_norm", module(nn.LayerNorm, 5), ((2, 3, 5),), Cost(0, 8 * 30)),
    Case("layer_norm-no-bias", module(nn.LayerNorm, 5, bias=False), ((2, 3, 5),), Cost(0, 210)),
    Case("F.layer_norm", fn(lambda x: F.layer_norm(x, (5,))), ((2, 3, 5),), Cost(0, 180)),
    Case(
        "F.layer_norm-weight",
        fn(lambda x: F.layer_norm(x, (5,), torch.ones(5))),
        ((2, 3, 5),),
        Cost(0, 210),
    ),  # fmt: skip
    Case("group_norm", module(nn.GroupNorm, 2, 4), ((2, 4, 3, 3),), Cost(0, 8 * 72)),
    Case("F.group_norm", fn(lambda x: F.group_norm(x, 2)), ((2, 4, 3, 3),), Cost(0, 6 * 72)),
    Case(
        "F.group_norm-bias",
        fn(lambda x: F.group_norm(x, 2, None, W4)),
        ((2, 4, 3, 3),),
        Cost(0, 7 * 72),
    ),  # fmt: skip
    # rms norm: 3 + 1 with a weight
    Case("rms_norm", module(nn.RMSNorm, 5), ((2, 3, 5),), Cost(0, 4 * 30)),
    Case(
        "rms_norm-no-weight",
        module(nn.RMSNorm, 5, elementwise_affine=False),
        ((2, 3, 5),),
        Cost(0, 3 * 30),
    ),  # fmt: skip
    Case("F.rms_norm", fn(lambda x: F.rms_norm(x, (5,))), ((2, 3, 5),), Cost(0, 90)),
    Case(
        "F.rms_norm-weight",
        fn(lambda x: F.rms_norm(x, (5,), torch.ones(5))),
        ((2, 3, 5),),
        Cost(0, 120),
    ),  # fmt: skip
    # F.normalize: 3 per element
    Case("normalize", fn(lambda x: F.normalize(x, dim=1)), ((3, 4, 5),), Cost(0, 180)),
    # local response norm: (2 * size + 3) per element
    Case(
        "local_response_norm", module(nn.LocalResponseNorm, 3), ((2, 4, 3, 3),), Cost(0, 9 * 72)
    ),  # fmt: skip
    Case(
        "F.local_response_norm",
        fn(lambda x: F.local_response_norm(x, 2)),
        ((2, 4, 3, 3),),
        Cost(0, 7 * 72),
    ),  # fmt: skip
)
def test_norms(case):
    check(case)


# --- E. pooling ----------------------------------------------------------------------------


@cases(
    # numel(out) * prod(kernel)
    # MaxPool2d(2) on [1, 2, 6, 6] -> [1, 2, 3, 3]: 18 * 4
    Case("max_pool2d", module(nn.MaxPool2d, 2), ((1, 2, 6, 6),), Cost(0, 72)),
    # kernel (2, 3), stride 1 on [1, 2, 4, 5] -> [1, 2, 3, 3]: 18 * 6
    Case("max_pool2d-rect", module(nn.MaxPool2d, (2, 3), 1), ((1, 2, 4, 5),), Cost(0, 108)),
    # F.max_pool2d(x, 3, 1) on [1, 1, 5, 5] -> 3x3: 9 * 9
    Case("F.max_pool2d", fn(lambda x: F.max_pool2d(x, 3, 1)), ((1, 1, 5, 5),), Cost(0, 81)),
    # AvgPool1d(3) on [2, 3, 9] -> [2, 3, 3]: 18 * 3
    Case("avg_pool1d", module(nn.AvgPool1d, 3), ((2, 3, 9),), Cost(0, 54)),
    Case("F.avg_pool1d", fn(lambda x: F.avg_pool1d(x, 2)), ((2, 3, 8),), Cost(0, 24 * 2)),
    # LPPool2d(2, 2) on [1, 2, 4, 4] -> [1, 2, 2, 2]: 8 * 4
    Case("lp_pool2d", module(nn.LPPool2d, 2, 2), ((1, 2, 4, 4),), Cost(0, 32)),
    # F.lp_pool1d(x, 2, 3) on [1, 2, 9] -> [1, 2, 3]: 6 * 3
    Case("F.lp_pool1d", fn(lambda x: F.lp_pool1d(x, 2, 3)), ((1, 2, 9),), Cost(0, 18)),
    # MaxPool3d(2) on [1, 1, 4, 4, 4] -> 2x2x2: 8 * 8
    Case("max_pool3d", module(nn.MaxPool3d, 2), ((1, 1, 4, 4, 4),), Cost(0, 64)),
    # adaptive (2, 3) on [1, 2, 5, 7]: windows along 5 -> 2: [0, 3), [2, 5): 3 + 3 = 6;
    # along 7 -> 3: [0, 3), [2, 5), [4, 7): 9; 2 channels * 6 * 9
    Case(
        "adaptive_avg_pool2d", module(nn.AdaptiveAvgPool2d, (2, 3)), ((1, 2, 5, 7),), Cost(0, 108)
    ),  # fmt: skip
    # along 7 -> 3 again (9) for 2 * 3 rows
    Case("adaptive_max_pool1d", module(nn.AdaptiveMaxPool1d, 3), ((2, 3, 7),), Cost(0, 54)),
    # global: numel(in) 70
    Case(
        "adaptive_avg_pool2d-global",
        fn(lambda x: F.adaptive_avg_pool2d(x, 1)),
        ((1, 2, 5, 7),),
        Cost(0, 70),
    ),  # fmt: skip
)
def test_pooling(case):
    check(case)


# --- dropout, interpolation, embedding bags ------------------------------------------------


@cases(
    # training: one scaled-mask multiply per element (60); eval, or p = 0: the identity
    Case("dropout-train", module(nn.Dropout, 0.5, train=True), ((3, 4, 5),), Cost(0, 60)),
    Case("dropout-eval", module(nn.Dropout, 0.5), ((3, 4, 5),), Cost(0, 0)),
    Case("dropout-p0", module(nn.Dropout, 0.0, train=True), ((3, 4, 5),), Cost(0, 0)),
    Case("F.dropout", fn(lambda x: F.dropout(x, 0.5)), ((3, 4, 5),), Cost(0, 60)),
    Case(
        "F.dropout-eval", fn(lambda x: F.dropout(x, 0.5, training=False)), ((3, 4, 5),), Cost(0, 0)
    ),  # fmt: skip
    Case("F.dropout-p0", fn(lambda x: F.dropout(x, 0.0)), ((3, 4, 5),), Cost(0, 0)),
    Case("torch.dropout", fn(lambda x: torch.dropout(x, 0.5, True)), ((3, 4, 5),), Cost(0, 60)),
    # F.alpha_dropout defaults to training=False
    Case("F.alpha_dropout", fn(lambda x: F.alpha_dropout(x, 0.5)), ((3, 4, 5),), Cost(0, 0)),
    Case(
        "F.alpha_dropout-train",
        fn(lambda x: F.alpha_dropout(x, 0.5, True)),
        ((3, 4, 5),),
        Cost(0, 60),
    ),  # fmt: skip
    # taps * numel(out) MACs: bilinear [1, 2, 3, 4] x2 -> [1, 2, 6, 8] = 96 outputs * 4
    Case(
        "interpolate-bilinear",
        fn(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")),
        ((1, 2, 3, 4),),
        Cost(384, 768),
    ),  # fmt: skip
    # linear [1, 2, 5] -> [1, 2, 10]: 20 * 2
    Case(
        "interpolate-linear",
        fn(lambda x: F.interpolate(x, size=10, mode="linear")),
        ((1, 2, 5),),
        Cost(40, 80),
    ),  # fmt: skip
    # bicubic [1, 1, 2, 2] -> 4x4: 16 * 16
    Case(
        "interpolate-bicubic",
        fn(lambda x: F.interpolate(x, size=(4, 4), mode="bicubic")),
        ((1, 1, 2, 2),),
        Cost(256, 512),
    ),  # fmt: skip
    # trilinear [1, 1, 2, 2, 2] x2 -> 64 outputs * 8
    Case(
        "interpolate-trilinear",
        fn(lambda x: F.interpolate(x, scale_factor=2, mode="trilinear")),
        ((1, 1, 2, 2, 2),),
        Cost(512, 1024),
    ),  # fmt: skip
    Case(
        "interpolate-nearest",
        fn(lambda x: F.interpolate(x, scale_factor=2)),
        ((1, 2, 3, 4),),
        Cost(0, 0),
    ),  # fmt: skip
    # area is an adaptive average pool: [1, 2, 6, 6] -> 3x3, windows of 2 along each dim:
    # 2 channels * (3 * 2) * (3 * 2)
    Case(
        "interpolate-area",
        fn(lambda x: F.interpolate(x, size=(3, 3), mode="area")),
        ((1, 2, 6, 6),),
        Cost(0, 72),
    ),  # fmt: skip
    Case(
        "Upsample-bilinear",
        module(nn.Upsample, scale_factor=2, mode="bilinear"),
        ((1, 2, 3, 4),),
        Cost(384, 768),
    ),  # fmt: skip
    Case(
        "Upsample-area", module(nn.Upsample, size=(3, 3), mode="area"), ((1, 2, 6, 6),), Cost(0, 72)
    ),  # fmt: skip
    Case(
        "upsample_bilinear",
        fn(lambda x: F.upsample_bilinear(x, scale_factor=2)),
        ((1, 2, 3, 4),),
        Cost(384, 768),
    ),  # fmt: skip
)
def test_dropout_and_interpolation(case):
    check(case)


IDX = flopgraph.TensorSpec((2, 4), torch.long)  # 2 bags of 4 indices
EMB = torch.randn(10, 3)


class Bag(nn.Module):
    """EmbeddingBag(10, 3) with per-sample weights (mode sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 3, mode="sum")

    def forward(self, idx):
        return self.bag(idx, per_sample_weights=torch.ones(2, 4))


@cases(
    # 8 indices gather 8 rows of 3 = 24 values into out[2, 3] (6): mean 24 (adds and the
    # divide); sum and max 24 - 6 (n - 1 per bag)
    Case("embedding_bag-mean", module(nn.EmbeddingBag, 10, 3), (IDX,), Cost(0, 24)),
    Case("embedding_bag-sum", module(nn.EmbeddingBag, 10, 3, mode="sum"), (IDX,), Cost(0, 18)),
    Case("embedding_bag-max", module(nn.EmbeddingBag, 10, 3, mode="max"), (IDX,), Cost(0, 18)),
    # per-sample weights: + one multiply per gathered value (24)
    Case("embedding_bag-weighted", Bag, (IDX,), Cost(0, 18 + 24)),
    Case("F.embedding_bag", fn(lambda i: F.embedding_bag(i, EMB)), (IDX,), Cost(0, 24)),
    Case(
        "F.embedding_bag-sum",
        fn(lambda i: F.embedding_bag(i, EMB, mode="sum")),
        (IDX,),
        Cost(0, 18),
    ),  # fmt: skip
    Case(
        "F.embedding_bag-weighted",
        fn(lambda i: F.embedding_bag(i, EMB, mode="sum", per_sample_weights=torch.ones(2, 4))),
        (IDX,),
        Cost(0, 42),
    ),  # fmt: skip
)
def test_embedding_bag(case):
    check(case)


# --- torch.nn's Transformer modules --------------------------------------------------------

# One attention of nn.MultiheadAttention(8, 2) on L queries and S keys, batch 2, no
# weights averaged: projections of 2L, 2S, 2S rows (64 MACs per row, + 8 bias each), the
# core with heads folded (B 4, head dim 4): MACs 4*L*S*8, flops 2*MACs + 6 per score
# (+ 1 with dropout), output projection of 2L rows.


def attention_cost(L: int, S: int, dropout: bool = False) -> Cost:
    q, kv, scores = 2 * L, 2 * S, 4 * L * S
    macs = 64 * q + 2 * 64 * kv + scores * 8 + 64 * q
    flops = 2 * macs + 8 * q + 2 * 8 * kv + scores * (6 + dropout) + 8 * q
    return Cost(macs, flops)


def feed_forward_cost(n: int, residuals: int, dropout: bool = False) -> Cost:
    # x[n, 8]: linear1 8 -> 16 (+ 16 bias per row), relu 16n, linear2 16 -> 8 (+ 8 bias),
    # residual adds 8n each, one LayerNorm(8) per residual (8 per element); training:
    # dropout after the activation (16n) and on each residual branch (8n each)
    macs = n * 8 * 16 + n * 16 * 8
    flops = 2 * macs + 16 * n + 16 * n + 8 * n + residuals * 8 * n + residuals * 8 * 8 * n
    if dropout:
        flops += 16 * n + residuals * 8 * n
    return Cost(macs, flops)


@cases(
    # src [4, 2, 8]: 8 rows
    Case("encoder_layer-eval", module(nn.TransformerEncoderLayer, 8, 2, 16), ((4, 2, 8),),
         attention_cost(4, 4) + feed_forward_cost(8, 2)),  # fmt: skip
    Case("encoder_layer-train", module(nn.TransformerEncoderLayer, 8, 2, 16, train=True),
         ((4, 2, 8),), attention_cost(4, 4, True) + feed_forward_cost(8, 2, True)),
    # tgt [3, 2, 8] (6 rows), memory [4, 2, 8]: self attention, cross attention, 3 residuals
    Case("decoder_layer-eval", module(nn.TransformerDecoderLayer, 8, 2, 16),
         ((3, 2, 8), (4, 2, 8)),
         attention_cost(3, 3) + attention_cost(3, 4) + feed_forward_cost(6, 3)),
    # two layers and a final LayerNorm(8) on the 64 elements
    Case("encoder", lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2,
                                                  norm=nn.LayerNorm(8)).eval(),
         ((4, 2, 8),),
         Cost(2 * attention_cost(4, 4).macs + 2 * feed_forward_cost(8, 2).macs,
              2 * (attention_cost(4, 4).flops + feed_forward_cost(8, 2).flops) + 8 * 64)),
    # Transformer(8, 2, 1 encoder layer, 1 decoder layer, 16): both stacks end in a norm
    Case("transformer", module(nn.Transformer, 8, 2, 1, 1, 16), ((4, 2, 8), (3, 2, 8)),
         attention_cost(4, 4) + feed_forward_cost(8, 2) + Cost(0, 8 * 64)
         + attention_cost(3, 3) + attention_cost(3, 4) + feed_forward_cost(6, 3)
         + Cost(0, 8 * 48)),
)  # fmt: skip
def test_transformer_modules(case):
    check(case)


# --- torchvision ops -------------------------------------------------------------------------


def _tv():
    return pytest.importorskip("torchvision.ops")


@pytest.mark.parametrize(
    "training, p, flops",
    # training with p > 0: one scaled-mask multiply per element of x[4, 3, 5] (60);
    # eval or p = 0: the identity
    [(True, 0.5, 60), (False, 0.5, 0), (True, 0.0, 0)],
)
def test_stochastic_depth(training, p, flops):
    ops = _tv()
    # fx only: fx keeps the call whole inside torchvision's StochasticDepth (torchvision
    # wraps it for fx there); on aten its parts (the mask, its divide, the multiply) count
    check(Case("StochasticDepth", lambda: ops.StochasticDepth(p, "row").train(training),
               ((4, 3, 5),), Cost(0, flops), ("fx",)))  # fmt: skip


@pytest.mark.parametrize(
    "ratio, samples",
    # sampling_ratio 2: 2 * 2 samples per bin; adaptive (-1): its least, 1
    [(2, 4), (-1, 1)],
)
def test_roi_align(ratio, samples):
    ops = _tv()
    # out [3 boxes, 2 channels, 2, 3] = 36 bins; each sample a bilinear interpolation
    # (4 MACs), each bin the mean of its samples (1 flop per sample)
    s = 36 * samples
    model = lambda: RoI(ops.RoIAlign((2, 3), 1.0, ratio))  # noqa: E731
    check(Case("roi_align", model, ((1, 2, 8, 8), (3, 5)), Cost(4 * s, 8 * s + s)))


def test_roi_pool():
    ops = _tv()
    # a window only box values tell: its least, one element per bin of [3, 2, 2, 3]
    check(Case("roi_pool", lambda: RoI(ops.RoIPool((2, 3), 1.0)), ((1, 2, 8, 8), (3, 5)),
               Cost(0, 36)))  # fmt: skip


# --- the fused attention kernels, as the aten frontend may meet them ------------------------

ATEN = torch.ops.aten


@cases(
    # q, k, v [2, 3, 4 | 6, 8]: B 6, L 4, S 6, E = Ev = 8: scores 144, MACs 144 * 16 = 2304;
    # flops 2 * 2304 + 144 * (1 scale + 5 softmax + 1 causal mask + 1 dropout as given)
    Case("flash_for_cpu-causal",
         fn(lambda q, k, v: ATEN._scaled_dot_product_flash_attention_for_cpu(
             q, k, v, 0.0, True)[0]),
         ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8)), Cost(2304, 4608 + 144 * 7), ("aten",)),
    Case("flash_for_cpu-dropout",
         fn(lambda q, k, v: ATEN._scaled_dot_product_flash_attention_for_cpu(
             q, k, v, 0.5, False)[0]),
         ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8)), Cost(2304, 4608 + 144 * 7), ("aten",)),
    Case("efficient-mask",
         fn(lambda q, k, v: ATEN._scaled_dot_product_efficient_attention(
             q, k, v, torch.zeros(2, 3, 4, 6), False, 0.0, False)[0]),
         ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8)), Cost(2304, 4608 + 144 * 7), ("aten",)),
    Case("efficient-causal-dropout",
         fn(lambda q, k, v: ATEN._scaled_dot_product_efficient_attention(
             q, k, v, None, False, 0.5, True)[0]),
         ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8)), Cost(2304, 4608 + 144 * 8), ("aten",)),
)  # fmt: skip
def test_attention_kernels(case):
    check(case)


@pytest.mark.parametrize(
    "shift, train, flops",
    [
        # x [1, 4, 4, 8], 2x2 windows: 4 windows of 4 tokens = 16 rows of 8, heads 2
        # (head dim 4), scores [4, 2, 4, 4] = 128. qkv linear 16*8*24 = 3072 MACs,
        # 6144 + 384 bias; q scaling 128; q @ k^T 128 * 4 = 512 MACs, 1024; + bias table
        # 128; softmax 5 * 128 = 640; attn @ v 512 MACs, 1024; proj 16*8*8 = 1024 MACs,
        # 2048 + 128 bias. Shifted: the region mask, one subtract per (window, token,
        # token) 4*4*4 = 64, and its add on the scores 128. Training with both dropouts:
        # + 128 (weights) + 128 (output)
        ([1, 1], False, 6528 + 128 + 1024 + 128 + 640 + 1024 + 2176 + 192),
        ([0, 0], False, 6528 + 128 + 1024 + 128 + 640 + 1024 + 2176),
        ([1, 1], True, 6528 + 128 + 1024 + 128 + 640 + 1024 + 2176 + 192 + 256),
    ],
)
def test_shifted_window_attention(shift, train, flops):
    _tv()
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    def build() -> nn.Module:
        m = ShiftedWindowAttention(8, [2, 2], shift, 2, attention_dropout=0.1, dropout=0.1)
        return m.train(train)

    # fx only: fx keeps torchvision's wrapped shifted_window_attention whole
    check(Case("swin", build, ((1, 4, 4, 8),), Cost(3072 + 512 + 512 + 1024, flops), ("fx",)))


def test_einsum_ellipsis():
    # ...ij,...jk->...ik on [2, 3, 4], [2, 4, 5]: the ellipsis is one dim of 2;
    # 2 * i3 * j4 * k5 = 120 MACs
    model = fn(lambda a, b: torch.einsum("...ij,...jk->...ik", a, b))
    check(Case("einsum-ellipsis", model, ((2, 3, 4), (2, 4, 5)), Cost(120, 240)))


def test_einsum_path_with_a_single_operand_step():
    # the formula on opt_einsum's path convention (opt_einsum is optional, so the path is
    # given): ab,bc,cd->a with a 2, b 3, c 5, d 6 and path [(2,), (0, 1), (0, 1)]:
    # sum d out of cd first (5*6 - 5 = 25 adds), then ab . bc over a, b, c (30 MACs),
    # then ac . c over a, c (10 MACs)
    from flopgraph import formulas

    got = formulas.einsum("ab,bc,cd->a", [(2, 3), (3, 5), (5, 6)], [(2,), (0, 1), (0, 1)])
    assert got == Cost(30 + 10, 2 * 40 + 25)


@cases(
    # implicit output (letters used once): ij,jk is ik, 3*4*5 = 60 MACs
    Case("einsum-implicit", fn(lambda a, b: torch.einsum("ij,jk", a, b)), ((3, 4), (4, 5)),
         Cost(60, 120)),
    # one operand: "ij" keeps both letters (a copy, 0); "ii" is the trace, 3 - 1 adds
    Case("einsum-copy", fn(lambda a: torch.einsum("ij", a)), ((3, 4),), Cost(0, 0)),
    Case("einsum-trace", fn(lambda a: torch.einsum("ii", a)), ((3, 3),), Cost(0, 2)),
    # ...ij->...i on [2, 3, 4]: sums j out, 24 - 6
    Case("einsum-ellipsis-sum", fn(lambda a: torch.einsum("...ij->...i", a)), ((2, 3, 4),),
         Cost(0, 18)),
    # an ellipsis of two dims [2, 2]: 4 * 3*4*5 = 240 MACs
    Case("einsum-ellipsis-2", fn(lambda a, b: torch.einsum("...ij,...jk->...ik", a, b)),
         ((2, 2, 3, 4), (2, 2, 4, 5)), Cost(240, 480)),
)  # fmt: skip
def test_einsum_labels(case):
    check(case)
