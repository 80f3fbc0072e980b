"""Symbolic sizes: counts as exact formulas of named input sizes (spec section H).

A TensorSpec size given as a name (``TensorSpec(("B", 3, "H", "W"))``) becomes a
symbol of torch's own ShapeEnv: the forward runs once on fake tensors whose sizes
are those symbols, and every rule computes with them as with ints (torch.SymInt), so
each record's MACs and FLOPs come out as exact expressions, integer coefficients, with
floor divisions where strides make them. Each symbol has a hint (a value the trace
uses where code branches on a size): the branches it took are conditions, torch's
guards, listed as the report's ``assumptions``, and ``Report.subs`` refuses values
that break one. torch treats a dynamic size as at least 2 (0 and 1 specialize a
trace), so every symbol also carries ``name >= 2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sympy
import torch

from .errors import InputError
from .inputs import TensorSpec
from .records import OpRecord, TensorMeta

FIRST_HINT = 65
"""The hint of the first symbol with none given; the next get 67, 69, ...: odd, so
that a stride's floor division is exercised, and large enough that a 32x downsampled
image is still wider than 1."""


class Sizes:
    """The symbols of one analysis: a ShapeEnv, its FakeTensorMode, the named sizes."""

    def __init__(self, hints: Mapping[str, int] | None = None) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        # no event log (a debugging aid of torch.compile), and no duck sizing: two names
        # stay two symbols even when their hints are equal
        self.env = ShapeEnv(should_record_events=False, duck_shape=False)
        self.mode = FakeTensorMode(shape_env=self.env, allow_non_fake_inputs=True)
        self.hints = dict(hints or {})
        self.symints: dict[str, torch.SymInt] = {}
        self.names: dict[sympy.Symbol, sympy.Symbol] = {}
        """ShapeEnv's symbol -> the user's name as a positive integer sympy symbol."""

    def size(self, name: str) -> torch.SymInt:
        if name not in self.symints:
            from torch._dynamo.source import ConstantSource
            from torch.fx.experimental.symbolic_shapes import DimDynamic

            hint = self.hints.get(name, FIRST_HINT + 2 * len(self.symints))
            if not isinstance(hint, int) or hint < 2:
                raise InputError(f"the hint of size {name!r} must be an int >= 2, got {hint!r}")
            sym = self.env.create_symbol(hint, ConstantSource(name), dynamic_dim=DimDynamic.DYNAMIC)
            node = self.env.create_symintnode(sym, hint=hint)
            assert isinstance(node, torch.SymInt)  # a fresh symbol is never a constant
            self.symints[name] = node
            self.names[sym] = sympy.Symbol(name, integer=True, positive=True)
        return self.symints[name]

    def tensor(self, spec: TensorSpec, device: torch.device) -> torch.Tensor:
        shape = [self.size(s) if isinstance(s, str) else s for s in spec.shape]
        with self.mode:
            return torch.empty(shape, dtype=spec.dtype, device=device)

    def expr(self, v: Any) -> Any:
        """An int, or the sympy expression of a SymInt in the user's names."""
        if not isinstance(v, torch.SymInt):
            return v
        e = standard(self.env.replace(v.node.expr).xreplace(self.names))
        return int(e) if e.is_Integer else e

    def assumptions(self) -> tuple[str, ...]:
        out = [f"{n} >= 2" for n in self.names.values()]
        for sym, value in self.env.replacements.items():  # a size the trace fixed
            name = self.names.get(sym)
            if name is not None and sympy.sympify(value).is_Integer:
                out.append(f"Eq({name}, {value})")
        for guard in self.env.guards:
            if _layout_only(guard):
                continue
            e = standard(self.env.replace(guard.expr).xreplace(self.names))
            if e is sympy.true:
                continue
            text = str(e)
            if text not in out:
                out.append(text)
        return tuple(out)

    def record(self, r: OpRecord) -> OpRecord:
        from dataclasses import replace

        return replace(
            r,
            inputs=tuple(self.meta(m) for m in r.inputs),
            outputs=tuple(self.meta(m) for m in r.outputs),
            macs=self.expr(r.macs),
            flops=self.expr(r.flops),
            bytes_read=self.expr(r.bytes_read),
            bytes_written=self.expr(r.bytes_written),
        )

    def meta(self, m: TensorMeta) -> TensorMeta:
        return TensorMeta(tuple(self.expr(s) for s in m.shape), m.dtype)


def _layout_only(guard: Any) -> bool:
    """A guard torch's fake convolution adds while it picks the output's memory format
    (its backend choice reads the batch size): it decides strides, never a shape, so
    no count depends on it and it is not an assumption of the formula."""
    where = str(getattr(guard, "sloc", ""))
    return "fake_impls.py" in where and " in conv)" in where


