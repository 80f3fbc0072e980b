"""The two pipelines from model to records, and the choice between them.

fx: symbolic trace -> shape propagation on meta (or fake) tensors -> count.
aten: record the forward's aten ops on fake tensors -> count.

``auto`` tries fx first (its graph keeps module calls and Python operators as
the user wrote them) and falls back to aten when fx cannot trace the model;
the result says which ran and why. When both fail, one error gives both
causes. A traced graph whose op rejects its inputs (a wrong shape or dtype)
is a PropagationError and final: the model would fail for real too, and fake
kernels are laxer than real ones (a float64 input into a float32 linear runs
on fake tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch

from .count import count
from .count_aten import count_aten
from .errors import InputError, PropagationError, TraceError
from .frontends.aten import trace_aten
from .frontends.fx import TracedGraph, trace_fx
from .progress import ProgressFn, no_progress
from .records import OpRecord
from .registry import Registry
from .report import FrontendInfo
from .shapes import propagate

Frontend = Literal["auto", "fx", "aten"]
FRONTENDS = ("auto", "fx", "aten")


@dataclass(frozen=True)
class Counted:
    """What a pipeline produced: the records, which frontend ran and module call counts."""

    records: tuple[OpRecord, ...]
    frontend: FrontendInfo
    module_calls: Mapping[str, int]
    """Module path -> how many times its forward ran."""


def run(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry,
    frontend: str,
    progress: ProgressFn = no_progress,
) -> Counted:
    """Count ``model`` with the frontend asked for (``auto``: fx, else aten)."""
    if frontend not in FRONTENDS:
        known = ", ".join(map(repr, FRONTENDS))
        raise InputError(f"frontend must be one of {known}, got {frontend!r}")
    if not registry.policy.fx:
        if frontend == "fx":
            raise InputError("this convention counts aten ops: use frontend='aten' or 'auto'")
        return _aten(model, args, kwargs, registry, "", progress)
    if frontend == "aten":
        return _aten(model, args, kwargs, registry, "", progress)
    try:
        return _fx(model, args, kwargs, registry, progress)
    except TraceError as e:  # a PropagationError (a traced op rejects its inputs) is final
        if frontend == "fx":
            raise
        fx_error = e
    try:
        return _aten(model, args, kwargs, registry, f"fx was not used: {fx_error}", progress)
    except TraceError as e:
        raise TraceError(
            f"{fx_error} (fx frontend); the aten frontend failed too: {e}"
        ) from e


def _fx(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry,
    progress: ProgressFn,
) -> Counted:
    progress("trace", 0, 0)
    traced = trace_fx(model, args, kwargs, registry)
    step = partial(progress, "propagate")
    try:
        propagate(traced, "meta", step)
    except PropagationError:
        # meta tensors cannot mix with tensors a forward creates on a real device;
        # fake tensors can, at some cost in speed
        propagate(traced, "fake", step)
    progress("count", 0, 0)
    records = count(traced, registry)
    return Counted(tuple(records), FrontendInfo("fx"), _fx_calls(traced))


def _fx_calls(traced: TracedGraph) -> dict[str, int]:
    """Module path -> the number of distinct calls in the graph's module stacks."""
    calls: dict[str, set[str]] = {}
    for node in traced.graph.nodes:
        for key, (path, _) in (node.meta.get("nn_module_stack") or {}).items():
            calls.setdefault(path, set()).add(key)
    return {path: len(keys) for path, keys in calls.items()}


def _aten(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry,
    note: str,
    progress: ProgressFn,
) -> Counted:
    progress("trace", 0, 0)  # the forward runs once, recorded: no per-node steps
    trace = trace_aten(model, args, kwargs, registry)
    progress("count", 0, 0)
    notes = "; ".join(n for n in (note, trace.note) if n)
    info = FrontendInfo("aten", notes, real_run=trace.real)
    return Counted(tuple(count_aten(trace, registry)), info, trace.module_calls)
