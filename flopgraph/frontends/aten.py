"""The aten frontend: record the aten ops a forward runs, on fake tensors.

A *shadow* of the model (a shallow copy whose parameters and buffers are
data-less twins and whose hook dicts hold only the model's own hooks, see
``shapes._Twins`` and ``model_hooks``) runs its ordinary forward inside
``FakeTensorMode``. Two recorders watch it:

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

import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
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
from torch.utils._pytree import tree_leaves

from ..errors import BOUNDARIES, TraceError
from ..records import TensorMeta, iter_metas
from ..registry import Registry
from ..shapes import _check_dtypes, _Twins, on_this_machine, to_meta
from ..tree import named_modules
from .capacity import balance, bound_note
from .fastfake import MISS, FastFake, fast_fake
from .fx import _bind, _one_line, _where
from .isolation import isolated
from .model_hooks import library_of
from .quantized import quantized_modules
from .reuse import REUSE, Replayed, Reuse

_DATA_DEPENDENT = (DataDependentOutputException, DynamicOutputShapeException)
_UNRECORDED = frozenset({"prim", "profiler"})  # device queries; the profiler's markers
UNPLACED = "\0"
"""Prefix of the module of a recomputed op that ran outside every module call."""
_PASS_THROUGH = frozenset({torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad})
"""Calls that run a backward: not one torch call of the model's but many ops, each
recorded on its own (with the torch calls a checkpointed segment makes again)."""
_QUERIES = frozenset(
    getattr(torch.ops.aten, n).default
    for n in ("is_contiguous", "size", "stride", "storage_offset", "numel", "dim",
              "sym_size", "sym_stride", "sym_numel", "sym_storage_offset")
)  # fmt: skip
# Fake kernels of these contractions accept operands of two dtypes, which real kernels
# refuse: the positions of the two operands, checked as fx checks its modules.
_OPERANDS = {
    **dict.fromkeys(("mm", "bmm", "mv", "dot", "vdot", "convolution", "_convolution"), (0, 1)),
    **dict.fromkeys(("addmm", "baddbmm", "addmv", "addbmm"), (1, 2)),
}


def _grouped_mm(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``_grouped_mm`` on fake tensors of any float dtype. Its fake kernel accepts only
    the bfloat16 operands of the CUDA kernel, while the CPU kernel (mixture-of-experts
    layers in transformers call it) takes float32 too: the output's shape does not
    depend on the dtype, so a float32 call is shaped by the kernel on bfloat16 stand-ins
    and given the operands' dtype back (this runs inside the recorder, where the ops
    made here reach FakeTensorMode unrecorded)."""
    a, b = args[0], args[1]
    if a.dtype == torch.bfloat16 or not (a.is_floating_point() and a.dtype == b.dtype):
        return func(*args, **kwargs)
    stand_in = func(a.to(torch.bfloat16), b.to(torch.bfloat16), *args[2:], **kwargs)
    return stand_in.to(kwargs.get("out_dtype") or a.dtype)


_FAKE_STAND_INS: dict[Any, Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]] = {}
if hasattr(torch.ops.aten, "_grouped_mm"):
    _FAKE_STAND_INS[torch.ops.aten._grouped_mm.default] = _grouped_mm


@dataclass(frozen=True)
class AtenOp:
    """One aten op the forward ran, with tensors replaced by TensorMeta."""

    op: Any  # a torch._ops.OpOverload
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    module: str
    """Dotted path of the module the op ran in; ``""`` is the root."""
    phase: str = "forward"
    free: str = ""
    """Why the op is free whatever its rule says (an optimizer's step counter)."""


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
    phase: str = "forward"


@dataclass(frozen=True)
class ModuleCall:
    """One call of a module whose type has a rule: counted whole, by that rule, as fx
    counts the module (its aten ops are parts, as in a composite)."""

    module: torch.nn.Module
    """The user's module (not the shadow's twin): handlers read its settings."""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    path: str
    """Dotted path of the module; ``""`` is the root."""
    ops: tuple[AtenOp, ...]
    phase: str = "forward"


