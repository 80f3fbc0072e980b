"""compare(): graph counts against hook counts, every difference with its reason.

Every expected count is derived by hand from the counting spec beside it.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_untouched, flop_counter_total, snapshot
from helpers import corrupt_hook_rule, torchvision_model
from rich.console import Console
from torch import nn

import flopgraph
from flopgraph import Cost
from flopgraph.differences import Reason
from flopgraph.examples import LeNet, TinyTransformerBlock
from flopgraph.hooks import count_hooks
from flopgraph.render.compare import compare_markdown, compare_table


def meta(build, *args, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build(*args, **kwargs).eval()


def assert_rows_add_up(c: flopgraph.Comparison) -> None:
    """Per module, graph minus hooks is the sum of the differences below it."""
    for row in c.modules:
        below = sum((d.cost for d in c.differences_in(row.path, below=True)), Cost())
        assert row.difference == below, row.path


def within(path: str, ancestor: str) -> bool:
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


def render_text(c: flopgraph.Comparison) -> str:
    console = Console(width=200, color_system=None, record=True)
    console.print(c)
    return console.export_text()


# --- ResNet-50: only the residual adds --------------------------------------------


def test_resnet50_hooks_miss_exactly_the_residual_adds():
    model = meta(torchvision_model, "resnet50")
    c = flopgraph.compare(model, (1, 3, 224, 224))
    # one `out += identity` per bottleneck: its output's channels x spatial size
    per_stage = {1: 256 * 56 * 56, 2: 512 * 28 * 28, 3: 1024 * 14 * 14, 4: 2048 * 7 * 7}
    blocks = {1: 3, 2: 4, 3: 6, 4: 3}
    expected = {f"layer{s}.{b}": per_stage[s] for s in blocks for b in range(blocks[s])}
    assert sum(expected.values()) == 5_519_360  # 3*802_816 + 4*401_408 + 6*200_704 + 3*100_352
    assert len(c.differences) == 16
    assert {d.module: d.flops for d in c.differences} == expected
    assert all(
        d.op == "add" and d.reason is Reason.FUNCTIONAL and d.macs == 0 for d in c.differences
    )
    assert c.difference == Cost(0, 5_519_360)
    assert c.reconciled and "reconciled" in c.reconciliation
    # nothing else differs: every other row is equal on both sides
    for row in c.modules:
        below = sum(f for m, f in expected.items() if within(m, row.path))
        assert row.difference == Cost(0, below), row.path
    assert_rows_add_up(c)
    # the graph side is analyze(); both sides have the same contraction MACs,
    # which FlopCounterMode counts as 2 FLOPs each
    assert c.graph == flopgraph.analyze(model, (1, 3, 224, 224)).cost
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert 2 * c.hooks.macs == 2 * c.graph.macs == flop_counter_total(model, x)


def test_resnet50_reused_relu_counted_on_both_sides():
    c = flopgraph.compare(meta(torchvision_model, "resnet50"), (1, 3, 224, 224))
    relu = c.module("layer1.0.relu")  # one nn.ReLU called after bn1, bn2 and the add
    assert (relu.graph_calls, relu.hook_calls) == (3, 3)
    # 64x56x56 twice and 256x56x56 once, one FLOP per element
    assert relu.graph == relu.hooks == Cost(0, 2 * 64 * 56 * 56 + 256 * 56 * 56)


# --- transformers: attention's functional ops -------------------------------------


def test_tiny_transformer_block_missed_attention():
    c = flopgraph.compare(TinyTransformerBlock(64, 4, 256).eval(), (1, 16, 64))
    t, d, h, hd, hidden = 16, 64, 4, 16, 256
    scores = h * t * t * hd  # q @ k^T and attn @ v: [1,4,16,16] x K=16            = 16_384
    by_op: dict[str, Cost] = {}
    for diff in c.differences:
        assert diff.reason is Reason.FUNCTIONAL and diff.module == ""
        by_op[diff.op] = by_op.get(diff.op, Cost()) + diff.cost
    assert by_op == {
        "matmul": Cost(2 * scores, 4 * scores),  # two products, 2 FLOPs per MAC
        "mul": Cost(0, h * t * t),  # scores * scale: one per score                 = 1_024
        "softmax": Cost(0, 5 * h * t * t),  # 5 per element                         = 5_120
        "add": Cost(0, 2 * t * d),  # two residual adds                             = 2_048
        "gelu": Cost(0, t * hidden),  # F.gelu on fc1's output                      = 4_096
    }
    assert c.difference == Cost(32_768, 77_824) and c.reconciled
    assert c.graph == flopgraph.analyze(TinyTransformerBlock(64, 4, 256).eval(), (1, 16, 64)).cost


def vit_small() -> nn.Module:
    timm = pytest.importorskip("timm")
    model = meta(timm.create_model, "vit_small_patch16_224", pretrained=False)
    for m in model.modules():  # the explicit attention path: q * scale, q @ k^T, softmax, @ v
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return model


def test_vit_small_missed_attention_and_embeddings():
    # timm wraps maybe_add_mask from fx (no rule; a no-op without a mask), so auto would
    # count this on aten; the fx view is the one whose reasons this test derives
    c = flopgraph.compare(vit_small(), (1, 3, 224, 224), frontend="fx")
    n, dim, heads, hd, depth = 197, 384, 6, 64, 12  # 196 patches + class token
    scores = heads * n * n * hd  # per product                                     = 14_902_656
    per_block = {
        ("matmul", Reason.FUNCTIONAL): Cost(2 * scores, 4 * scores),
        ("mul", Reason.FUNCTIONAL): Cost(0, heads * n * hd),  # q * scale             = 75_648
        ("softmax", Reason.FUNCTIONAL): Cost(0, 5 * heads * n * n),  #                = 1_164_270
        ("add", Reason.FUNCTIONAL): Cost(0, 2 * n * dim),  # two residual adds
        # timm's LayerNorm subclass runs F.layer_norm on its own weights: 6 + 2 per element
        ("layer_norm", Reason.PARAMETER): Cost(0, 2 * 8 * n * dim),
    }
    got: dict[tuple[str, Reason], Cost] = {}
    for block in range(depth):
        prefix = f"blocks.{block}"
        for diff in c.differences_in(prefix, below=True):
            key = (diff.op, diff.reason)
            got[key] = got.get(key, Cost()) + diff.cost
    expected = {k: Cost(v.macs * depth, v.flops * depth) for k, v in per_block.items()}
    assert got == expected
    # outside the blocks: x + pos_embed (a parameter of the model itself), the final norm
    rest = {
        (d.module, d.op, d.reason): d.cost
        for d in c.differences
        if not d.module.startswith("blocks.")
    }
    assert rest == {
        ("", "add", Reason.PARAMETER): Cost(0, n * dim),  # = 75_648
        ("norm", "layer_norm", Reason.PARAMETER): Cost(0, 8 * n * dim),  # = 605_184
    }
    pos = next(d for d in c.differences if d.module == "")
    assert "pos_embed" in pos.detail
    total = Cost(
        depth * 2 * scores, depth * sum(v.flops for v in per_block.values()) + 9 * n * dim
    )  # 357_663_744 MACs, 747_227_304 FLOPs
    assert c.difference == c.explained == total and c.reconciled
    assert_rows_add_up(c)


# --- calls, bypasses and loose parameters -------------------------------------------


class Quirks(nn.Module):
    """A leaf called twice, one never called, one whose forward is called
    directly, one whose weight is used functionally, and a loose parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.unused = nn.Linear(8, 8)
        self.direct = nn.Linear(8, 8)
        self.tied = nn.Linear(8, 8)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))

    def forward(self, x):
        x = x + self.pos_embed
        x = self.fc(self.fc(x))
        x = self.direct.forward(x)
        return F.linear(x, self.tied.weight)


