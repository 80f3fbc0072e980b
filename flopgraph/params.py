"""Parameter and buffer statistics, each tensor counted once however often it is shared."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .moe import ExpertGroup
from .records import dtype_name


@dataclass(frozen=True)
class ParamStats:
    """Parameter counts of a model (tied weights counted once)."""

    total: int
    trainable: int
    """Elements of parameters with ``requires_grad``."""
    non_trainable: int
    buffers: int
    """Elements of buffers (BatchNorm running statistics and the like)."""
    param_bytes: int
    buffer_bytes: int
    bytes_by_dtype: Mapping[str, int] = field(default_factory=dict)
    """Bytes of parameters and buffers together, by dtype name."""
    active: int | None = None
    """Parameters one token uses: all but the routed experts, plus k of E of them
    (mixture-of-experts, see :mod:`flopgraph.moe`); equals ``total`` for a dense model.
    None only in a document written before it existed."""

    @classmethod
    def of(cls, model: torch.nn.Module, experts: Iterable[ExpertGroup] = ()) -> ParamStats:
        total = trainable = pbytes = bbytes = nbuf = 0
        by_dtype: dict[str, int] = {}
        for p in _tensors(model, "_parameters"):
            n, b = p.numel(), p.numel() * p.element_size()
            total += n
            trainable += n if p.requires_grad else 0
            pbytes += b
            by_dtype[dtype_name(p.dtype)] = by_dtype.get(dtype_name(p.dtype), 0) + b
        for t in _tensors(model, "_buffers"):
            n, b = t.numel(), t.numel() * t.element_size()
            nbuf += n
            bbytes += b
            by_dtype[dtype_name(t.dtype)] = by_dtype.get(dtype_name(t.dtype), 0) + b
        active = total - sum(g.params - g.active_params for g in experts)
        return cls(total, trainable, total - trainable, nbuf, pbytes, bbytes, by_dtype, active)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "trainable": self.trainable,
            "non_trainable": self.non_trainable,
            "buffers": self.buffers,
            "param_bytes": self.param_bytes,
            "buffer_bytes": self.buffer_bytes,
            "bytes_by_dtype": dict(self.bytes_by_dtype),
            "active": self.active,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParamStats:
        return cls(
            int(d["total"]), int(d["trainable"]), int(d["non_trainable"]), int(d["buffers"]),
            int(d["param_bytes"]), int(d["buffer_bytes"]),
            {k: int(v) for k, v in d["bytes_by_dtype"].items()},
            None if d.get("active") is None else int(d["active"]),
        )  # fmt: skip


def _tensors(model: torch.nn.Module, kind: str) -> list[torch.Tensor]:
    """What ``model.parameters()`` (kind ``"_parameters"``) or ``model.buffers()``
    (``"_buffers"``) yields, in its order and each tensor once, from one walk over the
    module dicts instead of nested generators."""
    out: list[torch.Tensor] = []
    seen: set[int] = set()
    visited: set[int] = set()
    stack = [model]
    while stack:  # pre-order, children in registration order, as named_modules()
        m = stack.pop()
        if id(m) in visited:
            continue
        visited.add(id(m))
        for t in m.__dict__[kind].values():
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                out.append(t)
        stack.extend(reversed([c for c in m._modules.values() if c is not None]))
    return out


def module_param_counts(model: torch.nn.Module) -> dict[str, int]:
    """Path -> parameters in that module and below (each shared tensor once per path).

    The paths are those of ``model.named_modules()`` (a shared module under its first
    path). One walk, bottom up: each module's set of parameters is its children's
    sets and its own, so a deep model costs one pass rather than one per module."""
    counts: dict[str, int] = {}
    below: dict[int, dict[int, int]] = {}  # module id -> {parameter id: elements}

    def walk(m: torch.nn.Module, path: str) -> dict[int, int]:
        known = below.get(id(m))
        if known is not None:  # a shared module: counted under its first path only
            return known
        params = {id(p): p.numel() for p in m._parameters.values() if p is not None}
        below[id(m)] = params
        counts[path] = 0  # keeps named_modules' order: a module before its children
        for name, child in m._modules.items():
            if child is not None:
                params.update(walk(child, f"{path}.{name}" if path else name))
        counts[path] = sum(params.values())
        return params

    walk(model, "")
    return counts
