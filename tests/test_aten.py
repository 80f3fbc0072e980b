"""The aten frontend: parity with fx op by op, fallback, real runs, attribution, safety."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_untouched, snapshot
from helpers import Fn, bn_model_with_hooks
from test_torchvision import MODELS, build
from torch import nn

import flopgraph
from flopgraph import Cost, Status, TensorSpec
from flopgraph.count_aten import count_aten
from flopgraph.examples import TinyTransformerBlock
from flopgraph.frontends.aten import ModuleCall, TorchCall, trace_aten
from flopgraph.handlers import DEFAULT

S = (2, 3, 8, 8)
V = (2, 3, 16)


def _ones(*shape):
    return torch.ones(*shape)


# One call per family the fx handlers know; each runs under both frontends.
FUNCTIONS = {
    "add": (lambda x, y: x + y, [S, S]),
    "sub_alpha": (lambda x, y: torch.sub(x, y, alpha=2), [S, S]),
    "rsub": (lambda x: 1 - x, [S]),
    "div": (lambda x, y: x / y, [S, S]),
    "pow": (lambda x: x**2, [S]),
    "rsqrt": (torch.rsqrt, [S]),
    "square": (torch.square, [S]),
    "clamp_min": (lambda x: x.clamp(min=0), [S]),
    "where": (lambda x, y: torch.where(x > 0, x, y), [S, S]),
    "lerp": (lambda x, y: torch.lerp(x, y, 0.5), [S, S]),
    "floor_divide": (lambda x: x // 2, [S]),
    "relu_inplace": (lambda x: F.relu(x.clone(), inplace=True), [S]),
    "relu6": (F.relu6, [S]),
    "prelu": (lambda x: F.prelu(x, _ones(3)), [S]),
    "selu": (F.selu, [S]),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), [S]),
    "mish": (F.mish, [S]),
    "hardswish": (F.hardswish, [S]),
    "softsign": (F.softsign, [S]),
    "logsigmoid": (F.logsigmoid, [S]),
    "glu": (lambda x: F.glu(x, 1), [(2, 4, 8)]),
    "rrelu_eval": (lambda x: F.rrelu(x, training=False), [S]),
    "tanhshrink": (F.tanhshrink, [S]),
    "addcdiv": (lambda x, y: torch.addcdiv(x, x, y), [S, S]),
    "sum_dim": (lambda x: x.sum(1), [S]),
    "prod": (lambda x: x.prod(1), [S]),
    "max_dim": (lambda x: x.max(1)[0], [S]),
    "max_other": (torch.max, [S, S]),
    "mean": (lambda x: x.mean((2, 3)), [S]),
    "std": (lambda x: x.std(1), [S]),
    "var_mean": (lambda x: torch.var_mean(x, 1)[0], [S]),
    "norm": (lambda x: x.norm(dim=1), [S]),
    "vector_norm": (lambda x: torch.linalg.vector_norm(x, dim=-1), [S]),
    "cumsum": (lambda x: x.cumsum(2), [S]),
    "logsumexp": (lambda x: torch.logsumexp(x, 1), [S]),
    "softmax": (lambda x: x.softmax(-1), [S]),
    "log_softmax": (lambda x: F.log_softmax(x, 1), [S]),
    "softmin": (lambda x: F.softmin(x, 1), [S]),
    "batch_norm_eval": (lambda x: F.batch_norm(x, _ones(3), _ones(3), _ones(3), _ones(3)), [S]),
    "batch_norm_train": (lambda x: F.batch_norm(x, None, None, training=True), [S]),
    "layer_norm": (lambda x: F.layer_norm(x, (8, 8), _ones(8, 8), _ones(8, 8)), [S]),
    "group_norm": (lambda x: F.group_norm(x, 3, _ones(3), _ones(3)), [S]),
    "instance_norm": (F.instance_norm, [S]),
    "rms_norm": (lambda x: F.rms_norm(x, (8,), _ones(8)), [S]),
    "normalize": (F.normalize, [S]),
    "local_response_norm": (lambda x: F.local_response_norm(x, 2), [S]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [S]),
    "max_pool1d": (lambda x: F.max_pool1d(x, 3), [V]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 1, 1), [S]),
    "avg_pool3d": (lambda x: F.avg_pool3d(x, 2), [(1, 2, 4, 4, 4)]),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 3), [S]),
    "global_avg_pool": (lambda x: F.adaptive_avg_pool2d(x, 1), [S]),
    "adaptive_avg_pool1d": (lambda x: F.adaptive_avg_pool1d(x, 5), [V]),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 3), [S]),
    "lp_pool2d": (lambda x: F.lp_pool2d(x, 2, 2), [S]),
    "mm": (torch.mm, [(4, 5), (5, 6)]),
    "matmul_broadcast": (torch.matmul, [(4, 5), (3, 5, 6)]),
    "matmul_vector": (torch.matmul, [(5,), (5, 6)]),
    "dot": (torch.dot, [(5,), (5,)]),
    "baddbmm": (torch.baddbmm, [(2, 4, 6), (2, 4, 5), (2, 5, 6)]),
    "addbmm": (torch.addbmm, [(4, 6), (2, 4, 5), (2, 5, 6)]),
    "addmv": (torch.addmv, [(4,), (4, 5), (5,)]),
    "outer": (torch.outer, [(4,), (5,)]),
    "addr": (torch.addr, [(4, 5), (4,), (5,)]),
    "linear": (lambda x: F.linear(x, _ones(4, 8), _ones(4)), [S]),
    "linear_strided": (lambda x: F.linear(x.transpose(1, 2), _ones(4, 8), _ones(4)), [S]),
    "conv2d_groups": (lambda x: F.conv2d(x, _ones(6, 1, 3, 3), _ones(6), groups=3), [S]),
    "conv1d": (lambda x: F.conv1d(x, _ones(4, 3, 3)), [V]),
    "conv_transpose2d": (lambda x: F.conv_transpose2d(x, _ones(3, 4, 3, 3), stride=2), [S]),
    "einsum_2": (lambda a, b: torch.einsum("bij,bjk->bik", a, b), [(2, 4, 5), (2, 5, 6)]),
    "einsum_3": (lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c), [(4, 5), (5, 6), (6, 7)]),
    "einsum_sum_out": (lambda a, b: torch.einsum("ij,kj->i", a, b), [(4, 5), (3, 5)]),
    "bilinear": (lambda a, b: F.bilinear(a, b, _ones(7, 5, 6), _ones(7)), [(4, 5), (4, 6)]),
    "dropout_train": (lambda x: F.dropout(x, 0.5, training=True), [S]),
    "dropout2d_train": (lambda x: F.dropout2d(x, 0.5, training=True), [S]),
    "interpolate_bilinear": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), [S]),
    "interpolate_nearest": (lambda x: F.interpolate(x, scale_factor=2), [S]),
    "interpolate_bicubic": (lambda x: F.interpolate(x, size=(5, 5), mode="bicubic"), [S]),
    "interpolate_area": (lambda x: F.interpolate(x, size=(3, 3), mode="area"), [S]),
    "interpolate_linear": (lambda x: F.interpolate(x, scale_factor=2, mode="linear"), [V]),
    "sdpa": (F.scaled_dot_product_attention, [(2, 4, 8, 16)] * 3),
    "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    [(2, 4, 8, 16)] * 3),
    "sdpa_gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 [(2, 4, 8, 16), (2, 2, 6, 16), (2, 2, 6, 12)]),
    "embedding_bag": (lambda i: F.embedding_bag(i.long(), _ones(10, 4), torch.tensor([0, 2])),
                      [(6,)]),
    "movement": (lambda x: F.pad(x.permute(0, 2, 3, 1).flip(1).roll(1, 2), (1, 1))[:, 0], [S]),
}  # fmt: skip

MODULES = {
    "lstm_bidirectional": (nn.LSTM(8, 16, 2, bidirectional=True, batch_first=True), [(2, 5, 8)]),
    "lstm_projection": (nn.LSTM(8, 16, 2, proj_size=4), [(5, 2, 8)]),
    "gru_no_bias": (nn.GRU(8, 16, bias=False), [(5, 2, 8)]),
    "rnn_unbatched": (nn.RNN(8, 16), [(5, 8)]),
    "lstm_cell": (nn.LSTMCell(8, 16), [(3, 8)]),
    "gru_cell": (nn.GRUCell(8, 16), [(3, 8)]),
    "mha_weights": (nn.MultiheadAttention(16, 4).eval(), [(5, 2, 16)] * 3),
    "mha_kdim_vdim": (nn.MultiheadAttention(16, 4, kdim=8, vdim=12, batch_first=True).eval(),
                      [(2, 5, 16), (2, 7, 8), (2, 7, 12)]),
    "mha_bias_kv_zero_attn": (nn.MultiheadAttention(16, 4, add_bias_kv=True, add_zero_attn=True),
                              [(5, 2, 16)] * 3),
    "mha_training": (nn.MultiheadAttention(16, 4, dropout=0.1).train(), [(5, 2, 16)] * 3),
    "encoder_layer_norm_first": (nn.TransformerEncoderLayer(16, 4, 32, norm_first=True,
                                 activation="gelu", batch_first=True).eval(), [(2, 5, 16)]),
    "encoder_layer_training": (nn.TransformerEncoderLayer(16, 4, 32).train(), [(5, 2, 16)]),
    "decoder_layer": (nn.TransformerDecoderLayer(16, 4, 32).eval(), [(5, 2, 16), (7, 2, 16)]),
    "transformer": (nn.Transformer(16, 4, 1, 1, 32).eval(), [(7, 2, 16), (5, 2, 16)]),
    "bilinear": (nn.Bilinear(5, 6, 7), [(4, 5), (4, 6)]),
    "batch_norm_training": (nn.BatchNorm2d(3).train(), [S]),
    "instance_norm_running_stats": (nn.InstanceNorm2d(3, affine=True,
                                    track_running_stats=True).train(), [S]),
    "upsample": (nn.Upsample(scale_factor=2, mode="bilinear"), [S]),
    "rms_norm": (nn.RMSNorm(8), [S]),
    "dropout_training": (nn.Dropout(0.3).train(), [S]),
}  # fmt: skip


def _both(model, inputs, **kw):
    return [flopgraph.analyze(model, inputs, frontend=fe, **kw) for fe in ("fx", "aten")]


def _parity(fx, at):
    """Same totals; same cost and outputs for every module, except inside a module fx
    keeps as one leaf node (nn.TransformerEncoderLayer): fx cannot see its submodules,
    aten can."""
    assert (fx.macs, fx.flops) == (at.macs, at.flops)
    assert fx.skipped == {} and at.skipped == {}
    leaves = {r.module for r in fx.records if r.kind == "call_module"}
    hidden = {p for p in fx.by_module() if any(p.startswith(f"{leaf}.") or (leaf == "" and p)
                                               for leaf in leaves)}  # fmt: skip
    visible = {p: c for p, c in fx.by_module().items() if p not in hidden}
    assert visible == {p: c for p, c in at.by_module().items() if p not in hidden}
    outputs = {m.path: m.outputs for m in fx.modules if m.path not in hidden}
    assert outputs == {m.path: m.outputs for m in at.modules if m.path not in hidden}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_counts_the_same_on_both_frontends(name):
    fn, shapes = FUNCTIONS[name]
    fx, at = _both(Fn(fn), tuple(TensorSpec(s) for s in shapes))
    assert at.frontend.name == "aten" and fx.frontend.name == "fx"
    _parity(fx, at)


@pytest.mark.parametrize("name", MODULES)
def test_module_counts_the_same_on_both_frontends(name):
    model, shapes = MODULES[name]
    _parity(*_both(model, tuple(TensorSpec(s) for s in shapes)))


def test_aten_records_are_the_calls_fx_counts():
    # every module, function and method call of this block has a rule: aten counts each
    # call whole by that rule, so both frontends give the same records in the same order
    fx, at = _both(TinyTransformerBlock(), TensorSpec((1, 8, 64)))
    assert [(r.op, r.module, r.cost) for r in at.records if r.status is Status.COUNTED] == [
        (r.op, r.module, r.cost) for r in fx.records if r.status is Status.COUNTED
    ]
    assert {r.kind for r in at.records} == {"call_module", "composite"}
    # a call with no rule of its own is looked through to its aten ops: torch.cdist
    cdist = flopgraph.analyze(Fn(torch.cdist), ((4, 3), (5, 3)), frontend="aten")
    assert "aten" in {r.kind for r in cdist.records}
    sdpa = flopgraph.analyze(Fn(F.scaled_dot_product_attention), ((1, 2, 4, 8),) * 3,
                             frontend="aten")  # fmt: skip
    (record,) = [r for r in sdpa.records if r.status is Status.COUNTED]
    assert record.kind == "composite" and record.op == "scaled_dot_product_attention"
    # B*L*S*(E + Ev) = 2*4*4*16 = 512 macs; 2*512 + B*L*S*(1 + 5) = 1_024 + 192 flops
    assert record.cost == Cost(512, 1_216)


def test_every_aten_op_ends_in_one_record_or_one_composite():
    model = nn.Sequential(nn.Linear(8, 8), nn.MultiheadAttention(8, 2, batch_first=True))

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            h = self.m[0](x)
            return F.normalize(self.m[1](h, h, h)[0]) + h

    trace = trace_aten(Wrap(), (torch.empty(2, 3, 8, device="meta"),), {}, DEFAULT)
    records = count_aten(trace, DEFAULT)
    # the Linear and the MultiheadAttention modules have rules (one record each, their
    # ops absorbed); F.normalize and the add are function and method calls with rules
    wholes = [r for r in records if r.kind in ("composite", "call_module")]
    assert [r.op for r in wholes] == ["linear", "multihead_attention", "normalize", "add"]
    absorbed = sum(
        len(c.ops) for c in trace.moved_items() if isinstance(c, (TorchCall, ModuleCall))
    )
    assert len(records) == len(list(trace.ops())) - absorbed + len(wholes)
    assert {r.status for r in records} <= set(Status)


class _Loop(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return torch.stack([self.fc(x[i]) for i in range(x.shape[0])])


class _Assert(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        assert x.shape[-1] == 8, "eight features"
        return self.fc(x)


class _ValueBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.small = nn.Linear(8, 4)
        self.big = nn.Linear(8, 16)

    def forward(self, x):
        if x.mean() > 0:
            return self.small(x)
        return self.big(x)


@pytest.mark.parametrize("model, line", [(_Loop(), "range(x.shape[0])"),
                                         (_Assert(), "assert x.shape[-1] == 8")])  # fmt: skip
def test_auto_falls_back_to_aten_and_says_why(model, line):
    report = flopgraph.analyze(model, (3, 8))
    assert report.frontend.name == "aten" and not report.frontend.real_run
    assert report.frontend.note.startswith("fx was not used: torch.fx could not trace")
    assert line in report.frontend.note
    # three rows through Linear(8, 4): 3 * 8 * 4 = 96 macs; 2 * 96 + 3 * 4 (bias) = 204 flops
    assert report.cost == Cost(96, 204)
    assert report.by_module()["fc"] == Cost(96, 204)
    assert [m.calls for m in report.modules if m.path == "fc"] == [3 if line[0] == "r" else 1]


def test_value_dependent_branch_needs_real_inputs():
    with pytest.raises(flopgraph.TraceError) as info:
        flopgraph.analyze(_ValueBranch(), (3, 8))
    msg = str(info.value)
    fx, aten = msg.split("the aten frontend failed too:")  # both causes in one error
    assert fx.startswith("torch.fx could not trace _ValueBranch") and "(fx frontend)" in fx
    assert "if x.mean() > 0:" in aten
    assert "Pass real input tensors" in msg


@pytest.mark.parametrize("sign, cost", [
    (1, Cost(96, 24 + 204)),  # mean: 24 flops; Linear(8, 4) on 3 rows: 96 macs, 192 + 12
    (-1, Cost(384, 24 + 816)),  # Linear(8, 16): 3 * 8 * 16 = 384 macs, 768 + 48 flops
])  # fmt: skip
def test_value_dependent_branch_runs_for_real_on_real_inputs(sign, cost):
    model = _ValueBranch()
    before = snapshot(model)
    report = flopgraph.analyze(model, sign * torch.ones(3, 8))
    assert report.frontend.real_run
    assert "ran for real" in report.frontend.note and "if x.mean() > 0:" in report.frontend.note
    assert report.cost == cost
    assert_untouched(model, before)
    again = flopgraph.Report.from_json(report.to_json())
    assert again.frontend == report.frontend


@pytest.mark.parametrize("inputs", [(2, 3, 8, 8), torch.randn(2, 3, 8, 8), (2, 5, 8, 8)])
def test_model_untouched_and_hooks_silent(inputs):
    model, calls = bn_model_with_hooks()
    before = snapshot(model)
    try:
        flopgraph.analyze(model, inputs, frontend="aten")
    except flopgraph.TraceError:
        assert inputs == (2, 5, 8, 8)  # 5 channels into a 3-channel conv
    assert_untouched(model, before)
    assert model[1].num_batches_tracked.item() == 0
    assert calls == []


def test_real_run_leaves_batch_norm_statistics_alone():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4).train()

        def forward(self, x):
            y = self.bn(x)
            return y * 2 if y.sum() > -1 else y

    model = Branchy()
    before = snapshot(model)
    report = flopgraph.analyze(model, torch.randn(5, 4), frontend="aten")
    assert report.frontend.real_run
    assert_untouched(model, before)


def test_frontend_arguments():
    with pytest.raises(flopgraph.InputError, match="frontend must be one of"):
        flopgraph.analyze(nn.Linear(2, 2), (1, 2), frontend="jit")
    with pytest.raises(flopgraph.InputError, match="counts aten ops"):
        flopgraph.analyze(nn.Linear(2, 2), (1, 2), frontend="fx", convention="torch")


def test_user_handler_for_an_aten_op():
    report = flopgraph.analyze(Fn(torch.cdist), ((4, 3), (5, 3)), frontend="aten",
                               handlers={torch.ops.aten._cdist_forward: lambda ctx: 7})  # fmt: skip
    assert report.flops == 7 and report.skipped == {}


def test_transformer_encoder_by_hand():
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    rows = 2 * 10  # batch 2, sequence 10
    macs = (
        3 * rows * 64 * 64  # q, k, v projections          245_760
        + 2 * (2 * 4) * 10 * 10 * 16  # attention core, B = 8 heads x batch: 25_600
        + rows * 64 * 64  # output projection               81_920
        + 2 * rows * 64 * 128  # feed-forward linears       327_680
    )  # = 680_960 per layer
    flops = (
        2 * macs
        + 3 * rows * 64
        + rows * 64
        + rows * 128
        + rows * 64  # biases        8_960
        + (2 * 4) * 10 * 10 * (1 + 5)  # scale and softmax per score       4_800
        + rows * 128  # relu                                                  2_560
        + 2 * rows * 64  # residual adds                                      2_560
        + 2 * (6 + 2) * rows * 64  # two affine layer norms                  20_480
    )  # = 1_401_280 per layer
    fx, at = _both(model, (2, 10, 64))
    assert fx.cost == at.cost == Cost(2 * macs, 2 * flops) == Cost(1_361_920, 2_802_560)
    # nn.TransformerEncoder has a module rule: one record on both frontends (its aten
    # ops are parts), so both attribute the work alike, none of it to a submodule
    assert at.by_module() == fx.by_module()
    assert at.by_module().get("layers.1.self_attn", Cost()) == Cost()
    assert [r.op for r in at.records] == [r.op for r in fx.records] == ["transformer_encoder"]


ZOO = [*MODELS, "vit_b_16", "swin_t"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_same_totals_and_modules_on_both_frontends(name):
    fx, at = _both(build(name), (1, 3, 224, 224))
    _parity(fx, at)
    assert {m.path: m.calls for m in fx.modules} == {m.path: m.calls for m in at.modules}


def test_tiny_transformer_same_on_both_frontends():
    fx, at = _both(TinyTransformerBlock(), (2, 16, 64))
    _parity(fx, at)
    assert fx.modules == at.modules


@pytest.mark.slow
def test_detection_model_runs_for_real_on_real_images():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).eval()
    before = snapshot(model)
    report = flopgraph.analyze(model, ([torch.rand(3, 320, 320)],))
    info = report.frontend
    assert info.name == "aten" and info.real_run
    assert "fx was not used" in info.note and "torchvision" in info.note
    assert_untouched(model, before)
    # the backbone sees the image resized to min_size 800 (800 is a multiple of 32, so
    # batching adds no padding)
    body = flopgraph.analyze(model.backbone.body, (1, 3, 800, 800), frontend="fx")
    assert report.by_module()["backbone.body"] == body.cost
    with pytest.raises(flopgraph.TraceError, match="Pass real input tensors") as err:
        flopgraph.analyze(model, ([torch.empty(3, 320, 320, device="meta")],))
    assert "torch.where" in str(err.value)


def test_an_analysis_walks_the_models_module_tree_once(monkeypatch):
    # paths, shadows, rules, quantized modules, experts, positions and the report's
    # tree all read one walk (flopgraph.tree): the model does not change meanwhile
    model = TinyTransformerBlock().eval()
    walks = []
    original = nn.Module.named_modules

    def counted(self, *args, **kwargs):
        if self is model:
            walks.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "named_modules", counted)
    report = flopgraph.analyze(model, torch.randn(2, 5, 64), frontend="aten")
    assert len(walks) == 1
    assert set(report.by_module()) >= {name for name, _ in original(model) if name}
