"""The columns of the module, operator and op tables, and each row's cells as text:
one definition shared by the terminal and Markdown renderers."""

from __future__ import annotations

from ..records import Cost, Status
from ..report import Report
from .cells import Units, nbytes, number, percent, shapes
from .cells import intensity as cell_intensity
from .ops import MORE, OperatorRow, OpRows, intensity
from .tree import ModuleNode, RowKind

MODULE_COLUMNS = ("module", "type", "params", "% params", "MACs", "FLOPs", "% FLOPs", "output")
OPERATOR_COLUMNS = ("op", "calls", "status", "MACs", "FLOPs", "% FLOPs")
OP_COLUMNS = (
    "#", "op", "module", "inputs", "outputs", "MACs", "FLOPs", "read", "written", "FLOP/B",
)  # fmt: skip
LEFT = frozenset({"module", "type", "output", "op", "inputs", "outputs", "status", "where"})
"""Text columns (left-aligned); the others hold numbers."""


def type_text(node: ModuleNode) -> str:
    """``Linear``, ``MaxPool2d ×2`` (called twice), ``Dropout (not called)``."""
    if node.kind is not RowKind.MODULE:
        return ""
    if node.calls == 0:
        return f"{node.type} (not called)"
    return node.type if node.calls == 1 else f"{node.type} ×{node.calls}"


def module_cells(report: Report, name: str, node: ModuleNode, units: Units) -> list[str]:
    """The cells of MODULE_COLUMNS; a ``(self)`` row shows params only when it has some."""
    params = "" if node.kind is RowKind.SELF and not node.params else f"{node.params:,}"
    return [
        name,
        type_text(node),
        params,
        percent(node.params, report.params.total) if params else "",
        number(node.cost.macs, units),
        number(node.cost.flops, units),
        percent(node.cost.flops, report.flops),
        shapes(node.outputs),
    ]


def operator_cells(report: Report, r: OperatorRow, units: Units) -> list[str]:
    return [
        r.op, f"{r.calls:,}", "" if r.status == MORE else r.status, number(r.macs, units),
        number(r.flops, units), percent(r.flops, report.flops),
    ]  # fmt: skip


def op_table_rows(rows: OpRows, units: Units, join: str = ", ") -> list[tuple[list[str], str]]:
    """``(cells of OP_COLUMNS, status)`` per shown op, then one row summing the rest
    (status ``""``). A free or skipped op says so after its name; an op's several
    input or output shapes are joined by ``join``."""
    out = []
    for index, r in rows.shown:
        op = r.op if r.status is Status.COUNTED else f"{r.op} ({r.status.value})"
        head = [str(index), op, r.module, shapes(r.inputs, join=join), shapes(r.outputs, join=join)]
        out.append((head + _moved(r.cost, r.bytes_read, r.bytes_written, units), r.status.value))
    if rows.rest:
        head = ["", f"({len(rows.rest)} more)", "", "", ""]
        out.append((head + _moved(rows.rest_cost, *rows.rest_bytes, units), ""))
    return out


def _moved(cost: Cost, read: int, written: int, units: Units) -> list[str]:
    return [
        number(cost.macs, units), number(cost.flops, units), nbytes(read, units),
        nbytes(written, units), cell_intensity(intensity(cost.flops, read, written)),
    ]  # fmt: skip
