"""The columns of the module, operator and op tables, and each row's cells as text:
one definition shared by the terminal and Markdown renderers."""

from __future__ import annotations

from dataclasses import dataclass

from ..records import Cost, Status
from ..report import Report
from .cells import Units, nbytes, number, percent, shapes
from .cells import intensity as cell_intensity
from .ops import MORE, OperatorRow, OpRows, intensity
from .tree import ModuleNode, RowKind

MODULE_COLUMNS = (
    "module", "type", "params", "% params", "MACs", "% MACs", "FLOPs", "% FLOPs", "output",
)  # fmt: skip
OPERATOR_COLUMNS = ("op", "calls", "status", "MACs", "% MACs", "FLOPs", "% FLOPs")
OP_COLUMNS = (
    "#", "op", "module", "inputs", "outputs", "MACs", "FLOPs", "read", "written", "FLOP/B",
)  # fmt: skip
LEFT = frozenset({"module", "type", "output", "op", "inputs", "outputs", "status", "where"})
"""Text columns (left-aligned); the others hold numbers."""
SHAPES = frozenset({"output", "inputs", "outputs"})
"""Columns of tensor shapes: a narrow terminal wraps them between shapes."""

MODULE_DROP = ("% params", "% MACs", "output", "params", "type", "MACs", "% FLOPs")
OPERATOR_DROP = ("% MACs", "status", "calls", "MACs", "% FLOPs")
OP_DROP = ("FLOP/B", "read", "written", "inputs", "outputs", "MACs", "module", "#")
"""The order a table too wide for its terminal leaves columns out in, least useful
first; the name column (``module``, ``op``) and FLOPs are always shown."""


def type_text(node: ModuleNode) -> str:
    """``Linear``, ``MaxPool2d ×2`` (called twice), ``Dropout (not called)``; a
    container whose children ran (a ModuleList) is just its type."""
    if node.kind is not RowKind.MODULE:
        return ""
    if not node.ran:
        return f"{node.type} (not called)"
    return node.type if node.calls <= 1 else f"{node.type} ×{node.calls}"


@dataclass(frozen=True)
class PhaseCosts:
    """A training step's FLOPs per phase and module, for the module views' phase
    columns: cumulative per module, and each module's own ops (its ``(self)`` row)."""

    phases: tuple[str, ...]
    cumulative: dict[str, dict[str, Cost]]
    own: dict[str, dict[str, Cost]]

    @classmethod
    def of(cls, report: Report) -> PhaseCosts | None:
        """None for a forward-only report (no phase columns)."""
        if report.step is None:
            return None
        phases = tuple(report.by_phase())
        own: dict[str, dict[str, Cost]] = {p: {} for p in phases}
        for r in report.records:
            if r.flops or r.macs:
                own[r.phase][r.module] = own[r.phase].get(r.module, Cost()) + r.cost
        return cls(phases, {p: report.by_module(phase=p) for p in phases}, own)

    def columns(self) -> tuple[str, ...]:
        return tuple(f"{p} FLOPs" for p in self.phases)

    def cells(self, node: ModuleNode, units: Units) -> list[str]:
        if node.kind is RowKind.MORE:  # its modules are summed elsewhere: not split here
            return ["" for _ in self.phases]
        table = self.own if node.kind is RowKind.SELF else self.cumulative
        return [number(table[p].get(node.path, Cost()).flops, units) for p in self.phases]


def module_columns(phases: PhaseCosts | None) -> tuple[str, ...]:
    """MODULE_COLUMNS, with a FLOPs column per phase after ``% FLOPs`` for a step."""
    if phases is None:
        return MODULE_COLUMNS
    # a step's view trades % params and output shapes (the forward's) for its phases
    return ("module", "type", "params", "MACs", "% MACs", "FLOPs", "% FLOPs", *phases.columns())


def module_drop(phases: PhaseCosts | None) -> tuple[str, ...]:
    """MODULE_DROP; a step's phase columns go after type, the last phase first."""
    if phases is None:
        return MODULE_DROP
    cut = MODULE_DROP.index("type") + 1
    return (*MODULE_DROP[:cut], *reversed(phases.columns()), *MODULE_DROP[cut:])


def module_cells(
    report: Report, name: str, node: ModuleNode, units: Units, phases: PhaseCosts | None = None
) -> list[str]:
    """The cells of ``module_columns(phases)``; a ``(self)`` row shows params only when
    it has some."""
    params = "" if node.kind is RowKind.SELF and not node.params else f"{node.params:,}"
    cost = [number(node.cost.macs, units), percent(node.cost.macs, report.macs),
            number(node.cost.flops, units), percent(node.cost.flops, report.flops)]  # fmt: skip
    if phases is not None:
        return [name, type_text(node), params, *cost, *phases.cells(node, units)]
    share = percent(node.params, report.params.total) if params else ""
    return [name, type_text(node), params, share, *cost, shapes(node.outputs)]


def operator_cells(report: Report, r: OperatorRow, units: Units) -> list[str]:
    return [
        r.op, f"{r.calls:,}", "" if r.status == MORE else r.status, number(r.macs, units),
        percent(r.macs, report.macs), number(r.flops, units), percent(r.flops, report.flops),
    ]  # fmt: skip


def op_table_rows(rows: OpRows, units: Units, join: str = ", ") -> list[tuple[list[str], str]]:
    """``(cells of OP_COLUMNS, status)`` per shown op, then one row summing the rest
    (status ``""``). A free or skipped op says so after its name, an op of a training
    step's backward, recompute or optimizer its phase; an op's several input or output
    shapes are joined by ``join``."""
    out = []
    for index, r in rows.shown:
        op = r.op if r.status is Status.COUNTED else f"{r.op} ({r.status.value})"
        op = op if r.phase == "forward" else f"{op} ({r.phase})"  # a step's later phases
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
