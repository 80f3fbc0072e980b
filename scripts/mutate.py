"""Mutation check: change the arithmetic of each counting rule and see a test fail.

A rule that no test can catch (outer's MACs, addr's flops, a training-only
cost) passes every fx-against-aten check, because both sides call the same
rule. This script finds such rules: it makes one small change at a time to
flopgraph/formulas.py and flopgraph/handlers/*.py (a ``+`` that becomes ``-``,
a constant ``n`` that becomes ``n + 1``, a dropped term, a flipped comparison,
a returned cost doubled, ...), runs the fast rule tests against each changed
copy, and reports every change that leaves them green (a *survivor*).

Speed: the parent imports torch, pytest and flopgraph once and runs one
analysis on each frontend, so torch's lazy state is warm; then it forks one
child per mutant. The child drops flopgraph from ``sys.modules``, puts an
import hook in front that serves the mutated source of one file (nothing is
written to disk), and runs pytest in-process on the test files mapped to that
source file, with ``-x`` and a per-mutant timeout.

Usage (from the repository root; not part of the default test run)::

    python scripts/mutate.py                          # every file, summary + survivors
    python scripts/mutate.py --file flopgraph/handlers/contractions.py --lines 50-70
    python scripts/mutate.py --list                   # print the mutants, run nothing
    python scripts/mutate.py --jobs 2 --timeout 60

Exit status: 0 when every mutant is killed (or allowed, see ``ALLOWED``), 1 when
any survives or times out, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import ast
import copy
import gc
import importlib.abc
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flopgraph"

# source file (relative to the root) -> the fast tests that guard its rules. The exact
# rule tests come first: they are quick and hand-derived, so most mutants die there.
RULE_TESTS = ["tests/test_rules_exact.py", "tests/test_handlers_more.py"]
STEP_TESTS = [*RULE_TESTS, "tests/test_training.py"]
"""The training step's rules (backward, optimizer, the causal triangle) are asserted in
test_training.py's hand-derived steps."""
TESTS: dict[str, list[str]] = {
    "flopgraph/formulas.py": STEP_TESTS,
    **{
        f"flopgraph/handlers/{p.name}": RULE_TESTS
        for p in sorted((PACKAGE / "handlers").glob("*.py"))
        if p.name not in ("__init__.py", "table.py", "free.py")
    },
    "flopgraph/handlers/backward.py": STEP_TESTS,
    "flopgraph/presets/torch.py": STEP_TESTS,
}
"""Files mutated by default and the tests run against each mutant."""

ALLOWED: dict[tuple[str, str], str] = {
    ("flopgraph/handlers/fft.py", "52: [None] * len(dims) -> [None]"):
        "the list is read only as sizes[-1], None either way",
    ("flopgraph/handlers/torchvision_ops.py", "103: -1 -> 1"):
        "the default sampling ratio: -1 and 1 both give one sample per bin",
    ("flopgraph/handlers/transformer.py", "34: return Cost() -> return Cost() + Cost()"):
        "twice zero is zero",
    ("flopgraph/handlers/misc.py", "47: len(ctx.y.shape) - 2 -> len(ctx.y.shape)"):
        "pooling over N and C too changes nothing: input and output sizes are equal there",
    ("flopgraph/handlers/misc.py", "75: -1 -> 1"):
        "an embedding_bag weight is always 2-D: its last dim is dim 1",
    ("flopgraph/handlers/norms.py",
     "30: m.running_mean is None and m.running_var is None -> m.running_mean is None or "
     "m.running_var is None"):
        "they differ only with one running buffer None in eval mode, which torch refuses",
}  # fmt: skip
"""(file, "line: original -> mutated") of mutants that change nothing observable,
each with the reason; keep this tiny."""


# --- mutants -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    file: str
    index: int
    """Position of the mutated site in the walk of :class:`_Mutator` (with ``variant``)."""
    variant: int
    line: int
    original: str
    mutated: str

    @property
    def key(self) -> str:
        return f"{self.line}: {self.original} -> {self.mutated}"


_BINOP_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult, ast.Mod: ast.Mult, ast.Pow: ast.Mult,
}  # fmt: skip
_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}  # fmt: skip


