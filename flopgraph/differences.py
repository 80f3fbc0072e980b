"""Why the graph and the hooks disagree: one Difference per op hooks count otherwise.

The graph counts one record per call node; forward hooks count one cost per
leaf-module ``__call__``. A leaf's ``call_module`` record and its hook call
come from the same rule on the same shapes, so they cancel. What is left is:

- every counted record that is not a leaf-module call (a function, a tensor
  method or a Python operator): hooks never see it. Its reason depends on the
  tensors it reads, followed back through free ops (views, ``expand``, ``cat``):
  a parameter or buffer of a leaf module means that leaf's work ran outside its
  ``__call__`` (its ``forward`` called directly, or its weight used
  functionally); one of any other module means a parameter used outside every
  leaf (``x + self.pos_embed``); none means a plain functional op;
- a leaf call made on one side only: a ``call_module`` record hooks never saw
  (its record's cost), or a hook call the graph never made (minus the cost the
  hook counter gave it), e.g. a forward that calls a leaf only when it runs.

Every difference is the cost of its own op, never a remainder. A leaf's graph
call and its hook call on the same shapes are paired and left out: they are one
call counted twice by the same module rule, so they must cost the same. That is
checked, not assumed: a pair that costs otherwise is listed as UNEXPLAINED (its
amount can only be the leftover), and a comparison with one is not reconciled.

On the aten frontend a record carries the module it ran in but no dataflow and
no call structure: a record inside a leaf module belongs to that leaf (its
outermost leaf), whose records in total must equal its hook calls in total
(else UNEXPLAINED); every other counted record is one difference, "outside
leaf modules", without the finer reasons above.

So graph total minus hook total equals the sum of the explained differences
only when every pair agrees; :class:`~flopgraph.compare.Comparison` checks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

import torch
import torch.fx

from .count import CALLS
from .errors import TraceError
from .frontends.fx import TracedGraph
from .hooks import HookCall, HookCount
from .records import Cost, OpRecord, Status, TensorMeta
from .report import Report, _ancestors


class Reason(str, Enum):
    """Why hooks on leaf modules count an op differently from the graph."""

    FUNCTIONAL = "functional op"
    PARAMETER = "parameter outside leaf modules"
    BYPASSED_LEAF = "leaf outside __call__"
    GRAPH_ONLY = "leaf call hooks never saw"
    HOOKS_ONLY = "leaf call the graph never made"
    OUTSIDE_LEAVES = "outside leaf modules"
    UNEXPLAINED = "unexplained"

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]

    @property
    def explained(self) -> bool:
        """False for UNEXPLAINED: an amount known only as the leftover of both totals."""
        return self is not Reason.UNEXPLAINED


_EXPLANATIONS = {
    Reason.FUNCTIONAL: (
        "a function, tensor method or operator inside a module's forward (residual "
        "adds, F.relu, q @ k, softmax, scaling): no module is called, so no hook fires"
    ),
    Reason.PARAMETER: (
        "an op on a parameter or buffer that belongs to no leaf module "
        "(x + self.pos_embed, a custom layer's own weights): no hook owns it"
    ),
    Reason.BYPASSED_LEAF: (
        "a leaf module's work done without its __call__ (m.forward(x) called "
        "directly, or F.linear(x, m.weight)): its hooks never fire"
    ),
    Reason.GRAPH_ONLY: (
        "a leaf module call in the graph whose hooks did not fire in the hooked run "
        "(the forward took another path when run than when traced): its record's cost"
    ),
    Reason.HOOKS_ONLY: (
        "a leaf module call the hooks counted that the graph does not hold (the forward "
        "took another path when traced than when run): minus the hook counter's cost for it"
    ),
    Reason.OUTSIDE_LEAVES: (
        "an op that ran outside every leaf module's __call__ (aten frontend): a function, "
        "method or operator, an op on a parameter no leaf owns, or a leaf's forward called "
        "directly; aten records keep the module an op ran in, not the tensors it read, so "
        "these are not told apart"
    ),
    Reason.UNEXPLAINED: (
        "a leaf call both sides counted, by the same module rule on the same shapes, "
        "whose costs differ (on aten: a leaf whose records and hook calls differ in "
        "total): no cause is known, the amount is only the leftover, so the comparison "
        "is NOT reconciled"
    ),
}


@dataclass(frozen=True)
class Difference:
    """One op that the graph and the hooks count differently (graph minus hooks)."""

    module: str
    """Module whose forward the op ran in (``""``: the model's own forward)."""
    op: str
    """Readable op name (``add``, ``matmul``, ``softmax``)."""
    target: str
    """The exact call target (``operator.add``, ``Tensor.softmax``)."""
    node: str
    """Graph node name; for a leaf mismatch, the leaf's path."""
    reason: Reason
    detail: str
    """The specifics: the call target, which parameters it read, or which leaf call."""
    inputs: tuple[TensorMeta, ...]
    macs: int
    flops: int

    @property
    def cost(self) -> Cost:
        return Cost(self.macs, self.flops)


@dataclass(frozen=True)
class ModuleRow:
    """One module of the model: both counts (cumulative) and how often it ran."""

    path: str
    type: str
    leaf: bool
    """True when hooks count it: its type has a module rule."""
    graph: Cost
    """Cumulative graph cost of this module and everything below it."""
    hooks: Cost
    """Cumulative hook cost of this module and everything below it."""
    graph_calls: int
    """Times the traced graph entered the module (0: never called)."""
    hook_calls: int
    """Times its ``__call__`` ran (forward pre-hook firings)."""
    forward_without_call: int = 0
    """Times its forward ran without ``__call__`` (leaves only; hooks missed them)."""

    @property
    def difference(self) -> Cost:
        return Cost(self.graph.macs - self.hooks.macs, self.graph.flops - self.hooks.flops)


def differences(
    report: Report, traced: TracedGraph, hooks: HookCount, model: torch.nn.Module
) -> tuple[Difference, ...]:
    """Every op counted on one side only, in graph order, then each leaf's calls
    counted on one side only or (UNEXPLAINED) at different costs."""
    nodes = _aligned(report, traced)
    owned = _model_tensors(model)
    free = {r.node for r in report.records if r.status is Status.FREE}
    leaves = set(hooks.leaves)
    out: list[Difference] = []
    for r in report.records:
        if r.kind == "call_module" or not (r.macs or r.flops):
            continue
        sources = [t for t in _sources(nodes[r.node], free) if t in owned]
        reason, detail = _reason(r, sources, leaves, hooks)
        out.append(
            Difference(r.module, r.op, r.target, r.node, reason, detail, r.inputs, r.macs, r.flops)
        )
    graph: dict[str, list[OpRecord]] = {}
    for r in report.records:
        if r.kind == "call_module":
            graph.setdefault(r.module, []).append(r)
    out.extend(_leaf_calls(graph, hooks))
    return tuple(out)


def aten_differences(report: Report, hooks: HookCount) -> tuple[Difference, ...]:
    """For a report of the aten frontend: records outside leaves one by one, then
    leaves whose records and hook calls differ in total (UNEXPLAINED)."""
    leaves = set(hooks.leaves)
    graph: dict[str, list[OpRecord]] = {}
    out: list[Difference] = []
    for r in report.records:
        if not (r.macs or r.flops):
            continue
        leaf = next((p for p in _ancestors(r.module) if p in leaves), None)
        if leaf is not None:
            graph.setdefault(leaf, []).append(r)
            continue
        detail = f"{r.target} in {r.module or 'the model'}'s forward"
        out.append(
            Difference(
                r.module,
                r.op,
                r.target,
                r.node,
                Reason.OUTSIDE_LEAVES,
                detail,
                r.inputs,
                r.macs,
                r.flops,
            )  # fmt: skip
        )
    out.extend(_leaf_totals(graph, hooks))
    return tuple(out)


def module_rows(report: Report, hooks: HookCount, model: torch.nn.Module) -> tuple[ModuleRow, ...]:
    graph, hooked = report.by_module(), hooks.by_module()
    calls = {m.path: m.calls for m in report.modules}
    leaves = set(hooks.leaves)
    return tuple(
        ModuleRow(
            path=path,
            type=type(m).__name__,
            leaf=path in leaves,
            graph=graph.get(path, Cost()),
            hooks=hooked.get(path, Cost()),
            graph_calls=calls.get(path, 0),
            hook_calls=hooks.module_calls.get(path, 0),
            forward_without_call=hooks.forward_without_call.get(path, 0),
        )
        for path, m in model.named_modules()
    )


def _aligned(report: Report, traced: TracedGraph) -> dict[str, torch.fx.Node]:
    """Node name -> node, checked to be the graph the report's records came from."""
    nodes = [n for n in traced.graph.nodes if n.op in CALLS]
    same = len(nodes) == len(report.records) and all(
        n.name == r.node and n.op == r.kind for n, r in zip(nodes, report.records, strict=True)
    )
    if not same:
        raise TraceError(
            f"the model traced to a different graph twice ({len(nodes)} vs "
            f"{len(report.records)} call nodes): its forward is not deterministic"
        )
    return {n.name: n for n in nodes}


def _model_tensors(model: torch.nn.Module) -> set[str]:
    """Dotted names of every parameter and buffer, shared ones under each name."""
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return names | {n for n, _ in model.named_buffers(remove_duplicate=False)}


def _sources(node: torch.fx.Node, free: set[str]) -> list[str]:
    """``get_attr`` targets that reach ``node`` through free ops only, sorted."""
    found: set[str] = set()
    seen: set[torch.fx.Node] = set()
    stack = list(node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "get_attr":
            found.add(str(n.target))
        elif n.op in CALLS and n.name in free:
            stack.extend(n.all_input_nodes)
    return sorted(found)


def _owner(tensor_name: str) -> str:
    return tensor_name.rpartition(".")[0]


def _reason(
    r: OpRecord, sources: list[str], leaves: set[str], hooks: HookCount
) -> tuple[Reason, str]:
    leaf_owned = [s for s in sources if _owner(s) in leaves]
    if leaf_owned:
        return Reason.BYPASSED_LEAF, "; ".join(_bypass_detail(leaf_owned, hooks))
    if sources:
        return Reason.PARAMETER, f"{r.target} reads {', '.join(sources)}"
    return Reason.FUNCTIONAL, f"{r.target} in {r.module or 'the model'}'s forward"


def _bypass_detail(names: list[str], hooks: HookCount) -> Iterator[str]:
    for owner in dict.fromkeys(_owner(n) for n in names):
        runs = hooks.forward_without_call.get(owner, 0)
        if runs:
            yield f"{owner}.forward ran {runs} time(s) without __call__"
        else:
            used = ", ".join(n for n in names if _owner(n) == owner)
            yield f"{used} of leaf {owner!r} used outside its __call__"


def _by_path(hooks: HookCount) -> dict[str, list[HookCall]]:
    out: dict[str, list[HookCall]] = {}
    for c in hooks.calls:
        out.setdefault(c.path, []).append(c)
    return out


def _leaf_calls(graph: dict[str, list[OpRecord]], hooks: HookCount) -> Iterator[Difference]:
    """Leaf path -> the graph's ``call_module`` records, against the hook calls, call by
    call: a record is paired with the first unpaired hook call of its leaf on the same
    input and output shapes. A pair must cost the same (one call, one module rule);
    if it does not, the pair is UNEXPLAINED. An unpaired call is a difference of its
    own cost: a record's (GRAPH_ONLY), or minus the hook counter's (HOOKS_ONLY)."""
    hooked = _by_path(hooks)
    for path in dict.fromkeys([*graph, *hooked]):
        waiting = list(hooked.get(path, []))
        for r in graph.get(path, []):
            same = (r.inputs, r.outputs)
            i = next((i for i, c in enumerate(waiting) if (c.inputs, c.outputs) == same), None)
            if i is None:
                if r.macs or r.flops:
                    detail = f"graph call of {path!r} on {_shapes(r.inputs)}; no hook call"
                    yield _leaf_difference(path, r.op, Reason.GRAPH_ONLY, detail, r.inputs, r.cost)
                continue
            c = waiting.pop(i)
            if c.cost != r.cost:
                detail = (
                    f"{path!r} on {_shapes(r.inputs)}: graph {r.flops:,} FLOPs ({r.macs:,} "
                    f"MACs), hooks {c.cost.flops:,} FLOPs ({c.cost.macs:,} MACs), same rule "
                    f"{r.op!r}"
                )
                gap = Cost(r.macs - c.cost.macs, r.flops - c.cost.flops)
                yield _leaf_difference(path, r.op, Reason.UNEXPLAINED, detail, r.inputs, gap)
        for c in waiting:
            if c.cost != Cost():
                detail = f"hook call of {path!r} on {_shapes(c.inputs)}; no graph call"
                gap = Cost(-c.cost.macs, -c.cost.flops)
                yield _leaf_difference(path, c.op, Reason.HOOKS_ONLY, detail, c.inputs, gap)


def _leaf_totals(graph: dict[str, list[OpRecord]], hooks: HookCount) -> Iterator[Difference]:
    """Leaf path -> the aten records inside it, against its hook calls in total (aten
    records carry no call structure to pair): any gap is UNEXPLAINED."""
    hooked = _by_path(hooks)
    for path in dict.fromkeys([*graph, *hooked]):
        records, calls = graph.get(path, []), hooked.get(path, [])
        g = sum((r.cost for r in records), Cost())
        h = sum((c.cost for c in calls), Cost())
        if g == h:
            continue
        op = calls[0].op if calls else records[0].op
        detail = (
            f"{path!r}: graph {len(records)} record(s), {g.flops:,} FLOPs ({g.macs:,} MACs); "
            f"hooks {len(calls)} call(s) by rule {op!r}, {h.flops:,} FLOPs ({h.macs:,} MACs)"
        )
        inputs = calls[0].inputs if calls else records[0].inputs
        yield _leaf_difference(
            path, op, Reason.UNEXPLAINED, detail, inputs, Cost(g.macs - h.macs, g.flops - h.flops)
        )


def _leaf_difference(
    path: str, op: str, reason: Reason, detail: str, inputs: tuple[TensorMeta, ...], cost: Cost
) -> Difference:
    return Difference(path, op, op, path, reason, detail, inputs, cost.macs, cost.flops)


def _shapes(metas: tuple[TensorMeta, ...]) -> str:
    return ", ".join(map(str, metas)) or "no tensors"
