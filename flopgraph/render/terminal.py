"""The rich terminal view of a Report: totals, a module table or tree, op tables,
skipped ops. Pure: it builds renderables and prints nothing; the console that
prints them decides colour (none when it is not a terminal or NO_COLOR is set).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

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
    OP_DROP,
    OPERATOR_COLUMNS,
    OPERATOR_DROP,
    SHAPES,
    PhaseCosts,
    module_cells,
    module_columns,
    module_drop,
    op_table_rows,
    operator_cells,
    type_text,
)
from .fit import FitColumn, FitTable
from .ops import op_rows, operator_rows
from .summary import skipped_items, totals_items
from .tree import ModuleNode, RowKind, display_tree, guides

By = Literal["module", "operator", "op"]
Style = Literal["table", "tree"]


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


def _table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: Sequence[str],
    drop: Sequence[str],
) -> FitTable:
    """A table laid out for the console's width when printed (:mod:`.fit`): columns
    left out in ``drop`` order, shapes wrapped, only the name (the first column) cut."""
    return FitTable(
        title,
        tuple(
            FitColumn(
                col,
                tuple(row[i] for row in rows),
                right=col not in LEFT,
                drop=drop.index(col) if col in drop else None,
                wraps=col in SHAPES,
                cut=i == 0,
            )  # fmt: skip
            for i, col in enumerate(columns)
        ),
        tuple(styles),
    )


def module_table(
    report: Report, depth: int | None = 2, top: int | None = None, units: Units = "auto"
) -> FitTable:
    tree = display_tree(report, depth, top)
    phases = PhaseCosts.of(report)
    shown = list(guides(tree))
    rows = [module_cells(report, prefix + node.name, node, units, phases) for prefix, node in shown]
    styles = [_style(node) for _, node in shown]
    return _table("modules", module_columns(phases), rows, styles, module_drop(phases))


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


def op_table(report: Report, top: int | None = None, units: Units = "auto") -> FitTable:
    shown = op_table_rows(op_rows(report, top), units, join="\n")
    rows = [cells for cells, _ in shown]
    styles = ["dim" if status != "counted" else "" for _, status in shown]
    title = "ops" if top is None else f"top {top} ops by FLOPs"
    return _table(title, OP_COLUMNS, rows, styles, OP_DROP)


def operator_table(report: Report, top: int | None = None, units: Units = "auto") -> FitTable:
    shown = operator_rows(report, top)
    rows = [operator_cells(report, r, units) for r in shown]
    styles = ["dim" if r.status != "counted" else "" for r in shown]
    return _table("operators", OPERATOR_COLUMNS, rows, styles, OPERATOR_DROP)


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
