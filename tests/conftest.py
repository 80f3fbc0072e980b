import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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


def snapshot(model: torch.nn.Module) -> dict:
    """Everything an analysis must leave as it found it."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "hooks": {
            n: (
                dict(m._forward_hooks),
                dict(m._forward_pre_hooks),
                dict(m._backward_hooks),
            )
            for n, m in model.named_modules()
        },
        "attrs": {n: sorted(vars(m)) for n, m in model.named_modules()},
    }


def assert_untouched(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["ids"] == before["ids"]
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        w = after["state"][k]
        assert v.dtype == w.dtype and v.shape == w.shape, k
        if v.device.type != "meta":
            assert torch.equal(v, w), f"{k} changed"
    for key in ("training", "requires_grad", "hooks", "attrs"):
        assert after[key] == before[key], key
