"""scaled_dot_product_attention, nn.MultiheadAttention and torch.nn's Transformer modules."""

import pytest
import torch
import torch.nn.functional as F
from conftest import flop_counter_total
from helpers import Fn, cost_of, fn_cost
from torch import nn

import flopgraph
from flopgraph import Cost


def core(b, tl, s, e, ev, masked=False, dropout=False):
    """The spec's attention core: macs B*L*S*(E + Ev); flops 2*macs + B*L*S*(1 + m + 5)."""
    macs = b * tl * s * (e + ev)
    return Cost(macs, 2 * macs + b * tl * s * (6 + int(masked) + int(dropout)))


@pytest.mark.parametrize(
    "q, k, v, b",
    [((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), 6),
     ((5, 8), (7, 8), (7, 3), 1),  # no batch dims
     ((2, 3, 5, 8), (1, 3, 7, 8), (1, 3, 7, 8), 6),  # batch broadcast
     ((4, 1, 9, 6), (3, 7, 6), (3, 7, 6), 12)],  # batch dims (4, 1) and (3,) -> (4, 3)
)  # fmt: skip
def test_sdpa_shapes(q, k, v, b):
    expected = core(b, q[-2], k[-2], q[-1], v[-1])
    # e.g. first case: 6 * 5 * 7 * (8 + 4) = 2_520 macs; 5_040 + 6 * 210 = 6_300 flops
    assert fn_cost(F.scaled_dot_product_attention, q, k, v) == expected


def test_sdpa_by_hand():
    got = fn_cost(F.scaled_dot_product_attention, (2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4))
    assert got == Cost(2_520, 6_300)


def test_sdpa_mask_and_causal_add_one_per_score():
    q = (2, 4, 6, 8)
    mask = torch.zeros(6, 6, dtype=torch.bool)
    masked = core(8, 6, 6, 8, 8, masked=True)
    assert fn_cost(lambda a: F.scaled_dot_product_attention(a, a, a, attn_mask=mask), q) == masked
    assert fn_cost(lambda a: F.scaled_dot_product_attention(a, a, a, is_causal=True), q) == masked
    # a float mask passed as an input behaves the same
    fn = Fn(lambda a, m: F.scaled_dot_product_attention(a, a, a, attn_mask=m))
    assert cost_of(fn, q, (6, 6)) == masked


def test_sdpa_grouped_query_heads():
    # 8 query heads share 2 key/value heads: B = 1 * 8
    fn = Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    assert cost_of(fn, (1, 8, 5, 16), (1, 2, 7, 16), (1, 2, 7, 16)) == core(8, 5, 7, 16, 16)


def test_sdpa_dropout_counts_the_weights_multiply():
    fn = Fn(lambda a: F.scaled_dot_product_attention(a, a, a, dropout_p=0.1))
    assert cost_of(fn, (1, 2, 5, 4)) == core(2, 5, 5, 4, 4, dropout=True)


def test_sdpa_macs_match_flop_counter_mode():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    fn = Fn(F.scaled_dot_product_attention)
    report = flopgraph.analyze(fn, (q, k, v))
    assert 2 * report.macs == flop_counter_total(fn, q, k, v)


class Attend(nn.Module):
    """Calls a MultiheadAttention on (q, k, v), k and v defaulting to q, with fixed
    keyword arguments; returns the attention output."""

    def __init__(self, attn, **kw):
        super().__init__()
        self.attn = attn
        self.kw = kw

    def forward(self, q, k=None, v=None, key_padding_mask=None):
        k = q if k is None else k
        v = k if v is None else v
        return self.attn(q, k, v, key_padding_mask=key_padding_mask, **self.kw)[0]


