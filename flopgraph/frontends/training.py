"""One training step on fake tensors: forward, loss, backward (with any recompute) and
an optimizer step, recorded op by op by the aten frontend's recorder.

The shadow of the model (see :mod:`.aten`) gets fake twins of the parameters that
require grad exactly where the user's do, so autograd computes the gradients a real
step computes and no others (no weight gradient for a frozen layer, no input gradient
for an input that does not ask for one). ``loss.backward()`` then runs on the fake
tensors inside the recorder: every backward op is seen, in the autograd node of the
forward op it differentiates, which names its module. The optimizer is built on the
twins (never the user's, nor the user's optimizer) and steps once. Nothing real is
computed and nothing of the user's changes: the twins' ``.grad`` and the optimizer's
state are the twins' own.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch._subclasses.fake_tensor import DataDependentOutputException
from torch.utils._pytree import tree_leaves

from ..errors import BOUNDARIES, InputError, TraceError
from ..registry import Registry
from ..shapes import _Twins
from ..step import StepInfo, StepMemory
from ..tree import named_modules
from .aten import (
    _DATA_DEPENDENT,
    UNPLACED,
    AtenOp,
    AtenTrace,
    ModuleCall,
    TorchCall,
    _check_inputs,
    _device_of,
    _Recorder,
    _recording,
    _ruled_modules,
)
from .fastfake import fast_fake
from .fx import _one_line, _where
from .isolation import isolated
from .model_hooks import library_of
from .quantized import quantized_modules

aten = torch.ops.aten

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
"""Optimizers named by string, built with torch's defaults (torch picks the for-loop,
foreach or fused form as it would for tensors on the model's device)."""

Loss = Callable[[Any], torch.Tensor]
OptimizerSpec = str | Callable[..., torch.optim.Optimizer] | torch.optim.Optimizer


def trace_step(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry | None,
    loss: Loss | None = None,
    optimizer: OptimizerSpec | None = None,
) -> tuple[AtenTrace, StepInfo]:
    """Record one training step of ``model`` on ``args``/``kwargs``."""
    _check_inputs(model, args, kwargs)
    if optimizer is not None and not (
        isinstance(optimizer, (str, torch.optim.Optimizer)) or callable(optimizer)
    ):
        raise InputError(
            f"optimizer must be a name ({', '.join(OPTIMIZERS)}), a torch optimizer or a "
            f"callable building one from parameters, got {type(optimizer).__name__}"
        )
    if isinstance(optimizer, str) and optimizer.lower() not in OPTIMIZERS:
        raise InputError(
            f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)} (or pass a "
            "callable building one from parameters)"
        )
    with isolated():
        quantized = quantized_modules(model)
        if quantized:
            raise InputError(
                f"a training step of a quantized model cannot be counted ({quantized} "
                "have no backward)"
            )
        return _step(model, args, kwargs, registry, loss, optimizer)


