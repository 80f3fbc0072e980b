"""The counting pass: one OpRecord per call node, from annotations alone.

Every call node ends as exactly one of: counted (a handler gave its cost),
free (a rule says it costs nothing, with the reason) or skipped (no rule).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.fx
from torch.fx.node import map_arg

from .errors import HandlerError
from .frontends.fx import TracedGraph
from .handlers.context import NotCounted, OpContext, iter_metas
from .records import Cost, OpRecord, Status
from .registry import Key, Registry, Rule, default_name
from .shapes import META_KEY, describe_target

CALLS = ("call_function", "call_method", "call_module")
NO_FLOAT_OUTPUT = "no floating-point output (integer, boolean or non-tensor result)"
NO_HANDLER = "no handler for this op"


def module_path(node: torch.fx.Node) -> str:
    """The module a node ran in: the innermost entry of its module stack."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    return str(next(reversed(stack.values()))[0])


def count(traced: TracedGraph, registry: Registry) -> list[OpRecord]:
    return list(_records(traced, registry))


def _records(traced: TracedGraph, registry: Registry) -> Iterator[OpRecord]:
    own_bytes: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op not in CALLS:
            continue
        module = traced.submodule(str(node.target)) if node.op == "call_module" else None
        rule = _rule(node, module, registry)
        ctx = OpContext(
            kind=node.op,
            args=map_arg(node.args, _meta),
            kwargs=map_arg(node.kwargs, _meta),
            out=node.meta[META_KEY],
            module=module,
            node=node.name,
            extra={"method" if node.op == "call_method" else "target": node.target},
        )
        if module is not None and node.target not in own_bytes:
            own_bytes[str(node.target)] = param_bytes(module)
        own = own_bytes.get(str(node.target), 0) if module is not None else 0
        target = _target_label(node, module)
        yield make_record(
            ctx,
            rule,
            op=rule.name if rule is not None else _skip_name(node, module),
            target=target,
            module=module_path(node),
            # describe_target(node): the module path for a module call, else the label
            described=str(node.target) if module is not None else target,
            own_bytes=own,
        )


def param_bytes(module: torch.nn.Module) -> int:
    """Bytes of the parameters of ``module`` and below, each tensor once (as
    ``module.parameters()`` yields them, without its generator machinery)."""
    seen: dict[int, int] = {}
    stack = [module]
    while stack:
        m = stack.pop()
        for p in m._parameters.values():
            if p is not None:
                seen.setdefault(id(p), p.numel() * p.element_size())
        stack.extend(c for c in m._modules.values() if c is not None)
    return sum(seen.values())


def make_record(
    ctx: OpContext,
    rule: Rule | None,
    *,
    op: str,
    target: str,
    module: str,
    described: str,
    own_bytes: int = 0,
    phase: str = "forward",
) -> OpRecord:
    """One op's record: its status, its cost from ``rule`` and the bytes it moves.

    ``described`` names the call target in a handler's error message; ``own_bytes``
    are the parameters a module call reads besides its inputs.
    """
    inputs, outputs = ctx.inputs, ctx.outputs
    status, reason, cost = _classify(rule, ctx, described)
    moved = bool(outputs) and status is not Status.SKIPPED
    return OpRecord(
        node=ctx.node,
        op=op,
        target=target,
        kind=ctx.kind,
        module=module,
        inputs=inputs,
        outputs=outputs,
        macs=cost.macs,
        flops=cost.flops,
        bytes_read=(sum(m.nbytes for m in inputs) + own_bytes) if moved else 0,
        bytes_written=sum(m.nbytes for m in outputs) if moved else 0,
        status=status,
        reason=reason,
        phase=phase,
    )


def _meta(n: torch.fx.Node) -> Any:
    return n.meta[META_KEY]


