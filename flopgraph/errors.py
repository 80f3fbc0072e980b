"""Exception and warning classes.

Every error flopgraph raises derives from :class:`FlopgraphError`, so a caller
can catch one type; each message names what was wrong and where.
"""

from __future__ import annotations


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


class UsageError(FlopgraphError):
    """A command line named a model, input or option that cannot be used
    (the command exits with status 2, before any analysis starts)."""
