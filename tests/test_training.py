"""Training steps (spec section G): forward, backward, recompute and optimizer phases.

Every expected count is derived here by hand from section G: gradients of
contractions have the forward's MACs, a bias gradient is a sum, other backward ops
count as the forward rules applied to torch's decomposition of them (written out
below where a test needs it), the optimizer counts per parameter element. The torch
preset is checked against FlopCounterMode around a real CPU forward and backward.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_untouched, snapshot
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

import flopgraph
from flopgraph import Cost, InputError

N, I, H, O = 3, 8, 16, 4  # batch, input, hidden, output  # noqa: E741


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(I, H), nn.ReLU(), nn.Linear(H, O))


def x_in(requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(N, I, requires_grad=requires_grad)


# --- forward and backward -------------------------------------------------------------


def test_mlp_backward_is_twice_the_forward_but_the_first_grad_input():
    r = flopgraph.analyze(mlp(), x_in(), training=True)
    fwd_macs = N * I * H + N * H * O
    # layer 2: grad-input and grad-weight (N*H*O each), bias grad N*O - O;
    # ReLU backward: where(x <= 0, 0, grad), 1 per element; layer 1: grad-weight only
    # (the input asks for no gradient), bias grad N*H - H
    back_macs = 2 * fwd_macs - N * I * H
    back_flops = 2 * back_macs + (N * O - O) + N * H + (N * H - H)
    assert r.by_phase()["backward"] == Cost(back_macs, back_flops)
    # forward: two linears with bias, the ReLU, and the loss (sum of N*O: N*O - 1)
    fwd_flops = 2 * fwd_macs + N * H + N * O + N * H + (N * O - 1)
    assert r.by_phase()["forward"] == Cost(fwd_macs, fwd_flops)
    assert list(r.by_phase()) == ["forward", "backward"]  # no optimizer asked for
    assert r.step is not None and r.step.loss == "output.sum()" and r.step.optimizer == ""
    back = r.by_module(phase="backward")
    assert back["0"] == Cost(N * I * H, 2 * N * I * H + N * H - H)
    assert back["1"] == Cost(0, N * H)
    assert back["2"] == Cost(2 * N * H * O, 4 * N * H * O + N * O - O)


def test_mlp_with_an_input_that_requires_grad_pays_the_first_grad_input():
    without = flopgraph.analyze(mlp(), x_in(), training=True).by_phase()["backward"]
    with_grad = flopgraph.analyze(mlp(), x_in(True), training=True).by_phase()["backward"]
    assert with_grad.macs - without.macs == N * I * H
    assert with_grad.flops - without.flops == 2 * N * I * H


def test_conv_batch_norm_relu_block():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    block.train()
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(block)  # batch norm's running statistics and its batch count too
    r = flopgraph.analyze(block, x, training=True, optimizer="sgd")
    assert_untouched(block, before)
    n, c = 2 * 8 * 8 * 8, 8
    conv = n * 3 * 3 * 3  # numel(out) * Cin * k * k
    # batch norm backward, torch's decomposition (train, affine, every gradient):
    #   sum(grad) n - C; x - mean n; grad * (x - mean) n; its sum n - C;
    #   grad_mean C; proj_scale 3C; grad_scale C; grad_input 5n; grad_weight C
    bn_back = 9 * n + 4 * c
    # the conv's input needs no gradient: its weight gradient only, no bias
    assert r.by_phase()["backward"] == Cost(conv, 2 * conv + bn_back + n)
    assert r.by_module(phase="backward")["1"] == Cost(0, bn_back)


class Block(nn.Module):
    """Pre-norm causal self-attention with a residual: layer norm, qkv, SDPA, proj."""

    def __init__(self, d: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.ln, self.heads = nn.LayerNorm(d), heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln(x)).split(d, -1)
        q, k, v = (u.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for u in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.proj(a.transpose(1, 2).reshape(b, t, d))


@pytest.mark.parametrize("input_grad", [False, True])
def test_transformer_block(input_grad):
    b, t, d, h = 2, 5, 8, 2
    e = d // h
    x = torch.randn(b, t, d, requires_grad=input_grad)
    r = flopgraph.analyze(Block(d, h), x, training=True)
    n, rows = b * t * d, b * t
    linears = b * t * d * d + b * t * d * 3 * d  # proj, qkv: grad-input and grad-weight each
    # attention backward (section G's fused formula): B*L*S*(3E + 2Ev) MACs, per score
    # 1 scale + 1 mask + 2 probabilities + 2 dS + 1 scale of dS, per row D: 2Ev - 1
    scores = b * h * t * t
    attn = Cost(scores * 5 * e, 2 * scores * 5 * e + 7 * scores + b * h * t * (2 * e - 1))
    if input_grad:
        # layer norm backward, torch's decomposition (M rows of N = d):
        #   x_hat 2n; grad*weight n; a n; b n - M; c1 n; c2 n - M; c3 n; a - b - c3 2n;
        #   rstd / N M and its product n; weight grad n + (n - N); bias grad n - N
        ln = 14 * n - rows - 2 * d
        accumulate = n  # x's gradient: the residual's plus the layer norm's
    else:
        # no input gradient: only the weight and bias terms reach a result
        ln, accumulate = 2 * n + n + (n - d) + (n - d), 0
    back = r.by_phase()["backward"]
    assert back == Cost(2 * linears + attn.macs, 4 * linears + attn.flops + ln + accumulate)
    # autograd sums x's two gradients as the layer norm's backward hands its one over
    assert r.by_module(phase="backward")["ln"] == Cost(0, ln + accumulate)
    assert r.skipped == {}


# --- frozen layers and LoRA -----------------------------------------------------------


def test_frozen_backbone_with_a_trainable_head():
    model = mlp()
    model[0].requires_grad_(False)
    r = flopgraph.analyze(model, x_in(), training=True)
    # nothing before the head needs a gradient: its weight gradient and bias sum only
    assert r.by_phase()["backward"] == Cost(N * H * O, 2 * N * H * O + N * O - O)


class LoRA(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, scale: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.a = nn.Linear(base.in_features, rank, bias=False)
        self.b = nn.Linear(rank, base.out_features, bias=False)
        self.scale = scale

    def forward(self, x):
        return self.base(x) + self.b(self.a(x)) * self.scale


def test_lora_layer_pays_the_frozen_grad_input_only():
    torch.manual_seed(0)
    r_ = 2
    model = nn.Sequential(nn.Linear(I, H), LoRA(nn.Linear(H, O), r_, 0.5))
    r = flopgraph.analyze(model, x_in(), training=True)
    lora_macs = 2 * N * O * r_ + 2 * N * r_ * H  # b and a: grad-input and grad-weight
    frozen = N * O * H  # the frozen layer's grad-input, no weight or bias gradient
    first = N * I * H  # the first layer's grad-weight (no grad-input)
    macs = lora_macs + frozen + first
    # scale's backward N*O; h's two gradients summed N*H; first bias N*H - H
    flops = 2 * macs + N * O + N * H + (N * H - H)
    assert r.by_phase()["backward"] == Cost(macs, flops)
    # h's two gradients are summed as the later one (the frozen layer's) arrives
    assert r.by_module(phase="backward")["1.base"] == Cost(frozen, 2 * frozen + N * H)


# --- recompute ------------------------------------------------------------------------


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.a = nn.Linear(I, H)
        self.seg = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Linear(H, H))
        self.b = nn.Linear(H, O)
        self.reentrant = reentrant

    def forward(self, x):
        return self.b(checkpoint(self.seg, self.a(x), use_reentrant=self.reentrant))


def test_checkpointed_segment_is_recomputed():
    r = flopgraph.analyze(Checkpointed(reentrant=True), x_in(), training=True)
    linear = Cost(N * H * H, 2 * N * H * H + N * H)
    segment = Cost(2 * linear.macs, 2 * linear.flops + N * H)  # two linears and a GELU
    assert r.by_module(phase="forward")["seg"] == segment
    assert r.by_module(phase="recompute")["seg"] == segment
    assert r.by_phase()["recompute"] == segment
    assert r.hardware_flops == r.flops and r.model_flops == r.flops - segment.flops
    plain = flopgraph.analyze(Checkpointed(reentrant=True), x_in(), training=True)
    assert plain.by_phase()["backward"] == r.by_phase()["backward"]


def test_non_reentrant_checkpoint_stops_at_the_last_tensor_backward_needs():
    # torch reruns the segment only until the last tensor the backward needs is back:
    # the second linear's input (the GELU's output); the linear itself is not rerun
    r = flopgraph.analyze(Checkpointed(reentrant=False), x_in(), training=True)
    linear = Cost(N * H * H, 2 * N * H * H + N * H)
    assert r.by_phase()["recompute"] == Cost(linear.macs, linear.flops + N * H)


# --- the optimizer --------------------------------------------------------------------

P = I * H + H + H * O + O  # the MLP's parameters


@pytest.mark.parametrize(
    ("optimizer", "per_element"),
    [
        ("sgd", 1),  # p.add_(grad, alpha=-lr): the scalar factor folds into the add
        (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 3),  # buf*m + grad; p + buf
        ("adam", 9),  # lerp 1, mul 1, addcmul 2, sqrt 1, div 1, add eps 1, addcdiv 2
        ("adamw", 10),  # Adam's 9 and the decoupled weight decay multiply
    ],
    ids=["sgd", "sgd-momentum", "adam", "adamw"],
)
def test_optimizer_step_per_parameter_element(optimizer, per_element):
    r = flopgraph.analyze(mlp(), x_in(), training=True, optimizer=optimizer)
    assert r.by_phase()["optimizer"] == Cost(0, per_element * P)
    by_module = r.by_module(phase="optimizer")
    assert by_module["0"] == Cost(0, per_element * (I * H + H))
    assert by_module["2"] == Cost(0, per_element * (H * O + O))
    # Adam's step counter is a 0-d tensor on the CPU: free, as Python arithmetic
    counters = [rec for rec in r.records if "step count" in rec.reason]
    assert len(counters) == (4 if per_element >= 9 else 0)  # one per parameter tensor
    assert all(rec.phase == "optimizer" and rec.op == "add" for rec in counters)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_foreach_kernels_count_as_the_per_tensor_ops(name):
    cls = getattr(torch.optim, name)
    counts = [
        flopgraph.analyze(
            mlp(), x_in(), training=True,
            optimizer=lambda ps, fe=fe: cls(ps, lr=0.1, foreach=fe),
        ).by_phase()["optimizer"]
        for fe in (False, True)
    ]  # fmt: skip
    assert counts[0] == counts[1] and counts[0].flops > 0


def test_frozen_parameters_are_not_updated():
    model = mlp()
    model[0].requires_grad_(False)
    r = flopgraph.analyze(model, x_in(), training=True, optimizer="adamw")
    assert r.by_phase()["optimizer"] == Cost(0, 10 * (H * O + O))


# --- the forward phase, the loss, and the report --------------------------------------


def test_forward_phase_equals_a_forward_analysis_in_training_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(I, H), nn.Dropout(0.5), nn.GELU(), nn.Linear(H, O)).train()
    x = x_in()
    step = flopgraph.analyze(model, x, training=True)
    forward = flopgraph.analyze(model, x)
    fwd = step.by_module(phase="forward")
    for path, cost in forward.by_module().items():
        if path:  # the root also holds the loss: sum over N*O outputs
            assert fwd[path] == cost, path
    assert fwd[""] == forward.cost + Cost(0, N * O - 1)
    assert fwd["1"] == Cost(0, N * H)  # dropout in training mode: 1 per element


def test_a_loss_callable_and_an_output_loss():
    target = torch.randn(N, O)
    r = flopgraph.analyze(mlp(), x_in(), training=True, loss=lambda out: F.mse_loss(out, target))
    assert r.step is not None and "lambda" in r.step.loss
    # mse_loss by torch's decomposition: subtract, square, mean (n adds and a divide)
    plain = flopgraph.analyze(mlp(), x_in(), training=True, loss=lambda out: out.sum())
    fwd_extra = r.by_phase()["forward"].flops - plain.by_phase()["forward"].flops
    assert fwd_extra == (N * O + N * O + N * O) - (N * O - 1)


def test_json_carries_phases_and_the_step():
    r = flopgraph.analyze(mlp(), x_in(), training=True, optimizer="sgd")
    again = flopgraph.Report.from_json(r.to_json())
    assert again.by_phase() == r.by_phase() and again.step == r.step
    assert r.to_dict()["phases"]["optimizer"] == {"macs": 0, "flops": P}


# --- untouched, and clear errors ------------------------------------------------------


def test_model_grads_and_the_users_optimizer_are_untouched():
    model = mlp()
    x = x_in()
    model(x).sum().backward()  # the user has gradients and an optimizer with state
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    opt.step()
    before = snapshot(model)
    state = {k: {n: v.clone() for n, v in s.items()} for k, s in opt.state.items()}
    r = flopgraph.analyze(model, x, training=True, optimizer=opt)
    assert r.step is not None and r.step.optimizer == "AdamW"
    assert r.by_phase()["optimizer"] == Cost(0, 10 * P)
    assert_untouched(model, before)
    for k, s in opt.state.items():
        for n, v in s.items():
            assert torch.equal(v, state[k][n])


def test_untouched_after_a_failing_loss():
    model = mlp()
    before = snapshot(model)

    def broken(out):
        raise ValueError("no loss here")

    with pytest.raises(flopgraph.FlopgraphError, match="no loss here"):
        flopgraph.analyze(model, x_in(), training=True, loss=broken)
    assert_untouched(model, before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": lambda out: out}, "one element"),
        ({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
        ({"frontend": "fx"}, "aten frontend"),
        ({"convention": "fvcore"}, "forward passes only"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        flopgraph.analyze(mlp(), x_in(), training=True, **kwargs)


def test_loss_and_optimizer_need_training():
    with pytest.raises(InputError, match="training=True"):
        flopgraph.analyze(mlp(), x_in(), optimizer="sgd")


def test_a_fully_frozen_model_has_no_backward():
    model = mlp().requires_grad_(False)
    with pytest.raises(InputError, match="does not require grad"):
        flopgraph.analyze(model, x_in(), training=True)


# --- the torch preset against FlopCounterMode around a real step ----------------------


def flop_counter_step(model, args, kwargs, loss) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        loss(model(*args, **kwargs)).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def _transformers(name: str):
    transformers = pytest.importorskip("transformers")
    if name == "gpt2":
        config = transformers.GPT2Config(
            n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=64
        )
        return transformers.GPT2LMHeadModel(config)
    config = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_torch_preset_equals_flop_counter_mode_on_language_models(name):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _transformers(name).train()
        ids = torch.randint(0, 100, (2, 16))
        kwargs = {"input_ids": ids, "labels": ids}
        # the math attention kernel on both sides: FlopCounterMode has no formula for the
        # fused CPU kernels (docs/why-tools-disagree.md)
        with sdpa_kernel(SDPBackend.MATH):
            expected = flop_counter_step(model, (), kwargs, lambda out: out.loss)
            r = flopgraph.analyze(model, kwargs=kwargs, training=True, convention="torch")
    assert r.flops == expected
    assert r.step is not None and r.step.loss == "output.loss"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vit_b_16"])
def test_torch_preset_equals_flop_counter_mode_on_torchvision(name):
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = getattr(models, name)().train()
    x = torch.randn(1, 3, 224, 224)
    with sdpa_kernel(SDPBackend.MATH):
        expected = flop_counter_step(model, (x,), {}, lambda out: out.sum())
        r = flopgraph.analyze(model, x, training=True, convention="torch")
    assert r.flops == expected


@pytest.mark.slow
def test_gradient_checkpointing_in_transformers_is_recompute():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _transformers("gpt2").train()
        ids = torch.randint(0, 100, (2, 16))
        kwargs = {"input_ids": ids, "labels": ids}
        plain = flopgraph.analyze(model, kwargs=kwargs, training=True)
        model.gradient_checkpointing_enable()
        ckpt = flopgraph.analyze(model, kwargs=kwargs, training=True)
    assert "recompute" not in plain.by_phase()
    assert ckpt.model_flops == plain.flops  # model FLOPs do not change
    recompute = ckpt.by_module(phase="recompute")
    for i in range(2):
        layer = f"transformer.h.{i}"
        assert recompute[f"{layer}.attn"] == plain.by_module(phase="forward")[f"{layer}.attn"]
    layers = plain.by_module(phase="forward")["transformer.h"]
    assert ckpt.by_phase()["recompute"].macs == layers.macs


# --- peak memory ----------------------------------------------------------------------


@pytest.mark.parametrize(("optimizer", "state_per_element"), [("sgd", 0), ("adamw", 2)])
def test_peak_memory_of_a_step_in_parts(optimizer, state_per_element):
    r = flopgraph.analyze(mlp(), x_in(), training=True, optimizer=optimizer)
    assert r.step is not None and r.step.memory is not None
    mem = r.step.memory
    assert mem.parameters == 4 * P  # float32 parameters (the MLP has no buffers)
    assert mem.gradients == 4 * P  # every gradient is live when the step peaks
    # Adam's two moments per element, and a 0-d float32 step count per tensor
    assert mem.optimizer_state == 4 * state_per_element * P + (4 * 4 if state_per_element else 0)
    assert mem.peak == mem.parameters + mem.gradients + mem.optimizer_state + mem.activations
    assert mem.activations >= 4 * N * I  # the input at least


class _SharedStorage(torch.nn.Module):
    """A parameter of 8 float32 and buffers on storages shared as ``how`` says."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8))
        base = torch.randn(8)
        if how == "detached":  # the parameter's storage, whole
            self.register_buffer("b", self.w.detach())
        elif how == "slice":  # the parameter's storage, a view at offset 2
            self.register_buffer("b", self.w.detach()[2:6])
        elif how == "prefix first":  # another storage: a prefix of it first, then all
            self.register_buffer("a", base[:4].detach())
            self.register_buffer("b", base.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w.sum() + self.b.sum()


@pytest.mark.parametrize(("how", "storages"), [("detached", 1), ("slice", 1), ("prefix first", 2)])
def test_weights_sharing_a_storage_count_it_once(how, storages):
    # the twins share storages as the model's tensors do, however each twin is made
    r = flopgraph.analyze(_SharedStorage(how), torch.randn(3), training=True)
    assert r.step is not None and r.step.memory is not None
    assert r.step.memory.parameters == storages * 8 * 4  # 8 float32 per storage


def test_a_forward_only_analysis_has_no_step():
    r = flopgraph.analyze(mlp(), x_in())
    assert r.step is None and r.by_phase() == {"forward": r.cost}


# --- a Llama-70B-shaped step, against its closed form ---------------------------------


def llama_70b_config(layers: int):
    transformers = pytest.importorskip("transformers")
    return transformers.LlamaConfig(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=layers,
        num_attention_heads=64, num_key_value_heads=8, vocab_size=128256,
        max_position_embeddings=8192, use_cache=False,
    )  # fmt: skip


def llama_step_closed_form(config, tokens: int) -> dict[str, int]:
    """The MACs of each phase, the forward FLOPs of the model's modules, the optimizer's
    FLOPs and the step's memory parts for a Llama step at 1 x ``tokens`` with AdamW."""
    from test_closed_form import llama_closed_form

    d, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    hd, layers, v, inter = (
        d // heads,
        config.num_hidden_layers,
        config.vocab_size,
        (config.intermediate_size),
    )
    forward = llama_closed_form(config, tokens)
    # per layer: q, k, v, o, gate, up, down; and the embedding, norms, lm_head
    per_layer = 2 * d * d + 2 * d * kv * hd + 3 * d * inter + 2 * d
    params = layers * per_layer + 2 * v * d + d
    tensors = layers * 9 + 3
    attention = layers * 2 * heads * tokens * tokens * hd  # forward: scores and values
    return {
        "forward_macs": forward.macs,
        "forward_flops": forward.flops,
        # every linear computes its grad-weight and grad-input (its input comes from the
        # trainable embedding); the fused attention backward is 5 products of the square
        # where the forward has 2
        "backward_macs": 2 * (forward.macs - attention) + attention // 2 * 5,
        "optimizer_flops": 10 * params,
        # and the rotary embedding's two buffers, inv_freq and original_inv_freq
        "parameters": 4 * params + 2 * 4 * (hd // 2),
        "gradients": 4 * params,
        "optimizer_state": 8 * params + 4 * tensors,
    }


@pytest.mark.slow
def test_llama_70b_shaped_step_is_its_closed_form():
    config = llama_70b_config(layers=2)
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).train()
    ids = torch.zeros(1, 4096, dtype=torch.long, device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = flopgraph.analyze(
            model, kwargs={"input_ids": ids, "labels": ids}, training=True, optimizer="adamw"
        )
    want = llama_step_closed_form(config, 4096)
    phases = r.by_phase()
    assert r.skipped == {} and list(phases) == ["forward", "backward", "optimizer"]
    assert phases["forward"].macs == want["forward_macs"]
    assert phases["backward"].macs == want["backward_macs"]
    assert phases["optimizer"] == Cost(0, want["optimizer_flops"])
    # the forward of every module (the loss runs at the root, outside them)
    modules = [m for m in r.by_module(phase="forward") if m and "." not in m]
    assert sum(r.by_module(phase="forward")[m].flops for m in modules) == want["forward_flops"]
    mem = r.step.memory
    assert (mem.parameters, mem.gradients, mem.optimizer_state) == (
        want["parameters"],
        want["gradients"],
        want["optimizer_state"],
    )


# --- MFU ------------------------------------------------------------------------------


def test_mfu_and_hfu_of_a_checkpointed_step():
    r = flopgraph.analyze(Checkpointed(reentrant=True), x_in(), training=True)
    u = flopgraph.utilization(r, seconds=0.5, peak=10_000.0, devices=2)
    assert u.peak_flops_per_s == 20_000.0
    assert u.mfu == r.model_flops / 0.5 / 20_000.0 and u.hfu == r.flops / 0.5 / 20_000.0
    assert u.hfu > u.mfu  # the recompute is hardware work, not model work
    h100 = flopgraph.utilization(r, seconds=1.0, accelerator="h100", dtype="bfloat16")
    assert h100.peak_flops_per_s == 989.4e12
    with pytest.raises(InputError, match="unknown accelerator"):
        flopgraph.utilization(r, seconds=1.0, accelerator="abacus")
    with pytest.raises(InputError, match="no float64 peak"):
        flopgraph.utilization(r, seconds=1.0, accelerator="A100", dtype="float64")


# --- the command line -----------------------------------------------------------------


def test_cli_train_writes_phases_to_json(tmp_path, capsys):
    from flopgraph.cli import main

    out = tmp_path / "step.json"
    code = main(["lenet", "--train", "--optimizer", "adamw", "-o", str(out), "--quiet"])
    assert code == 0
    r = flopgraph.Report.from_json(out.read_text())
    assert r.step is not None and r.step.optimizer == "AdamW"
    assert list(r.by_phase()) == ["forward", "backward", "optimizer"]
    assert r.by_phase()["optimizer"] == Cost(0, 10 * r.params.trainable)
    assert all(rec.phase in ("forward", "backward", "optimizer") for rec in r.records)


def test_cli_train_table_shows_phase_columns(capsys):
    from flopgraph.cli import main

    assert main(["lenet", "--train", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "backward FLOPs" in text and "peak memory" in text
    assert main(["lenet", "--optimizer", "sgd", "--quiet"]) == 2
    assert "add --train" in capsys.readouterr().err


@pytest.mark.slow
def test_torch_preset_equals_flop_counter_mode_on_a_peft_lora_gpt2():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0
        )
        model = peft.get_peft_model(_transformers("gpt2"), config).train()
        ids = torch.randint(0, 100, (2, 16))
        kwargs = {"input_ids": ids, "labels": ids}
        with sdpa_kernel(SDPBackend.MATH):
            expected = flop_counter_step(model, (), kwargs, lambda out: out.loss)
            r = flopgraph.analyze(model, kwargs=kwargs, training=True, convention="torch")
        step = flopgraph.analyze(model, kwargs=kwargs, training=True, optimizer="adamw")
    assert r.flops == expected
    # only the adapters train: 2 layers x (A [4, 64] + B [192, 4]) elements, AdamW's 10 each
    trainable = 2 * (4 * 64 + 192 * 4)
    assert step.params.trainable == trainable
    assert step.by_phase()["optimizer"] == Cost(0, 10 * trainable)


@pytest.mark.parametrize(
    ("act", "per_element"),
    [(nn.ReLU(), 1), (nn.Hardtanh(), 1), (nn.LeakyReLU(), 2), (nn.Tanh(), 3), (nn.Sigmoid(), 3)],
)
def test_activation_backward_by_decomposition(act, per_element):
    # torch's decompositions: where(x <= 0, 0, g); where(inside, g, 0); where(x > 0, g,
    # g * slope); g * (1 - y * y); g * y * (1 - y) (docs/conventions.md)
    x = torch.randn(4, 10, requires_grad=True)
    r = flopgraph.analyze(act, x, training=True)
    assert r.by_phase()["backward"] == Cost(0, per_element * 40)


def test_softmax_backward_by_decomposition():
    # g * y (n), its row sum (n - M), y * sum (n), g*y - that (n): 4n - M
    x = torch.randn(4, 10, requires_grad=True)
    r = flopgraph.analyze(nn.Softmax(-1), x, training=True)
    assert r.by_phase()["backward"] == Cost(0, 4 * 40 - 4)


# --- the causal triangle --------------------------------------------------------------


def test_causal_attention_counted_over_its_triangle_forward_and_backward():
    b, t, d, h = 2, 5, 8, 2
    e = d // h
    x = torch.randn(b, t, d)
    full = flopgraph.analyze(Block(d, h), x, training=True)
    tri = flopgraph.analyze(Block(d, h), x, training=True, attention="causal")
    assert full.attention == "full" and tri.attention == "causal"
    assert tri.step is not None and tri.step.attention == "causal"
    # query i sees keys 0..i: t(t+1)/2 = 15 positions per head instead of 25
    saved = b * h * (t * t - t * (t + 1) // 2)
    fwd = Cost(saved * 2 * e, 2 * saved * 2 * e + saved * (1 + 1 + 5))  # q k^T, P v; per score
    bwd = Cost(saved * 5 * e, 2 * saved * 5 * e + saved * 7)  # five products; per score
    assert full.by_phase()["forward"].macs - tri.by_phase()["forward"].macs == fwd.macs
    assert full.by_phase()["forward"].flops - tri.by_phase()["forward"].flops == fwd.flops
    assert full.by_phase()["backward"].macs - tri.by_phase()["backward"].macs == bwd.macs
    assert full.by_phase()["backward"].flops - tri.by_phase()["backward"].flops == bwd.flops
    # a forward analysis takes the option too, and says so in its JSON
    forward = flopgraph.analyze(Block(d, h), x, attention="causal")
    assert forward.to_dict()["attention"] == "causal"
    assert flopgraph.analyze(Block(d, h), x).macs - forward.macs == fwd.macs


def test_causal_positions_when_queries_and_keys_differ():
    from flopgraph.formulas import causal_positions

    # top-left aligned: query i sees min(i + 1, S) keys
    assert causal_positions(3, 5) == 1 + 2 + 3
    assert causal_positions(5, 3) == 1 + 2 + 3 + 3 + 3
    assert causal_positions(4, 4) == 4 * 5 // 2


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("Adam", {}),
        ("Adam", {"weight_decay": 0.1, "amsgrad": True, "maximize": True}),
        ("AdamW", {}),
        ("AdamW", {"amsgrad": True}),
        ("SGD", {"momentum": 0.9}),
        ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "maximize": True}),
        ("SGD", {}),
    ],
)
def test_fused_kernels_count_as_the_for_loop(name, settings):
    cls = getattr(torch.optim, name)
    counts = []
    for form in ({"foreach": False}, {"fused": True}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = flopgraph.analyze(
                mlp(), x_in(), training=True,
                optimizer=lambda ps, form=form: cls(ps, lr=0.1, **settings, **form),
            )  # fmt: skip
        assert r.skipped == {}
        counts.append(r.by_phase()["optimizer"])
    assert counts[0] == counts[1]
    # per element by hand (docs/conventions.md): Adam 9, + weight decay, amsgrad's
    # maximum and maximize's negation 1 each; SGD 1, + 2 for momentum (after the first
    # step), + 1 each for Nesterov, weight decay and maximize
    if name.startswith("Adam"):
        per = 9 + (name == "AdamW" or "weight_decay" in settings) + ("amsgrad" in settings)
        per += "maximize" in settings
    else:
        per = 1 + 2 * ("momentum" in settings) + len({"nesterov", "weight_decay", "maximize"}
                                                      & set(settings))  # fmt: skip
    assert counts[0] == Cost(0, per * P)


@pytest.mark.parametrize("groups", [1, 4, 8])
@pytest.mark.parametrize("transposed", [False, True])
def test_torch_preset_grouped_convolution_backward_equals_flop_counter_mode(groups, transposed):
    # FlopCounterMode counts a grouped convolution's weight gradient with the input's
    # full channel count: the preset reproduces it; the default counts what runs
    torch.manual_seed(0)
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(8, 8, 3, groups=groups)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), conv)
    x = torch.randn(2, 3, 6, 6)
    expected = flop_counter_step(model, (x,), {}, lambda out: out.sum())
    assert flopgraph.analyze(model, x, training=True, convention="torch").flops == expected
    r = flopgraph.analyze(model, x, training=True)
    out = 8 if transposed else 4  # spatial side of the grouped conv's output
    side = 6  # of its input
    # the grouped conv's forward MACs: numel(out) * Cin/g * 9, or numel(in) * Cout/g * 9
    fwd = 2 * 8 * (side * side if transposed else out * out) * (8 // groups) * 9
    back = r.by_module(phase="backward")["1"]
    assert back.macs == 2 * fwd  # grad-input and grad-weight, each the forward's MACs


class Scaled(nn.Module):
    """``fn(x * w)``: a trainable scale before ``fn``, so that ``fn``'s input needs a gradient."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.w = fn, nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.fn(x * self.w)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        # the transpose of the forward: each output gradient back to what it read
        (lambda x: F.avg_pool2d(x, 2), Cost(0, 2 * 3 * 4 * 4 * 4)),  # numel(out) * k*k
        (lambda x: F.avg_pool2d(x, 3, stride=1), Cost(0, 2 * 3 * 6 * 6 * 9)),
        # windows of 8 -> 3: [0, 3), [2, 6), [5, 8): 3 + 4 + 3 = 10 per dim
        (lambda x: F.adaptive_avg_pool2d(x, 3), Cost(0, 2 * 3 * 10 * 10)),
        (lambda x: F.adaptive_max_pool2d(x, 3), Cost(0, 2 * 3 * 3 * 3)),  # one add each
        (lambda x: F.max_pool2d(x, 2), Cost(0, 2 * 3 * 4 * 4)),  # by its decomposition
        (lambda x: F.interpolate(x, scale_factor=2), Cost(0, 2 * 3 * 16 * 16)),
        (
            lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
            Cost(4 * 2 * 3 * 16 * 16, 8 * 2 * 3 * 16 * 16),
        ),  # 4 taps per output gradient
    ],
    ids=["avg", "avg-overlap", "adaptive-avg", "adaptive-max", "max", "nearest", "bilinear"],
)
def test_pooling_and_interpolation_backward(fn, expected):
    x = torch.randn(2, 3, 8, 8)
    r = flopgraph.analyze(Scaled(fn), x, training=True)
    assert r.skipped == {}
    # the scale's own backward: grad * x (n) and its sum to one element (n - 1)
    n = x.numel()
    assert r.by_phase()["backward"] == Cost(expected.macs, expected.flops + n + n - 1)


@pytest.mark.slow
def test_mixture_of_experts_counts_on_fake_tensors_forward_and_step():
    # transformers' MoE layers call _grouped_mm in float32 on the CPU, which its fake
    # kernel refuses (bfloat16 only): shaped on bfloat16 stand-ins, nothing runs for real
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.MixtralConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=100,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.MixtralForCausalLM(config).train()
        ids = torch.randint(0, 100, (2, 8))
        kwargs = {"input_ids": ids, "labels": ids}
        forward = flopgraph.analyze(model, kwargs={"input_ids": ids})
        assert not forward.frontend.real_run and forward.skipped == {}
        # every token runs k = 2 experts: gate, up and down projections of 2 x 16 rows
        experts = sum(
            r.macs for r in forward.records if r.module.endswith("mlp.experts") and r.macs
        )
        assert experts == 2 * (2 * 16) * (64 * 96 * 2 + 96 * 64)
        with sdpa_kernel(SDPBackend.MATH):
            expected = flop_counter_step(model, (), kwargs, lambda out: out.loss)
            preset = flopgraph.analyze(model, kwargs=kwargs, training=True, convention="torch")
        step = flopgraph.analyze(model, kwargs=kwargs, training=True, optimizer="adamw")
    assert preset.flops == expected
    assert step.skipped == {} and list(step.by_phase()) == ["forward", "backward", "optimizer"]


class LayerDrop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(I, H), nn.Linear(H, H)

    def forward(self, x):
        h = self.a(x)
        if self.training and torch.rand(()) < 0.5:  # skip a layer at random
            return h
        return self.b(h)


def test_a_step_with_a_random_branch_is_refused_naming_the_line():
    model = LayerDrop().train()
    before = snapshot(model)
    with pytest.raises(flopgraph.TraceError, match="control flow depends on tensor values") as e:
        flopgraph.analyze(model, x_in(), training=True)
    assert "test_training.py" in str(e.value) and "layerdrop" in str(e.value)
    assert_untouched(model, before)
    # in eval mode the branch is not taken: the forward counts
    assert flopgraph.analyze(model.eval(), x_in()).macs == N * I * H + N * H * H


def test_the_optimizer_phase_never_takes_a_new_tensor_for_a_freed_one():
    # the optimizer phase keys tensors by identity; a freed tensor's id is reused by the
    # next tensor at that address, which once made a step counter (free) look like a
    # parameter's tensor and counted its increments (AdamW with foreach: 4 flops)
    from flopgraph.frontends.training import _ByTensor

    seen, a, b = _ByTensor(), torch.zeros(()), torch.zeros(())
    seen.put(a, "fc")
    assert a in seen and seen.get(a) == "fc" and b not in seen
    seen._map[id(b)] = seen._map.pop(id(a))  # as if b had been allocated at a's address
    assert b not in seen and seen.get(b) is None
    seen.drop(b)  # dropping a tensor it does not hold leaves the entry
    assert id(b) in seen._map
