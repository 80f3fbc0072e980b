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

Exactness rests on a forward's ops being a function of that structure and those
arguments. ``scripts/reuse_check.py`` checks it on the wide zoo (every record equal
with and without reuse); ``analyze(..., reuse=False)`` turns it off.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._pytree import tree_flatten

if TYPE_CHECKING:
    from .aten import ModuleCall, _Recorder

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
            tuple((n, _value(t)) for n, t in m._parameters.items()),
            tuple((n, _value(t)) for n, t in m._buffers.items()),
            tuple(
                (k, _value(v)) for k, v in m.__dict__.items()
                if k not in _TORCH_STATE and k not in INDEX_NAMES
            ),
            tuple(children),
        )  # fmt: skip
        return self.ids.setdefault(own, len(self.ids))


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any], fresh: dict[int, Any]) -> Any:
    """The key of a call's arguments; None when one is a key/value cache that held
    tokens when the trace first saw it (each layer reads its own part of it, which
    the key cannot see). A cache that was empty then, as a forward without past
    tokens makes it, is read by no layer before that layer writes its own part."""
    leaves, spec = tree_flatten((args, kwargs))
    for v in leaves:
        if _is_cache(v):
            if id(v) not in fresh:
                fresh[id(v)] = (v, not _holds_tokens(v))
            if not fresh[id(v)][1]:
                return None
    return (str(spec), tuple(_value(v) for v in leaves))


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


REUSE: ContextVar[bool] = ContextVar("reuse", default=True)
"""Whether a fake-tensor trace replays repeated blocks (``analyze(..., reuse=...)``)."""


@contextmanager
def replaying(on: bool) -> Iterator[None]:
    """Set :data:`REUSE` for one analysis."""
    token = REUSE.set(on)
    try:
        yield
    finally:
        REUSE.reset(token)


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
        self.origins: dict[int, tuple[Any, str, str]] = {}
        """id of a replayed item -> (the item it copies, the block path it was moved
        from, the one it was moved to): its records are that item's, moved (see
        ``count_aten``)."""
        self.fresh: dict[int, Any] = {}
        """id -> (cache, empty when first seen), for the caches the calls pass."""
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
            if key is not None and shadow._modules and any(True for _ in shadow.parameters()):
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
        key = (self.structures.key(shadow, now=not first), _arguments(args, kwargs, self.fresh))
        if key[0] is None or key[1] is None:
            return forward(*args, **kwargs)
        template = self.seen.get(key)
        if template is not None:
            self._replay(template, path)
            return template.out
        start, before = len(rec.items), dict(rec.calls)
        out = forward(*args, **kwargs)
        calls = {
            p: n - before.get(p, 0)
            for p, n in rec.calls.items()
            if p != path and n != before.get(p, 0)
        }  # fmt: skip
        outputs = {p: rec.outputs[p] for p in calls if p in rec.outputs}
        self.seen[key] = _Template(
            path, tuple(rec.items[start:]), calls, outputs, out, (args, kwargs)
        )
        return out

    def _replay(self, template: _Template, path: str) -> None:
        rec = self.recorder
        old = template.path
        for item in template.items:
            moved = self._moved(item, old, path)
            self.origins[id(moved)] = (item, old, path)
            rec.items.append(moved)
        for p, n in template.calls.items():
            p = moved_path(p, old, path)
            rec.calls[p] = rec.calls.get(p, 0) + n
        for p, o in template.outputs.items():
            rec.outputs[moved_path(p, old, path)] = o

    def _moved(self, item: Any, old: str, new: str) -> Any:
        from .aten import ModuleCall, TorchCall

        where = functools.partial(moved_path, old=old, new=new)
        if isinstance(item, ModuleCall):
            path = where(item.path)
            return _moved_call(item, path, self.user[path], where)
        if isinstance(item, TorchCall):
            ops = tuple(changed(op, module=where(op.module)) for op in item.ops)
            return changed(item, module=where(item.module), ops=ops)
        return changed(item, module=where(item.module))


def changed(item: Any, **fields: Any) -> Any:
    """``dataclasses.replace`` for the frozen records a replay copies by the thousand,
    without re-running ``__init__`` (a quarter of its time): the same fields, some new."""
    new = object.__new__(type(item))
    new.__dict__.update(item.__dict__, **fields)
    return new


def moved_path(p: str, old: str, new: str) -> str:
    """``p`` under block ``old`` moved to block ``new``; a path outside ``old`` (a
    module the block shares with others) stays."""
    return new + p[len(old) :] if p == old or p.startswith(old + ".") else p


def _moved_call(
    item: ModuleCall, path: str, module: torch.nn.Module, where: Callable[[str], str]
) -> ModuleCall:
    ops = tuple(changed(op, module=where(op.module)) for op in item.ops)
    return changed(item, path=path, module=module, ops=ops)
