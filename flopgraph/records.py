"""Frozen result data: tensor metadata, costs, and one record per op."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from math import prod
from typing import Any

import torch

_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)
}
# per-dtype facts looked up once per tensor of every op: kept in plain dicts
_NAMES: dict[torch.dtype, str] = {d: n for n, d in _DTYPES.items()}
_FLOATING = frozenset(n for n, d in _DTYPES.items() if d.is_floating_point or d.is_complex)
_ITEMSIZE: dict[str, int] = {n: d.itemsize for n, d in _DTYPES.items()}


def jsonable(v: Any) -> Any:
    """An int as it is; a formula of symbolic sizes (a sympy expression) as its text."""
    return v if isinstance(v, int) else str(v)


def _read(v: Any) -> Any:
    """Inverse of :func:`jsonable`: a formula's text becomes a sympy expression again
    (its names positive integer symbols, as :mod:`flopgraph.symbolic` makes them)."""
    if isinstance(v, str):
        import sympy

        names = {str(s) for s in sympy.sympify(v).free_symbols}
        local = {n: sympy.Symbol(n, integer=True, positive=True) for n in names}
        return sympy.sympify(v, locals=local)
    return int(v)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the form stored in records and JSON)."""
    name = _NAMES.get(dtype)
    return name if name is not None else str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    """Inverse of :func:`dtype_name`; raises ``KeyError`` for an unknown name."""
    return _DTYPES[name]


