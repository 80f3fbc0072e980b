"""The annotating pass: run a traced graph on meta (or fake) tensors.

Each node's result is stored, as TensorMeta (tuple and dict structure kept),
under ``node.meta[META_KEY]``; counting reads these annotations alone. No real
arithmetic runs and the user's weights are never read: parameters, buffers and
inputs are replaced by data-less twins, and leaf modules run as shadows that
hold those twins, so the user's module objects are never called or changed.
"""

from __future__ import annotations

import copy
import functools
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from itertools import chain
from typing import Any, Literal

import torch
import torch.fx
from torch.nn.utils.rnn import PackedSequence
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_map

from .errors import (
    BOUNDARIES,
    OperandError,
    PropagationError,
    internal_error,
    is_internal,
    safe_str,
)
from .frontends.fx import TracedGraph
from .frontends.model_hooks import HOOK_DICTS, is_model_hook
from .records import TensorMeta, iter_metas
from .shortcuts import function_output, method_output, module_output

META_KEY = "flopgraph.value"
Mode = Literal["meta", "fake", "real"]
"""meta/fake: data-less twins; real: detached copies of the user's tensors, for a
forward whose control flow needs values (the aten frontend's last resort)."""

_HOOK_FLAGS = (
    "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs"
)  # fmt: skip
_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
    "_backward_pre_hooks",
)  # fmt: skip


def _holds_state(v: Any) -> bool:
    """A plain object whose attributes may hold tensors (not a module, class,
    function or torch object, which inputs pass through as they are)."""
    return (
        hasattr(v, "__dict__")
        and not isinstance(v, (torch.nn.Module, type, types.ModuleType, types.FunctionType,
                               types.MethodType, torch.dtype, torch.device))
        and type(v).__module__.split(".")[0] not in ("torch", "builtins")
    )  # fmt: skip


