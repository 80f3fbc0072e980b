"""What keeps one analysis from touching the process around it, and others from touching it.

Running a model's shadow needs process-wide machinery: torch.fx patches
``nn.Module.__call__`` while it traces, the aten recorder installs global module
hooks, and the user may have global module hooks of their own. So:

- :data:`ANALYSIS_LOCK` lets one analysis at a time run modules (an fx trace in
  one thread would otherwise hijack a shadow's module calls in another, and fail
  it with ``module is not installed as a submodule``);
- :func:`isolated` holds that lock, makes the global module hooks a user
  registered (``register_module_forward_hook`` and kin) skip every module call
  made by this thread while it lasts (they would otherwise run on the shadow, and
  could change the counts or state the shadow shares with the user's model), and
  keeps torch's fake-tensor logger from printing a kernel's traceback for an
  error flopgraph reports in one line. It also leaves inference mode for this
  thread: under ``torch.inference_mode()`` autograd's dispatch keys are off, so
  ``linear`` or ``layer_norm`` reach the recorder as other aten ops than they do
  elsewhere, and fake views of inference tensors cannot be made at all. Counts
  must not depend on the caller's grad mode, and nothing an analysis makes
  (twins, shadows) is handed back to the caller;
- :func:`thread_confined_fx` makes the functions torch.fx patches in while it
  traces (``nn.Module.__call__`` and ``__getattr__``, autowrapped ``math``
  functions) act only in the tracing thread: other threads calling their own
  modules meanwhile get the original functions (torch.fx alone would route
  their calls into the tracer, which raises ``NameError``).

Other threads keep their global hooks, logs and grad mode: all are per thread.
"""

from __future__ import annotations

import builtins
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.fx import _symbolic_trace as _fx_trace
from torch.nn.modules import module as _module

from ..errors import BOUNDARIES

ANALYSIS_LOCK = threading.RLock()
"""Held while any flopgraph code runs modules (re-entrant: ``compare`` nests analyses)."""

_GLOBAL_HOOKS = (
    "_global_forward_pre_hooks", "_global_forward_hooks", "_global_backward_pre_hooks",
    "_global_backward_hooks", "_global_module_registration_hooks",
    "_global_parameter_registration_hooks", "_global_buffer_registration_hooks",
)  # fmt: skip
_FAKE_TENSOR_LOG = "torch._subclasses.fake_tensor"


class _State(threading.local):
    depth = 0


_state = _State()


def _skipped_here(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook``, except that it does nothing for calls made inside :func:`isolated`
    (all hook kinds accept ``None`` as "no change")."""

    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _state.depth:
            return None
        return hook(*args, **kwargs)

    guarded.__flopgraph_guarded__ = hook  # type: ignore[attr-defined]
    return guarded


class _OwnThread(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


@contextmanager
def isolated() -> Iterator[None]:
    """Run modules for an analysis: one at a time, with the user's global hooks
    and torch's fake-tensor log silenced for this thread, all restored after."""
    with ANALYSIS_LOCK:
        if _state.depth:  # nested: the outer call has set everything up
            _state.depth += 1
            try:
                yield
            finally:
                _state.depth -= 1
            return
        saved = _guard_global_hooks()
        quiet = _OwnThread()
        logger = logging.getLogger(_FAKE_TENSOR_LOG)
        logger.addFilter(quiet)
        _state.depth = 1
        try:
            with torch.inference_mode(False):
                yield
        finally:
            _state.depth = 0
            logger.removeFilter(quiet)
            _restore_global_hooks(saved)


def _guard_global_hooks() -> dict[str, dict[int, Callable[..., Any]]]:
    """Wrap every global hook in place (same keys, so the user's handles still
    remove them); returns the originals."""
    saved: dict[str, dict[int, Callable[..., Any]]] = {}
    for name in _GLOBAL_HOOKS:
        hooks = getattr(_module, name, None)
        if not hooks:
            continue
        saved[name] = dict(hooks)
        for key, hook in saved[name].items():
            hooks[key] = _skipped_here(hook)
    return saved


def _restore_global_hooks(saved: dict[str, dict[int, Callable[..., Any]]]) -> None:
    for name, originals in saved.items():
        hooks = getattr(_module, name)
        for key, hook in originals.items():
            current = hooks.get(key)
            # a hook the user removed meanwhile stays removed
            if current is not None and getattr(current, "__flopgraph_guarded__", None) is hook:
                hooks[key] = hook


class _ThreadConfinedPatcher(_fx_trace._Patcher):
    """torch.fx's patcher, except that each function it patches in runs only in the
    thread that made the patcher; in any other thread the patched name behaves as
    the function it replaced."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def patch(
        self,
        frame_dict: dict[str, Any],
        name: str,
        new_fn: Callable[..., Any],
        deduplicate: bool = True,
    ) -> None:
        orig = frame_dict[name] if name in frame_dict else getattr(builtins, name, None)
        super().patch(frame_dict, name, self._confined(new_fn, orig), deduplicate)

    def patch_method(
        self, cls: type, name: str, new_fn: Callable[..., Any], deduplicate: bool = True
    ) -> None:
        super().patch_method(cls, name, self._confined(new_fn, getattr(cls, name)), deduplicate)

    def _confined(self, new_fn: Callable[..., Any], orig: Any) -> Callable[..., Any]:
        if orig is None:  # nothing to fall back on (torch.fx would fail there anyway)
            return new_fn
        return _confine(new_fn, orig, self.thread)


def _confine(new_fn: Callable[..., Any], orig: Callable[..., Any], thread: int) -> Any:
    # no functools.wraps: a trace patches a few hundred functions, and nothing reads
    # the wrapper's name
    def confined(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == thread:
            return new_fn(*args, **kwargs)
        return orig(*args, **kwargs)

    return confined


# every call of a module while fx traces goes through it: an error raised through it is
# the model's or torch's, not flopgraph's (errors.is_internal)
BOUNDARIES.add(_confine(print, print, 0).__code__)


@contextmanager
def _confined_new_patcher() -> Iterator[_fx_trace._Patcher]:
    # torch.fx's own _new_patcher, with the thread-confined patcher
    prior = _fx_trace.CURRENT_PATCHER
    patcher = _ThreadConfinedPatcher()
    _fx_trace.CURRENT_PATCHER = patcher
    try:
        yield patcher
    finally:
        patcher.revert_all_patches()
        _fx_trace.CURRENT_PATCHER = prior


@contextmanager
def thread_confined_fx() -> Iterator[None]:
    """Make every torch.fx trace started meanwhile patch functions for its own thread
    only (a trace another thread starts gets a patcher confined to that thread).
    Needs :data:`ANALYSIS_LOCK`, which serialises the swap."""
    original = _fx_trace._new_patcher
    _fx_trace._new_patcher = _confined_new_patcher
    try:
        yield
    finally:
        _fx_trace._new_patcher = original
