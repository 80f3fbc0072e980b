"""Per-op and per-operator rows, as data, for every renderer.

An :class:`OpRow` is one record with what torchstat shows for a layer: input and
output shapes, bytes read and written, and arithmetic intensity (FLOPs per byte
moved). With ``top``, the K costliest rows are kept, largest first, and one
``(N more)`` row sums the rest, so rows always add up to the report's totals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

from ..records import Cost, OpRecord, Status, TensorMeta
from ..report import Report

MORE = "more"
"""The ``status`` of a row that sums the rows ``top`` left out."""


@dataclass(frozen=True)
class OpRow:
    """One op of the graph (or, with status ``more``, the sum of several)."""

    index: int
    """Position in graph order, from 1 (0 for a ``more`` row)."""
    node: str
    op: str
    module: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    macs: int
    flops: int
    bytes_read: int
    bytes_written: int
    status: str
    """``counted``, ``free``, ``skipped`` or ``more``."""
    reason: str = ""

    @property
    def intensity(self) -> Fraction | None:
        """FLOPs per byte read or written; None when the op moves no bytes."""
        moved = self.bytes_read + self.bytes_written
        return Fraction(self.flops, moved) if moved else None


@dataclass(frozen=True)
class OperatorRow:
    """All occurrences of one op name, summed."""

    op: str
    calls: int
    macs: int
    flops: int
    status: str
    """The status its occurrences share, ``mixed`` if they differ, ``more`` for a sum row."""


def op_rows(report: Report, top: int | None = None) -> list[OpRow]:
    """One row per record in graph order, or the ``top`` costliest ones first."""
    rows = [_op_row(i, r) for i, r in enumerate(report.records, 1)]
    return _top(rows, top, _more_ops)


def operator_rows(report: Report, top: int | None = None) -> list[OperatorRow]:
    """One row per op name, costliest first (ties by name)."""
    groups: dict[str, list[OpRecord]] = {}
    for r in report.records:
        groups.setdefault(r.op, []).append(r)
    rows = [_operator_row(op, recs) for op, recs in groups.items()]
    rows.sort(key=lambda r: (-r.flops, -r.macs, r.op))
    return _top(rows, top, _more_operators)


def _op_row(index: int, r: OpRecord) -> OpRow:
    return OpRow(
        index, r.node, r.op, r.module, r.inputs, r.outputs, r.macs, r.flops,
        r.bytes_read, r.bytes_written, r.status.value, r.reason,
    )  # fmt: skip


def _operator_row(op: str, recs: Sequence[OpRecord]) -> OperatorRow:
    statuses = {r.status for r in recs}
    status = next(iter(statuses)).value if len(statuses) == 1 else "mixed"
    cost = sum((r.cost for r in recs), Cost())
    return OperatorRow(op, len(recs), cost.macs, cost.flops, status)


def _more_ops(rows: Sequence[OpRow]) -> OpRow:
    return OpRow(
        0, "", f"({len(rows)} more)", "", (), (),
        sum(r.macs for r in rows), sum(r.flops for r in rows),
        sum(r.bytes_read for r in rows), sum(r.bytes_written for r in rows), MORE,
    )  # fmt: skip


def _more_operators(rows: Sequence[OperatorRow]) -> OperatorRow:
    return OperatorRow(
        f"({len(rows)} more)", sum(r.calls for r in rows),
        sum(r.macs for r in rows), sum(r.flops for r in rows), MORE,
    )  # fmt: skip


Row = TypeVar("Row", OpRow, OperatorRow)


def _top(rows: list[Row], top: int | None, more: Callable[[Sequence[Row]], Row]) -> list[Row]:
    if top is None or len(rows) <= top:
        return rows
    ranked: list[Row] = sorted(rows, key=lambda r: (-r.flops, -r.macs))
    return ranked[:top] + [more(ranked[top:])]


def activation_bytes(report: Report) -> int:
    """Bytes written by the ops that compute (counted ops): the forward's activations,
    not counting views, copies and other free ops."""
    return sum(r.bytes_written for r in report.records if r.status is Status.COUNTED)