@dataclass(frozen=True)
class AtenTrace:
    """What one forward ran, in order: torch calls (with their aten ops) and any
    aten op that ran outside a torch call."""

    items: tuple[TorchCall | ModuleCall | AtenOp | Replayed, ...]
    """A replayed block's items are :class:`~flopgraph.frontends.reuse.Replayed`: its
    template's, moved on demand."""
    module_calls: Mapping[str, int] = field(default_factory=dict)
    """Module path -> how many times its forward ran."""
    real: bool = False
    """True when the forward ran on real tensors (value-dependent control flow)."""
    note: str = ""
    module_outputs: Mapping[str, tuple[TensorMeta, ...]] = field(default_factory=dict)
    """Module path -> the tensors its forward returned (its last forward call), see
    :func:`returned`."""

    def moved_items(self) -> Iterator[TorchCall | ModuleCall | AtenOp]:
        """The items, each replayed one moved to its block (made now: a replay keeps
        only a marker)."""
        for item in self.items:
            yield item.moved() if isinstance(item, Replayed) else item

    def ops(self) -> Iterator[AtenOp]:
        """Every recorded aten op, in order."""
        for item in self.moved_items():
            if isinstance(item, (TorchCall, ModuleCall)):
                yield from item.ops
            else:
                yield item


@dataclass(frozen=True)
class _Failure:
    """Where an exception went through the recorder: the innermost op that raised
    it, the torch call that op ran in, the module and the inputs it saw."""

    error: BaseException
    op: str
    module: str
    inputs: tuple[TensorMeta, ...]
    call: str = ""

    def describe(self) -> str:
        call = f" (in {self.call})" if self.call and self.call != self.op else ""
        where = f" in module {self.module!r}" if self.module else ""
        seen = ", ".join(map(str, self.inputs)) or "no tensor inputs"
        return f"{self.op}{call}{where} failed on inputs {seen}: "


@dataclass
class _Whole:
    """A module call being recorded whole: where it started and what it ran."""

    shadow: torch.nn.Module
    depth: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ops: list[AtenOp]
    phase: str = "forward"


