"""The aten frontend's short road through FakeTensorMode (frontends/fastfake.py) gives
the very tensors the mode gives, and the same records as the ordinary road."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import torchvision_model

import flopgraph
import flopgraph.frontends.aten as aten_frontend
from flopgraph import TensorSpec
from flopgraph.frontends.fastfake import MISS, FastFake, fast_fake

transformers = pytest.importorskip("transformers")


def _llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100, use_cache=False,
    )  # fmt: skip
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(config).eval()


def _gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=100)
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(config).eval()


CASES = {
    "llama": (_llama, TensorSpec((1, 16), torch.int64)),
    "gpt2": (_gpt2, TensorSpec((1, 16), torch.int64)),
    "resnet18": (lambda: torchvision_model("resnet18").eval(), (1, 3, 64, 64)),
    "swin_t": (lambda: torchvision_model("swin_t").eval(), (1, 3, 64, 64)),
}


def _records(report: flopgraph.Report) -> list[Any]:
    return [
        (r.op, r.target, r.module, r.inputs, r.outputs, r.macs, r.flops) for r in report.records
    ]


@pytest.mark.parametrize("name", CASES)
def test_short_road_matches_the_mode_op_by_op(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, inputs = CASES[name]
    model = build()
    made: list[FastFake] = []

    def checking(mode: Any) -> FastFake | None:
        fast = fast_fake(mode, check=True)  # every repeat also runs through the mode
        made.extend([fast] if fast is not None else [])
        return fast

    monkeypatch.setattr(aten_frontend, "fast_fake", checking)
    checked = flopgraph.analyze(model, inputs, frontend="aten")
    assert made and made[0].hits > 0  # the short road was taken, and agreed each time
    monkeypatch.setattr(aten_frontend, "fast_fake", lambda mode: None)
    ordinary = flopgraph.analyze(model, inputs, frontend="aten")
    assert _records(checked) == _records(ordinary)


def test_ops_the_mode_treats_specially_take_the_ordinary_road() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode()
    fast = fast_fake(mode)
    assert fast is not None
    with mode:
        x = torch.empty(3, 7, 5)  # a shape no other test gives mul: a cold entry
    real = torch.ones(5)
    aten = torch.ops.aten
    assert fast(aten.add_.Tensor, (x, x), {}) is MISS  # writes to its input
    assert fast(aten.nonzero.default, (x,), {}) is MISS  # output shape depends on values
    assert fast(aten.add.Tensor, (x, real), {}) is MISS  # a real tensor argument
    assert fast(aten.mul.Tensor, (x, x), {}) is not MISS  # first call: through the mode
    assert fast.hits == 0
    assert fast(aten.mul.Tensor, (x, x), {}).shape == (3, 7, 5)  # a repeat: kept metadata
    assert fast.hits == 1


def test_an_op_it_keeps_leaves_no_entry_in_the_modes_own_cache():
    # a first call goes through FakeTensorMode with the mode's cache off: its entry
    # would never be read (repeats stop at FastFake), and making it costs
    from torch._subclasses.fake_tensor import FakeTensorMode

    from flopgraph.frontends import fastfake

    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU()).eval()
    fastfake._ENTRIES.clear()
    FakeTensorMode.cache_clear()
    report = flopgraph.analyze(model, torch.randn(3, 7), frontend="aten")
    kept = {str(op) for op, _ in fastfake._ENTRIES}
    assert kept == {"aten.t.default", "aten.addmm.default", "aten.relu.default"}
    assert FakeTensorMode.cache_info().size == 0
    assert report.macs == 3 * 7 * 5  # and the count is the linear's, by hand