class LazyTwins(dict):  # type: ignore[type-arg]
    """A shadow module's parameters or buffers: the user's tensors until the dict is
    first read, then (all at once) their twins. Block reuse keys blocks by reading the
    plain dict (``dict.items(d)``: shapes and dtypes only) and replays most of them
    without running them, so their weights are never twinned. Every other read goes
    through these methods and sees twins only."""

    def __init__(self, items: Any = (), twin: Any = None) -> None:
        super().__init__(items)
        self._twin = twin
        self.made: dict[str, Any] = {}
        """Name -> (the user's tensor, its twin), once made."""

    def _fill(self) -> None:
        twin, self._twin = self._twin, None
        if twin is not None:  # mid-trace: outside the recording modes, as made eagerly
            with torch._C.DisableTorchFunction(), _disable_current_modes():
                for k, v in dict.items(self):
                    self.made[k] = (v, twin(v))
                    dict.__setitem__(self, k, self.made[k][1])

    def original(self, key: Any, value: Any) -> Any:
        """The user's tensor for ``value`` under ``key``, where ``value`` is its twin
        (or still the user's); else ``value`` (the forward put another there)."""
        made = self.made.get(key)
        return made[0] if made is not None and made[1] is value else value

    def __getitem__(self, key: Any) -> Any:
        self._fill()
        return dict.__getitem__(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._fill()
        dict.__setitem__(self, key, value)

    def __iter__(self) -> Any:
        self._fill()
        return dict.__iter__(self)

    def __reduce__(self) -> Any:
        self._fill()
        return (dict, (dict(dict.items(self)),))

    def get(self, key: Any, default: Any = None) -> Any:
        self._fill()
        return dict.get(self, key, default)

    def items(self) -> Any:
        self._fill()
        return dict.items(self)

    def values(self) -> Any:
        self._fill()
        return dict.values(self)

    def copy(self) -> Any:
        self._fill()
        return dict(dict.items(self))

    def pop(self, *args: Any) -> Any:
        self._fill()
        return dict.pop(self, *args)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._fill()
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._fill()
        dict.update(self, *args, **kwargs)


class _Twins:
    """Data-less stand-ins for real tensors and modules, made once per analysis."""

    def __init__(
        self,
        mode: Mode,
        device: torch.device,
        library: str | None = None,
        fake_mode: Any = None,
        lazy: bool = False,
    ) -> None:
        self.mode = mode
        self.lazy = lazy
        """Shadows twin their parameters and buffers on first use (:class:`LazyTwins`):
        a block that block reuse replays never runs, so never needs its twins."""
        self.device = device
        self.library = library
        """The model's library, whose hooks shadows keep (see ``model_hooks``); None:
        shadows keep no hooks (fx calls a shadow's ``forward``, never its hooks)."""
        """Where fake twins of data-less (meta) inputs live: the model's device."""
        self._tensors: dict[int, torch.Tensor] = {}
        self._modules: dict[int, torch.nn.Module] = {}
        self._storages: dict[int, torch.Tensor | None] = {}
        """Data pointer of a real storage -> the empty twin of the first tensor on it, or
        None where that one went through ``from_tensor`` (see :meth:`_fake_twin`)."""
        self.fake_mode: Any = fake_mode
        """The FakeTensorMode of the analysis: made here, or given (a symbolic analysis
        brings one with its ShapeEnv, and inputs already made in it)."""
        if mode == "fake" and fake_mode is None:
            from torch._subclasses.fake_tensor import FakeTensorMode

            self.fake_mode = FakeTensorMode(allow_non_fake_inputs=True)

    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        twin = self._tensors.get(id(t))
        if twin is None and getattr(t, "fake_mode", None) is self.fake_mode is not None:
            return t  # already a tensor of this analysis (a symbolic input)
        if twin is None:
            if self.fake_mode is not None and (not _has_kernels(t) or t.is_inference()):
                # a meta tensor has no data to copy; a twin of an inference tensor (made
                # under torch.inference_mode) would be one too, and autograd's
                # decompositions (aten.linear -> addmm) skip inference tensors
                device = t.device if _has_kernels(t) else self.device
                twin = self._empty_fake(t, device)
            elif self.fake_mode is not None:
                twin = self._fake_twin(t)
            elif self.mode == "real":
                twin = t.detach().clone()
            else:
                twin = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
            self._tensors[id(t)] = twin
        return twin

    def close(self) -> None:
        """Break the reference cycles of the shadows (each one's ``_apply`` bound to
        itself, a block's replaying forward, lazy twins bound to this object), so that
        reference counting frees the shadows, their fake tensors and all a trace
        recorded as soon as the analysis drops them. Left in cycles, they wait for
        Python's cyclic collector, which then walks every one of them (a third of a
        warm analysis of an 80-layer model). The shadows are not run again."""
        for shadow in self._modules.values():
            d = shadow.__dict__
            d.pop("_apply", None)
            d.pop("forward", None)  # block reuse's replaying wrapper (or the user's own)
            for store in (d.get("_parameters"), d.get("_buffers")):
                if isinstance(store, LazyTwins):
                    store._twin = None
        self._modules.clear()
        self._tensors.clear()
        self._storages.clear()

    def _fake_twin(self, t: torch.Tensor) -> torch.Tensor:
        """A fake twin of a real tensor. A dense tensor or parameter is twinned empty,
        straight from a meta tensor (a sixth of the time of ``from_tensor``, which
        describes and rebuilds the tensor's whole make-up, paid for every weight of a
        model), when it is the first on its storage and spans all of it; another on the
        same storage (a tensor made by ``detach``, a slice) shares the first one's twin
        storage, as it shares the real one. Any other tensor (a subclass, quantized, a
        view, the first of a storage it does not fill, a tensor holding a gradient or
        made by autograd) goes through ``from_tensor``,
        and so does every later tensor on its storage, so storages stay shared as in
        the model."""
        plain = (
            type(t) in _PLAIN_TYPES
            and t.layout == torch.strided
            and not (t.is_quantized or t.is_conj() or t.is_neg())
            and (not t.requires_grad or (t.is_leaf and t.grad is None))  # else grads too
        )
        try:
            ptr = t.untyped_storage().data_ptr() if plain else 0
        except (RuntimeError, NotImplementedError):  # a wrapper with no storage of its own
            plain, ptr = False, 0
        first = self._storages.get(ptr) if ptr else None
        if first is not None:
            twin = self._empty_fake(t, t.device, first.untyped_storage())
        elif plain and (ptr not in self._storages or not ptr) and self._fills(t):
            twin = self._empty_fake(t, t.device)
            if ptr:
                self._storages[ptr] = twin
        else:
            if ptr:
                self._storages.setdefault(ptr, None)
            return self.fake_mode.from_tensor(t, static_shapes=True)  # type: ignore[no-any-return]
        if t.requires_grad:
            twin.requires_grad_(True)
        return twin

    @staticmethod
    def _fills(t: torch.Tensor) -> bool:
        """``t`` is not a view and spans its whole storage."""
        return bool(
            not t._is_view()
            and t.storage_offset() == 0
            and t.untyped_storage().nbytes() == t.numel() * t.element_size()
        )

    def _empty_fake(
        self, t: torch.Tensor, device: torch.device, storage: Any = None
    ) -> torch.Tensor:
        """A data-less fake tensor like ``t`` on ``device`` (on ``storage``, a fake
        tensor's storage, at ``t``'s offset, if given): wrapped straight from a new
        meta tensor (a quarter of the time of a factory dispatched through the mode,
        which counts for the hundreds of weights of a large model), else made by one."""
        convert = getattr(self.fake_mode.fake_tensor_converter, "from_meta_and_device", None)
        if convert is not None:
            meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
            if storage is not None:
                from torch._subclasses.fake_tensor import in_kernel_invocation_manager

                with in_kernel_invocation_manager(self.fake_mode):
                    meta.set_(storage, t.storage_offset(), t.shape, t.stride())
            return convert(self.fake_mode, meta, torch.device(device))  # type: ignore[no-any-return]
        if storage is not None:
            return self.fake_mode.from_tensor(t, static_shapes=True)  # type: ignore[no-any-return]
        with self.fake_mode:
            return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)

    def value(self, v: Any, memo: dict[int, Any] | None = None) -> Any:
        """An input with every tensor in it replaced by its twin: containers rebuilt (as
        pytree rebuilds them), and an object holding tensors (a key/value cache) copied
        with its attributes twinned, so that a forward writing into it
        (``cache.update``) writes into the copy, never into the user's object. An object
        holding no tensor is itself."""
        memo = {} if memo is None else memo
        return tree_map(lambda leaf: self._leaf(leaf, memo), v)

    def _leaf(self, v: Any, memo: dict[int, Any]) -> Any:
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if not _holds_state(v):
            return v
        if id(v) not in memo:
            memo[id(v)] = v  # a cycle back to ``v`` while copying it keeps the original
            attrs = {k: self.value(x, memo) for k, x in vars(v).items()}
            if any(attrs[k] is not x for k, x in vars(v).items()):
                copied = copy.copy(v)
                vars(copied).update(attrs)
                memo[id(v)] = copied
        return memo[id(v)]

    def module(self, m: torch.nn.Module) -> torch.nn.Module:
        """A shallow copy of ``m`` whose tensors are twins and whose hooks are the
        model's own (see ``model_hooks``), in dicts of the shadow's own."""
        shadow = self._modules.get(id(m))
        if shadow is None:
            # plain tensor attributes too: an in-place op on one must not reach the user's
            # (fake mode runs ops on small real tensors for real, as constants)
            d = {k: self._maybe(v) if isinstance(v, torch.Tensor) else v
                 for k, v in m.__dict__.items()}  # fmt: skip
            if self.lazy:
                d["_parameters"] = LazyTwins(m._parameters, self._maybe)
                d["_buffers"] = LazyTwins(m._buffers, self._maybe)
            else:
                d["_parameters"] = {k: self._maybe(v) for k, v in m._parameters.items()}
                d["_buffers"] = {k: self._maybe(v) for k, v in m._buffers.items()}
            d["_modules"] = {
                k: None if v is None else self.module(v) for k, v in m._modules.items()
            }
            for name in _HOOK_DICTS:
                if name in d:
                    d[name] = OrderedDict()
            if self.library is not None:
                self._keep_model_hooks(m, d)
            shadow = object.__new__(type(m))
            object.__setattr__(shadow, "__dict__", d)
            # module.to(dtype) inside forward: convert the shadow's twins in its own dicts
            # (the default would swap the tensors in place, which fake twins refuse)
            d["_apply"] = functools.partial(_shadow_apply, shadow)
            self._modules[id(m)] = shadow
        return shadow

    def _keep_model_hooks(self, m: torch.nn.Module, d: dict[str, Any]) -> None:
        """Copy the forward hooks of ``m`` that are part of the model into ``d``, with
        their kwargs and always-called flags."""
        kept: set[int] = set()
        for name in HOOK_DICTS:
            hooks = m.__dict__.get(name) or {}
            d[name] = OrderedDict(
                (k, h) for k, h in hooks.items() if is_model_hook(h, str(self.library))
            )
            kept.update(d[name])
        for name in _HOOK_FLAGS:
            flags = m.__dict__.get(name) or {}
            d[name] = OrderedDict((k, v) for k, v in flags.items() if k in kept)

    def _maybe(self, t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else self.tensor(t)

    @contextmanager
    def active(self, factories: bool = True, grad: bool = False) -> Iterator[None]:
        """No autograd (unless ``grad``: a training step records its backward), the
        fake mode, and (unless ``factories`` is False: see :meth:`factories`) the meta
        device for factories."""
        with ExitStack() as stack:
            stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
            if self.fake_mode is not None:
                stack.enter_context(self.fake_mode)
            elif factories:
                stack.enter_context(self.factories())
            yield

    def factories(self) -> AbstractContextManager[Any]:
        """Where factories inside forward (``torch.arange(n)``, ``torch.zeros(...)``) land:
        on meta in meta mode. It is a TorchFunctionMode, which puts a Python call in
        front of every tensor method, so propagation enters it only around the ops that
        really run."""
        return torch.device("meta") if self.mode == "meta" else nullcontext()


def _shadow_apply(
    shadow: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
) -> torch.nn.Module:
    """``Module._apply`` for a shadow: each twin replaced by ``fn(twin)`` in the
    shadow's own dicts (the user's tensors and modules are never reached)."""
    if recurse:
        for child in shadow._modules.values():
            if child is not None:
                child._apply(fn)
    for store in (shadow._parameters, shadow._buffers):
        for k, t in store.items():
            if t is not None:
                store[k] = fn(t)  # type: ignore[assignment]
    return shadow


_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)