class _Recorder:
    """Collects records from both modes and the module stack from the hooks."""

    def __init__(
        self,
        paths: Mapping[int, str],
        fast: FastFake | None = None,
        whole: Callable[[torch.nn.Module], torch.nn.Module | None] | None = None,
    ) -> None:
        self.paths = paths
        self.fast = fast
        """The short road through FakeTensorMode, when the forward runs on fake tensors."""
        self.whole = whole
        """The user's module for a shadow module whose call is recorded whole (its type
        has a rule), else None."""
        self.stack: list[str] = []
        self.calls: dict[str, int] = {}
        self.outputs: dict[str, tuple[TensorMeta, ...]] = {}
        """Module path -> what its last forward call returned (forward phase only)."""
        self.items: list[TorchCall | ModuleCall | AtenOp | Replayed] = []
        self.frame: list[AtenOp] | None = None
        self.open: _Whole | None = None
        self.failure: _Failure | None = None
        self.phase = "forward"
        """The step's phase now running: ``forward``, ``backward`` (recompute is told
        apart op by op, see :meth:`where`) or ``optimizer``."""
        self.grads: dict[Any, str] | None = None
        """Training only: autograd node -> the module whose forward made it, so that
        each backward op is the module's (filled as the forward runs, see :meth:`claim`)."""
        self.memory: Any = None
        """Training only: the ``training._Memory`` following live tensor bytes."""
        self.flow: Any = None
        """Optimizer phase only: the ``training.Flow`` giving each op its parameter's
        module and telling the step counters apart."""

    @property
    def path(self) -> str:
        return self.stack[-1] if self.stack else ""

    def enter(self, module: torch.nn.Module, *_: Any) -> None:
        path = self.paths.get(id(module))
        if path is not None:
            self.stack.append(path)
            self.calls[path] = self.calls.get(path, 0) + 1
            if self.frame is None and self.whole is not None and self.whole(module) is not None:
                # the module's type has a rule: its call is one record, its ops are parts
                args = _[0] if _ else ()
                phase = self.where()[0]
                self.open = _Whole(
                    module, len(self.stack), to_meta(args), _call_kwargs(), [], phase
                )
                self.frame = self.open.ops

    def leave(self, module: torch.nn.Module, args: Any = (), *rest: Any) -> None:
        if id(module) in self.paths and self.stack:
            # an always-called hook runs inside the module's except block when its
            # forward raised: the innermost module a Python-level error came from
            error = sys.exc_info()[1]
            if isinstance(error, Exception):
                self.failed(error, type(module).__name__, args, {})
            if self.grads is not None and rest:
                self.claim(rest[0], self.path)
            if rest and self.phase == "forward":
                self.outputs[self.path] = returned(rest[0])
            whole = self.open
            if whole is not None and whole.shadow is module and whole.depth == len(self.stack):
                self.open = self.frame = None
                user = self.whole(module) if self.whole is not None else None
                out = to_meta(rest[0]) if rest else None
                if user is not None:  # on an error the trace fails anyway
                    self.items.append(
                        ModuleCall(
                            user,
                            whole.args,
                            whole.kwargs,
                            out,
                            self.path,
                            tuple(whole.ops),
                            whole.phase,
                        )  # fmt: skip
                    )
            self.stack.pop()

    def call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.frame is not None or self.flow is not None or func in _PASS_THROUGH:
            # a call made while running another (torch internals), or by an optimizer
            # (its aten ops are counted one by one, each placed by the optimizer's flow)
            return func(*args, **kwargs)
        frame: list[AtenOp] = []
        self.frame = frame
        phase, module = self.where() if self.grads is not None else ("forward", self.path)
        try:
            out = func(*args, **kwargs)
        except Exception as e:
            self.failed(e, describe_call(func), args, kwargs, call=True)
            raise
        finally:
            self.frame = None
        if self.grads is not None and phase != "backward":
            self.claim(out, module)
        if frame:
            self.items.append(
                TorchCall(
                    func, to_meta(args), to_meta(kwargs), to_meta(out), module, tuple(frame), phase
                )  # fmt: skip
            )
        return out

    def where(self) -> tuple[str, str]:
        """The phase and module of the op running now. In backward, an op runs inside
        the autograd node of a forward op and belongs to that op's module; an op that
        runs with grad enabled inside a node is activation checkpointing running a
        forward segment again (``recompute``), in the modules it calls."""
        if self.phase != "backward":
            return self.phase, self.path
        node = torch._C._current_autograd_node()
        if node is None:  # the engine seeding the loss's gradient
            return "backward", ""
        owner = self.grads.get(node, "") if self.grads is not None else ""
        if torch.is_grad_enabled():
            # a segment checkpointed as a plain function (transformers checkpoints a
            # layer's ``forward``, not its call) reruns outside any module hook: marked
            # for ``training.place_recompute``, which gives it the segment's module
            return "recompute", self.path or UNPLACED + owner
        return "backward", owner

    def claim(self, value: Any, path: str) -> None:
        """Give ``path`` every autograd node behind ``value`` that no earlier call
        claimed: the nodes this call (or module) created."""
        grads = self.grads
        assert grads is not None
        path = path.removeprefix(UNPLACED)
        todo: list[Any] = [
            t.grad_fn for t in tree_leaves(value)
            if isinstance(t, torch.Tensor) and t.grad_fn is not None
        ]  # fmt: skip
        while todo:
            node = todo.pop()
            if node is None or node in grads:
                continue
            grads[node] = path
            todo.extend(n for n, _ in node.next_functions)

    def op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            operands = _OPERANDS.get(func.overloadpacket.__name__)
            if operands is not None:
                _check_dtypes([args[i] for i in operands if i < len(args)], str(func))
            if func in _FAKE_STAND_INS and _fake(args):
                out = _FAKE_STAND_INS[func](func, args, kwargs)
            else:
                out = MISS if self.fast is None else self.fast(func, args, kwargs)
            if out is MISS and self.flow is not None:
                out = self.flow.run(func, args, kwargs)
            elif out is MISS:
                out = _symbolic_safe(func, args, kwargs)
        except Exception as e:
            self.failed(e, str(func), args, kwargs)
            raise
        if func.namespace not in _UNRECORDED and func not in _QUERIES:
            if self.grads is None:
                rec = AtenOp(func, to_meta(args), to_meta(kwargs), to_meta(out), self.path)
            else:
                rec = self.step_op(func, args, kwargs, out)
            (self.frame if self.frame is not None else self.items).append(rec)
        return out

    def step_op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> AtenOp:
        """The record of an op of a training step, with its phase and module."""
        free = ""
        if self.flow is not None:
            phase, (module, free) = "optimizer", self.flow.place(func, args, kwargs, out)
        else:
            phase, module = self.where()
        if self.memory is not None:
            self.memory.see(out)
            self.memory.mark(f"{phase}:{func.overloadpacket.__name__}")
        return AtenOp(func, to_meta(args), to_meta(kwargs), to_meta(out), module, phase, free)

    def failed(self, e: Exception, label: str, args: Any, kwargs: Any, call: bool = False) -> None:
        """Remember where ``e`` first went through the recorder (an op, then the torch
        call around it adds its name)."""
        if self.failure is not None and self.failure.error is e:
            if call and not self.failure.call:
                self.failure = replace(self.failure, call=label)
            return
        leaves = tree_leaves((args, kwargs))
        inputs = tuple(TensorMeta.of(t) for t in leaves if isinstance(t, torch.Tensor))
        self.failure = _Failure(e, label, self.path, inputs, label if call else "")

    def failure_of(self, e: BaseException) -> str:
        """``op (in call) in module 'm' failed on inputs ...: `` for an exception the
        recorder saw ``e`` grow from, else ``""`` (an error raised by Python code)."""
        seen: set[int] = set()
        cause: BaseException | None = e
        while cause is not None and id(cause) not in seen and self.failure is not None:
            if cause is self.failure.error:
                return self.failure.describe()
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        return ""


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


