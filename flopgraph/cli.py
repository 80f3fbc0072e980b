"""Command line: ``flopgraph MODEL [--input 1x3x224x224] [options]``.

Argument parsing and exit codes only: 0 on success, 2 for usage errors (an
unknown model, an import that fails, a bad --input or option), 1 when the
analysis itself fails (a forward that fails for the given shapes, a model that
cannot be traced). Each error is one line on stderr; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import sys
import traceback
import typing
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from . import __version__
from .errors import FlopgraphError, InputError, SkippedOpWarning, UsageError
from .names import CONVENTIONS, FORMATS, FRONTENDS, Format

# Nothing above imports torch: --help and --version answer at once. What needs torch
# (loading the model, analysing, rendering a report) is imported where it is used.

_SUFFIX_FORMATS: dict[str, Format] = {
    ".json": "json", ".csv": "csv", ".md": "markdown", ".html": "html", ".htm": "html",
    ".txt": "table",
}  # fmt: skip
_FILE_WIDTH = 120
"""Columns of a table written to a file or a pipe (a terminal uses its own width)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other flopgraph error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _count(kind: str, minimum: int) -> Any:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
        return int(text)

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="flopgraph",
        description="Exact, operator-level FLOP and MAC counts of a PyTorch model.",
        epilog="MODEL: a built-in example (--list-examples), package.module:callable "
        "(torchvision.models:resnet50) or path/to/file.py:callable; saved weights come "
        "with --checkpoint FILE.",
    )
    p.add_argument("model", nargs="?", metavar="MODEL")
    p.add_argument(
        "--input",
        action="append",
        metavar="[NAME=][DTYPE:]DIMS",
        help="a model input, e.g. 1x3x224x224 or int64:1x128 (repeatable, in order)",
    )
    p.add_argument("--kwargs", metavar="JSON", help="keyword arguments for the model constructor")
    p.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="load this state_dict into the model (read with torch.load(weights_only=True))",
    )
    p.add_argument(
        "--device",
        metavar="DEVICE",
        help="build the model under torch.device(DEVICE); 'meta' allocates nothing",
    )
    p.add_argument(
        "--real",
        action="store_true",
        help="random real inputs of the --input shapes (seed 0): a model whose control "
        "flow depends on values runs for real, on copies",
    )
    p.add_argument("--convention", default="default", choices=sorted(CONVENTIONS))
    p.add_argument("--frontend", default="auto", choices=FRONTENDS)
    p.add_argument(
        "--depth",
        type=_count("a count >= 0", 0),
        metavar="N",
        help="module levels to show (default 2 in tables, all in CSV and HTML)",
    )
    p.add_argument("--by", default="module", choices=("module", "operator", "op"))
    p.add_argument(
        "--top",
        type=_count("a count >= 1", 1),
        metavar="K",
        help="keep the K costliest children of each module, or the K costliest ops",
    )
    p.add_argument(
        "--format", choices=FORMATS, help="default: table, or what the -o file's suffix says"
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="count one training step: forward, loss, backward (and --optimizer's step)",
    )
    p.add_argument(
        "--optimizer",
        choices=("sgd", "adam", "adamw"),
        help="with --train: one step of this optimizer (torch's defaults)",
    )
    p.add_argument(
        "--loss",
        default="auto",
        choices=("auto", "sum", "mean"),
        help="with --train: the output's .loss, else its sum (auto), or the sum or mean "
        "of the output (its logits or first tensor)",
    )
    p.add_argument(
        "--attention",
        default="full",
        choices=("full", "causal"),
        help="causal: count causal attention over its unmasked triangle (model FLOPs)",
    )
    p.add_argument(
        "--routing",
        default="bound",
        choices=("bound", "taken"),
        help="routers with an expert capacity (Switch, NLLB-MoE): count the capacity "
        "bound, or the routing the real run takes (with --real)",
    )
    p.add_argument(
        "--generate",
        metavar="P,K[,B]",
        help="a causal LM's generation: prefill of P prompt tokens, K decode steps with "
        "its key/value cache, batch B (default 1)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    p.add_argument(
        "--compare",
        action="store_true",
        help="compare graph counts with hook-based counts, module by module",
    )
    p.add_argument(
        "--units", default="auto", choices=("auto", "raw"), help="auto: 4.09 G; raw: exact integers"
    )
    p.add_argument(
        "--summary",
        action="store_true",
        help="print one line instead of the report: model, input, MACs, FLOPs, params, skipped ops",
    )
    p.add_argument(
        "--fail-on-skipped",
        action="store_true",
        help="exit 3 when an op had no handler (for CI), after writing the report",
    )
    p.add_argument("--quiet", action="store_true", help="no progress, warnings or notes")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--list-examples", action="store_true", help="list the built-in examples")
    p.add_argument("--version", action="version", version=f"flopgraph {__version__}")
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C at any moment, imports included: one line
        print("flopgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `| head` closed the pipe: the reader has what it wanted
        _silence_stdout()
        return 0


def _main(argv: Sequence[str] | None) -> int:
    if sys.stdout is None:  # stdout closed (`flopgraph lenet >&-`): the report goes nowhere
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (open for the process's life)
    try:
        ns = _parse(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 0
    if ns.list_examples:
        from .examples import EXAMPLES

        for ex in EXAMPLES.values():
            print(f"{ex.name:18} {'x'.join(map(str, ex.input_shape)):14} {ex.description}")
        return 0
    with warnings.catch_warnings(record=True) as caught, _torch_logs(ns.debug):
        warnings.simplefilter("default")
        code = _guarded(ns)
    if not ns.quiet:
        _print_warnings(caught, ns)
    return code


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.model is None and not ns.list_examples:
        parser.error("the following argument is required: MODEL")
    return ns


@contextmanager
def _torch_logs(debug: bool) -> Iterator[None]:
    """torch logs the traceback of a failed fake-tensor kernel before re-raising it;
    the error it becomes is reported in one line, so the log is silenced unless --debug."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    if not debug:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class _SkippedOps(Exception):
    """--fail-on-skipped met ops with no handler (the report was written first)."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _guarded(ns: argparse.Namespace) -> int:
    try:
        _run(ns)
    except (UsageError, InputError) as e:
        return _fail(e, 2, ns.debug)
    except FlopgraphError as e:
        return _fail(_for_the_cli(e), 1, ns.debug)
    except BrokenPipeError:  # `| head` closed the pipe: the reader has what it wanted
        _silence_stdout()
        return 0
    except _SkippedOps as e:
        print(f"flopgraph: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # a bug, in flopgraph or in the model: still one line
        return _fail(e, 1, ns.debug, f"internal error: {type(e).__name__}: ")
    return 0


_REAL_HINT = (
    "Add --real to run it for real on random inputs of these shapes (a model built "
    "without --device meta)."
)


def _for_the_cli(e: FlopgraphError) -> FlopgraphError:
    """The error with the API's advice to pass real input tensors, which a command line
    cannot, turned into the option that does: --real."""
    from .frontends.aten import REAL_INPUTS_HINT, VALUES_HINT

    text = str(e)
    for hint in (REAL_INPUTS_HINT, VALUES_HINT):
        text = text.replace(hint, _REAL_HINT)
    return e if text == str(e) else FlopgraphError(text)


def _fail(e: BaseException, code: int, debug: bool, prefix: str = "") -> int:
    if debug:
        traceback.print_exc()
    lines = str(e).strip().splitlines() or [type(e).__name__]
    hint = " (--debug for the traceback)" if prefix and not debug else ""
    print(f"flopgraph: error: {prefix}{lines[0]}{hint}", file=sys.stderr)
    return code


def _format(ns: argparse.Namespace) -> Format:
    """--format, else what the -o file's suffix says, else ``table``."""
    suffix = Path(ns.output or "").suffix.lower()
    if ns.output and not ns.format and suffix not in _SUFFIX_FORMATS:
        known = ", ".join(sorted(_SUFFIX_FORMATS))
        raise UsageError(
            f"-o {ns.output}: unknown suffix {suffix or '(none)'!r}; use one of {known}, "
            "or pass --format"
        )
    return typing.cast(Format, ns.format or _SUFFIX_FORMATS.get(suffix, "table"))


def _run(ns: argparse.Namespace) -> None:
    from .checkpoint import apply_checkpoint
    from .loading import load_model, parse_inputs, parse_kwargs
    from .render import View, render_text, terminal_view

    analyze_module = importlib.import_module(".analyze", __package__)
    if ns.output:
        _check_not_an_input(ns)
    fmt = _format(ns)
    if ns.summary and (ns.output or ns.format or ns.compare or ns.generate):
        raise UsageError(
            "--summary prints one line to stdout: it does not combine with -o, --format, "
            "--compare or --generate"
        )
    if fmt == "tree" and ns.by != "module":
        raise UsageError(f"--format tree shows modules; use --format table with --by {ns.by}")
    inputs = parse_inputs(ns.input)
    loaded = load_model(ns.model, parse_kwargs(ns.kwargs), ns.device)
    if ns.checkpoint:
        apply_checkpoint(loaded.model, ns.checkpoint, ns.device)
    inputs = inputs or loaded.default_inputs
    if not inputs and not ns.generate:
        raise UsageError(f"model {ns.model!r} needs --input (e.g. --input 1x3x224x224)")
    if ns.real:
        if ns.generate:
            raise UsageError("--generate makes its own token ids: it does not take --real")
        from .random_inputs import random_inputs

        inputs = random_inputs(loaded.model, inputs)
    if ns.compare:
        _emit_comparison(_comparison(loaded.model, inputs, ns), fmt, ns)
        return
    if ns.generate:
        _emit_generation(loaded.model, ns, fmt)
        return
    if not ns.train and (ns.optimizer or ns.loss != "auto"):
        raise UsageError("--optimizer and --loss describe a training step: add --train")
    step: dict[str, Any] = {}
    if ns.train:  # the CLI built this model: a training step runs it in training mode
        loaded.model.train()
        step = {"training": True, "optimizer": ns.optimizer, "loss": _LOSSES[ns.loss]}
    with _progress(ns) as progress:
        report = analyze_module.analyze(
            loaded.model, inputs.args, kwargs=dict(inputs.kwargs), convention=ns.convention,
            frontend=ns.frontend, progress=progress, attention=ns.attention,
            routing=ns.routing, **step,
        )  # fmt: skip
    view = View(by=ns.by, depth=ns.depth, top=ns.top, units=ns.units)
    if ns.summary:
        _write(report.summary() + "\n", ns)
    elif ns.output or fmt not in ("table", "tree"):
        _write(render_text(report, fmt, view, _FILE_WIDTH), ns)
    else:
        _console().print(terminal_view(report, fmt, view))
    if ns.fail_on_skipped and report.skipped:
        ops = ", ".join(f"{op} x{info.count}" for op, info in report.skipped.items())
        raise _SkippedOps(f"--fail-on-skipped: ops with no handler (counted as 0): {ops}")


def _generate_sizes(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) not in (2, 3) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--generate {text}: expected P,K or P,K,B (positive ints), e.g. 512,128")
    p, k, *b = (int(x) for x in parts)
    return p, k, (b[0] if b else 1)


def _emit_generation(model: Any, ns: argparse.Namespace, fmt: str) -> None:
    from .generation import generation
    from .render.generation import generation_table

    if ns.train or ns.compare:
        raise UsageError("--generate counts inference: it does not combine with --train")
    prompt, new_tokens, batch = _generate_sizes(ns.generate)
    g = generation(model, prompt, new_tokens, batch, convention=ns.convention)
    if fmt == "json":
        import json

        _write(json.dumps(g.to_dict(), indent=2) + "\n", ns)
    elif fmt == "table" and not ns.output:
        _console().print(generation_table(g, ns.units))
    elif fmt == "table":
        _write(_plain(generation_table(g, ns.units)), ns)
    else:
        raise UsageError(f"--generate writes a table or json, not --format {fmt}")


def _first_tensor(out: Any) -> Any:
    """The tensor a CLI loss reduces: the output, its logits, or its first tensor."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    values = out.values() if isinstance(out, dict) else out
    for v in values if isinstance(values, (tuple, list)) or hasattr(values, "__iter__") else ():
        if isinstance(v, torch.Tensor):
            return v
    raise InputError(f"the model returned {type(out).__name__}, with no tensor to reduce")


def _sum(out: Any) -> Any:
    return _first_tensor(out).sum()


def _mean(out: Any) -> Any:
    return _first_tensor(out).mean()


_LOSSES: dict[str, Any] = {"auto": None, "sum": _sum, "mean": _mean}


class _Console(Console):
    """rich's Console, whose closed pipe ends the run quietly with exit 0 (rich's own
    answer is exit 1, as if the analysis had failed)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def _console(stderr: bool = False) -> Console:
    """stdout (or stderr) as rich sees it: colour only on a terminal without NO_COLOR;
    a pipe gets plain text at a width wide enough for the tables."""
    console = _Console(stderr=stderr, color_system=None if os.environ.get("NO_COLOR") else "auto")
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _FILE_WIDTH
    return console


def _progress(ns: argparse.Namespace) -> AbstractContextManager[Any]:
    console = _console(stderr=True)
    if ns.quiet or not console.is_terminal:
        return nullcontext(None)
    from .progress import LiveProgress

    return LiveProgress(console)


def _write(text: str, ns: argparse.Namespace) -> None:
    if not ns.output:
        sys.stdout.write(text)
        return
    try:
        Path(ns.output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {ns.output!r}: {e.strerror or e}") from e
    if not ns.quiet:
        print(f"flopgraph: wrote {ns.output}", file=sys.stderr)


def _check_not_an_input(ns: argparse.Namespace) -> None:
    """-o never overwrites what the run reads: the model's source file or the checkpoint."""
    source = ns.model.rsplit(":", 1)[0] if ns.model and ":" in ns.model else ""
    inputs = [p for p in (source if source.endswith(".py") else "", ns.checkpoint or "") if p]
    target = Path(ns.output).resolve()
    for path in inputs:
        if Path(path).resolve() == target:
            raise UsageError(
                f"-o {ns.output} is an input of this run ({path}); choose another file"
            )


def _comparison(model: Any, inputs: Any, ns: argparse.Namespace) -> Any:
    compare = getattr(_compare_module(), "compare", None)
    if not callable(compare):
        raise UsageError("--compare needs flopgraph.compare, which this flopgraph does not have")
    return compare(
        model, inputs.args, kwargs=dict(inputs.kwargs), convention=ns.convention,
        frontend=ns.frontend,
    )  # fmt: skip


def _compare_module() -> Any:
    try:
        return importlib.import_module(f"{__package__}.compare")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.compare":
            raise
        return None


_COMPARISON_RENDERERS: dict[str, tuple[str, str]] = {
    "markdown": (".render.compare", "compare_markdown"),
    "csv": (".render.compare_csv", "compare_csv"),
    "html": (".render.compare_html", "compare_html"),
}
"""Format -> (module, function) of the comparison's file renderers."""


def _emit_comparison(result: Any, fmt: str, ns: argparse.Namespace) -> None:
    render = _comparison_renderer(fmt)
    if fmt == "json" and hasattr(result, "to_json"):
        _write(result.to_json(indent=2) + "\n", ns)
    elif render is not None:
        text = render(result)
        _write(text if text.endswith("\n") else text + "\n", ns)
    elif fmt in ("table", "tree") and not ns.output:
        _console().print(result)
    elif fmt in ("table", "tree"):
        _write(_plain(result), ns)
    else:
        known = ", ".join(["table", "json", *filter(_comparison_renderer, _COMPARISON_RENDERERS)])
        raise UsageError(f"--compare cannot write --format {fmt}; use one of {known}")


def _comparison_renderer(fmt: str) -> Any:
    """The comparison's renderer for ``fmt``, where this flopgraph has one."""
    if fmt not in _COMPARISON_RENDERERS:
        return None
    module, name = _COMPARISON_RENDERERS[fmt]
    try:
        found = importlib.import_module(module, __package__)
    except ModuleNotFoundError:
        return None
    return getattr(found, name, None)


def _plain(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=_FILE_WIDTH, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _print_warnings(caught: list[warnings.WarningMessage], ns: argparse.Namespace) -> None:
    """Each warning once, as one line; skipped ops only where the report shows no panel."""
    try:
        shown_in_report = _format(ns) not in ("json", "csv") and not ns.summary
    except UsageError:  # the run already ended on it: no report was shown
        shown_in_report = False
    seen: set[str] = set()
    for w in caught:
        text = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        if text in seen or (issubclass(w.category, SkippedOpWarning) and shown_in_report):
            continue
        seen.add(text)
        print(f"flopgraph: warning: {text}", file=sys.stderr)
