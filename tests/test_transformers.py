"""transformers models built from config objects (never downloaded), on the meta device."""

import pytest
import torch
from conftest import flop_counter_total
from helpers import meta_input
from test_presets import assert_matches_flop_counter, fvcore_analysis

import flopgraph
from flopgraph import zoo
from flopgraph.render.tree import display_tree
from flopgraph.zoo import TOKENS, bert, gpt2, llama

transformers = pytest.importorskip("transformers")

IDS = TOKENS  # input_ids 1 x 128


def on_meta(build, **kw):
    return zoo.on_meta(lambda: build(**kw))


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


def attention_macs(q_len, kv_len, dim, inner, heads):
    """One attention by hand: q and output projections over the queries, k and v over
    the keys (dim <-> inner = heads x head_dim), and the core heads x L x S x 2 head_dim."""
    projections = 2 * q_len * dim * inner + 2 * kv_len * dim * inner
    return projections + heads * q_len * kv_len * 2 * (inner // heads)


def t5_macs(config, enc_len, dec_len):
    """T5ForConditionalGeneration from its config: encoder blocks (self-attention, ReLU
    MLP d_model -> d_ff -> d_model), decoder blocks (self-attention, cross-attention on
    the encoder's output, MLP) and the lm_head over the vocabulary."""
    dim, ff, heads = config.d_model, config.d_ff, config.num_heads
    inner = heads * config.d_kv
    assert config.feed_forward_proj == "relu"  # two matrices (a gated MLP has three)
    encoder = attention_macs(enc_len, enc_len, dim, inner, heads) + 2 * enc_len * dim * ff
    decoder = (
        attention_macs(dec_len, dec_len, dim, inner, heads)  # self-attention
        + attention_macs(dec_len, enc_len, dim, inner, heads)  # cross-attention
        + 2 * dec_len * dim * ff
    )
    lm_head = dec_len * dim * config.vocab_size
    return config.num_layers * encoder + config.num_decoder_layers * decoder + lm_head


def vit_macs(config, num_labels):
    """ViTForImageClassification from its config: the patch embedding (a convolution
    patch x patch, stride patch), blocks over the patches and the class token, and the
    classifier on the class token alone."""
    dim, patch = config.hidden_size, config.patch_size
    patches = (config.image_size // patch) ** 2
    tokens = patches + 1
    embedding = patches * config.num_channels * patch * patch * dim
    block = (
        attention_macs(tokens, tokens, dim, dim, config.num_attention_heads)
        + 2 * tokens * dim * config.intermediate_size
    )
    return embedding + config.num_hidden_layers * block + dim * num_labels


ZOO_ENTRIES = {e.name.partition(":")[2]: e for e in zoo.transformers_models()}


@pytest.mark.slow
@pytest.mark.parametrize("name, expected", [
    # t5-small (d_model 512, d_ff 2048, 8 heads of 64, 6 + 6 layers, vocab 32_128) on 128
    # encoder and 32 decoder tokens: 6 * 419_430_400 + 6 * 189_792_256 + 526_385_152
    ("t5", 4_181_721_088),
    # ViT-B/16 (768 wide, 12 layers of 12 heads, MLP 3072) on 224 x 224, 2 labels:
    # 115_605_504 + 12 * 1_453_954_560 + 1_536
    ("vit", 17_563_061_760),
])  # fmt: skip
def test_t5_and_vit_by_hand_and_against_flop_counter_mode(name, expected):
    entry = ZOO_ENTRIES[name]
    model = entry.build()
    report = flopgraph.analyze(model, entry.inputs, kwargs=entry.kwargs)
    if name == "t5":
        macs = t5_macs(model.config, TOKENS.shape[1], entry.kwargs["decoder_input_ids"].shape[1])
    else:
        macs = vit_macs(model.config, model.config.num_labels)
    assert report.macs == macs == expected
    assert report.skipped == {}
    assert report.frontend.name == "aten" and report.frontend.note.startswith("fx was not used:")
    # no interpolation in either: FlopCounterMode on meta counts 2 per multiply-add
    args = [meta_input(a) for a in entry.inputs]
    kwargs = {k: meta_input(v) for k, v in entry.kwargs.items()}
    assert 2 * report.macs == flop_counter_total(model, *args, **kwargs)


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


@pytest.mark.parametrize("convention", ["default", "torch"])
def test_small_bert_modules_show_what_they_returned(convention):
    # 2 layers of 64 (4 heads, MLP 128) on 1 x 128 tokens: every hidden state is
    # [1, 128, 64], the pooler's [CLS] projection [1, 64]. The torch preset records each
    # layer norm as aten.native_layer_norm, whose mean and rstd ([1, 128, 1] each) are
    # no output of the LayerNorm module.
    model = on_meta(bert, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                    intermediate_size=128)  # fmt: skip
    report = flopgraph.analyze(model, IDS, convention=convention)
    hidden = (flopgraph.TensorMeta((1, 128, 64)),)
    norms = {m.path: m.outputs for m in report.modules if m.type == "LayerNorm"}
    # the embeddings' norm, then two per layer (after attention, after the MLP)
    assert norms == dict.fromkeys(
        ["embeddings.LayerNorm"]
        + [
            f"encoder.layer.{i}.{part}.LayerNorm"
            for i in range(2)
            for part in ("attention.output", "output")
        ],
        hidden,
    )
    outputs = {m.path: m.outputs for m in report.modules}
    # BaseModelOutputWithPoolingAndCrossAttentions: its set fields, in order
    assert outputs[""] == (*hidden, flopgraph.TensorMeta((1, 64)))
    assert outputs["encoder.layer"] == ()  # a ModuleList: never called
    # BertEncoder's one child is that ModuleList: the collapsed row shows the encoder's
    (row,) = (n for n in display_tree(report).children if n.path == "encoder.layer")
    assert row.name == "encoder.layer" and row.outputs == hidden
    assert outputs["encoder.layer.1.intermediate"] == (flopgraph.TensorMeta((1, 128, 128)),)


def test_fallback_note_names_kwargs_plainly():
    # BertModel.forward takes **kwargs: Unpack[TransformersKwargs], whose text Python
    # writes as "**kwargs: *<class '...TransformersKwargs'>"
    model = on_meta(bert, num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                    intermediate_size=64)  # fmt: skip
    report = flopgraph.analyze(model, flopgraph.TensorSpec((1, 8), torch.int64))
    assert report.frontend.note == (
        "fx was not used: BertModel.forward takes **kwargs: the fx frontend needs named "
        "arguments (pass them by name)"
    )
