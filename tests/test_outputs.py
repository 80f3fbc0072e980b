"""Human outputs beyond the tables: flopgraph.format, Report.summary and --summary, and
each module's costs in the JSON report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_cli import run_main
from torch import nn

import flopgraph
from flopgraph import Cost


class Bessel(nn.Module):
    """An op with no handler (skipped, counted as 0), then an add."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x) + 1


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


# --- flopgraph.format ------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, unit, text",
    [
        (4_089_184_256, "", "4.09 G"),
        (4_089_184_256, "FLOPs", "4.09 GFLOPs"),
        (4_089_184_256, "GFLOPs", "4.09 GFLOPs"),
        (4_089_184_256, "MFLOPs", "4089.18 MFLOPs"),  # a fixed scale, as thop / ptflops
        (4_089_184_256, "GMac", "4.09 GMac"),
        (4_089_184_256, "TMACs", "0.00 TMACs"),
        (25_557_032, "params", "25.56 M params"),
        (25_557_032, "Mparams", "25.56 M params"),
        (1_000, "MACs", "1.00 KMACs"),  # MACs is a unit, not M + ACs
        (999, "MACs", "999 MACs"),  # exact below 1000, as the tables
        (512, "", "512"),
        (0, "params", "0 params"),
    ],
)
def test_format(n, unit, text):
    assert flopgraph.format(n, unit) == text


def test_format_digits_and_a_bad_unit():
    assert flopgraph.format(4_089_184_256, "G", digits=3) == "4.089 G"
    with pytest.raises(ValueError, match=r"unknown unit 'GB'.*'GFLOPs', 'GMac'"):
        flopgraph.format(1, "GB")


def test_format_agrees_with_ptflops():
    # ptflops rounds with round() and prints the float (4.1, not 4.10): compared where
    # both give two decimals (ptflops is imported by the peer tests anyway)
    ptflops = pytest.importorskip("ptflops.flops_counter")
    to_string = ptflops.flops_to_string
    assert flopgraph.format(512, "Mac") == to_string(512) == "512 Mac"
    assert flopgraph.format(89_376, "Mac") == to_string(89_376, precision=2)
    for unit in ("GMac", "MMac", "KMac", "Mac"):
        assert flopgraph.format(4_089_184_256, unit) == to_string(
            4_089_184_256, units=unit if unit != "Mac" else None, precision=2
        )
    assert flopgraph.format(25_557_032, "M") == ptflops.params_to_string(25_557_032, units="M")


