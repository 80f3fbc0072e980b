"""transformers models built from config objects (never downloaded), on the meta device."""

import pytest
import torch
from test_presets import assert_matches_flop_counter, fvcore_analysis

import flopgraph
from flopgraph import TensorSpec

transformers = pytest.importorskip("transformers")

IDS = TensorSpec((1, 128), torch.int64)


def gpt2(**kw):
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**kw))


def bert(**kw):
    return transformers.BertModel(transformers.BertConfig(**kw))


def llama(**kw):
    config = transformers.LlamaConfig(
        hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8,
        vocab_size=32000, **kw,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def on_meta(build, **kw):
    with torch.device("meta"):
        return build(**kw).eval()


def block_macs(tokens, dim, ff, heads, gated=False):
    """One decoder/encoder block by hand: q, k, v and output projections, the attention
    core (heads x L x S x (E + Ev), E = Ev = dim / heads) and the MLP."""
    projections = tokens * dim * 4 * dim
    attention = heads * tokens * tokens * 2 * (dim // heads)
    mlp = tokens * dim * ff * (3 if gated else 2)
    return projections + attention + mlp


MODELS = {
    # 12 blocks of 768 (MLP 3072, 12 heads) + the tied 50_257-token head:
    # 12 * 931_135_488 + 128 * 768 * 50_257 = 16_114_089_984
    "gpt2": (gpt2, 12 * block_macs(128, 768, 3072, 12) + 128 * 768 * 50257),
    # 12 blocks + the pooler on the first token (768 x 768) = 11_174_215_680
    "bert": (bert, 12 * block_macs(128, 768, 3072, 12) + 768 * 768),
    # 4 blocks of 512 (gated MLP 1376, 8 heads) + the 32_000-token head = 3_783_262_208
    "llama": (llama, 4 * block_macs(128, 512, 1376, 8, gated=True) + 128 * 512 * 32000),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_counted_on_the_aten_frontend_with_nothing_skipped(name):
    build, macs = MODELS[name]
    report = flopgraph.analyze(on_meta(build), IDS)
    assert report.skipped == {}
    assert report.frontend.name == "aten" and not report.frontend.real_run
    assert report.frontend.note.startswith("fx was not used:")
    assert report.macs == macs
    attention = [r for r in report.records if r.op == "scaled_dot_product_attention"]
    assert attention and all(r.kind == "composite" for r in attention)


@pytest.mark.slow
def test_eager_and_sdpa_attention_count_the_same_products():
    sdpa = flopgraph.analyze(on_meta(gpt2, attn_implementation="sdpa"), IDS)
    eager = flopgraph.analyze(on_meta(gpt2, attn_implementation="eager"), IDS)
    assert eager.skipped == {} and eager.macs == sdpa.macs == MODELS["gpt2"][1]
    assert "matmul" in eager.by_operator() and "scaled_dot_product_attention" not in {
        r.op for r in eager.records
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_torch_preset_and_twice_the_macs_equal_flop_counter_mode(name):
    model = on_meta(MODELS[name][0])
    ids = torch.zeros(1, 128, dtype=torch.int64, device="meta")
    assert_matches_flop_counter(model, (ids,), IDS)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_fvcore_preset_equals_fvcore(name):
    # fvcore's jit trace cannot return transformers' cache object: use_cache=False
    model = on_meta(MODELS[name][0], use_cache=False)
    ids = torch.zeros(1, 128, dtype=torch.int64, device="meta")
    analysis = fvcore_analysis(model, (ids,))
    report = flopgraph.analyze(model, IDS, convention="fvcore")
    assert report.flops == analysis.total()
    by_module = report.by_module()
    assert {p: by_module[p].flops for p in analysis.by_module()} == dict(analysis.by_module())
