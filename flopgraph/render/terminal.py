"""The rich terminal view of a Report: totals, a module table or tree, op tables,
skipped ops. Pure: it builds renderables and prints nothing; the console that
prints them decides colour (none when it is not a terminal or NO_COLOR is set).
"""

from __future__ import annotations

from typing import Literal

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..report import Report
from .cells import Units, percent, shapes, with_unit
from .columns import (
    LEFT,
    OP_COLUMNS,
    OPERATOR_COLUMNS,
    PhaseCosts,
    module_cells,
    module_columns,
    op_table_rows,
    operator_cells,
    type_text,
)
from .ops import op_rows, operator_rows
from .summary import skipped_items, totals_items
from .tree import ModuleNode, RowKind, display_tree, guides

By = Literal["module", "operator", "op"]
Style = Literal["table", "tree"]

_WRAP = {"output", "inputs", "outputs", "op module"}
"""Columns that may wrap (between shapes) in a narrow terminal; a shape or name too
long is cut with an ellipsis, never folded; numbers are never cut."""


def render_report(
    report: Report,
    *,
    depth: int | None = 2,
    by: By = "module",
    top: int | None = None,
    units: Units = "auto",
    style: Style = "table",
) -> RenderableType:
    """Totals, then the view ``by`` asks for, then the skipped ops if any.

    ``depth`` and ``top`` limit the module view (levels shown, costliest
    children kept) and ``top`` the op views (costliest rows kept)."""
    parts: list[RenderableType] = [totals_panel(report, units)]
    if by == "module" and style == "tree":
        parts.append(module_tree(report, depth, top, units))
    elif by == "module":
        parts.append(module_table(report, depth, top, units))
    elif by == "operator":
        parts.append(operator_table(report, top, units))
    else:
        parts.append(op_table(report, top, units))
    if report.skipped:
        parts.append(skipped_panel(report))
    spaced: list[RenderableType] = []
    for part in parts:
        spaced += [part, Text("")]
    return Group(*spaced[:-1])


def totals_panel(report: Report, units: Units = "auto") -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, text in totals_items(report, units):
        grid.add_row(label, text)
    return Panel(grid, title="flopgraph", title_align="left", expand=False)


def _table(title: str, columns: tuple[str, ...], kind: str = "") -> Table:
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
        show_edge=False, collapse_padding=True,
    )  # fmt: skip
    for col in columns:
        wraps = col in _WRAP or f"{kind} {col}" in _WRAP
        table.add_column(
            col, justify="left" if col in LEFT else "right", no_wrap=not wraps,
            overflow="ellipsis", min_width=None if wraps else len(col),
        )  # fmt: skip
    return table


def module_table(
    report: Report, depth: int | None = 2, top: int | None = None, units: Units = "auto"
) -> Table:
    tree = display_tree(report, depth, top)
    phases = PhaseCosts.of(report)
    table = _table("modules", module_columns(phases))
    for prefix, node in guides(tree):
        cells = module_cells(report, prefix + node.name, node, units, phases)
        table.add_row(*cells, style=_style(node))
    return table


def _style(node: ModuleNode) -> str:
    if node.kind is not RowKind.MODULE or not node.ran:
        return "dim"
    return "bold" if not node.path else ""


def module_tree(
    report: Report, depth: int | None = 2, top: int | None = None, units: Units = "auto"
) -> Tree:
    root = display_tree(report, depth, top)

    def label(node: ModuleNode) -> Text:
        kind = type_text(node)
        if node.kind is RowKind.MODULE and not node.path:
            head = kind  # the model itself
        else:
            head = f"{node.name} ({kind})" if kind else node.name
        parts = [
            with_unit(node.cost.flops, "FLOPs", units),
            percent(node.cost.flops, report.flops),
            f"{node.params:,} params" if node.kind is RowKind.MODULE or node.params else "",
        ]
        if node.outputs:
            parts.append(f"→ {shapes(node.outputs)}")
        return Text(f"{head}  " + " · ".join(p for p in parts if p), style=_style(node))

    def grow(branch: Tree, node: ModuleNode) -> None:
        for child in node.children:
            grow(branch.add(label(child)), child)

    tree = Tree(label(root), guide_style="dim")
    grow(tree, root)
    return tree


def op_table(report: Report, top: int | None = None, units: Units = "auto") -> Table:
    table = _table("ops" if top is None else f"top {top} ops by FLOPs", OP_COLUMNS, "op")
    for cells, status in op_table_rows(op_rows(report, top), units, join="\n"):
        table.add_row(*cells, style="dim" if status != "counted" else "")
    return table


def operator_table(report: Report, top: int | None = None, units: Units = "auto") -> Table:
    table = _table("operators", OPERATOR_COLUMNS)
    for r in operator_rows(report, top):
        cells = operator_cells(report, r, units)
        table.add_row(*cells, style="dim" if r.status != "counted" else "")
    return table


def skipped_panel(report: Report) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column()
    table.add_column(justify="right")
    table.add_column()
    for op, count, where in skipped_items(report):
        table.add_row(op, f"{count}×", f"in {where}")
    return Panel(
        table, title="skipped ops (no handler; counted as 0)", title_align="left",
        border_style="yellow", expand=False,
    )  # fmt: skip
