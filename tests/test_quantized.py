"""Quantized models: int8 contractions are MACs (spec principle 4), with their precision."""

import warnings

import pytest
import torch
from conftest import assert_untouched, snapshot
from torch import nn

import flopgraph
from flopgraph import Status

nnq = pytest.importorskip("torch.ao.nn.quantized")
nnqd = pytest.importorskip("torch.ao.nn.quantized.dynamic")

pytestmark = pytest.mark.filterwarnings("ignore:.*quantize.*:UserWarning")


class Quantized(nn.Module):
    """float -> quint8 -> conv 3->4 (3x3) -> linear 144->5 -> float -> dynamic linear 5->2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nnq.Conv2d(3, 4, 3)
        self.fc = nnq.Linear(4 * 6 * 6, 5)
        self.dyn = nnqd.Linear(5, 2)

    def forward(self, x):
        q = torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)
        y = self.conv(q).reshape(1, -1)
        return self.dyn(self.fc(y).dequantize())


# conv on 1x3x8x8 -> 1x4x6x6: macs 1*4*36 * 3*9 = 3_888, flops 2*3_888 + 144 (bias) = 7_920
# fc 144 -> 5: macs 720, flops 1_440 + 5 = 1_445; dynamic 5 -> 2: macs 10, flops 20 + 2 = 22
CONV, FC, DYN = (3_888, 7_920), (720, 1_445), (10, 22)


@pytest.mark.parametrize("frontend", ["aten", "auto"])
def test_quantized_contractions_count_as_their_float_originals(frontend):
    model = Quantized().eval()
    before = snapshot(model)
    report = flopgraph.analyze(model, torch.randn(1, 3, 8, 8), frontend=frontend)
    assert_untouched(model, before)
    assert report.macs == CONV[0] + FC[0] + DYN[0]
    assert report.flops == CONV[1] + FC[1] + DYN[1]
    assert report.skipped == {}
    assert report.frontend.name == "aten" and report.frontend.real_run
    assert "quantized modules" in report.frontend.note
    conv = next(r for r in report.records if r.op == "quantized_conv2d")
    # the record carries both operand dtypes: quint8 activations, the packed qint8 weight
    assert [m.dtype for m in conv.inputs[:2]] == ["quint8", "qint8"]
    assert conv.inputs[1].shape == (4, 3, 3, 3)
    # precision: the narrowest operand; a dynamic linear's MACs run in its weight's qint8
    assert report.by_dtype() == {
        "quint8": flopgraph.Cost(CONV[0] + FC[0], CONV[1] + FC[1]),
        "qint8": flopgraph.Cost(*DYN),
    }


def test_quantized_model_needs_real_inputs():
    with pytest.raises(flopgraph.TraceError, match="Pass real input tensors"):
        flopgraph.analyze(Quantized().eval(), (1, 3, 8, 8), frontend="aten")


def test_quantize_dequantize_and_quantized_elementwise_are_handled():
    tv = pytest.importorskip("torchvision")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tv.models.quantization.resnet18(weights=None, quantize=True).eval()
        report = flopgraph.analyze(model, torch.randn(1, 3, 32, 32))
    status = {r.op: r.status for r in report.records}
    # casts to and from quint8 are free; quantized::add_relu has an integer output: free
    assert status["quantize_per_tensor"] is Status.FREE
    assert status["dequantize"] is Status.FREE
    assert status["add_relu"] is Status.FREE
    assert report.skipped == {}


def test_quantized_resnet18_counts_the_macs_of_the_float_resnet18():
    """Quantization fuses conv + batch norm (+ relu) into one quantized conv: the same
    convolutions and the same fc, so the same MACs. FLOPs differ: every fused conv adds
    its folded bias (numel(out)), and the float model's batch norms count instead."""
    tv = pytest.importorskip("torchvision")
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = tv.models.quantization.resnet18(weights=None, quantize=True).eval()
        quantized = flopgraph.analyze(q, x)
    fp = flopgraph.analyze(tv.models.resnet18(weights=None).eval(), x)
    assert quantized.macs == fp.macs > 0
    contractions = [r for r in quantized.records if r.macs]
    assert len(contractions) == 21  # 20 convolutions and the fc
    for r in contractions:  # each has a bias: spec A, flops = 2 * macs + numel(out)
        assert r.flops == 2 * r.macs + r.outputs[0].numel
    assert set(quantized.by_dtype()) == {"quint8"}


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_integer_contraction_counts_in_its_own_dtype(frontend):
    class IntMatmul(nn.Module):
        def forward(self, a, b):
            return a @ b

    a = torch.randint(0, 5, (2, 3))
    b = torch.randint(0, 5, (3, 4))
    report = flopgraph.analyze(IntMatmul(), (a, b), frontend=frontend)
    # principle 4: an int64 matmul is a contraction: macs 2*4*3 = 24, flops 48
    assert (report.macs, report.flops) == (24, 48)
    assert report.by_dtype() == {"int64": flopgraph.Cost(24, 48)}


def test_by_dtype_splits_mixed_precision():
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3, bias=False)
            self.b = nn.Linear(3, 2, bias=False).to(torch.bfloat16)

        def forward(self, x):
            return self.b(self.a(x).to(torch.bfloat16))

    report = flopgraph.analyze(Mixed(), torch.randn(5, 4), frontend="aten")
    # a: 5*4*3 = 60 macs in float32; b: 5*3*2 = 30 macs in bfloat16
    assert report.by_dtype() == {
        "float32": flopgraph.Cost(60, 120),
        "bfloat16": flopgraph.Cost(30, 60),
    }