def _variants(node: ast.AST, returns_cost: bool) -> list[ast.AST]:
    """Every mutated copy of ``node`` itself (its children are visited on their own)."""
    out: list[ast.AST] = []

    def changed(**fields: object) -> ast.AST:
        new = copy.copy(node)
        for k, v in fields.items():
            setattr(new, k, v)
        return new

    if isinstance(node, ast.BinOp):
        swap = _BINOP_SWAP.get(type(node.op))
        if swap is not None:
            out.append(changed(op=swap()))
        if isinstance(node.op, (ast.Add, ast.Mult)):  # drop a term / a factor
            out += [node.left, node.right]
        elif isinstance(node.op, ast.Sub):
            out.append(node.left)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            out.append(ast.Constant(not node.value))
        elif isinstance(node.value, int):
            out.append(ast.Constant(node.value + 1))
    elif isinstance(node, ast.Compare) and len(node.ops) == 1:
        swap = _CMP_SWAP.get(type(node.ops[0]))
        if swap is not None:
            out.append(changed(ops=[swap()]))
    elif isinstance(node, ast.BoolOp):
        out.append(changed(op=ast.Or() if isinstance(node.op, ast.And) else ast.And()))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        out.append(node.operand)
    elif isinstance(node, (ast.If, ast.IfExp)) and not isinstance(node.test, ast.Compare):
        out.append(changed(test=ast.UnaryOp(ast.Not(), node.test)))
    elif isinstance(node, ast.Call) and _name(node.func) == "Cost":
        for i, arg in enumerate(node.args):  # a returned cost's macs or flops replaced by 0
            if not (isinstance(arg, ast.Constant) and arg.value == 0):
                out.append(changed(args=[*node.args[:i], ast.Constant(0), *node.args[i + 1 :]]))
    elif isinstance(node, ast.Return) and returns_cost and node.value is not None:
        # the whole cost doubled: catches a rule no test reaches
        out.append(changed(value=ast.BinOp(node.value, ast.Add(), copy.deepcopy(node.value))))
    return out


def _name(func: ast.AST) -> str:
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


class _Mutator(ast.NodeTransformer):
    """Walks one module in a fixed order, numbering each mutable site; with a target it
    replaces that site's ``variant`` and leaves the rest alone.

    Sites: everything inside function bodies, and the int tables assigned at module
    level (tap counts, gate counts). Skipped: docstrings, asserts, raises, f-strings,
    type annotations, and the argument positions of ``ctx.arg(position, name)``.
    """

    def __init__(self, target: tuple[int, int] | None = None) -> None:
        self.target = target
        self.sites: list[tuple[int, int, str, str]] = []  # (index, variant, before, after)
        self.lines: list[int] = []
        self._in_function = 0
        self._returns_cost: list[bool] = []
        self._count = 0

    # scopes
    def visit_Module(self, node: ast.Module) -> ast.AST:
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
                self.visit(stmt)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
                self._in_function += 1  # a module-level table: mutate its constants
                stmt.value = self.visit(stmt.value)
                self._in_function -= 1
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self._returns_cost.append(node.returns is not None and "Cost" in ast.unparse(node.returns))
        self._in_function += 1
        body = node.body
        first = body[0] if body else None
        doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        node.body = body[:doc] + [self.visit(stmt) for stmt in body[doc:]]
        self._in_function -= 1
        self._returns_cost.pop()
        return node

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        return node

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if _name(node.func) == "arg" and node.args:  # ctx.arg(position, name, default)
            node.args = [node.args[0], *(self.visit(a) for a in node.args[1:])]
            node.keywords = [self.visit(k) for k in node.keywords]
            return self._site(node)
        return self.generic_visit_then_site(node)

    def generic_visit_then_site(self, node: ast.AST) -> ast.AST:
        # the node's own variants are numbered before its children's, so a target's
        # index is the same whether or not earlier sites were mutated
        mutated = self._site(node)
        if mutated is not node:
            return mutated
        self.generic_visit(node)
        return node

    def visit(self, node: ast.AST) -> ast.AST:  # type: ignore[override]
        method = getattr(self, "visit_" + node.__class__.__name__, None)
        if method is not None:
            return method(node)
        if not self._in_function:
            return node
        return self.generic_visit_then_site(node)

    def _site(self, node: ast.AST) -> ast.AST:
        if not self._in_function:
            return node
        returns_cost = bool(self._returns_cost and self._returns_cost[-1])
        variants = _variants(node, returns_cost)
        index = self._count
        self._count += 1
        chosen = node
        for v, variant in enumerate(variants):
            before = _short(node)
            self.sites.append((index, v, before, _short(variant)))
            self.lines.append(getattr(node, "lineno", 0))
            if self.target == (index, v):
                chosen = variant
        return chosen


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).splitlines()[0]
    return text if len(text) <= 70 else text[:67] + "..."


def mutants(file: str) -> list[Mutant]:
    tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
    walker = _Mutator()
    walker.visit(tree)
    return [
        Mutant(file, i, v, line, before, after)
        for (i, v, before, after), line in zip(walker.sites, walker.lines, strict=True)
    ]


def mutated_source(m: Mutant) -> ast.Module:
    tree = ast.parse((ROOT / m.file).read_text(encoding="utf-8"))
    walker = _Mutator(target=(m.index, m.variant))
    tree = walker.visit(tree)
    return ast.fix_missing_locations(tree)


# --- running -------------------------------------------------------------------------------


