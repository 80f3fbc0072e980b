"""The fx frontend: torch.fx symbolic tracing that leaves the model untouched.

Registered module types stay leaves (one ``call_module`` node each); every other
module is traced through, so functional calls, tensor methods and Python
operators inside it become nodes of their own, attributed to the module they
ran in through ``node.meta["nn_module_stack"]``.

The forward is traced on a structural copy whose floating-point parameters,
buffers and tensor attributes are data-less (meta) twins, so no arithmetic ever
runs on the user's weights, and under a mode that sees every torch call made on
tensors fx does not proxy: a call that computes floating-point values there (a
sum over ``self.parameters()``, weights scaled before ``functional_call``, a
constant computed from ``torch.arange``) is arithmetic the graph would miss, and
the trace fails with :class:`IncompleteGraphError` (``auto`` then counts the
model on aten, where every op is recorded).
"""

from __future__ import annotations

import inspect
import math
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ..errors import BOUNDARIES, IncompleteGraphError, InputError, TraceError, safe_str
from ..records import TensorMeta
from ..registry import Registry
from .isolation import isolated, thread_confined_fx
from .model_hooks import model_hooks
from .quantized import quantized_modules

# with the separator, so that torchvision's files do not pass for torch's
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OWN_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep
_ATOMS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device})
"""Argument types fx stores in a node as they are."""
_SPECIALIZATION_CHECKS = (torch._assert, torch.fx._symbolic_trace._assert_is_none)


@dataclass(frozen=True)
class TracedGraph:
    """A traced graph and what is needed to run it on metadata."""

    graph: torch.fx.Graph
    root: torch.nn.Module
    """A structural copy of the user's model that was traced (same parameter and
    buffer objects, its own attribute dicts; see :func:`structural_copy`). It held
    data-less twins of them while fx traced it."""
    placeholders: Mapping[str, Any] = field(default_factory=dict)
    """Placeholder node name -> the user's input bound to it."""
    constants: Mapping[str, torch.Tensor] = field(default_factory=dict)
    """Tensors the forward used that are not parameters or buffers of the model."""
    submodules: Mapping[str, torch.nn.Module] = field(default_factory=dict)
    """Every module of ``root`` by dotted path (each ``call_module`` target among them),
    built once so that the passes over the graph need not walk attribute chains."""
    returned: Mapping[str, Any] = field(default_factory=dict)
    """Module path -> what its forward returned (its last call in the graph), with
    nodes for traced values: ``shapes.module_outputs`` reads their shapes. The model's
    own result is the graph's output."""

    def submodule(self, path: str) -> torch.nn.Module:
        """The module a ``call_module`` node calls."""
        found = self.submodules.get(path)
        return found if found is not None else self.root.get_submodule(path)


