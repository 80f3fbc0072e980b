"""One rule per op, for every frontend: a walk over every target of the default table.

Each registered target (module type, function, tensor method, aten op, composite) is
called on small inputs that a generic builder finds by trying a few argument lists
for real, in eager mode; the call is then counted by fx and by aten. Any target
counted by one frontend and skipped, or counted differently, by the other fails the
walk. Targets the builder cannot call are listed with the reason below; the list
must stay exact (a target that becomes callable must leave it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from one_table_exempt import exempt_targets
from torch import nn

try:  # its ops join the table where it is installed (not on the oldest torch)
    import torchvision  # noqa: F401

    HAS_TORCHVISION = True
except ModuleNotFoundError:
    HAS_TORCHVISION = False
import flopgraph
from flopgraph.handlers import DEFAULT, install_extensions
from flopgraph.registry import default_name, tensor_method

torch.manual_seed(0)
_SHAPES = ((2, 4, 6, 6), (2, 4, 6), (2, 4), (4,))
_SCALARS = (1, 2, 0.5, -1, True)


_GEN = torch.Generator()
"""The walk's own random values: seeded at its start, so the arguments it tries do not
depend on which tests ran before (some aten ops crash the process on arguments they
do not check, e.g. a float tensor's values read as sizes)."""


def _tensors(shape: tuple[int, ...]) -> list[torch.Tensor]:
    return [torch.rand(shape, generator=_GEN) + 0.5 for _ in range(3)]


def _arg_lists(shape: tuple[int, ...]) -> list[tuple[Any, ...]]:
    a, b, c = _tensors(shape)
    lists: list[tuple[Any, ...]] = [(a,), (a, b), (a, b, c)]
    lists += [(a, s) for s in _SCALARS] + [(a, b, s) for s in _SCALARS]
    return lists


_OWN_ARGS: dict[Any, Any] = {
    # aten.view(a, 1) reads 1 as a dtype code and kills the process (SIGFPE) on some
    # runs: give it a valid size instead of guessed scalars
    torch.ops.aten.view: lambda a: (a, [-1]),
}
"""Targets that must not be probed with guessed arguments: the argument list to use."""


class Call(nn.Module):
    """A model that calls ``target`` with tensor args given as inputs, the rest fixed."""

    def __init__(self, target: Any, fixed: tuple[Any, ...], method: bool) -> None:
        super().__init__()
        self.target, self.fixed, self.method = target, fixed, method

    def forward(self, x, y=None, z=None):
        tensors = iter(t for t in (x, y, z) if t is not None)
        args = [next(tensors) if isinstance(v, torch.Tensor) else v for v in self.fixed]
        if self.method:
            return getattr(args[0], self.target)(*args[1:])
        return self.target(*args)


class Wrap(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.m = module

    def forward(self, x):
        return self.m(x)


def _float_out(out: Any) -> bool:
    leaves = out if isinstance(out, (tuple, list)) else (out,)
    return any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in leaves)


def _runs(fn: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
    except Exception:
        return None
    return out if _float_out(out) else None


def _call_model(kind: str, target: Any) -> tuple[nn.Module, tuple[torch.Tensor, ...]] | None:
    """A model calling a function, method or aten target, and its inputs; None if no
    generic argument list runs."""
    name = tensor_method(target) if kind == "function" else None
    if name is not None:  # Tensor.add as a function: fx traces it as the method call
        kind, target = "method", name
    method = kind == "method"
    for shape in _SHAPES:
        lists = _arg_lists(shape)
        if target in _OWN_ARGS:
            lists = [_OWN_ARGS[target](lists[0][0])]
        for args in lists:
            if method:
                if not hasattr(torch.Tensor, target):
                    return None
                fn = lambda a=args: getattr(a[0], target)(*a[1:])  # noqa: E731
            else:
                fn = lambda a=args: target(*a)  # noqa: E731
            if _runs(fn) is not None:
                tensors = tuple(a for a in args if isinstance(a, torch.Tensor))
                return Call(target, args, method), tensors
    return None


def _module_model(cls: type) -> tuple[nn.Module, tuple[torch.Tensor, ...]] | None:
    for ctor in ((), (4,), (4, 4), (4, 4, 3), (4, 2)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = cls(*ctor).eval()
        except Exception:
            continue
        for shape in _SHAPES:
            x = torch.rand(shape, generator=_GEN)
            if _runs(lambda m=module, x=x: m(x)) is not None:
                return Wrap(module), (x,)
    return None


def _targets() -> list[tuple[str, Any]]:
    install_extensions()
    seen: set[tuple[str, Any]] = set()
    out = []
    for (kind, target), _rule in DEFAULT.items():
        if kind == "composite" and not callable(target):
            continue
        if (kind, target) not in seen:
            seen.add((kind, target))
            out.append((kind, target))
    return out


def _label(kind: str, target: Any) -> str:
    if kind == "method":
        return f"method:{target}"
    if isinstance(target, torch._ops.OpOverloadPacket):
        return f"{kind}:{target._qualified_op_name}"  # aten::add
    name = getattr(target, "__qualname__", None) or default_name(target)
    module = getattr(target, "__module__", "") or ""
    return f"{kind}:{module}.{name}" if module and kind != "method" else f"{kind}:{name}"


def _both(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[Any]:
    out = []
    for fe in ("fx", "aten"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                r = flopgraph.analyze(model, inputs, frontend=fe)
            except flopgraph.FlopgraphError as e:
                out.append(("error", type(e).__name__))
                continue
        out.append((r.macs, r.flops, sorted(r.skipped)))
    return out


def walk() -> tuple[dict[str, list[Any]], list[str]]:
    """label -> [fx result, aten result] for every target called, and the labels of
    targets the builder could not call."""
    results: dict[str, list[Any]] = {}
    uncalled: list[str] = []
    _GEN.manual_seed(0)
    torch.manual_seed(0)  # what the targets draw themselves (dropout, rrelu)
    for kind, target in _targets():
        label = _label(kind, target)
        built = _module_model(target) if kind == "module" else _call_model(kind, target)
        if built is None:
            uncalled.append(label)
            continue
        results[label] = _both(*built)
    return results, uncalled


@pytest.fixture(scope="module")
def walked() -> tuple[dict[str, list[Any]], list[str]]:
    """The walk, run in a fresh interpreter: it calls some 2,000 targets on guessed
    arguments, and an aten op that does not check its arguments can kill the process
    (a floating point exception) depending on what ran in it before."""
    here = Path(__file__).resolve().parent
    code = (
        f"import json, sys; sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]; "
        "import test_one_table as t; print(json.dumps(t.walk()))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=1500, cwd=here.parent
    )
    assert proc.returncode == 0, f"the walk died ({proc.returncode}): {proc.stderr[-3000:]}"
    results, uncalled = json.loads(proc.stdout.strip().splitlines()[-1])
    return results, uncalled


def test_every_called_target_counts_the_same_on_both_frontends(walked):
    results, _ = walked
    differ = {label: r for label, r in results.items() if r[0] != r[1]}
    assert sorted(set(differ) - set(FX_CANNOT_TRACE)) == []
    assert sorted(set(FX_CANNOT_TRACE) - set(differ)) == []  # fixed: leave the list
    assert all(differ[label][0][0] == "error" for label in FX_CANNOT_TRACE)
    assert len(results) > 300  # the walk really calls the table, not a handful of ops


def test_every_target_is_called_or_exempt_with_a_reason(walked):
    _, uncalled = walked
    assert sorted(set(uncalled) - set(EXEMPT)) == []
    listed = {k for k in EXEMPT if HAS_TORCHVISION or "torchvision" not in k}
    assert sorted(listed - set(uncalled)) == []  # a callable target leaves the list


FX_CANNOT_TRACE = {
    "method:__div__": "Python 3 never calls __div__; fx's Proxy has no such method",
    "method:__rdiv__": "Python 3 never calls __rdiv__; fx's Proxy has no such method",
    "function:torch._VariableFunctionsClass.as_tensor": "fx cannot trace torch.as_tensor(proxy)",
    "function:torch._VariableFunctionsClass.tensor": "fx cannot trace torch.tensor(proxy)",
}
"""Targets the builder calls whose fx trace fails (a limit of fx, not a rule): aten counts them."""

EXEMPT = dict(exempt_targets())
"""Targets the generic builder cannot call, each with the reason (one_table_exempt.py)."""


# --- item 11's cases, one by one ---------------------------------------------------------


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).relu()


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = _Block()

    def forward(self, x):
        return self.block(x)


def test_a_module_class_handler_counts_the_module_whole_on_aten():
    # the user's rule says a _Block call costs 7 FLOPs; without it, Linear(4, 3) on [2, 4]
    # is 24 MACs, 48 + 6 bias FLOPs, and relu 6 more
    for fe in ("fx", "aten"):
        plain = flopgraph.analyze(_Net(), (2, 4), frontend=fe)
        assert (plain.macs, plain.flops) == (24, 60)
        ruled = flopgraph.analyze(_Net(), (2, 4), frontend=fe, handlers={_Block: lambda ctx: 7})
        assert (ruled.macs, ruled.flops) == (0, 7)
        (record,) = [r for r in ruled.records if r.op == "_Block"]
        assert record.module == "block" and record.kind == "call_module"


def test_register_changes_both_frontends(monkeypatch):
    import torch.nn.functional as F

    monkeypatch.setattr(DEFAULT, "_rules", dict(DEFAULT._rules))  # undone after the test
    flopgraph.register(F.normalize)(lambda ctx: 11)
    model = Call(F.normalize, (torch.rand(2, 8),), False)
    for fe in ("fx", "aten"):
        assert flopgraph.analyze(model, (torch.rand(2, 8),), frontend=fe).flops == 11


def test_a_handler_for_an_aten_op_also_counts_its_builtin_on_fx():
    # torch.grid_sampler is bound to aten.grid_sampler: a user's rule for the aten op
    # counts the builtin call on fx too (the call's arguments are the op's own)
    model = Call(torch.grid_sampler, (torch.rand(1, 2, 4, 4), torch.zeros(1, 3, 3, 2), 0, 0,
                                      False), False)  # fmt: skip
    inputs = (torch.rand(1, 2, 4, 4), torch.zeros(1, 3, 3, 2))
    fx = flopgraph.analyze(model, inputs, frontend="fx", handlers={torch.ops.aten.grid_sampler:
                                                                 lambda ctx: 5})  # fmt: skip
    assert fx.flops == 5