def _step(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    registry: Registry | None,
    loss: Loss | None,
    optimizer: OptimizerSpec | None,
) -> tuple[AtenTrace, StepInfo]:
    device, moved = _device_of(model)
    twins = _Twins("fake", device, library_of(model))
    shadow = twins.module(model)
    paths = {id(twins.module(m)): path for path, m in named_modules(model).items()}
    owners = _trainable_twins(model, twins)
    recorder = _Recorder(paths, fast_fake(twins.fake_mode), _ruled_modules(model, twins, registry))
    recorder.grads = {}
    memory = recorder.memory = _Memory()
    weights = [twins.tensor(t) for t in (*model.parameters(), *model.buffers())]
    memory.see(weights)

    # inputs as the forward-only trace copies them (an object holding tensors, a
    # cache, is copied, never written into); an input that asks for its gradient keeps
    # asking (twins are memoised per tensor: the same twin as in the copies)
    t_args, t_kwargs = twins.value(tuple(args)), twins.value(dict(kwargs))
    for v in tree_leaves((args, kwargs)):
        if isinstance(v, torch.Tensor) and v.requires_grad:
            t = twins.tensor(v)
            if t.is_leaf and not t.requires_grad:
                t.requires_grad_()
    memory.see((t_args, t_kwargs))
    state: set[int] = set()
    name, label = "", ""
    try:
        with twins.active(grad=True), _recording(recorder):
            out = shadow(*t_args, **t_kwargs)
            value, label = _loss(out, loss)
            recorder.phase = "backward"
            _backward(value)
            del value, out
            if optimizer is not None:
                params = [t for t in owners.tensors() if t.grad is not None]
                opt = _build(optimizer, params, model, twins)
                name = type(opt).__name__
                recorder.phase, recorder.flow = "optimizer", _Flow(owners)
                # the first step creates the optimizer's state (SGD's momentum buffer is
                # a copy of the gradient): a step as training runs it is the second
                warm_up, marks = len(recorder.items), len(memory.marks)
                opt.step()
                del recorder.items[warm_up:], memory.marks[marks:]
                opt.step()
                state = {
                    seq for s in opt.state.values() for v in s.values()
                    if isinstance(v, torch.Tensor) and (seq := memory.seq_of(v)) is not None
                }  # fmt: skip
    except InputError:
        raise
    except _DATA_DEPENDENT as e:
        raise TraceError(
            f"a training step of {type(model).__name__} is counted on fake tensors only, and "
            f"its control flow depends on tensor values{_where(e) or ''}: a random branch "
            "(LayerDrop) can be turned off (e.g. config.layerdrop = 0) to count the step that "
            "keeps every layer"
        ) from e
    except Exception as e:
        raise TraceError(
            f"the aten frontend could not run a training step of {type(model).__name__} "
            f"({recorder.phase}): {recorder.failure_of(e)}{_one_line(e)}{_where(e)}"
        ) from e
    finally:
        twins.close()
    note = (
        ""
        if model.training
        else (
            "the model is in eval mode: dropout and batch norm count as in eval "
            "(call model.train() first for a training step's forward)"
        )
    )
    parameters = {memory.seq_of(t) for t in weights}
    grads = {
        memory.seq_of(t.grad) for t in (*owners.tensors(), *tree_leaves((t_args, t_kwargs)))
        if isinstance(t, torch.Tensor) and t.grad is not None
    }  # fmt: skip
    peak = memory.result(parameters - {None}, grads - {None}, state)  # type: ignore[arg-type]
    items = place_recompute(recorder.items)  # type: ignore[arg-type]  # never replayed
    trace = AtenTrace(items, dict(recorder.calls), False, moved, dict(recorder.outputs))
    info = StepInfo(label, name, "full", peak, note)
    return trace, info


def _backward(loss: torch.Tensor) -> None:
    """``loss.backward()``, called on autograd's engine directly: ``Tensor.backward``
    is a torch function, and a TorchFunctionMode is off while it handles one, so the
    recorder would miss the torch calls a checkpointed segment makes again."""
    grad = torch.ones_like(loss)
    torch.autograd.graph._engine_run_backward(
        (loss,), (grad,), False, False, (), allow_unreachable=True, accumulate_grad=True
    )


def place_recompute(
    items: list[TorchCall | ModuleCall | AtenOp],
) -> tuple[TorchCall | ModuleCall | AtenOp, ...]:
    """Give each recomputed op that ran outside every module call (``UNPLACED``) the
    module of its segment: the deepest module containing the modules the same rerun
    entered, or, when it entered none, the module of the op being differentiated."""
    out = list(items)
    run: list[int] = []

    def path(item: Any) -> str:
        return item.path if isinstance(item, ModuleCall) else item.module

    def close() -> None:
        placed = [path(out[i]) for i in run if not path(out[i]).startswith(UNPLACED)]
        for i in run:
            item = out[i]
            if path(item).startswith(UNPLACED):
                segment = _common(placed) if placed else path(item).removeprefix(UNPLACED)
                if isinstance(item, ModuleCall):
                    out[i] = replace(item, path=segment)
                else:
                    out[i] = replace(item, module=segment)
        run.clear()

    for i, item in enumerate(out):
        if item.phase == "recompute":
            run.append(i)
        elif run:
            close()
    if run:
        close()
    return tuple(out)


class _Owners:
    """The twins of the user's trainable parameters and the module owning each."""

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}
        self._tensors: list[torch.Tensor] = []

    def add(self, t: torch.Tensor, path: str) -> None:
        if id(t) not in self.paths:
            self.paths[id(t)] = path
            self._tensors.append(t)

    def tensors(self) -> list[torch.Tensor]:
        return list(self._tensors)


