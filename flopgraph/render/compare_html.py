"""A Comparison as one self-contained HTML page: the summary, every module's
graph and hook counts, the differences by reason, the peers, the reconciliation.

The page has no script and no external resources: the report page's stylesheet
(``static/report.css``) inline, a few rules of its own, and every string escaped.
The cells are those of the terminal and Markdown views (:mod:`.compare`); unlike
them the page lists every module, its rows with a difference marked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING

from ..peers import STATED_UNIT
from ..records import Cost
from .compare import (
    MODULE_COLUMNS,
    PEER_COLUMNS,
    REASON_COLUMNS,
    gap_lines,
    module_cells,
    module_name,
    peer_cells,
    reason_cells,
    summary_lines,
)
from .html import STATIC

if TYPE_CHECKING:
    from ..compare import Comparison
    from ..differences import ModuleRow

_NUMERIC = frozenset(
    {"graph FLOPs", "hook FLOPs", "difference", "ops", "FLOPs", "MACs", "raw total", "in FLOPs",
     "flopgraph - counter"}
)  # fmt: skip
_CSS = (
    ".summary { padding: 10px 16px; background: var(--panel); border: 1px solid var(--line);"
    " border-radius: 6px; max-width: 980px; }\n"
    ".summary p { margin: 2px 0; }\n"
    "tr.differs td { font-weight: 600; }\n"
    "#reasons td:last-child { white-space: normal; min-width: 320px; }\n"
    ".verdict { font-weight: 600; margin-top: 24px; }\n"
    ".verdict.ok { color: #2e7d32; } .verdict.bad { color: #c62828; }\n"
    "ul.walk { margin: 2px 0 10px; }\n"
)


def compare_html(c: Comparison) -> str:
    """The page as a string."""
    title = f"flopgraph compare: {escape(c.model)}"
    summary = "".join(f"<p>{escape(line)}</p>" for line in summary_lines(c))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        f"<style>{STATIC.joinpath('report.css').read_text()}{_CSS}</style>",
        "</head><body>",
        f"<h1>{title}: graph against hooks</h1>",
        f'<div class="summary">{summary}</div>',
        "<h2>By module (cumulative; ops listed where they ran)</h2>",
        _table("modules", MODULE_COLUMNS, (_module_row(c, r) for r in c.modules)),
    ]
    if c.differences:
        reasons = (_row(REASON_COLUMNS, cells) for cells in reason_cells(c))
        parts += ["<h2>Differences by reason</h2>", _table("reasons", REASON_COLUMNS, reasons)]
    if c.peers:
        parts += [
            "<h2>Other counters on the same model and input</h2>",
            f'<p class="hint">All gaps in {escape(STATED_UNIT)}.</p>',
            _table("peers", PEER_COLUMNS, (_row(PEER_COLUMNS, peer_cells(p)) for p in c.peers)),
        ]
        for p in c.peers:
            walk = "".join(f"<li>{escape(line)}</li>" for line in gap_lines(p))
            parts.append(f"<p><b>{escape(p.name)}</b> ({escape(p.mechanism)}):</p>"
                         f'<ul class="walk">{walk}</ul>')  # fmt: skip
    verdict = "ok" if c.reconciled else "bad"
    parts += [f'<p class="verdict {verdict}" id="reconciliation">{escape(c.reconciliation)}</p>',
              "</body></html>"]  # fmt: skip
    return "\n".join(parts) + "\n"


def _module_row(c: Comparison, r: ModuleRow) -> str:
    level, short = module_name(r)
    cls = "differs" if r.difference != Cost() else ""
    if r.graph_calls == r.hook_calls == 0:
        cls = "uncalled"
    attrs = f' data-path="{escape(r.path)}"' + (f' class="{cls}"' if cls else "")
    name = (
        f'<td style="padding-left: {10 + 16 * level}px" title="{escape(r.path or c.model)}">'
        f"{escape(short)}</td>"
    )
    return _row(MODULE_COLUMNS, module_cells(c, r), attrs, name)


def _row(columns: Sequence[str], cells: Sequence[str], attrs: str = "", first: str = "") -> str:
    """A ``<tr>`` of escaped cells; ``first``, when given, is the first cell's markup."""
    tds = [f"<td{_num(col)}>{escape(cell)}</td>" for col, cell in zip(columns, cells, strict=True)]
    if first:
        tds[0] = first
    return f"<tr{attrs}>{''.join(tds)}</tr>"


def _num(column: str) -> str:
    return ' class="num"' if column in _NUMERIC else ""


def _table(name: str, columns: Sequence[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th{_num(col)}>{escape(col)}</th>" for col in columns)
    body = "".join(rows)
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
