"""Mixture-of-experts models (transformers, small configs): counted from shapes with no
skipped op, the routed experts' records marked with k and E, their total derived here
by hand from the config, and active parameters as model cards quote them.

Every token runs exactly k of the E routed experts (spec section H), so the routed
work of one MoE layer over T tokens is, per (token, expert) pair, the expert's own
cost, plus what combines the k results. For the gated experts of transformers'
``grouped_mm`` path (Mixtral, Qwen-MoE, DeepSeek-V3, OLMoE, GraniteMoE, PhiMoE) with
hidden size d and expert width f:

- gate_up d -> 2f: 2*d*2f FLOPs (d*2f MACs); act(gate) f; act * up f;
  down f -> d: 2*f*d (f*d MACs); times the routing weight: d;
- per token, the k results summed: (k - 1) * d;
- the expert ids counted per expert (``histc`` on float ids, the CPU path): k.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

import flopgraph
from flopgraph import TensorSpec
from flopgraph.moe import find_experts

transformers = pytest.importorskip("transformers")

D, F, E, K, LAYERS, VOCAB = 64, 48, 4, 2, 2, 128
B, S = 2, 8
T = B * S
ATTN = {"num_attention_heads": 4, "num_key_value_heads": 2}


def _cfg(name: str, **kw: Any) -> Any:
    return getattr(transformers, name)(
        vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, **ATTN, **kw
    )


# name -> (config, MoE layers, routed FLOPs per (token, expert) beyond the gated expert)
GROUPED: dict[str, tuple[Any, int]] = {
    "mixtral": (lambda: _cfg("MixtralConfig", intermediate_size=F, num_local_experts=E,
                             num_experts_per_tok=K), LAYERS),
    "qwen2_moe": (lambda: _cfg("Qwen2MoeConfig", moe_intermediate_size=F, num_experts=E,
                               num_experts_per_tok=K, shared_expert_intermediate_size=80,
                               intermediate_size=80), LAYERS),
    "qwen3_moe": (lambda: _cfg("Qwen3MoeConfig", moe_intermediate_size=F, num_experts=E,
                               num_experts_per_tok=K, intermediate_size=80, head_dim=16), LAYERS),
    "olmoe": (lambda: _cfg("OlmoeConfig", intermediate_size=F, num_experts=E,
                           num_experts_per_tok=K), LAYERS),
    "granitemoe": (lambda: _cfg("GraniteMoeConfig", intermediate_size=F, num_local_experts=E,
                                num_experts_per_tok=K), LAYERS),
    "phimoe": (lambda: _cfg("PhimoeConfig", intermediate_size=F, num_local_experts=E,
                            num_experts_per_tok=K), LAYERS),
    # DeepSeek-V3: the first layer dense, then MoE with one shared expert, group-limited
    # routing (2 groups, 1 kept) and multi-head latent attention
    "deepseek_v3": (lambda: _cfg(
        "DeepseekV3Config", intermediate_size=80, moe_intermediate_size=F, n_routed_experts=E,
        num_experts_per_tok=K, n_shared_experts=1, first_k_dense_replace=1, n_group=2,
        topk_group=1, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
        v_head_dim=16, head_dim=8), LAYERS - 1),
}  # fmt: skip

GATED_EXPERT = 2 * D * 2 * F + F + F + 2 * F * D + D  # per (token, expert), see above
GATED_MACS = D * 2 * F + F * D


def _build(config: Any, device: str = "meta") -> torch.nn.Module:
    with torch.device(device):
        return transformers.AutoModelForCausalLM.from_config(config).eval()


def _routed(report: flopgraph.Report) -> tuple[int, int]:
    routed = [r for r in report.records if r.routing is not None]
    return sum(r.macs for r in routed), sum(r.flops for r in routed)


@pytest.mark.parametrize("name", sorted(GROUPED))
def test_grouped_experts_count_from_shapes_with_the_routed_total_by_hand(name: str) -> None:
    make, moe_layers = GROUPED[name]
    model = _build(make())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a skipped op would warn
        report = flopgraph.analyze(model, TensorSpec((B, S), torch.int64))
    assert report.skipped == {}
    assert not report.frontend.real_run
    routed = [r for r in report.records if r.routing is not None]
    assert {(r.routing.k, r.routing.experts) for r in routed} == {(K, E)}
    assert {r.op for r in routed if r.macs} == {"grouped_mm"}
    per_layer = K * T * GATED_EXPERT + T * (K - 1) * D + K * T
    assert _routed(report) == (moe_layers * K * T * GATED_MACS, moe_layers * per_layer)
    # the router and the shared experts are not routed work
    assert not any(r.routing for r in report.records if ".gate" in r.module or "shared" in r.module)


def test_dbrx_experts_by_hand() -> None:
    # DBRX's experts keep w1, v1, w2 stacked in 2-D parameters and loop over the experts
    # hit, a value-dependent loop: counted on a real run, whose routing cannot change the
    # count (each token runs k experts). Per (token, expert): 3 products d x f, silu f,
    # w1 * v1 f, the routing weight d, index_add of the result d.
    config = transformers.DbrxConfig(
        vocab_size=VOCAB, d_model=D, n_heads=4, n_layers=LAYERS,
        ffn_config={"ffn_hidden_size": F, "moe_num_experts": E, "moe_top_k": K},
        attn_config={"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0},
    )  # fmt: skip
    torch.manual_seed(0)
    model = _build(config, "cpu")
    report = flopgraph.analyze(model, torch.randint(0, VOCAB, (B, S)))
    assert report.skipped == {}
    macs = LAYERS * K * T * 3 * D * F
    assert _routed(report) == (macs, 2 * macs + LAYERS * K * T * (F + F + D + D))
    assert report.params.active == report.params.total - LAYERS * 3 * D * F * (E - K)


def test_jetmoe_experts_by_hand() -> None:
    # JetMoE routes both its MLP (d -> 2f, f -> d) and its attention's query/output
    # projections (mixture of attention heads: d -> 2 heads x 16, back to d); the experts
    # are the ParallelExperts linears, and the glu and the combine run in their parent.
    config = transformers.JetMoeConfig(
        vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_key_value_heads=2,
        kv_channels=16, intermediate_size=F, num_local_experts=E, num_experts_per_tok=K,
    )  # fmt: skip
    torch.manual_seed(0)
    model = _build(config, "cpu")
    report = flopgraph.analyze(model, torch.randint(0, VOCAB, (B, S)))
    assert report.skipped == {}
    macs = LAYERS * K * T * (D * 2 * F + F * D + 2 * D * 32)
    assert _routed(report) == (macs, 2 * macs)
    expert_params = LAYERS * (E * (2 * F * D + F * D) + E * 2 * 32 * D)
    assert report.params.active == report.params.total - expert_params * (E - K) // E


def test_mixtral_8x7b_active_parameters_from_the_config() -> None:
    # Mixtral-8x7B: d 4096, 32 layers, 32 heads (8 kv heads of 128), expert width
    # 14336, 8 experts, top-2, vocabulary 32000, untied head. By hand:
    #   attention per layer: q, o 4096*4096 each, k, v 4096*1024 each = 41_943_040
    #   router 8*4096 = 32_768; norms 2*4096; one expert 3*4096*14336 = 176_160_768
    #   embeddings 2*32000*4096 = 262_144_000; final norm 4096
    d, layers, expert, vocab = 4096, 32, 3 * 4096 * 14336, 32000
    shared = layers * (41_943_040 + 32_768 + 2 * d) + 2 * vocab * d + d
    total, active = shared + layers * 8 * expert, shared + layers * 2 * expert
    assert (total, active) == (46_702_792_704, 12_879_925_248)  # 46.7B and 12.9B
    config = transformers.MixtralConfig()  # its defaults are Mixtral-8x7B's shape
    model = _build(config)
    groups = find_experts(model)
    assert len(groups) == layers and {(g.routing.k, g.routing.experts) for g in groups} == {(2, 8)}
    report = flopgraph.analyze(model, TensorSpec((1, 4), torch.int64))
    assert (report.params.total, report.params.active) == (total, active)


def test_dense_models_use_every_parameter() -> None:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=D, intermediate_size=F, num_hidden_layers=1, **ATTN
    )
    report = flopgraph.analyze(_build(config), TensorSpec((1, 4), torch.int64))
    assert report.params.active == report.params.total
    assert not any(r.routing for r in report.records)


def test_routing_survives_json() -> None:
    make, _ = GROUPED["mixtral"]
    report = flopgraph.analyze(_build(make()), TensorSpec((1, 4), torch.int64))
    again = flopgraph.Report.from_json(report.to_json())
    assert again.records == report.records
    assert again.params.active == report.params.active < report.params.total


class _ListMoE(torch.nn.Module):
    """The classic layout: one module per expert in a ModuleList, k on the block."""

    def __init__(self) -> None:
        super().__init__()
        self.top_k = 2
        self.gate = torch.nn.Linear(8, 3, bias=False)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # every expert on every token
        return self.gate(x).sum() + sum(e(x) for e in self.experts)


def test_a_module_list_of_experts_is_found_with_k_from_its_block() -> None:
    model = torch.nn.Sequential(_ListMoE())
    (group,) = find_experts(model)
    assert (group.path, group.routing.k, group.routing.experts) == ("0.experts", 2, 3)
    report = flopgraph.analyze(model, (4, 8))
    # 24 gate + 3 * 72 expert parameters; a token uses 2 of the 3 experts
    assert (report.params.total, report.params.active) == (240, 24 + 2 * 72)
    linears = [r for r in report.records if r.op == "linear"]
    assert [r.routing is not None for r in linears] == [False, True, True, True]


@pytest.mark.parametrize("name", ["mixtral", "deepseek_v3"])
def test_torch_preset_matches_flop_counter_mode_on_the_real_forward(name: str) -> None:
    # FlopCounterMode on a real CPU forward counts the mm of every linear; it has no
    # formula for _grouped_mm (the routed experts: 0 in both) and does not see the CPU
    # flash-attention kernel sdpa runs (counted by the preset, as FlopCounterMode counts
    # it on meta tensors). So the preset minus its sdpa records equals it to the unit.
    from torch.utils.flop_counter import FlopCounterMode

    make, _ = GROUPED[name]
    torch.manual_seed(0)
    model = _build(make(), "cpu")
    ids = torch.randint(0, VOCAB, (B, S))
    report = flopgraph.analyze(model, ids, convention="torch")
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(ids)
    sdpa = sum(r.flops for r in report.records if r.op == "scaled_dot_product_attention")
    assert sdpa > 0
    assert report.flops - sdpa == fcm.get_total_flops()
    assert sum(r.flops for r in report.records if r.op == "grouped_mm") == 0


def test_switch_capacity_counts_the_bound_or_the_routing_taken_by_hand() -> None:
    # Switch Transformers' top-1 router keeps at most C tokens per expert and sequence:
    # by default the count is the capacity bound, min(S, E x C) tokens per sequence
    # reaching an expert (spec section H); routing="taken" counts the run's routing.
    # Per (token, expert): wi d -> f and wo f -> d (2 d f MACs, 4 d f FLOPs), relu f,
    # times the routing weight d, index_add of the result d.
    from conftest import assert_untouched, snapshot

    d, f, e, c, b, s = 32, 48, 4, 1, 2, 8
    config = transformers.SwitchTransformersConfig(
        vocab_size=64, d_model=d, d_ff=f, d_kv=8, num_heads=4, num_layers=2,
        num_sparse_encoder_layers=1, num_experts=e, expert_capacity=c,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.SwitchTransformersEncoderModel(config).eval()
    ids = torch.randint(0, 64, (b, s))
    pair = (2 * d * f, 4 * d * f + f + 2 * d)
    before = snapshot(model)
    bound = flopgraph.analyze(model, ids)
    assert bound.skipped == {} and "counted at their capacity bound" in bound.frontend.note
    assert _routed(bound) == (b * min(s, e * c) * pair[0], b * min(s, e * c) * pair[1])
    assert {r.routing for r in bound.records if r.routing} == {flopgraph.Routing(1, e)}
    assert_untouched(model, before)
    # a router whose scores are all equal sends every token to expert 0: C per sequence
    with torch.no_grad():
        model.encoder.block[1].layer[1].mlp.router.classifier.weight.zero_()
    taken = flopgraph.analyze(model, ids, routing="taken")
    assert _routed(taken) == (b * c * pair[0], b * c * pair[1])
    assert "capacity bound" not in taken.frontend.note
    assert flopgraph.analyze(model, ids).cost == bound.cost  # the bound: whatever the routing
    # outside the routed experts the two counts agree
    assert bound.flops - _routed(bound)[1] == taken.flops - _routed(taken)[1]
    # a token uses 1 of the 4 experts: wi and wo, d x f each
    assert bound.params.active == bound.params.total - (e - 1) * 2 * d * f
    with pytest.raises(flopgraph.InputError, match="routing must be one of"):
        flopgraph.analyze(model, ids, routing="mean")  # type: ignore[arg-type]


SWITCH_FACTORY = """
import torch
import transformers