def test_calls_bypasses_and_loose_parameters():
    c = flopgraph.compare(Quirks(), (2, 4, 8))
    rows = 2 * 4  # every linear sees [2, 4, 8]: 8 rows of 8 features
    macs = rows * 8 * 8  # = 512
    with_bias = 2 * macs + rows * 8  # = 1_088
    fc = c.module("fc")
    assert (fc.graph_calls, fc.hook_calls) == (2, 2)
    assert fc.graph == fc.hooks == Cost(2 * macs, 2 * with_bias)
    unused = c.module("unused")
    assert (unused.graph_calls, unused.hook_calls) == (0, 0)
    assert unused.graph == unused.hooks == Cost()
    direct = c.module("direct")
    assert (direct.hook_calls, direct.forward_without_call) == (0, 1)
    assert direct.graph == direct.hooks == Cost()  # its work ran in the model's forward
    assert [(d.module, d.op, d.reason, d.cost, d.detail) for d in c.differences] == [
        ("", "add", Reason.PARAMETER, Cost(0, 2 * 4 * 8), "operator.add reads pos_embed"),
        ("", "linear", Reason.BYPASSED_LEAF, Cost(macs, with_bias),
         "direct.forward ran 1 time(s) without __call__"),
        ("", "linear", Reason.BYPASSED_LEAF, Cost(macs, 2 * macs),  # F.linear with no bias
         "tied.weight of leaf 'tied' used outside its __call__"),
    ]  # fmt: skip
    assert c.difference == Cost(2 * macs, 64 + with_bias + 2 * macs) and c.reconciled
    text = render_text(c)
    assert "0/0 never called" in text and "(+1 forward only)" in text and "2/2" in text