class _Tracer(torch.fx.Tracer):
    """A Tracer that never writes to the traced model and skips module hooks."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(autowrap_modules=(math,))
        self._registry = registry
        self.constants: dict[str, torch.Tensor] = {}
        self._names: dict[int, tuple[str, bool]] | None = None
        self.returned: dict[str, Any] = {}
        """Module path -> what its last call returned (see ``TracedGraph.returned``)."""

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        if self._registry.lookup_module(type(m)) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(
        self,
        m: torch.nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        # forward() rather than __call__: a user's hooks must not run on proxies
        out = super().call_module(m, m.forward, args, kwargs)
        self.returned[self.path_of_module(m)] = _nodes(out)
        return out

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        # The base class finds the name of a parameter or buffer the forward reads by
        # scanning every parameter of the model on each read (quadratic in model size);
        # an index gives the same first name. A miss falls back to the scan.
        if isinstance(attr_val, torch.Tensor) and not self.param_shapes_constant:
            name = self._tensor_names().get(id(attr_val))
            if name is not None and (isinstance(attr_val, torch.nn.Parameter) or name[1]):
                if name[0] not in parameter_proxy_cache:
                    parameter_proxy_cache[name[0]] = self.create_proxy(
                        "get_attr", name[0], (), {}, proxy_factory_fn=None
                    )
                return parameter_proxy_cache[name[0]]
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def _tensor_names(self) -> dict[int, tuple[str, bool]]:
        """id -> (first name, is a buffer) of the root's parameters, then of its buffers
        when the tracer proxies buffer reads (the base class's search order)."""
        if self._names is None:
            self._names = {}
            for n, p in self.root.named_parameters():
                self._names.setdefault(id(p), (n, False))
            if self.proxy_buffer_attributes:
                for n, b in self.root.named_buffers():
                    self._names.setdefault(id(b), (n, True))
        return self._names

    def create_arg(self, a: Any) -> Any:
        kind = type(a)
        if kind is torch.fx.Proxy:  # what the base classes return for these, sooner
            return a.node
        if kind in _ATOMS:
            return a
        if kind is tuple or kind is list:
            return kind(self.create_arg(v) for v in a)
        # The base class stores an unknown tensor constant with setattr on the
        # user's model; keep it here instead.
        if (
            isinstance(a, torch.Tensor)
            and not isinstance(a, torch.nn.Parameter)
            and self.tensor_attrs.get(a) is None
        ):
            name = f"_flopgraph_constant_{len(self.constants)}"
            self.constants[name] = a
            self.tensor_attrs[a] = name
        return super().create_arg(a)


def _check_supported(model: torch.nn.Module) -> None:
    """A TraceError (the aten frontend then counts it) for a model fx would miscount:
    one whose forward depends on hooks of its own, which traced graphs never run, or
    one with quantized modules, which meta tensors cannot run."""
    hooks = model_hooks(model)
    if hooks:
        shown = ", ".join(hooks[:3]) + (f" and {len(hooks) - 3} more" if len(hooks) > 3 else "")
        raise TraceError(
            f"{type(model).__name__} has forward hooks of its own ({shown}): fx graphs do "
            "not run module hooks"
        )
    quantized = quantized_modules(model)
    if quantized:
        raise TraceError(
            f"{type(model).__name__} has quantized modules ({quantized}), whose kernels "
            "cannot run on meta tensors"
        )


def trace_fx(
    model: torch.nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any], registry: Registry
) -> TracedGraph:
    """Trace ``model`` with the given inputs; tensors become placeholders and every
    other input (and each omitted argument's default) is specialised."""
    params = _forward_params(model)
    bound = _bind(model, params, args, kwargs)
    _check_supported(model)
    if registry.lookup_module(type(model)) is not None:
        return _leaf_root(structural_copy(model), bound)
    concrete = {n: v for n, v in bound.items() if not isinstance(v, torch.Tensor)}
    model_name = type(model).__name__
    for arg, value in concrete.items():
        # fx would specialise it, running the forward on the user's tensors inside it,
        # and flatten its tensors into placeholders of their own
        if any(isinstance(leaf, torch.Tensor) for leaf in tree_leaves(value)):
            raise TraceError(
                f"torch.fx could not trace {model_name}: an input holds tensors in a container "
                f"({arg!r} is a {type(value).__name__}); fx traces tensor arguments only"
            )
    tracer = _Tracer(registry)
    root = structural_copy(model)
    watch = _OutsideGraph(tracer, registry, model_name)
    failure: Exception | None = None
    # isolated: one analysis at a time (torch.fx patches nn.Module.__call__ process-wide
    # while it traces; thread_confined_fx keeps other threads' calls out of it)
    with isolated(), thread_confined_fx(), _data_less(root):
        try:
            with watch:
                graph = tracer.trace(root, concrete_args=concrete or None)
        except Exception as e:  # any failure inside user code or torch.fx
            failure = e
    if watch.found:  # also when the forward caught the error and went on
        raise IncompleteGraphError(watch.found) from failure
    if failure is not None:
        raise TraceError(
            f"torch.fx could not trace {model_name}: {_one_line(failure)}{_where(failure)}"
        ) from failure
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    names = [p.name for p in params]
    if len(placeholders) != len(names):  # fx flattened a container of tensors
        raise TraceError(
            f"torch.fx could not trace {model_name}: an input holds tensors in a "
            f"container (dict, list or tuple), which fx turned into {len(placeholders)} "
            f"placeholders for {len(names)} parameters"
        )
    inputs = {ph.name: bound[name] for ph, name in zip(placeholders, names, strict=True)}
    _drop_specialization_checks(graph)
    submodules = dict(root.named_modules(remove_duplicate=False))
    return TracedGraph(
        graph, root, inputs, dict(tracer.constants), submodules, dict(tracer.returned)
    )


