"""Command line: ``flopgraph EXAMPLE|module:callable [--input 1x3x224x224]``.

Argument parsing and exit codes only: 2 for usage errors, 1 for failed analyses.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import rich

from .analyze import analyze
from .errors import FlopgraphError
from .examples import EXAMPLES


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.lower().split("x"))
    except ValueError as e:
        msg = f"bad --input {text!r}: expected e.g. 1x3x224x224"
        raise argparse.ArgumentTypeError(msg) from e


def _load(spec: str) -> tuple[Any, tuple[int, ...] | None]:
    if spec in EXAMPLES:
        ex = EXAMPLES[spec]
        return ex.build(), ex.input_shape
    if ":" not in spec:
        raise ValueError(f"unknown model {spec!r}: give an example name or package.module:callable")
    mod_name, attr = spec.split(":", 1)
    module = importlib.import_module(mod_name)
    return getattr(module, attr)(), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flopgraph", description=__doc__)
    parser.add_argument("model", nargs="?", help="example name or package.module:callable")
    parser.add_argument(
        "--input", type=_shape, action="append", help="input shape, e.g. 1x3x224x224"
    )
    parser.add_argument("--list-examples", action="store_true")
    ns = parser.parse_args(argv)
    if ns.list_examples:
        for ex in EXAMPLES.values():
            print(f"{ex.name:20} {'x'.join(map(str, ex.input_shape)):16} {ex.description}")
        return 0
    if not ns.model:
        parser.print_usage(sys.stderr)
        return 2
    try:
        model, default_shape = _load(ns.model)
    except (ImportError, AttributeError, ValueError) as e:
        print(f"flopgraph: error: {e}", file=sys.stderr)
        return 2
    shapes = ns.input or ([default_shape] if default_shape else None)
    if not shapes:
        print("flopgraph: error: --input is required for this model", file=sys.stderr)
        return 2
    try:
        report = analyze(model.eval(), tuple(shapes) if len(shapes) > 1 else shapes[0])
    except FlopgraphError as e:
        print(f"flopgraph: error: {e}", file=sys.stderr)
        return 1
    rich.print(report)
    return 0
