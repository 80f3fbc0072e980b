"""Small builders shared by the tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import flopgraph


def torchvision_model(name: str, **kwargs) -> nn.Module:
    """A torchvision model without weights. torchvision is imported here, not by the
    test module, so that a test run without it (the oldest torch in .ci/run) skips
    only the tests that build one (tests/conftest.py)."""
    import torchvision

    return torchvision.models.get_model(name, weights=None, **kwargs)


class Fn(nn.Module):
    """Wraps a function of up to three tensors as a model."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x, y=None, z=None):
        args = [a for a in (x, y, z) if a is not None]
        return self.fn(*args)


class Residual(nn.Module):
    """fc -> residual add -> layer norm -> functional relu, on [..., 8]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        return self.norm(x + self.fc(x)).relu()


class AssertingResidual(Residual):
    """The same with a shape assert, which fx cannot trace (the aten frontend can)."""

    def forward(self, x):
        assert x.shape[-1] == 8, "wrong width"
        return super().forward(x)


class ValueBranch(nn.Module):
    """Control flow on a value: only a real run can count it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if x.mean() > 0:
            return self.fc(x)
        return x


def meta_input(value):
    """A shape tuple or TensorSpec as a meta tensor, for peers that need tensors;
    anything else unchanged."""
    if isinstance(value, flopgraph.TensorSpec):
        return value.materialize()
    if isinstance(value, tuple) and all(isinstance(s, int) for s in value):
        return torch.empty(value, device="meta")
    return value


def cost_of(model: nn.Module, *shapes, **kw) -> flopgraph.Cost:
    """The single counted op's cost (asserting exactly one op is counted)."""
    report = flopgraph.analyze(model, tuple(flopgraph.TensorSpec(s) for s in shapes), **kw)
    counted = [r for r in report.records if r.status is flopgraph.Status.COUNTED]
    assert len(counted) == 1, [(r.op, r.status) for r in report.records]
    assert not report.skipped
    return counted[0].cost


def fn_cost(fn: Callable[..., torch.Tensor], *shapes) -> flopgraph.Cost:
    return cost_of(Fn(fn), *shapes)


GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    """``text`` equals tests/golden/``name`` exactly. FLOPGRAPH_UPDATE_GOLDEN=1 rewrites
    the file instead; read the new file before committing it."""
    import os

    path = GOLDEN_DIR / name
    if os.environ.get("FLOPGRAPH_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file; diff it against {path}"


def bn_model_with_hooks() -> tuple[nn.Module, list[str]]:
    """conv -> batch norm (training) -> relu, one frozen weight, and two hooks that
    record into the returned list if they ever run."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    model.train()
    model[0].weight.requires_grad_(False)
    calls: list[str] = []
    model[1].register_forward_hook(lambda *a: calls.append("hook"))
    model.register_forward_pre_hook(lambda *a: calls.append("pre"))
    return model, calls


def corrupt_hook_rule(
    monkeypatch, cls: type[nn.Module], change: Callable[[flopgraph.Cost], flopgraph.Cost]
) -> None:
    """The hook counter of :func:`flopgraph.compare` (only) counts ``cls`` with its
    rule's cost passed through ``change``; the graph side keeps the true rule."""
    import flopgraph.hooks
    from flopgraph.analyze import _registry

    registry = _registry("default", None).copy()
    rule = registry.lookup_module(cls)
    assert rule is not None and rule.handler is not None
    handler = rule.handler

    def corrupted(ctx):
        cost = handler(ctx)
        return change(cost if isinstance(cost, flopgraph.Cost) else flopgraph.Cost(0, cost))

    registry.add([cls], dataclasses.replace(rule, handler=corrupted), replace=True)
    monkeypatch.setattr(flopgraph.hooks, "_registry", lambda *a, **k: registry)


class RoI(nn.Module):
    """A torchvision RoI layer on a feature map and rois [K, 5]."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x, rois):
        return self.layer(x, rois)
