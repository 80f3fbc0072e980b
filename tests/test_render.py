"""Rendered reports: golden text at a fixed width, row sums, exports, the HTML page in
a headless browser, and progress."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import warnings
from fractions import Fraction

import pytest
import torch
from helpers import assert_golden
from rich.console import Console
from torch import nn

import flopgraph
from flopgraph import Cost
from flopgraph.examples import BasicBlock, LeNet, TinyTransformerBlock
from flopgraph.progress import LiveProgress
from flopgraph.render import View, render_text
from flopgraph.render.html import render_html
from flopgraph.render.ops import activation_bytes, intensity, op_rows, operator_rows
from flopgraph.render.terminal import render_report
from flopgraph.render.tree import RowKind, display_tree, flatten, module_tree

WIDTH = 100


class Showcase(nn.Module):
    """A wrapper chain, a module called twice, one never called, ops in forward
    itself, and an op with no handler."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Sequential(nn.Linear(8, 16)))
        self.act = nn.ReLU()
        self.head = nn.Linear(16, 4)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.act(self.stem(x))
        h = self.act(h * 2)
        d = torch.cdist(h, y)
        return self.head(h) + d.mean()


def showcase_report() -> flopgraph.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", flopgraph.SkippedOpWarning)
        return flopgraph.analyze(Showcase(), ((2, 8), (3, 16)))


def rendered(renderable: object, width: int = WIDTH) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, force_terminal=False).print(renderable)
    return buf.getvalue()


def meta_resnet18() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        return torchvision.models.resnet18().eval()


# --- numbers derived by hand ------------------------------------------------------


def test_showcase_costs_by_hand():
    r = showcase_report()
    # stem linear 2x8 -> 16: 2 * 8 * 16 = 256 MACs; 2 * 256 + 2 * 16 bias = 544 FLOPs
    # relu twice on 2x16: 32 + 32; h * 2: 32; head linear 2x16 -> 4: 2 * 16 * 4 = 128 MACs,
    # 2 * 128 + 8 = 264; cdist skipped; mean of 2x3: 6; add of 2x4: 8
    assert r.macs == 256 + 128
    assert r.flops == 544 + 32 + 32 + 32 + 264 + 6 + 8 == 918
    tree = display_tree(r)
    rows = {n.name: n for n in tree.children}
    assert rows["stem.0.0"].cost == Cost(256, 544)  # the wrapper chain is one row
    assert rows["act"].cost == Cost(0, 64) and rows["act"].calls == 2
    assert rows["unused"].calls == 0 and rows["unused"].cost == Cost()
    assert rows["(self)"].cost == Cost(0, 32 + 6 + 8)
    assert rows["stem.0.0"].params == 8 * 16 + 16 and tree.params == 144 + 68 + 20


def test_showcase_table_golden():
    text = rendered(render_report(showcase_report()))
    assert_golden("showcase_table.txt", text)
    assert "stem.0.0" in text and "ReLU ×2" in text and "Linear (not called)" in text
    assert re.search(r"cdist\s+1×\s+in \(model\)", text)
    assert "918 FLOPs" not in text and "918 · convention default" in text


def test_lenet_table_golden():
    text = rendered(render_report(flopgraph.analyze(LeNet(), (1, 1, 28, 28))))
    assert_golden("lenet_table.txt", text)
    # conv1: 6 * 28 * 28 * 1 * 3 * 3 = 42,336 MACs (12.4% of 341,256), 2 * 42,336 + 4,704
    # bias = 89,376 FLOPs
    assert re.search(r"├─ conv1\s+Conv2d\s+60\s+0\.1%\s+42\.34 K\s+12\.4%\s+89\.38 K", text)
    # totals: 341,256 MACs = 42,336 + 240,000 (conv2: 16*10*10*6*25) + 48,000 + 10,080 + 840
    assert "341.26 K (341,256)" in text


def test_basic_block_tree_golden_raw_units():
    r = flopgraph.analyze(BasicBlock().eval(), (1, 64, 56, 56))
    text = rendered(render_report(r, style="tree", units="raw"))
    assert_golden("basic_block_tree.txt", text)
    # conv: 64 * 56 * 56 * 64 * 3 * 3 = 115,605,504 MACs, 231,211,008 FLOPs (no bias)
    assert "conv1 (Conv2d)  231,211,008 FLOPs" in text