def _nodes(value: Any) -> Any:
    """A module's result with each proxy replaced by its node and each tensor (one the
    forward made outside the graph, or returned as it is) by its TensorMeta, tuples,
    lists and dicts kept (a ``ModelOutput`` as a plain dict): taken when the call
    returns, so a later change to a returned list does not show."""
    if isinstance(value, torch.fx.Proxy):
        return value.node
    if isinstance(value, torch.Tensor):
        return TensorMeta.of(value)
    if isinstance(value, (tuple, list)):
        return tuple(_nodes(v) for v in value)
    if isinstance(value, dict):
        return {k: _nodes(v) for k, v in value.items()}
    return None


def structural_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A recursive shallow copy of ``model``: the same parameters, buffers and settings,
    but its own attribute dicts, so a forward that assigns to ``self`` during tracing
    (a cache such as torchvision's ``AnchorGenerator.cell_anchors``) stores proxies on
    the copy, never on the user's module, even when tracing fails."""
    memo: dict[int, torch.nn.Module] = {}

    def copy(m: torch.nn.Module) -> torch.nn.Module:
        if id(m) not in memo:
            d = dict(m.__dict__)
            clone = object.__new__(type(m))
            memo[id(m)] = clone
            d["_parameters"] = dict(m._parameters)
            d["_buffers"] = dict(m._buffers)
            d["_modules"] = {k: None if v is None else copy(v) for k, v in m._modules.items()}
            object.__setattr__(clone, "__dict__", d)
        return memo[id(m)]

    return copy(model)


_Swap = tuple[dict[str, Any], str, torch.Tensor, torch.Tensor]
"""(attribute dict, key, the tensor the trace sees, the user's tensor)."""


@contextmanager
def _data_less(root: torch.nn.Module) -> Iterator[None]:
    """While tracing, ``root`` (a structural copy) holds stand-ins for the user's tensors:
    a data-less meta twin of each floating-point (or complex) parameter, buffer and
    tensor attribute, a copy of every other buffer and tensor attribute (integer
    indices and flags keep their values for control flow; an in-place
    ``num_batches_tracked.add_(1)`` must not reach the user's). A forward that computes
    on one outside the graph computes on meta, and :class:`_OutsideGraph` says so.
    The user's tensors are put back after, so the traced root shares them."""
    twins: dict[int, torch.Tensor] = {}
    swaps: list[_Swap] = []
    tensor = torch.Tensor
    with torch.no_grad():
        for m in root.modules():
            for d in (m.__dict__, m._parameters, m._buffers):
                for key, t in [(k, v) for k, v in d.items() if isinstance(v, tensor)]:
                    twin = twins.get(id(t))
                    if twin is None:
                        twin = twins[id(t)] = _stand_in(t)
                    if twin is not t:
                        d[key] = twin  # type: ignore[assignment]
                        swaps.append((d, key, twin, t))
    try:
        yield
    finally:
        for d, key, twin, real in reversed(swaps):
            if d.get(key) is twin:  # what the forward assigned stays (on the copy)
                d[key] = real  # type: ignore[assignment]


def _stand_in(t: torch.Tensor) -> torch.Tensor:
    """A meta twin of a floating-point tensor; a copy of any other buffer or tensor
    attribute; the parameter itself where no twin can be made (a sparse or
    subclass tensor: then :class:`_OutsideGraph` still sees arithmetic on it)."""
    parameter = isinstance(t, torch.nn.Parameter)
    try:
        if t.is_floating_point() or t.is_complex():
            twin = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
            return torch.nn.Parameter(twin, t.requires_grad) if parameter else twin
        return t if parameter else t.detach().clone()
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return t


class _OutsideGraph(TorchFunctionMode):
    """Sees every torch call the forward makes while fx traces it. One with no proxy
    among its arguments runs on real tensors (or the copy's meta twins), outside the
    graph: if it computes floating-point values and its rule is not free (data
    movement, casts, factories), the graph would miss that arithmetic. The first
    such call is remembered and raised, before the forward can go on."""

    def __init__(self, tracer: torch.fx.Tracer, registry: Registry, model: str) -> None:
        super().__init__()
        self.tracer = tracer
        self.model = model
        self.registry = registry
        self.found = ""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if self.found or any(issubclass(t, torch.fx.Proxy) for t in types):
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if _computes(out) and not self._free(func):
            path = self.tracer.scope.module_path or "<root>"
            self.found = (
                f"fx could not see {_label(func)} on real tensors in module {path!r} of "
                f"{self.model} "
                "(arithmetic outside the graph: the forward computed on tensors fx does "
                "not trace, such as its own parameters, buffers or constants)"
            )
            raise IncompleteGraphError(self.found)
        return out

    def _free(self, func: Any) -> bool:
        name = getattr(func, "__name__", "")
        if name == "__get__":  # an attribute read: .data, .T, .grad, .real
            return True
        method = getattr(func, "__objclass__", None) is not None
        try:
            rule = self.registry.get(("method", name) if method else ("function", func))
        except TypeError:  # an unhashable target
            return False
        return rule is not None and rule.is_free


# it runs the forward's torch calls: an error raised through it is the model's or torch's
BOUNDARIES.add(_OutsideGraph.__torch_function__.__code__)
# it hands a module call to torch.fx, which refuses a module outside the traced tree (one a
# closure or a global holds): fx's limit, not a bug of flopgraph's
BOUNDARIES.add(_Tracer.call_module.__code__)
# it runs the model's forward under torch.fx: errors raised through it are the model's
BOUNDARIES.add(trace_fx.__code__)


def _computes(out: Any) -> bool:
    """Whether a call's result holds a floating-point or complex tensor."""
    if isinstance(out, torch.Tensor):
        return out.is_floating_point() or out.is_complex()
    if isinstance(out, (tuple, list)):
        return any(_computes(v) for v in out)
    return False


def _label(func: Any) -> str:
    """``torch.add``, ``Tensor.sum``, ``torch.nn.functional.linear``."""
    name = getattr(func, "__name__", None) or repr(func)
    if getattr(func, "__objclass__", None) is not None:
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None) or "torch"
    if module.startswith("torch._C"):
        module = "torch.nn.functional" if module == "torch._C._nn" else "torch"
    return f"{module}.{name}"