_SCALARS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device})


def to_meta(value: Any) -> Any:
    """Replace tensors by TensorMeta in a nested value (lists and dicts kept; tuples,
    namedtuples such as PackedSequence included at any depth, become plain tuples).

    A packed weight of a quantized op (the ScriptObject ``quantized::conv2d`` and
    ``quantized::linear`` take) becomes the tuple ``(weight, bias)`` it packs, bias
    None when absent: its shapes are all a rule reads, and the record then lists the
    weight among the op's inputs, with its dtype (qint8)."""
    if type(value) in _SCALARS:  # the common case, once per argument of every op
        return value
    if isinstance(value, torch.Tensor):
        return TensorMeta.of(value)
    if isinstance(value, torch.Size):  # a symbolic size stays a SymInt (symbolic.py)
        return tuple(s if isinstance(s, torch.SymInt) else int(s) for s in value)
    if isinstance(value, tuple):
        return tuple([to_meta(v) for v in value])
    if isinstance(value, list):
        return [to_meta(v) for v in value]
    if isinstance(value, dict):
        return {k: to_meta(v) for k, v in value.items()}
    if isinstance(value, torch.ScriptObject):
        return _packed(value)
    return value


def _packed(obj: torch.ScriptObject) -> Any:
    """``(weight, bias)`` of a quantized op's packed weight, else ``obj`` itself."""
    unpack = getattr(obj, "unpack", None)
    if unpack is None:
        return obj
    try:
        # unpacking copies the weight: not an op of the model, so not one to record
        with _disable_current_modes():
            weight, bias = unpack()[:2]
    except Exception:  # another custom class with an unpack of its own: left as it is
        return obj
    if not isinstance(weight, torch.Tensor):
        return obj
    return (TensorMeta.of(weight), TensorMeta.of(bias) if isinstance(bias, torch.Tensor) else None)