def _symbolic_safe(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``func(*args, **kwargs)``; when symbolic sizes reach a C++ kernel that takes
    concrete ints only (``constant_pad_nd`` with symbolic padding), torch's own Python
    decomposition of the op runs instead: the same result, computed with SymInts. An op
    whose C++ kernel would fix every size of its input to the hint (``constant_pad_nd``
    again, whatever its padding) takes the decomposition first."""
    if func in _SPECIALIZING and _symbolic_input(args):
        from torch._decomp import decomposition_table

        decomposed = decomposition_table.get(func)
        if decomposed is not None:
            return decomposed(*args, **kwargs)
    try:
        return func(*args, **kwargs)
    except RuntimeError as e:
        if "expected to contain only concrete integers" not in str(e):
            raise
        from torch._decomp import decomposition_table

        decomposed = decomposition_table.get(func)
        if decomposed is None:
            raise
        return decomposed(*args, **kwargs)


_SPECIALIZING = frozenset({torch.ops.aten.constant_pad_nd.default})
"""Ops whose C++ kernel guards every input size equal to its hint (a symbolic batch
would become 65 after any padding)."""


def _fake(args: tuple[Any, ...]) -> bool:
    """The op runs on fake tensors (not for real): its stand-in applies."""
    from torch._subclasses.fake_tensor import FakeTensor

    return any(isinstance(a, FakeTensor) for a in args)


def _symbolic_input(args: tuple[Any, ...]) -> bool:
    return any(
        isinstance(a, torch.Tensor) and any(isinstance(s, torch.SymInt) for s in a.shape)
        for a in args
    )


REAL_INPUTS_HINT = "Pass real input tensors so the forward can run for real, on copies."
VALUES_HINT = (
    "Pass real input tensors (and a model on a real device) so the forward can run for "
    "real and count the branch it takes."
)
"""How the errors of a model that must run for real end: what to do about it (the
command line, which has no tensors to pass, says ``--real`` instead)."""


def trace_aten(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry | None = None,
    fake_mode: Any = None,
) -> AtenTrace:
    """Record ``model``'s forward on ``args``/``kwargs``: on fake tensors, or for real
    on copies when fake tensors cannot run it and every input is a real tensor (its
    control flow or an output shape needs tensor values, it has quantized modules, or
    it failed on fake tensors: libraries take other paths for them, e.g. transformers
    keeps a full attention mask when it cannot read the mask's values). A module whose
    type has a rule in ``registry`` is recorded as one call (fx counts it as one call too)."""
    _check_inputs(model, args, kwargs)
    if fake_mode is not None:  # symbolic sizes: on these fake tensors or not at all
        from torch._dispatch.python import enable_python_dispatcher

        # torch's Python implementations of composite ops (interpolate's size
        # arithmetic, as torch.compile runs them) keep sizes symbolic where the C++
        # ones would fix them to the hint
        with isolated(), enable_python_dispatcher():
            return _record(model, args, kwargs, "fake", registry=registry, fake_mode=fake_mode)
    hint = REAL_INPUTS_HINT
    with isolated():
        quantized = quantized_modules(model)
        cause: BaseException | None = None
        if quantized:  # their kernels have no fake versions: straight to a real run
            reason = f"quantized modules ({quantized}) have no kernels for fake tensors"
        else:
            try:
                return _record(model, args, kwargs, "fake", registry=registry)
            except _DATA_DEPENDENT as e:
                dynamic = isinstance(e, DynamicOutputShapeException)
                what = "the output shape of an op" if dynamic else "control flow"
                line = _where(e) or " (the line was not found)"
                reason = f"{what} depends on tensor values{line}"
                hint = VALUES_HINT
                cause = e
            except TraceError as e:
                if not _can_run_for_real(model, args, kwargs):
                    raise
                reason = f"on fake tensors, {e}"
        if not _can_run_for_real(model, args, kwargs):
            raise TraceError(
                f"{type(model).__name__} cannot be counted from shapes alone: {reason}. {hint}"
            ) from cause
        note = f"ran for real on copies of the inputs and weights: {reason}"
        return _record(model, args, kwargs, "real", note, registry)


def _check_inputs(model: torch.nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """An InputError, as on the fx frontend, for inputs ``forward`` cannot take."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin forward without a signature: let it run
        return
    _bind(model, params, args, kwargs)


def _record(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    mode: str,
    note: str = "",
    registry: Registry | None = None,
    fake_mode: Any = None,
) -> AtenTrace:
    device, moved = _device_of(model)
    replay = mode == "fake" and fake_mode is None and REUSE.get()
    twins = _Twins(
        "real" if mode == "real" else "fake", device, library_of(model), fake_mode, lazy=replay
    )
    shadow = twins.module(model)
    user = named_modules(model)
    paths = {id(twins.module(m)): path for path, m in user.items()}
    # the short road through fake tensors assumes static shapes
    fast = None if twins.fake_mode is None or fake_mode is not None else fast_fake(twins.fake_mode)
    recorder = _Recorder(paths, fast, _ruled_modules(model, twins, registry))
    if mode == "real":  # capacity-limited routers choose as the bound needs
        note = "; ".join(n for n in (note, bound_note(balance(model, twins.module))) if n)
    reuse = None
    if replay:
        reuse = Reuse(recorder, user)
        reuse.install({p: twins.module(m) for p, m in user.items()})

    t_args, t_kwargs = twins.value(tuple(args)), twins.value(dict(kwargs))
    try:
        with twins.active(), _recording(recorder):
            shadow(*t_args, **t_kwargs)
    except _DATA_DEPENDENT:
        raise
    except Exception as e:  # a failure anywhere in the model or torch
        raise TraceError(
            f"the aten frontend could not run {type(model).__name__}.forward "
            f"({mode} tensors): {recorder.failure_of(e)}{_one_line(e)}{_where(e)}"
        ) from e
    finally:
        twins.close()
    notes = "; ".join(n for n in (note, moved) if n)
    return AtenTrace(
        tuple(recorder.items), dict(recorder.calls), mode == "real", notes,
        dict(recorder.outputs),
    )  # fmt: skip


def returned(value: Any) -> tuple[TensorMeta, ...]:
    """The tensors of a module's forward result, flattened in order (tuple items, dict
    values: a transformers ``ModelOutput``'s set fields), as the fx frontend reads them
    from its graph: what the module itself returned, not the last op it ran (layer
    norm's aten op also returns its mean and rstd)."""
    return tuple(iter_metas(to_meta(value)))


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


def _ruled_modules(
    model: torch.nn.Module, twins: _Twins, registry: Registry | None
) -> Callable[[torch.nn.Module], torch.nn.Module | None] | None:
    """Shadow module -> the user's module, for the modules whose type has a rule."""
    if registry is None:
        return None
    ruled = {
        id(twins.module(m)): m
        for m in named_modules(model).values()
        if registry.lookup_module(type(m)) is not None
    }
    return lambda shadow: ruled.get(id(shadow))


def _call_kwargs() -> dict[str, Any]:
    """The keyword arguments of the module call whose forward pre-hook is running.

    Global pre-hooks receive the positional arguments only; the keywords are a local
    of ``Module._call_impl``'s inner function, two frames up. A module called with
    keywords (``attn(q, k, v, need_weights=False)``) is counted with them, as on fx.
    """
    frame: Any = sys._getframe(2)
    for _ in range(3):  # the hook's caller, or a wrapper or two below it
        if frame is None or frame.f_code.co_name in ("inner", "_call_impl"):
            break
        frame = frame.f_back
    kwargs = frame.f_locals.get("kwargs") if frame is not None else None
    return to_meta(dict(kwargs)) if isinstance(kwargs, dict) else {}


def _device_of(model: torch.nn.Module) -> tuple[torch.device, str]:
    """Where fake twins live, and a note when that is not the model's device: the
    model's device, or the CPU for a meta model (so kernels are chosen as on a real
    device, e.g. one fused attention op) and for a model on a device this machine
    lacks (fake tensors on "cuda" without a GPU: cuda kernels cannot even be chosen
    here, and the counts are the same)."""
    modules = named_modules(model).values()
    t: torch.Tensor | None = next(
        (t for m in modules for t in m._parameters.values() if t is not None), None
    )
    if t is None:  # no parameter: the first buffer decides
        t = next((t for m in modules for t in m._buffers.values() if t is not None), None)
    if t is None or t.device.type == "meta":
        return torch.device("cpu"), ""
    if not on_this_machine(t.device):
        note = f"the model is on {t.device}, which this machine lacks: recorded on the CPU"
        return torch.device("cpu"), note
    return t.device, ""


def _can_run_for_real(model: torch.nn.Module, args: Any, kwargs: Mapping[str, Any]) -> bool:
    tensors = [v for v in tree_leaves((args, dict(kwargs))) if isinstance(v, torch.Tensor)]
    weights = [*model.parameters(), *model.buffers()]
    real = all(t.device.type != "meta" and not is_fake(t) for t in (*tensors, *weights))
    return bool(tensors) and real


def describe_call(target: Any) -> str:
    """``torch.nn.functional.normalize``, ``Tensor.matmul``, ``torch._C._nn.linear``."""
    if getattr(target, "__objclass__", None) is not None:  # tensor methods and operators
        return f"Tensor.{target.__name__}"
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    name = str(name or repr(target))
    return f"{module}.{name}" if module else name


# where this frontend runs the model and torch (the shadow's forward, each call and op):
# an error raised through them is the model's or torch's, not flopgraph's (errors.is_internal)
BOUNDARIES.update(
    {_record.__code__, _Recorder.op.__code__, _Recorder.call.__code__, _symbolic_safe.__code__}
)
