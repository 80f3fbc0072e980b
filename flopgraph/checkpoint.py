"""Saved files named on the command line, loaded safely or not at all.

A file is only ever read with ``torch.load(..., weights_only=True)``: torch's
restricted unpickler, which rebuilds tensors and plain containers and refuses
any other object, so a file's pickled code (a ``__reduce__`` payload) never
runs. Nothing else that unpickles (``torch.load`` without ``weights_only``,
``torch.export.load``, ``torch.jit.load``, ``pickle``) is used.

That rules out files holding a whole pickled ``nn.Module``: a model is built
from code the user names (``package.module:callable``), and a checkpoint brings
its weights (``--checkpoint FILE``, a state_dict). Every failure here is a
:class:`UsageError` of one line that names the file.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError

SAVED_SUFFIXES = (".pt", ".pth", ".pt2", ".bin", ".ckpt", ".tar", ".pkl", ".pickle")
"""Suffixes of files ``torch.save`` (or pickle) writes: such a MODEL is a saved file."""
_NESTED = ("state_dict", "model_state_dict", "model", "module", "net")
"""Keys under which training scripts store the state_dict inside a checkpoint dict."""
_TORCH_ADVICE = ("Weights only load failed", "Check the documentation")
"""How paragraphs of torch's refusal that are advice, not the reason, begin."""
_SAVE_HINT = (
    "flopgraph reads files only with torch.load(weights_only=True) and never runs code "
    "from them: save the weights with torch.save(model.state_dict(), FILE) and pass "
    "--checkpoint FILE with the model's spec"
)


def is_saved_file(spec: str) -> bool:
    """Whether a MODEL spec names a saved file rather than code."""
    name = Path(spec).name
    return ":" not in name and name.lower().endswith(SAVED_SUFFIXES)


def safe_load(path: str, device: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)``, onto ``device`` (default: the CPU;
    ``meta`` reads no tensor data at all)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"cannot read {path!r}: no such file")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's
            warnings.simplefilter("ignore")
            return torch.load(file, map_location=device or "cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UsageError(
            f"refused to load {path!r}: it holds more than tensors ({_refusal(e)}); {_SAVE_HINT}"
        ) from e
    except Exception as e:  # a truncated zip, a file of another format, a bad device
        raise UsageError(
            f"cannot load {path!r}: not a file torch.save wrote ({type(e).__name__}: "
            f"{_first_line(str(e))})"
        ) from e


def state_dict_of(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The state_dict in a loaded file: the file itself, or the dict under one of the
    usual keys of a training checkpoint (``state_dict``, ``model``, ...)."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _NESTED:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
    if isinstance(obj, Mapping):
        what = f"a dict with keys {', '.join(map(repr, list(obj)[:5]))}"
    else:
        what = f"a {type(obj).__name__}"
    raise UsageError(
        f"{path!r} holds {what}, not a state_dict (a dict of parameter names to tensors, "
        f"alone or under one of the keys {', '.join(_NESTED)})"
    )


def apply_checkpoint(model: torch.nn.Module, path: str, device: str | None = None) -> None:
    """Load the state_dict saved in ``path`` into ``model``: every key, every shape,
    copied into the model's own tensors (its dtypes and device stay; a meta model stays
    data-less, and the file is then read onto meta too)."""
    weights = state_dict_of(safe_load(path, device), path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if not set(weights) & set(expected) and all(k.startswith("module.") for k in weights):
        weights = {k.removeprefix("module."): v for k, v in weights.items()}  # DataParallel
    problems = _mismatches(expected, weights)
    if problems:
        raise UsageError(f"checkpoint {path!r} does not fit the model: {'; '.join(problems)}")
    _check_values(weights, model, path)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:  # torch's message is a list of lines: its first cause
        causes = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        raise UsageError(
            f"checkpoint {path!r} does not load into the model: {causes[0] if causes else e}"
        ) from e


def _check_values(weights: Mapping[str, torch.Tensor], model: torch.nn.Module, path: str) -> None:
    """Tensors a model cannot take as its weights: sparse ones (a state_dict holds dense
    tensors) and, for a model with real weights, meta ones (saved with no data)."""
    real_model = any(t.device.type != "meta" for t in (*model.parameters(), *model.buffers()))
    for key, t in weights.items():
        if t.layout is not torch.strided:
            raise UsageError(
                f"checkpoint {path!r}: {key} is a {t.layout} tensor; a state_dict holds dense "
                "tensors (save tensor.to_dense())"
            )
        if real_model and t.device.type == "meta":
            raise UsageError(
                f"checkpoint {path!r}: {key} is a meta tensor, saved with no data; pass "
                "--device meta to count with it, or save the weights of a model with data"
            )


def refuse_saved_model(spec: str, device: str | None = None) -> UsageError:
    """The error for a saved file given as MODEL, after loading it safely to say what
    it holds (a malicious file is refused here like any checkpoint)."""
    obj = safe_load(spec, "meta" if device is None else device)
    try:
        weights = state_dict_of(obj, spec)
    except UsageError:
        return UsageError(f"{spec!r} is not a model flopgraph can build: {_SAVE_HINT}")
    return UsageError(
        f"{spec!r} holds a state_dict ({len(weights)} tensors), not a model: name the code "
        f"that builds the model and add --checkpoint {spec}"
    )


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _mismatches(
    expected: Mapping[str, tuple[int, ...]], weights: Mapping[str, torch.Tensor]
) -> list[str]:
    out = []
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            out.append(f"{len(keys)} {label} key(s): {shown}")
    for k, shape in expected.items():
        if k in weights and tuple(weights[k].shape) != shape:
            out.append(f"{k} is {list(weights[k].shape)} in the file, {list(shape)} in the model")
    return out


def _refusal(e: BaseException) -> str:
    """torch's reason for refusing, from its multi-line message (``Unsupported global:
    GLOBAL io.open was not an allowed global by default``, ``Trying to load unsupported
    GLOBAL posix.system whose module posix is blocked``). Its advice, to retry with
    ``weights_only=False``, is left out: that would run the file's code."""
    _, found, reason = " ".join(str(e).split()).partition("WeightsUnpickler error:")
    if found:  # the reason, before torch's advice on allowlisting the global
        reason = reason.split(" Please use")[0].split(" Check the documentation")[0]
    else:
        paragraphs = (" ".join(p.split()) for p in str(e).split("\n\n"))
        reason = "; ".join(p for p in paragraphs if p and not p.startswith(_TORCH_ADVICE))
    reason = reason.strip().rstrip(".")
    return reason or "an object that is not a tensor nor a plain container"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
