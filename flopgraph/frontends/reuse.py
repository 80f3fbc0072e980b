"""Trace each repeated block once: the 80 decoder layers of a Llama-70B shape run
one layer's forward on fake tensors, and the other 79 replay its records.

A block is a candidate when a sibling in the same parent has the same *structure*:
the same classes, parameter and buffer shapes and dtypes, and plain settings
(numbers, strings, flags, dtypes; objects by identity), module by module through
its subtree, with no hooks in it. A call of a candidate replays an earlier call
when, at call time, the structure and the call's arguments (tensors by shape,
stride, dtype and device; plain values by value; other objects by identity) are
equal: the records of the earlier call are copied with the module paths moved to
the new block, and the earlier call's output is returned (fake tensors hold no
values, so only its shapes and dtypes go on). The one setting left out of the
structure is a block's own index (``layer_idx`` and its spellings), which differs
by construction; what a library derives from it at construction time (a sliding
window, a dense or routed MLP) is in the structure through the attributes and
parameters it sets.

A transformers key/value cache passed to a block (``cache.layers``, one entry per
layer) enters the key through the block's own layer of it (``cache.layers[i]`` for
the block's index i, its tensors by shape): a prefill's layers each find their part
empty, a decode step's each find c tokens in it. The first call's writes to its own
layer are kept and a replay makes them in the new block's layer, so the cache a
forward leaves is whole (``generation()`` decodes from it). A call that reads another
layer, iterates the layers or changes the cache otherwise is never replayed; one whose
own index is 0 cannot tell its own layer from the first, so the next call runs too and
becomes the template if it reads only its own.

Exactness rests on a forward's ops being a function of that structure and those
arguments. ``scripts/reuse_check.py`` checks it on the wide zoo (every record equal
with and without reuse); ``analyze(..., reuse=False)`` turns it off.
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._pytree import tree_flatten

from ..records import changed

if TYPE_CHECKING:
    from .aten import _Recorder

INDEX_NAMES = frozenset(
    {"layer_idx", "layer_id", "layer_index", "layer_number", "layer_num", "block_idx",
     "block_id", "block_index", "stage_idx"}
)  # fmt: skip
"""Attributes holding a block's position in its stack: left out of the structure."""
_PLAIN = (int, float, bool, str, bytes, type(None), torch.dtype, torch.device, enum.Enum)
_HOOKS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
    "_state_dict_hooks", "_forward_hooks_with_kwargs",
)  # fmt: skip
_TORCH_STATE = frozenset(
    {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_apply",
     "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
     "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_state_dict_pre_hooks",
     "_is_full_backward_hook", "forward", *_HOOKS}
)  # fmt: skip