def test_format_is_exported_lazily_without_torch():
    code = (
        "import sys, flopgraph; f = flopgraph.format; "
        "print(f(4_089_184_256, 'GFLOPs'), 'torch' in sys.modules, 'format' in flopgraph.__all__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4.09 GFLOPs False True"


def test_every_lazy_name_is_public_and_every_public_name_resolves():
    from flopgraph import _WHERE

    assert set(flopgraph.__all__) == set(_WHERE) | {"__version__"}
    assert all(getattr(flopgraph, name) is not None for name in flopgraph.__all__)


# --- Report.summary and --summary -------------------------------------------------------


def test_summary_of_a_linear_by_hand():
    # Linear 8 -> 4 on 2 rows: 2 * 8 * 4 = 64 MACs; 2 * 64 + 2 * 4 bias = 136 FLOPs;
    # 8 * 4 + 4 = 36 params
    r = flopgraph.analyze(nn.Linear(8, 4), (2, 8))
    assert r.summary() == "Linear on 2×8: 64 MACs, 136 FLOPs, 36 params, 0 skipped"


def test_summary_with_prefixes_by_hand():
    # Linear 1000 -> 1000 on 2 rows: 2,000,000 MACs; 4,000,000 + 2,000 = 4,002,000 FLOPs;
    # 1,000,000 + 1,000 = 1,001,000 params
    r = flopgraph.analyze(nn.Linear(1000, 1000), (2, 1000))
    assert r.summary() == "Linear on 2×1000: 2.00 MMACs, 4.00 MFLOPs, 1.00 M params, 0 skipped"


def test_summary_counts_skipped_ops():
    with pytest.warns(flopgraph.SkippedOpWarning):
        r = flopgraph.analyze(Bessel(), (2, 3))
    # bessel_j0 has no handler (0); the add of 2 x 3 elements: 6 FLOPs
    assert r.summary() == "Bessel on 2×3: 0 MACs, 6 FLOPs, 0 params, 1 skipped"


def _source(tmp_path, body: str) -> str:
    path = tmp_path / "m.py"
    path.write_text(f"import torch\nfrom torch import nn\n\ndef build():\n    return {body}\n")
    return f"{path}:build"


def test_cli_summary_prints_the_line_alone(tmp_path, capsys):
    model = _source(tmp_path, "nn.Linear(8, 4)")
    code, out, err = run_main(capsys, model, "--input", "2x8", "--summary")
    assert (code, out, err) == (0, "Linear on 2×8: 64 MACs, 136 FLOPs, 36 params, 0 skipped\n", "")


def test_cli_summary_with_fail_on_skipped_exits_3(tmp_path, capsys):
    path = tmp_path / "skip.py"
    path.write_text(
        "import torch\n"
        "class Bessel(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.special.bessel_j0(x) + 1\n"
        "def build():\n"
        "    return Bessel()\n"
    )
    code, out, err = run_main(capsys, f"{path}:build", "--input", "2x3", "--summary")
    assert code == 0 and out == "Bessel on 2×3: 0 MACs, 6 FLOPs, 0 params, 1 skipped\n"
    assert "special_bessel_j0" in err  # no report shows the skipped panel: the warning says
    args = (f"{path}:build", "--input", "2x3", "--summary", "--fail-on-skipped")
    code, out, err = run_main(capsys, *args)
    assert code == 3 and out == "Bessel on 2×3: 0 MACs, 6 FLOPs, 0 params, 1 skipped\n"
    assert "--fail-on-skipped: ops with no handler" in err


def test_cli_summary_refuses_another_output(capsys):
    code, out, err = run_main(capsys, "lenet", "--summary", "--format", "json")
    assert code == 2 and out == "" and "--summary prints one line" in err


# --- per-module costs in the JSON -----------------------------------------------------------


def test_json_modules_carry_their_cumulative_costs():
    r = flopgraph.analyze(mlp(), (2, 8))
    data = json.loads(r.to_json())
    assert data["schema_version"] == 3
    by = r.by_module()
    for m in data["modules"]:
        assert Cost(m["macs"], m["flops"]) == by[m["path"]], m["path"]
    first, root = (next(m for m in data["modules"] if m["path"] == p) for p in ("0", ""))
    # Linear 8 -> 16 on 2 rows: 256 MACs, 2 * 256 + 32 = 544 FLOPs; it reads its input
    # (2 * 8 floats) and its 8 * 16 + 16 parameters: (16 + 144) * 4 = 640 bytes, and
    # writes 2 * 16 floats: 128 bytes
    assert (first["macs"], first["flops"]) == (256, 544)
    assert (first["bytes_read"], first["bytes_written"]) == (640, 128)
    # the model: + relu (32 FLOPs, reads and writes 128 B) + Linear 16 -> 4 (128 MACs,
    # 2 * 128 + 8 = 264 FLOPs; reads 2 * 16 floats and 16 * 4 + 4 params: 400 B; writes 32 B)
    assert (root["macs"], root["flops"]) == (256 + 128, 544 + 32 + 264)
    assert (root["bytes_read"], root["bytes_written"]) == (640 + 128 + 400, 128 + 128 + 32)


def test_json_reads_versions_2_and_3():
    r = flopgraph.analyze(mlp(), (2, 8))
    new = r.to_dict()
    assert flopgraph.Report.from_dict(new) == r
    old = {**new, "schema_version": 2}
    old["modules"] = [
        {k: m[k] for k in ("path", "type", "params", "calls")} for m in new["modules"]
    ]
    again = flopgraph.Report.from_dict(old)
    # an old file gains its module costs; it held no module outputs: they read as none
    assert again.records == r.records and all(m.outputs == () for m in again.modules)
    assert again.to_dict() == {**new, "modules": [{**m, "outputs": []} for m in new["modules"]]}
    with pytest.raises(ValueError, match="schema_version 4"):
        flopgraph.Report.from_dict({**new, "schema_version": 4})
