"""Renderings of a Comparison: a rich view for the terminal, and Markdown.

Pure functions: they build a renderable or a string and print nothing. Both
show the same parts: totals, the module tree (graph, hooks, difference, call
counts and the ops behind each difference), the differences by reason, the
peers if any, and the reconciliation line. The cells of those parts are built
here once, for these and for the HTML page (:mod:`.compare_html`); CSV
(:mod:`.compare_csv`) writes exact integers instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..differences import Difference, ModuleRow, Reason
from ..peers import STATED_UNIT, PeerResult
from ..report import _ancestors

if TYPE_CHECKING:
    from ..compare import Comparison

MODULE_COLUMNS = ("module", "type", "calls graph/hooks", "graph FLOPs", "hook FLOPs",
                  "difference", "ops behind it")  # fmt: skip
REASON_COLUMNS = ("reason", "ops", "FLOPs", "MACs", "why")
PEER_COLUMNS = ("counter", "status", "reports", "raw total", "in FLOPs", "flopgraph - counter")


def compare_table(c: Comparison, *, all_modules: bool = False) -> RenderableType:
    """The terminal view; ``all_modules`` lists every module, not only those
    with a difference, a call-count note or no calls (and their ancestors)."""
    parts: list[RenderableType] = [_header(c), _module_table(c, all_modules)]
    if c.differences:
        parts.append(_reason_table(c))
    if c.peers:
        parts.append(_peer_table(c.peers))
    parts.append(Text(c.reconciliation, style="bold green" if c.reconciled else "bold red"))
    return Group(*parts)


def compare_markdown(c: Comparison, *, all_modules: bool = False) -> str:
    """The same content as :func:`compare_table`, as GitHub Markdown."""
    lines = [f"## {c.model}: graph against hooks", "", *summary_lines(c), ""]
    lines += _md_table(MODULE_COLUMNS, [module_cells(c, r) for r in rows(c, all_modules)])
    if c.differences:
        lines += ["", "### Differences by reason", ""]
        lines += _md_table(REASON_COLUMNS, reason_cells(c))
    if c.peers:
        lines += ["", "### Other counters", "", f"All gaps in {STATED_UNIT}.", ""]
        lines += _md_table(PEER_COLUMNS, [peer_cells(p) for p in c.peers])
        for p in c.peers:
            lines += ["", f"**{p.name}** ({p.mechanism}):", ""]
            lines += [f"- {line}" for line in gap_lines(p)]
    return "\n".join([*lines, "", f"**{c.reconciliation}**", ""])


def rows(c: Comparison, all_modules: bool = False) -> list[ModuleRow]:
    """The module rows shown: all, or the notable ones with their ancestors
    (a difference, called other than once on either side, a forward run
    without ``__call__``)."""
    if all_modules:
        return list(c.modules)
    keep = {""}
    for r in c.modules:
        if _notable(r):
            keep.update(_ancestors(r.path))
    return [r for r in c.modules if r.path in keep]


def _notable(r: ModuleRow) -> bool:
    return (
        r.difference.flops != 0
        or r.difference.macs != 0
        or r.graph_calls != r.hook_calls
        or r.hook_calls != 1
        or r.graph_calls != 1
        or r.forward_without_call > 0
    )


def summary_lines(c: Comparison) -> list[str]:
    """Two sentences: the input, convention and frontend; both totals and the gap."""
    inputs = ", ".join(map(str, c.inputs)) or "no tensor input"
    d = c.difference
    real = ", real run" if c.frontend.real_run else ""
    return [
        f"Input {inputs}; convention {c.convention}; graph from the {c.frontend.name} "
        f"frontend{real}.",
        f"Graph: {c.graph.flops:,} FLOPs, {c.graph.macs:,} MACs. "
        f"Hooks on leaf modules: {c.hooks.flops:,} FLOPs, {c.hooks.macs:,} MACs. "
        f"Hooks miss {d.flops:,} FLOPs ({d.macs:,} MACs) in {len(c.differences)} op(s).",
    ]


def _header(c: Comparison) -> Panel:
    return Panel("\n".join(summary_lines(c)), title=f"flopgraph compare: {c.model}", expand=False)


def _module_table(c: Comparison, all_modules: bool) -> Table:
    table = Table(title="by module (cumulative; ops listed where they ran)")
    for col in MODULE_COLUMNS:
        table.add_column(
            col, justify="left" if col in ("module", "type", "ops behind it") else "right"
        )
    for r in rows(c, all_modules):
        table.add_row(*map(Text, module_cells(c, r)))
    return table


def module_name(r: ModuleRow) -> tuple[int, str]:
    """The row's level below the model and its own name (``(model)`` for the model)."""
    if not r.path:
        return 0, "(model)"
    return r.path.count(".") + 1, r.path.rsplit(".", 1)[-1]