@dataclass(frozen=True)
class TensorMeta:
    """Shape and dtype of one tensor: all that counting ever reads."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def is_floating(self) -> bool:
        """True for floating point and complex dtypes (the ones that count)."""
        if self.dtype in _FLOATING:
            return True
        d = dtype_from_name(self.dtype)  # KeyError for an unknown name, as before
        return d.is_floating_point or d.is_complex

    @property
    def nbytes(self) -> int:
        size = _ITEMSIZE.get(self.dtype)
        return self.numel * (size if size is not None else dtype_from_name(self.dtype).itemsize)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"

    @classmethod
    def of(cls, t: torch.Tensor) -> TensorMeta:
        """The meta of ``t``: one shared instance per shape and dtype (a trace makes one
        for every tensor of every op, and building a frozen dataclass is the dearer
        part of it; equal metas are interchangeable)."""
        key = (t.shape, t.dtype)
        try:
            return _METAS[key]
        except KeyError:
            pass
        except TypeError:  # a symbolic size: not hashable
            return cls(tuple(t.shape), dtype_name(t.dtype))
        if len(_METAS) >= _MAX_METAS:
            _METAS.clear()
        # shapes are static here (meta, fake or real tensors), so a Size holds plain ints
        meta = _METAS[key] = cls(tuple(t.shape), dtype_name(t.dtype))
        return meta

    def to_dict(self) -> dict[str, Any]:
        return {"shape": [jsonable(s) for s in self.shape], "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorMeta:
        return cls(tuple(_read(s) for s in d["shape"]), d["dtype"])


_METAS: dict[tuple[torch.Size, torch.dtype], TensorMeta] = {}
"""(shape, dtype) -> its TensorMeta (see :meth:`TensorMeta.of`), for the process."""
_MAX_METAS = 100_000


def iter_metas(value: Any) -> Iterator[TensorMeta]:
    """Every TensorMeta inside a (nested) value, in order: tuple and list items, dict
    values (a transformers ``ModelOutput`` is a dict of its set fields); anything else
    (None, ints, an object of another kind) holds none."""
    if isinstance(value, TensorMeta):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from iter_metas(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_metas(v)


@dataclass(frozen=True)
class Cost:
    """Multiply-accumulates and floating-point operations of one op (exact ints)."""

    macs: int = 0
    flops: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.flops + other.flops)


ZERO = Cost()

PHASES = ("forward", "backward", "recompute", "optimizer")
"""The phases of a training step, in the order they run. "Model FLOPs" are all but
``recompute`` (the forward ops activation checkpointing runs again during backward);
"hardware FLOPs" are all of them."""


class Status(str, Enum):
    """How an op was handled: every call node ends as exactly one of these."""

    COUNTED = "counted"
    FREE = "free"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Routing:
    """The routed experts of a mixture-of-experts layer an op's work belongs to
    (see :mod:`flopgraph.moe`)."""

    k: int
    """Experts each token runs."""
    experts: int
    """Routed experts in the layer (E)."""

    def to_dict(self) -> dict[str, int]:
        return {"k": self.k, "experts": self.experts}


@dataclass(frozen=True)
class OpRecord:
    """One op of the traced graph and what it costs."""

    node: str
    """Name of the graph node (unique within one analysis)."""
    op: str
    """Readable op name shared by all forms of one op (``conv2d``, ``add``)."""
    target: str
    """The exact call target (``torch.nn.Conv2d``, ``operator.add``, ``Tensor.view``)."""
    kind: str
    """``call_module``, ``call_function`` or ``call_method`` (fx); ``aten`` (one aten
    op) or ``composite`` (one torch call counted whole) on the aten frontend."""
    module: str
    """Dotted path of the module the op ran in; ``""`` is the root."""
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    macs: int
    flops: int
    bytes_read: int
    """Bytes of the tensors the op reads, its own parameters included."""
    bytes_written: int
    status: Status
    reason: str = ""
    """Why an op is free or skipped; empty when counted."""
    phase: str = "forward"
    """Which part of a training step ran the op (see :data:`PHASES`); ``"forward"``
    in a forward-only analysis."""
    routing: Routing | None = None
    """Set on the ops of routed experts: k of E experts per token."""

    @property
    def cost(self) -> Cost:
        return Cost(self.macs, self.flops)

    @property
    def precision(self) -> str:
        """The dtype the op computes in: for a contraction its narrowest operand (a
        quantized conv: quint8 activations with qint8 weights -> quint8; a dynamically
        quantized linear: float32 input, qint8 weight -> qint8, the dtype its MACs run
        in), for any other op its first output's dtype; ``""`` without tensors."""
        if self.macs and self.inputs:
            return min(self.inputs, key=lambda m: _ITEMSIZE.get(m.dtype, 8)).dtype
        for m in self.outputs or self.inputs:
            return m.dtype
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "op": self.op,
            "target": self.target,
            "kind": self.kind,
            "module": self.module,
            "inputs": [m.to_dict() for m in self.inputs],
            "outputs": [m.to_dict() for m in self.outputs],
            "macs": jsonable(self.macs),
            "flops": jsonable(self.flops),
            "bytes_read": jsonable(self.bytes_read),
            "bytes_written": jsonable(self.bytes_written),
            "status": self.status.value,
            "reason": self.reason,
            "phase": self.phase,
            "routing": None if self.routing is None else self.routing.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpRecord:
        return cls(
            node=d["node"],
            op=d["op"],
            target=d["target"],
            kind=d["kind"],
            module=d["module"],
            inputs=tuple(TensorMeta.from_dict(m) for m in d["inputs"]),
            outputs=tuple(TensorMeta.from_dict(m) for m in d["outputs"]),
            macs=_read(d["macs"]),
            flops=_read(d["flops"]),
            bytes_read=_read(d["bytes_read"]),
            bytes_written=_read(d["bytes_written"]),
            status=Status(d["status"]),
            reason=d.get("reason", ""),
            phase=d.get("phase", "forward"),
            routing=None if d.get("routing") is None else Routing(**d["routing"]),
        )


@dataclass(frozen=True)
class SkippedOp:
    """An op name no handler knew: how often it occurred and in which modules."""

    op: str
    count: int
    where: tuple[str, ...]
    """Module paths of the occurrences, in graph order (``""`` is the root)."""


def changed(item: Any, **fields: Any) -> Any:
    """``dataclasses.replace`` for frozen records copied by the thousand (a replay's,
    a report's), without re-running ``__init__`` (most of replace's time): the same
    fields, some new."""
    new = object.__new__(type(item))
    new.__dict__.update(item.__dict__, **fields)
    return new
