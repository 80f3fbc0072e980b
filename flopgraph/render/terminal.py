"""The rich terminal view of a Report: totals, a module table, skipped ops."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from ..units import human, human_bytes

if TYPE_CHECKING:
    from ..report import Report


def render_report(report: Report, depth: int = 2) -> RenderableType:
    """Totals, then modules down to ``depth`` levels, then skipped ops if any."""
    parts: list[RenderableType] = [_totals(report), _modules(report, depth)]
    if report.skipped:
        parts.append(_skipped(report))
    return Group(*parts)


def _totals(report: Report) -> Panel:
    p = report.params
    text = (
        f"[bold]{report.model}[/] on {', '.join(map(str, report.inputs)) or 'no tensor input'}\n"
        f"FLOPs {human(report.flops)} ({report.flops:,})   "
        f"MACs {human(report.macs)} ({report.macs:,})   convention: {report.convention}\n"
        f"Params {human(p.total)} ({p.total:,}; trainable {p.trainable:,}, "
        f"non-trainable {p.non_trainable:,}; {human_bytes(p.param_bytes)})   "
        f"buffers {p.buffers:,}   frontend: {report.frontend.name}"
    )
    return Panel(text, title="flopgraph", expand=False)


def _modules(report: Report, depth: int) -> Table:
    costs = report.by_module()
    total = report.flops or 1
    table = Table(title="by module", show_lines=False)
    for col in ("module", "type", "params", "MACs", "FLOPs", "% FLOPs"):
        table.add_column(col, justify="left" if col in ("module", "type") else "right")
    for m in report.modules:
        level = 0 if m.path == "" else m.path.count(".") + 1
        if level > depth:
            continue
        c = costs.get(m.path)
        if c is None:
            continue
        name = "  " * level + (m.path.rsplit(".", 1)[-1] if m.path else "(model)")
        table.add_row(
            name, m.type, f"{m.params:,}", human(c.macs), human(c.flops),
            f"{100 * c.flops / total:.1f}",
        )  # fmt: skip
    return table


def _skipped(report: Report) -> Panel:
    lines = [f"{op}: {s.count} time(s)" for op, s in report.skipped.items()]
    return Panel("\n".join(lines), title="skipped ops (counted as 0)", border_style="yellow")
