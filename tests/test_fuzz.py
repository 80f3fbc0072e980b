"""Fuzzing: random small models from a grammar of layers, on the meta device.

The grammar tracks the shape of the running tensor (an image [N, C, H, W], a feature
vector [N, F] or a sequence [N, L, F]) and draws only layers that accept it:
convolutions (groups, strides, bias), pooling, batch and group norms, activations,
dropout, residual blocks, flatten and reshapes, linear layers, layer norms, softmax
and a self-attention-like matmul. For every model, in train or eval mode:

- analyze never crashes, on either frontend, and skips nothing;
- every op is accounted for: counted + free + skipped == records, and the records
  are exactly the fx graph's call nodes, or the aten ops recorded (each composite
  standing for the ops it absorbed);
- fx and aten agree on the total and on every module's cost;
- ``2 * macs`` equals FlopCounterMode on the same meta model;
- a wrong input raises a FlopgraphError whose message is one line, never a torch
  internal error.

Bounded: 40 + 20 examples of small models, a few seconds in all
(``FLOPGRAPH_FUZZ_EXAMPLES=2000`` for a long hunt).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import flop_counter_total
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import nn

import flopgraph
from flopgraph.count_aten import composite_rule
from flopgraph.frontends.aten import ModuleCall, TorchCall, trace_aten
from flopgraph.frontends.fx import trace_fx
from flopgraph.handlers import DEFAULT
from flopgraph.records import Status

EXAMPLES = int(os.environ.get("FLOPGRAPH_FUZZ_EXAMPLES", "40"))
"""Examples per property; FLOPGRAPH_FUZZ_EXAMPLES=2000 for a long hunt."""
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Sigmoid, nn.Tanh, nn.LeakyReLU,
               nn.ELU, nn.Mish, nn.Softplus)  # fmt: skip


class Residual(nn.Module):
    """x + body(x): the body keeps the shape."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Reshape(nn.Module):
    """[N, ...] -> [N, *shape]."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class SelfScores(nn.Module):
    """[N, L, F] -> softmax(x @ x^T / sqrt(F)) @ x: two batched matmuls and a softmax."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = x @ x.transpose(-1, -2) / x.shape[-1] ** 0.5
        return F.softmax(scores, dim=-1) @ x


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def image_layer(draw: Any, shape: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    n, c, h, w = shape
    kind = draw(st.sampled_from(["conv", "conv", "bn", "gn", "pool", "act", "residual",
                                 "dropout", "adaptive"]))  # fmt: skip
    if kind == "conv":
        out = draw(st.integers(1, 8))
        groups = draw(st.sampled_from([g for g in _divisors(c) if out % g == 0]))
        k, stride = draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 2]))
        conv = nn.Conv2d(c, out, k, stride, k // 2, groups=groups, bias=draw(st.booleans()))
        return conv, (n, out, (h - 1) // stride + 1, (w - 1) // stride + 1)
    # torch refuses to normalize a single value (batch norm in training, group norm)
    if kind == "bn" and n * h * w > 1:
        return nn.BatchNorm2d(c, affine=draw(st.booleans())), shape
    groups = [g for g in _divisors(c) if c // g * h * w > 1]
    if kind == "gn" and groups:
        return nn.GroupNorm(draw(st.sampled_from(groups)), c), shape
    if kind == "pool" and min(h, w) >= 2:
        pool = draw(st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]))
        return pool(2), (n, c, h // 2, w // 2)
    if kind == "residual":
        norm = nn.BatchNorm2d(c) if n * h * w > 1 else nn.Identity()
        body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), norm,
                             draw(st.sampled_from(ACTIVATIONS))())  # fmt: skip
        return Residual(body), shape
    if kind == "dropout":
        return nn.Dropout2d(draw(st.sampled_from([0.0, 0.5]))), shape
    if kind == "adaptive":
        size = draw(st.integers(1, 3))
        return nn.AdaptiveAvgPool2d(size), (n, c, size, size)
    return draw(st.sampled_from(ACTIVATIONS))(), shape


