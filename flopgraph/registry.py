"""The handler registry: which rule counts which call target.

Keys come in five kinds: a module type (``nn.Conv2d``), a callable
(``torch.add``, ``operator.add``, ``F.relu``), a tensor method name (given as a
``str`` such as ``"add_"``) and, for the aten frontend, an aten op overload
packet (``torch.ops.aten.addmm``) or a *composite*: a torch-level call
(``F.scaled_dot_product_attention``, ``F.normalize``) that the aten frontend
counts as one op instead of the aten ops it decomposes into. Each key maps to
one :class:`Rule`. An analysis works on a copy, so a per-call override never
leaks into the next call.

One table serves both frontends, so a rule cannot apply on one and not the other:
the aten frontend asks :meth:`Registry.call_rule` for every torch-level call (a
function or tensor-method rule counts that call whole, exactly as on fx) and
:meth:`Registry.lookup_module` for every module call; fx asks
:meth:`Registry.op_rule` for a call with no function or method rule (a torch
builtin is counted by the rule of the aten op it is bound to, ``torch.ops.aten``
calls by their own).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch

from .errors import RegistryError
from .records import Cost

KeyKind = Literal["module", "function", "method", "aten", "composite"]
Key = tuple[KeyKind, Any]  # Any: a module type, a callable, a method name or an aten packet
Handler = Callable[["Any"], Cost | int]
"""A handler receives an :class:`~flopgraph.handlers.context.OpContext` and
returns a :class:`Cost` (or an int, read as flops with no macs)."""
Target = type | Callable[..., Any] | str


@dataclass(frozen=True)
class Rule:
    """How one target is counted: a handler, or free with a reason."""

    name: str
    """Readable op name the records carry (``conv2d``, ``add``)."""
    handler: Handler | None = None
    """None means free: the op counts 0 and ``reason`` says why."""
    reason: str = ""
    user: bool = False
    """Registered by a user (its results are validated more strictly)."""

    @property
    def is_free(self) -> bool:
        return self.handler is None


@dataclass(frozen=True)
class Policy:
    """What a convention does, on the aten frontend, with what its table does not name."""

    unknown_aten: Rule | None = None
    """Rule for an aten op with no rule of its own; None: the op is skipped."""
    unknown_builtin: Rule | None = None
    """Rule for a torch builtin call (one that names an aten op) with no composite
    rule; None: descend into the aten ops it ran. A convention that counts at the
    level of the ops a Python program calls (fvcore's jit view) stops here."""
    fx: bool = True
    """Whether the table has rules for fx graphs too; a preset that only names aten
    ops (fvcore, torch) always runs the aten frontend."""
    training: bool = True
    """Whether the table counts a training step (backward and optimizer ops); fvcore's
    convention is forward only."""


def key_of(target: Target) -> Key:
    """The registry key for a target; raises RegistryError for an unusable one."""
    if isinstance(target, (torch._ops.OpOverloadPacket, torch._ops.OpOverload)):
        return ("aten", aten_packet(target))
    if isinstance(target, str):
        return ("method", target)
    if isinstance(target, type):
        if not issubclass(target, torch.nn.Module):
            raise RegistryError(
                f"a class target must be a torch.nn.Module subclass, got {target.__qualname__}"
            )
        return ("module", target)
    if callable(target):
        return ("function", target)
    raise RegistryError(
        "a handler target must be an nn.Module subclass, a callable or a tensor "
        f"method name (str), got {type(target).__name__}: {target!r}"
    )


def aten_packet(op: Any) -> Any:
    """The overload packet of an aten op (``aten.add.Tensor`` -> ``aten.add``)."""
    return op.overloadpacket if isinstance(op, torch._ops.OpOverload) else op


_BUILTINS = (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)


@lru_cache(maxsize=4096)
def _aten_named(name: str) -> Any:
    try:
        return getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return None


def builtin_packet(target: Any) -> Any:
    """The aten packet a torch builtin (a C function, tensor method or operator) is
    bound to: ``F.linear`` -> ``aten.linear``, ``Tensor.__add__`` -> ``aten.add``;
    None for a Python function such as ``F.normalize``."""
    if not isinstance(target, _BUILTINS):
        return None
    name = str(getattr(target, "__name__", ""))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    return _aten_named(name) if name else None


def tensor_method(target: Any) -> str | None:
    """The name of a tensor method (``Tensor.add`` -> ``"add"``), else None."""
    name = getattr(target, "__name__", None)
    if isinstance(name, str) and getattr(torch.Tensor, name, None) is target:
        return name
    return None


def method_packet(name: str) -> Any:
    """The aten packet a tensor method name is bound to (``"__add__"`` -> ``aten.add``)."""
    return builtin_packet(getattr(torch.Tensor, name, None))


def default_name(target: Target) -> str:
    """A readable op name for a target that has no registered rule."""
    if isinstance(target, (torch._ops.OpOverloadPacket, torch._ops.OpOverload)):
        return str(aten_packet(target).__name__).rstrip("_")
    if isinstance(target, str):
        return target.strip("_") if target.startswith("__") else target.rstrip("_")
    if isinstance(target, type):
        return target.__name__
    name = getattr(target, "__name__", None) or type(target).__name__
    return str(name).rstrip("_")


class Registry:
    """A mapping from keys to rules, with decorator registration and copies."""

    def __init__(self, rules: Mapping[Key, Rule] | None = None, policy: Policy = Policy()) -> None:
        self._rules: dict[Key, Rule] = dict(rules or {})
        self.policy = policy
        """How the aten frontend treats ops this table does not name."""

    def add(self, targets: Iterable[Target], rule: Rule, *, replace: bool = False) -> None:
        """Map each target to ``rule``; a second rule for one key needs ``replace``."""
        for target in targets:
            key = key_of(target)
            if not replace and key in self._rules:
                raise RegistryError(
                    f"{_describe(key)} already has a rule ({self._rules[key].name})"
                )
            self._rules[key] = rule

    def handler(
        self, *targets: Target, name: str | None = None, replace: bool = False
    ) -> Callable[[Handler], Handler]:
        """Decorator: register the decorated function for ``targets``."""

        def deco(fn: Handler) -> Handler:
            self.add(targets, Rule(name or default_name(targets[0]), fn), replace=replace)
            return fn

        if not targets:
            raise RegistryError("handler() needs at least one target")
        return deco

    def composite(self, targets: Iterable[Any], rule: Rule, *, replace: bool = False) -> None:
        """Count each target (an aten packet or a torch-level callable) as one op on
        the aten frontend, the aten ops it runs included."""
        for target in targets:
            key: Key = ("composite", aten_packet(target))
            if not replace and key in self._rules:
                raise RegistryError(
                    f"{_describe(key)} already has a rule ({self._rules[key].name})"
                )
            self._rules[key] = rule

    def free(self, targets: Iterable[Target], name: str | None, reason: str) -> None:
        """Register targets that count 0, each with its reason."""
        for t in targets:
            self.add([t], Rule(name or default_name(t), None, reason))

    def get(self, key: Key) -> Rule | None:
        return self._rules.get(key)

    def override(self, targets: Iterable[Target], rule: Rule) -> None:
        """Replace the rule of each target, on every frontend: the one way a user's
        handler enters a table (``register`` and ``handlers=``). An aten op given as
        the target also replaces the rules of the calls bound to it (its composite, the
        torch builtins and tensor methods that name it), which are what fx sees."""
        for target in targets:
            self.add([target], rule, replace=True)
            kind, key = key_of(target)
            if kind == "aten":
                for bound in [k for k in self._rules if _bound_to(k, key)]:
                    self._rules[bound] = rule

    def call_rule(self, target: Any) -> Rule | None:
        """The rule that counts a torch-level call whole on the aten frontend: the
        target's function rule, its tensor-method rule, else its composite rule (the
        rules fx applies to the same call come first, so the frontends agree)."""
        try:
            rule = self._rules.get(("function", target))
        except TypeError:  # an unhashable target
            return None
        if rule is None:
            name = tensor_method(target)
            if name is not None:
                rule = self._rules.get(("method", name))
        return rule if rule is not None else self._rules.get(("composite", target))

    def op_rule(self, target: Any) -> Rule | None:
        """For an fx call target with no function or method rule: the rule of the aten
        op it names (a ``torch.ops.aten`` op, a torch builtin, a tensor method name),
        whose arguments are the call's own."""
        if isinstance(target, (torch._ops.OpOverloadPacket, torch._ops.OpOverload)):
            packet = aten_packet(target)
        elif isinstance(target, str):
            packet = method_packet(target)
        else:
            packet = builtin_packet(target)
        if packet is None:
            return None
        rule = self._rules.get(("aten", packet))
        return rule if rule is not None else self._rules.get(("composite", packet))

    def lookup_module(self, cls: type) -> Rule | None:
        """Rule for a module type: its own, else a base class's when the subclass
        keeps that base's forward (a subclass with its own forward is traced)."""
        rule = self._rules.get(("module", cls))
        if rule is not None:
            return rule
        for base in cls.__mro__[1:]:
            rule = self._rules.get(("module", base))
            if rule is not None:
                same_forward = getattr(cls, "forward", None) is getattr(base, "forward", None)
                return rule if same_forward else None
        return None

    def items(self) -> Iterator[tuple[Key, Rule]]:
        """Every (key, rule) pair, in registration order (for reports over the table)."""
        return iter(self._rules.items())

    def copy(self) -> Registry:
        return Registry(self._rules, self.policy)

    def __contains__(self, key: object) -> bool:
        return key in self._rules

    def __len__(self) -> int:
        return len(self._rules)


def _bound_to(key: Key, packet: Any) -> bool:
    """Whether a function, method or composite key names the aten ``packet``."""
    kind, target = key
    if kind == "composite":
        return target is packet
    if kind == "function":
        return builtin_packet(target) is packet
    return kind == "method" and method_packet(target) is packet


def _describe(key: Key) -> str:
    kind, target = key
    return f"{kind} {default_name(target)}"