def _trainable_twins(model: torch.nn.Module, twins: _Twins) -> _Owners:
    """Twins of the parameters, requiring grad exactly where the user's do (a meta
    parameter's twin is made without it); tied parameters once, owned by their first
    module."""
    owners = _Owners()
    for path, m in named_modules(model).items():
        for p in m._parameters.values():
            if p is None:
                continue
            t = twins.tensor(p)
            if t.is_leaf and t.requires_grad != p.requires_grad and t.dtype.is_floating_point:
                t.requires_grad_(p.requires_grad)
            if p.requires_grad:
                owners.add(t, path)
    return owners


def _loss(out: Any, loss: Loss | None) -> tuple[torch.Tensor, str]:
    """The scalar the step differentiates, and how it was found."""
    if loss is not None:
        value = loss(out)
        label = getattr(loss, "__qualname__", None) or type(loss).__name__
    elif isinstance(getattr(out, "loss", None), torch.Tensor):
        value, label = out.loss, "output.loss"
    elif isinstance(out, torch.Tensor):
        value, label = out.sum(), "output.sum()"
    else:
        raise InputError(
            f"the model returned {type(out).__name__}, with no .loss tensor: pass "
            "loss=lambda out: ... returning the scalar to differentiate"
        )
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InputError(f"the loss must be a tensor with one element, got {got}")
    if not value.requires_grad:
        raise InputError(
            "the loss does not require grad: no parameter of the model is trainable and no "
            "input requires grad, so a training step has no backward"
        )
    return value, label


def _build(
    spec: OptimizerSpec, params: list[torch.Tensor], model: torch.nn.Module, twins: _Twins
) -> torch.optim.Optimizer:
    """The optimizer the step runs, on the twins: a name, a callable, or a copy of the
    user's optimizer (its class and each group's settings; its state stays the user's)."""
    if isinstance(spec, str):
        return OPTIMIZERS[spec.lower()](params)
    if isinstance(spec, torch.optim.Optimizer):
        known = {id(p): twins.tensor(p) for p in model.parameters()}
        groups = []
        for group in spec.param_groups:
            missing = [p for p in group["params"] if id(p) not in known]
            if missing:
                raise InputError(
                    f"the optimizer holds {len(missing)} tensor(s) that are not parameters "
                    "of the model"
                )
            mapped = [known[id(p)] for p in group["params"] if known[id(p)].requires_grad]
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": mapped})  # fmt: skip
        return type(spec)([g for g in groups if g["params"]])  # type: ignore[call-arg]
    built = spec(params)
    if not isinstance(built, torch.optim.Optimizer):
        raise InputError(
            f"the optimizer callable returned {type(built).__name__}, not a torch optimizer"
        )
    return built


