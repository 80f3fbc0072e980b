"""The report as GitHub-flavoured Markdown: totals, the chosen view, skipped ops."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..report import Report
from . import columns as col
from .cells import Units
from .ops import op_rows, operator_rows
from .summary import skipped_items, totals_items
from .tree import display_tree, flatten, label


def render_markdown(
    report: Report,
    *,
    depth: int | None = 2,
    by: str = "module",
    top: int | None = None,
    units: Units = "auto",
) -> str:
    """A Markdown document; module rows carry their full dotted path."""
    parts = [f"# flopgraph: {_cell(report.model)}", _table(("", ""), totals_items(report, units))]
    if by == "module":
        parts += ["## Modules", _modules(report, depth, top, units)]
    elif by == "operator":
        parts += ["## Operators", _operators(report, top, units)]
    else:
        parts += ["## Ops", _ops(report, top, units)]
    if report.skipped:
        rows = [(op, f"{n:,}", where) for op, n, where in skipped_items(report)]
        title = "## Skipped ops (no handler; counted as 0)"
        parts += [title, _table(("op", "count", "where"), rows)]
    return "\n\n".join(parts) + "\n"


def _modules(report: Report, depth: int | None, top: int | None, units: Units) -> str:
    tree = display_tree(report, depth, top)
    phases = col.PhaseCosts.of(report)
    rows = [col.module_cells(report, label(node), node, units, phases) for _, node in flatten(tree)]
    return _table(col.module_columns(phases), rows)


def _operators(report: Report, top: int | None, units: Units) -> str:
    rows = [col.operator_cells(report, r, units) for r in operator_rows(report, top)]
    return _table(col.OPERATOR_COLUMNS, rows)


def _ops(report: Report, top: int | None, units: Units) -> str:
    return _table(
        col.OP_COLUMNS, [cells for cells, _ in col.op_table_rows(op_rows(report, top), units)]
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rule = ["---" if c in col.LEFT or not c else "---:" for c in head]
    lines = [_line(head), _line(rule)] + [_line(r) for r in rows]
    return "\n".join(lines)


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
