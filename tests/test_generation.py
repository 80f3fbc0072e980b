"""Prefill and decode with the model's own cache (spec section H), against closed forms
derived here from the config: a small Llama with grouped-query attention and a small
Mistral with a sliding window, at cache lengths before, at and past the window.

A decode step at cache length c is the forward of one new token (batch 1) with
attention over S = c + 1 positions (a window of W: min(c + 1, W)). Its terms, in the
default convention: every linear layer over 1 token; RMS norm 4*d + 2; rotary on q and
k over one position; the rotary tables for one position (hd / 2 + 4 * hd); attention
H*S*hd MACs for the scores and as many for the values, FLOPs 2 per MAC plus per score
1 scale + 5 softmax (+ 1 when a mask is passed); silu and * up over the MLP width;
two residual adds of d.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
import torch

import flopgraph
from flopgraph import Cost, TensorSpec
from flopgraph.errors import InputError

transformers = pytest.importorskip("transformers")

D, INTER, LAYERS, HEADS, KV, VOCAB = 64, 48, 2, 4, 2, 128
HD = D // HEADS


def _build(name: str, **kw: object) -> torch.nn.Module:
    config = getattr(transformers, name)(
        vocab_size=VOCAB, hidden_size=D, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV, **kw,
    )  # fmt: skip
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config).eval()


def decode_closed_form(c: int, window: int | None = None) -> Cost:
    span = c + 1 if window is None else min(c + 1, window)
    # transformers passes a sliding window's mask once the cache is full (c >= W - 1):
    # before, every cached position is visible and sdpa gets no mask
    mask = int(window is not None and c >= window - 1)
    linear = D * HEADS * HD + 2 * D * KV * HD + HEADS * HD * D + 3 * D * INTER  # MACs
    scores = HEADS * span
    attention_macs = scores * HD * 2
    norms = 2 * (4 * D + 2)
    rotary = 3 * HEADS * HD + HEADS * HD // 2 + 3 * KV * HD + KV * HD // 2
    block_flops = (
        2 * linear + 2 * attention_macs + scores * (1 + mask + 5) + norms + rotary
        + 2 * INTER + 2 * D  # silu, * up; two residual adds
    )  # fmt: skip
    macs = LAYERS * (linear + attention_macs) + D * VOCAB
    flops = LAYERS * block_flops + (HD // 2 + 4 * HD) + (4 * D + 2) + 2 * D * VOCAB
    return Cost(macs, flops)


@pytest.fixture(scope="module")
def llama() -> flopgraph.Generation:
    return flopgraph.generation(_build("LlamaConfig"), prompt=5, new_tokens=3)


@pytest.fixture(scope="module")
def mistral() -> flopgraph.Generation:
    return flopgraph.generation(_build("MistralConfig", sliding_window=6), prompt=3, new_tokens=6)


def test_llama_decode_steps_are_the_closed_form(llama: flopgraph.Generation) -> None:
    for c in (1, 5, 17, 100):
        assert llama.decode(c).cost == decode_closed_form(c), c
        assert llama.formula(c) == decode_closed_form(c), c
    assert llama.decode(9).skipped == {}
    # one segment: the constant and one cached position's cost, read off the closed form
    (segment,) = llama.formula.segments
    one = decode_closed_form(1)
    per = Cost(LAYERS * HEADS * HD * 2, LAYERS * HEADS * (4 * HD + 6))
    assert segment.per_token == per
    assert segment.constant == Cost(one.macs - per.macs, one.flops - per.flops)
    assert llama.formula(4096) == decode_closed_form(4096)  # a length never analysed


def test_mistral_decode_past_the_window_is_the_closed_form(mistral: flopgraph.Generation) -> None:
    for c in (1, 4, 5, 6, 11, 1000):
        assert mistral.formula(c) == decode_closed_form(c, window=6), c
    for c in (4, 5, 8):
        assert mistral.decode(c).cost == decode_closed_form(c, window=6), c
    assert [s.start for s in mistral.formula.segments] == [1, 5]
    assert mistral.formula.segments[1].per_token == Cost()  # a full window reads no more


def test_generation_total_is_prefill_plus_each_step(
    llama: flopgraph.Generation, mistral: flopgraph.Generation
) -> None:
    for g in (llama, mistral):
        steps = [g.decode(c).cost for c in range(g.prompt, g.prompt + g.new_tokens)]
        want = g.prefill.cost
        for s in steps:
            want = want + s
        assert g.total == want
        assert g.per_token == Fraction(want.flops, g.new_tokens)
    # the prefill is the forward of the prompt
    model = _build("LlamaConfig")
    assert llama.prefill.cost == flopgraph.analyze(model, TensorSpec((1, 5), torch.int64)).cost


def test_a_batch_multiplies_the_new_tokens_work() -> None:
    model = _build("LlamaConfig")
    g = flopgraph.generation(model, prompt=4, new_tokens=2, batch=3)
    assert g.prefill.inputs[0].shape == (3, 4) and g.decode(4).inputs[0].shape == (3, 1)
    # every term but the rotary tables (computed once for the shared positions) is per row
    tables = HD // 2 + 4 * HD
    one = decode_closed_form(4)
    assert g.decode(4).cost == Cost(3 * one.macs, 3 * (one.flops - tables) + tables)


def test_kv_cache_bytes() -> None:
    # keys and values of every layer: 2 x layers x kv heads x head dim x c x 4 bytes
    llama = flopgraph.generation(_build("LlamaConfig"), prompt=2)
    assert [llama.kv_cache_bytes(c) for c in (1, 7, 4096)] == [
        2 * LAYERS * KV * HD * c * 4 for c in (1, 7, 4096)
    ]
    mistral = flopgraph.generation(_build("MistralConfig", sliding_window=6), prompt=2)
    # a sliding window keeps W - 1 = 5 positions (plus each layer's int64 position counter)
    assert mistral.kv_cache_bytes(100) == mistral.kv_cache_bytes(5)
    assert mistral.kv_cache_bytes(3) + 2 * 2 * LAYERS * KV * HD * 4 == mistral.kv_cache_bytes(5)


def test_mixture_of_experts_decode_counts_from_shapes() -> None:
    config = transformers.MixtralConfig(
        vocab_size=VOCAB, hidden_size=D, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV, num_local_experts=4,
        num_experts_per_tok=2,
    )  # fmt: skip
    with torch.device("meta"):
        model = transformers.MixtralForCausalLM(config).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", flopgraph.SkippedOpWarning)
        g = flopgraph.generation(model, prompt=4, new_tokens=2)
    # one token runs 2 of the 4 experts: 2 x (d x 2f + f x d) MACs per layer
    routed = sum(r.macs for r in g.decode(4).records if r.routing is not None)
    assert routed == LAYERS * 2 * (D * 2 * INTER + INTER * D)


def test_bad_arguments_are_input_errors() -> None:
    model = _build("LlamaConfig")
    with pytest.raises(InputError, match="prompt must be an int >= 1"):
        flopgraph.generation(model, prompt=0)
    with pytest.raises(InputError, match="takes no cache"):
        flopgraph.generation(torch.nn.Linear(2, 2), prompt=2)
    g = flopgraph.generation(model, prompt=2)
    with pytest.raises(InputError, match="cache length c"):
        g.decode(0)


def test_cli_generate_writes_the_generation(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from flopgraph.cli import main

    source = tmp_path / "lm.py"
    source.write_text(
        "import transformers\n"
        "def llama():\n"
        f"    c = transformers.LlamaConfig(vocab_size={VOCAB}, hidden_size={D}, "
        f"intermediate_size={INTER}, num_hidden_layers={LAYERS}, num_attention_heads={HEADS}, "
        f"num_key_value_heads={KV})\n"
        "    return transformers.LlamaForCausalLM(c).eval()\n"
    )
    assert main([f"{source}:llama", "--generate", "5,3", "--format", "json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    steps = [decode_closed_form(c) for c in (5, 6, 7)]
    assert data["decode"]["flops"] == sum(s.flops for s in steps)
    assert data["decode_step_flops"][0]["per_token_flops"] == LAYERS * HEADS * (4 * HD + 6)
    assert main([f"{source}:llama", "--generate", "5", "--quiet"]) == 2
    assert "expected P,K or P,K,B" in capsys.readouterr().err


def test_a_recurrent_model_decodes_at_a_constant_cost() -> None:
    # Mamba keeps a conv state [expand*d, conv_kernel] and an ssm state [expand*d, state]
    # per layer, whatever c: the step has no per-token term and the cache does not grow
    config = transformers.MambaConfig(
        vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, state_size=16, expand=2,
        conv_kernel=4,
    )  # fmt: skip
    with torch.device("meta"):
        model = transformers.MambaForCausalLM(config).eval()
    g = flopgraph.generation(model, prompt=3, new_tokens=2)
    (segment,) = g.formula.segments
    assert segment.per_token == Cost()
    assert g.decode(3).skipped == {}
    inner = 2 * D
    want = LAYERS * (inner * 4 + inner * 16) * 4  # float32
    assert [g.kv_cache_bytes(c) for c in (1, 3, 100_000)] == [want] * 3
