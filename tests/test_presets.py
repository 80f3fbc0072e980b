"""convention="torch" and convention="fvcore": by hand, and against the peers themselves."""

import pytest
import torch
import torch.nn.functional as F
from helpers import Fn
from test_aten import ZOO, build
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import flopgraph
from flopgraph import Cost
from flopgraph.presets.fvcore import einsum_macs


class Small(nn.Module):
    """conv (bias) -> batch norm (eval) -> relu -> global pool -> layer norm -> linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.norm(x))


CONV_MACS = 2 * 8 * 6 * 6 * 3 * 3 * 3  # N * Cout * H * W * Cin * k * k = 15_552
FC_MACS = 2 * 8 * 10  # 160


def test_torch_preset_by_hand():
    report = flopgraph.analyze(Small().eval(), (2, 3, 6, 6), convention="torch")
    # FlopCounterMode: 2 per multiply-add of conv and linear, nothing for biases, norms,
    # activations or pooling
    assert report.flops == 2 * (CONV_MACS + FC_MACS) == 31_424
    assert report.macs == CONV_MACS + FC_MACS
    assert report.convention == "torch" and report.frontend.name == "aten"
    assert report.skipped == {}  # what FlopCounterMode does not count is free, not skipped
    assert {r.reason for r in report.records if r.op == "relu"} == {
        "FlopCounterMode has no formula for this op"
    }


def test_fvcore_preset_by_hand():
    report = flopgraph.analyze(Small().eval(), (2, 3, 6, 6), convention="fvcore")
    expected = (
        CONV_MACS  # conv: one per multiply-add, bias ignored             15_552
        + 2 * 2 * 8 * 6 * 6  # batch norm in eval with a weight: 2 per element 1_152
        + 2 * 8 * 6 * 6  # adaptive average pool: 1 per input element         576
        + 5 * 2 * 8  # layer norm with a weight: 5 per element                 80
        + FC_MACS  # linear                                                   160
    )
    assert report.flops == expected == 17_520
    assert report.macs == CONV_MACS + FC_MACS
    assert report.skipped == {}


@pytest.mark.parametrize("shapes, expected", [
    ((("abc,abd->acd"), [(2, 3, 4), (2, 3, 5)]), 2 * 3 * 4 * 5),  # fvcore's first special case
    ((("abc,adc->adb"), [(2, 3, 4), (2, 5, 4)]), 2 * 3 * 4 * 5),  # its second
    ((("ij,jk->ik"), [(4, 5), (5, 6)]), 4 * 5 * 6),  # numpy: 2 * 120 "flops" / 2
])  # fmt: skip
def test_fvcore_einsum(shapes, expected):
    equation, operand_shapes = shapes
    assert einsum_macs(equation, operand_shapes) == expected


def test_presets_count_attention_and_recurrence_as_their_peers_do():
    q = (2, 4, 8, 16)
    sdpa = Fn(F.scaled_dot_product_attention)
    # FlopCounterMode on meta: two bmm, 2 * B*L*S*(E + Ev) = 2 * 8 * 8 * 8 * 32 = 32_768
    assert flopgraph.analyze(sdpa, (q, q, q), convention="torch").flops == 32_768
    assert flopgraph.analyze(sdpa, (q, q, q), convention="fvcore").flops == 0  # no handle
    lstm = nn.LSTM(8, 16)
    # 2 * steps*batch * G*H*(I + H) = 2 * 10 * 64 * 24 = 30_720 (gates only, no bias)
    assert flopgraph.analyze(lstm, (5, 2, 8), convention="torch").flops == 30_720
    x = torch.empty(5, 2, 8, device="meta")
    with torch.device("meta"):
        meta_lstm = nn.LSTM(8, 16)
    with FlopCounterMode(display=False) as fc:
        meta_lstm(x)
    assert fc.get_total_flops() == 30_720


def test_fvcore_preset_counts_what_a_python_function_lowers_to():
    mha = nn.MultiheadAttention(16, 4).eval()
    report = flopgraph.analyze(mha, ((5, 2, 16),) * 3, convention="fvcore")
    # fvcore sees aten::linear for the packed input projection and the output projection,
    # aten::bmm twice for the weights path; softmax and the weight average count 0
    rows = 5 * 2
    bmm = 2 * (2 * 4) * 5 * 5 * 4  # (N*h) x L x S x E/h, twice
    assert report.flops == rows * 16 * 48 + rows * 16 * 16 + bmm == 10_240 + 1_600
    x = torch.randn(5, 2, 16)
    assert_matches_fvcore(mha, (x, x, x), (x, x, x))


def _peer_names(counts):
    """FlopCounterMode's module names ("ResNet.layer1.0") -> our paths ("layer1.0")."""
    return {k.partition(".")[2]: sum(v.values()) for k, v in counts.items() if k != "Global"}


