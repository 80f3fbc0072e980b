"""The report as one self-contained HTML page: totals, a FLOPs treemap (click a
block to zoom in), the module tree as a folding table, operators, skipped ops.

Everything is inline (CSS, JS, the data as JSON; the treemap is drawn as SVG by
the page's script), so the file opens anywhere with no network access.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from typing import Any

from ..report import Report
from ..symbolic import rank
from .cells import Units, exact, number, percent, shapes
from .columns import PhaseCosts
from .ops import MORE, operator_rows
from .summary import skipped_items, totals_items
from .tree import ModuleNode, display_tree, flatten, label

STATIC = files(__package__) / "static"
"""The pages' stylesheet and script, inlined into every page (no external resources)."""


def render_html(report: Report, *, units: Units = "auto") -> str:
    """The page as a string; the module tree is shown whole (collapsed wrappers,
    ``(self)`` rows), folded to two levels when it opens."""
    data = {
        "model": report.model,
        "params": report.params.total,
        "tree": _node(display_tree(report), units),
    }
    esc = html.escape
    totals = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in totals_items(report, units))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en" data-flopgraph="loading">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>flopgraph: {esc(report.model)}</title>",
        f"<style>{STATIC.joinpath('report.css').read_text()}</style>",
        f"<script>{_ERROR_TRAP}</script>",
        "</head><body>",
        f"<h1>flopgraph: {esc(report.model)}</h1>",
        f'<dl class="totals">{totals}</dl>',
        '<pre id="errors"></pre>',
        "<h2>FLOPs by module</h2>",
        '<p class="hint">Area is FLOPs. Click a block to zoom in; hover for exact counts.</p>',
        '<div id="crumbs"></div>',
        f'<svg id="treemap" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="FLOPs treemap of {esc(report.model)}"></svg>',
        "<h2>Modules</h2>",
        '<p class="controls"><button id="expand-all">expand all</button>'
        '<button id="collapse-all">collapse all</button></p>',
        '<table id="modules"><thead><tr><th>module</th><th>type</th><th class="num">params</th>'
        '<th class="num">% params</th><th class="num">MACs</th><th class="num">FLOPs</th>'
        '<th class="num">% FLOPs</th><th>output</th></tr></thead><tbody></tbody></table>',
        _phases(report, units),
        "<h2>Operators</h2>",
        _operators(report, units),
        _skipped(report),
        f'<script type="application/json" id="flopgraph-data">{_json(data)}</script>',
        f"<script>{STATIC.joinpath('report.js').read_text()}</script>",
        "</body></html>",
    ]) + "\n"  # fmt: skip


_ERROR_TRAP = (
    'window.addEventListener("error", function (e) {'
    ' document.documentElement.dataset.flopgraph = "error";'
    ' var box = document.getElementById("errors");'
    ' if (box) box.textContent += "script error: " + e.message + "\\n"; });'
)


def _node(n: ModuleNode, units: Units) -> dict[str, Any]:
    return {
        "name": n.name,
        "path": n.path,
        "type": n.type,
        "kind": n.kind.value,
        "calls": n.calls,
        "ran": n.ran,
        "params": n.params,
        # numbers the page sorts and draws bars by (a formula: its value with every
        # size at 1024, see symbolic.rank); the text holds the exact counts
        "macs": rank(n.cost.macs),
        "flops": rank(n.cost.flops),
        "out": shapes(n.outputs),
        "text": {
            "params": f"{n.params:,}",
            "macs": number(n.cost.macs, units),
            "flops": number(n.cost.flops, units),
            "macs_exact": exact(n.cost.macs),
            "flops_exact": exact(n.cost.flops),
        },
        "children": [_node(c, units) for c in n.children],
    }


def _json(data: Any) -> str:
    """JSON safe inside a <script> element: no ``</script>`` can close it early."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _operators(report: Report, units: Units) -> str:
    head = "".join(
        f'<th class="{"num" if c in ("calls", "MACs", "FLOPs", "% FLOPs") else ""}">{c}</th>'
        for c in ("op", "calls", "status", "MACs", "FLOPs", "% FLOPs")
    )
    rows = []
    for r in operator_rows(report):
        cls = "" if r.status == "counted" else ' class="extra"'
        rows.append(
            f'<tr{cls}><td>{html.escape(r.op)}</td><td class="num">{r.calls:,}</td>'
            f"<td>{'' if r.status == MORE else r.status}</td>"
            f'<td class="num" title="{exact(r.macs)}">{number(r.macs, units)}</td>'
            f'<td class="num" title="{exact(r.flops)}">{number(r.flops, units)}</td>'
            f'<td class="num">{percent(r.flops, report.flops)}</td></tr>'
        )
    body = "".join(rows)
    return f'<table id="operators"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _phases(report: Report, units: Units) -> str:
    """A training step's FLOPs per phase for the top two levels of modules."""
    phases = PhaseCosts.of(report)
    if phases is None:
        return ""
    head = "<th>module</th>" + "".join(f'<th class="num">{c}</th>' for c in phases.columns())
    rows = []
    for _, node in flatten(display_tree(report, depth=2)):
        cells = "".join(f'<td class="num">{c}</td>' for c in phases.cells(node, units))
        rows.append(f"<tr><td>{html.escape(label(node))}</td>{cells}</tr>")
    return (
        "<h2>Training step by module</h2>"
        f'<table id="phases"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _skipped(report: Report) -> str:
    items = skipped_items(report)
    if not items:
        return ""
    rows = "".join(
        f'<tr><td>{html.escape(op)}</td><td class="num">{n:,}</td><td>{html.escape(w)}</td></tr>'
        for op, n, w in items
    )
    return (
        "<h2>Skipped ops (no handler; counted as 0)</h2>"
        f'<table id="skipped"><thead><tr><th>op</th><th class="num">count</th><th>where</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )
