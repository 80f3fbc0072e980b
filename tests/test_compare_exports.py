"""A Comparison as CSV and as an HTML page: the API's renderers and the command line.

The CSV's numbers are read back and checked against the Comparison's own fields,
and LeNet's difference against the count derived by hand from its shapes.
"""

from __future__ import annotations

import csv
import io
from html.parser import HTMLParser

import pytest
from test_cli import run_main
from torch import nn

import flopgraph
from flopgraph import Cost
from flopgraph.examples import LeNet, TinyTransformerBlock
from flopgraph.render.compare_csv import COMPARE_FIELDS, compare_csv
from flopgraph.render.compare_html import compare_html

INTS = (
    "graph_calls", "hook_calls", "forward_without_call", "graph_macs", "graph_flops",
    "hook_macs", "hook_flops", "difference_macs", "difference_flops", "ops",
)  # fmt: skip


@pytest.fixture(scope="module")
def lenet() -> flopgraph.Comparison:
    return flopgraph.compare(LeNet(), (1, 1, 28, 28))


@pytest.fixture(scope="module")
def tiny() -> flopgraph.Comparison:
    return flopgraph.compare(TinyTransformerBlock(64, 4, 256).eval(), (1, 16, 64))


def read_csv(text: str) -> dict[str, list[dict[str, object]]]:
    """kind -> its rows, integer columns as ints (empty cells stay "")."""
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == COMPARE_FIELDS
    out: dict[str, list[dict[str, object]]] = {}
    for row in reader:
        typed = {k: int(v) if k in INTS and v != "" else v for k, v in row.items()}
        out.setdefault(row["kind"], []).append(typed)
    return out


def costs(row: dict[str, object], side: str) -> Cost:
    return Cost(int(row[f"{side}_macs"]), int(row[f"{side}_flops"]))  # type: ignore[call-overload]


# --- CSV ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet", "tiny"])
def test_csv_rows_are_the_comparisons_fields(name, request):
    c: flopgraph.Comparison = request.getfixturevalue(name)
    rows = read_csv(compare_csv(c))
    assert set(rows) == {"total", "module", "reason"}  # no peers were asked for
    (total,) = rows["total"]
    assert total["name"] == c.model and total["ops"] == len(c.differences)
    assert (costs(total, "graph"), costs(total, "hook")) == (c.graph, c.hooks)
    assert costs(total, "difference") == c.difference
    assert total["reconciled"] == "true" and total["note"] == c.reconciliation
    assert [r["name"] for r in rows["module"]] == [m.path for m in c.modules]
    for r, m in zip(rows["module"], c.modules, strict=True):
        assert (r["type"], r["leaf"]) == (m.type, "true" if m.leaf else "false"), m.path
        assert (r["graph_calls"], r["hook_calls"]) == (m.graph_calls, m.hook_calls), m.path
        assert r["forward_without_call"] == m.forward_without_call, m.path
        assert (costs(r, "graph"), costs(r, "hook")) == (m.graph, m.hooks), m.path
        assert costs(r, "difference") == m.difference, m.path
        assert r["ops"] == len(c.differences_in(m.path)), m.path
    # reason rows: each reason's ops and summed cost, straight from the differences
    expected: dict[str, tuple[int, Cost]] = {}
    for d in c.differences:
        n, cost = expected.get(d.reason.value, (0, Cost()))
        expected[d.reason.value] = (n + 1, cost + d.cost)
    got = {str(r["name"]): (r["ops"], costs(r, "difference")) for r in rows["reason"]}
    assert got == expected