def _rule(node: torch.fx.Node, module: torch.nn.Module | None, reg: Registry) -> Rule | None:
    if module is not None:
        return reg.lookup_module(type(module))
    key: Key = ("function", node.target) if node.op == "call_function" else ("method", node.target)
    try:
        rule = reg.get(key)
    except TypeError:  # an unhashable call target
        return None
    if rule is None:  # a builtin or aten call: the rule of the aten op it names
        rule = reg.op_rule(node.target)
    if rule is None and _is_tuple_class(node.target):
        # fx records a NamedTuple built from traced values (torchvision's
        # GoogLeNetOutputs) as a call of its class: packing outputs, no arithmetic
        return Rule(node.target.__name__, None, "container construction")  # type: ignore[union-attr]
    return rule


def _is_tuple_class(target: object) -> bool:
    return isinstance(target, type) and issubclass(target, tuple)


def _classify(rule: Rule | None, ctx: OpContext, described: str) -> tuple[Status, str, Cost]:
    if not any(m.is_floating for m in ctx.outputs):
        return _integer(rule, ctx, described)
    if rule is None:
        return Status.SKIPPED, NO_HANDLER, Cost()
    if rule.handler is None:
        return Status.FREE, rule.reason, Cost()
    try:
        return Status.COUNTED, "", _call(rule, ctx, described)
    except NotCounted as e:
        return Status.SKIPPED, str(e), Cost()


def _integer(rule: Rule | None, ctx: OpContext, described: str) -> tuple[Status, str, Cost]:
    """An op with no floating-point output counts only when it is a contraction (spec
    principle 4: an int8 or quantized multiply-accumulate is a MAC): its rule gives
    MACs (principle 2: only contractions do). Any other integer op is free."""
    if rule is None or rule.handler is None or not ctx.outputs:
        return Status.FREE, NO_FLOAT_OUTPUT, Cost()
    cost = _call(rule, ctx, described)
    if cost.macs:
        return Status.COUNTED, "", cost
    return Status.FREE, NO_FLOAT_OUTPUT, Cost()


def _call(rule: Rule, ctx: OpContext, described: str) -> Cost:
    try:
        result = rule.handler(ctx)  # type: ignore[misc]
    except NotCounted:
        raise
    except Exception as e:  # a handler's own failure, user-written or built in
        raise HandlerError(f"{_where(rule, ctx, described)} raised {type(e).__name__}: {e}") from e
    if type(result) is Cost and _natural(result.macs) and _natural(result.flops):
        return result  # the common case; the message below is built only for an error
    return _validate(result, _where(rule, ctx, described))


def _natural(v: Any) -> bool:
    return type(v) is int and v >= 0


def _where(rule: Rule, ctx: OpContext, described: str) -> str:
    return (
        f"handler {getattr(rule.handler, '__qualname__', rule.handler)!r} for "
        f"{described} at node {ctx.node!r} "
        f"(inputs {', '.join(map(str, ctx.inputs)) or 'none'}; "
        f"outputs {', '.join(map(str, ctx.outputs)) or 'none'})"
    )


def _validate(result: Any, where: str) -> Cost:
    if isinstance(result, Cost):
        macs, flops = result.macs, result.flops
    elif isinstance(result, int) and not isinstance(result, bool):
        macs, flops = 0, result
    else:
        raise HandlerError(
            f"{where} returned {type(result).__name__} {result!r}; expected a Cost or an int"
        )
    for label, v in (("macs", macs), ("flops", flops)):
        if isinstance(v, torch.SymInt):
            continue  # a formula in symbolic sizes (symbolic.py); never made concrete here
        if not isinstance(v, int) or isinstance(v, bool):
            raise HandlerError(f"{where} returned {label}={v!r}; expected an int")
        if v < 0:
            raise HandlerError(f"{where} returned negative {label}={v}")
    return Cost(_plain(macs), _plain(flops))


def _plain(v: Any) -> Any:
    return v if isinstance(v, torch.SymInt) else int(v)


def _skip_name(node: torch.fx.Node, module: torch.nn.Module | None) -> str:
    if module is not None:
        return type(module).__name__
    return default_name(node.target)  # type: ignore[arg-type]


def _target_label(node: torch.fx.Node, module: torch.nn.Module | None) -> str:
    if module is not None:
        cls = type(module)
        return f"{cls.__module__}.{cls.__qualname__}"
    return describe_target(node)


__all__ = ["count", "make_record", "module_path", "iter_metas"]