def switch():
    config = transformers.SwitchTransformersConfig(
        vocab_size=64, d_model=32, d_ff=48, d_kv=8, num_heads=4, num_layers=2,
        num_sparse_encoder_layers=1, num_experts=4, expert_capacity=1,
    )
    model = transformers.SwitchTransformersEncoderModel(config).eval()
    with torch.no_grad():  # every token chooses expert 0
        model.encoder.block[1].layer[1].mlp.router.classifier.weight.zero_()
    return model
"""


def test_cli_routing_option_counts_the_bound_or_the_routing_taken(tmp_path, capsys) -> None:
    import json

    from test_cli import in_process

    path = tmp_path / "switch_factory.py"
    path.write_text(SWITCH_FACTORY)
    namespace: dict[str, Any] = {}
    exec(SWITCH_FACTORY, namespace)
    model, ids = namespace["switch"](), torch.randint(0, 64, (2, 8))
    for how in ("bound", "taken"):
        proc = in_process(
            capsys, f"{path}:switch", "--input", "int64:2x8", "--real", "--routing", how,
            "--format", "json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        api = flopgraph.analyze(model, ids, routing=how)  # type: ignore[arg-type]
        assert json.loads(proc.stdout)["totals"] == {"macs": api.macs, "flops": api.flops}
    # the bound (8 expert passes) counts 6 more than the routing taken (2), by hand
    bound = flopgraph.analyze(model, ids)
    taken = flopgraph.analyze(model, ids, routing="taken")
    assert bound.macs - taken.macs == 6 * 2 * 32 * 48


@pytest.mark.parametrize("k, experts, tokens", [(1, 4, 6), (2, 4, 5), (2, 3, 4)])
def test_balanced_scores_spread_each_tokens_choices_evenly(k, experts, tokens) -> None:
    # choice j of token t is expert (k t + j) mod E: the scores rank it j-th; over the
    # tokens every expert is chosen floor or ceil of k T / E times
    from flopgraph.frontends.capacity import _balanced

    scores = _balanced(lambda x: torch.zeros(2, tokens, experts), k)(None)
    top = scores.topk(k, dim=-1).indices
    for t in range(tokens):
        assert top[:, t].tolist() == [[(k * t + j) % experts for j in range(k)]] * 2
    counts = torch.bincount(top[0].flatten(), minlength=experts)
    assert set(counts.tolist()) <= {k * tokens // experts, -(-k * tokens // experts)}
