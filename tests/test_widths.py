"""Terminal tables at a given width: columns left out in drop order, shapes wrapped,
no number ever cut; the width is the console's, decided when the table is printed."""

from __future__ import annotations

import io
import re

import pytest
import torch
from helpers import assert_golden
from rich.console import Console
from test_cli import run_main
from torch import nn

import flopgraph
from flopgraph.render import View, render_text
from flopgraph.render.cells import shapes
from flopgraph.render.columns import (
    MODULE_COLUMNS,
    OP_COLUMNS,
    OPERATOR_COLUMNS,
    module_cells,
    op_table_rows,
    operator_cells,
)
from flopgraph.render.fit import FitColumn, FitTable, Layout, layout
from flopgraph.render.ops import op_rows, operator_rows
from flopgraph.render.terminal import module_table, op_table, operator_table
from flopgraph.render.tree import display_tree, guides


class Split(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.chunk(2, dim=1)


class Fit(nn.Module):
    """Nested modules, a module with two outputs (a list of shapes that wraps), free
    ops and a row of the model's own ops."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.split = Split()
        self.pool = nn.AvgPool2d(32)
        self.classifier = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.split(self.stem(x))
        return self.classifier(self.pool(a * b).flatten(1))


@pytest.fixture(scope="module")
def report() -> flopgraph.Report:
    return flopgraph.analyze(Fit().eval(), (1, 3, 32, 32))


def printed(renderable: object, width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(renderable)
    return buf.getvalue()


def tables(report: flopgraph.Report, width: int) -> str:
    parts = (module_table(report), op_table(report), operator_table(report))
    return "\n".join(printed(t, width) for t in parts)


def full_cells(report: flopgraph.Report) -> set[str]:
    """Every cell of the three tables as the renderers make it, before any layout, and
    each shape of a list of shapes (a wrapped cell shows them on separate lines)."""
    rows = [
        module_cells(report, node.name, node, "auto") for _, node in guides(display_tree(report))
    ]
    rows += [cells for cells, _ in op_table_rows(op_rows(report), "auto")]
    rows += [operator_cells(report, r, "auto") for r in operator_rows(report)]
    out = {cell for row in rows for cell in row}
    return out | {piece for cell in out for piece in re.split(r"\s+", cell)}


def body_cells(text: str) -> list[str]:
    """The cells printed in the tables' bodies (after each header rule, up to the blank
    line or the 'not shown' note), split at the 2-column gaps, tree guides dropped."""
    out: list[str] = []
    in_body = False
    for line in text.splitlines():
        if line.startswith("─"):
            in_body = True
        elif not line.strip() or line.startswith("not shown"):
            in_body = False
        elif in_body:
            line = line.lstrip("│├└─ ")
            out += [c.strip() for c in re.split(r"\s{2,}", line) if c.strip()]
    return out


def assert_whole(report: flopgraph.Report, text: str, width: int) -> None:
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text  # no cell cut: every name here fits at these widths
    cells = body_cells(text)
    assert cells and set(cells) <= full_cells(report), set(cells) - full_cells(report)


# --- numbers derived by hand, goldens ------------------------------------------------


def test_fit_model_counts_by_hand(report):
    # conv 3 -> 16 on 32x32, 3x3: 16 * 32 * 32 * 3 * 3 * 3 = 442,368 MACs;
    # 2 * 442,368 + 16 * 32 * 32 bias = 901,120 FLOPs. linear 8 -> 10: 80 MACs, 170 FLOPs
    by = report.by_module()
    assert by["stem.0"] == flopgraph.Cost(442_368, 901_120)
    assert by["classifier"] == flopgraph.Cost(80, 170)
    assert report.macs == 442_368 + 80


@pytest.mark.parametrize("width", [80, 160])
def test_tables_golden(report, width):
    text = tables(report, width)
    assert_golden(f"fit_tables_{width}.txt", text)
    assert_whole(report, text, width)
    # the hand-derived counts, whole: 442,368 MACs = 442.37 K, 901,120 FLOPs = 901.12 K
    assert re.search(r"│  ├─ 0\s+Conv2d\s+448\s+(\S+\s+)?442\.37 K\s+(\S+\s+)?901\.12 K", text)
    assert re.search(r" 1  conv2d\s+stem\.0\s+1×3×32×32\s+1×16×32×32\s+442\.37 K\s+901\.12 K", text)


def test_at_80_columns_the_least_useful_columns_are_left_out(report):
    text = tables(report, 80)
    modules, ops, operators = text.split("\n\n")[:3]
    assert "not shown at 80 columns: % params, % MACs" in modules
    assert "% params" not in modules.splitlines()[1] and "output" in modules.splitlines()[1]
    # the two outputs of split wrap between the shapes, each whole
    assert re.search(r"├─ split .* 1×8×32×32,\s*\n\s+1×8×32×32\s*\n", modules)
    assert "not shown at 80 columns: read, written, FLOP/B" in ops
    assert "not shown" not in operators and "% MACs" in operators


def test_at_160_columns_everything_shows(report):
    text = tables(report, 160)
    assert "not shown" not in text
    for header in (MODULE_COLUMNS, OP_COLUMNS, OPERATOR_COLUMNS):
        line = next(line for line in text.splitlines() if line.strip().startswith(header[0] + " "))
        assert re.split(r"\s{2,}", line.strip()) == list(header)
    assert "1×8×32×32, 1×8×32×32" in text  # room: the list of shapes on one line


@pytest.mark.parametrize("width", range(30, 161, 5))
def test_no_number_is_ever_cut(report, width):
    assert_whole(report, tables(report, width), width)


def test_rich_print_and_render_text_lay_out_for_the_same_width(report):
    # the fit is decided when printed: a Report printed by rich and the CLI's text agree
    for width in (60, 80, 120):
        assert printed(report, width) == render_text(report, "table", View(), width)
    assert printed(report, 60) != printed(report, 120)


def test_percent_of_macs(report):
    text = tables(report, 160)
    # stem.0 is all but 80 of the 442,448 MACs: 99.98% -> 100.0%; classifier 80 -> 0.0%
    assert re.search(r"│  ├─ 0\s+Conv2d\s+448\s+78\.6%\s+442\.37 K\s+100\.0%", text)
    # the operator table: conv2d 442,368 / 442,448
    assert re.search(r"conv2d\s+1\s+counted\s+442\.37 K\s+100\.0%\s+901\.12 K\s+90\.1%", text)


def test_piped_cli_output_is_120_columns_unless_columns_says(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = run_main(capsys, "lenet", "--device", "meta", "--by", "op")
    assert code == 0 and "not shown" not in out and "FLOP/B" in out
    assert max(map(len, out.splitlines())) <= 120
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run_main(capsys, "lenet", "--device", "meta", "--by", "op")
    assert code == 0 and "not shown at 60 columns: inputs, read, written, FLOP/B" in out
    assert max(map(len, out.splitlines())) <= 60 and "…" not in out


# --- the layout itself ---------------------------------------------------------------


def test_layout_drops_in_order_then_shares_the_rest():
    name = FitColumn("name", ("conv", "a_rather_long_module_name"), right=False, cut=True)  # 25
    flops = FitColumn("FLOPs", ("236.03 M", "1.02 M"))  # 8
    shapes_ = FitColumn(
        "output", ("1×64×56×56, 1×64×56×56", "1×10"), right=False, drop=2, wraps=True
    )  # 22 on one line, 11 at the narrowest ("1×64×56×56,")
    share = FitColumn("% params", ("100.0%", "0.1%"), drop=0)  # 8
    macs = FitColumn("MACs", ("118.01 M", "512.00 K"), drop=1)  # 8
    cols = (name, macs, share, flops, shapes_)
    every = 25 + 8 + 8 + 8 + 22 + 4 * 2
    assert layout(cols, every) == Layout(cols, (25, 8, 8, 8, 22), ())
    # narrower: the shapes wrap first, down to their longest shape (11 columns)
    assert layout(cols, every - 1).widths == (25, 8, 8, 8, 21)
    assert layout(cols, every - 11) == Layout(cols, (25, 8, 8, 8, 11), ())
    # one column less: % params (first in drop order) goes, the shapes get the rest
    fit = layout(cols, every - 12)
    assert fit.hidden == ("% params",) and fit.widths == (25, 8, 8, 20)
    # then MACs: 25 + 8 + 11 + 2 gaps = 48 fit in 57, the shapes get 9 more
    fit = layout(cols, 57)
    assert fit.hidden == ("MACs", "% params") and fit.widths == (25, 8, 20)
    # the name is the only column cut: it counts at most half the width (12 of 24) while
    # columns are left out, then takes what is left (2 more); FLOPs keeps its 8
    fit = layout(cols, 24)
    assert fit.columns == (name, flops) and fit.widths == (14, 8)


def test_a_narrow_table_never_cuts_its_numbers():
    cols = (
        FitColumn("op", ("adaptive_avg_pool2d",), right=False, cut=True),
        FitColumn("FLOPs", ("236.03 M",)),
        FitColumn("MACs", ("118.01 M",), drop=0),
    )
    for width in range(14, 40):
        text = printed(FitTable("t", cols), width)
        assert "236.03 M" in text and "118.01…" not in text
        assert max(len(line) for line in text.splitlines()) <= width


def test_shapes_cells_join_with_a_space_so_they_wrap_between_shapes():
    m = (flopgraph.TensorMeta((1, 8)), flopgraph.TensorMeta((2, 3), "int64"))
    assert shapes(m) == "1×8, int64:2×3"
