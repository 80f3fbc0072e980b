"""Rules for ops found skipped on real models: each cost derived by hand from the spec's
principles (docs/conventions.md, "Choices beyond the spec"), on fx and on aten."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import Fn, RoI
from torch import nn

import flopgraph
from flopgraph import Cost


def _both(model, inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", flopgraph.SkippedOpWarning)  # nothing may be skipped
        return [flopgraph.analyze(model, inputs, frontend=fe) for fe in ("fx", "aten")]


def _cost(fn, *inputs):
    fx, at = _both(Fn(fn), tuple(inputs))
    assert fx.cost == at.cost
    return fx.cost


# grid_sample: interpolate's taps at each output point and channel; out [N, C, Ho, Wo]
GRID = torch.zeros(2, 4, 5, 2)  # N=2, Ho=4, Wo=5: out [2, 3, 4, 5] = 120 elements


@pytest.mark.parametrize("mode, taps", [("bilinear", 4), ("bicubic", 16), ("nearest", 0)])
def test_grid_sample_counts_taps_per_output_element(mode, taps):
    cost = _cost(lambda x, g: F.grid_sample(x, g, mode=mode, align_corners=False),
                 torch.rand(2, 3, 8, 8), GRID)  # fmt: skip
    assert cost == Cost(taps * 120, 2 * taps * 120)  # 480 / 1_920 / 0 macs


def test_grid_sample_3d_is_trilinear():
    # out [1, 2, 2, 3, 5] = 60 elements, 8 taps: 480 macs
    cost = _cost(lambda x, g: F.grid_sample(x, g, align_corners=True),
                 torch.rand(1, 2, 4, 4, 4), torch.zeros(1, 2, 3, 5, 3))  # fmt: skip
    assert cost == Cost(480, 960)


def test_affine_grid_is_a_matmul_of_the_base_grid_by_theta():
    # base grid [N, H*W, 3] @ theta^T [N, 3, 2]: M*N*K = (2 * 4*5) * 2 * 3 = 240 macs
    cost = _cost(lambda t: F.affine_grid(t, [2, 3, 4, 5], align_corners=False),
                 torch.rand(2, 2, 3))  # fmt: skip
    assert cost == Cost(240, 480)
    # 3-D: [N, D*H*W, 4] @ [N, 4, 3]: (1 * 2*3*4) * 3 * 4 = 288 macs
    cost = _cost(lambda t: F.affine_grid(t, [1, 1, 2, 3, 4], align_corners=False),
                 torch.rand(1, 3, 4))  # fmt: skip
    assert cost == Cost(288, 576)


def test_weight_norm_function():
    # v [4, 3, 2] (24 elements), g [4, 1, 1]: norm 2 * 24 + 4 sqrt, 4 divides g / norm,
    # 24 multiplies: 3 * 24 + 2 * 4 = 80
    assert _cost(lambda v, g: torch._weight_norm(v, g, 0), torch.rand(4, 3, 2),
                 torch.rand(4, 1, 1)) == Cost(0, 80)  # fmt: skip


@pytest.mark.parametrize("reduce, extra", [("sum", 0), ("prod", 0), ("amax", 0), ("amin", 0),
                                           ("mean", 10)])  # fmt: skip
def test_scatter_reduce(reduce, extra):
    # src [2, 3]: one op per source element (6); mean divides out [2, 5] by the counts (10)
    index = torch.zeros(2, 3, dtype=torch.long)
    cost = _cost(lambda x, s: x.scatter_reduce(1, index, s, reduce), torch.rand(2, 5),
                 torch.rand(2, 3))  # fmt: skip
    assert cost == Cost(0, 6 + extra)


def test_scatter_add_and_index_add():
    index = torch.zeros(2, 3, dtype=torch.long)
    assert _cost(lambda x, s: torch.scatter_add(x, 1, index, s), torch.rand(2, 5),
                 torch.rand(2, 3)) == Cost(0, 6)  # fmt: skip
    rows = torch.tensor([0, 1, 0])
    # source [3, 5]: 15 adds; alpha = 2 scales each source element first: 30
    assert _cost(lambda x, s: x.index_add(0, rows, s), torch.rand(4, 5),
                 torch.rand(3, 5)) == Cost(0, 15)  # fmt: skip
    assert _cost(lambda x, s: x.index_add(0, rows, s, alpha=2.0), torch.rand(4, 5),
                 torch.rand(3, 5)) == Cost(0, 30)  # fmt: skip


# FFT: 5 * N * log2(N) per complex transform of length N; real signals half
def test_fft_complex_and_real():
    x = torch.rand(3, 8)
    # complex: 3 transforms of N = 8: 3 * 5 * 8 * 3 = 360
    assert _cost(lambda x: torch.fft.fft(x.to(torch.complex64)), x) == Cost(0, 360)
    # real input: half, 180
    assert _cost(torch.fft.fft, x) == Cost(0, 180)
    # rfft padded to n = 16: 3 * 5 * 16 * 4 / 2 = 480
    assert _cost(lambda x: torch.fft.rfft(x, n=16), x) == Cost(0, 480)
    # irfft back to N = 8 (real output [3, 8]): 180, + 24 for the 1/n scaling of the
    # inverse ("backward" norm); with the rfft before it: 180 + 204 = 384
    assert _cost(lambda x: torch.fft.irfft(torch.fft.rfft(x)), x) == Cost(0, 384)


def test_fft_several_dims_and_norms():
    x = torch.rand(2, 4, 8)
    # fftn over all dims of a real [2, 4, 8]: 5 * 64 * (1 + 2 + 3) / 2 = 960
    assert _cost(torch.fft.fftn, x) == Cost(0, 960)
    # fft2 over (4, 8), "ortho" scales the 64 outputs: 5 * 64 * (2 + 3) / 2 + 64 = 864
    assert _cost(lambda x: torch.fft.fft2(x, norm="ortho"), x) == Cost(0, 864)
    # a length that is not a power of two counts ceil(log2 N) stages: N = 6 -> 3;
    # complex [2, 6]: 2 * 5 * 6 * 3 = 180
    assert _cost(lambda x: torch.fft.fft(x.to(torch.complex64)), torch.rand(2, 6)) == Cost(0, 180)


def test_fft_aten_ops_called_directly():
    # torch.ops.aten._fft_c2c(x, dim, normalization, forward): the same rule on fx
    # (the op's own rule) and aten: 3 * 5 * 8 * 3 = 360; normalization 2 adds 24
    x = torch.rand(3, 8, dtype=torch.complex64)
    assert _cost(lambda x: torch.ops.aten._fft_c2c(x, [1], 0, True), x) == Cost(0, 360)
    assert _cost(lambda x: torch.ops.aten._fft_c2c(x, [1], 2, False), x) == Cost(0, 384)


def test_multi_head_attention_forward_called_directly():
    # open_clip's attention pool calls F.multi_head_attention_forward itself. L = S = 5,
    # N = 2, E = 8, 2 heads of 4: in-projection 3 * 10 * 8 * 8 = 1_920, core
    # 2 * (2 * 2) * 5 * 5 * 4 = 800, out-projection 10 * 8 * 8 = 640: 3_360 macs;
    # flops 2 * 3_360 + biases 3 * 80 + 80 + scale and softmax (2 * 2) * 5 * 5 * 6 = 600
    w, b, wo, bo = torch.rand(24, 8), torch.rand(24), torch.rand(8, 8), torch.rand(8)

    def pool(q):
        return F.multi_head_attention_forward(
            q, q, q, 8, 2, w, b, None, None, False, 0.0, wo, bo, training=False, need_weights=False
        )[0]

    assert _cost(pool, torch.rand(5, 2, 8)) == Cost(3_360, 6_720 + 320 + 600)


def test_fft_shift_and_frequencies_are_free():
    x = torch.rand(2, 8)
    assert _cost(lambda x: torch.fft.fftshift(x) + 0, x) == Cost(0, 16)  # only the add


# --- torch._grouped_mm: the expert products of a mixture-of-experts layer ------------------


class _Grouped(torch.nn.Module):
    def __init__(self, weight_shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(weight_shape, dtype=torch.bfloat16))

    def forward(self, x, offs=None):
        return torch._grouped_mm(x, self.w, offs=offs)


@pytest.mark.parametrize("frontend", ["auto", "aten"])
def test_grouped_mm_counts_every_routed_row_once(frontend):
    # 6 routed rows of width K = 8 meet 3 experts' [8, 8] matrices, split by the offsets:
    # each row is one [1, 8] x [8, 8] product whichever expert took it: 6 * 8 * 8 = 384
    # (the kernel wants rows of 16 bytes: K = 8 in bfloat16)
    x = flopgraph.TensorSpec((6, 8), torch.bfloat16)
    offs = flopgraph.TensorSpec((3,), torch.int32)
    offs2 = flopgraph.TensorSpec((2,), torch.int32)
    report = flopgraph.analyze(_Grouped((3, 8, 8)), (x, offs), frontend=frontend)
    assert report.cost == Cost(6 * 8 * 8, 2 * 6 * 8 * 8) and not report.skipped
    # a batch of 3 products [2, 8] x [8, 8]: 3 * 2 * 8 * 8 = 384 as well
    batched = flopgraph.TensorSpec((3, 2, 8), torch.bfloat16)
    report = flopgraph.analyze(_Grouped((3, 8, 8)), (batched,), frontend=frontend)
    assert report.cost == Cost(3 * 2 * 8 * 8, 2 * 3 * 2 * 8 * 8)
    # two 2-D operands with offsets over K: 2 groups of K = 8 each give a [4, 8] output,
    # [2, 4, 8] in all; together they contract the whole K = 16 once: 4 * 8 * 16 = 512
    split = flopgraph.TensorSpec((4, 16), torch.bfloat16)
    report = flopgraph.analyze(_Grouped((16, 8)), (split, offs2), frontend=frontend)
    assert report.cost == Cost(4 * 8 * 16, 2 * 4 * 8 * 16)


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_histc_adds_one_per_input_element(frontend):
    # 2 x 5 values into 4 bins: each value adds 1 to its bin's count: 10 adds
    model = Fn(lambda x: torch.histc(x, bins=4, min=0, max=1))
    assert flopgraph.analyze(model, (2, 5), frontend=frontend).cost == Cost(0, 2 * 5)


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_sdpa_on_three_dim_operands(frontend):
    # q [2, 5, 4], k [2, 7, 4], v [2, 7, 6]: B = 2, L = 5, S = 7, E = 4, Ev = 6
    # macs = B*L*S*E + B*L*S*Ev = 280 + 420 = 700; flops = 2 * 700 + 6 per score * 70
    model = Fn(F.scaled_dot_product_attention)
    report = flopgraph.analyze(model, ((2, 5, 4), (2, 7, 4), (2, 7, 6)), frontend=frontend)
    assert report.cost == Cost(700, 2 * 700 + (1 + 5) * 2 * 5 * 7)


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_multihead_attention_batch_and_heads_apart(frontend):
    # batch 3, 2 heads of 4 (embed 8), 4 tokens, biases on, weights averaged (defaults)
    # each projection: 12 rows x 8 x 8 = 768 MACs, 2 * 768 + 12 * 8 bias = 1,632 FLOPs
    # core: B = 3 * 2 = 6, L = S = 4, E = Ev = 4: scores 96, macs 96 * 4 * 2 = 768,
    #       flops 2 * 768 + 6 per score * 96 = 2,112; averaged weights: mean over 96
    report = flopgraph.analyze(_SelfAttention(), ((3, 4, 8),), frontend=frontend)
    assert report.cost == Cost(4 * 768 + 768, 4 * 1632 + 2112 + 96)


class _SelfAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x)[0]


# --- raw aten ops, called directly: the aten rules behind decomposed calls ----------------

aten = torch.ops.aten


class _AtenConv(torch.nn.Module):
    def __init__(self, transposed: bool, bias: bool):
        super().__init__()
        shape = (2, 3, 3, 3) if transposed else (3, 2, 3, 3)  # transposed: [Cin, Cout, k, k]
        self.w = torch.nn.Parameter(torch.zeros(shape))
        self.b = torch.nn.Parameter(torch.zeros(3)) if bias else None
        self.transposed = transposed

    def forward(self, x):
        return aten.convolution(x, self.w, self.b, [1, 1], [0, 0], [1, 1], self.transposed,
                                [0, 0], 1)  # fmt: skip


@pytest.mark.parametrize(
    "transposed, bias, shape, expected",
    [
        # [1, 2, 5, 5] * [3, 2, 3, 3] -> [1, 3, 3, 3]: N*Cout*prod(S_out)*Cin*k*k = 486
        (False, True, (1, 2, 5, 5), Cost(486, 2 * 486 + 27)),
        (False, False, (1, 2, 5, 5), Cost(486, 2 * 486)),
        # transposed [1, 2, 3, 3] -> [1, 3, 5, 5]: N*Cin*prod(S_in)*Cout*k*k = 2*9*3*9 = 486
        (True, True, (1, 2, 3, 3), Cost(486, 2 * 486 + 75)),
    ],
)
def test_aten_convolution_called_directly(transposed, bias, shape, expected):
    report = flopgraph.analyze(_AtenConv(transposed, bias), shape, frontend="aten")
    assert report.cost == expected


class _AtenBatchNorm(torch.nn.Module):
    def __init__(self, training: bool, stats: bool, weight: bool, bias: bool):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3)) if weight else None
        self.b = torch.nn.Parameter(torch.zeros(3)) if bias else None
        self.register_buffer("rm", torch.zeros(3))
        self.register_buffer("rv", torch.ones(3))
        self.training_flag, self.stats = training, stats

    def forward(self, x):
        if not self.stats:  # the .no_stats overload: statistics from the input
            return aten._native_batch_norm_legit.no_stats(x, self.w, self.b, True, 0.1, 1e-5)[0]
        rm, rv = self.rm.clone(), self.rv.clone()
        return aten.native_batch_norm(x, self.w, self.b, rm, rv, self.training_flag, 0.1, 1e-5)[0]


@pytest.mark.parametrize(
    "training, stats, weight, bias, per_element",
    [
        (False, True, True, True, 2 + 2),  # running statistics: subtract, scale; + affine 2
        (False, True, False, False, 2),
        (True, True, True, True, 6 + 2),  # statistics from the input: 6; + affine 2
        (False, False, True, True, 6 + 2),  # no running statistics at all: from the input
        (False, False, False, True, 6 + 1),  # only a bias: + 1
    ],
)
def test_aten_batch_norm_called_directly(training, stats, weight, bias, per_element):
    # x [2, 3, 4, 4]: 96 elements
    model = _AtenBatchNorm(training, stats, weight, bias)
    report = flopgraph.analyze(model, (2, 3, 4, 4), frontend="aten")
    assert report.cost == Cost(0, per_element * 96)


def test_aten_in_place_form_is_counted():
    # aten.mul_ called directly: 1 flop per element of [2, 3]
    model = Fn(lambda x, y: aten.mul_(x.clone(), y))
    assert flopgraph.analyze(model, ((2, 3), (2, 3)), frontend="aten").cost == Cost(0, 6)


class _FunctionalAttention(torch.nn.Module):
    """F.multi_head_attention_forward called directly, with a key padding mask only."""

    def __init__(self):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(8, 2)

    def forward(self, x, pad):
        m = self.mha
        return F.multi_head_attention_forward(
            x, x, x, 8, 2, m.in_proj_weight, m.in_proj_bias, None, None, False, 0.0,
            m.out_proj.weight, m.out_proj.bias, training=False, key_padding_mask=pad,
        )[0]  # fmt: skip


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_functional_attention_with_only_a_key_padding_mask_is_masked(frontend):
    # as test_multihead_attention_batch_and_heads_apart (L = 4, N = 3, 2 heads of 4), plus
    # the masking add on each of the 96 scores: 8,736 + 96
    pad = flopgraph.TensorSpec((3, 4), torch.bool)
    report = flopgraph.analyze(_FunctionalAttention(), ((4, 3, 8), pad), frontend=frontend)
    assert report.cost == Cost(4 * 768 + 768, 4 * 1632 + 2112 + 96 + 96)


class _ZeroAttention(_FunctionalAttention):
    def forward(self, x):
        m = self.mha
        return F.multi_head_attention_forward(
            x, x, x, 8, 2, m.in_proj_weight, m.in_proj_bias, None, None, True, 0.0,
            m.out_proj.weight, m.out_proj.bias, training=False,
        )[0]  # fmt: skip


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_functional_attention_with_a_zero_key_added(frontend):
    # add_zero_attn appends one zero key after the projections: S' = 4 + 1 = 5
    # projections as before: 4 x 768 MACs, 4 x 1,632 FLOPs (k and v project 4 rows)
    # core: B = 6, L = 4, S' = 5, E = Ev = 4: 120 scores, 120 * 8 = 960 MACs,
    #       2 * 960 + 6 per score * 120 = 2,640; averaged weights: mean over 120
    report = flopgraph.analyze(_ZeroAttention(), ((4, 3, 8),), frontend=frontend)
    assert report.cost == Cost(4 * 768 + 960, 4 * 1632 + 2640 + 120)


# --- recurrent kernels called from code with no module rule (a subclass's own forward) ---


def _own_forward(cls):
    class Own(cls):
        def forward(self, x):  # its own forward: no module rule, aten sees torch.lstm etc.
            out = super().forward(x)
            return out[0] if isinstance(out, tuple) else out

    return Own


@pytest.mark.parametrize(
    "make, expected",
    [
        # per step and batch row, I = 4, H = 3: macs G*H*(I+H); flops 2*macs + G*H + 2*G*H
        # (biases) + cell (LSTM 9H, GRU 8H, RNN H); x [2, 5, 4]: 2 steps x 5 rows = 10
        (lambda: _own_forward(torch.nn.LSTM)(4, 3), Cost(10 * 84, 10 * (168 + 12 + 24 + 27))),
        (lambda: _own_forward(torch.nn.GRU)(4, 3), Cost(10 * 63, 10 * (126 + 9 + 18 + 24))),
        (lambda: _own_forward(torch.nn.RNN)(4, 3), Cost(10 * 21, 10 * (42 + 3 + 6 + 3))),
        # 2 layers, both directions: layer 1 (I = 4) 84 MACs / 231 FLOPs per direction,
        # layer 2 (I = 2H = 6) 4*3*9 = 108 MACs / 216 + 12 + 24 + 27 = 279 FLOPs
        (lambda: _own_forward(torch.nn.LSTM)(4, 3, num_layers=2, bidirectional=True),
         Cost(10 * 2 * (84 + 108), 10 * 2 * (231 + 279))),
        # proj_size P = 2: G*H*(I+P) + H*P = 4*3*6 + 6 = 78 MACs; 156 + 12 + 24 + 27 FLOPs
        (lambda: _own_forward(torch.nn.LSTM)(4, 3, proj_size=2),
         Cost(10 * 78, 10 * (156 + 12 + 24 + 27))),
        # no biases: 2*84 + 12 + 27 = 207 FLOPs per step and row
        (lambda: _own_forward(torch.nn.LSTM)(4, 3, bias=False), Cost(10 * 84, 10 * 207)),
        # 2 layers, both directions, P = 2: layer 2's input is 2 * P = 4 = I, so each of the
        # 4 (layer, direction) pairs costs 78 MACs / 219 FLOPs per step and row
        (lambda: _own_forward(torch.nn.LSTM)(4, 3, num_layers=2, bidirectional=True,
                                             proj_size=2),
         Cost(10 * 4 * 78, 10 * 4 * 219)),
    ],
)  # fmt: skip
def test_recurrent_kernel_called_from_a_subclass_forward(make, expected):
    report = flopgraph.analyze(make(), (2, 5, 4), frontend="aten")
    assert report.cost == expected and not report.skipped


@pytest.mark.parametrize(
    "cls, expected",
    [
        (torch.nn.LSTMCell, Cost(5 * 84, 5 * 231)),  # x [5, 4]: 5 rows, one step
        (torch.nn.GRUCell, Cost(5 * 63, 5 * 177)),
        (torch.nn.RNNCell, Cost(5 * 21, 5 * 54)),
    ],
)
def test_recurrent_cell_called_from_a_subclass_forward(cls, expected):
    report = flopgraph.analyze(_own_forward(cls)(4, 3), (5, 4), frontend="aten")
    assert report.cost == expected and not report.skipped


class _AtenNorms(torch.nn.Module):
    """Raw aten normalization and interpolation kernels, as a decomposition reaches them."""

    def __init__(self, op: str, weight: bool, bias: bool):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4)) if weight else None
        self.b = torch.nn.Parameter(torch.zeros(4)) if bias else None
        self.register_buffer("rm", torch.zeros(4))
        self.register_buffer("rv", torch.ones(4))
        self.op = op

    def forward(self, x):  # x [2, 4, 3, 3]: 72 elements
        if self.op == "eval_bn":
            return aten._native_batch_norm_legit_no_training(
                x, self.w, self.b, self.rm, self.rv, 0.1, 1e-5)[0]  # fmt: skip
        if self.op == "group_norm":
            return aten.native_group_norm(x, self.w, self.b, 2, 4, 9, 2, 1e-5)[0]
        return aten.upsample_bilinear2d(x, [6, 6], False)  # out [2, 4, 6, 6]: 288


@pytest.mark.parametrize(
    "op, weight, bias, expected",
    [
        ("eval_bn", True, True, Cost(0, (2 + 2) * 72)),  # running stats 2, affine 2
        ("eval_bn", False, False, Cost(0, 2 * 72)),
        ("group_norm", True, True, Cost(0, (6 + 2) * 72)),  # statistics 6, affine 2
        ("group_norm", True, False, Cost(0, (6 + 1) * 72)),  # weight only: + 1
        ("group_norm", False, False, Cost(0, 6 * 72)),
        ("upsample", False, False, Cost(4 * 288, 2 * 4 * 288)),  # bilinear: 4 taps
    ],
)
def test_aten_norm_and_interpolation_called_directly(op, weight, bias, expected):
    report = flopgraph.analyze(_AtenNorms(op, weight, bias), (2, 4, 3, 3), frontend="aten")
    assert report.cost == expected and not report.skipped


class _BiasKeyAttention(_FunctionalAttention):
    def forward(self, x):
        m = self.mha
        bias_kv = torch.zeros(1, 1, 8)
        return F.multi_head_attention_forward(
            x, x, x, 8, 2, m.in_proj_weight, m.in_proj_bias, bias_kv, bias_kv, False, 0.0,
            m.out_proj.weight, m.out_proj.bias, training=False,
        )[0]  # fmt: skip


class _DropoutAttention(_FunctionalAttention):
    def __init__(self, p: float = 0.5, train: bool = True):
        super().__init__()
        self.p, self.train_flag = p, train

    def forward(self, x):
        m = self.mha
        return F.multi_head_attention_forward(
            x, x, x, 8, 2, m.in_proj_weight, m.in_proj_bias, None, None, False, self.p,
            m.out_proj.weight, m.out_proj.bias, training=self.train_flag,
        )[0]  # fmt: skip


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_functional_attention_with_bias_keys_and_with_dropout(frontend):
    # bias_k / bias_v append one key after the projections, as add_zero_attn does: S' = 5
    report = flopgraph.analyze(_BiasKeyAttention(), ((4, 3, 8),), frontend=frontend)
    assert report.cost == Cost(4 * 768 + 960, 4 * 1632 + 2640 + 120)
    # dropout on the weights in training: + 1 multiply per score (96), else as with no mask
    report = flopgraph.analyze(_DropoutAttention(), ((4, 3, 8),), frontend=frontend)
    assert report.cost == Cost(4 * 768 + 768, 4 * 1632 + 2112 + 96 + 96)
    # no dropout multiply with p = 0 in training, nor with p > 0 outside training
    for p, train in ((0.0, True), (0.5, False)):
        report = flopgraph.analyze(_DropoutAttention(p, train), ((4, 3, 8),), frontend=frontend)
        assert report.cost == Cost(4 * 768 + 768, 4 * 1632 + 2112 + 96)


def test_batch_norm_eval_formula_with_and_without_affine():
    # spec D: running statistics 2 per element (subtract, scale), + 2 when affine;
    # the handlers pass affine=False and add the weight and bias terms themselves
    from flopgraph import formulas

    assert formulas.batch_norm_eval((2, 3, 4), True) == Cost(0, (2 + 2) * 24)
    assert formulas.batch_norm_eval((2, 3, 4), False) == Cost(0, 2 * 24)


def test_baddbmm_with_operands_by_name_on_both_frontends():
    # Bloom: alibi.baddbmm(batch1=q, batch2=k, beta=..., alpha=...): B*M*N*K MACs,
    # 2 per MAC, plus the add of the input (numel(out))
    class Alibi(torch.nn.Module):
        def forward(self, bias, q, k):
            return bias.baddbmm(batch1=q, batch2=k, beta=1.0, alpha=0.5)

    bias, q, k = torch.randn(4, 1, 16), torch.randn(4, 16, 8), torch.randn(4, 8, 16)
    for frontend in ("fx", "aten"):
        r = flopgraph.analyze(Alibi(), (bias, q, k), frontend=frontend)
        assert (r.macs, r.flops) == (4 * 16 * 16 * 8, 2 * 4 * 16 * 16 * 8 + 4 * 16 * 16)


# --- survivors of the complete mutation run (2026-11-27): one test per unguarded branch ----

# fft.py: the default dim, s with dim=None, s entries of -1, "forward" norm, aten r2c / c2r


def test_fft_default_dim_is_the_last_of_three():
    # complex [2, 4, 8], no dim: the last (N = 8): 2 * 4 lines * 5 * 8 * 3 = 960
    x = torch.rand(2, 4, 8)
    assert _cost(lambda x: torch.fft.fft(x.to(torch.complex64)), x) == Cost(0, 960)


def test_fftn_with_sizes_transforms_the_last_dims():
    # fftn(s=(4, 16)) on a real [2, 4, 8], dim None: the last two dims, padded to 4 x 16:
    # signal [2, 4, 16] (128), 5 * 128 * (log2 4 + log2 16) / 2 = 5 * 128 * 6 / 2 = 1_920
    assert _cost(lambda x: torch.fft.fftn(x, s=(4, 16)), torch.rand(2, 4, 8)) == Cost(0, 1_920)


def test_rfft2_with_sizes_uses_the_given_length_of_the_last_dim():
    x = torch.rand(2, 4, 8)
    # s = (3, 16): the signal is [2, 3, 16] (96 elements), lengths 3 (2 stages) and 16 (4):
    # 5 * 96 * 6 / 2 = 1_440
    assert _cost(lambda x: torch.fft.rfft2(x, s=(3, 16)), x) == Cost(0, 1_440)
    # s = (4, 1): a length of 1 is 1 (0 stages), not the input's own 8:
    # signal [2, 4, 1] (8), 5 * 8 * (2 + 0) / 2 = 40
    assert _cost(lambda x: torch.fft.rfft2(x, s=(4, 1)), x) == Cost(0, 40)
    # s = (4, -1): -1 keeps the input's own length 8: 5 * 64 * (2 + 3) / 2 = 800
    assert _cost(lambda x: torch.fft.rfft2(x, s=(4, -1)), x) == Cost(0, 800)


def test_fft_forward_norm_scales_the_forward_transform_only():
    # complex [3, 8]: 360; norm="forward" scales the forward transform's 24 outputs by 1/n,
    # and leaves the inverse unscaled
    x = torch.rand(3, 8)
    fwd = _cost(lambda x: torch.fft.fft(x.to(torch.complex64), norm="forward"), x)
    assert fwd == Cost(0, 360 + 24)
    inv = _cost(lambda x: torch.fft.ifft(x.to(torch.complex64), norm="forward"), x)
    assert inv == Cost(0, 360)


def test_fft_aten_r2c_and_c2r_called_directly():
    # _fft_r2c(x, dim, normalization, onesided) on a real [3, 8]: the real signal is the
    # input: 3 * 5 * 8 * 3 / 2 = 180 (out [3, 5], no normalization)
    x = torch.rand(3, 8)
    assert _cost(lambda x: torch.ops.aten._fft_r2c(x, [1], 0, True), x) == Cost(0, 180)
    # _fft_c2r(z, dim, normalization, last_dim_size) on complex [3, 5] to a real [3, 8]:
    # the real signal is the output: 180; normalization 2 scales its 24 elements: 204
    z = torch.rand(3, 5, dtype=torch.complex64)
    assert _cost(lambda z: torch.ops.aten._fft_c2r(z, [1], 2, 8), z) == Cost(0, 180 + 24)


# sampling.py: grid_sampler (the aten-level function, interpolation mode as an integer)


@pytest.mark.parametrize(
    "x, grid, mode, taps",
    [
        ((2, 3, 8, 8), GRID, 0, 4),  # 2-D, mode 0 bilinear: 4 taps; out [2, 3, 4, 5] = 120
        ((2, 3, 8, 8), GRID, 2, 16),  # mode 2 bicubic: 16 taps
        ((2, 3, 8, 8), GRID, 1, 0),  # mode 1 nearest: 0
        # 3-D, mode 0 is trilinear (8 taps): out [1, 5, 2, 3, 2] = 60
        ((1, 5, 4, 4, 4), torch.zeros(1, 2, 3, 2, 3), 0, 8),
    ],
)
def test_grid_sampler_called_directly(x, grid, mode, taps):
    out = 120 if len(x) == 4 else 60
    cost = _cost(lambda x, g: torch.grid_sampler(x, g, mode, 0, False), torch.rand(x), grid)
    assert cost == Cost(taps * out, 2 * taps * out)


# misc.py: upsample_bilinear's own rule. F.upsample_bilinear reaches neither frontend as
# itself (it calls F.interpolate, which both record), so the rule is checked directly


def test_upsample_bilinear_rule():
    from flopgraph.handlers.context import OpContext
    from flopgraph.handlers.misc import upsample_bilinear
    from flopgraph.records import TensorMeta

    # out [1, 2, 6, 6] = 72 elements, 4 taps: 288 MACs
    ctx = OpContext("call_function", (TensorMeta((1, 2, 3, 3)),), {"scale_factor": 2},
                    TensorMeta((1, 2, 6, 6)))  # fmt: skip
    assert upsample_bilinear(ctx) == Cost(288, 576)


# norms.py: F.batch_norm in training with running statistics given: from the input


def test_functional_batch_norm_in_training_with_running_stats():
    # x [2, 3, 4] (24 elements): statistics from the input, 6 per element, no affine
    cost = _cost(lambda x: F.batch_norm(x, torch.zeros(3), torch.ones(3), training=True),
                 torch.rand(2, 3, 4))  # fmt: skip
    assert cost == Cost(0, 6 * 24)


# attention.py: nn.MultiheadAttention with only a key padding mask


class _PaddedSelfAttention(_SelfAttention):
    def forward(self, x, pad):
        return self.mha(x, x, x, key_padding_mask=pad)[0]


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_multihead_attention_module_with_only_a_key_padding_mask(frontend):
    # as test_multihead_attention_batch_and_heads_apart, plus the masking add on each of
    # the 96 scores
    pad = flopgraph.TensorSpec((3, 4), torch.bool)
    report = flopgraph.analyze(_PaddedSelfAttention(), ((3, 4, 8), pad), frontend=frontend)
    assert report.cost == Cost(4 * 768 + 768, 4 * 1632 + 2112 + 96 + 96)


# contractions.py: einsum's contraction order with 3 operands (opt_einsum's path when it is
# installed and enabled). opt_einsum is optional, so a stand-in gives its path here


class _FakeOptEinsum:
    def __init__(self, available: bool, enabled: bool):
        self.enabled, self.strategy, self._available = enabled, "auto", available

    def is_available(self) -> bool:
        return self._available

    def get_opt_einsum(self):
        class Oe:  # contract b and c first: (bc, cd) -> bd, then (ab, bd) -> ad
            @staticmethod
            def contract_path(*args, **kwargs):
                return [(1, 2), (0, 1)], None

        return Oe


@pytest.mark.parametrize(
    "available, enabled, macs",
    [
        # ab,bc,cd->ad with a 2, b 3, c 4, d 5. opt_einsum's path: bc.cd over b, c, d (60)
        # then ab.bd over a, b, d (30) = 90 MACs
        (True, True, 90),
        # torch's own left-to-right order: ab.bc over a, b, c (24), ac.cd over a, c, d (40)
        (True, False, 64),  # installed but disabled
        (False, False, 64),  # not installed (then torch reports it disabled)
    ],
)
def test_einsum_three_operands_follow_opt_einsum_when_enabled(monkeypatch, available, enabled,
                                                              macs):  # fmt: skip
    # fx only: the stand-in replaces what the rule reads (torch.einsum keeps the real one)
    monkeypatch.setattr(torch.backends, "opt_einsum", _FakeOptEinsum(available, enabled))
    model = Fn(lambda a, b, c: torch.einsum("ab,bc,cd->ad", a, b, c))
    report = flopgraph.analyze(model, ((2, 3), (3, 4), (4, 5)), frontend="fx")
    assert report.cost == Cost(macs, 2 * macs)


# transformer.py: a mask given, dropout p = 0 in training, RMSNorm as the final norm, the
# decoder stack, a custom encoder
#
# TransformerEncoderLayer(8, 2, 16) on src [4, 2, 8] (8 rows of 8; 2 heads of 4, B = 4):
#   attention: q, k, v projections 3 * 8 * 8 * 8 = 1_536 MACs, 2 * 1_536 + 3 * 64 biases
#   = 3_264; core: 64 scores, 64 * 4 * 2 = 512 MACs, 1_024 + 64 * (1 scale + 5 softmax)
#   = 1_408; out projection 512 MACs, 1_024 + 64 = 1_088: 2_560 MACs, 5_760 FLOPs
#   feed-forward: 8 * 8 * 16 * 2 = 2_048 MACs; 4_096 + 128 bias + 128 relu + 64 bias
#   + 2 * 64 residual adds + 2 LayerNorms 8 * 64 = 5_568 FLOPs
ENC_LAYER = Cost(2_560 + 2_048, 5_760 + 5_568)  # 4_608 MACs, 11_328 FLOPs


class _MaskedEncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16).eval()

    def forward(self, x, mask):
        return self.layer(x, src_mask=mask)


def test_encoder_layer_with_a_mask_adds_the_masking_add():
    # a float mask [4, 4]: one add on each of the 64 scores
    mask = flopgraph.TensorSpec((4, 4))
    for report in _both(_MaskedEncoderLayer(), ((4, 2, 8), mask)):
        assert report.cost == ENC_LAYER + Cost(0, 64)


def test_encoder_layer_training_with_dropout_zero_counts_no_dropout():
    # p = 0 everywhere: every dropout is the identity, as in eval
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0).train()
    for report in _both(layer, ((4, 2, 8),)):
        assert report.cost == ENC_LAYER


@pytest.mark.parametrize("affine, per_element", [(True, 3 + 1), (False, 3)])
def test_encoder_with_a_final_rms_norm(affine, per_element):
    # one layer, then RMSNorm(8) on the 64 elements: 3 per element, + 1 with a weight
    norm = nn.RMSNorm(8, elementwise_affine=affine)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 1, norm=norm,
                                enable_nested_tensor=False).eval()  # fmt: skip
    for report in _both(enc, ((4, 2, 8),)):
        assert report.cost == ENC_LAYER + Cost(0, per_element * 64)


def test_decoder_stack():
    # TransformerDecoder(one TransformerDecoderLayer(8, 2, 16)), no final norm;
    # tgt [3, 2, 8] (6 rows), memory [4, 2, 8] (8 rows)
    #   self attention L = S = 3: projections 3 * 6 * 64 = 1_152 MACs, 2_304 + 144;
    #     core 36 scores, 288 MACs, 576 + 6 * 36; out 384 MACs, 768 + 48:
    #     1_824 MACs, 2_448 + 792 + 816 = 4_056 FLOPs
    #   cross attention L = 3, S = 4: q 384, k and v 2 * 512, core 48 scores * 8 = 384,
    #     out 384: 2_176 MACs; 4_352 + 48 + 128 + 6 * 48 + 48 = 4_864 FLOPs
    #   feed-forward on 6 rows: 1_536 MACs; 3_072 + 96 + 96 + 48 + 3 * 48 residual adds
    #     + 3 LayerNorms 8 * 48 = 4_608 FLOPs
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 1).eval()
    for report in _both(dec, ((3, 2, 8), (4, 2, 8))):
        assert report.cost == Cost(1_824 + 2_176 + 1_536, 4_056 + 4_864 + 4_608)


class _PassEncoder(nn.Module):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        return src


def test_transformer_with_a_custom_encoder_is_refused_on_fx():
    model = nn.Transformer(8, 2, 1, 1, 16, custom_encoder=_PassEncoder()).eval()
    with pytest.raises(flopgraph.FlopgraphError, match="custom encoder or decoder"):
        flopgraph.analyze(model, ((4, 2, 8), (3, 2, 8)), frontend="fx")


# torchvision_ops.py: swin windows (padding, non-square windows, a batch, the shift dropped
# along a dim the window covers, cosine attention), dropout p = 0, RoIAlign's sampling
# ratio, MultiScaleRoIAlign. fx only for swin: fx keeps shifted_window_attention whole


def _swin(x, window, shift, train=False, p=0.0, v2=False):
    from torchvision.models import swin_transformer as swin

    cls = swin.ShiftedWindowAttentionV2 if v2 else swin.ShiftedWindowAttention
    model = cls(8, window, shift, 2, attention_dropout=p, dropout=p).train(train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", flopgraph.SkippedOpWarning)
        return flopgraph.analyze(model, (x,), frontend="fx").cost


@pytest.mark.parametrize(
    "x, expected",
    [
        # x [2, 5, 5, 8], 2 x 3 windows, shift [1, 1], 2 heads of 4: padded to 6 x 6,
        # (6 / 2) * (6 / 3) = 6 windows of 6 tokens per image, 2 images: 12 windows,
        # rows 12 * 6 = 72 of 8 (576 elements), scores [12, 2, 6, 6] = 864.
        # qkv 72 * 8 * 24 = 13_824 MACs, 27_648 + 72 * 24 bias = 29_376; q scaling 576;
        # q @ k^T 864 * 4 = 3_456 MACs, 6_912; + bias table 864; shifted: the region mask
        # 6 * 6 * 6 = 216 subtracts and its add 864; softmax 5 * 864 = 4_320;
        # attn @ v 3_456 MACs, 6_912; proj 72 * 8 * 8 = 4_608 MACs, 9_216 + 576 = 9_792
        ((2, 5, 5, 8), Cost(13_824 + 3_456 + 3_456 + 4_608,
                            29_376 + 576 + 6_912 + 864 + 216 + 864 + 4_320 + 6_912 + 9_792)),
        # x [1, 5, 3, 8]: padded to 6 x 3; the 3-wide window covers the width, so only the
        # height shifts (still a masked map): 3 windows, 18 rows (144), scores 216.
        # qkv 18 * 192 = 3_456 MACs, 6_912 + 432; q scaling 144; q @ k^T 864 MACs, 1_728;
        # + bias 216; mask 3 * 36 = 108 and 216; softmax 1_080; attn @ v 864, 1_728;
        # proj 18 * 64 = 1_152 MACs, 2_304 + 144
        ((1, 5, 3, 8), Cost(3_456 + 864 + 864 + 1_152,
                            7_344 + 144 + 1_728 + 216 + 108 + 216 + 1_080 + 1_728 + 2_448)),
        # x [1, 2, 3, 8]: one window covering the whole map, no shift along either dim:
        # 6 rows (48), scores 72. qkv 6 * 192 = 1_152 MACs, 2_304 + 144; q scaling 48;
        # q @ k^T 288 MACs, 576; + bias 72; softmax 360; attn @ v 288, 576;
        # proj 384 MACs, 768 + 48
        ((1, 2, 3, 8), Cost(1_152 + 288 + 288 + 384,
                            2_448 + 48 + 576 + 72 + 360 + 576 + 816)),
    ],
)  # fmt: skip
def test_shifted_window_attention_windows(x, expected):
    pytest.importorskip("torchvision")
    assert _swin(x, [2, 3], [1, 1]) == expected


def test_shifted_window_attention_training_with_dropout_zero():
    # as the one-window case above: p = 0 makes both dropouts the identity in training
    pytest.importorskip("torchvision")
    assert _swin((1, 2, 3, 8), [2, 3], [1, 1], train=True, p=0.0) == Cost(2_112, 4_896)


def test_shifted_window_attention_v2_cosine():
    # Swin V2 on the one-window case x [1, 2, 3, 8] (rows 48 elements, scores 72):
    #   the relative position bias MLP on the (2*2-1) * (2*3-1) = 15 coordinate pairs:
    #   Linear(2, 512) 15 * 2 * 512 = 15_360 MACs, 30_720 + 7_680 bias; ReLU 7_680;
    #   Linear(512, 2, no bias) 15_360 MACs, 30_720; 16 * sigmoid on the [1, 2, 6, 6]
    #   table: 72 + 72
    #   the window: qkv 1_152 MACs, 2_448; cosine attention: normalize q and k 3 * 48 each,
    #   clamp and exp of logit_scale [2, 1, 1] 2 * 2, the scale multiply on the scores 72;
    #   q @ k^T 288 MACs, 576; + bias 72; softmax 360; attn @ v 288, 576; proj 384, 816
    pytest.importorskip("torchvision")
    mlp = Cost(15_360 + 15_360, 30_720 + 7_680 + 7_680 + 30_720 + 144)
    window = Cost(1_152 + 288 + 288 + 384,
                  2_448 + 288 + 4 + 72 + 576 + 72 + 360 + 576 + 816)  # fmt: skip
    assert _swin((1, 2, 3, 8), [2, 3], [1, 1], v2=True) == mlp + window


@pytest.mark.parametrize(
    "ratio, samples",
    # sampling_ratio 3: 3 * 3 = 9 samples per bin; 0 is adaptive as -1: its least, 1
    [(3, 9), (0, 1)],
)
def test_roi_align_sampling_ratio(ratio, samples):
    ops = pytest.importorskip("torchvision.ops")
    # out [3 boxes, 2 channels, 2, 3] = 36 bins; 4 MACs a sample, 9 FLOPs (8 + the mean)
    s = 36 * samples
    for report in _both(RoI(ops.RoIAlign((2, 3), 1.0, ratio)), ((1, 2, 8, 8), (3, 5))):
        assert report.cost == Cost(4 * s, 9 * s)


class _MultiScale(nn.Module):
    def __init__(self):
        super().__init__()
        from torchvision.ops import MultiScaleRoIAlign

        self.pool = MultiScaleRoIAlign(["p2"], 2, 2)

    def forward(self, x, boxes):
        return self.pool({"p2": x}, [boxes], [(32, 32)])


def test_multiscale_roi_align_on_fx():
    # fx keeps _multiscale_roi_align whole: the formula on its output [3 boxes, 2, 2, 2]
    # = 24 bins, sampling_ratio 2: 4 samples a bin, S = 96: 4 S MACs, 9 S FLOPs
    pytest.importorskip("torchvision")
    with warnings.catch_warnings():
        warnings.simplefilter("error", flopgraph.SkippedOpWarning)
        report = flopgraph.analyze(_MultiScale(), ((1, 2, 8, 8), (3, 4)), frontend="fx")
    assert report.cost == Cost(4 * 96, 9 * 96)


# quantized.py: the packed-weight rules. Quantized kernels have no fake versions, so each
# rule is called on the metadata the aten frontend records: packed_weight as (w, b)


def _quantized_ctx(x, w, b, y):
    from flopgraph.handlers.context import OpContext
    from flopgraph.records import TensorMeta

    packed = (TensorMeta(w, "qint8"), TensorMeta(b) if b else None)
    return OpContext("aten", (TensorMeta(x, "quint8"), packed, 0.1, 0), {},
                     TensorMeta(y, "quint8"))  # fmt: skip


@pytest.mark.parametrize("bias", [True, False])
def test_quantized_packed_weight_rules(bias):
    from flopgraph.handlers import quantized

    b = 1 if bias else 0
    # conv2d: x [1, 2, 5, 5], w [3, 2, 3, 3] -> y [1, 3, 3, 3] (27):
    # N*Cout*prod(S_out)*Cin*k*k = 1 * 3 * 9 * 2 * 9 = 486 MACs; + 27 with a bias
    ctx = _quantized_ctx((1, 2, 5, 5), (3, 2, 3, 3), (3,) if bias else None, (1, 3, 3, 3))
    assert quantized.conv(ctx) == Cost(486, 2 * 486 + 27 * b)
    # conv_transpose2d: x [1, 2, 3, 3], w [Cin 2, Cout 3, 3, 3] -> y [1, 3, 5, 5] (75):
    # N*Cin*prod(S_in)*Cout*k*k = 1 * 2 * 9 * 3 * 9 = 486 MACs; + 75 with a bias
    ctx = _quantized_ctx((1, 2, 3, 3), (2, 3, 3, 3), (3,) if bias else None, (1, 3, 5, 5))
    assert quantized.conv_transpose(ctx) == Cost(486, 2 * 486 + 75 * b)
    # linear: x [4, 6], w [5, 6] -> y [4, 5] (20): 4 * 6 * 5 = 120 MACs; + 20 with a bias
    ctx = _quantized_ctx((4, 6), (5, 6), (5,) if bias else None, (4, 5))
    assert quantized.linear(ctx) == Cost(120, 240 + 20 * b)
