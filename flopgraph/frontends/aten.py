"""The aten frontend: record the aten ops a forward runs, on fake tensors.

A *shadow* of the model (a shallow copy whose parameters and buffers are
data-less twins and whose hook dicts are empty, see ``shapes._Twins``) runs its
ordinary forward inside ``FakeTensorMode``. Two recorders watch it:

- a ``TorchDispatchMode`` sees every aten op after autograd's decompositions
  (``aten.addmm``, ``aten.convolution``, ...), with its arguments and outputs;
- a ``TorchFunctionMode`` sees the torch-level call each aten op came from
  (``F.scaled_dot_product_attention``, ``F.normalize``, ``x @ y``), so a
  convention may count a composite call as one op instead of its decomposition.

Global module pre/post forward hooks, installed only while recording and only
acting on the shadow's modules, keep the stack of module paths each op ran in.
Python control flow runs as written, so loops over ``x.shape[0]``, shape
asserts and data structures fx cannot trace all work. Control flow on tensor
*values* cannot run on fake tensors: then, if the user gave real tensors, the
forward runs for real on copies of the weights, and the trace says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    is_fake,
)
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from ..errors import TraceError
from ..shapes import _Twins, to_meta
from .fastfake import MISS, FastFake, fast_fake
from .fx import _one_line, _where

_DATA_DEPENDENT = (DataDependentOutputException, DynamicOutputShapeException)
_QUERIES = frozenset(
    getattr(torch.ops.aten, n).default
    for n in ("is_contiguous", "size", "stride", "storage_offset", "numel", "dim",
              "sym_size", "sym_stride", "sym_numel", "sym_storage_offset")
)  # fmt: skip


@dataclass(frozen=True)
class AtenOp:
    """One aten op the forward ran, with tensors replaced by TensorMeta."""

    op: Any  # a torch._ops.OpOverload
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    module: str
    """Dotted path of the module the op ran in; ``""`` is the root."""


@dataclass(frozen=True)
class TorchCall:
    """One torch-level call from Python code and the aten ops it ran."""

    target: Callable[..., Any]
    """The function, tensor method or operator the model called."""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    module: str
    ops: tuple[AtenOp, ...]


@dataclass(frozen=True)
class AtenTrace:
    """What one forward ran, in order: torch calls (with their aten ops) and any
    aten op that ran outside a torch call."""

    items: tuple[TorchCall | AtenOp, ...]
    module_calls: Mapping[str, int] = field(default_factory=dict)
    """Module path -> how many times its forward ran."""
    real: bool = False
    """True when the forward ran on real tensors (value-dependent control flow)."""
    note: str = ""

    def ops(self) -> Iterator[AtenOp]:
        """Every recorded aten op, in order."""
        for item in self.items:
            if isinstance(item, TorchCall):
                yield from item.ops
            else:
                yield item


class _Recorder:
    """Collects records from both modes and the module stack from the hooks."""

    def __init__(self, paths: Mapping[int, str], fast: FastFake | None = None) -> None:
        self.paths = paths
        self.fast = fast
        """The short road through FakeTensorMode, when the forward runs on fake tensors."""
        self.stack: list[str] = []
        self.calls: dict[str, int] = {}
        self.items: list[TorchCall | AtenOp] = []
        self.frame: list[AtenOp] | None = None

    @property
    def path(self) -> str:
        return self.stack[-1] if self.stack else ""

    def enter(self, module: torch.nn.Module, *_: Any) -> None:
        path = self.paths.get(id(module))
        if path is not None:
            self.stack.append(path)
            self.calls[path] = self.calls.get(path, 0) + 1

    def leave(self, module: torch.nn.Module, *_: Any) -> None:
        if id(module) in self.paths and self.stack:
            self.stack.pop()

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.frame is not None:  # a call made while running another (torch internals)
            return func(*args, **kwargs)
        frame: list[AtenOp] = []
        self.frame, module = frame, self.path
        try:
            out = func(*args, **kwargs)
        finally:
            self.frame = None
        if frame:
            self.items.append(
                TorchCall(func, to_meta(args), to_meta(kwargs), to_meta(out), module, tuple(frame))
            )
        return out

    def op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        out = MISS if self.fast is None else self.fast(func, args, kwargs)
        if out is MISS:
            out = func(*args, **kwargs)
        if func.namespace != "prim" and func not in _QUERIES:
            rec = AtenOp(func, to_meta(args), to_meta(kwargs), to_meta(out), self.path)
            (self.frame if self.frame is not None else self.items).append(rec)
        return out


class _CallMode(TorchFunctionMode):
    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        return self.recorder.call(func, tuple(args), dict(kwargs or {}))


class _OpMode(TorchDispatchMode):
    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # nothing here is compiled: without this, torch wraps __torch_dispatch__ in a
        # "disable dynamo" frame that costs a few microseconds on every op
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        return self.recorder.op(func, tuple(args), dict(kwargs or {}))


def trace_aten(
    model: torch.nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> AtenTrace:
    """Record ``model``'s forward on ``args``/``kwargs``: on fake tensors, or for real
    when its control flow needs tensor values and every input is a real tensor."""
    try:
        return _record(model, args, kwargs, "fake")
    except _DATA_DEPENDENT as e:
        line = _where(e) or " (the line was not found)"
        dynamic = isinstance(e, DynamicOutputShapeException)
        what = "the output shape of an op" if dynamic else "control flow"
        reason = f"{what} depends on tensor values{line}"
        if not _can_run_for_real(model, args, kwargs):
            raise TraceError(
                f"{type(model).__name__} cannot be counted from shapes alone: {reason}. "
                "Pass real input tensors (and a model on a real device) so the forward can "
                "run for real and count the branch it takes."
            ) from e
        note = f"ran for real on copies of the inputs and weights: {reason}"
    return _record(model, args, kwargs, "real", note)


def _record(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    mode: str,
    note: str = "",
) -> AtenTrace:
    device = _device_of(model)
    twins = _Twins("real" if mode == "real" else "fake", device)
    shadow = twins.module(model)
    paths = {id(twins.module(m)): path for path, m in model.named_modules()}
    recorder = _Recorder(paths, None if twins.fake_mode is None else fast_fake(twins.fake_mode))

    def twin(v: Any) -> Any:
        return twins.tensor(v) if isinstance(v, torch.Tensor) else v

    t_args, t_kwargs = tree_map(twin, args), tree_map(twin, dict(kwargs))
    try:
        with twins.active(), _recording(recorder):
            shadow(*t_args, **t_kwargs)
    except _DATA_DEPENDENT:
        raise
    except Exception as e:  # a failure anywhere in the model or torch
        raise TraceError(
            f"the aten frontend could not run {type(model).__name__}.forward "
            f"({mode} tensors): {_one_line(e)}{_where(e)}"
        ) from e
    return AtenTrace(tuple(recorder.items), dict(recorder.calls), mode == "real", note)


@contextmanager
def _recording(recorder: _Recorder) -> Iterator[None]:
    """Both modes and the module-path hooks, removed however the forward ends."""
    with ExitStack() as stack:
        pre = register_module_forward_pre_hook(recorder.enter)
        stack.callback(pre.remove)
        post = register_module_forward_hook(recorder.leave, always_call=True)
        stack.callback(post.remove)
        stack.enter_context(_OpMode(recorder))
        stack.enter_context(_CallMode(recorder))
        yield


def _device_of(model: torch.nn.Module) -> torch.device:
    """Where fake twins live: the model's device, or the CPU for a meta model (so
    kernels are chosen as on a real device, e.g. one fused attention op)."""
    for t in (*model.parameters(), *model.buffers()):
        return torch.device("cpu") if t.device.type == "meta" else t.device
    return torch.device("cpu")


def _can_run_for_real(model: torch.nn.Module, args: Any, kwargs: Mapping[str, Any]) -> bool:
    tensors = [v for v in tree_leaves((args, dict(kwargs))) if isinstance(v, torch.Tensor)]
    weights = [*model.parameters(), *model.buffers()]
    real = all(t.device.type != "meta" and not is_fake(t) for t in (*tensors, *weights))
    return bool(tensors) and real
