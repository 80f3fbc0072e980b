"""The two pipelines from model to records, and the one fallback policy between them.

fx: symbolic trace -> shape propagation on meta (or fake) tensors -> count.
aten: record the forward's aten ops on fake tensors -> count.

``auto`` tries fx first (its graph keeps module calls and Python operators as
the user wrote them). Whatever fx cannot do goes to aten, with the reason in
``frontend.note``: trace the forward (TraceError), propagate shapes through the
graph it traced (PropagationError: a value-dependent op, state reassigned in
forward, a bug of flopgraph's on that graph), or see it completely (a call of a
plain Python function or an aten op with no rule: an ``fx.wrap``'d helper
hides its body, a graph ``torch.export`` made is all aten ops). Only when aten
fails too is it an error, giving both causes, the user's mistake first (a wrong
shape names the node, op and shapes). A failure inside flopgraph's own code is
an InternalError, never presented as the user's. ``frontend="fx"`` or
``"aten"`` runs that frontend alone and raises its own error.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import torch

from .count import count
from .count_aten import count_aten
from .errors import (
    FlopgraphError,
    InputError,
    InternalError,
    PropagationError,
    TraceError,
    internal_error,
    is_internal,
)
from .frontends.aten import trace_aten
from .frontends.fx import TracedGraph, trace_fx
from .progress import ProgressFn, no_progress
from .records import OpRecord, Status, TensorMeta
from .registry import Registry
from .report import FrontendInfo
from .shapes import describe_target, module_outputs, propagate
from .step import StepInfo

_FX_FAILURES = (TraceError, PropagationError, InternalError)
"""What sends ``auto`` from fx to aten. An InputError (inputs the forward cannot take)
or a HandlerError (a rule that fails) would fail on aten the same way."""
_ATEN = (torch._ops.OpOverload, torch._ops.OpOverloadPacket)


def _opaque(target: Any) -> bool:
    """A call target fx cannot look into: an aten op (a graph made by ``torch.export``)
    or a Python function from outside torch kept whole in the graph (an ``fx.wrap``'d
    helper such as torchvision mvit's ``_add_rel_pos``). torch's own functions
    (``torch.cdist``, ``F.grid_sample``) are public ops: with no rule they are a rule
    gap, listed as skipped, which aten would not close."""
    if isinstance(target, _ATEN):
        return True
    if not isinstance(target, types.FunctionType):
        return False
    module = target.__module__ or ""
    return module != "torch" and not module.startswith("torch.")


Frontend = Literal["auto", "fx", "aten"]
FRONTENDS = ("auto", "fx", "aten")


@dataclass(frozen=True)
class Counted:
    """What a pipeline produced: the records, which frontend ran and module call counts."""

    records: tuple[OpRecord, ...]
    frontend: FrontendInfo
    module_calls: Mapping[str, int]
    """Module path -> how many times its forward ran."""
    step: StepInfo | None = None
    module_outputs: Mapping[str, tuple[TensorMeta, ...]] = field(default_factory=dict)
    """Module path -> the tensors its forward returned (its last call)."""


def run_step(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry,
    frontend: str,
    loss: Any = None,
    optimizer: Any = None,
) -> Counted:
    """Count one training step: always on the aten frontend, which sees the backward
    (an fx graph holds the forward only)."""
    if frontend not in ("auto", "aten"):
        raise InputError(
            f"a training step is recorded on the aten frontend: use frontend='auto' or "
            f"'aten', not {frontend!r}"
        )
    if not registry.policy.training:
        raise InputError("this convention counts forward passes only (no training step)")
    _check_model(model)
    from .frontends.training import trace_step  # imported by the first training step

    where = f"while recording a training step of {type(model).__name__}"
    trace, info = _guarded(
        lambda: trace_step(model, args, kwargs, registry, loss, optimizer), where
    )
    records = _guarded(lambda: count_aten(trace, registry), "while counting the step's ops")
    frontend_info = FrontendInfo("aten", trace.note)
    return Counted(tuple(records), frontend_info, trace.module_calls, info, trace.module_outputs)


def run_symbolic(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry,
    frontend: str,
    fake_mode: Any,
) -> Counted:
    """Count ``model`` on inputs with symbolic sizes (made in ``fake_mode``, whose
    ShapeEnv holds the symbols): on the aten frontend, never for real."""
    if frontend not in ("auto", "aten"):
        raise InputError(
            f"symbolic sizes are traced on the aten frontend: use frontend='auto' or 'aten', "
            f"not {frontend!r}"
        )
    _check_model(model)
    where = f"while recording {type(model).__name__} with symbolic sizes"
    trace = _guarded(lambda: trace_aten(model, args, kwargs, registry, fake_mode), where)
    records = _guarded(lambda: count_aten(trace, registry), "while counting the aten ops")
    info = FrontendInfo("aten", "symbolic sizes: one trace, counts as formulas")
    return Counted(tuple(records), info, trace.module_calls, None, trace.module_outputs)


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
    _check_model(model)
    aten = partial(_aten, model, args, kwargs, registry, progress=progress)
    if not registry.policy.fx:
        if frontend == "fx":
            raise InputError("this convention counts aten ops: use frontend='aten' or 'auto'")
        return aten("")
    if frontend == "aten":
        return aten("")
    try:
        counted, unseen = _fx(model, args, kwargs, registry, progress)
    except _FX_FAILURES as e:
        if frontend == "fx":
            raise
        try:
            return aten(f"fx was not used: {e}")
        except FlopgraphError as aten_error:
            raise _both_failed(e, aten_error) from aten_error
    if frontend == "fx" or not unseen:
        return counted
    why = f"the fx graph calls {', '.join(unseen)}, which fx cannot look into and no rule counts"
    try:
        return aten(f"fx was not used: {why}")
    except FlopgraphError as aten_error:  # fx's count stands, its skipped ops listed
        note = f"{why}; the aten frontend failed: {aten_error}"
        return replace(counted, frontend=FrontendInfo("fx", note))


def _check_model(model: torch.nn.Module) -> None:
    """TorchScript modules are refused: neither frontend can count them without running
    the user's own compiled module (its weights and buffers are not reachable as
    tensors to replace), which would break the promise to leave the model untouched."""
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(
            f"{type(model).__name__} is a TorchScript module (torch.jit.script or "
            "torch.jit.trace), which flopgraph cannot count: pass the original nn.Module "
            "it was made from (a module from torch.export's .module() can be counted)"
        )


def _both_failed(fx_error: FlopgraphError, aten_error: FlopgraphError) -> FlopgraphError:
    """One error for two failures, the user's cause first: a flopgraph bug on one frontend
    does not hide what the other says about the model."""
    if isinstance(fx_error, InternalError) and not isinstance(aten_error, InternalError):
        return type(aten_error)(
            f"{aten_error}; the fx frontend failed too, on an internal error: {fx_error}"
        )
    kind: type[FlopgraphError] = TraceError
    if isinstance(fx_error, InternalError):
        kind = InternalError
    elif isinstance(fx_error, PropagationError):
        kind = PropagationError
    return kind(f"{fx_error} (fx frontend); the aten frontend failed too: {aten_error}")


def _fx(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry,
    progress: ProgressFn,
) -> tuple[Counted, list[str]]:
    """fx's count, and the calls in its graph it could not see into (see ``_opaque``)."""
    where = f"while tracing {type(model).__name__} with torch.fx"
    _check_strided(args, kwargs)
    progress("trace", 0, 0)
    traced = _guarded(lambda: trace_fx(model, args, kwargs, registry), where)
    _check_state(model, traced)
    step = partial(progress, "propagate")

    def annotate() -> None:
        try:
            propagate(traced, "meta", step)
        except PropagationError:
            # meta tensors cannot mix with tensors a forward creates on a real device;
            # fake tensors can, at some cost in speed
            propagate(traced, "fake", step)

    _guarded(annotate, "while propagating shapes through the fx graph")
    progress("count", 0, 0)
    records = _guarded(lambda: count(traced, registry), "while counting the fx graph")
    counted = Counted(
        tuple(records), FrontendInfo("fx"), _fx_calls(traced), None, module_outputs(traced)
    )
    return counted, _unseen(traced, records)


