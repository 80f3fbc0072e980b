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
from .handlers.context import OpContext, iter_metas
from .records import Cost, OpRecord, Status, TensorMeta
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
    root = traced.root
    param_bytes: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op not in CALLS:
            continue
        module = root.get_submodule(str(node.target)) if node.op == "call_module" else None
        rule = _rule(node, module, registry)
        ctx = OpContext(
            kind=node.op,
            args=map_arg(node.args, _meta),
            kwargs=map_arg(node.kwargs, _meta),
            out=node.meta[META_KEY],
            module=module,
            node=node.name,
            extra={"method": node.target} if node.op == "call_method" else {},
        )
        inputs, outputs = ctx.inputs, ctx.outputs
        if module is not None and node.target not in param_bytes:
            param_bytes[str(node.target)] = sum(
                p.numel() * p.element_size() for p in module.parameters()
            )
        own = param_bytes.get(str(node.target), 0) if module is not None else 0
        name = rule.name if rule is not None else _skip_name(node, module)
        status, reason, cost = _classify(node, rule, ctx, outputs)
        moved = bool(outputs) and status is not Status.SKIPPED
        yield OpRecord(
            node=node.name,
            op=name,
            target=_target_label(node, module),
            kind=node.op,
            module=module_path(node),
            inputs=inputs,
            outputs=outputs,
            macs=cost.macs,
            flops=cost.flops,
            bytes_read=(sum(m.nbytes for m in inputs) + own) if moved else 0,
            bytes_written=sum(m.nbytes for m in outputs) if moved else 0,
            status=status,
            reason=reason,
        )


def _meta(n: torch.fx.Node) -> Any:
    return n.meta[META_KEY]


def _rule(node: torch.fx.Node, module: torch.nn.Module | None, reg: Registry) -> Rule | None:
    if module is not None:
        return reg.lookup_module(type(module))
    key: Key = ("function", node.target) if node.op == "call_function" else ("method", node.target)
    try:
        return reg.get(key)
    except TypeError:  # an unhashable call target
        return None


def _classify(
    node: torch.fx.Node, rule: Rule | None, ctx: OpContext, outputs: tuple[TensorMeta, ...]
) -> tuple[Status, str, Cost]:
    if not any(m.is_floating for m in outputs):
        return Status.FREE, NO_FLOAT_OUTPUT, Cost()
    if rule is None:
        return Status.SKIPPED, NO_HANDLER, Cost()
    if rule.handler is None:
        return Status.FREE, rule.reason, Cost()
    return Status.COUNTED, "", _call(node, rule, ctx)


def _call(node: torch.fx.Node, rule: Rule, ctx: OpContext) -> Cost:
    where = (
        f"handler {getattr(rule.handler, '__qualname__', rule.handler)!r} for "
        f"{describe_target(node)} at node {node.name!r} "
        f"(inputs {', '.join(map(str, ctx.inputs)) or 'none'}; "
        f"outputs {', '.join(map(str, ctx.outputs)) or 'none'})"
    )
    try:
        result = rule.handler(ctx)  # type: ignore[misc]
    except Exception as e:  # a handler's own failure, user-written or built in
        raise HandlerError(f"{where} raised {type(e).__name__}: {e}") from e
    return _validate(result, where)


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
        if not isinstance(v, int) or isinstance(v, bool):
            raise HandlerError(f"{where} returned {label}={v!r}; expected an int")
        if v < 0:
            raise HandlerError(f"{where} returned negative {label}={v}")
    return Cost(int(macs), int(flops))


def _skip_name(node: torch.fx.Node, module: torch.nn.Module | None) -> str:
    if module is not None:
        return type(module).__name__
    return default_name(node.target)  # type: ignore[arg-type]


def _target_label(node: torch.fx.Node, module: torch.nn.Module | None) -> str:
    if module is not None:
        cls = type(module)
        return f"{cls.__module__}.{cls.__qualname__}"
    return describe_target(node)


__all__ = ["count", "module_path", "iter_metas"]
