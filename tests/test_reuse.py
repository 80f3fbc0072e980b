"""Block reuse (flopgraph/frontends/reuse.py): a repeated block's forward runs once per
distinct call on fake tensors and the other calls replay its records. Each test
checks that the block really ran fewer times (so reuse happened, or did not where it
must not) and that the count is the hand-derived one, equal to a run without reuse."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import flopgraph
from flopgraph import TensorSpec

transformers = pytest.importorskip("transformers")
from test_closed_form import _llama, llama_closed_form  # noqa: E402

from flopgraph.generation import _cache_argument  # noqa: E402


@contextmanager
def forward_calls(cls: type[nn.Module]) -> Iterator[list[int]]:
    """How many times ``cls.forward`` runs (shadows share their class's forward)."""
    calls = [0]
    original = cls.forward

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(self, *args, **kwargs)

    cls.forward = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        cls.forward = original  # type: ignore[method-assign]


def both(model: nn.Module, inputs: object, layer: type[nn.Module], kwargs=dict):  # type: ignore[no-untyped-def]
    """(report with reuse, report without, calls of ``layer.forward`` in each);
    ``kwargs()`` makes the keyword inputs of each analysis."""
    with forward_calls(layer) as on:
        fast = flopgraph.analyze(model, inputs, kwargs=kwargs(), frontend="aten")
    with forward_calls(layer) as off:
        slow = flopgraph.analyze(model, inputs, kwargs=kwargs(), frontend="aten", reuse=False)
    return fast, slow, on[0], off[0]


@pytest.mark.parametrize("use_cache", [False, True])
def test_llama_layers_run_once_and_count_the_closed_form(use_cache: bool) -> None:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    model, config = _llama(
        hidden_size=64, intermediate_size=160, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=500, use_cache=use_cache,
    )  # fmt: skip
    fast, slow, on, off = both(model, TensorSpec((2, 12), torch.int64), LlamaDecoderLayer)
    # with a cache, layer 0's read of entry 0 of the cache may mean "the first layer"
    # as well as "my own": layer 1 runs too, and reads only its own entry
    assert (on, off) == ((2, 5) if use_cache else (1, 5))
    want = llama_closed_form(config, 12, b=2)
    assert (fast.macs, fast.flops) == (want.macs, want.flops)
    assert fast.records == slow.records and fast.to_json() == slow.to_json()
    # the replayed layers' records sit in their own modules
    layer4 = fast.by_module()["model.layers.4"]
    assert layer4 == fast.by_module()["model.layers.0"] and layer4.macs > 0


@pytest.mark.parametrize("lengths", [(7, 7, 7, 7), (7, 7, 5, 7)])
def test_a_cache_holding_tokens_replays_layers_whose_own_part_is_alike(lengths) -> None:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    model, config = _llama(
        hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4,
        vocab_size=500, use_cache=True,
    )  # fmt: skip
    real = model.to_empty(device="cpu")

    def past() -> dict[str, object]:
        cache = transformers.DynamicCache(config=config)
        for i, n in enumerate(lengths):  # n past tokens in layer i: each reads its own part
            cache.update(torch.zeros(1, 4, n, 16), torch.zeros(1, 4, n, 16), i)
        return {_cache_argument(real): cache}

    fast, slow, on, off = both(real, torch.zeros(1, 1, dtype=torch.int64), LlamaDecoderLayer, past)
    # layers 0 and 1 run (layer 0 cannot tell its own entry from the first); a layer
    # whose part holds another length runs; the others replay
    assert (on, off) == (2 + len(set(lengths[2:]) - {lengths[1]}), 4)
    assert fast.records == slow.records
    # attention over n + 1 positions in each layer: 4 heads x 1 x (n + 1) x (16 + 16) MACs
    cores = [r for r in fast.records if r.op == "scaled_dot_product_attention"]
    assert [r.macs for r in cores] == [4 * 1 * (n + 1) * 32 for n in lengths]

    # the user's cache comes out as it went in: the trace wrote into a copy
    given = past()
    cache = next(iter(given.values()))
    layers = [(layer.keys, layer.values) for layer in cache.layers]
    flopgraph.analyze(real, torch.zeros(1, 1, dtype=torch.int64), kwargs=given)
    assert cache.get_seq_length() == 7
    for layer, (keys, values), n in zip(cache.layers, layers, lengths, strict=True):
        assert layer.keys is keys and layer.values is values
        assert type(layer.keys) is torch.Tensor and layer.keys.shape == (1, 4, n, 16)


def test_a_generation_decodes_from_the_cache_the_replayed_prefill_wrote() -> None:
    # the decode step reads every layer's part of the cache the prefill left: a
    # replayed prefill layer writes its part as the layer it copies did
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    model, config = _llama(
        hidden_size=64, intermediate_size=160, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=500,
    )  # fmt: skip
    with forward_calls(LlamaDecoderLayer) as on:
        fast = flopgraph.generation(model, prompt=6, new_tokens=3, batch=2)
        step = fast.decode(9)
    with forward_calls(LlamaDecoderLayer) as off:
        slow = flopgraph.generation(model, prompt=6, new_tokens=3, batch=2, reuse=False)
    assert on[0] < off[0] / 2
    assert fast.total == slow.total and step.records == slow.decode(9).records
    # attention over 9 + 1 positions in each of the 5 layers: 2 x 4 heads x 10 x 16 MACs
    cores = [r for r in step.records if r.op == "scaled_dot_product_attention"]
    assert [r.macs for r in cores] == [2 * 4 * 10 * (16 + 16)] * 5
    # keys and values of 5 layers, 2 sequences, 2 kv heads of 16, fp32
    assert fast.kv_cache_bytes(9) == 2 * 5 * 2 * 2 * 9 * 16 * 4 == slow.kv_cache_bytes(9)


class ToyLayer:
    def __init__(self) -> None:
        self.keys = torch.zeros(0, 4)


class ToyCache:
    """A cache as transformers lays it out: one entry per layer in ``layers``."""

    def __init__(self, n: int) -> None:
        self.layers = [ToyLayer() for _ in range(n)]

    def get_seq_length(self) -> int:
        return self.layers[0].keys.shape[0]


class CacheBlock(nn.Module):
    """Appends x to its own entry and attends over it; ``peek`` first reads the first
    entry (``cache.get_seq_length()``), whose length then sets how many ReLUs run."""

    def __init__(self, layer_idx: int, peek: bool) -> None:
        super().__init__()
        self.fc, self.layer_idx, self.peek = nn.Linear(4, 4), layer_idx, peek

    def forward(self, x: torch.Tensor, cache: ToyCache) -> torch.Tensor:
        past = cache.get_seq_length() if self.peek else 0
        own = cache.layers[self.layer_idx]
        own.keys = torch.cat([own.keys, x])
        x = self.fc(x) @ own.keys.T @ own.keys
        for _ in range(past):
            x = torch.relu(x)
        return x


class CacheStack(nn.Module):
    def __init__(self, peek: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CacheBlock(i, peek) for i in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cache = ToyCache(4)
        for block in self.blocks:
            x = block(x, cache)
        return x


@pytest.mark.parametrize("peek", [False, True])
def test_a_block_reading_another_layers_cache_entry_is_not_replayed(peek: bool) -> None:
    # on 3 x 4 tokens each block: fc 3*4*4 MACs (+ 3*4 bias), scores 3*4*3, values 3*3*4
    # MACs. With peek, each block first reads entry 0: empty for layer 0 (its own, not
    # yet written: no ReLU), 3 tokens for layers 1-3 (3 ReLUs of 12 elements each). Layer
    # 0 alone cannot show that entry 0 is not its own: layer 1 runs and reads entries 0
    # and 1, so no layer replays. Replaying layer 0 would have counted no ReLU at all.
    fast, slow, on, off = both(CacheStack(peek), (3, 4), CacheBlock)
    assert (on, off) == ((4, 4) if peek else (2, 4))
    assert fast.records == slow.records
    macs = 4 * (3 * 4 * 4 + 3 * 4 * 3 + 3 * 3 * 4)
    assert fast.cost == flopgraph.Cost(macs, 2 * macs + 4 * 12 + (3 * 3 * 12 if peek else 0))


class Block(nn.Module):
    """A linear, then ``extra`` more ReLUs: blocks differing only in ``extra`` have
    the same parameters but not the same structure."""

    def __init__(self, extra: int, layer_idx: int) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = nn.ReLU()
        self.extra = extra
        self.layer_idx = layer_idx  # a block's index: left out of its structure

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc(x))
        for _ in range(self.extra):
            x = torch.relu(x)
        return x


class Stack(nn.Module):
    def __init__(self, extras: list[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(e, i) for i, e in enumerate(extras))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def test_blocks_differing_in_a_setting_are_not_replayed_for_each_other() -> None:
    extras = [0, 2, 0, 2, 0]
    fast, slow, on, off = both(Stack(extras).eval(), (3, 8), Block)
    assert (on, off) == (2, 5)  # one run per distinct structure
    # per block: the linear, 3 x 8 x 8 MACs and 3 x 8 bias adds; then 1 + extra ReLUs
    # of 3 x 8 elements each
    per_block = [(3 * 8 * 8, 2 * 3 * 8 * 8 + 3 * 8 + (1 + e) * 3 * 8) for e in extras]
    assert (fast.macs, fast.flops) == tuple(map(sum, zip(*per_block, strict=True)))
    assert fast.records == slow.records
    for i, (macs, flops) in enumerate(per_block):
        assert fast.by_module()[f"blocks.{i}"] == flopgraph.Cost(macs, flops)


class Scaled(nn.Module):
    """A setting that is a ``functools.partial`` made per block, as FNet makes its
    Fourier transform: equal partials are one structure, different ones are not."""

    def __init__(self, power: int) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = nn.ReLU()
        self.op = functools.partial(torch.pow, exponent=power)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.act(self.fc(x)))


def test_blocks_holding_equal_partials_are_replayed() -> None:
    model = nn.Sequential(Scaled(2), Scaled(2), Scaled(3)).eval()
    fast, slow, on, off = both(model, (3, 8), Scaled)
    assert (on, off) == (2, 3)  # the two pow-2 blocks share one run
    assert fast.records == slow.records
    assert [r.op for r in fast.records if r.module == "2"] == [
        r.op for r in fast.records if r.module == "0"
    ]


class Counter(nn.Module):
    """Its forward changes its own setting: a second call of the same block is not
    the first one's replay."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = nn.ReLU()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x = self.act(self.fc(x))
        return x * 2 if self.calls > 1 else x


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Counter(), Counter()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[1](self.blocks[0](self.blocks[0](x)))


def test_a_block_whose_forward_changes_its_state_is_run_again() -> None:
    model = Twice().eval()
    fast, slow, on, off = both(model, (3, 8), Counter)
    # blocks.0 twice (its second call multiplies by 2: 24 more FLOPs), blocks.1 once
    # replaying blocks.0's first call
    assert (on, off) == (2, 3)
    linear_relu = 2 * 3 * 8 * 8 + 3 * 8 + 3 * 8
    assert fast.flops == 3 * linear_relu + 3 * 8
    assert fast.records == slow.records
    assert [b.calls for b in model.blocks] == [0, 0]  # the user's blocks never ran


@pytest.mark.parametrize("training", [False, True])
def test_an_analysis_leaves_no_shadow_for_the_cyclic_collector(training: bool) -> None:
    # shadows, their fake weights and the trace are freed by reference counting when
    # the analysis returns: left in reference cycles, Python's collector would walk
    # them all later (a third of a warm analysis of an 80-layer model)
    import gc

    from torch._subclasses.fake_tensor import FakeTensor

    model = Stack([0, 0, 0, 0]).eval()
    flopgraph.analyze(model, torch.randn(3, 8), frontend="aten", training=training)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        report = flopgraph.analyze(model, torch.randn(3, 8), frontend="aten", training=training)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, (nn.Module, FakeTensor))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
    assert left == []
    assert report.by_module(phase="forward")["blocks.3"].macs == 3 * 8 * 8


class CellBlock(nn.Module):
    """A rule-counted module (one record for the whole call), then an op outside any
    torch function call (the recorder sees its aten op only)."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.cell(x)
        with torch._C.DisableTorchFunction():
            return torch.relu(h)


class CellStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CellBlock() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@pytest.mark.parametrize("kind", ["calls", "module rule and bare op"])
def test_a_replayed_traces_ops_are_the_ops_each_block_ran(kind: str) -> None:
    # a replay copies nothing: its items are markers that count_aten and trace.ops()
    # move on demand, to the ops a run of every block records
    from flopgraph.frontends.aten import ModuleCall, trace_aten
    from flopgraph.frontends.reuse import REUSE, Replayed
    from flopgraph.handlers import DEFAULT
    from flopgraph.options import setting

    model = (Stack([0, 2, 0, 2, 0]) if kind == "calls" else CellStack()).eval()
    x = torch.randn(3, 8)
    with setting(REUSE, True):
        fast = trace_aten(model, (x,), {}, DEFAULT)
    with setting(REUSE, False):
        slow = trace_aten(model, (x,), {}, DEFAULT)
    assert sum(isinstance(i, Replayed) for i in fast.items) > 0
    assert not any(isinstance(i, Replayed) for i in slow.items)

    def ops(trace):  # type: ignore[no-untyped-def]
        return [(op.op, op.module, op.args, op.out) for op in trace.ops()]

    assert ops(fast) == ops(slow)
    blocks = range(5) if kind == "calls" else range(3)
    if kind == "calls":  # each block's linear and ReLU; functional ReLUs in 1 and 3
        paths = {f"blocks.{i}.{m}" for i in blocks for m in ("fc", "act")}
        assert {op.module for op in fast.ops()} == paths | {"blocks.1", "blocks.3"}
    else:  # each block's cell, counted whole, and its bare relu
        assert {op.module for op in fast.ops()} >= {f"blocks.{i}" for i in blocks}
        calls = fast.moved_items()
        cells = [(c.path, c.module) for c in calls if isinstance(c, ModuleCall)]
        assert cells == [(f"blocks.{i}.cell", model.blocks[i].cell) for i in blocks]