def test_a_model_that_is_itself_a_leaf():
    c = flopgraph.compare(nn.Conv2d(3, 8, 3), (1, 3, 10, 10))
    macs = 8 * 8 * 8 * 3 * 3 * 3  # out 8x8x8, Cin*k*k = 27                          = 13_824
    assert c.graph == c.hooks == Cost(macs, 2 * macs + 8 * 8 * 8)
    assert c.differences == () and c.reconciled


def test_count_hooks_alone_misses_functional_relus():
    model = LeNet().eval()
    hooks = count_hooks(model, (1, 1, 28, 28))
    report = flopgraph.analyze(model, (1, 1, 28, 28))
    relus = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84  # the four F.relu outputs        = 6_508
    assert hooks.cost == Cost(report.macs, report.flops - relus)
    assert [c.path for c in hooks.calls] == ["conv1", "pool", "conv2", "pool", "fc1", "fc2", "fc3"]
    assert hooks.module_calls["pool"] == 2


class MakesCpuTensors(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + torch.ones(4, device="cpu")


def test_forward_creating_cpu_tensors_falls_back_to_fake_tensors():
    c = flopgraph.compare(MakesCpuTensors(), (2, 4))
    linear = Cost(2 * 4 * 4, 2 * 32 + 2 * 4)  # 2 rows x 4 x 4 MACs, plus bias    = 72 FLOPs
    assert c.hooks == linear and c.graph == Cost(32, 72 + 8)  # + the add of [2, 4]
    assert [(d.op, d.reason, d.flops) for d in c.differences] == [("add", Reason.FUNCTIONAL, 8)]


# --- reconciliation can fail: a wrong hook rule is caught, never absorbed ------------


# LeNet on 1x1x28x28: conv1 3x3 pad 1, 1 -> 6 channels at 28x28; conv2 5x5, 6 -> 16 at 10x10
CONV1_MACS = 6 * 28 * 28 * 1 * 3 * 3  # = 42_336
CONV2_MACS = 16 * 10 * 10 * 6 * 5 * 5  # = 240_000
LENET_RELUS = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84  # the four F.relu outputs     = 6_508


@pytest.mark.parametrize(
    ("cls", "change", "expected"),
    [
        (nn.Conv2d, lambda c: Cost(3 * c.macs, c.flops),  # MACs x3: hooks 2x too many
         {"conv1": Cost(-2 * CONV1_MACS, 0), "conv2": Cost(-2 * CONV2_MACS, 0)}),
        (nn.Linear, lambda c: Cost(c.macs, c.flops + 12_345),  # +12,345 FLOPs per call
         {"fc1": Cost(0, -12_345), "fc2": Cost(0, -12_345), "fc3": Cost(0, -12_345)}),
    ],
)  # fmt: skip
def test_a_corrupted_hook_rule_is_not_reconciled(monkeypatch, cls, change, expected):
    model = LeNet().eval()
    assert flopgraph.compare(model, (1, 1, 28, 28)).reconciled  # the true rules agree
    corrupt_hook_rule(monkeypatch, cls, change)
    c = flopgraph.compare(model, (1, 1, 28, 28))
    assert not c.reconciled
    # the mismatch is named on each corrupted module, one paired call each
    assert {d.module: d.cost for d in c.unexplained} == expected
    assert all(d.reason is Reason.UNEXPLAINED for d in c.unexplained)
    # the functional relus are still computed from their records, and nothing else
    assert c.explained == Cost(0, LENET_RELUS)
    assert c.difference == Cost(0, LENET_RELUS) + sum(expected.values(), Cost())
    assert "NOT reconciled" in c.reconciliation
    assert f"unexplained in {', '.join(expected)}" in c.reconciliation
    assert_rows_add_up(c)  # shown honestly: the rows include the unexplained amounts
    d = c.to_dict()
    assert d["reconciled"] is False
    assert d["totals"]["unexplained"] == {
        "macs": sum(x.macs for x in expected.values()),
        "flops": sum(x.flops for x in expected.values()),
    }
    assert "unexplained" in render_text(c) and "NOT reconciled" in compare_markdown(c)


class BranchesOnTracing(nn.Module):
    """Calls ``extra`` when run (hooks) and ``other`` when traced (the graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.extra = nn.Linear(8, 4)
        self.other = nn.Linear(8, 2)

    def forward(self, x):
        x = self.fc(x)
        if isinstance(x, torch.Tensor):  # a tensor when run, a proxy when traced
            return self.extra(x)
        return self.other(x)


def test_a_leaf_call_on_one_side_only_is_its_own_cost():
    c = flopgraph.compare(BranchesOnTracing(), (2, 8), frontend="fx")
    fc = Cost(2 * 8 * 8, 2 * 128 + 2 * 8)  # 2 rows x 8 x 8 MACs, 2 per MAC + bias = 272
    extra = Cost(2 * 8 * 4, 2 * 64 + 2 * 4)  # = 136 FLOPs
    other = Cost(2 * 8 * 2, 2 * 32 + 2 * 2)  # = 68 FLOPs
    assert c.graph == fc + other and c.hooks == fc + extra
    assert [(d.module, d.reason, d.cost) for d in c.differences] == [
        ("other", Reason.GRAPH_ONLY, other),
        ("extra", Reason.HOOKS_ONLY, Cost(-extra.macs, -extra.flops)),
    ]
    assert c.difference == Cost(-32, -68) and c.reconciled


# --- the user's model is never touched ----------------------------------------------


class FailsWhenRun(nn.Module):
    """Traces fine; its forward raises when actually run (as the hook side does)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if isinstance(x, torch.Tensor):  # a tensor, not a tracing proxy: refuse
            raise RuntimeError("refusing to run outside tracing")
        return self.fc(x)


def test_failure_names_the_hook_side_and_leaves_model_untouched():
    model = FailsWhenRun()
    seen = []
    model.fc.register_forward_hook(lambda *a: seen.append(a))
    before = snapshot(model)
    with pytest.raises(flopgraph.PropagationError, match="hook-based count of FailsWhenRun"):
        flopgraph.compare(model, (2, 4))
    assert_untouched(model, before)
    assert seen == []


def test_user_hooks_neither_run_nor_vanish():
    model = LeNet().eval()
    seen = []
    model.conv1.register_forward_hook(lambda *a: seen.append(a))
    model.register_forward_pre_hook(lambda *a: seen.append(a))
    before = snapshot(model)
    c = flopgraph.compare(model, (1, 1, 28, 28))
    assert c.reconciled and seen == []
    assert_untouched(model, before)


def test_bad_convention_is_an_input_error():
    with pytest.raises(flopgraph.InputError, match="unknown convention"):
        flopgraph.compare(LeNet(), (1, 1, 28, 28), convention="nope")  # type: ignore[arg-type]


# --- renderings ------------------------------------------------------------------------


def test_renderings_carry_rows_ops_and_the_reconciliation():
    c = flopgraph.compare(meta(torchvision_model, "resnet18"), (1, 3, 64, 64))
    # resnet18 at 64x64: layer1 runs at 16x16 with 64 channels, one add per block
    add = 64 * 16 * 16  # = 16_384
    md = compare_markdown(c)
    assert "|     0 | BasicBlock | 1/1 |" in md and f"| {add:,} | 1x add [functional op] |" in md
    assert md.rstrip().endswith(f"**{c.reconciliation}**")
    # the block's nn.ReLU runs twice (after bn1 and after the add): shown with its calls
    assert f"|       relu | ReLU (leaf) | 2/2 | {2 * add:,} | {2 * add:,} | 0 |  |" in md
    assert "|       conv1 |" not in md  # rows equal on both sides, called once: left out
    assert "|       conv1 | Conv2d (leaf) | 1/1 |" in compare_markdown(c, all_modules=True)
    text = render_text(c)
    assert c.reconciliation in text and "1x add [functional op]" in text
    assert "conv1" not in text
    console = Console(width=200, color_system=None, record=True)
    console.print(compare_table(c, all_modules=True))
    assert "conv1" in console.export_text()
    d = json.loads(c.to_json())
    assert d["reconciled"] is True and d["reconciliation"] == c.reconciliation
    assert d["totals"]["difference"] == {"macs": 0, "flops": c.difference.flops}
    assert len(d["differences"]) == 8 and d["differences"][0]["module"] == "layer1.0"
    assert d["differences"][0]["flops"] == add and d["differences"][0]["reason"] == "functional op"
    assert repr(c).startswith("Comparison(ResNet: ") and "\n" not in repr(c)
