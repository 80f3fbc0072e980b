"""What the command line names, turned into a model and its inputs.

A model spec is a built-in example name (``lenet``), ``package.module:callable``
(``torchvision.models:resnet50``) or ``path/to/file.py:callable``; the callable
is a model class, a factory function, or an ``nn.Module`` instance. An input
spec is ``[name=][dtype:]DIMS`` (``1x3x224x224``, ``int64:1x128``,
``attention_mask=int64:1x128``). Every failure here is a :class:`UsageError`
whose message names the spec and what was expected.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import is_saved_file, refuse_saved_model
from .errors import UsageError
from .examples import EXAMPLES
from .inputs import TensorSpec
from .records import dtype_from_name

_INPUT_HELP = "expected [name=][dtype:]DIMS such as 1x3x224x224 or int64:1x128"
_SHOWN = 60
"""Characters of a bad argument quoted back in its error (the line stays readable)."""


@dataclass(frozen=True)
class Inputs:
    """Positional and keyword model inputs given on the command line: shapes, or the
    random tensors ``--real`` made of them."""

    args: tuple[TensorSpec | torch.Tensor, ...] = ()
    kwargs: Mapping[str, TensorSpec | torch.Tensor] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.args or self.kwargs)


@dataclass(frozen=True)
class LoadedModel:
    """A built model and the input its spec suggests (examples only)."""

    model: torch.nn.Module
    label: str
    """The spec as the user wrote it."""
    default_inputs: Inputs = field(default_factory=Inputs)


_DTYPE_ALIASES = {
    "long": "int64", "int": "int32", "short": "int16", "half": "float16", "float": "float32",
    "double": "float64", "fp16": "float16", "fp32": "float32", "bf16": "bfloat16",
}  # fmt: skip
"""torch's own aliases (``torch.long``) and the usual short names."""


def parse_input(text: str) -> tuple[str | None, TensorSpec]:
    """``"int64:1x128"`` -> ``(None, TensorSpec((1, 128), torch.int64))``;
    ``"mask=1x8"`` -> ``("mask", TensorSpec((1, 8)))``."""
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = "", text
    elif not name.isidentifier():
        raise UsageError(
            f"bad --input {_shown(text)}: {name!r} is not an argument name; {_INPUT_HELP}"
        )
    dtype_text, colon, dims = rest.rpartition(":")
    dtype = torch.float32
    if colon:
        try:
            dtype = dtype_from_name(_DTYPE_ALIASES.get(dtype_text.strip(), dtype_text.strip()))
        except KeyError:
            raise UsageError(
                f"bad --input {_shown(text)}: unknown dtype {dtype_text!r} (e.g. float32, float16, "
                "bfloat16, int64, bool)"
            ) from None
    if str(dtype).removeprefix("torch.").startswith(("qint", "quint")):
        raise UsageError(
            f"bad --input {_shown(text)}: {dtype_text.strip()} is a quantized dtype, whose tensors "
            "need a scale and zero point that a shape cannot give; pass the float input "
            "(a quantized model's QuantStub quantizes it)"
        )
    parts = dims.lower().replace(",", "x").split("x")
    if not all(p.strip().isdigit() for p in parts):  # sizes by name: B, T, H, W (symbolic)
        parts = dims.replace(",", "x").split("x")
        if not all(p.strip().isdigit() or p.strip().isidentifier() for p in parts):
            raise UsageError(f"bad --input {_shown(text)}: {_INPUT_HELP}")
    shape = tuple(int(p) if p.strip().isdigit() else p.strip() for p in parts)
    if 0 in shape:
        raise UsageError(
            f"bad --input {_shown(text)}: a dimension of 0 makes an empty tensor (0 FLOPs)"
        )
    return (name or None), TensorSpec(shape, dtype)


