"""A Comparison as CSV: one table whose ``kind`` column says what each row is.

One header row, so any CSV reader takes the whole file and a spreadsheet filters
on ``kind``: the ``total`` row first, then one ``module`` row per module (every
module, in tree order, uncollapsed, as the report's CSV), one ``reason`` row per
reason with differences, and one ``peer`` row per peer counter (``peers=True``).
Each kind fills its own columns and leaves the others empty (docs/json-schema.md
lists which). Numbers are exact integers; booleans read ``true``/``false``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ..records import Cost
from .compare import ops_behind, reason_counts
from .csv_export import write_rows

if TYPE_CHECKING:
    from ..compare import Comparison

COMPARE_FIELDS = (
    "kind", "name", "type", "leaf", "graph_calls", "hook_calls", "forward_without_call",
    "graph_macs", "graph_flops", "hook_macs", "hook_flops", "difference_macs",
    "difference_flops", "ops", "ops_behind", "peer_status", "peer_unit", "peer_raw",
    "peer_flops", "reconciled", "note",
)  # fmt: skip

Cells = Mapping[str, object]


def compare_csv(c: Comparison) -> str:
    """The comparison as CSV text (header row first, ``\\n`` line ends)."""
    return write_rows(
        COMPARE_FIELDS, ([row.get(f, "") for f in COMPARE_FIELDS] for row in _rows(c))
    )


def _rows(c: Comparison) -> Iterator[Cells]:
    yield {
        "kind": "total", "name": c.model, **_cost("graph", c.graph), **_cost("hook", c.hooks),
        **_cost("difference", c.difference), "ops": len(c.differences),
        "reconciled": _bool(c.reconciled), "note": c.reconciliation,
    }  # fmt: skip
    for m in c.modules:
        own = c.differences_in(m.path)
        yield {
            "kind": "module", "name": m.path, "type": m.type, "leaf": _bool(m.leaf),
            "graph_calls": m.graph_calls, "hook_calls": m.hook_calls,
            "forward_without_call": m.forward_without_call, **_cost("graph", m.graph),
            **_cost("hook", m.hooks), **_cost("difference", m.difference), "ops": len(own),
            "ops_behind": ops_behind(own),
        }  # fmt: skip
    counts = reason_counts(c)
    for reason, cost in c.by_reason().items():
        yield {
            "kind": "reason", "name": reason.value, **_cost("difference", cost),
            "ops": counts[reason], "note": reason.explanation,
        }  # fmt: skip
    for p in c.peers:
        flops = p.flops  # None: the peer is missing or failed, and counted nothing
        yield {
            "kind": "peer", "name": p.name, "graph_flops": p.graph_flops,
            "difference_flops": "" if flops is None else p.graph_flops - flops,
            "peer_status": p.status, "peer_unit": p.unit, "peer_raw": _blank(p.raw),
            "peer_flops": _blank(flops), "reconciled": "" if flops is None else _bool(p.reconciled),
            "note": p.reason if flops is None else p.mechanism,
        }  # fmt: skip


def _cost(prefix: str, cost: Cost) -> dict[str, int]:
    return {f"{prefix}_macs": cost.macs, f"{prefix}_flops": cost.flops}


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _blank(value: int | None) -> object:
    return "" if value is None else value