def propagate(
    traced: TracedGraph,
    mode: Mode = "meta",
    on_node: Callable[[int, int], None] | None = None,
) -> None:
    """Annotate every node of ``traced.graph`` with its result's metadata.

    ``on_node(done, total)`` is called after each node (for progress displays)."""
    twins = _Twins(mode, _device_of(traced.root))
    env: dict[torch.fx.Node, Any] = {}
    root = traced.root
    total = len(traced.graph.nodes)

    def load(a: Any) -> Any:
        return torch.fx.node.map_arg(a, env.__getitem__)

    with twins.active(factories=False):
        for done, node in enumerate(traced.graph.nodes, 1):
            try:
                value = _run(node, load, traced, twins, root)
            except PropagationError:
                raise
            except Exception as e:  # a failure anywhere in the model, torch or flopgraph
                if is_internal(e):
                    raise internal_error(e, _at(node, root)) from e
                raise PropagationError(_failure(node, e, env, root)) from e
            env[node] = value
            node.meta[META_KEY] = to_meta(value)
            if on_node is not None:
                on_node(done, total)


def module_outputs(traced: TracedGraph) -> dict[str, tuple[TensorMeta, ...]]:
    """Module path -> the tensors its forward returned (its last call), read from the
    annotations of an annotated graph; the model's own result is the graph's output."""

    def read(v: Any) -> Any:
        if isinstance(v, torch.fx.Node):
            return v.meta.get(META_KEY)
        if isinstance(v, (tuple, list)):
            return tuple(read(x) for x in v)
        if isinstance(v, dict):
            return {k: read(x) for k, x in v.items()}
        return v

    out = {path: tuple(iter_metas(read(v))) for path, v in traced.returned.items()}
    for node in reversed(traced.graph.nodes):
        if node.op == "output":
            out[""] = tuple(iter_metas(node.meta.get(META_KEY)))
            break
    return out