def module_cells(c: Comparison, r: ModuleRow) -> list[str]:
    """The cells of :data:`MODULE_COLUMNS`; the name indented two spaces a level."""
    level, short = module_name(r)
    name = "  " * level + short
    calls = f"{r.graph_calls}/{r.hook_calls}"
    if r.forward_without_call:
        calls += f" (+{r.forward_without_call} forward only)"
    elif r.graph_calls == 0 and r.hook_calls == 0:
        calls += " never called"
    kind = f"{r.type} (leaf)" if r.leaf else r.type
    return [name, kind, calls, f"{r.graph.flops:,}", f"{r.hooks.flops:,}",
            f"{r.difference.flops:,}", ops_behind(c.differences_in(r.path))]  # fmt: skip


def ops_behind(diffs: tuple[Difference, ...]) -> str:
    """The ops as ``2x add [functional op]; 1x relu [...]``, in order of first appearance."""
    groups: dict[tuple[str, str], int] = {}
    for d in diffs:
        key = (d.op, d.reason.value)
        groups[key] = groups.get(key, 0) + 1
    return "; ".join(f"{n}x {op} [{reason}]" for (op, reason), n in groups.items())


def reason_counts(c: Comparison) -> dict[Reason, int]:
    """Reason -> how many differences have it (the ops behind :meth:`Comparison.by_reason`)."""
    counts: dict[Reason, int] = {}
    for d in c.differences:
        counts[d.reason] = counts.get(d.reason, 0) + 1
    return counts


def reason_cells(c: Comparison) -> list[list[str]]:
    """The cells of :data:`REASON_COLUMNS`, one row per reason with differences."""
    counts = reason_counts(c)
    return [
        [reason.value, str(counts[reason]), f"{cost.flops:,}", f"{cost.macs:,}",
         reason.explanation]
        for reason, cost in c.by_reason().items()
    ]  # fmt: skip


def _reason_table(c: Comparison) -> Table:
    table = Table(title="differences by reason")
    for col in REASON_COLUMNS:
        table.add_column(col, justify="right" if col in ("ops", "FLOPs", "MACs") else "left")
    for cells in reason_cells(c):
        table.add_row(*map(Text, cells))
    return table


def peer_cells(p: PeerResult) -> list[str]:
    """The cells of :data:`PEER_COLUMNS`."""
    if p.raw is None or p.flops is None:
        return [p.name, f"{p.status}: {p.reason}", p.unit, "-", "-", "-"]
    status = "ok" if p.reconciled else f"ok (NOT reconciled: {p.unexplained:+,} unexplained)"
    return [p.name, status, p.unit + "s", f"{p.raw:,}", f"{p.flops:,}",
            f"{p.graph_flops - p.flops:,}"]  # fmt: skip


def gap_lines(p: PeerResult) -> Iterator[str]:
    """The peer's walk from its raw total to flopgraph's FLOPs, a line per gap."""
    if p.raw is None:
        yield f"{p.status}: {p.reason}"
        return
    yield f"reports {p.raw:,} {p.unit}s"
    for g in p.gaps:
        what = f": {g.op} x{g.occurrences}" if g.op else ""
        note = f" ({g.note})" if g.note else ""
        yield f"{g.delta:+,} {g.kind.value}{what}{note}"
    verdict = "" if p.reconciled else f" (NOT reconciled: {p.unexplained:+,} FLOPs unexplained)"
    yield f"= {p.graph_flops:,} flopgraph FLOPs{verdict}"


def _peer_table(peers: tuple[PeerResult, ...]) -> Group:
    table = Table(title="other counters on the same model and input")
    for col in PEER_COLUMNS:
        table.add_column(
            col, justify="left" if col in ("counter", "status", "reports") else "right"
        )
    for p in peers:
        table.add_row(*map(Text, peer_cells(p)))
    unit = Text(f"gaps in {STATED_UNIT}; each walk ends at flopgraph's FLOPs")
    walks = [Text(f"{p.name}: " + "\n  ".join(gap_lines(p))) for p in peers]
    return Group(table, unit, *walks)


def _md_table(header: tuple[str, ...], body: list[list[str]]) -> list[str]:
    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(cells) for cells in body)]