def parse_inputs(texts: list[str] | None) -> Inputs:
    """All ``--input`` values: unnamed ones are positional, in order."""
    args: list[TensorSpec] = []
    kwargs: dict[str, TensorSpec] = {}
    for text in texts or ():
        name, spec = parse_input(text)
        if name is None:
            if kwargs:
                raise UsageError(
                    f"--input {_shown(text)}: positional inputs must come before named ones"
                )
            args.append(spec)
        elif name in kwargs:
            raise UsageError(f"--input {_shown(text)}: input {name!r} given twice")
        else:
            kwargs[name] = spec
    return Inputs(tuple(args), kwargs)


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``--kwargs`` JSON: an object of keyword arguments for the model constructor."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"bad --kwargs {_shown(text)}: not JSON ({e.msg} at column {e.colno})"
        ) from e
    except RecursionError:  # json's decoder recurses once per nested array or object
        raise UsageError(f"bad --kwargs {_shown(text)}: nested too deeply") from None
    if not isinstance(value, dict):
        raise UsageError(
            f"bad --kwargs {_shown(text)}: expected a JSON object such as '{{\"n\": 2}}'"
        )
    return value


def _shown(text: str) -> str:
    """``text`` quoted, cut to its first characters when long (a 10,000-bracket
    argument is named, not echoed)."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text):,} characters)"


def load_model(spec: str, kwargs: Mapping[str, Any], device: str | None = None) -> LoadedModel:
    """Build the model ``spec`` names, in eval mode, under ``torch.device(device)``. A
    saved file is refused, after a safe look at what it holds (see :mod:`.checkpoint`)."""
    if is_saved_file(spec):
        raise refuse_saved_model(spec, device)
    if spec in EXAMPLES:
        ex = EXAMPLES[spec]
        model = _build(ex.build, spec, kwargs, device)
        return LoadedModel(model, spec, Inputs((TensorSpec(ex.input_shape),)))
    where, colon, attr = spec.rpartition(":")
    if not colon or not where or not attr or "\\" in attr or "/" in attr:
        close = difflib.get_close_matches(spec, EXAMPLES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"unknown model {spec!r}: not a built-in example (see --list-examples) nor "
            "package.module:callable nor path/to/file.py:callable" + hint
        )
    module = _import_file(where, spec) if _is_path(where) else _import_module(where, spec)
    target = _attribute(module, attr, spec)
    return LoadedModel(_build(target, spec, kwargs, device), spec)


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _import_module(name: str, spec: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as e:  # ImportError, or any error raised while the module runs
        raise UsageError(f"cannot import {name!r} (model {spec!r}): {_one_line(e)}") from e


def _import_file(path_text: str, spec: str) -> Any:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"cannot import {path_text!r} (model {spec!r}): no such file")
    name = f"_flopgraph_user_{path.stem}_{abs(hash(str(path))):x}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"cannot import {path_text!r} (model {spec!r}): not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    # the file's own folder comes first, so its sibling imports work as in a script
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:  # any error raised while the file runs
        del sys.modules[name]
        raise UsageError(f"cannot import {path_text!r} (model {spec!r}): {_one_line(e)}") from e
    return module


def _attribute(module: Any, attr: str, spec: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(
                f"model {spec!r}: {getattr(obj, '__name__', type(obj).__name__)!r} has no "
                f"attribute {part!r}"
            )
        obj = getattr(obj, part)
    return obj


def _build(
    target: Any, spec: str, kwargs: Mapping[str, Any], device: str | None
) -> torch.nn.Module:
    if isinstance(target, torch.nn.Module):
        if kwargs:
            raise UsageError(f"model {spec!r} is a module instance: --kwargs cannot apply to it")
        return target.eval()
    if not callable(target):
        raise UsageError(f"model {spec!r} is a {type(target).__name__}, not a callable or module")
    place = _device(device)
    try:
        with place:
            model = target(**kwargs)
    except Exception as e:  # any error in the user's constructor
        raise UsageError(f"building model {spec!r} failed: {_one_line(e)}") from e
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"model {spec!r} returned {type(model).__name__}, expected a torch.nn.Module"
        )
    return model.eval()


def _device(device: str | None) -> contextlib.AbstractContextManager[Any]:
    """The context the constructor runs in: ``torch.device(device)`` makes its tensors
    there (``meta``: no memory at all)."""
    if device is None:
        return contextlib.nullcontext()
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise UsageError(f"bad --device {device!r}: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
