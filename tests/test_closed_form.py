"""GPT-2 and Llama totals equal a closed form derived here from the config, to the unit.

The models are transformers' own (built from config objects on the meta device,
never downloaded), counted on the aten frontend; each term below is the
default convention (docs/conventions.md, the counting spec) applied to one op
of the forward, for batch 1 and T tokens:

- a linear layer [T, I] -> [T, O]: T*I*O MACs, 2 per MAC, + T*O with a bias;
- attention with H query heads of width hd (T queries, T keys, causal mask):
  H*T*T*hd MACs for the scores and as many for the values; FLOPs 2 per MAC plus,
  per score, 1 scale + 1 mask + 5 softmax;
- layer norm with weight and bias: 8 per element; elementwise ops: 1 per
  element of the output; mean: numel(in); embedding lookups, views, casts and
  the boolean mask arithmetic: 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import flopgraph
from flopgraph import TensorSpec

transformers = pytest.importorskip("transformers")


@dataclass(frozen=True)
class Total:
    macs: int
    flops: int

    def __add__(self, other: Total) -> Total:
        return Total(self.macs + other.macs, self.flops + other.flops)

    def __mul__(self, n: int) -> Total:
        return Total(self.macs * n, self.flops * n)


def linear(tokens: int, i: int, o: int, bias: bool) -> Total:
    macs = tokens * i * o
    return Total(macs, 2 * macs + (tokens * o if bias else 0))


def causal_attention(tokens: int, heads: int, head_dim: int) -> Total:
    scores = heads * tokens * tokens  # one per (head, query, key)
    macs = scores * head_dim * 2  # q @ k^T, then weights @ v
    return Total(macs, 2 * macs + scores * (1 + 1 + 5))  # scale, mask, softmax


def elementwise(n: int) -> Total:
    return Total(0, n)


# --- GPT-2 --------------------------------------------------------------------------------


def gpt2_closed_form(c: transformers.GPT2Config, t: int, b: int = 1) -> Total:
    """For ``b`` sequences of ``t`` tokens (ints, or sympy symbols: see test_symbolic)."""
    seq, t = t, b * t  # every per-token term over the b * t tokens; attention per sequence
    d, v = c.n_embd, c.vocab_size
    inner = c.n_inner or 4 * d
    block = (
        elementwise(8 * t * d)  # ln_1: layer norm, 6 per element + weight + bias
        + linear(t, d, 3 * d, bias=True)  # c_attn: q, k, v in one addmm
        + causal_attention(seq, b * c.n_head, d // c.n_head)  # sdpa with the causal mask
        + linear(t, d, d, bias=True)  # attn.c_proj
        + elementwise(t * d)  # residual add
        + elementwise(8 * t * d)  # ln_2
        + linear(t, d, inner, bias=True)  # mlp.c_fc
        # gelu_new: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3))):
        # pow, mul, add, mul, tanh, add, mul, mul = 8 per element
        + elementwise(8 * t * inner)
        + linear(t, inner, d, bias=True)  # mlp.c_proj
        + elementwise(t * d)  # residual add
    )
    return (
        elementwise(t * d)  # token + position embeddings (the lookups are free)
        + block * c.n_layer
        + elementwise(8 * t * d)  # ln_f
        + linear(t, d, v, bias=False)  # lm_head (tied to the token embedding)
    )


def _gpt2(**kw: object) -> tuple[torch.nn.Module, transformers.GPT2Config]:
    config = transformers.GPT2Config(**kw)
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(config).eval(), config


@pytest.mark.parametrize(
    "kw, tokens",
    [
        # a small GPT-2: 2 layers of 64, 4 heads, 100 tokens of vocabulary
        ({"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 100, "n_positions": 64}, 16),
        ({"n_layer": 1, "n_embd": 96, "n_head": 3, "n_inner": 200, "vocab_size": 50}, 7),
        ({}, 1024),  # GPT-2 itself (124M parameters) at 1 x 1024 tokens
    ],
)
def test_gpt2_total_is_the_closed_form(kw: dict[str, object], tokens: int) -> None:
    model, config = _gpt2(use_cache=False, **kw)
    report = flopgraph.analyze(model, TensorSpec((1, tokens), torch.int64))
    assert report.skipped == {}
    assert (report.macs, report.flops) == (
        gpt2_closed_form(config, tokens).macs,
        gpt2_closed_form(config, tokens).flops,
    )


def test_gpt2_at_1024_tokens_by_hand() -> None:
    # The closed form above, evaluated by hand for GPT-2 (D 768, 12 heads, 12 layers,
    # vocabulary 50257) at T = 1024, MACs only:
    #   per layer: c_attn 1024*768*2304 = 1_811_939_328, scores and values
    #   2 * 12*1024*1024*64 = 1_610_612_736, c_proj 1024*768*768 = 603_979_776,
    #   c_fc and mlp.c_proj 2 * 1024*768*3072 = 4_831_838_208: 8_858_370_048 per layer;
    #   12 layers 106_300_440_576, + lm_head 1024*768*50257 = 39_523_713_024
    #   = 145_824_153_600
    model, _ = _gpt2(use_cache=False)
    assert flopgraph.analyze(model, TensorSpec((1, 1024), torch.int64)).macs == 145_824_153_600


# --- Llama --------------------------------------------------------------------------------


def rms_norm(t: int, d: int) -> Total:
    # x.pow(2) (T*D), .mean(-1) (T*D), + eps (T), rsqrt (T), x * rsqrt (T*D), weight * x (T*D)
    return elementwise(4 * t * d + 2 * t)


def rotary(t: int, heads: int, head_dim: int) -> Total:
    # q * cos + rotate_half(q) * sin: two multiplies and an add over [heads, T, hd], and
    # rotate_half's negation of one half
    return elementwise(3 * heads * t * head_dim + heads * t * head_dim // 2)


def llama_closed_form(c: transformers.LlamaConfig, t: int, b: int = 1) -> Total:
    """For ``b`` sequences of ``t`` tokens (ints, or sympy symbols: see test_symbolic)."""
    seq, t = t, b * t  # every per-token term over the b * t tokens; attention per sequence
    d, inter, v = c.hidden_size, c.intermediate_size, c.vocab_size
    heads, kv = c.num_attention_heads, c.num_key_value_heads
    hd = d // heads
    block = (
        rms_norm(t, d)  # input_layernorm
        + linear(t, d, heads * hd, bias=False)  # q_proj
        + linear(t, d, kv * hd, bias=False) * 2  # k_proj, v_proj (kv heads)
        + rotary(t, heads, hd)  # rotary on q
        + rotary(t, kv, hd)  # rotary on k (before repeat_kv, which is free)
        + causal_attention(seq, b * heads, hd)
        + linear(t, heads * hd, d, bias=False)  # o_proj
        + elementwise(t * d)  # residual add
        + rms_norm(t, d)  # post_attention_layernorm
        + linear(t, d, inter, bias=False) * 2  # gate_proj, up_proj
        + elementwise(2 * t * inter)  # silu(gate), then * up
        + linear(t, inter, d, bias=False)  # down_proj
        + elementwise(t * d)  # residual add
    )
    # the rotary tables, once for the positions all sequences share: positions [T, 1]
    # * inv_freq [hd / 2] -> [T, hd / 2], cat to [T, hd], then cos, * attention_scaling,
    # sin, * attention_scaling
    tables = elementwise(seq * hd // 2 + 4 * seq * hd)
    return (
        tables
        + block * c.num_hidden_layers
        + rms_norm(t, d)  # the final norm
        + linear(t, d, v, bias=False)  # lm_head
    )


def _llama(**kw: object) -> tuple[torch.nn.Module, transformers.LlamaConfig]:
    config = transformers.LlamaConfig(**kw)
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(config).eval(), config


SMALL_LLAMA = {
    "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 2,
    "num_attention_heads": 8, "vocab_size": 1000,
}  # fmt: skip


@pytest.mark.parametrize(
    "kw, tokens",
    [
        (SMALL_LLAMA, 32),
        ({**SMALL_LLAMA, "num_key_value_heads": 2}, 32),  # grouped-query attention
        ({**SMALL_LLAMA, "num_key_value_heads": 1, "use_cache": True}, 9),
    ],
)
def test_llama_total_is_the_closed_form(kw: dict[str, object], tokens: int) -> None:
    model, config = _llama(**{"use_cache": False, **kw})
    report = flopgraph.analyze(model, TensorSpec((1, tokens), torch.int64))
    assert report.skipped == {}
    want = llama_closed_form(config, tokens)
    assert (report.macs, report.flops) == (want.macs, want.flops)


def test_llama_7b_shape_at_4096_tokens_without_weights() -> None:
    # Llama-2-7B's shape (hidden 4096, 32 layers, 32 heads, intermediate 11008,
    # vocabulary 32000), built on the meta device, at 1 x 4096 tokens
    model, config = _llama(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
        intermediate_size=11008, vocab_size=32000, use_cache=False,
    )  # fmt: skip
    report = flopgraph.analyze(model, TensorSpec((1, 4096), torch.int64))
    want = llama_closed_form(config, 4096)
    assert (report.macs, report.flops) == (want.macs, want.flops)
    # MACs by hand: per layer q, k, v, o 4 * 4096*4096*4096 = 274_877_906_944,
    # attention 2 * 32*4096*4096*128 = 137_438_953_472, MLP 3 * 4096*4096*11008
    # = 554_050_781_184: 966_367_641_600 per layer; 32 layers 30_923_764_531_200,
    # + lm_head 4096*4096*32000 = 536_870_912_000 -> 31_460_635_443_200
    assert report.macs == 31_460_635_443_200


# --- Mixtral --------------------------------------------------------------------------------


def mixtral_closed_form(c: transformers.MixtralConfig, t: int) -> Total:
    """Llama's closed form with each dense MLP replaced by the sparse MoE block: the
    router, then k of E gated experts per token (see tests/test_moe.py for the routed
    terms), whatever the routing."""
    d, f = c.hidden_size, c.intermediate_size
    e, k = c.num_local_experts, c.num_experts_per_tok
    dense_mlp = linear(t, d, f, bias=False) * 3 + elementwise(2 * t * f)
    router = (
        linear(t, d, e, bias=False)
        + elementwise(5 * t * e)  # softmax over the E logits
        + elementwise(t * (k - 1))  # the k top weights summed,
        + elementwise(t * k)  # and each divided by the sum
    )
    expert = linear(1, d, 2 * f, bias=False) + elementwise(2 * f) + linear(1, f, d, bias=False)
    routed = (
        expert * (t * k)
        + elementwise(t * k * d)  # each expert's output times its routing weight
        + elementwise(t * (k - 1) * d)  # the k outputs of a token summed
        + elementwise(t * k)  # histc over the t*k (float, on CPU) expert ids
    )
    return llama_closed_form(c, t) + (router + routed + dense_mlp * -1) * c.num_hidden_layers


@pytest.mark.parametrize("tokens", [7, 32])
def test_mixtral_total_is_the_closed_form(tokens: int) -> None:
    config = transformers.MixtralConfig(
        vocab_size=500, hidden_size=64, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=5,
        num_experts_per_tok=2, use_cache=False,
    )  # fmt: skip
    with torch.device("meta"):
        model = transformers.MixtralForCausalLM(config).eval()
    report = flopgraph.analyze(model, TensorSpec((1, tokens), torch.int64))
    assert report.skipped == {}
    want = mixtral_closed_form(config, tokens)
    assert (report.macs, report.flops) == (want.macs, want.flops)


# --- DeepSeek-V3 ------------------------------------------------------------------------------


def deepseek_v3_closed_form(c: transformers.DeepseekV3Config, t: int) -> Total:
    """Multi-head latent attention, a dense MLP in the first ``first_k_dense_replace``
    layers, then MoE layers: a sigmoid router with a bias, group-limited choice and
    normalised, scaled weights; k of E routed experts; the shared experts."""
    d, heads, v = c.hidden_size, c.num_attention_heads, c.vocab_size
    qr, kr, nope, rope, vd = (
        c.q_lora_rank, c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
    )  # fmt: skip
    e, k, groups = c.n_routed_experts, c.num_experts_per_tok, c.n_group
    f, fs, fd = (
        c.moe_intermediate_size,
        c.moe_intermediate_size * c.n_shared_experts,
        c.intermediate_size,
    )
    # interleaved rotary: x1 * cos - x2 * sin and x2 * cos + x1 * sin over half the
    # rotary width each: 6 ops over rope / 2, for H query heads and the one shared key
    assert c.rope_interleave
    scores = heads * t * t
    attention_macs = scores * (nope + rope) + scores * vd
    attention = (
        rms_norm(t, d)  # input_layernorm
        + linear(t, d, qr, bias=False)
        + rms_norm(t, qr)
        + linear(t, qr, heads * (nope + rope), bias=False)
        + linear(t, d, kr + rope, bias=False)
        + rms_norm(t, kr)  # the compressed kv and shared key
        + elementwise(3 * heads * t * rope + 3 * t * rope)  # rotary on q and the shared key
        + linear(t, kr, heads * (nope + vd), bias=False)  # kv_b_proj: keys and values per head
        + Total(attention_macs, 2 * attention_macs + scores * (1 + 1 + 5))  # scale, mask, softmax
        + linear(t, heads * vd, d, bias=False)  # o_proj
        + elementwise(t * d)  # residual add
        + rms_norm(t, d)  # post_attention_layernorm
    )
    dense = linear(t, d, fd, bias=False) * 3 + elementwise(2 * t * fd)
    router = (
        linear(t, d, e, bias=False)
        + elementwise(t * e)  # sigmoid
        + elementwise(t * e)  # + e_score_correction_bias
        + elementwise(t * groups)  # each group's score: the sum of its top 2
        + elementwise(t * (k - 1) + t + t * k)  # normalise: sum of k, + 1e-20, divide
        + elementwise(t * k)  # * routed_scaling_factor
    )
    expert = linear(1, d, 2 * f, bias=False) + elementwise(2 * f) + linear(1, f, d, bias=False)
    routed = expert * (t * k) + elementwise(t * k * d + t * (k - 1) * d + t * k)  # as Mixtral
    shared = (
        linear(t, d, fs, bias=False) * 2 + linear(t, fs, d, bias=False) + elementwise(2 * t * fs)
    )
    moe = router + routed + shared + elementwise(t * d)  # routed + shared
    layers_dense = c.first_k_dense_replace
    layers_moe = c.num_hidden_layers - layers_dense
    tables = elementwise(t * rope // 2 + 4 * t * rope)  # as Llama's, over the rotary width
    return (
        tables
        + (attention + elementwise(t * d)) * c.num_hidden_layers  # + the MLP's residual add
        + dense * layers_dense
        + moe * layers_moe
        + rms_norm(t, d)
        + linear(t, d, v, bias=False)
    )


SMALL_DEEPSEEK = {
    "vocab_size": 300, "hidden_size": 64, "intermediate_size": 80, "moe_intermediate_size": 24,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
    "n_routed_experts": 8, "num_experts_per_tok": 3, "n_shared_experts": 2,
    "first_k_dense_replace": 1, "n_group": 4, "topk_group": 2, "q_lora_rank": 24,
    "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 12, "v_head_dim": 10,
    "use_cache": False,
}  # fmt: skip


@pytest.mark.parametrize("tokens", [5, 16])
def test_deepseek_v3_total_is_the_closed_form(tokens: int) -> None:
    config = transformers.DeepseekV3Config(**SMALL_DEEPSEEK)
    with torch.device("meta"):
        model = transformers.DeepseekV3ForCausalLM(config).eval()
    report = flopgraph.analyze(model, TensorSpec((1, tokens), torch.int64))
    assert report.skipped == {}
    want = deepseek_v3_closed_form(config, tokens)
    assert (report.macs, report.flops) == (want.macs, want.flops)


def test_deepseek_v3_shape_at_4096_tokens_without_weights() -> None:
    # DeepSeek-V3's published shape (transformers' defaults: 61 layers, the first 3
    # dense, 256 routed experts of which 8 per token in 8 groups (4 kept), one shared
    # expert, MLA with q rank 1536 and kv rank 512) on the meta device at 1 x 4096
    config = transformers.DeepseekV3Config(use_cache=False)
    assert (config.num_hidden_layers, config.n_routed_experts, config.num_experts_per_tok) == (
        61, 256, 8,
    )  # fmt: skip
    with torch.device("meta"):
        model = transformers.DeepseekV3ForCausalLM(config).eval()
    report = flopgraph.analyze(model, TensorSpec((1, 4096), torch.int64))
    assert report.skipped == {}
    want = deepseek_v3_closed_form(config, 4096)
    assert (report.macs, report.flops) == (want.macs, want.flops)
    # 671B parameters; a token leaves 248 of the 256 experts (3 matrices 7168 x 2048
    # each) unused in each of the 58 MoE layers
    assert round(report.params.total / 1e9) == 671
    assert report.params.total - report.params.active == 58 * 248 * 3 * 7168 * 2048
