"""Exception and warning classes.

Every error flopgraph raises derives from :class:`FlopgraphError`, so a caller
can catch one type; each message names what was wrong and where.
"""

from __future__ import annotations

import importlib.util
import os
from types import CodeType


class FlopgraphError(Exception):
    """Base class of every error raised by flopgraph."""


class InputError(FlopgraphError, ValueError):
    """The model or the inputs given to an analysis are not usable."""


class TraceError(FlopgraphError):
    """A frontend could not turn the model into an op graph."""


class PropagationError(FlopgraphError):
    """Shape propagation failed at a node (the message names it)."""


class HandlerError(FlopgraphError):
    """A handler raised or returned something that is not a valid cost."""


class RegistryError(FlopgraphError, TypeError):
    """A handler was registered under a key of the wrong kind, or twice."""


class SkippedOpWarning(UserWarning):
    """An op had no handler: it counts 0 and is listed on the report."""


class TrainingModeWarning(UserWarning):
    """A forward was counted with the model in training mode, where dropout and batch
    norm count as they run in training (an inference count wants ``model.eval()``)."""


class UsageError(FlopgraphError):
    """A command line named a model, input or option that cannot be used
    (the command exits with status 2, before any analysis starts)."""


class InternalError(FlopgraphError):
    """A bug in flopgraph itself, never the user's mistake: the message says so and
    gives the torch and flopgraph versions and the op or node it failed on."""


class OperandError(FlopgraphError, TypeError):
    """A contraction's operands have dtypes its real kernel refuses, which fake and meta
    kernels accept (flopgraph checks as the real kernel would)."""


def safe_str(e: BaseException) -> str:
    """``str(e)``, or a placeholder when the exception's own ``__str__`` raises: the
    user's exception must reach the message, not one from printing it."""
    try:
        return str(e)
    except Exception:
        return f"<{type(e).__name__} object: str() failed>"


_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TORCH_SPEC = importlib.util.find_spec("torch")
_TORCH_DIR = (
    os.path.dirname(os.path.abspath(_TORCH_SPEC.origin or "")) + os.sep if _TORCH_SPEC else ""
)
"""torch's folder, found without importing torch (the CLI's --help must not)."""
BOUNDARIES: set[CodeType] = set()
"""Code objects of flopgraph's functions whose job is to call model or torch code (the
propagation pass's call of a node's target, the aten recorder's op calls): an exception
raised through them came from that code, not from flopgraph's own."""


def is_internal(e: BaseException) -> bool:
    """Whether ``e`` was raised by flopgraph's own code (a bug), judged by the innermost
    traceback frame that is not torch's: flopgraph's, and not a call-out boundary.

    A FlopgraphError is raised on purpose, so it is never internal; an error torch or the
    model raised, even below a flopgraph frame that called them, is not flopgraph's."""
    if isinstance(e, FlopgraphError):
        return False
    tb = e.__traceback__
    last: CodeType | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if not os.path.abspath(code.co_filename).startswith(_TORCH_DIR):
            last = code
        tb = tb.tb_next
    if last is None:
        return False
    filename = os.path.abspath(last.co_filename)
    return filename.startswith(_OWN_DIR) and last not in BOUNDARIES


def internal_error(e: BaseException, where: str) -> InternalError:
    """An InternalError for ``e``, a bug of flopgraph's met ``where`` (an op or node)."""
    from . import __version__

    return InternalError(
        f"internal error of flopgraph (a bug, not a problem with your model) {where}: "
        f"{type(e).__name__}: {_first_line(safe_str(e))} (flopgraph {__version__}, "
        f"torch {_torch_version()}; please report it with this message)"
    )


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


class IncompleteGraphError(TraceError):
    """fx traced the model, but its forward computed on tensors fx does not see
    (its own weights, constants): that arithmetic ran outside the graph, which
    would undercount it. ``frontend="auto"`` counts such a model on aten."""


def _torch_version() -> str:
    import torch

    return str(torch.__version__)
