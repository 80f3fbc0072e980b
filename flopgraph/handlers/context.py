"""What a handler sees of one op: metadata only, never tensor data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..records import TensorMeta, iter_metas


@dataclass(frozen=True)
class OpContext:
    """One call as a handler sees it.

    Tensors in ``args``, ``kwargs`` and ``out`` are replaced by
    :class:`TensorMeta`; other values (ints, tuples, strings, None) are as the
    model passed them. For a method call ``args[0]`` is the tensor itself.
    """

    kind: str
    """``call_module``, ``call_function`` or ``call_method`` (fx); ``aten`` or
    ``composite`` on the aten frontend, where ``extra`` holds the aten overload name
    (``"overload"``) or the called function (``"target"``)."""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    module: torch.nn.Module | None = None
    """The user's module for a module call: read its settings and parameter
    shapes, never its data, and never change it."""
    node: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """The argument at ``index`` if given positionally, else ``kwargs[name]``."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)

    # computed once and kept in the instance dict: the record and most handlers ask for
    # them, and the fields they come from are frozen
    @property
    def inputs(self) -> tuple[TensorMeta, ...]:
        """Every input tensor, positional then keyword."""
        found: tuple[TensorMeta, ...] | None = self.__dict__.get("_inputs")
        if found is None:
            found = tuple(iter_metas(self.args)) + tuple(iter_metas(self.kwargs))
            self.__dict__["_inputs"] = found
        return found

    @property
    def outputs(self) -> tuple[TensorMeta, ...]:
        found: tuple[TensorMeta, ...] | None = self.__dict__.get("_outputs")
        if found is None:
            found = self.__dict__["_outputs"] = tuple(iter_metas(self.out))
        return found

    @property
    def x(self) -> TensorMeta:
        """The first input tensor (raises a clear error if there is none)."""
        for m in self.inputs:
            return m
        raise ValueError(f"{self.node}: the op has no tensor input")

    @property
    def y(self) -> TensorMeta:
        """The first output tensor (raises a clear error if there is none)."""
        for m in self.outputs:
            return m
        raise ValueError(f"{self.node}: the op has no tensor output")


class NotCounted(Exception):  # noqa: N818 (a signal, not an error of the user's)
    """Raised by a handler that cannot count its op (a part of it has no rule): the op
    is listed as skipped with this message as its reason, never counted as 0."""