def _value(v: Any) -> Any:
    """A setting as it enters a key: plain values by value, tensors by metadata,
    containers element-wise, anything else by identity."""
    if isinstance(v, _PLAIN):
        return (type(v).__name__, v)
    if isinstance(v, torch.Tensor):
        return ("tensor", tuple(v.shape), tuple(v.stride()), v.dtype, v.device.type,
                v.requires_grad)  # fmt: skip
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_value(x) for x in v))
    if isinstance(v, (set, frozenset)):
        return ("set", frozenset(_value(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((k, _value(x)) for k, x in v.items()))
    if isinstance(v, functools.partial):  # one per layer, of the same function (FNet's FFT)
        return ("partial", _value(v.func), _value(v.args), _value(v.keywords))
    return ("object", id(v))


def _tensors(d: dict[str, Any]) -> tuple[Any, ...]:
    """A shadow's parameters or buffers as they enter a key: read without making
    their twins (``LazyTwins``), each twin keyed as the user's tensor it stands for, so
    that a block keys alike before and after it ran."""
    original = getattr(d, "original", None)
    return tuple((n, _value(t if original is None else original(n, t))) for n, t in dict.items(d))


def _has_parameters(m: torch.nn.Module) -> bool:
    """Whether ``m``'s subtree holds a parameter, read without making twins."""
    return any(v is not None for sub in m.modules() for v in dict.values(sub._parameters))


def _hooked(m: torch.nn.Module) -> bool:
    return any(m.__dict__.get(name) for name in _HOOKS)


class Structures:
    """Keys of module subtrees: equal for structurally identical subtrees. Each key is
    a small int interning the module's own (type, parameters, buffers, settings) and
    its children's keys, so a stack of N blocks costs O(N) to key, not O(N x depth)."""

    def __init__(self) -> None:
        self.ids: dict[tuple[Any, ...], int] = {}
        self.memo: dict[int, int | None] = {}

    def key(self, m: torch.nn.Module, now: bool = False) -> int | None:
        """``m``'s key, None when a module in it has hooks (a hook may do anything:
        such a block always runs). ``now``: from its settings as they are now, not as
        first seen."""
        if not now and id(m) in self.memo:
            return self.memo[id(m)]
        key = self._key(m, now)
        if not now:
            self.memo[id(m)] = key
        return key

    def _key(self, m: torch.nn.Module, now: bool) -> int | None:
        if _hooked(m):
            return None
        children = []
        for name, child in m._modules.items():
            sub = None if child is None else self.key(child, now)
            if child is not None and sub is None:
                return None
            children.append((name, sub))
        own = (
            type(m),
            _tensors(m._parameters),
            _tensors(m._buffers),
            tuple(
                (k, _value(v)) for k, v in m.__dict__.items()
                if k not in _TORCH_STATE and k not in INDEX_NAMES
            ),
            tuple(children),
        )  # fmt: skip
        return self.ids.setdefault(own, len(self.ids))


def _arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], fresh: dict[int, Any], own: int | None
) -> tuple[Any, list[Any]] | None:
    """The key of a call's arguments and the caches whose layer ``own`` (the block's
    index) the key holds; None when the key cannot see what the call reads: a cache
    without per-layer entries for ``own`` that held tokens when the trace first saw it
    (or any such cache, where :data:`WHOLE_CACHE` is set). A cache that was empty then,
    as a forward without past tokens makes it, is read by no layer before that layer
    writes its own part."""
    leaves, spec = tree_flatten((args, kwargs))
    parts, slots = [], []
    for v in leaves:
        if not _is_cache(v):
            parts.append(_value(v))
            continue
        layers = _layers(v)
        if own is not None and layers is not None and 0 <= own < len(layers):
            slots.append(v)
            parts.append(("cache", id(v), _state(layers[own])))
            continue
        if id(v) not in fresh:
            fresh[id(v)] = (v, not _holds_tokens(v))
        if WHOLE_CACHE.get() or not fresh[id(v)][1]:
            return None
        parts.append(_value(v))
    return (str(spec), tuple(parts)), slots


def _layers(cache: Any) -> list[Any] | None:
    layers = getattr(cache, "__dict__", {}).get("layers")
    return layers if type(layers) is list else None


def _state(layer: Any) -> Any:
    """A cache layer as it enters a key: its attributes, tensors by shape."""
    return (type(layer), tuple((k, _value(v)) for k, v in vars(layer).items()))


class _Watched(list):  # type: ignore[type-arg]
    """A cache's layer list while a block's first call runs: which entries it read."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self.read: set[Any] = set()

    def __getitem__(self, i: Any) -> Any:
        self.read.add(i if isinstance(i, int) else "other")
        return super().__getitem__(i)

    def __iter__(self) -> Iterator[Any]:
        self.read.add("all")
        return super().__iter__()

    def __reversed__(self) -> Iterator[Any]:
        self.read.add("all")
        return super().__reversed__()

    def copy(self) -> list[Any]:
        self.read.add("all")
        return super().copy()


@dataclass(frozen=True)
class _Writes:
    """What a block's first call did to its own layer of each cache it was passed."""

    attrs: tuple[dict[str, Any], ...] | None
    """Per cache, the layer attributes the call set; None when it did more than that
    (read another layer, iterated them, changed the cache elsewhere)."""
    ambiguous: bool = False
    """Its own index was 0: a read of entry 0 may have meant the first layer."""

    @property
    def replayable(self) -> bool:
        return self.attrs is not None and not self.ambiguous


