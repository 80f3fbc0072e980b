"""The comparison: graph counts against hook-based counts, every difference listed.

``compare`` counts one model twice with the same handlers: once from the traced
graph (every op) and once with forward hooks on leaf modules (what thop and
ptflops see). The result lists, per module, both counts and their call counts,
and the exact ops that make the difference, each with its reason and its own
cost (never a leftover). It is reconciled only when those independent parts
add up to the unit: graph total minus hook total equals the sum of the
explained differences, for MACs and FLOPs alike, with nothing UNEXPLAINED (a
leaf call both sides counted at different costs, see
:mod:`flopgraph.differences`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .analyze import Convention, _registry, analyze
from .differences import (
    Difference,
    ModuleRow,
    Reason,
    aten_differences,
    differences,
    module_rows,
)
from .errors import InputError
from .frontends.fx import trace_fx
from .hooks import count_hooks
from .inputs import normalize_inputs
from .peers import PeerResult, run_peers
from .pipeline import Frontend
from .records import Cost, TensorMeta
from .report import FrontendInfo, _ancestors, envelope

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Comparison:
    """Graph counts against hook counts of one model on one input.

    ``differences`` holds every op counted differently (graph minus hooks);
    ``modules`` holds one row per module with cumulative costs on both sides.
    All views are computed from these fields; a comparison never changes.
    """

    model: str
    convention: str
    inputs: tuple[TensorMeta, ...]
    graph: Cost
    """The graph's total (what :func:`flopgraph.analyze` reports)."""
    hooks: Cost
    """The hook-based total (forward hooks on leaf modules, same handlers)."""
    modules: tuple[ModuleRow, ...]
    differences: tuple[Difference, ...]
    peers: tuple[PeerResult, ...] = ()
    """Other counters' totals on the same model and input (``peers=True``)."""
    frontend: FrontendInfo = FrontendInfo("fx")
    """The graph side's frontend; on aten, ops outside leaves have one reason."""

    @property
    def difference(self) -> Cost:
        """Graph total minus hook total."""
        return Cost(self.graph.macs - self.hooks.macs, self.graph.flops - self.hooks.flops)

    @property
    def explained(self) -> Cost:
        """The sum of the differences with a cause, each its own op's cost."""
        return sum((d.cost for d in self.differences if d.reason.explained), Cost())

    @property
    def unexplained(self) -> tuple[Difference, ...]:
        """Leaf calls both sides counted at different costs: known only as a leftover."""
        return tuple(d for d in self.differences if not d.reason.explained)

    @property
    def reconciled(self) -> bool:
        """True when graph minus hooks equals the explained differences, to the unit,
        and nothing is unexplained."""
        return self.difference == self.explained and not self.unexplained

    @property
    def reconciliation(self) -> str:
        """The one line every rendering carries."""
        d, e = self.difference, self.explained
        n = len(self.differences) - len(self.unexplained)
        line = (
            f"graph {self.graph.flops:,} - hooks {self.hooks.flops:,} = {d.flops:,} FLOPs "
            f"({d.macs:,} MACs)"
        )
        if self.reconciled:
            return f"{line} = sum of the {n} explained difference(s): reconciled"
        where = ", ".join(dict.fromkeys(x.module or "(model)" for x in self.unexplained))
        rest = f"; unexplained in {where}" if where else ""
        return (
            f"{line}, but the {n} explained difference(s) sum to {e.flops:,} FLOPs "
            f"({e.macs:,} MACs): NOT reconciled{rest}"
        )

    def by_reason(self) -> dict[Reason, Cost]:
        """Reason -> total of its differences (reasons with none left out)."""
        out: dict[Reason, Cost] = {}
        for d in self.differences:
            out[d.reason] = out.get(d.reason, Cost()) + d.cost
        return out

    def module(self, path: str) -> ModuleRow:
        """The row of the module at ``path`` (``""`` is the model)."""
        for row in self.modules:
            if row.path == path:
                return row
        raise KeyError(f"no module {path!r} in {self.model}")

    def differences_in(self, path: str, *, below: bool = False) -> tuple[Difference, ...]:
        """Differences whose op ran in ``path``'s own forward (``below``: or deeper)."""
        if below:
            return tuple(d for d in self.differences if path in _ancestors(d.module))
        return tuple(d for d in self.differences if d.module == path)

    def to_dict(self) -> dict[str, Any]:
        return {
            **envelope(SCHEMA_VERSION, self.model, self.convention, self.frontend, self.inputs),
            "totals": {
                "graph": _cost(self.graph),
                "hooks": _cost(self.hooks),
                "difference": _cost(self.difference),
                "explained": _cost(self.explained),
                "unexplained": _cost(sum((x.cost for x in self.unexplained), Cost())),
            },
            "reconciled": self.reconciled,
            "reconciliation": self.reconciliation,
            "reasons": {r.value: r.explanation for r in Reason},
            "modules": [_row(m) for m in self.modules],
            "differences": [_difference(d) for d in self.differences],
            "peers": [p.to_dict() for p in self.peers],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        return (
            f"Comparison({self.model}: graph flops={self.graph.flops:,} "
            f"hooks flops={self.hooks.flops:,} differences={len(self.differences)} "
            f"reconciled={self.reconciled} peers={len(self.peers)})"
        )

    def __rich__(self) -> Any:
        from .render.compare import compare_table

        return compare_table(self)


def compare(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    convention: Convention = "default",
    frontend: Frontend = "auto",
    peers: bool = False,
) -> Comparison:
    """Count ``model`` from its graph and with forward hooks, and explain the gap.

    Inputs are given as to :func:`flopgraph.analyze`; the graph and hook sides
    use only shapes and leave the model untouched. ``frontend`` picks the graph
    side's frontend as in :func:`flopgraph.analyze`: fx gives each difference its
    reason from the graph's dataflow; the aten frontend (a model fx cannot trace)
    records no dataflow, so its ops outside leaf modules share one reason, and a
    forward it ran for real is hooked for real too. The fvcore and torch presets
    cannot be compared: hooks count leaf modules by the convention's module rules,
    and a preset has none (``peers=True`` shows those counters' own totals).
    With ``peers=True`` the installed counters among thop, ptflops (both
    backends), fvcore and FlopCounterMode also run, on deep copies of the model
    with real CPU tensors (real arithmetic, see :mod:`flopgraph.peers`); one that
    is missing or fails is reported as such, never raised.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    registry = _registry(convention, None)
    if not registry.policy.fx:
        raise InputError(
            f"compare cannot use convention={convention!r}: hooks count each leaf module "
            "with the convention's module rules, and this preset has none (it names only "
            "aten ops, to reproduce its peer), so the hook side would count nothing. "
            "Compare under convention='default'; peers=True adds fvcore's and "
            "FlopCounterMode's own totals"
        )
    report = analyze(model, inputs, kwargs=kwargs, convention=convention, frontend=frontend)
    args, kw = normalize_inputs(inputs, kwargs)
    real = report.frontend.real_run
    hooks = count_hooks(model, inputs, kwargs=kwargs, convention=convention, real=real)
    if report.frontend.name == "fx":
        # the same trace again, for its structure: which tensors each op reads
        diffs = differences(report, trace_fx(model, args, kw, registry), hooks, model)
    else:
        diffs = aten_differences(report, hooks)
    return Comparison(
        model=type(model).__name__,
        convention=convention,
        inputs=report.inputs,
        graph=report.cost,
        hooks=hooks.cost,
        modules=module_rows(report, hooks, model),
        differences=diffs,
        peers=run_peers(model, args, kw, report) if peers else (),
        frontend=report.frontend,
    )


def _cost(c: Cost) -> dict[str, int]:
    return {"macs": c.macs, "flops": c.flops}


def _row(m: ModuleRow) -> dict[str, Any]:
    return {
        "path": m.path,
        "type": m.type,
        "leaf": m.leaf,
        "graph": _cost(m.graph),
        "hooks": _cost(m.hooks),
        "difference": _cost(m.difference),
        "graph_calls": m.graph_calls,
        "hook_calls": m.hook_calls,
        "forward_without_call": m.forward_without_call,
    }


def _difference(d: Difference) -> dict[str, Any]:
    return {
        "module": d.module,
        "op": d.op,
        "target": d.target,
        "node": d.node,
        "reason": d.reason.value,
        "detail": d.detail,
        "inputs": [{"shape": list(m.shape), "dtype": m.dtype} for m in d.inputs],
        "macs": d.macs,
        "flops": d.flops,
    }


__all__ = ["Comparison", "Difference", "ModuleRow", "Reason", "compare"]