def _leaf_root(model: torch.nn.Module, bound: dict[str, Any]) -> TracedGraph:
    """A model that is itself a counted leaf (``analyze(nn.Conv2d(...))``): one node."""
    graph = torch.fx.Graph()
    phs = [graph.placeholder(name) for name in bound]
    node = graph.call_module("", tuple(phs))
    node.meta["nn_module_stack"] = {"": ("", type(model))}
    graph.output(node)
    inputs = {ph.name: v for ph, v in zip(phs, bound.values(), strict=True)}
    return TracedGraph(graph, model, inputs, {})


def _forward_params(model: torch.nn.Module) -> list[inspect.Parameter]:
    sig = inspect.signature(model.forward)
    params = list(sig.parameters.values())
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TraceError(
                f"{type(model).__name__}.forward takes {_plain(p)}: the fx frontend needs named "
                "arguments (pass them by name)"
            )
    return params


def _bind(
    model: torch.nn.Module,
    params: list[inspect.Parameter],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    sig = inspect.Signature(params)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        shown = inspect.Signature([_plain(p) for p in params])
        raise InputError(f"inputs do not match {type(model).__name__}.forward{shown}: {e}") from e
    bound.apply_defaults()
    return dict(bound.arguments)


def _plain(p: inspect.Parameter) -> inspect.Parameter:
    """``p`` without its annotation, for messages: ``**kwargs``, not the text Python
    makes of ``**kwargs: Unpack[TransformersKwargs]`` (``**kwargs: *<class '...'>``)."""
    return p.replace(annotation=inspect.Parameter.empty)


def _drop_specialization_checks(graph: torch.fx.Graph) -> None:
    """Remove the asserts fx adds for specialised (non-tensor) arguments."""
    for node in reversed(list(graph.nodes)):
        if node.op == "call_function" and node.target in _SPECIALIZATION_CHECKS:
            inputs = [a for a in node.args if isinstance(a, torch.fx.Node)]
            graph.erase_node(node)
            for a in inputs:
                if a.op == "call_function" and not a.users:
                    graph.erase_node(a)


def _one_line(e: BaseException) -> str:
    text = safe_str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _where(e: BaseException) -> str:
    """`` (at file:line: code)`` for the innermost frame of user code, if any."""
    frames = traceback.extract_tb(e.__traceback__)
    for fr in reversed(frames):
        if not fr.filename.startswith((_TORCH_DIR, _OWN_DIR)) and fr.filename != "<eval_with_key>":
            code = f": {fr.line.strip()}" if fr.line else ""
            return f" (at {fr.filename}:{fr.lineno}{code})"
    return ""