def flop_counter(model, *inputs):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs)
    return fc.get_total_flops(), _peer_names(fc.get_flop_counts())


def assert_matches_flop_counter(model, inputs, specs):
    total, per_module = flop_counter(model, *inputs)
    report = flopgraph.analyze(model, specs, convention="torch")
    assert report.flops == total
    by_module = report.by_module()
    assert {p: by_module[p].flops for p in per_module} == per_module
    default = flopgraph.analyze(model, specs)
    assert 2 * default.macs == total


def fvcore_analysis(model, inputs):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def assert_matches_fvcore(model, inputs, specs):
    analysis = fvcore_analysis(model, inputs)
    report = flopgraph.analyze(model, specs, convention="fvcore")
    assert report.flops == analysis.total()
    by_module = report.by_module()
    assert {p: by_module[p].flops for p in analysis.by_module()} == dict(analysis.by_module())


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_torch_preset_equals_flop_counter_mode(name):
    model = build(name)
    x = torch.empty(1, 3, 224, 224, device=next(model.parameters()).device)
    assert_matches_flop_counter(model, (x,), (1, 3, 224, 224))


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_fvcore_preset_equals_fvcore(name):
    import torchvision

    # fvcore's jit trace needs real tensors for convolutions; a smaller image keeps this
    # fast (vit_b_16 takes 224 x 224 only)
    size = 224 if name == "vit_b_16" else 96
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, size, size)
    assert_matches_fvcore(model, (x,), x)


def test_transformer_encoder_matches_both_peers():
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 32)
    assert_matches_fvcore(model, (x,), x)
    with torch.device("meta"):
        meta = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2, enable_nested_tensor=False
        ).eval()
    assert_matches_flop_counter(meta, (torch.empty(2, 6, 32, device="meta"),), (2, 6, 32))
    # the same totals as the default convention's contractions: 2 * MACs
    assert flopgraph.analyze(model, x, convention="torch").cost == Cost(
        flopgraph.analyze(model, x).macs, 2 * flopgraph.analyze(model, x).macs
    )


class StringPadding(nn.Module):
    """Convolutions with padding given as a word, beside one with a number."""

    def __init__(self):
        super().__init__()
        self.same = nn.Conv2d(3, 4, 3, padding="same")
        self.valid = nn.Conv1d(4, 4, 3, padding="valid")
        self.number = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.same(x)  # [1, 4, 5, 5]
        z = self.valid(y.flatten(2))  # [1, 4, 23]
        return self.number(y), z


def test_fvcore_preset_does_not_count_string_padding_convolutions():
    # fvcore's jit trace records padding="same"/"valid" as aten::_convolution_mode, which
    # it has no handle for: 0. The numeric-padding 1x1 conv counts 1 * 2 * 5 * 5 * 4 = 200.
    model, x = StringPadding().eval(), torch.randn(1, 3, 5, 5)
    report = flopgraph.analyze(model, x, convention="fvcore")
    assert report.flops == report.macs == 1 * 2 * 5 * 5 * 4 == 200
    assert_matches_fvcore(model, (x,), x)
    # the default convention counts every convolution: same 1*4*25*3*9, valid 1*4*23*4*3
    assert flopgraph.analyze(model, x).macs == 4 * 25 * 27 + 4 * 23 * 12 + 200