def _run(
    node: torch.fx.Node,
    load: Callable[[Any], Any],
    traced: TracedGraph,
    twins: _Twins,
    root: torch.nn.Module,
) -> Any:
    op = node.op
    if op == "placeholder":
        value = traced.placeholders[node.name]
        if isinstance(value, PackedSequence):
            # the recurrent kernels read batch_sizes' values: only the data gets a twin
            return value._replace(data=twins.tensor(value.data))
        return twins.tensor(value) if isinstance(value, torch.Tensor) else value
    if op == "get_attr":
        target = str(node.target)
        obj = traced.constants[target] if target in traced.constants else _fetch(root, target)
        if obj is _MISSING:
            raise PropagationError(
                f"node {node.name!r} reads {target!r}, which the model does not hold: fx "
                "traced a forward that assigns a tensor attribute or buffer of the model "
                "(state kept across calls), which its graph cannot express"
            )
        if isinstance(obj, torch.Tensor):
            return twins.tensor(obj)
        return twins.module(obj) if isinstance(obj, torch.nn.Module) else obj
    args, kwargs = load(node.args), load(node.kwargs)
    if op == "call_function":
        names = _CONTRACTION_FUNCTIONS.get(node.target)  # type: ignore[call-overload]
        if names is not None:
            _check_dtypes(_operands(args, kwargs, names), str(node.target.__name__))  # type: ignore[union-attr]
        quick = function_output(node.target, args, kwargs) if twins.mode == "meta" else None
        if quick is not None:
            return quick
        with twins.factories():
            return _invoke(node.target, args, kwargs)  # type: ignore[arg-type]
    if op == "call_method":
        quick = method_output(str(node.target), args, kwargs) if twins.mode == "meta" else None
        if quick is not None:
            return quick
        self_obj, *rest = args
        with twins.factories():
            return _invoke(getattr(self_obj, str(node.target)), rest, kwargs)
    if op == "call_module":
        module = traced.submodule(str(node.target))
        # a shortcut reads the user's module's settings only: no shadow to build
        quick = module_output(module, args, kwargs, meta=twins.mode == "meta")
        if quick is not None:
            return quick
        shadow = twins.module(module)
        if isinstance(shadow, _CONTRACTION_MODULES) and (args or "input" in kwargs):
            x = args[0] if args else kwargs["input"]
            _check_dtypes((x, shadow.weight), type(shadow).__name__)
        with twins.factories():
            return _invoke(shadow.forward, args, kwargs)
    if op == "output":
        return args[0]
    raise PropagationError(f"unknown node kind {op!r} at node {node.name!r}")


