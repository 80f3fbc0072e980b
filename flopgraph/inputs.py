"""What a user may pass as model inputs, and their normalisation."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """A tensor described by shape and dtype, for users with no real input. A size
    given as a name (``TensorSpec(("B", "T"), torch.int64)``) is a symbol: the
    analysis is then symbolic, its counts formulas in the names (spec section H)."""

    shape: tuple[int | str, ...]
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        for s in shape:
            if isinstance(s, str):
                if not _NAME.fullmatch(s):
                    raise InputError(
                        f"TensorSpec size name {s!r} is not a name (letters, digits, _)"
                    )
            elif not (isinstance(s, int) and not isinstance(s, bool) and s >= 0):
                raise InputError(
                    f"TensorSpec shape must be non-negative ints or size names, got {self.shape!r}"
                )
        if not isinstance(self.dtype, torch.dtype):
            raise InputError(f"TensorSpec dtype must be a torch.dtype, got {self.dtype!r}")
        if not any(isinstance(s, str) for s in shape):
            _check_size(shape, self.dtype)  # type: ignore[arg-type]
        object.__setattr__(self, "shape", shape)

    @property
    def symbolic(self) -> bool:
        """True when a size is a name."""
        return any(isinstance(s, str) for s in self.shape)

    def materialize(self) -> torch.Tensor:
        """A data-less (meta) tensor of this shape and dtype."""
        if self.symbolic:
            raise InputError(f"TensorSpec{self.shape} has named sizes: it has no one shape")
        return torch.empty(self.shape, dtype=self.dtype, device="meta")  # type: ignore[arg-type]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_MAX_BYTES = 2**63 - 1
"""torch sizes storage in signed 64-bit bytes: a tensor past this cannot exist."""


def _check_size(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """An InputError for a shape no tensor can have (torch's own errors are a bare
    overflow message or a C++ traceback)."""
    numel = 1
    for s in shape:
        numel *= s
    nbytes = numel * dtype.itemsize
    if nbytes > _MAX_BYTES:
        raise InputError(
            f"shape {tuple(shape)} of {str(dtype).removeprefix('torch.')} needs {nbytes:,} "
            f"bytes, more than torch can address ({_MAX_BYTES:,}): check the input shape"
        )


def _check_tensor(t: torch.Tensor, where: str) -> None:
    """Tensors no frontend can run: nested (jagged) tensors, whose fake twins torch's
    fake mode cannot build."""
    if t.is_nested:
        raise InputError(
            f"{where} is a nested tensor (layout {t.layout}), which flopgraph cannot count: "
            "pass a padded dense tensor instead (t.to_padded_tensor(0.0)) and, where the "
            "model takes one, a mask"
        )


def _is_shape(x: Any) -> bool:
    return (
        isinstance(x, (tuple, list, torch.Size))
        and len(x) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) for s in x)
    )


def _one(x: Any) -> Any:
    if isinstance(x, TensorSpec):
        return x if x.symbolic else x.materialize()  # a symbolic one: see symbolic.py
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
    if isinstance(inputs, str) and re.fullmatch(r"\d+(\s*[x,]\s*\d+)*", inputs.strip()):
        raise InputError(
            f"inputs is the string {inputs!r}: pass a shape tuple such as "
            f"{tuple(int(d) for d in re.split(r'[x,]', inputs.replace(' ', '')))}, a "
            "TensorSpec or a tensor (the NxCxHxW form is the command line's --input)"
        )
    if inputs is None:
        args: tuple[Any, ...] = ()
    elif isinstance(inputs, (torch.Tensor, TensorSpec)) or _is_shape(inputs):
        args = (inputs,)
    elif isinstance(inputs, (tuple, list)):
        args = tuple(inputs)
    else:
        args = (inputs,)
    out_args = tuple(_one(a) for a in args)
    out_kwargs = {k: _one(v) for k, v in (kwargs or {}).items()}
    for i, a in enumerate(out_args):
        if isinstance(a, torch.Tensor):
            _check_tensor(a, f"input {i}")
    for k, v in out_kwargs.items():
        if isinstance(v, torch.Tensor):
            _check_tensor(v, f"input {k!r}")
    return out_args, out_kwargs


def describe_inputs(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _describe(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"{str(v.dtype).removeprefix('torch.')}{list(v.shape)}"
    return repr(v)