def test_lenet_csv_difference_is_the_four_functional_relus(lenet):
    # F.relu on conv1's 6x28x28, conv2's 16x10x10 (6x14x14 pooled, 5x5 kernel), fc1's 120
    # and fc2's 84 outputs: modules hooks never see, 1 FLOP per element, no MACs
    relu = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84  # 4_704 + 1_600 + 120 + 84 = 6_508
    rows = read_csv(compare_csv(lenet))
    (total,) = rows["total"]
    assert costs(total, "difference") == Cost(0, relu) and total["ops"] == 4
    assert [(r["name"], r["ops"], costs(r, "difference")) for r in rows["reason"]] == [
        ("functional op", 4, Cost(0, relu))
    ]
    model, *leaves = rows["module"]
    assert model["name"] == "" and costs(model, "difference") == Cost(0, relu)
    assert model["ops_behind"] == "4x relu [functional op]"
    assert all(costs(r, "difference") == Cost() and r["ops_behind"] == "" for r in leaves)
    # conv1: 6x28x28 outputs, each a 3x3x1 dot product, plus a bias add
    conv1 = next(r for r in leaves if r["name"] == "conv1")
    assert costs(conv1, "graph") == costs(conv1, "hook") == Cost(42_336, 2 * 42_336 + 4_704)


def test_tiny_transformer_csv_difference(tiny):
    t, d, h, hd, hidden = 16, 64, 4, 16, 256
    scores = h * t * t * hd  # q @ k^T and attn @ v: [1,4,16,16] x K=16                = 16_384
    flops = 4 * scores + h * t * t + 5 * h * t * t + 2 * t * d + t * hidden  # matmuls, scale,
    # softmax (5 per element), two residual adds, gelu                              = 77_824
    rows = read_csv(compare_csv(tiny))
    assert costs(rows["total"][0], "difference") == Cost(2 * scores, flops)
    assert [(r["name"], r["ops"]) for r in rows["reason"]] == [("functional op", 7)]  # 2 matmul,
    # mul, softmax, 2 add, gelu


# --- HTML -----------------------------------------------------------------------------


class Page(HTMLParser):
    """What a test reads from the page: module rows, table ids, texts, resources."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.tables: list[str] = []
        self.tags: list[str] = []
        self.links: list[str] = []
        self.texts: dict[str, str] = {}
        self._open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "tr" and "data-path" in a:
            self.paths.append(a["data-path"] or "")
        if tag == "table":
            self.tables.append(a.get("id") or "")
        if tag in ("title", "h1") or a.get("id") == "reconciliation":
            self._open.append(a.get("id") or tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("title", "h1", "p"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts[self._open[-1]] = self.texts.get(self._open[-1], "") + data


@pytest.mark.parametrize("name", ["lenet", "tiny"])
def test_html_page_holds_every_module_and_the_reconciliation(name, request):
    c: flopgraph.Comparison = request.getfixturevalue(name)
    page = Page(compare_html(c))
    assert page.paths == [m.path for m in c.modules]
    assert page.tables == ["modules", "reasons"]
    assert page.texts["title"] == f"flopgraph compare: {c.model}"
    assert page.texts["reconciliation"] == c.reconciliation
    assert "script" not in page.tags and page.links == []  # self-contained, nothing to fetch
    assert f"{c.difference.flops:,}" in compare_html(c)


def test_html_escapes_the_model_and_module_names():
    odd = type('Net<i>&"', (nn.Module,), {"forward": lambda self, x: self.get_submodule("<b>")(x)})
    model = odd()
    model.add_module("<b>", nn.Linear(4, 4))
    c = flopgraph.compare(model, (2, 4))
    text = compare_html(c)
    assert "<i>" not in text and "<b>" not in text
    page = Page(text)
    assert page.texts["title"] == 'flopgraph compare: Net<i>&"'
    assert page.paths == ["", "<b>"]
    assert read_csv(compare_csv(c))["module"][1]["name"] == "<b>"


# --- the command line -----------------------------------------------------------------


@pytest.mark.parametrize("fmt, render", [("csv", compare_csv), ("html", compare_html)])
def test_cli_writes_the_comparison(capsys, tmp_path, lenet, fmt, render):
    expected = render(lenet)  # the CLI's LeNet is the same example on the same input
    out_file = tmp_path / f"c.{fmt}"
    code, out, err = run_main(capsys, "lenet", "--compare", "-o", str(out_file))
    assert (code, out, err) == (0, "", f"flopgraph: wrote {out_file}\n")
    assert out_file.read_text() == expected
    code, out, err = run_main(capsys, "lenet", "--compare", "--format", fmt)
    assert (code, out, err) == (0, expected, "")