def mha_expected(n, tl, s, e, kdim, vdim, heads, bias=True, masked=False, average=0, extra=0):
    """Input projections + attention core per head + output projection (+ head average)."""
    proj = [(n * tl, e, e), (n * s, kdim, e), (n * s, vdim, e), (n * tl, e, e)]  # rows, in, out
    macs = sum(r * i * o for r, i, o in proj)
    flops = 2 * macs + (sum(r * o for r, _, o in proj) if bias else 0)
    c = core(n * heads, tl, s + extra, e // heads, e // heads, masked)
    return Cost(macs + c.macs, flops + c.flops + average * n * heads * tl * (s + extra))


def test_mha_by_hand():
    m = nn.MultiheadAttention(16, 4).eval()
    # q, k, v, out projections: 10 rows * 16 * 16 = 2_560 macs each   = 10_240
    # core per head: B = 2 * 4, L = S = 5, E = Ev = 4: 8 * 25 * 8     = 1_600
    # flops: 4 * (5_120 + 160) + (3_200 + 6 * 200) + head average 200 = 25_720
    assert cost_of(m, (5, 2, 16), (5, 2, 16), (5, 2, 16)) == Cost(11_840, 25_720)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights, average", [(True, True), (True, False), (False, False)])
def test_mha_kdim_vdim_and_weights(batch_first, need_weights, average):
    m = nn.MultiheadAttention(12, 3, kdim=5, vdim=7, batch_first=batch_first).eval()

    n, tl, s = 2, 4, 9
    shapes = (
        [(n, tl, 12), (n, s, 5), (n, s, 7)] if batch_first else [(tl, n, 12), (s, n, 5), (s, n, 7)]
    )
    expected = mha_expected(n, tl, s, 12, 5, 7, 3, average=int(need_weights and average))
    call = Attend(m, need_weights=need_weights, average_attn_weights=average)
    assert cost_of(call, *shapes) == expected


def test_mha_masks_bias_kv_zero_attn_and_no_bias():
    m = nn.MultiheadAttention(8, 2, bias=False, add_bias_kv=True, add_zero_attn=True).eval()

    # two keys appended (bias_k and a zero key): S' = 6 + 2; masked; no bias terms
    x, pad = torch.zeros(6, 3, 8), torch.zeros(3, 6, dtype=torch.bool)
    report = flopgraph.analyze(
        Attend(m, need_weights=False), (x,), kwargs={"key_padding_mask": pad}
    )
    assert report.cost == mha_expected(3, 6, 6, 8, 8, 8, 2, bias=False, masked=True, extra=2)


def test_mha_unbatched_and_training_dropout():
    m = nn.MultiheadAttention(8, 2, dropout=0.1).train()
    expected = mha_expected(1, 5, 5, 8, 8, 8, 2, average=1)
    scores = 1 * 2 * 5 * 5  # the dropout multiply on the weights
    assert cost_of(m, (5, 8), (5, 8), (5, 8)) == Cost(expected.macs, expected.flops + scores)


def test_mha_fast_path_module_counts_as_slow_path():
    # eval, batch_first, self-attention, no weights: the conditions of torch's fast path
    cpu = nn.MultiheadAttention(16, 4, batch_first=True).eval()

    x = torch.randn(2, 5, 16)
    report = flopgraph.analyze(Attend(cpu, need_weights=False), x)
    assert report.cost == mha_expected(2, 5, 5, 16, 16, 16, 4)
    # FlopCounterMode sees no op inside the fused fast path the real forward takes
    assert flop_counter_total(Attend(cpu, need_weights=False), x) == 0


def test_mha_equals_handwritten_parts():
    """The leaf module and the same computation written with F ops count the same."""
    m = nn.MultiheadAttention(16, 4, batch_first=True).eval()

    class Parts(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x):
            n, tl, e = 2, 5, 16
            m = self.m
            q, k, v = F.linear(x, m.in_proj_weight, m.in_proj_bias).chunk(3, -1)
            q, k, v = (t.view(n, tl, 4, 4).transpose(1, 2) for t in (q, k, v))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, tl, e)
            return F.linear(o, m.out_proj.weight, m.out_proj.bias)

    a = flopgraph.analyze(Parts(), (2, 5, 16))
    b = flopgraph.analyze(Attend(m, need_weights=False), (2, 5, 16))
    assert a.cost == b.cost == mha_expected(2, 5, 5, 16, 16, 16, 4)


def ffn(tokens, d, ff, residuals):
    """Linear d->ff, activation, linear ff->d, residual adds, LayerNorms (8 per element)."""
    macs = 2 * tokens * d * ff
    flops = 2 * macs + tokens * ff + tokens * d  # biases
    flops += tokens * ff + residuals * tokens * d + residuals * 8 * tokens * d
    return Cost(macs, flops)


def test_transformer_encoder_layer_by_hand():
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True).eval()
    n, tl = 2, 6
    expected = mha_expected(n, tl, tl, 32, 32, 32, 4) + ffn(n * tl, 32, 64, residuals=2)
    assert cost_of(layer, (n, tl, 32)) == expected


@pytest.mark.parametrize("p", [0.0, 0.1])
def test_transformer_encoder_layer_training_dropouts(p):
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=p).train()
    tokens = 6 * 2
    expected = mha_expected(2, 6, 6, 32, 32, 32, 4) + ffn(tokens, 32, 64, residuals=2)
    # with p > 0 three nn.Dropout modules run in training (after the activation and on both
    # branches), and the attention weights' dropout: 2 * 4 heads * 6 * 6 scores = 288; p = 0
    # is the identity (torch returns the input), as in eval
    dropouts = tokens * 64 + 2 * tokens * 32 + 288 if p else 0
    assert cost_of(layer, (6, 2, 32)) == Cost(expected.macs, expected.flops + dropouts)
    at = flopgraph.analyze(layer, (6, 2, 32), frontend="aten")
    assert at.cost == Cost(expected.macs, expected.flops + dropouts)


def test_nn_transformer_by_hand():
    with torch.device("meta"):
        model = nn.Transformer(
            64, 4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128,
            batch_first=True,
        ).eval()  # fmt: skip
    src, tgt = (2, 10, 64), (2, 7, 64)
    enc_layer = mha_expected(2, 10, 10, 64, 64, 64, 4) + ffn(20, 64, 128, residuals=2)
    dec_layer = (
        mha_expected(2, 7, 7, 64, 64, 64, 4, masked=True)  # causal self-attention
        + mha_expected(2, 7, 10, 64, 64, 64, 4)  # cross-attention on the memory
        + ffn(14, 64, 128, residuals=3)
    )
    norms = Cost(0, 8 * 20 * 64 + 8 * 14 * 64)  # final encoder and decoder LayerNorms
    expected = enc_layer + enc_layer + dec_layer + dec_layer + norms
    # encoder layer macs: 4 * 20 * 64 * 64 + 8 * 10 * 10 * 32 + 2 * 20 * 64 * 128 = 680_960
    assert enc_layer.macs == 680_960
    mask = nn.Transformer.generate_square_subsequent_mask(7, device="meta")
    report = flopgraph.analyze(model, (src, tgt), kwargs={"tgt_mask": mask, "tgt_is_causal": True})
    assert report.cost == expected
    assert not report.skipped