@contextmanager
def _watching(caches: list[Any], own: int | None) -> Iterator[list[_Writes]]:
    """Run a block's call with its caches' layer lists watched; the yielded list holds
    the call's :class:`_Writes` once the call is over."""
    out: list[_Writes] = []
    if not caches or own is None:
        out.append(_Writes(()))
        yield out
        return
    lists = [c.__dict__["layers"] for c in caches]
    rest = [{k: v for k, v in vars(c).items() if k != "layers"} for c in caches]
    before = [dict(vars(layers[own])) for layers in lists]
    watched = [_Watched(layers) for layers in lists]
    for c, w in zip(caches, watched, strict=True):
        c.__dict__["layers"] = w
    try:
        yield out
    finally:
        reads = set().union(*(w.read for w in watched))
        whole = reads <= {own}
        for c, w, layers, r in zip(caches, watched, lists, rest, strict=True):
            items = list(list.__iter__(w))  # not the watched __iter__
            whole &= len(items) == len(layers) and all(map(operator.is_, items, layers))
            layers[:] = items  # the call's effect on the list, if any, on the real one
            c.__dict__["layers"] = layers
            now = {k: v for k, v in vars(c).items() if k != "layers"}
            whole &= now.keys() == r.keys() and all(now[k] is v for k, v in r.items())
        attrs = []
        for layers, b in zip(lists, before, strict=True):
            now = vars(layers[own])
            # a list or dict in the entry could change in place, which no write shows
            whole &= b.keys() <= now.keys() and not any(
                isinstance(v, (list, dict, set)) for v in now.values()
            )
            attrs.append({k: v for k, v in now.items() if k not in b or b[k] is not v})
        whole &= all(
            _fake_mode(v) is not None
            for a in attrs
            for v in a.values()
            if isinstance(v, torch.Tensor)
        )  # fmt: skip
        ambiguous = own == 0 and 0 in reads
        out.append(_Writes(tuple(attrs) if whole else None, ambiguous))


def _fake_mode(t: torch.Tensor) -> Any:
    return getattr(t, "fake_mode", None)


def _twin(t: torch.Tensor) -> torch.Tensor:
    """A new fake tensor like ``t``: each replayed layer holds its own (the cache's
    bytes count each tensor once). Made outside the recorder: not an op of the model."""
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes(), _fake_mode(t):
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)


def _is_cache(v: Any) -> bool:
    return not isinstance(v, torch.Tensor) and callable(getattr(v, "get_seq_length", None))


def _holds_tokens(cache: Any) -> bool:
    try:
        return bool(cache.get_seq_length())
    except Exception:  # a cache that cannot say: assume it does
        return True


@dataclass(frozen=True)
class _Template:
    """What the first call of a key recorded."""

    path: str
    items: tuple[Any, ...]
    calls: dict[str, int]
    """The module calls the call made, the block's own excepted (its hook counts it on
    every call); a module shared with other blocks keeps its own path."""
    outputs: dict[str, Any]
    """What each of those modules returned (its last call in the block), as the
    recorder keeps it: a replay shows the same for the new block's modules."""
    out: Any
    keep: Any
    """The call's arguments, kept alive: objects enter keys by identity, which must not
    be recycled by a later call's temporaries while the trace runs."""
    writes: _Writes
    """What it wrote into its own layer of each cache it was passed."""

    @property
    def replayable(self) -> bool:
        return self.writes.replayable


WHOLE_CACHE: ContextVar[bool] = ContextVar("whole_cache", default=False)
"""Whether the cache a forward leaves must be whole (``generation()`` decodes from
it): then a cache whose layers a replay cannot write is never passed to a replay."""
REUSE: ContextVar[bool] = ContextVar("reuse", default=True)
"""Whether a fake-tensor trace replays repeated blocks (``analyze(..., reuse=...)``)."""


