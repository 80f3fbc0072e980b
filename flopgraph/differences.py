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
- a leaf whose graph calls and hook calls cost different amounts (for example
  a leaf called inside a function the tracer keeps as one opaque call).

On the aten frontend a record carries the module it ran in but no dataflow: a
record inside a leaf module belongs to that leaf (its outermost leaf), whose
records are compared with its hook calls in total; every other counted record
is one difference, "outside leaf modules", without the finer reasons above.

By construction, graph total minus hook total equals the sum of these, per
module and in total; :class:`~flopgraph.compare.Comparison` checks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

import torch
import torch.fx

from .count import CALLS
from .errors import TraceError
from .frontends.fx import TracedGraph
from .hooks import HookCount
from .records import Cost, OpRecord, Status, TensorMeta
from .report import Report, _ancestors


class Reason(str, Enum):
    """Why hooks on leaf modules count an op differently from the graph."""

    FUNCTIONAL = "functional op"
    PARAMETER = "parameter outside leaf modules"
    BYPASSED_LEAF = "leaf outside __call__"
    LEAF_MISMATCH = "leaf counted differently"
    OUTSIDE_LEAVES = "outside leaf modules"

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]


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
    Reason.LEAF_MISMATCH: (
        "a leaf module whose hook calls cost other than its graph calls (e.g. it ran "
        "inside a function the tracer keeps as one opaque call)"
    ),
    Reason.OUTSIDE_LEAVES: (
        "an op that ran outside every leaf module's __call__ (aten frontend): a function, "
        "method or operator, an op on a parameter no leaf owns, or a leaf's forward called "
        "directly; aten records keep the module an op ran in, not the tensors it read, so "
        "these are not told apart"
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
    """The specifics: the call target, or which parameters it read, or which leaf."""
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
    """Every op that makes graph total minus hook total, in graph order."""
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
    out.extend(_leaf_mismatches(graph, hooks))
    return tuple(out)


def aten_differences(report: Report, hooks: HookCount) -> tuple[Difference, ...]:
    """Every op that makes graph total minus hook total, for a report of the aten
    frontend: records outside leaves one by one, then leaves counted differently."""
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
                r.module, r.op, r.target, r.node, Reason.OUTSIDE_LEAVES, detail, r.inputs,
                r.macs, r.flops,
            )  # fmt: skip
        )
    out.extend(_leaf_mismatches(graph, hooks))
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


def _leaf_mismatches(graph: dict[str, list[OpRecord]], hooks: HookCount) -> Iterable[Difference]:
    """Leaves (path -> the graph's records of its calls) whose hook calls cost otherwise."""
    hooked: dict[str, list[Cost]] = {}
    for c in hooks.calls:
        hooked.setdefault(c.path, []).append(c.cost)
    for path in dict.fromkeys([*graph, *hooked]):
        g = sum((r.cost for r in graph.get(path, [])), Cost())
        h = sum(hooked.get(path, []), Cost())
        if g == h:
            continue
        records = graph.get(path, [])
        op = records[0].op if records else next(c.op for c in hooks.calls if c.path == path)
        detail = (
            f"graph: {len(records)} record(s), {g.flops:,} FLOPs; "
            f"hooks: {len(hooked.get(path, []))} call(s), {h.flops:,} FLOPs"
        )
        inputs = records[0].inputs if records else ()
        yield Difference(
            path, op, op, path, Reason.LEAF_MISMATCH, detail, inputs,
            g.macs - h.macs, g.flops - h.flops,
        )  # fmt: skip