# Meta kernels of these contractions accept mismatched dtypes that real kernels refuse
# ("mat1 and mat2 must have the same dtype"); check as the real kernel would.
_CONTRACTION_MODULES = (
    torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
    torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d,
)  # fmt: skip
_CONTRACTION_FUNCTIONS: dict[Any, tuple[str, str]] = {
    torch.nn.functional.linear: ("input", "weight"),
    **dict.fromkeys((torch.conv1d, torch.conv2d, torch.conv3d), ("input", "weight")),
    torch.matmul: ("input", "other"),
    **dict.fromkeys((torch.mm, torch.bmm), ("input", "mat2")),
}
"""Each contraction function -> the names of its two operands (for keyword calls)."""


def _invoke(fn: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> Any:
    """The one place the pass calls model or torch code: an error raised through this
    frame is theirs, not flopgraph's (see ``errors.is_internal``)."""
    return fn(*args, **kwargs)


BOUNDARIES.add(_invoke.__code__)


def _operands(args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, str]) -> list[Any]:
    """A contraction's two operands, whether passed by position or by keyword."""
    given = list(args[:2])
    given += [kwargs.get(n) for n in names[len(given) :]]
    return given


def _check_dtypes(tensors: Any, op: str) -> None:
    """Refuse operands of two dtypes, as the real kernel would (meta and fake kernels
    accept them). ``tensors`` holds the operands: fewer than two is no mismatch."""
    if len(tensors) < 2:
        return
    a, b = tensors[0], tensors[1]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype != b.dtype:
        raise OperandError(
            f"{op} needs operands of one dtype, got input {str(a.dtype).removeprefix('torch.')} "
            f"and {str(b.dtype).removeprefix('torch.')} (cast the input or the model)"
        )


def _device_of(model: torch.nn.Module) -> torch.device:
    for t in chain(model.parameters(), model.buffers()):
        return t.device if on_this_machine(t.device) else torch.device("cpu")
    return torch.device("cpu")


def on_this_machine(device: torch.device) -> bool:
    """Whether kernels of ``device`` can run here: never for an accelerator this
    machine lacks (a fake tensor on "cuda" without a GPU), whose twins go to the CPU."""
    if device.type in ("cpu", "meta"):
        return True
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    try:
        return bool(is_available()) if callable(is_available) else False
    except Exception:  # a backend that cannot even say: treat it as absent
        return False


def _has_kernels(t: torch.Tensor) -> bool:
    """A tensor a fake twin may copy as it is (not meta, and on a device usable here)."""
    return t.device.type != "meta" and on_this_machine(t.device)


_MISSING = object()


def _fetch(root: torch.nn.Module, target: str) -> Any:
    """The attribute ``target`` names on ``root``, or ``_MISSING``."""
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            break
    return obj


def describe_target(node: torch.fx.Node) -> str:
    """A readable name of a node's call target (``Conv2d``, ``operator.add``)."""
    t = node.target
    if node.op == "call_method":
        return f"Tensor.{t}"
    if node.op == "call_function":
        mod = getattr(t, "__module__", None) or ""
        name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or repr(t)
        if mod in ("_operator", "operator"):
            mod = "operator"
        return f"{mod}.{name}" if mod else str(name)
    return str(t)


def _at(node: torch.fx.Node, root: torch.nn.Module) -> str:
    """``at node 'x' (call_module fc: Linear)``: where an internal error happened."""
    target = describe_target(node)
    if node.op == "call_module":
        try:
            target = f"{node.target}: {type(root.get_submodule(str(node.target))).__name__}"
        except AttributeError:
            pass
    return f"at node {node.name!r} ({node.op} {target})"


def _failure(
    node: torch.fx.Node, e: Exception, env: dict[torch.fx.Node, Any], root: torch.nn.Module
) -> str:
    seen: list[str] = []
    for a in node.all_input_nodes:
        v = env.get(a)
        if isinstance(v, torch.Tensor):
            seen.append(f"{a.name}: {TensorMeta.of(v)}")
    stack = node.meta.get("nn_module_stack") or {}
    where = f" in module {next(reversed(stack.values()))[0]!r}" if stack else ""
    target = describe_target(node)
    if node.op == "call_module":
        target = f"{node.target}: {type(root.get_submodule(str(node.target))).__name__}"
    msg = safe_str(e).strip().splitlines()
    first = msg[0] if msg else type(e).__name__
    inputs = ", ".join(seen) if seen else "no tensor inputs"
    return (
        f"shape propagation failed at node {node.name!r} ({node.op} {target}){where} "
        f"with inputs {inputs}: {type(e).__name__}: {first}"
    )
