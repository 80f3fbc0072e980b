"""On a real CUDA GPU (skipped elsewhere): a model that lives on the GPU is counted
exactly as its CPU twin, FlopCounterMode around a real GPU forward agrees under the
``torch`` convention, and the model leaves every analysis as it came (values, running
statistics, flags, hooks), the real runs of value-dependent models included.

CI has no GPU: these run on a lent GPU machine (docs/reliability.md, "On a real GPU").
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_untouched, flop_counter_total, snapshot
from torch import nn

import flopgraph
from flopgraph import Cost, TensorSpec

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.filterwarnings("ignore::flopgraph.TrainingModeWarning"),
]

FRONTENDS = ["fx", "aten"]


def _conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())


# conv on 2 x 3 x 8 x 8: 2 * 4 * 6 * 6 * 3 * 9 = 7_776 macs; 2 * 7_776 + 288 bias = 15_840
# flops; batch norm on 288 elements: eval (2 + 2) * 288, training (6 + 2) * 288; relu 288
CONV_BN = {False: Cost(7_776, 15_840 + 1_152 + 288), True: Cost(7_776, 15_840 + 2_304 + 288)}


def _on_gpu(model: nn.Module) -> nn.Module:
    with torch.no_grad():  # values that are not zeros, so a write would show
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.uniform_(-1, 1)
    return model.cuda()


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_conv_bn_on_the_gpu_by_hand_and_untouched(frontend: str, training: bool) -> None:
    model = _on_gpu(_conv_bn()).train(training)
    before = snapshot(model)
    for inputs in ((2, 3, 8, 8), torch.randn(2, 3, 8, 8, device="cuda")):
        report = flopgraph.analyze(model, inputs, frontend=frontend)
        assert report.cost == CONV_BN[training] and report.skipped == {}
        assert not report.frontend.real_run
    assert_untouched(model, before)  # running statistics included, in training mode


@pytest.mark.parametrize("training", [False, True])
def test_a_value_dependent_model_runs_on_gpu_copies_and_leaves_the_model(training) -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _conv_bn()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) if x.sum() > 0 else x

    model = _on_gpu(Branchy()).train(training)
    before = snapshot(model)
    report = flopgraph.analyze(model, torch.ones(2, 3, 8, 8, device="cuda"))
    assert report.frontend.real_run
    # the real run's ops: conv, batch norm, relu, plus the condition's sum (383 adds)
    assert report.cost == Cost(CONV_BN[training].macs, CONV_BN[training].flops + 383)
    assert_untouched(model, before)


def _resnet18() -> nn.Module:
    tv = pytest.importorskip("torchvision")
    return tv.models.resnet18(weights=None).eval()


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_resnet18_on_the_gpu_equals_its_cpu_twin_and_flop_counter_mode(frontend: str) -> None:
    cpu = _resnet18()
    gpu = copy.deepcopy(cpu).cuda()
    before = snapshot(gpu)
    on_cpu = flopgraph.analyze(cpu, (2, 3, 224, 224), frontend=frontend)
    on_gpu = flopgraph.analyze(gpu, (2, 3, 224, 224), frontend=frontend)
    assert on_gpu.cost == on_cpu.cost and on_gpu.skipped == {}
    assert [r.flops for r in on_gpu.records] == [r.flops for r in on_cpu.records]
    x = torch.randn(2, 3, 224, 224, device="cuda")
    torch_total = flopgraph.analyze(gpu, x, convention="torch").flops  # an aten convention
    assert torch_total == flop_counter_total(gpu, x)
    assert_untouched(gpu, before)


def test_resnet18_training_step_on_the_gpu_equals_its_cpu_twin() -> None:
    cpu = _resnet18().train()
    gpu = copy.deepcopy(cpu).cuda()
    before = snapshot(gpu)
    kw = {"training": True, "optimizer": "adamw"}
    on_cpu = flopgraph.analyze(cpu, (2, 3, 64, 64), **kw)
    on_gpu = flopgraph.analyze(gpu, torch.randn(2, 3, 64, 64, device="cuda"), **kw)
    assert on_gpu.cost == on_cpu.cost and on_gpu.skipped == on_cpu.skipped
    assert on_gpu.by_phase() == on_cpu.by_phase()
    assert_untouched(gpu, before)  # no gradients appeared, running statistics unchanged


def _llama(device: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to(device).eval()


def test_llama_on_the_gpu_equals_its_cpu_twin_and_flop_counter_mode() -> None:
    cpu, gpu = _llama("cpu"), _llama("cuda")
    before = snapshot(gpu)
    ids = torch.randint(0, 128, (2, 16))
    on_cpu = flopgraph.analyze(cpu, TensorSpec((2, 16), torch.int64))
    on_gpu = flopgraph.analyze(gpu, ids.cuda())
    assert on_gpu.cost == on_cpu.cost and on_gpu.skipped == {}
    # on a GPU, sdpa runs a kernel FlopCounterMode has a formula for (on the CPU it does
    # not see one: tests/test_moe.py), so the whole totals agree
    assert flopgraph.analyze(gpu, ids.cuda(), convention="torch").flops == flop_counter_total(
        gpu, ids.cuda()
    )
    assert_untouched(gpu, before)


def test_generation_of_a_gpu_model_equals_its_cpu_twin() -> None:
    cpu, gpu = _llama("cpu"), _llama("cuda")
    before = snapshot(gpu)
    a = flopgraph.generation(cpu, prompt=12, new_tokens=3, batch=2)
    b = flopgraph.generation(gpu, prompt=12, new_tokens=3, batch=2)
    assert b.total == a.total and b.decode(40).cost == a.decode(40).cost
    assert b.kv_cache_bytes(40) == a.kv_cache_bytes(40)
    assert_untouched(gpu, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mixtral_on_the_gpu_counts_the_gpu_code_path_from_shapes(dtype) -> None:
    # with no token dropping every token runs k experts, so real token ids (whatever
    # experts they pick) count what shapes alone count, and no real run is needed.
    # transformers counts tokens per expert with histc, on float ids on the CPU (k per
    # token, counted) and on int32 ids on a GPU (an integer op: 0), so the GPU model
    # counts the CPU twin minus k * tokens per MoE layer
    transformers = pytest.importorskip("transformers")
    layers, k, tokens = 2, 2, 2 * 8
    config = transformers.MixtralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=48, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
        num_experts_per_tok=k,
    )  # fmt: skip
    torch.manual_seed(0)
    gpu = transformers.MixtralForCausalLM(config).to("cuda", dtype).eval()
    with torch.device("meta"):
        meta = transformers.MixtralForCausalLM(config).to(dtype).eval()
    before = snapshot(gpu)
    cpu_path = flopgraph.analyze(meta, TensorSpec((2, 8), torch.int64))
    shapes = flopgraph.analyze(gpu, TensorSpec((2, 8), torch.int64))
    real = flopgraph.analyze(gpu, torch.randint(0, 128, (2, 8), device="cuda"))
    assert real.skipped == shapes.skipped == {}
    assert not real.frontend.real_run and not shapes.frontend.real_run
    assert real.cost == shapes.cost == Cost(cpu_path.macs, cpu_path.flops - layers * k * tokens)
    histc = [r for r in real.records if r.op == "histc"]
    assert len(histc) == layers and all(r.flops == 0 for r in histc)
    assert real.params == cpu_path.params
    assert_untouched(gpu, before)


def test_dbrx_counts_the_routing_a_real_gpu_run_takes_by_hand() -> None:
    # DBRX loops over the experts its tokens hit (a value-dependent loop): the real GPU
    # run's routing is counted, and equals the exact count since every token runs k
    # experts. Per (token, expert): 3 products d x f, silu f, w1 * v1 f, the routing
    # weight d, index_add of the result d (as tests/test_moe.py derives on the CPU)
    transformers = pytest.importorskip("transformers")
    d, f, e, k, layers, b, s = 64, 48, 4, 2, 2, 2, 8
    config = transformers.DbrxConfig(
        vocab_size=128, d_model=d, n_heads=4, n_layers=layers,
        ffn_config={"ffn_hidden_size": f, "moe_num_experts": e, "moe_top_k": k},
        attn_config={"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0},
    )  # fmt: skip
    torch.manual_seed(0)
    gpu = transformers.DbrxForCausalLM(config).to("cuda").eval()
    before = snapshot(gpu)
    report = flopgraph.analyze(gpu, torch.randint(0, 128, (b, s), device="cuda"))
    assert report.skipped == {}
    routed = [r for r in report.records if r.routing is not None]
    macs = layers * k * b * s * 3 * d * f
    flops = 2 * macs + layers * k * b * s * (f + f + d + d)
    assert (sum(r.macs for r in routed), sum(r.flops for r in routed)) == (macs, flops)
    assert report.params.active == report.params.total - layers * 3 * d * f * (e - k)
    assert_untouched(gpu, before)
