"""The HTML report as a notebook cell shows it: the page inside an ``<iframe srcdoc>``.

The page (:func:`render_html`) is a whole document whose CSS styles ``body`` and
``table`` and whose script finds its elements by id. Pasted into a notebook's output
as a fragment, its CSS would restyle the notebook and two reports in one notebook
would share ids (the second treemap drawn into the first). In an iframe the page
keeps its own document: its styles, ids and script stay inside, and Jupyter,
JupyterLab, VS Code and Colab all show it; ``sandbox="allow-scripts"`` lets its
script run without reaching the notebook. ``srcdoc`` holds the page itself, so the
output needs no file or server.
"""

from __future__ import annotations

import html

from ..report import Report
from .cells import Units
from .html import render_html

HEIGHT = 640
"""Pixels of the frame; the page scrolls inside it, and the frame can be resized."""


def render_notebook(report: Report, *, units: Units = "auto", height: int = HEIGHT) -> str:
    """The report as an HTML fragment for a notebook output: one iframe holding the
    page, escaped once as an attribute value."""
    page = html.escape(render_html(report, units=units), quote=True)
    title = html.escape(f"flopgraph report: {report.model}", quote=True)
    return (
        f'<iframe class="flopgraph-report" title="{title}" sandbox="allow-scripts" '
        f'style="width: 100%; height: {int(height)}px; border: 1px solid #ddd; '
        f'resize: vertical;" srcdoc="{page}"></iframe>'
    )