def standard(e: Any) -> Any:
    """torch's sympy functions (FloorDiv, CeilDiv, PythonMod) as plain sympy (floor,
    ceiling, Mod), so that formulas print, parse and substitute as sympy does."""
    from torch.utils._sympy import functions as f

    if not isinstance(e, sympy.Basic):
        return e
    rewrites = {
        getattr(f, "FloorDiv", None): lambda a, b: sympy.floor(a / b),
        getattr(f, "CeilDiv", None): lambda a, b: sympy.ceiling(a / b),
        getattr(f, "PythonMod", None): sympy.Mod,
        getattr(f, "Mod", None): sympy.Mod,
        getattr(f, "IntTrueDiv", None): lambda a, b: a / b,
    }
    for cls, fn in rewrites.items():
        if cls is not None and e.has(cls):
            e = e.replace(cls, fn)
    return e


def symbolic_specs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    return any(isinstance(v, TensorSpec) and v.symbolic for v in (*args, *kwargs.values()))


def parse(text: str, names: tuple[str, ...]) -> Any:
    """A formula or condition written by :func:`formula_text` or ``str``, read back."""
    local = {n: sympy.Symbol(n, integer=True, positive=True) for n in names}
    return sympy.sympify(text, locals=local)


def substitute(value: Any, values: Mapping[sympy.Symbol, int]) -> Any:
    if isinstance(value, sympy.Basic):
        out = value.xreplace(values)
        if not out.is_Integer:
            out = sympy.simplify(out)
        if not out.is_Integer:
            raise InputError(f"the formula {value} is not a whole number at {dict(values)}")
        return int(out)
    return value


def formula_text(e: Any, short: bool = True) -> str:
    """A formula collected by powers of its symbols, highest first, big coefficients
    in short form unless ``short`` is False: ``1.5e6·B·T² + 1.7e8·B·T``. The exact
    formula is the value itself (``str`` of it; the JSON's text)."""
    if not isinstance(e, sympy.Basic):
        return f"{e:,}"
    expanded = sympy.expand(e)
    terms = []
    for term in sympy.Add.make_args(expanded):
        coeff, rest = term.as_coeff_Mul()
        factors = [] if rest == 1 else [_power(b, p) for b, p in rest.as_powers_dict().items()]
        c = (_short(coeff) if short else str(coeff)) if (coeff != 1 or not factors) else ""
        terms.append((-len(factors), "·".join([x for x in (c, *factors) if x])))
    return " + ".join(t for _, t in sorted(terms, key=lambda t: t[0])).replace("+ -", "- ")


def _power(base: Any, p: Any) -> str:
    supers = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    b = str(base) if base.is_Symbol else f"({base})"
    return b if p == 1 else b + str(p).translate(supers)


def _short(c: Any) -> str:
    if c.is_Integer and abs(int(c)) >= 10_000:
        return f"{float(c):.3g}".replace("e+0", "e").replace("e+", "e")
    return str(c)


def check_values(report: Any, values: Mapping[str, int]) -> dict[sympy.Symbol, int]:
    """The substitution table for ``report.subs(**values)``, after checking that every
    symbol has an int value and that each assumption holds at them."""
    missing = [n for n in report.symbols if n not in values]
    unknown = [n for n in values if n not in report.symbols]
    if not report.symbols:
        raise InputError("this report has no symbolic sizes to substitute")
    if missing or unknown:
        raise InputError(
            f"subs needs a value for each of {', '.join(report.symbols)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    table: dict[sympy.Symbol, int] = {}
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InputError(f"subs: {name} must be a non-negative int, got {v!r}")
        table[sympy.Symbol(name, integer=True, positive=True)] = sympy.Integer(v)
    for text in report.assumptions:
        held = parse(text, report.symbols).xreplace(table)
        if held is not sympy.true and not bool(sympy.simplify(held)):
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise InputError(
                f"subs({shown}) breaks the assumption {text} the symbolic trace made: "
                "analyze at these sizes concretely instead"
            )
    return table


def concrete(item: Any, table: Mapping[sympy.Symbol, int]) -> Any:
    """A record or TensorMeta with every formula replaced by its value."""
    from dataclasses import replace

    if isinstance(item, TensorMeta):
        return TensorMeta(tuple(substitute(s, table) for s in item.shape), item.dtype)
    return replace(
        item,
        inputs=tuple(concrete(m, table) for m in item.inputs),
        outputs=tuple(concrete(m, table) for m in item.outputs),
        macs=substitute(item.macs, table),
        flops=substitute(item.flops, table),
        bytes_read=substitute(item.bytes_read, table),
        bytes_written=substitute(item.bytes_written, table),
    )


def rank(v: Any) -> int:
    """An int to order costs by: the value itself, or a formula's value with every
    size at 1024 (display order only: which of two formulas is larger depends on the
    sizes; this orders them as at large sizes)."""
    if isinstance(v, int):
        return v
    return int(v.xreplace({s: 1024 for s in v.free_symbols}))