class _Flow:
    """The optimizer phase's bookkeeping: each op belongs to the module of the
    parameter its operands come from (a foreach op over many modules to their common
    ancestor), and step counters (0-d tensors made from Python numbers, and what is
    computed from them alone) are free, as the scalar arithmetic they stand for."""

    STEP = "an optimizer's scalar bookkeeping (its step count): free, as Python arithmetic"

    def __init__(self, owners: _Owners) -> None:
        self.paths = _ByTensor()
        """Tensor -> the module path of the parameter it comes from."""
        for t in owners.tensors():
            path = owners.paths[id(t)]
            self.paths.put(t, path)
            if t.grad is not None:
                self.paths.put(t.grad, path)
        self.scalars = _ByTensor()
        """The step counters and what is computed from them alone."""

    def run(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return func(*args, **kwargs)
        except DataDependentOutputException:
            if func is aten._local_scalar_dense.default:
                # a step count read into Python (bias corrections): its value never
                # changes what is computed, only the scalars it is computed with
                return 1
            raise

    def place(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
    ) -> tuple[str, str]:
        ins = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        scalar = all(t in self.scalars or (t.dim() == 0 and t not in self.paths) for t in ins)
        if scalar and all(t.dim() == 0 for t in outs):
            for t in outs:
                self.scalars.put(t, True)
            return "", self.STEP
        found = [self.paths.get(t) for t in ins if t in self.paths]
        path = _common(found)
        for t in outs:
            self.scalars.drop(t)
            if found:
                self.paths.put(t, path)
        return path, ""


class _ByTensor:
    """A map keyed by tensor identity that a freed tensor leaves: an entry holds a
    weak reference and counts only while it still points at the same tensor (an id
    alone is reused by the next tensor allocated at that address, which made a step
    counter look like a parameter's tensor now and then). Weak: the optimizer phase's
    memory timeline sees tensors freed when the step frees them."""

    def __init__(self) -> None:
        self._map: dict[int, tuple[weakref.ref[torch.Tensor], Any]] = {}

    def put(self, t: torch.Tensor, value: Any) -> None:
        self._map[id(t)] = (weakref.ref(t), value)

    def drop(self, t: torch.Tensor) -> None:
        if t in self:
            del self._map[id(t)]

    def __contains__(self, t: torch.Tensor) -> bool:
        entry = self._map.get(id(t))
        return entry is not None and entry[0]() is t

    def get(self, t: torch.Tensor) -> Any:
        return self._map[id(t)][1] if t in self else None


def _common(paths: list[str]) -> str:
    """The deepest module path every one of ``paths`` is inside."""
    if not paths:
        return ""
    parts = paths[0].split(".") if paths[0] else []
    for p in paths[1:]:
        other = p.split(".") if p else []
        n = 0
        while n < min(len(parts), len(other)) and parts[n] == other[n]:
            n += 1
        parts = parts[:n]
    return ".".join(parts)


class _Memory:
    """Live tensor bytes along the step, measured on the fake tensors.

    Every storage the step makes or reads (the twins' parameters, buffers and inputs,
    each op's outputs) is followed with a weak reference, from its first appearance
    until it is freed; views share their base's storage and count once. The peak is
    read at each op. The optimizer's state is created by a warm-up step and, as in
    every step after the first, is live from the start of the step."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[int, int]] = {}  # id(storage) -> (seq, bytes)
        self._refs: dict[int, weakref.ref[Any]] = {}
        self.events: list[tuple[int, int]] = []  # (seq, +bytes or -bytes), in order
        self.marks: list[tuple[int, str]] = []  # (events so far, "phase:op") per op
        self._seq = 0

    def see(self, tensors: Any) -> None:
        for t in tree_leaves(tensors):
            if not isinstance(t, torch.Tensor):
                continue
            try:
                storage = t.untyped_storage()
            except (RuntimeError, NotImplementedError, TypeError):
                continue  # a sparse or nested tensor: no one storage to follow
            key = id(storage)
            if key in self.live:
                continue
            self._seq += 1
            seq, nbytes = self._seq, storage.nbytes()
            self.live[key] = (seq, nbytes)
            self.events.append((seq, nbytes))
            self._refs[key] = weakref.ref(storage, functools.partial(self._freed, key, seq))

    def _freed(self, key: int, seq: int, _: Any) -> None:
        held = self.live.get(key)
        if held is not None and held[0] == seq:
            del self.live[key], self._refs[key]
            self.events.append((seq, -held[1]))

    def seq_of(self, t: torch.Tensor) -> int | None:
        held = self.live.get(id(t.untyped_storage()))
        return None if held is None else held[0]

    def mark(self, label: str) -> None:
        self.marks.append((len(self.events), label))

    def result(self, parameters: set[int], gradients: set[int], state: set[int]) -> StepMemory:
        """Replay the events: the largest live total at an op, split in four."""
        kinds = {**dict.fromkeys(parameters, 0), **dict.fromkeys(gradients, 1),
                 **dict.fromkeys(state, 2)}  # fmt: skip
        sizes = {seq: abs(b) for seq, b in self.events if b > 0}
        state_bytes = sum(sizes.get(seq, 0) for seq in state)
        live = [0, 0, 0, 0]  # parameters, gradients, optimizer state, activations
        best, best_at, done = [0, 0, 0, 0], "", 0
        for upto, label in self.marks:
            for seq, b in self.events[done:upto]:
                live[kinds.get(seq, 3)] += b
            done = upto
            now = list(live)
            if not label.startswith("optimizer"):
                now[2] = state_bytes  # steady state: the state outlives every step
            if sum(now) > sum(best):
                best, best_at = now, label
        return StepMemory(sum(best), best[0], best[1], best[2], best[3], best_at)


BOUNDARIES.update({_step.__code__, _Flow.run.__code__})
