"""Sections B to F of the spec, op by op, with odd shapes and every call form."""

import operator

import pytest
import torch
import torch.nn.functional as F
from helpers import Fn, cost_of, fn_cost
from torch import nn

import flopgraph
from flopgraph import Cost, Status

X = (2, 3, 5)  # 30 elements
N = 30

UNARY = [
    "neg", "abs", "sqrt", "rsqrt", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
    "sin", "cos", "tan", "sigmoid", "tanh", "erf", "erfc", "reciprocal", "square", "sign",
    "floor", "ceil", "round", "trunc",
]  # fmt: skip
BINARY = ["add", "sub", "mul", "div", "remainder", "pow", "maximum", "minimum", "fmod"]
ACTIVATIONS = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish",
    "hardsigmoid", "hardtanh", "softplus", "softsign", "logsigmoid",
]  # fmt: skip


@pytest.mark.parametrize("name", UNARY)
def test_unary_function_and_method(name):
    # 1 flop per element of out, as torch.<name>(x) and x.<name>()
    assert fn_cost(getattr(torch, name), X) == Cost(0, N)
    assert fn_cost(lambda x: getattr(x, name)(), X) == Cost(0, N)
    assert fn_cost(lambda x: getattr(x, name + "_")(), X) == Cost(0, N)  # in place


@pytest.mark.parametrize("name", BINARY)
def test_binary_broadcast(name):
    # out [4, 5, 3]: 60 flops, whatever the operands' shapes
    assert fn_cost(getattr(torch, name), (4, 1, 3), (5, 1)) == Cost(0, 60)
    assert fn_cost(lambda a, b: getattr(a, name)(b), (4, 5, 3), (5, 1)) == Cost(0, 60)


@pytest.mark.parametrize(
    "fn, k",
    [
        (lambda x: x.clamp(-1, 1), 1), (lambda x: torch.clip(x, max=1), 1),
        (lambda x: x.where(x > 0, 0.0), 1),
        (lambda x: torch.lerp(x, x, 0.3), 1), (lambda x: torch.addcmul(x, x, x), 2),
        (lambda x: torch.addcdiv(x, x, x, value=2), 2), (lambda x: x - 1, 1),
        (lambda x: 2 ** x, 1), (lambda x: x % 3, 1), (lambda x: -x, 1), (lambda x: abs(x), 1),
        (lambda x: F.threshold(x, 0.1, 0.0), 1), (lambda x: F.prelu(x, torch.ones(1)), 1),
    ],
)  # fmt: skip
def test_other_elementwise(fn, k):
    assert fn_cost(fn, X) == Cost(0, k * N)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_functional_and_module(name):
    assert fn_cost(getattr(F, name), X) == Cost(0, N)
    module = {"relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
              "logsigmoid": nn.LogSigmoid, "hardswish": nn.Hardswish,
              "hardsigmoid": nn.Hardsigmoid, "hardtanh": nn.Hardtanh, "softplus": nn.Softplus,
              "softsign": nn.Softsign, "mish": nn.Mish, "relu": nn.ReLU, "elu": nn.ELU,
              "selu": nn.SELU, "celu": nn.CELU}[name]  # fmt: skip
    assert cost_of(module(), X) == Cost(0, N)


def test_glu_prelu_threshold_modules():
    assert cost_of(nn.GLU(-1), (3, 8)) == Cost(0, 12)  # counts its output: 3 * 4
    assert cost_of(nn.PReLU(3), X) == Cost(0, N)
    assert cost_of(nn.Threshold(0.1, 0.0), X) == Cost(0, N)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.long() + 1,
        lambda x: x > 0,
        lambda x: (x > 0) & (x < 1),
        lambda x: torch.where(x > 0, 1, 0),
        lambda x: x.argmax(-1),
        lambda x: ~(x == 0),
        lambda x: x.int() * 3,
        lambda x: torch.isnan(x),
        lambda x: x.long().sum(),
    ],
)
def test_integer_and_boolean_results_are_free_not_skipped(fn):
    report = flopgraph.analyze(Fn(fn), X)
    assert report.flops == 0 and not report.skipped
    last = report.records[-1]
    assert last.status is Status.FREE and "no floating-point output" in last.reason


