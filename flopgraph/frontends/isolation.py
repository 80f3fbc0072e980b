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
  error flopgraph reports in one line.

Other threads keep their global hooks and logs: both are filtered by thread.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch.nn.modules import module as _module

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
