"""Per-op and per-operator rows, as data, for every renderer.

:func:`op_rows` gives the records an op table shows (with what torchstat shows
for a layer: input and output shapes, bytes read and written, and arithmetic
intensity, FLOPs per byte moved). With ``top``, the K costliest are kept, largest
first, and the rest are summed in one ``(N more)`` row, so rows always add up to
the report's totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ..records import Cost, OpRecord, Status
from ..report import Report
from ..symbolic import rank

MORE = "more"
"""The ``status`` of an operator row that sums the rows ``top`` left out."""


@dataclass(frozen=True)
class OpRows:
    """The ops an op table shows, and those ``top`` left out."""

    shown: tuple[tuple[int, OpRecord], ...]
    """``(position in graph order from 1, record)``."""
    rest: tuple[OpRecord, ...] = ()

    @property
    def rest_cost(self) -> Cost:
        return sum((r.cost for r in self.rest), Cost())

    @property
    def rest_bytes(self) -> tuple[int, int]:
        """Bytes read and written by the left-out ops together."""
        return sum(r.bytes_read for r in self.rest), sum(r.bytes_written for r in self.rest)


def intensity(flops: int, bytes_read: int, bytes_written: int) -> Fraction | None:
    """FLOPs per byte read or written; None when nothing moves."""
    moved = bytes_read + bytes_written
    return Fraction(flops, moved) if moved else None


@dataclass(frozen=True)
class OperatorRow:
    """All occurrences of one op name, summed."""

    op: str
    calls: int
    macs: int
    flops: int
    status: str
    """The status its occurrences share, ``mixed`` if they differ, ``more`` for a sum row."""


def op_rows(report: Report, top: int | None = None) -> OpRows:
    """Every record in graph order, or the ``top`` costliest first and the rest apart."""
    rows = tuple(enumerate(report.records, 1))
    if top is None or len(rows) <= top:
        return OpRows(rows)
    ranked = sorted(rows, key=lambda ir: (-rank(ir[1].flops), -rank(ir[1].macs)))
    return OpRows(tuple(ranked[:top]), tuple(r for _, r in ranked[top:]))


def operator_rows(report: Report, top: int | None = None) -> list[OperatorRow]:
    """One row per op name, costliest first (ties by name)."""
    groups: dict[str, list[OpRecord]] = {}
    for r in report.records:
        groups.setdefault(r.op, []).append(r)
    rows = [_operator_row(op, recs) for op, recs in groups.items()]
    rows.sort(key=lambda r: (-rank(r.flops), -rank(r.macs), r.op))
    if top is None or len(rows) <= top:
        return rows
    return rows[:top] + [_more_operators(rows[top:])]


def _operator_row(op: str, recs: Sequence[OpRecord]) -> OperatorRow:
    statuses = {r.status for r in recs}
    status = next(iter(statuses)).value if len(statuses) == 1 else "mixed"
    cost = sum((r.cost for r in recs), Cost())
    return OperatorRow(op, len(recs), cost.macs, cost.flops, status)


def _more_operators(rows: Sequence[OperatorRow]) -> OperatorRow:
    return OperatorRow(
        f"({len(rows)} more)", sum(r.calls for r in rows),
        sum(r.macs for r in rows), sum(r.flops for r in rows), MORE,
    )  # fmt: skip


def activation_bytes(report: Report) -> int:
    """Bytes written by the ops that compute (counted ops): the forward's activations,
    not counting views, copies and other free ops."""
    return sum(r.bytes_written for r in report.records if r.status is Status.COUNTED)