def test_op_and_operator_tables_golden():
    r = flopgraph.analyze(TinyTransformerBlock().eval(), (1, 16, 64))
    ops = rendered(render_report(r, by="op", top=8))
    operators = rendered(render_report(r, by="operator"))
    assert_golden("tiny_transformer_ops.txt", ops + "\n" + operators)
    # fc1: 16 * 64 * 256 = 262,144 MACs; reads x (16*64*4 B) + W and b ((64*256+256)*4 B)
    fc1 = next(rec for _, rec in op_rows(r).shown if rec.module == "fc1")
    assert fc1.macs == 262_144 and fc1.bytes_read == 16 * 64 * 4 + (64 * 256 + 256) * 4
    assert fc1.bytes_written == 16 * 256 * 4
    # 2 * 262,144 + 16 * 256 bias = 528,384 FLOPs over 70,656 + 16,384 = 87,040 bytes
    assert intensity(fc1.flops, fc1.bytes_read, fc1.bytes_written) == Fraction(528_384, 87_040)
    assert "6.07" in ops


def test_markdown_and_csv_golden():
    r = showcase_report()
    assert_golden("showcase.md", render_text(r, "markdown", View(units="raw")))
    assert_golden("showcase_ops.csv", render_text(r, "csv", View(by="op")))


def test_resnet18_depth_and_top():
    r = flopgraph.analyze(meta_resnet18(), (1, 3, 224, 224))
    text = rendered(render_report(r, depth=1, top=3))
    assert_golden("resnet18_depth1_top3.txt", text)
    # conv1: 64 * 112 * 112 * 3 * 7 * 7 = 118,013,952 MACs
    assert "118.01 M" not in text  # conv1 is not among the 3 costliest children
    assert "(7 more)" in text


# --- invariants on the data ---------------------------------------------------------


def _reports() -> list[flopgraph.Report]:
    return [
        showcase_report(),
        flopgraph.analyze(TinyTransformerBlock().eval(), (2, 16, 64)),
        flopgraph.analyze(meta_resnet18(), (1, 3, 224, 224)),
    ]


@pytest.mark.parametrize("depth, top", [(None, None), (2, None), (1, 2), (None, 1)])
def test_module_rows_add_up_to_their_parent_and_the_total(depth, top):
    for r in _reports():
        tree = display_tree(r, depth, top)
        assert tree.cost == r.cost
        for _, node in flatten(tree):
            if node.children:
                assert sum((c.cost for c in node.children), Cost()) == node.cost, node.path
                assert sum(c.params for c in node.children) == node.params, node.path


@pytest.mark.parametrize("top", [None, 1, 3])
def test_op_and_operator_rows_add_up_to_the_total(top):
    for r in _reports():
        ops = op_rows(r, top)
        assert sum((rec.cost for _, rec in ops.shown), ops.rest_cost) == r.cost
        assert len(ops.shown) + len(ops.rest) == len(r.records)
        operators = operator_rows(r, top)
        assert sum(row.flops for row in operators) == r.flops
        assert sum(row.macs for row in operators) == r.macs
        assert sum(row.calls for row in operator_rows(r, top)) == len(r.records)


def test_module_outputs_and_activation_bytes():
    r = flopgraph.analyze(BasicBlock(8).eval(), (2, 8, 5, 5))
    tree = module_tree(r)
    assert tree.outputs == (flopgraph.TensorMeta((2, 8, 5, 5)),)
    # counted ops: conv1, bn1, relu, conv2, bn2, add, relu each write 2*8*5*5 floats
    assert activation_bytes(r) == 7 * 2 * 8 * 5 * 5 * 4


def test_wrapper_with_its_own_ops_is_not_collapsed():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(3, 3)

        def forward(self, x):
            return self.inner(x) * 2

    model = nn.Sequential(Scaled())
    tree = display_tree(flopgraph.analyze(model, (1, 3)))
    (only,) = tree.children
    assert only.name == "0" and [c.name for c in only.children] == ["inner", "(self)"]
    assert only.children[1].kind is RowKind.SELF and only.children[1].cost == Cost(0, 3)


def test_rich_print_of_a_report_still_works():
    r = flopgraph.analyze(LeNet(), (1, 1, 28, 28))
    assert rendered(r) == rendered(render_report(r))


# --- exports ---------------------------------------------------------------------


def test_csv_module_rows_are_every_module_with_exact_numbers():
    r = showcase_report()
    rows = list(csv.DictReader(io.StringIO(render_text(r, "csv"))))
    paths = ["", "stem", "stem.0", "stem.0.0", "act", "head", "unused"]
    assert [row["path"] for row in rows] == paths
    root = rows[0]
    assert int(root["flops"]) == 918 and int(root["self_flops"]) == 32 + 6 + 8
    assert rows[3]["output"] == "2x16"


