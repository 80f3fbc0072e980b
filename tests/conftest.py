import importlib.util
import os
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ABSENT = frozenset(n for n in ("torchvision", "timm") if importlib.util.find_spec(n) is None)
"""Optional model libraries this environment lacks: the oldest torch tested has no
torchvision build beside it, and timm needs torchvision (see .ci/run)."""


def _skip_if_absent(e: ModuleNotFoundError) -> None:
    """A test (or its fixture) that imports an absent optional library skips, saying
    which; where the library is installed a real import error still fails."""
    name = (e.name or "").partition(".")[0]
    if name in ABSENT:
        pytest.skip(f"needs {name}, which is not installed (torch {torch.__version__})")


def listed(make: Callable[[], list[Any]]) -> list[Any]:
    """Parameters listed at collection time (``zoo.torchvision_classification``); where
    listing them needs an absent optional library, one skipped entry that says which."""
    try:
        return make()
    except ModuleNotFoundError as e:
        name = (e.name or "").partition(".")[0]
        if name not in ABSENT:
            raise
        return [pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"needs {name}"))]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except ModuleNotFoundError as e:
        _skip_if_absent(e)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except ModuleNotFoundError as e:
        _skip_if_absent(e)
        raise


@pytest.fixture(autouse=True)
def _seed_and_quiet():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield


def flop_counter_total(model, *inputs, **kwargs) -> int:
    """FlopCounterMode's total for one forward (the peer we cross-check against)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs, **kwargs)
    return fc.get_total_flops()


GLOBAL_HOOK_DICTS = tuple(
    name
    for name, value in vars(torch.nn.modules.module).items()
    if name.startswith("_global_") and "hook" in name and isinstance(value, dict)
)
"""torch's process-wide module hook dicts (forward, pre, backward, registration ...)."""


def _data(t: torch.Tensor):
    """A copy of a tensor's values, or None where it has none (meta, fake)."""
    from torch._subclasses.fake_tensor import is_fake

    if t.device.type == "meta" or is_fake(t):
        return None
    return t.detach().clone()


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # named_* rather than state_dict(): a user's state_dict hooks must not run here
    out = dict(model.named_parameters(remove_duplicate=False))
    out.update(model.named_buffers(remove_duplicate=False))
    return out


def snapshot(model: torch.nn.Module) -> dict:
    """Everything an analysis must leave as it found it: tensor values, identities and
    version counters (an in-place write bumps them, on meta too), gradients, flags,
    every hook dict of every module and of torch's globals, and each module's
    ``__dict__`` (keys and the identity of each value)."""
    tensors = _tensors(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    params = dict(model.named_parameters(remove_duplicate=False))
    return {
        "state": {k: _data(v) for k, v in tensors.items()},
        "meta": {k: (v.dtype, tuple(v.shape), v.device) for k, v in tensors.items()},
        "ids": {k: id(v) for k, v in tensors.items()},
        "versions": {k: v._version for k, v in tensors.items()},
        "tensor_attrs": {k: {a: id(x) for a, x in vars(v).items()} for k, v in tensors.items()},
        "grads": {
            n: None if p.grad is None else (id(p.grad), p.grad._version, _data(p.grad))
            for n, p in params.items()
        },
        "training": {n: m.training for n, m in modules.items()},
        "requires_grad": {n: p.requires_grad for n, p in params.items()},
        "hooks": {
            n: {k: dict(v) for k, v in vars(m).items() if "hook" in k and isinstance(v, dict)}
            for n, m in modules.items()
        },
        "attrs": {n: {k: id(v) for k, v in vars(m).items()} for n, m in modules.items()},
        "containers": {
            n: {
                k: {name: id(x) for name, x in getattr(m, k).items()}
                for k in ("_parameters", "_buffers", "_modules")
            }
            for n, m in modules.items()
        },  # fmt: skip
        "globals": {
            name: dict(getattr(torch.nn.modules.module, name)) for name in GLOBAL_HOOK_DICTS
        },
    }


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def assert_untouched(model: torch.nn.Module, before: dict) -> None:
    """``model`` (and torch's global hooks) are as ``snapshot`` saw them, bitwise."""
    after = snapshot(model)
    assert after["ids"] == before["ids"], "a parameter or buffer was replaced"
    for k, v in before["state"].items():
        assert _same(v, after["state"][k]), f"{k} changed"
    for k, grad in before["grads"].items():
        now = after["grads"][k]
        assert (grad is None) == (now is None), f"{k}.grad appeared or vanished"
        if grad is not None:
            assert grad[:2] == now[:2] and _same(grad[2], now[2]), f"{k}.grad changed"
    keys = ("meta", "versions", "tensor_attrs", "training", "requires_grad", "hooks", "attrs",
            "containers", "globals")  # fmt: skip
    for key in keys:
        assert after[key] == before[key], key