class _Serve(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module's mutated code; every other import takes the normal road."""

    def __init__(self, name: str, path: Path, tree: ast.Module) -> None:
        self.name, self.path, self.tree = name, path, tree

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != self.name:
            return None
        is_pkg = self.path.name == "__init__.py"
        spec = importlib.util.spec_from_file_location(
            fullname, self.path, loader=self,
            submodule_search_locations=[str(self.path.parent)] if is_pkg else None,
        )  # fmt: skip
        return spec

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return None

    def exec_module(self, module) -> None:  # type: ignore[no-untyped-def]
        exec(compile(self.tree, str(self.path), "exec"), module.__dict__)


def _module_name(file: str) -> str:
    parts = Path(file).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _child(m: Mutant, tests: list[str]) -> int:
    """In the forked child: load flopgraph with ``m`` applied, run the tests."""
    import pytest

    _forget_flopgraph()
    sys.meta_path.insert(0, _Serve(_module_name(m.file), ROOT / m.file, mutated_source(m)))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    return int(pytest.main([*_PYTEST, *tests]))


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str  # killed, survived, timeout, allowed
    seconds: float


_PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-W", "ignore",
           # their cleanup runs gc.collect() over torch's heap: seconds per mutant
           "-p", "no:unraisableexception", "-p", "no:threadexception"]  # fmt: skip


def _forget_flopgraph() -> None:
    for name in [n for n in sys.modules if n.split(".")[0] in ("flopgraph", "conftest")]:
        del sys.modules[name]
    for name in [n for n in sys.modules if n.startswith(("test_", "helpers"))]:
        del sys.modules[name]


def _warm_up(tests: list[str]) -> None:
    """Run the tests once on the unchanged code: they must pass, and every import and
    lazy cache of torch they touch is then ready for the children to share."""
    import pytest
    import torch

    torch.set_num_threads(1)
    with open(os.devnull, "w") as quiet:
        saved, sys.stdout = sys.stdout, quiet
        try:
            code = pytest.main([*_PYTEST, *tests])
        finally:
            sys.stdout = saved
    if code != 0:
        sys.exit(f"the tests fail on the unchanged code (pytest exit {code}): {tests}")
    _forget_flopgraph()
    gc.collect()
    gc.freeze()  # the children's collections skip the shared heap


def run(selected: list[Mutant], jobs: int, timeout: float) -> Iterator[Outcome]:
    """Fork one child per mutant, at most ``jobs`` at a time, and yield each outcome."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.dont_write_bytecode = True
    _warm_up(sorted({t for m in selected for t in TESTS[m.file]}))
    pending = list(selected)
    running: dict[int, tuple[Mutant, float]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            m = pending.pop(0)
            pid = os.fork()
            if pid == 0:  # the child
                code = 3
                try:
                    code = _child(m, TESTS[m.file])
                finally:
                    os._exit(code)
            running[pid] = (m, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for p, (_, start) in list(running.items()):
                if now - start > timeout:
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.02)
            continue
        m, start = running.pop(pid)
        seconds = time.monotonic() - start
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            state = "allowed" if (m.file, m.key) in ALLOWED else "survived"
        elif code == -signal.SIGKILL and seconds > timeout:
            state = "timeout"
        else:
            state = "killed"  # a failing test, or the mutated module failing to import
        yield Outcome(m, state, seconds)


def _parse_lines(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", action="append", help="a source file to mutate (repeatable)")
    p.add_argument("--lines", help="only mutants on these lines: N or N-M (with one --file)")
    p.add_argument("--jobs", type=int, default=2, help="children at a time (default 2)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="print every outcome")
    a = p.parse_args(argv)
    files = [str(Path(f).resolve().relative_to(ROOT)) for f in a.file] if a.file else list(TESTS)
    unknown = [f for f in files if f not in TESTS]
    if unknown:
        p.error(f"no tests are mapped to {unknown}; add them to TESTS in {__file__}")
    lines = _parse_lines(a.lines)
    selected = [
        m for f in files for m in mutants(f)
        if lines is None or lines[0] <= m.line <= lines[1]
    ]  # fmt: skip
    if a.list:
        for m in selected:
            print(f"{m.file}:{m.key}")
        print(f"{len(selected)} mutants")
        return 0
    start = time.monotonic()
    counts = {"killed": 0, "survived": 0, "timeout": 0, "allowed": 0}
    bad: list[Outcome] = []
    for n, o in enumerate(run(selected, max(1, a.jobs), a.timeout), 1):
        counts[o.status] += 1
        if o.status in ("survived", "timeout"):
            bad.append(o)
        if a.verbose or o.status in ("survived", "timeout"):
            print(f"[{n}/{len(selected)}] {o.status:8} {o.mutant.file}:{o.mutant.key} "
                  f"({o.seconds:.1f} s)", flush=True)  # fmt: skip
    elapsed = time.monotonic() - start
    print(f"\n{len(selected)} mutants: {counts['killed']} killed, {counts['survived']} survived, "
          f"{counts['timeout']} timed out, {counts['allowed']} allowed as equivalent "
          f"in {elapsed:.0f} s")  # fmt: skip
    for o in sorted(bad, key=lambda o: (o.mutant.file, o.mutant.line)):
        print(f"  {o.status}: {o.mutant.file}:{o.mutant.key}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