def test_json_export_is_the_report_schema():
    r = showcase_report()
    data = json.loads(render_text(r, "json"))
    assert data["schema_version"] == 3 and data["totals"] == {"macs": 384, "flops": 918}
    assert flopgraph.Report.from_json(json.dumps(data)) == r


def test_html_is_self_contained():
    page = render_html(showcase_report())
    assert "<link" not in page and "src=" not in page and "@import" not in page
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"] * 2
    assert "</script>" not in page.split('id="flopgraph-data">')[1].split("</script>")[0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--window-size=1280,1700",
)  # fmt: skip


def open_in_chromium(page: str, tmp_path, what: str) -> tuple[str, str]:
    """(stdout, stderr) of headless Chromium opening ``page`` with ``what``
    (``--dump-dom`` or ``--screenshot=FILE``) and a fresh profile."""
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", what, path.as_uri()],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def page_state(dom: str, log: str) -> tuple[str, list[str]]:
    """The page's own marker (``ready`` once its script ran) and console errors."""
    marker = re.search(r'<html[^>]*data-flopgraph="(\w+)"', dom)
    errors = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return (marker.group(1) if marker else "missing"), errors


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test installs it)")
def test_html_report_renders_in_headless_chromium(tmp_path):
    page = render_html(flopgraph.analyze(meta_resnet18(), (1, 3, 224, 224)))
    dom, log = open_in_chromium(page, tmp_path, "--dump-dom")
    assert page_state(dom, log) == ("ready", [])
    treemap = dom.split('id="treemap"')[1].split("</svg>")[0]
    for name in ("layer1", "layer2", "layer3", "layer4", "conv1", "downsample"):
        assert f">{name} " in treemap  # a block label: name and % of FLOPs
    table = dom.split('id="modules"')[1].split("</table>")[0]
    for name in ("layer1", "maxpool", "avgpool", "BasicBlock", "AdaptiveAvgPool2d"):
        assert name in table
    assert treemap.count("<rect") > 20
    shot = tmp_path / "treemap.png"
    _, log = open_in_chromium(page, tmp_path, f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000 and page_state("", log)[1] == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test installs it)")
def test_browser_check_catches_a_script_error(tmp_path):
    page = render_html(showcase_report()).replace("drawTreemap(DATA.tree);\n", "drawTreemap(NO);\n")
    state, errors = page_state(*open_in_chromium(page, tmp_path, "--dump-dom"))
    assert state == "error" and any("NO is not defined" in e for e in errors)


# --- progress ----------------------------------------------------------------------


def test_analyze_reports_progress_per_node():
    calls = []
    r = flopgraph.analyze(LeNet(), (1, 1, 28, 28), progress=lambda *a: calls.append(a))
    propagate = [c for c in calls if c[0] == "propagate"]
    # 1 placeholder + 12 call nodes + 1 output
    assert [c[1] for c in propagate] == list(range(1, 15)) and {c[2] for c in propagate} == {14}
    assert calls[0] == ("trace", 0, 0) and calls[-1] == ("count", 0, 0)
    assert len(r.records) == 12


def test_live_progress_is_silent_for_small_models_and_shows_when_slow():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80)
    with LiveProgress(console, delay=30) as quiet:
        flopgraph.analyze(LeNet(), (1, 1, 28, 28), progress=quiet)
    assert not quiet.shown and buf.getvalue() == ""
    with LiveProgress(console, delay=0) as shown:
        flopgraph.analyze(LeNet(), (1, 1, 28, 28), progress=shown)
    assert shown.shown and "propagating shapes" in buf.getvalue()


def test_a_container_whose_layers_ran_is_not_marked_not_called() -> None:
    from torch import nn

    from flopgraph.render import View, render_text

    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
            self.spare = nn.ModuleList([nn.Linear(4, 4), nn.ReLU()])  # never used

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    report = flopgraph.analyze(Stack(), (1, 4))
    for fmt in ("table", "markdown"):
        text = render_text(report, fmt, View(), 160)  # type: ignore[arg-type]
        lines = {line.split()[1] if fmt == "table" else line.split("|")[1].strip(): line
                 for line in text.splitlines() if "layers" in line or "spare" in line}  # fmt: skip
        layers = next(v for k, v in lines.items() if k.endswith("layers"))
        spare = next(v for k, v in lines.items() if k.endswith("spare"))
        assert "ModuleList" in layers and "not called" not in layers
        assert "ModuleList (not called)" in spare
    html = render_text(report, "html", View(), 160)  # type: ignore[arg-type]
    assert '"ran":true' in html and '"ran":false' in html
