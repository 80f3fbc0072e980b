"""Which module hooks are part of the model, and which are the user's.

Some models compute through hooks they install themselves: transformers 5
collects hidden states with forward hooks (DPT, Segformer, UperNet, Llava read
them back), ``torch.nn.utils.weight_norm`` and ``spectral_norm`` compute the
weight in a pre-hook, timm's feature extractors collect features with hooks.
Others are the user's own (a print, a hook that appends to a global list), and
must never run during an analysis.

The rule: a hook is part of the model when its function is defined in the
model's own library, an installed package (the root model's class lives under a
``site-packages`` directory: ``transformers``, ``timm``, ``torchvision``) whose
top-level package also defines the hook; or in torch's own hook-based model
utilities (``torch.nn.utils``'s weight_norm and spectral_norm,
``torch.ao.quantization``'s observers); or when it is marked with
:func:`part_of_model`. Every other hook is the user's: one defined in a script, a
notebook, a test or the user's own repository, whatever model it is on (a model
defined in the user's own code has no library, so its hooks are the user's
unless marked). The aten frontend runs the model's hooks on the shadow (so they
see and change only twins); the fx frontend runs no hooks, so a model with hooks
of its own goes to aten.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from collections.abc import Callable
from typing import Any, TypeVar

import torch

_F = TypeVar("_F", bound=Callable[..., Any])
_TORCH_OWN = ("torch.nn.utils", "torch.ao.quantization")
HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks")
"""The hooks a forward runs; their ``_with_kwargs`` and ``_always_called`` flags are
keyed by the same handle ids."""


def part_of_model(hook: _F) -> _F:
    """Mark ``hook`` as part of the model it is registered on: flopgraph runs it (on
    the shadow) when counting, as it runs the hooks of a library's models."""
    hook.__flopgraph_model_hook__ = True  # type: ignore[attr-defined]
    return hook


def library_of(model: torch.nn.Module) -> str:
    """The top-level package of the model's class when that is an installed package
    (its file under site-packages), else ``""``: the user's own code."""
    module = sys.modules.get(type(model).__module__)
    file = getattr(module, "__file__", None) or ""
    if not file or not os.path.abspath(file).startswith(_INSTALLED):
        return ""
    return type(model).__module__.split(".")[0]


def _installed() -> tuple[str, ...]:
    paths = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    paths.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    return tuple(os.path.join(os.path.abspath(p), "") for p in paths)


_INSTALLED = _installed()


def defined_in(hook: Callable[..., Any]) -> str:
    """The module a hook's code is defined in (through partials and bound methods;
    a callable object: its class's module)."""
    fn: Any = hook
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)
    module = getattr(fn, "__module__", None)
    if not isinstance(module, str) or not module:
        module = type(fn).__module__
    return module


def is_model_hook(hook: Callable[..., Any], library: str) -> bool:
    """Whether ``hook`` belongs to a model of ``library`` (see the module docstring)."""
    if getattr(hook, "__flopgraph_model_hook__", False):
        return True
    module = defined_in(hook)
    if module.startswith(_TORCH_OWN):
        return True
    return bool(library) and module.split(".")[0] == library


def model_hooks(model: torch.nn.Module) -> list[str]:
    """``"path: hook"`` for each hook of the model's own in ``model``, in module order."""
    library = library_of(model)
    found: list[str] = []
    for path, m in model.named_modules():
        for name in HOOK_DICTS:
            for hook in getattr(m, name, {}).values():
                if is_model_hook(hook, library):
                    label = getattr(hook, "__qualname__", None) or type(hook).__name__
                    found.append(f"{path or type(model).__name__}: {label}")
    return found
