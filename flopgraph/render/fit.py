"""A table that fits the console it is printed on, decided when it is printed.

rich shrinks a table that is too wide by cutting every column a little, numbers
included (``118.01…``). A :class:`FitTable` instead lays itself out for the width
rich offers it (``options.max_width``: the terminal's, a pipe's, ``render_text``'s):
a number is never cut; the least useful columns are left out first, in the table's
drop order, and named under it; a list of shapes wraps between shapes; only the
name column is cut, and only a name longer than half the width (or than what is
left at the narrowest), so ``rich.print(report)`` and the CLI behave alike at any
width.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

GAP = 2
"""Columns between two columns: the right padding of one and the (blank) rule of
SIMPLE_HEAD, as :func:`_rich_table` draws them."""
_CUT_MIN = 3
"""The narrowest a cut name gets: two characters and the ellipsis."""


@dataclass(frozen=True)
class FitColumn:
    """One column: its header, its cells as text, and how it may give way."""

    header: str
    cells: tuple[str, ...]
    right: bool = True
    """Right-aligned (numbers); text columns are left-aligned."""
    drop: int | None = None
    """Lower is left out first when the table is too wide; None: always shown."""
    wraps: bool = False
    """A list of shapes (separated by a space or a newline): may wrap between them."""
    cut: bool = False
    """The name column: an overlong name is cut with an ellipsis rather than leave
    out other columns."""

    @cached_property
    def natural(self) -> int:
        """Columns to show every cell on its own lines, uncut."""
        lines = (line for cell in self.cells for line in cell.splitlines())
        return max([cell_len(self.header), *map(cell_len, lines)])

    @cached_property
    def narrowest(self) -> int:
        """Columns below which a cell would be cut: its longest shape, for a list of them."""
        if not self.wraps:
            return self.natural
        words = (word for cell in self.cells for word in cell.split())
        return max([cell_len(self.header), *map(cell_len, words)])


@dataclass(frozen=True)
class Layout:
    """The columns shown, their widths, and the headers of the columns left out."""

    columns: tuple[FitColumn, ...]
    widths: tuple[int, ...]
    hidden: tuple[str, ...]


def layout(columns: Sequence[FitColumn], width: int) -> Layout:
    """Leave out columns in drop order until the rest fit ``width`` (a name column
    counts at most half of it), then share what is left: first to the name, then to
    the lists of shapes. At a width too narrow for what is always shown, the name is
    cut further."""
    shown = list(columns)
    cap = max(width // 2, _CUT_MIN)

    def floor(c: FitColumn) -> int:
        return max(min(c.natural, cap, width), cell_len(c.header)) if c.cut else c.narrowest

    def need(cols: Sequence[FitColumn]) -> int:
        return sum(floor(c) for c in cols) + GAP * (len(cols) - 1)

    droppable = sorted((c for c in shown if c.drop is not None), key=lambda c: c.drop or 0)
    for c in droppable:
        if need(shown) <= width:
            break
        shown.remove(c)
    widths = [floor(c) for c in shown]
    spare = width - need(shown)
    for want in (lambda c: c.cut, lambda c: c.wraps):  # the name first, then shapes
        for i, c in enumerate(shown):
            if want(c) and spare > 0:
                grow = min(spare, c.natural - widths[i])
                widths[i] += grow
                spare -= grow
    if spare < 0:  # narrower than what is always shown: cut the name further
        for i, c in enumerate(shown):
            if c.cut:
                widths[i] = max(_CUT_MIN, widths[i] + spare)
    hidden = tuple(c.header for c in columns if c not in shown)
    return Layout(tuple(shown), tuple(widths), hidden)


@dataclass(frozen=True)
class FitTable:
    """A titled table of text cells, laid out for the console's width when printed."""

    title: str
    columns: tuple[FitColumn, ...]
    styles: tuple[str, ...] = ()
    """Each row's style (``dim``, ``bold``), or none."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        fit = layout(self.columns, options.max_width)
        yield _rich_table(self.title, fit, self.styles)
        if fit.hidden:
            note = f"not shown at {options.max_width} columns: {', '.join(fit.hidden)}"
            yield Text(note, style="dim")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = layout(self.columns, 10**6)
        full = sum(widest.widths) + GAP * (len(widest.widths) - 1)
        shown = [c for c in self.columns if c.drop is None]
        least = sum(max(_CUT_MIN, cell_len(c.header)) if c.cut else c.narrowest for c in shown)
        return Measurement(least + GAP * (len(shown) - 1), full).with_maximum(options.max_width)


def _rich_table(title: str, fit: Layout, styles: Sequence[str]) -> Table:
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
        show_edge=False, collapse_padding=True,
    )  # fmt: skip
    for c, w in zip(fit.columns, fit.widths, strict=True):
        table.add_column(
            c.header, justify="right" if c.right else "left", width=w, no_wrap=not c.wraps,
            overflow="ellipsis",
        )  # fmt: skip
    for i, row in enumerate(_rows(fit.columns)):
        table.add_row(*row, style=styles[i] if i < len(styles) else None)
    return table


def _rows(columns: Sequence[FitColumn]) -> Iterator[list[str]]:
    for i in range(len(columns[0].cells) if columns else 0):
        yield [c.cells[i] for c in columns]
