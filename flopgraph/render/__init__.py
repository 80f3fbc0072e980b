"""Renderers: pure functions from a Report to text or rich renderables.

:func:`render_text` is the one entry for every format a file can hold;
``table`` and ``tree`` come from :func:`terminal.render_report` (a rich
renderable) and are turned into plain text at a given width here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from rich.console import Console

from ..names import FORMATS as FORMATS  # re-exported: flopgraph.render.FORMATS
from ..names import Format
from ..report import Report
from .cells import Units
from .csv_export import render_csv
from .html import render_html
from .markdown import render_markdown
from .terminal import By, render_report

_DEFAULT_DEPTH: dict[str, int | None] = {"table": 2, "tree": 2, "markdown": 2}
"""Formats read by people show two levels unless asked; data formats show all."""


@dataclass(frozen=True)
class View:
    """What a rendered report shows."""

    by: By = "module"
    depth: int | None = None
    """Module levels below the model; None: the format's default (2 for tables, all
    for CSV and HTML)."""
    top: int | None = None
    """Keep the K costliest children per module, or the K costliest ops."""
    units: Units = "auto"

    def depth_for(self, fmt: str) -> int | None:
        return self.depth if self.depth is not None else _DEFAULT_DEPTH.get(fmt)


def render_text(report: Report, fmt: Format, view: View = View(), width: int = 120) -> str:
    """The report in ``fmt`` as text (tables without colour, ``width`` columns)."""
    depth = view.depth_for(fmt)
    if fmt == "json":
        return report.to_json(indent=2) + "\n"
    if fmt == "csv":
        return render_csv(report, depth=depth, by=view.by, top=view.top)
    if fmt == "markdown":
        return render_markdown(report, depth=depth, by=view.by, top=view.top, units=view.units)
    if fmt == "html":
        return render_html(report, units=view.units)
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    console.print(terminal_view(report, fmt, view))
    return buf.getvalue()


def terminal_view(report: Report, fmt: Format, view: View = View()) -> object:
    """The rich renderable of a ``table`` or ``tree`` report."""
    style: Literal["table", "tree"] = "tree" if fmt == "tree" else "table"
    return render_report(
        report, depth=view.depth_for(fmt), by=view.by, top=view.top, units=view.units, style=style
    )
