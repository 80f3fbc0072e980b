"""The columns of the module, operator and op tables, and each row's cells as text:
one definition shared by the terminal and Markdown renderers."""

from __future__ import annotations

from ..report import Report
from .cells import Units, intensity, nbytes, number, percent, shapes
from .ops import MORE, OperatorRow, OpRow
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


def op_cells(r: OpRow, units: Units, join: str = ", ") -> list[str]:
    """The cells of OP_COLUMNS; a free or skipped op says so after its name; an op's
    several input or output shapes are joined by ``join``."""
    op = r.op if r.status in ("counted", MORE) else f"{r.op} ({r.status})"
    return [
        str(r.index) if r.index else "", op, r.module, shapes(r.inputs, join=join),
        shapes(r.outputs, join=join),
        number(r.macs, units), number(r.flops, units), nbytes(r.bytes_read, units),
        nbytes(r.bytes_written, units), intensity(r.intensity),
    ]  # fmt: skip