class Reuse:
    """Installs the replaying forward on the shadow twins of candidate blocks."""

    def __init__(
        self,
        recorder: _Recorder,
        user: dict[str, torch.nn.Module],
    ) -> None:
        self.recorder = recorder
        self.user = user
        """Module path -> the user's module, for the rule-counted calls a replay moves."""
        self.seen: dict[Any, _Template] = {}
        self.fresh: dict[int, Any] = {}
        """id -> (cache, empty when first seen), for the caches the calls pass."""
        self.indices: dict[int, int | None] = {}
        """id of a shadow block -> its index in its stack (see :meth:`_own`)."""
        self.structures = Structures()
        """Keys of the blocks' structure: as installed for a block's first call, as they
        are now for a later call of the same block (its forward may have changed it)."""

    def install(self, shadows: dict[str, torch.nn.Module]) -> None:
        """Wrap the forward of every shadow block that has a structural twin among its
        siblings."""
        groups: dict[tuple[str, Any], list[str]] = {}
        for path, shadow in shadows.items():
            if not path:
                continue
            key = self.structures.key(shadow)
            if key is not None and shadow._modules and _has_parameters(shadow):
                parent = path.rpartition(".")[0]
                groups.setdefault((parent, key), []).append(path)
        for paths in groups.values():
            if len(paths) > 1:
                for path in paths:
                    self._wrap(shadows[path], path)

    def _wrap(self, shadow: torch.nn.Module, path: str) -> None:
        forward = shadow.forward

        def replaying(*args: Any, **kwargs: Any) -> Any:
            return self.call(shadow, path, forward, args, kwargs)

        shadow.__dict__["forward"] = replaying

    def call(
        self,
        shadow: torch.nn.Module,
        path: str,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        rec = self.recorder
        if rec.frame is not None or rec.grads is not None or rec.flow is not None:
            return forward(*args, **kwargs)  # inside a recorded call, or a training step
        first = rec.calls.get(path, 0) <= 1  # its hook has counted this call
        own = self._own(shadow)
        structure = self.structures.key(shadow, now=not first)
        arguments = _arguments(args, kwargs, self.fresh, own)
        if structure is None or arguments is None:
            return forward(*args, **kwargs)
        key, caches = (structure, arguments[0]), arguments[1]
        template = self.seen.get(key)
        if template is not None and template.replayable:
            self._replay(template, path, caches, own)
            return template.out
        start, before = len(rec.items), dict(rec.calls)
        with _watching(caches, own) as writes:
            out = forward(*args, **kwargs)
        if template is not None and not writes[0].replayable:
            return out  # the earlier call stays the template
        calls = {
            p: n - before.get(p, 0)
            for p, n in rec.calls.items()
            if p != path and n != before.get(p, 0)
        }  # fmt: skip
        outputs = {p: rec.outputs[p] for p in calls if p in rec.outputs}
        self.seen[key] = _Template(
            path, tuple(rec.items[start:]), calls, outputs, out, (args, kwargs), writes[0]
        )
        return out

    def _own(self, shadow: torch.nn.Module) -> int | None:
        """The block's index in its stack: the one int its modules hold under an index
        name (``layer_idx``...), else None."""
        if id(shadow) not in self.indices:
            found = {
                v
                for m in shadow.modules()
                for k, v in vars(m).items()
                if k in INDEX_NAMES and type(v) is int
            }  # fmt: skip
            self.indices[id(shadow)] = found.pop() if len(found) == 1 else None
        return self.indices[id(shadow)]

    def _replay(self, template: _Template, path: str, caches: list[Any], own: int | None) -> None:
        rec = self.recorder
        old = template.path
        rec.items.extend(Replayed(item, old, path, self.user) for item in template.items)
        for p, n in template.calls.items():
            p = moved_path(p, old, path)
            rec.calls[p] = rec.calls.get(p, 0) + n
        for p, o in template.outputs.items():
            rec.outputs[moved_path(p, old, path)] = o
        for cache, attrs in zip(caches, template.writes.attrs or (), strict=True):
            layer = vars(cache.__dict__["layers"][own])
            for k, v in attrs.items():
                layer[k] = _twin(v) if isinstance(v, torch.Tensor) else v


@dataclass(frozen=True, slots=True)
class Replayed:
    """An item of a replayed block: ``item``, recorded by the template block ``old``
    (or itself replayed), as the block ``new`` ran it. Nothing is copied when a block
    replays: ``count_aten`` gives it the records of ``item`` with their paths moved,
    and :meth:`moved` makes the item itself for whoever reads the trace's items."""

    item: Any
    old: str
    new: str
    user: Mapping[str, torch.nn.Module]
    """Module path -> the user's module (a rule-counted call moves to the new one)."""

    def moved(self) -> Any:
        """The item with every module path under ``old`` moved under ``new``."""
        from .aten import ModuleCall, TorchCall

        item = self.item.moved() if isinstance(self.item, Replayed) else self.item
        where = functools.partial(moved_path, old=self.old, new=self.new)
        if isinstance(item, ModuleCall):
            path = where(item.path)
            ops = tuple(changed(op, module=where(op.module)) for op in item.ops)
            return changed(item, path=path, module=self.user[path], ops=ops)
        if isinstance(item, TorchCall):
            ops = tuple(changed(op, module=where(op.module)) for op in item.ops)
            return changed(item, module=where(item.module), ops=ops)
        return changed(item, module=where(item.module))


def moved_path(p: str, old: str, new: str) -> str:
    """``p`` under block ``old`` moved to block ``new``; a path outside ``old`` (a
    module the block shares with others) stays."""
    return new + p[len(old) :] if p == old or p.startswith(old + ".") else p