@st.composite
def vector_layer(draw: Any, shape: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    n, *rest, f = shape
    kind = draw(st.sampled_from(["linear", "linear", "ln", "act", "residual", "dropout",
                                 "softmax", "reshape", "attend"]))  # fmt: skip
    if kind == "linear":
        out = draw(st.integers(1, 12))
        return nn.Linear(f, out, bias=draw(st.booleans())), (n, *rest, out)
    if kind == "ln":
        return nn.LayerNorm(f, elementwise_affine=draw(st.booleans())), shape
    if kind == "residual":
        body = nn.Sequential(nn.Linear(f, f), draw(st.sampled_from(ACTIVATIONS))())
        return Residual(body), shape
    if kind == "dropout":
        return nn.Dropout(draw(st.sampled_from([0.0, 0.25]))), shape
    if kind == "softmax":
        return nn.Softmax(dim=-1), shape
    if kind == "reshape" and not rest and len(_divisors(f)) > 2:
        length = draw(st.sampled_from(_divisors(f)[1:-1]))  # [N, F] -> [N, L, F / L]
        return Reshape(length, f // length), (n, length, f // length)
    if kind == "reshape" and rest:
        return nn.Flatten(), (n, rest[0] * f)
    if kind == "attend" and rest:
        return SelfScores(), shape
    return draw(st.sampled_from(ACTIVATIONS))(), shape


@st.composite
def models(draw: Any) -> tuple[nn.Module, tuple[int, ...]]:
    """A Sequential of 1 to 6 image layers, maybe flattened into 0 to 5 vector layers."""
    shape: tuple[int, ...] = (draw(st.integers(1, 2)), draw(st.integers(1, 4)),
                              draw(st.integers(1, 9)), draw(st.integers(1, 9)))  # fmt: skip
    start = shape
    layers: list[nn.Module] = []
    with torch.device("meta"):
        for _ in range(draw(st.integers(1, 6))):
            layer, shape = draw(image_layer(shape))
            layers.append(layer)
        if draw(st.booleans()):
            layers.append(nn.Flatten())
            shape = (shape[0], shape[1] * shape[2] * shape[3])
            for _ in range(draw(st.integers(0, 5))):
                layer, shape = draw(vector_layer(shape))
                layers.append(layer)
    model = nn.Sequential(*layers).train(draw(st.booleans()))
    note(f"{start} -> {shape}, training={model.training}: {model}")
    return model, start


def _aten_records_expected(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Records the aten frontend must produce: one per recorded aten op, except that a
    module call with a module rule, and a torch call the convention counts whole, are
    one record each for all the ops they ran."""
    trace = trace_aten(model, (torch.empty(shape, device="meta"),), {}, DEFAULT)
    items = list(trace.moved_items())
    modules = [i for i in items if isinstance(i, ModuleCall)]
    whole = [i for i in items if isinstance(i, TorchCall) and composite_rule(i, DEFAULT)]
    whole += modules
    return len(list(trace.ops())) - sum(len(i.ops) for i in whole) + len(whole)


def _accounted(report: flopgraph.Report) -> None:
    counts = report.status_counts()
    assert sum(counts.values()) == len(report.records)
    assert counts.get(Status.SKIPPED, 0) == 0 and report.skipped == {}


@SETTINGS
@given(models())
def test_random_models_count_alike_everywhere(case):
    model, shape = case
    fx = flopgraph.analyze(model, shape, frontend="fx")
    at = flopgraph.analyze(model, shape, frontend="aten")
    for report in (fx, at):
        _accounted(report)
    calls = [n for n in trace_fx(model, (torch.empty(shape, device="meta"),), {}, DEFAULT)
             .graph.nodes if n.op in ("call_module", "call_function", "call_method")]  # fmt: skip
    assert len(fx.records) == len(calls)
    assert len(at.records) == _aten_records_expected(model, shape)
    assert fx.cost == at.cost
    assert fx.by_module() == at.by_module()
    # FlopCounterMode counts exactly the multiply-adds of contractions, twice
    assert 2 * fx.macs == flop_counter_total(model, torch.empty(shape, device="meta"))


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(), st.sampled_from(["fx", "aten"]), st.integers(1, 3))
def test_wrong_channels_raise_one_flopgraph_error(case, frontend, extra):
    model, (n, c, h, w) = case
    readers = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.Linear, nn.LayerNorm, Reshape)
    if not any(isinstance(m, readers) for m in model.modules()):
        return  # nothing in this model reads the channel count
    error = flopgraph.PropagationError if frontend == "fx" else flopgraph.TraceError
    with pytest.raises(error) as info:
        flopgraph.analyze(model, (n, c + extra, h, w), frontend=frontend)
    message = str(info.value)
    assert message and "\n" not in message
    assert "with inputs" in message if frontend == "fx" else "failed on inputs" in message
