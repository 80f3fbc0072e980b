"""The Report: the records of one analysis and the views computed from them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .params import ParamStats
from .records import PHASES, Cost, OpRecord, SkippedOp, Status, TensorMeta, jsonable
from .step import StepInfo
from .symbolic import rank

SCHEMA_VERSION = 3
"""3: each module carries its cumulative ``macs``, ``flops``, ``bytes_read`` and
``bytes_written``; 2: records carry their ``phase`` and a training analysis its
``step``. Version 1 and 2 documents still read (module costs are derived from the
records, never read)."""
_READS = (1, 2, 3)


@dataclass(frozen=True)
class FrontendInfo:
    """Which frontend produced the graph, and why (after a fallback)."""

    name: str
    note: str = ""
    real_run: bool = False
    """True when the forward ran on real tensors because its control flow depends on
    tensor values (aten frontend only); the counts are those of the branch it took."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "note": self.note, "real_run": self.real_run}


@dataclass(frozen=True)
class ModuleInfo:
    """One module of the model as the analysis saw it."""

    path: str
    type: str
    params: int
    """Parameters in this module and below, each tensor once."""
    calls: int
    """Times its forward ran in the traced graph (0: never called)."""
    outputs: tuple[TensorMeta, ...] = ()
    """The tensors its forward returned (its last call), in order: tuple items and dict
    values flattened (a transformers ``ModelOutput``: its set fields); empty when it
    never ran or returned no tensor."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "params": self.params,
            "calls": self.calls,
            "outputs": [m.to_dict() for m in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModuleInfo:
        """From a JSON module entry; its costs (version 3) are the records' and not kept;
        a document written before modules carried outputs reads with none."""
        outputs = tuple(TensorMeta.from_dict(m) for m in d.get("outputs", ()))
        return cls(d["path"], d["type"], d["params"], d["calls"], outputs)


@dataclass(frozen=True)
class Report:
    """Exact costs of one model on one input, per op, with views over them.

    Views (``by_module``, ``by_operator``, ``skipped``) are recomputed from
    ``records`` on each call; a report never changes after it is made.
    """

    model: str
    convention: str
    frontend: FrontendInfo
    inputs: tuple[TensorMeta, ...]
    records: tuple[OpRecord, ...]
    params: ParamStats
    modules: tuple[ModuleInfo, ...] = field(default_factory=tuple)
    step: StepInfo | None = None
    """What the training step was made of (loss, optimizer, attention counting, peak
    memory); None for a forward-only analysis."""
    attention: str = "full"
    """How causal attention scores were counted: ``"full"`` (the L x S square) or
    ``"causal"`` (the unmasked triangle)."""
    mode: str = "eval"
    """``"train"`` or ``"eval"``: the model's mode when it was counted (dropout and
    batch norm count differently in each)."""
    symbols: tuple[str, ...] = ()
    """The named input sizes of a symbolic analysis (its counts are formulas in
    them, sympy expressions); empty for a concrete one."""
    assumptions: tuple[str, ...] = ()
    """Conditions the symbolic trace assumed (``B >= 2``, the branches the code took
    on sizes); :meth:`subs` refuses values that break one."""

    def subs(self, **values: int) -> Report:
        """The concrete report at these sizes: every number equals a concrete analysis
        at them. Every symbol needs a value; a value that breaks an assumption raises
        InputError naming it."""
        from .symbolic import check_values, concrete

        table = check_values(self, values)
        return replace(
            self,
            inputs=tuple(concrete(m, table) for m in self.inputs),
            records=tuple(concrete(r, table) for r in self.records),
            modules=tuple(
                replace(m, outputs=tuple(concrete(o, table) for o in m.outputs))
                for m in self.modules
            ),
            symbols=(),
            assumptions=(),
        )

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.records)

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.records)

    @property
    def cost(self) -> Cost:
        return Cost(self.macs, self.flops)

    @property
    def model_flops(self) -> int:
        """FLOPs of every phase but ``recompute``: the work the step needs, as MFU counts it."""
        return sum(r.flops for r in self.records if r.phase != "recompute")

    @property
    def hardware_flops(self) -> int:
        """FLOPs of every phase, recompute included: the work the device does (HFU)."""
        return self.flops

    def by_phase(self) -> dict[str, Cost]:
        """Phase -> total cost, in step order; a forward-only analysis has ``forward``
        alone, a training step every phase it ran (``optimizer`` only with one)."""
        out: dict[str, Cost] = {}
        for r in self.records:
            out[r.phase] = out.get(r.phase, Cost()) + r.cost
        out.setdefault("forward", Cost())
        return {p: out[p] for p in (*PHASES, *sorted(set(out) - set(PHASES))) if p in out}

    def by_module(self, phase: str | None = None) -> dict[str, Cost]:
        """Module path -> cumulative cost: each ancestor includes its descendants;
        ``""`` is the whole model. Every module of the model appears, called or not.
        ``phase`` keeps that phase's ops only (a backward op belongs to the module
        whose forward op it differentiates; an optimizer op to its parameter's module)."""
        out: dict[str, Cost] = {m.path: Cost() for m in self.modules}
        out.setdefault("", Cost())
        for r in self.records:
            if not (r.macs or r.flops) or (phase is not None and r.phase != phase):
                continue
            for path in _ancestors(r.module):
                out[path] = out.get(path, Cost()) + r.cost
        return out

    def by_operator(self, phase: str | None = None) -> dict[str, Cost]:
        """Op name -> total cost of its occurrences (in ``phase`` only, if given),
        largest first."""
        out: dict[str, Cost] = {}
        for r in self.records:
            if phase is not None and r.phase != phase:
                continue
            out[r.op] = out.get(r.op, Cost()) + r.cost
        return dict(sorted(out.items(), key=lambda kv: (-rank(kv[1].flops), kv[0])))

    def by_dtype(self) -> dict[str, Cost]:
        """Precision -> total cost of the ops computing in it (``OpRecord.precision``:
        a contraction's narrowest operand dtype, else the output dtype), largest first:
        how much of the work is int8, bf16, float32."""
        out: dict[str, Cost] = {}
        for r in self.records:
            if r.macs or r.flops:
                key = r.precision
                out[key] = out.get(key, Cost()) + r.cost
        return dict(
            sorted(out.items(), key=lambda kv: (-rank(kv[1].macs), -rank(kv[1].flops), kv[0]))
        )

    @property
    def skipped(self) -> dict[str, SkippedOp]:
        """Op name -> how often it was skipped (counted as 0) and where."""
        where: dict[str, list[str]] = {}
        for r in self.records:
            if r.status is Status.SKIPPED:
                where.setdefault(r.op, []).append(r.module)
        return {op: SkippedOp(op, len(w), tuple(w)) for op, w in where.items()}

    def status_counts(self) -> dict[Status, int]:
        counts = {s: 0 for s in Status}
        for r in self.records:
            counts[r.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            **envelope(SCHEMA_VERSION, self.model, self.convention, self.frontend, self.inputs),
            "totals": {"macs": jsonable(self.macs), "flops": jsonable(self.flops)},
            "params": self.params.to_dict(),
            "modules": self._modules_dicts(),
            "records": [r.to_dict() for r in self.records],
            "phases": {
                p: {"macs": jsonable(c.macs), "flops": jsonable(c.flops)}
                for p, c in self.by_phase().items()
            },
            "step": None if self.step is None else self.step.to_dict(),
            "attention": self.attention,
            "mode": self.mode,
            "symbols": list(self.symbols),
            "assumptions": list(self.assumptions),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        version = d.get("schema_version")
        if version not in _READS:
            raise ValueError(
                f"unsupported report schema_version {version!r} (expected {SCHEMA_VERSION})"
            )
        return cls(
            model=d["model"],
            convention=d["convention"],
            frontend=FrontendInfo(
                d["frontend"]["name"],
                d["frontend"].get("note", ""),
                bool(d["frontend"].get("real_run", False)),
            ),
            inputs=tuple(TensorMeta.from_dict(m) for m in d["inputs"]),
            records=tuple(OpRecord.from_dict(r) for r in d["records"]),
            params=ParamStats.from_dict(d["params"]),
            modules=tuple(ModuleInfo.from_dict(m) for m in d["modules"]),
            step=StepInfo.from_dict(d["step"]) if d.get("step") else None,
            attention=d.get("attention", "full"),
            mode=d.get("mode", "eval"),
            symbols=tuple(d.get("symbols", ())),
            assumptions=tuple(d.get("assumptions", ())),
        )

    def _modules_dicts(self) -> list[dict[str, Any]]:
        """Each module and its cumulative cost (``by_module``) and bytes moved by its
        ops (every op in it or below: inputs read, outputs written)."""
        costs = self.by_module()
        moved: dict[str, tuple[int, int]] = {}
        for r in self.records:
            for path in _ancestors(r.module):
                read, written = moved.get(path, (0, 0))
                moved[path] = (read + r.bytes_read, written + r.bytes_written)
        out = []
        for m in self.modules:
            cost, (read, written) = costs.get(m.path, Cost()), moved.get(m.path, (0, 0))
            out.append(
                {**m.to_dict(), "macs": jsonable(cost.macs), "flops": jsonable(cost.flops),
                 "bytes_read": jsonable(read), "bytes_written": jsonable(written)}
            )  # fmt: skip
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        return (
            f"Report({self.model}: flops={_shown(self.flops)} macs={_shown(self.macs)} "
            f"params={self.params.total:,} ops={len(self.records)} "
            f"skipped={sum(s.count for s in self.skipped.values())} "
            f"convention={self.convention!r} frontend={self.frontend.name!r})"
        )

    def summary(self) -> str:
        """One line for a log or a shell: ``ResNet on 1×3×224×224: 4.09 GMACs,
        8.24 GFLOPs, 25.56 M params, 0 skipped`` (what ``flopgraph --summary`` prints)."""
        from .render.summary import summary_line

        return summary_line(self)

    def __rich__(self) -> Any:
        from .render.terminal import render_report

        return render_report(self)

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the HTML report (treemap, module tree, operators) in
        an iframe, so its styles and script stay out of the notebook's."""
        from .render.notebook import render_notebook

        return render_notebook(self)

    def _repr_markdown_(self) -> str:
        """Jupyter's display where HTML is not shown (a notebook converted to Markdown)."""
        from .render.markdown import render_markdown

        return render_markdown(self)


def _shown(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def envelope(
    version: int,
    model: str,
    convention: str,
    frontend: FrontendInfo,
    inputs: tuple[TensorMeta, ...],
) -> dict[str, Any]:
    """The fields every flopgraph JSON document opens with (reports, comparisons)."""
    return {
        "schema_version": version,
        "model": model,
        "convention": convention,
        "frontend": frontend.to_dict(),
        "inputs": [m.to_dict() for m in inputs],
    }


def _ancestors(path: str) -> list[str]:
    """``"a.b.c"`` -> ``["", "a", "a.b", "a.b.c"]``."""
    if not path:
        return [""]
    parts = path.split(".")
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]
