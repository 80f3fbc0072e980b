"""``python -m flopgraph.demo [example]``: analyze a built-in example and print it."""

from __future__ import annotations

import sys

import rich

from .analyze import analyze
from .examples import EXAMPLES


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "tiny_transformer"
    if name not in EXAMPLES:
        print(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}", file=sys.stderr)
        return 2
    ex = EXAMPLES[name]
    rich.print(analyze(ex.build().eval(), ex.input_shape))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
