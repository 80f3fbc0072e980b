"""Op families and the coverage script's per-model row."""

import importlib.util
import json
import sys
from pathlib import Path

from torch import nn

import flopgraph
from flopgraph.families import FAMILIES, flops_by_family, op_families
from flopgraph.handlers import DEFAULT
from flopgraph.zoo import ZooModel

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location(
        "coverage_script", ROOT / "scripts" / "coverage.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_families_of_known_ops():
    families = op_families(DEFAULT)
    expected = {
        "conv2d": "contraction", "linear": "contraction", "einsum": "contraction",
        "interpolate": "contraction", "add": "elementwise", "relu": "elementwise",
        "dropout": "elementwise", "sum": "reduction", "softmax": "reduction",
        "batch_norm": "normalization", "rms_norm": "normalization", "max_pool2d": "pooling",
        "scaled_dot_product_attention": "attention", "multihead_attention": "attention",
        "transformer_encoder_layer": "attention", "lstm": "recurrent", "gru_cell": "recurrent",
    }  # fmt: skip
    assert {op: families[op] for op in expected} == expected


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.rnn = nn.GRU(4, 5, batch_first=True)

    def forward(self, x):
        y = self.bn(self.conv(x)).relu()  # [1, 4, 4, 4]
        h, _ = self.rnn(y.flatten(2).transpose(1, 2))  # 16 steps of 4
        return h.softmax(-1)


def test_flops_by_family_partition_the_total():
    report = flopgraph.analyze(Mixed().eval(), (1, 3, 6, 6))
    by_family = flops_by_family(report, DEFAULT)
    assert list(by_family) == list(FAMILIES)
    assert sum(by_family.values()) == report.flops
    n = 4 * 4 * 4  # conv output elements
    assert by_family["contraction"] == 2 * n * 27 + n  # conv with bias
    assert by_family["normalization"] == 4 * n  # eval batch norm, affine
    assert by_family["elementwise"] == n  # relu
    # GRU: 16 steps of 3*5*(4+5) = 135 macs; 270 + 15 + 30 + 40 flops
    assert by_family["recurrent"] == 16 * 355
    assert by_family["reduction"] == 5 * 16 * 5  # softmax


def test_coverage_script_rows_never_raise(tmp_path):
    script = load_script()

    def broken():
        raise RuntimeError("cannot build\nsecond line")

    bad = script.run(ZooModel("test:broken", broken))
    assert bad.error == "RuntimeError: cannot build" and bad.flops == 0
    good = script.run(ZooModel("test:mixed", lambda: Mixed().eval(), ((1, 3, 6, 6),)))
    assert not good.error and not good.skipped and good.flops == sum(good.families.values())
    text = script.table([good, bad])
    assert "test:mixed" in text and "ERROR RuntimeError: cannot build" in text
    assert "2 models, 1 failed, 0 with skipped ops" in text
    out = tmp_path / "rows.json"
    assert script.main(["-k", "nn.Transformer", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["torch:nn.Transformer"] and rows[0]["skipped"] == {}
    assert rows[0]["families"]["attention"] == rows[0]["flops"] > 0
