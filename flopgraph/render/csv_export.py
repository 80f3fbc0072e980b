"""The report as CSV: one row per module, operator or op, exact integers only.

Module rows list every module (no collapsing, ``(self)`` costs in their own
columns) so a spreadsheet can re-derive any view; ``depth`` drops deeper rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from fractions import Fraction

from ..report import Report
from .cells import shapes
from .ops import intensity, op_rows, operator_rows
from .tree import flatten, limit, module_tree

MODULE_FIELDS = (
    "path", "type", "level", "calls", "params", "macs", "flops", "self_macs", "self_flops",
    "output",
)  # fmt: skip
OPERATOR_FIELDS = ("op", "calls", "status", "macs", "flops")
OP_FIELDS = (
    "index", "node", "op", "module", "status", "reason", "inputs", "outputs", "macs", "flops",
    "bytes_read", "bytes_written", "flops_per_byte", "phase",
)  # fmt: skip


def render_csv(
    report: Report, *, depth: int | None = None, by: str = "module", top: int | None = None
) -> str:
    if by == "module":
        return write_rows(MODULE_FIELDS, _module_rows(report, depth))
    if by == "operator":
        rows = [(r.op, r.calls, r.status, r.macs, r.flops) for r in operator_rows(report, top)]
        return write_rows(OPERATOR_FIELDS, rows)
    return write_rows(OP_FIELDS, _op_rows(report, top))


def _module_rows(report: Report, depth: int | None) -> Iterable[Sequence[object]]:
    tree = module_tree(report)
    if depth is not None:
        tree = limit(tree, depth)
    for level, n in flatten(tree):
        if n.kind.value != "module":
            continue
        yield (n.path, n.type, level, n.calls, n.params, n.cost.macs, n.cost.flops,
               n.own.macs, n.own.flops, shapes(n.outputs, "x"))  # fmt: skip


def _op_rows(report: Report, top: int | None) -> Iterable[Sequence[object]]:
    rows = op_rows(report, top)
    for index, r in rows.shown:
        yield (index, r.node, r.op, r.module, r.status.value, r.reason, shapes(r.inputs, "x"),
               shapes(r.outputs, "x"), r.macs, r.flops, r.bytes_read, r.bytes_written,
               _ratio(intensity(r.flops, r.bytes_read, r.bytes_written)), r.phase)  # fmt: skip
    if rows.rest:
        cost, (read, written) = rows.rest_cost, rows.rest_bytes
        yield ("", "", f"({len(rows.rest)} more)", "", "", "", "", "", cost.macs, cost.flops,
               read, written, _ratio(intensity(cost.flops, read, written)), "")  # fmt: skip


def _ratio(x: Fraction | None) -> str:
    return "" if x is None else f"{float(x):.6g}"


def write_rows(fields: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A header row, then the rows: every flopgraph CSV is written this one way."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows(rows)
    return buf.getvalue()
