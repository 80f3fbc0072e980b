"""The module tree every renderer shows, as data: built, collapsed, then limited.

Three pure steps, each returning a new tree: :func:`module_tree` (every module,
cumulative costs), :func:`collapse_wrappers` (a module whose only child does all
of its work is shown as one row, ``encoder.layer``) and :func:`limit` (a depth
limit, the K largest children, and the rows that keep the sums honest). After
:func:`limit`, every node's children add up to the node: the ``(self)`` row holds
the ops a module runs in its own ``forward`` (a residual add, a functional
relu), the ``(N more)`` row the children cut by ``top``.
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from dataclasses import dataclass, replace
from enum import Enum

from ..records import Cost, TensorMeta
from ..report import Report
from ..symbolic import rank

ROOT_NAME = "(model)"
SELF_NAME = "(self)"


class RowKind(str, Enum):
    """What a node of the tree stands for."""

    MODULE = "module"
    SELF = "self"
    """The ops a module runs directly in its forward, outside any child."""
    MORE = "more"
    """Children left out by ``top``, summed."""


@dataclass(frozen=True)
class ModuleNode:
    """One row of the module tree."""

    name: str
    """What the row shows: the last path part, ``a.b`` for a collapsed chain."""
    path: str
    """Dotted path of the (innermost) module; ``""`` is the model."""
    type: str
    params: int
    """Parameters of the module and below, each tensor once."""
    cost: Cost
    """Cumulative: the module's own ops and all its children's."""
    own: Cost
    """Ops attributed to this module itself, outside every child."""
    calls: int
    outputs: tuple[TensorMeta, ...] = ()
    """The tensors the module's forward returned (``ModuleInfo.outputs``)."""
    kind: RowKind = RowKind.MODULE
    children: tuple[ModuleNode, ...] = ()

    @property
    def ran(self) -> bool:
        """Its forward ran, or a child's did: a ModuleList or ModuleDict is never
        called itself, yet its layers run (it is no "(not called)" module)."""
        return self.calls > 0 or any(c.ran for c in self.children)


def module_tree(report: Report) -> ModuleNode:
    """Every module of the report (called or not), nested by path."""
    costs = report.by_module()
    info = {m.path: m for m in report.modules}
    known = info.keys() | costs.keys()
    children: dict[str, list[str]] = {}
    for path in [*info, *(p for p in costs if p not in info)]:
        if path:
            children.setdefault(_parent(path, known), []).append(path)

    def build(path: str) -> ModuleNode:
        kids = tuple(build(c) for c in children.get(path, ()))
        cost = costs.get(path, Cost())
        m = info.get(path)
        parent = _parent(path, known)
        return ModuleNode(
            name=ROOT_NAME if not path else path[len(parent) + 1 :] if parent else path,
            path=path,
            type=m.type if m else (report.model if not path else "?"),
            params=m.params if m else (report.params.total if not path else 0),
            cost=cost,
            own=Cost(
                cost.macs - sum(k.cost.macs for k in kids),
                cost.flops - sum(k.cost.flops for k in kids),
            ),
            calls=m.calls if m else 1,
            outputs=m.outputs if m else (),
            children=kids,
        )

    return build("")


def collapse_wrappers(node: ModuleNode) -> ModuleNode:
    """Merge each module whose single child accounts for all of its parameters and
    cost into that child (the model's own row is never merged)."""
    kids = tuple(_collapse_chain(collapse_wrappers(c)) for c in node.children)
    return replace(node, children=kids)


def _collapse_chain(node: ModuleNode) -> ModuleNode:
    if len(node.children) != 1:
        return node
    (child,) = node.children
    if child.kind is not RowKind.MODULE or node.own != Cost() or child.params != node.params:
        return node
    # the row stands for the chain: a child that returned nothing (a ModuleList the
    # wrapper loops over) shows the wrapper's output
    return replace(child, name=f"{node.name}.{child.name}", outputs=child.outputs or node.outputs)


def limit(node: ModuleNode, depth: int | None = None, top: int | None = None) -> ModuleNode:
    """Keep ``depth`` levels below ``node`` and each node's ``top`` costliest children;
    add ``(self)`` and ``(N more)`` rows so that shown children sum to their parent."""
    if depth is not None and depth <= 0 or not node.children:
        return replace(node, children=())
    next_depth = None if depth is None else depth - 1
    kids = list(node.children)
    rest: list[ModuleNode] = []
    if top is not None and len(kids) > top:
        ranked = sorted(range(len(kids)), key=lambda i: (-rank(kids[i].cost.flops), i))
        keep = set(ranked[:top])
        rest = [k for i, k in enumerate(kids) if i not in keep]
        kids = [k for i, k in enumerate(kids) if i in keep]
    shown = [limit(k, next_depth, top) for k in kids]
    if node.own != Cost():
        shown.append(_extra(node, SELF_NAME, RowKind.SELF, node.own, _own_params(node)))
    if rest:
        total = sum((k.cost for k in rest), Cost())
        shown.append(
            _extra(node, f"({len(rest)} more)", RowKind.MORE, total, sum(k.params for k in rest))
        )
    return replace(node, children=tuple(shown))


def _own_params(node: ModuleNode) -> int:
    """Parameters held by the module itself; 0 when children share tensors with it."""
    return max(0, node.params - sum(c.params for c in node.children))


def _extra(parent: ModuleNode, name: str, kind: RowKind, cost: Cost, params: int) -> ModuleNode:
    return ModuleNode(name, parent.path, "", params, cost, cost, 0, (), kind)


def flatten(node: ModuleNode, level: int = 0) -> Iterator[tuple[int, ModuleNode]]:
    """``(level, node)`` in display order (pre-order); the root is level 0."""
    yield level, node
    for child in node.children:
        yield from flatten(child, level + 1)


def label(node: ModuleNode) -> str:
    """A row's name with its whole path: ``layer1.0``, ``layer1 (self)``, ``(model)``."""
    if node.kind is RowKind.MODULE:
        return node.path or ROOT_NAME
    return f"{node.path or ROOT_NAME} {node.name}"


def guides(node: ModuleNode) -> Iterator[tuple[str, ModuleNode]]:
    """``(prefix, node)`` in display order, the prefix drawing the tree
    (``├─ ``, ``│  └─ ``); the root has none."""
    yield "", node
    yield from _guided(node, "")


def _guided(node: ModuleNode, indent: str) -> Iterator[tuple[str, ModuleNode]]:
    for i, child in enumerate(node.children):
        last = i == len(node.children) - 1
        yield indent + ("└─ " if last else "├─ "), child
        yield from _guided(child, indent + ("   " if last else "│  "))


def display_tree(
    report: Report, depth: int | None = None, top: int | None = None, collapse: bool = True
) -> ModuleNode:
    """The tree the renderers show: built, collapsed (unless asked not to), limited."""
    tree = module_tree(report)
    if collapse:
        tree = collapse_wrappers(tree)
    return limit(tree, depth, top)


def _parent(path: str, known: Set[str]) -> str:
    """The nearest proper ancestor of ``path`` in ``known`` (``""`` if none)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            return candidate
    return ""