def _check_strided(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """fx propagates shapes on strided tensors only: a sparse input goes to aten."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor) and v.layout is not torch.strided:
            raise TraceError(
                f"the fx frontend propagates strided tensors only; an input is {v.layout}"
            )


def _check_state(model: torch.nn.Module, traced: TracedGraph) -> None:
    """A TraceError when the forward assigned a buffer or tensor attribute of the model
    while fx traced it (``self.state = y.detach()``, a recurrent hidden state kept in
    ``self.h``): the traced copy now holds a proxy there, and a graph has no way to say
    that a later read sees the new value. (An attribute that was None or missing stays
    with fx: this call's graph reads no earlier value.)"""
    for path, m in traced.submodules.items():
        for name, v in (*m._buffers.items(), *m.__dict__.items()):
            if type(v) is not torch.fx.Proxy:
                continue
            original = model.get_submodule(path) if path else model
            held = original._buffers.get(name, original.__dict__.get(name))
            if name in original._buffers or isinstance(held, torch.Tensor):
                where = f"{path}.{name}" if path else name
                raise TraceError(
                    f"{type(model).__name__}.forward assigns the tensor {where!r} of the "
                    "model (state kept across calls), which an fx graph cannot express"
                )


def _unseen(traced: TracedGraph, records: list[OpRecord]) -> list[str]:
    """Call targets of skipped ``call_function`` nodes that fx cannot look into."""
    skipped = {r.node for r in records if r.status is Status.SKIPPED and r.kind == "call_function"}
    if not skipped:  # the common case: nothing to look up
        return []
    found = {
        str(node.target) if isinstance(node.target, _ATEN) else describe_target(node)
        for node in traced.graph.nodes
        if node.name in skipped and _opaque(node.target)
    }
    return sorted(found)


def _guarded(step: Callable[[], Any], where: str) -> Any:
    """``step()``, with a failure of flopgraph's own code raised as an InternalError
    (also one a frontend wrapped in its TraceError)."""
    try:
        return step()
    except FlopgraphError as e:
        cause = e.__cause__
        if isinstance(e, TraceError) and cause is not None and is_internal(cause):
            raise internal_error(cause, where) from cause
        raise
    except Exception as e:
        if is_internal(e):
            raise internal_error(e, where) from e
        raise


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
    """aten's count; ``note`` says why it ran (after fx failed)."""
    where = f"while recording {type(model).__name__} on the aten frontend"
    progress("trace", 0, 0)  # the forward runs once, recorded: no per-node steps
    trace = _guarded(lambda: trace_aten(model, args, kwargs, registry), where)
    progress("count", 0, 0)
    notes = "; ".join(n for n in (note, trace.note) if n)
    info = FrontendInfo("aten", notes, real_run=trace.real)
    records = _guarded(lambda: count_aten(trace, registry), "while counting the aten ops")
    return Counted(tuple(records), info, trace.module_calls, None, trace.module_outputs)
