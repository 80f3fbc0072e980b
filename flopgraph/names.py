"""The names the command line offers before anything heavy is imported.

``flopgraph --help`` and ``--version`` must answer without importing torch (seconds);
the parser's choices are read from here. tests/test_cli.py checks that they equal
what the library accepts (``analyze.CONVENTIONS``, ``pipeline.FRONTENDS``).
"""

from __future__ import annotations

from typing import Literal

CONVENTIONS = ("default", "fvcore", "torch")
FRONTENDS = ("auto", "fx", "aten")
Format = Literal["table", "tree", "json", "csv", "markdown", "html"]
FORMATS: tuple[Format, ...] = ("table", "tree", "json", "csv", "markdown", "html")
