"""What a user may pass as model inputs, and their normalisation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """A tensor described by shape and dtype, for users with no real input."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise InputError(f"TensorSpec shape must be non-negative ints, got {self.shape!r}")
        if not isinstance(self.dtype, torch.dtype):
            raise InputError(f"TensorSpec dtype must be a torch.dtype, got {self.dtype!r}")
        object.__setattr__(self, "shape", shape)

    def materialize(self) -> torch.Tensor:
        """A data-less (meta) tensor of this shape and dtype."""
        return torch.empty(self.shape, dtype=self.dtype, device="meta")


def _is_shape(x: Any) -> bool:
    return (
        isinstance(x, (tuple, list, torch.Size))
        and len(x) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) for s in x)
    )


def _one(x: Any) -> Any:
    if isinstance(x, TensorSpec):
        return x.materialize()
    if _is_shape(x):
        return TensorSpec(tuple(x)).materialize()
    return x


def normalize_inputs(
    inputs: Any, kwargs: Mapping[str, Any] | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword inputs with specs and shapes turned into meta tensors.

    ``inputs`` is one tensor, a TensorSpec, a shape tuple of ints, or a tuple or
    list of positional inputs (each of those, or any other value the forward takes).
    """
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InputError(f"kwargs must be a dict of keyword inputs, got {type(kwargs).__name__}")
    if inputs is None:
        args: tuple[Any, ...] = ()
    elif isinstance(inputs, (torch.Tensor, TensorSpec)) or _is_shape(inputs):
        args = (inputs,)
    elif isinstance(inputs, (tuple, list)):
        args = tuple(inputs)
    else:
        args = (inputs,)
    return tuple(_one(a) for a in args), {k: _one(v) for k, v in (kwargs or {}).items()}


def describe_inputs(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _describe(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"{str(v.dtype).removeprefix('torch.')}{list(v.shape)}"
    return repr(v)
