"""A cheaper key in front of FakeTensorMode's dispatch cache.

A forward on fake tensors spends most of its time in FakeTensorMode's dispatch.
Even on a cache hit the mode builds and hashes a key from every argument's full
metadata (about 80 us an op here), and a few common ops (``_unsafe_view``) are
never cached at all. A transformer's layers repeat the same ops on the same
shapes, so nearly every op is a repeat; :class:`FastFake` answers repeats
itself, in about 15 us:

- the first call of an op with given argument metadata goes through the mode,
  and the metadata of its output(s) is kept under a cheap key: the op, and per
  argument its shape, strides, offset, dtype and flags, or its type and value
  (kept for the process, like the mode's own cache, so a second analysis of a
  model starts warm);
- a repeat gets the tensor(s) the mode's own cache would build from the same
  entry: an empty FakeTensor with the kept shape, strides and dtype on the kept
  device, and for a view (``view``, ``transpose``, ``_unsafe_view``) one that
  shares the storage of the viewed argument at the kept offset.

What it keeps is exactly what the mode computed, so its answers are the mode's.
It keeps nothing where the mode's cache would not, or where a repeat might not
give the same metadata: ops the mode answers before any cache (``prim.device``
and size queries go straight to the mode's own handlers, as the mode would),
ops that write to an input or change its metadata in place, ops whose output
depends on values or on random state, lifts of real tensors, ops outside aten,
composite views; calls with any argument that is not a plain value or one of
this mode's fake tensors on one device (real tensors, constants the mode could
fold, symbolic sizes); outputs that are not fresh FakeTensors of this mode (or
views of the one tensor argument). ``check=True`` also runs every repeat through
the mode and compares (for tests). Where torch's internals this relies on cannot
be imported, :func:`fast_fake` returns None and every op takes the ordinary road.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import BOUNDARIES

MISS: Any = object()
"""Returned by :meth:`FastFake.__call__` when the op must go through the mode."""

_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.layout, torch.memory_format)
_NO_CACHE_TAGS = tuple(
    getattr(torch.Tag, name)
    for name in ("inplace_view", "data_dependent_output", "dynamic_output_shape",
                 "nondeterministic_seeded")
    if hasattr(torch.Tag, name)
)  # fmt: skip


_ENTRIES: dict[Any, Any] = {}
"""(op, argument key) -> (container, output metadata, index of the viewed argument).

