"""The hook-based baseline: count a model the way thop and ptflops do.

A forward hook on every *leaf* module adds that module's cost each time it is
called; nothing else is seen. Here a leaf is a module whose type has a module
rule in the registry (``Registry.lookup_module``): the same types the fx
frontend keeps as single ``call_module`` nodes, counted by the same handlers.
So any difference between this count and the graph's is only what hooks cannot
see, never a difference of formula.

Exactly what is counted:

- every ``__call__`` of a leaf module, once per call (a module called twice
  counts twice), with the cost its module rule gives for that call's shapes;
- a leaf called while another leaf's ``__call__`` is running is not counted
  again: its parent's rule already covers it, as in the graph, where a leaf
  is one node;
- nothing else: functional calls, tensor methods, Python operators, and a
  leaf's forward run without ``__call__`` (``m.forward(x)``) are invisible to
  hooks. The last are recorded (``forward_without_call``) so a comparison can
  say why a leaf's hooks never fired.

The model is never touched: hooks go on a *shadow* tree (``shapes._Twins``)
whose modules share the user's settings but hold data-less meta twins of the
parameters and buffers and have empty hook dicts; the shadow runs under
``no_grad`` on meta tensors (fake tensors when a forward needs a real device).
User hooks do not run (neither do they in the graph path). Side effects a
forward has on shared Python objects (appending to a list attribute) happen,
as they do when the model is traced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.fx.node import map_aggregate

from .analyze import Convention, _registry
from .count import _validate
from .errors import FlopgraphError, HandlerError, InputError, PropagationError
from .frontends.isolation import isolated
from .handlers.context import OpContext
from .inputs import describe_inputs, normalize_inputs
from .records import Cost, TensorMeta
from .registry import Registry, Rule
from .report import _ancestors
from .shapes import Mode, _device_of, _Twins, to_meta


@dataclass(frozen=True)
class HookCall:
    """One counted ``__call__`` of a leaf module."""

    path: str
    """Dotted path of the module (the first path, for a module shared at several)."""
    type: str
    op: str
    """Name of the module rule that counted it (``conv2d``, ``batch_norm``)."""
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    cost: Cost


@dataclass(frozen=True)
class HookCount:
    """What forward hooks on leaf modules see of one forward pass."""

    calls: tuple[HookCall, ...]
    """Counted leaf calls, in the order they ran."""
    module_calls: Mapping[str, int] = field(default_factory=dict)
    """Path -> times its ``__call__`` ran, for every module (0: never called)."""
    forward_without_call: Mapping[str, int] = field(default_factory=dict)
    """Leaf path -> times its ``forward`` ran outside its own ``__call__``."""
    leaves: tuple[str, ...] = ()
    """Paths of the modules hooks count (types with a module rule)."""

    @property
    def cost(self) -> Cost:
        return sum((c.cost for c in self.calls), Cost())

    @property
    def macs(self) -> int:
        return self.cost.macs

    @property
    def flops(self) -> int:
        return self.cost.flops

    def by_module(self) -> dict[str, Cost]:
        """Path -> cumulative cost (ancestors include descendants; ``""`` is the model)."""
        out: dict[str, Cost] = {path: Cost() for path in self.module_calls}
        out.setdefault("", Cost())
        for c in self.calls:
            for path in _ancestors(c.path):
                out[path] = out.get(path, Cost()) + c.cost
        return out


def count_hooks(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    convention: Convention = "default",
    real: bool = False,
) -> HookCount:
    """Count ``model`` on ``inputs`` with forward hooks on its leaf modules only.

    Inputs are given as to :func:`flopgraph.analyze`. Only shapes are used and
    the model is left exactly as it was (see the module docstring). ``real``: run
    on copies of the (real) inputs and weights instead, for a forward whose control
    flow needs tensor values (as the aten frontend's real run).
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    registry = _registry(convention, None)
    args, kw = normalize_inputs(inputs, kwargs)
    with isolated():  # the user's global hooks must not run on the shadow either
        if real:
            return _Run(model, registry, "real").run(args, kw)
        try:
            return _Run(model, registry, "meta").run(args, kw)
        except PropagationError:
            # as in shape propagation: meta tensors cannot meet tensors a forward
            # creates on a real device; fake tensors can
            return _Run(model, registry, "fake").run(args, kw)


class _Run:
    """One hooked forward pass over a shadow of the model."""

    def __init__(self, model: torch.nn.Module, registry: Registry, mode: Mode) -> None:
        self.model = model
        self.twins = _Twins(mode, _device_of(model))
        self.user = dict(model.named_modules())
        self.rules: dict[str, Rule] = {}
        for path, m in self.user.items():
            rule = registry.lookup_module(type(m))
            if rule is not None:
                self.rules[path] = rule
        self.calls: list[HookCall] = []
        self.module_calls = dict.fromkeys(self.user, 0)
        self.forward_runs = dict.fromkeys(self.rules, 0)
        self.active: list[str] = []
        """Paths of the leaves whose ``__call__`` is running, outermost first."""

    def run(self, args: tuple[Any, ...], kw: Mapping[str, Any]) -> HookCount:
        shadow = self.twins.module(self.model)
        shadows = dict(shadow.named_modules())
        handles: list[Any] = []
        try:
            for path, s in shadows.items():
                handles.append(s.register_forward_pre_hook(self._pre(path), with_kwargs=True))
                if path in self.rules:
                    handles.append(
                        s.register_forward_hook(
                            self._post(path), with_kwargs=True, always_call=True
                        )
                    )
                    s.forward = self._counted_forward(path, s.forward)
            sargs = tuple(self._twin(a) for a in args)
            skw = {k: self._twin(v) for k, v in kw.items()}
            with self.twins.active():
                shadow(*sargs, **skw)
        except FlopgraphError:
            raise
        except Exception as e:  # a failure anywhere in the model's forward or torch
            where = f" (in {self.active[-1]!r})" if self.active else ""
            raise PropagationError(
                f"hook-based count of {type(self.model).__name__} on "
                f"{describe_inputs(args, kw) or 'no inputs'} failed{where}: "
                f"{type(e).__name__}: {_first_line(e)}"
            ) from e
        finally:
            for h in handles:
                h.remove()
            self.twins.close()
        direct = {p: n - self.module_calls[p] for p, n in self.forward_runs.items()}
        return HookCount(
            calls=tuple(self.calls),
            module_calls=dict(self.module_calls),
            forward_without_call={p: n for p, n in direct.items() if n > 0},
            leaves=tuple(self.rules),
        )

    def _twin(self, v: Any) -> Any:
        return map_aggregate(
            v, lambda t: self.twins.tensor(t) if isinstance(t, torch.Tensor) else t
        )

    def _pre(self, path: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, kwargs: Any) -> None:
            self.module_calls[path] += 1
            if path in self.rules:
                self.active.append(path)

        return hook

    def _post(self, path: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            self.active.pop()
            if not self.active:  # a leaf inside a leaf is its parent's business
                self.calls.append(self._call(path, module, args, kwargs, output))

        return hook

    def _counted_forward(self, path: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            self.forward_runs[path] += 1
            return forward(*args, **kwargs)

        return run

    def _call(
        self, path: str, module: torch.nn.Module, args: Any, kwargs: Any, output: Any
    ) -> HookCall:
        """The cost of one leaf call, decided as the graph's counting pass decides it.
        The handler reads the shadow ``module``: the user's settings, but twin tensors (a
        parametrized weight computed on the user's module would update its state)."""
        rule = self.rules[path]
        ctx = OpContext(
            kind="call_module",
            args=to_meta(tuple(args)),
            kwargs=to_meta(dict(kwargs)),
            out=to_meta(output),
            module=module,
            node=path,
        )
        cost = Cost()
        if rule.handler is not None and any(m.is_floating for m in ctx.outputs):
            where = (
                f"handler {rule.name!r} for module {path!r} ({type(module).__name__}; "
                f"inputs {', '.join(map(str, ctx.inputs)) or 'none'})"
            )
            try:
                result = rule.handler(ctx)
            except Exception as e:  # a handler's own failure, user-written or built in
                raise HandlerError(f"{where} raised {type(e).__name__}: {e}") from e
            cost = _validate(result, where)
        return HookCall(path, type(module).__name__, rule.name, ctx.inputs, ctx.outputs, cost)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


__all__ = ["HookCall", "HookCount", "count_hooks"]