@pytest.mark.parametrize(
    "fn, flops",
    [
        (lambda x: x.var(), 4 * 60),  # 4 * numel(in)
        (lambda x: torch.var(x, dim=1), 4 * 60),
        (lambda x: x.std(dim=(0, 2)), 4 * 60 + 3),  # + one sqrt per output
        (lambda x: torch.std(x), 4 * 60 + 1),
        (lambda x: torch.var_mean(x, dim=-1)[0], 4 * 60),
        (lambda x: torch.std_mean(x, dim=-1)[1], 4 * 60 + 12),
        (lambda x: x.norm(), 2 * 60 + 1),  # square, accumulate; sqrt
        (lambda x: torch.norm(x, dim=-1), 2 * 60 + 12),
        (lambda x: torch.norm(x, p="fro", dim=(1, 2)), 2 * 60 + 4),
        (lambda x: torch.linalg.vector_norm(x, dim=0), 2 * 60 + 15),
        (lambda x: torch.linalg.norm(x, dim=-1), 2 * 60 + 12),
        (lambda x: x.norm(p=1, dim=-1), 2 * 60),  # abs, accumulate
        (lambda x: torch.linalg.vector_norm(x, float("inf")), 2 * 60),
        (lambda x: x.norm(p=3), 3 * 60 + 1),  # abs, power, accumulate; root
        (lambda x: x.cumsum(1), 60 - 60 // 3),  # numel - numel / size(dim)
        (lambda x: torch.cumprod(x, dim=-1), 60 - 12),
        (lambda x: x.cummax(0).values, 60 - 15),
        (lambda x: torch.logsumexp(x, dim=1), 5 * 60),
        (lambda x: x.logsumexp((0, 1)), 5 * 60),
        (lambda x: F.softmin(x, -1), 5 * 60),
    ],
)
def test_reductions(fn, flops):
    assert fn_cost(fn, (4, 3, 5)) == Cost(0, flops)


@pytest.mark.parametrize("affine, track", [(False, False), (True, False), (True, True)])
def test_instance_norm(affine, track):
    m = nn.InstanceNorm2d(3, affine=affine, track_running_stats=track)
    n = 2 * 3 * 5 * 7
    extra = 2 if affine else 0
    # training, or no running stats: statistics from the input, 6 per element
    assert cost_of(m.train(), (2, 3, 5, 7)) == Cost(0, (6 + extra) * n)
    # eval with running stats: 2 per element, as batch_norm in eval
    assert cost_of(m.eval(), (2, 3, 5, 7)) == Cost(0, ((2 if track else 6) + extra) * n)
    assert fn_cost(lambda x: F.instance_norm(x), (2, 3, 5, 7)) == Cost(0, 6 * n)


def test_instance_norm_1d_and_3d():
    assert cost_of(nn.InstanceNorm1d(4), (2, 4, 9)) == Cost(0, 6 * 72)
    assert cost_of(nn.InstanceNorm3d(2, affine=True), (1, 2, 3, 4, 5)) == Cost(0, 8 * 120)


def test_rms_norm_module_and_function():
    n = 2 * 5 * 8
    assert cost_of(nn.RMSNorm(8), (2, 5, 8)) == Cost(0, 4 * n)  # 3 + weight
    assert cost_of(nn.RMSNorm([5, 8], elementwise_affine=False), (2, 5, 8)) == Cost(0, 3 * n)
    w = torch.ones(8)
    assert fn_cost(lambda x: F.rms_norm(x, (8,), w), (2, 5, 8)) == Cost(0, 4 * n)
    assert fn_cost(lambda x: F.rms_norm(x, (8,)), (2, 5, 8)) == Cost(0, 3 * n)


class HandRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def test_handwritten_rms_norm_counts_as_its_parts():
    report = flopgraph.analyze(HandRMSNorm(8), (2, 5, 8))
    n, rows = 80, 10
    # pow n + mean n (numel(in)) + eps add (rows) + rsqrt (rows) + x * r n + * weight n
    assert report.cost == Cost(0, n + n + rows + rows + n + n) == Cost(0, 340)
    assert [r.op for r in report.records if r.flops] == [
        "pow",
        "mean",
        "add",
        "rsqrt",
        "mul",
        "mul",
    ]


def test_local_response_norm_and_normalize():
    n = 2 * 6 * 4 * 5
    assert cost_of(nn.LocalResponseNorm(3), (2, 6, 4, 5)) == Cost(0, (2 * 3 + 3) * n)
    assert fn_cost(lambda x: F.local_response_norm(x, 5), (2, 6, 4, 5)) == Cost(0, 13 * n)
    assert fn_cost(lambda x: F.normalize(x, dim=1), (2, 6, 4, 5)) == Cost(0, 3 * n)


@pytest.mark.parametrize(
    "cls, shape", [(nn.BatchNorm1d, (4, 3, 7)), (nn.BatchNorm3d, (1, 3, 2, 3, 5))]
)
def test_batch_norm_without_affine(cls, shape):
    n = 1
    for s in shape:
        n *= s
    m = cls(3, affine=False)
    assert cost_of(m.eval(), shape) == Cost(0, 2 * n)  # subtract mean, multiply by inv std
    assert cost_of(m.train(), shape) == Cost(0, 6 * n)  # statistics from the input
    untracked = cls(3, affine=False, track_running_stats=False).eval()
    assert cost_of(untracked, shape) == Cost(0, 6 * n)


def test_functional_batch_norm_weight_only():
    mean, var, w = torch.zeros(3), torch.ones(3), torch.ones(3)
    n = 2 * 3 * 4
    # eval, running stats, weight without bias: 2 + 1 per element
    assert fn_cost(lambda x: F.batch_norm(x, mean, var, w), (2, 3, 4)) == Cost(0, 3 * n)
    # training: statistics from the input, + 1 for the weight
    assert fn_cost(lambda x: F.batch_norm(x, None, None, w, training=True), (2, 3, 4)) == Cost(
        0, 7 * n
    )


@pytest.mark.parametrize(
    "pool, shape, flops",
    [
        (nn.LPPool1d(2, 3), (2, 3, 10), 2 * 3 * 3 * 3),  # out 3 per channel, kernel 3
        (nn.LPPool2d(3, (2, 3), stride=2), (1, 2, 7, 9), 2 * 3 * 4 * 6),  # out 3 x 4
        (nn.LPPool3d(2, 2), (1, 2, 4, 5, 6), 2 * 2 * 2 * 3 * 8),  # out 2 x 2 x 3
        # 7 -> 3: windows [0,3) [2,5) [4,7) = 9 reads
        (nn.AdaptiveAvgPool1d(3), (2, 4, 7), 2 * 4 * 9),
        # 10 -> 4: [0,3) [2,5) [5,8) [7,10) = 12; 5 -> 3: [0,2) [1,4) [3,5) = 7
        (nn.AdaptiveMaxPool2d((4, 3)), (1, 3, 10, 5), 3 * 12 * 7),
        # 5 -> 2: [0,3) [2,5) = 6; 7 -> 3: 9; 6 -> 4: [0,2) [1,3) [3,5) [4,6) = 8
        (nn.AdaptiveAvgPool3d((2, 3, 4)), (1, 2, 5, 7, 6), 2 * 6 * 9 * 8),
        (nn.AdaptiveMaxPool3d(1), (2, 2, 3, 4, 5), 2 * 2 * 60),  # global: numel(in)
        (nn.AdaptiveAvgPool2d((None, 2)), (1, 2, 5, 5), 2 * 5 * 6),  # None keeps 5: 5 * [0,3) [2,5)
    ],
)
def test_lp_and_adaptive_pools(pool, shape, flops):
    assert cost_of(pool, shape) == Cost(0, flops)


def test_functional_lp_and_adaptive_pools():
    assert fn_cost(lambda x: F.lp_pool2d(x, 2, 3), (1, 2, 7, 9)) == Cost(0, 2 * 2 * 3 * 9)
    assert fn_cost(lambda x: F.lp_pool1d(x, 2, 3), (2, 3, 10)) == Cost(0, 2 * 3 * 3 * 3)
    assert fn_cost(lambda x: F.adaptive_avg_pool1d(x, 3), (2, 4, 7)) == Cost(0, 2 * 4 * 9)
    got = fn_cost(lambda x: F.adaptive_max_pool2d(x, (4, 3), return_indices=True)[0], (1, 3, 10, 5))
    assert got == Cost(0, 3 * 12 * 7)
    assert fn_cost(lambda x: F.adaptive_avg_pool3d(x, (2, 3, 4)), (1, 2, 5, 7, 6)) == Cost(
        0, 2 * 6 * 9 * 8
    )


def test_embedding_is_free():
    tokens = torch.zeros(3, 7, dtype=torch.long)
    report = flopgraph.analyze(nn.Embedding(50, 8), tokens)
    assert report.flops == 0 and report.records[0].status is Status.FREE
    w = torch.randn(50, 8)
    report = flopgraph.analyze(Fn(lambda t: F.embedding(t, w)), tokens)
    assert report.flops == 0 and not report.skipped


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_2d_input(mode):
    bag = nn.EmbeddingBag(50, 8, mode=mode)
    tokens = torch.zeros(3, 7, dtype=torch.long)  # 3 bags of 7 rows of 8 values: 168 gathered
    gathered, out = 3 * 7 * 8, 3 * 8
    expected = gathered if mode == "mean" else gathered - out
    assert flopgraph.analyze(bag, tokens).cost == Cost(0, expected)


def test_embedding_bag_offsets_and_per_sample_weights():
    bag = nn.EmbeddingBag(50, 4, mode="sum")
    idx, offsets = torch.zeros(10, dtype=torch.long), torch.tensor([0, 3, 7])
    # 10 rows of 4 gathered = 40; 3 bags of 4 out: 40 - 12 adds
    assert flopgraph.analyze(bag, (idx, offsets)).cost == Cost(0, 28)
    # per_sample_weights: + one multiply per gathered value, positionally or by name
    weights = torch.ones(10)
    assert flopgraph.analyze(bag, (idx, offsets, weights)).cost == Cost(0, 28 + 40)
    report = flopgraph.analyze(bag, (idx, offsets), kwargs={"per_sample_weights": weights})
    assert report.cost == Cost(0, 28 + 40)
    w = torch.randn(50, 4)
    fn = Fn(lambda i, o: F.embedding_bag(i, w, o, mode="max"))
    assert flopgraph.analyze(fn, (idx, offsets)).cost == Cost(0, 28)


@pytest.mark.parametrize(
    "module", [nn.Dropout(0.2), nn.Dropout1d(0.1), nn.Dropout2d(0.3), nn.Dropout3d(),
               nn.AlphaDropout(0.1), nn.FeatureAlphaDropout(0.1)],
)  # fmt: skip
def test_dropout_modules_train_and_eval(module):
    shape = {nn.Dropout3d: (2, 3, 4, 5, 6), nn.Dropout1d: (2, 3, 4)}.get(type(module), (2, 3, 4, 5))
    n = 1
    for s in shape:
        n *= s
    assert cost_of(module.train(), shape) == Cost(0, n)
    assert cost_of(module.eval(), shape) == Cost(0, 0)


@pytest.mark.parametrize(
    "fn, counts",
    [
        (lambda x: F.dropout(x, 0.1), True),  # training=True by default
        (lambda x: F.dropout(x, 0.1, training=False), False),
        (lambda x: F.dropout(x, 0.1, False), False),
        (lambda x: F.dropout2d(x, 0.1, True), True),
        (lambda x: F.alpha_dropout(x, 0.1), False),  # training=False by default
        (lambda x: F.alpha_dropout(x, 0.1, training=True), True),
        (lambda x: F.feature_alpha_dropout(x, 0.1), False),
        (lambda x: torch.dropout(x, 0.1, True), True),
        (lambda x: torch.dropout(x, 0.1, train=False), False),
    ],
)
def test_dropout_functions(fn, counts):
    assert fn_cost(fn, (2, 3, 4, 5)) == Cost(0, 120 if counts else 0)


def test_operator_forms_count_like_functions():
    assert fn_cost(operator.truediv, (3, 4), (4,)) == Cost(0, 12)
    assert fn_cost(lambda x: x.__rsub__(1.0), (3, 4)) == Cost(0, 12)


def test_scatter_with_reduction_counts_one_per_source_element():
    idx = torch.zeros(2, 5, dtype=torch.long)
    # src [2, 5]: 10 values folded into the output
    assert fn_cost(lambda x, s: x.scatter_add(1, idx, s), (2, 7), (2, 5)) == Cost(0, 10)
    assert fn_cost(lambda x, s: x.scatter_reduce(1, idx, s, "amax"), (2, 7), (2, 5)) == Cost(0, 10)
    assert fn_cost(lambda x, s: torch.index_add(x, 0, torch.tensor([0, 1]), s), (4, 3), (2, 3)) == (
        Cost(0, 6)
    )
    # scatter without a reduction only moves data
    report = flopgraph.analyze(Fn(lambda x, s: x.scatter(1, idx, s)), ((2, 7), (2, 5)))
    assert report.flops == 0 and report.records[-1].status is Status.FREE