Kept for the process, as FakeTensorMode keeps its own cache: an entry records
what torch's kernels make of given argument metadata, which no model or
analysis changes."""
_MAX_ENTRIES = 100_000
_UNKEPT: set[Any] = set()
"""(op, argument key) whose output could not be kept: such a call always goes through
the mode, and its own cache (see :meth:`FastFake.__call__`)."""
_CACHEABLE: dict[Any, bool] = {}
"""Per op: whether its entries may be kept (see :func:`_cacheable`)."""


def fast_fake(mode: Any, check: bool = False) -> FastFake | None:
    """A FastFake for ``mode`` (a FakeTensorMode), or None where it cannot be used."""
    try:
        from torch._subclasses import fake_tensor
    except ImportError:  # torch moved its internals: take the ordinary road
        return None
    if mode.shape_env is not None or getattr(mode, "propagate_real_tensors", False):
        return None
    return FastFake(mode, fake_tensor, check)


class FastFake:
    """Answer repeated ops on fake tensors from kept metadata, or return :data:`MISS`."""

    def __init__(self, mode: Any, fake_tensor: Any, check: bool = False) -> None:
        self._mode = mode
        self._fake = fake_tensor.FakeTensor
        self._in_kernel = fake_tensor.in_kernel_invocation_manager
        self._direct = dict(fake_tensor._DISPATCH_META_HANDLERS)
        """Ops the mode answers first thing, with these handlers (``prim.device``)."""
        self._check = check
        self._entries = _ENTRIES
        self._device: Any = None
        self.hits = 0
        """Ops answered from kept metadata (for tests and benchmarks)."""

    def __call__(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        direct = self._direct.get(func)
        if direct is not None:
            return direct(args)
        if not self._op_cacheable(func):
            return MISS
        key = self._key(args, kwargs)
        if key is None:
            return MISS
        entry = self._entries.get((func, key))
        if entry is None and (func, key) in _UNKEPT:
            return func(*args, **kwargs)  # through the mode and its cache, every time
        if entry is None:  # through the mode, once per key, without the mode's own cache:
            # its entry would never be read (repeats stop here), and making it (a hash of
            # every argument's full metadata, checks, a copy) is about a tenth of a first
            # analysis in a process, where every op misses
            mode, cached = self._mode, self._mode.cache_enabled
            mode.cache_enabled = False
            try:
                out = func(*args, **kwargs)
            finally:
                mode.cache_enabled = cached
            if not self._remember((func, key), func, args, out):
                if len(_UNKEPT) >= _MAX_ENTRIES:
                    _UNKEPT.clear()
                _UNKEPT.add((func, key))
            return out
        out = self._build(entry, args)
        self.hits += 1
        if self._check:
            _compare(func, args, out, func(*args, **kwargs))
        return out

    def _op_cacheable(self, func: Any) -> bool:
        known = _CACHEABLE.get(func)
        if known is None:
            known = _CACHEABLE[func] = _cacheable(func, self._mode)
        return known

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        """The arguments' key (kwargs by name); None if an argument rules caching out."""
        parts: list[Any] = []
        self._device = None
        for value in args:
            if not self._add(parts, value):
                return None
        for name, value in kwargs.items():
            parts.append(name)
            if not self._add(parts, value):
                return None
        return None if self._device is None else (self._device, tuple(parts))

    def _add(self, parts: list[Any], value: Any) -> bool:
        """Append one argument's key (a list or tuple item by item); False if it rules
        caching out."""
        items = value if isinstance(value, (list, tuple)) else (value,)
        for v in items:
            if isinstance(v, torch.Tensor):
                if not self._add_tensor(parts, v):
                    return False
            elif isinstance(v, _PLAIN):
                parts.append((type(v), v))  # 2 and 2.0 promote differently
            else:
                return False
        parts.append(len(items) if items is value else -1)  # a list, or one value
        return True

    def _add_tensor(self, parts: list[Any], t: Any) -> bool:
        """A tensor argument: one of this mode's fake tensors, plain, on the call's device."""
        if type(t) is not self._fake or t.fake_mode is not self._mode:
            return False
        if t.constant is not None or t.layout is not torch.strided:
            return False
        if self._device is None:
            self._device = t.fake_device
        elif t.fake_device != self._device:
            return False
        parts.append(_tensor_key(t))
        return True

    def _remember(self, key: Any, func: Any, args: tuple[Any, ...], out: Any) -> bool:
        """Keep the metadata of ``out`` under ``key``; False where it cannot be kept."""
        container = type(out) if isinstance(out, (list, tuple)) else None
        outs = out if container is not None else (out,)
        viewed = None
        if func.is_view or func is torch.ops.aten._unsafe_view.default:
            tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
            if len(tensors) != 1 or len(outs) != 1:
                return False
            viewed = tensors[0]
        metas = []
        for o in outs:
            if type(o) is not self._fake or o.fake_mode is not self._mode:
                return False
            if o.constant is not None or o.layout is not torch.strided:
                return False
            if any(o is a for a in args) or (viewed is None and o.storage_offset() != 0):
                return False
            metas.append((tuple(o.shape), o.stride(), o.storage_offset(), o.dtype,
                          o.fake_device, o.requires_grad, o.is_conj(), o.is_neg()))  # fmt: skip
        entry = (container, tuple(metas), viewed)
        same_keys = all(
            torch._C._dispatch_key_set(a) == torch._C._dispatch_key_set(b)
            for a, b in zip(outs, _as_tuple(self._build(entry, args)), strict=True)
        )
        if same_keys:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = entry
        return same_keys

    def _build(self, entry: Any, args: tuple[Any, ...]) -> Any:
        container, metas, viewed = entry
        outs = []
        for shape, stride, offset, dtype, device, grad, conj, neg in metas:
            with self._in_kernel(self._mode):
                t = torch.empty_strided(shape, stride, dtype=dtype, device="meta",
                                        requires_grad=grad)  # fmt: skip
                if viewed is not None:  # share the viewed tensor's storage, as views do
                    t.set_(args[viewed].untyped_storage(), offset, shape, stride)
            if conj:
                torch._C._set_conj(t, True)
            if neg:
                torch._C._set_neg(t, True)
            outs.append(self._fake(self._mode, t, device))
        return outs[0] if container is None else container(outs)


def _cacheable(func: Any, mode: Any) -> bool:
    """Whether the outputs of ``func`` follow from its arguments' metadata the way the
    mode's own cache assumes (see the module docstring for what is left out)."""
    from torch._subclasses.fake_tensor import _DISPATCH_HANDLE_DIRECTLY

    if not isinstance(func, torch._ops.OpOverload) or func.namespace != "aten":
        return False
    schema = func._schema
    if schema.is_mutable or not schema.returns or func in mode.lift_fns:
        return False
    if func in _DISPATCH_HANDLE_DIRECTLY or any(t in func.tags for t in _NO_CACHE_TAGS):
        return False
    if not all(isinstance(r.type, torch.TensorType) for r in schema.returns):
        return False
    composite = torch._C._dispatch_has_kernel_for_dispatch_key(
        func.name(), torch._C.DispatchKey.CompositeImplicitAutograd
    )
    return not (func.is_view and composite)


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (list, tuple)) else (out,)


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.shape, t.stride(), t.storage_offset(), t.dtype, t.requires_grad, t.is_conj(),
            t.is_neg())  # fmt: skip


def _compare(func: Any, args: tuple[Any, ...], fast: Any, slow: Any) -> None:
    """Raise if the kept answer differs from the mode's in metadata or in aliasing."""
    inputs = [a for a in args if isinstance(a, torch.Tensor)]
    for a, b in zip(_as_tuple(fast), _as_tuple(slow), strict=True):
        got = (a.shape, a.stride(), a.storage_offset(), a.dtype, a.device, a.is_conj(), a.is_neg(),
               [_shares(a, x) for x in inputs])  # fmt: skip
        want = (b.shape, b.stride(), b.storage_offset(), b.dtype, b.device, b.is_conj(), b.is_neg(),
                [_shares(b, x) for x in inputs])  # fmt: skip
        if got != want:
            raise AssertionError(f"fast fake dispatch of {func} gave {got}, the mode gives {want}")


def _shares(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(a.untyped_storage()._cdata == b.untyped_storage()._cdata)


# it runs torch's fake kernels: an error raised through it is torch's (errors.is_internal)
BOUNDARIES.add(FastFake.__call__.__code__)
