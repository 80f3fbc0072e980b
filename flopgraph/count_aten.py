"""The counting pass of the aten frontend: records from an AtenTrace.

The rules fx applies come first, so one registered rule counts the same call on
both frontends: a module whose type has a rule is one record, counted by that
rule; a torch call whose target has a rule (a function, a tensor method or a
composite) is one record. The aten ops either ran are their parts, not records
of their own. Every other call is looked through: each of its aten ops is one
record, counted by its aten rule, free (a view, or a rule that says so) or
skipped. So every recorded aten op ends in exactly one record, or inside exactly
one module call or composite.
"""

from __future__ import annotations

from collections.abc import Iterator

from .count import make_record, param_bytes
from .frontends.aten import AtenOp, AtenTrace, ModuleCall, TorchCall, describe_call
from .frontends.reuse import Replayed, moved_path
from .handlers.context import OpContext
from .records import OpRecord, changed
from .registry import Registry, Rule, builtin_packet, default_name, tensor_method

VIEW = Rule("view", None, "a view of its input (data movement)")


def count_aten(trace: AtenTrace, registry: Registry) -> list[OpRecord]:
    names: dict[str, int] = {}
    return list(_records(trace, registry, names))


def _records(trace: AtenTrace, registry: Registry, names: dict[str, int]) -> Iterator[OpRecord]:
    made: dict[int, list[OpRecord]] = {}  # item id -> its records
    for item in trace.items:
        if isinstance(item, Replayed) and id(item.item) in made:
            # a replayed block's item: the records of the item it copies, moved
            old, new = item.old, item.new
            records = [
                changed(r, node=_unique(r.op, names), module=moved_path(r.module, old, new))
                for r in made[id(item.item)]
            ]
        else:
            moved = item.moved() if isinstance(item, Replayed) else item
            records = list(_item_records(moved, registry, names))
        made[id(item)] = records
        yield from records


def _item_records(
    item: AtenOp | ModuleCall | TorchCall, registry: Registry, names: dict[str, int]
) -> Iterator[OpRecord]:
    if isinstance(item, AtenOp):
        yield _op_record(item, registry, names)
        return
    if isinstance(item, ModuleCall):
        yield _module_record(item, registry, names)
        return
    record = _call_record(item, registry, names)
    if record is not None:
        yield record
    else:
        for op in item.ops:
            yield _op_record(op, registry, names)


def _unique(name: str, names: dict[str, int]) -> str:
    n = names.get(name, 0)
    names[name] = n + 1
    return f"{name}_{n}" if n else name


def _call_record(call: TorchCall, registry: Registry, names: dict[str, int]) -> OpRecord | None:
    """The call as one record, or None to count its aten ops one by one."""
    rule = composite_rule(call, registry)
    if rule is None:
        return None
    label = describe_call(call.target)
    extra = {"target": call.target, "method": tensor_method(call.target)}
    ctx = OpContext(
        "composite", call.args, call.kwargs, call.out, None, _unique(rule.name, names), extra
    )
    return make_record(
        ctx, rule, op=rule.name, target=label, module=call.module, described=label,
        phase=call.phase,
    )  # fmt: skip


def _module_record(call: ModuleCall, registry: Registry, names: dict[str, int]) -> OpRecord:
    """A module call counted whole by its module rule, as fx counts it."""
    cls = type(call.module)
    rule = registry.lookup_module(cls)
    name = rule.name if rule is not None else cls.__name__
    ctx = OpContext(
        "call_module", call.args, call.kwargs, call.out, call.module, _unique(name, names)
    )
    return make_record(
        ctx, rule, op=name, target=f"{cls.__module__}.{cls.__qualname__}", module=call.path,
        described=call.path or "<root>", own_bytes=param_bytes(call.module), phase=call.phase,
    )  # fmt: skip


def composite_rule(call: TorchCall, registry: Registry) -> Rule | None:
    """The convention's rule for a whole torch call, if it has one: the rule fx applies
    to the same call (function, tensor method), a composite rule, or the composite rule
    of the aten op a builtin names (a fallback for a builtin is renamed after that op)."""
    rule = registry.call_rule(call.target)
    packet = builtin_packet(call.target)
    if rule is None and packet is not None:
        rule = registry.get(("composite", packet))
        fallback = registry.policy.unknown_builtin
        if rule is None and fallback is not None:
            rule = Rule(default_name(packet), None, fallback.reason)
    return rule


def _op_record(op: AtenOp, registry: Registry, names: dict[str, int]) -> OpRecord:
    packet = op.op.overloadpacket
    rule = registry.get(("aten", packet))
    name = rule.name if rule is not None else default_name(packet)
    if rule is None:  # a fallback rule keeps the op's own name
        rule = VIEW if op.op.is_view else registry.policy.unknown_aten
    if op.free:
        rule = Rule(name, None, op.free)
    extra = {"overload": op.op._overloadname, "op": op.op}
    out = op.out
    if out is None and op.args and not op.op._schema.returns:
        out = op.args[0]  # an in-place op that returns nothing (``_foreach_add_``)
    ctx = OpContext("aten", op.args, op.kwargs, out, None, _unique(name, names), extra)
    label = str(op.op)
    return make_record(
        ctx, rule, op=name, target=label, module=op.module, described=label, phase=op.phase
    )
