"""The public API: inputs, records, skipped ops, custom handlers, JSON, errors, untouched."""

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_untouched, snapshot
from helpers import bn_model_with_hooks
from torch import nn

import flopgraph
from flopgraph import Cost, Status, TensorSpec
from flopgraph.examples import BasicBlock, LeNet, TinyTransformerBlock


class Twice(nn.Module):
    """cdist (no handler) twice, plus a counted add."""

    def forward(self, x, y):
        return torch.cdist(x, y) + torch.cdist(y, x).transpose(0, 1)


def test_skipped_ops_listed_with_one_warning_per_name():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = flopgraph.analyze(Twice(), ((4, 3), (5, 3)))
    skipped = [w for w in caught if issubclass(w.category, flopgraph.SkippedOpWarning)]
    assert len(skipped) == 1
    assert "Skipped operation cdist 2 time(s)" in str(skipped[0].message)
    assert report.skipped["cdist"].count == 2
    assert report.skipped["cdist"].where == ("", "")
    assert report.flops == 4 * 5  # only the add is counted
    assert [r.status for r in report.records if r.op == "cdist"] == [Status.SKIPPED] * 2


def test_status_counts_add_up():
    report = flopgraph.analyze(TinyTransformerBlock(), (1, 8, 64))
    counts = report.status_counts()
    assert sum(counts.values()) == len(report.records)
    free = [r for r in report.records if r.status is Status.FREE]
    assert all(r.reason and r.flops == 0 for r in free)
    assert {r.op for r in free} >= {"view", "transpose", "reshape", "getattr"}


def test_integer_ops_are_handled_not_skipped():
    class IntOps(nn.Module):
        def forward(self, idx):
            return torch.bitwise_and(idx, 3) * 2 + (idx > 1).long()

    report = flopgraph.analyze(IntOps(), TensorSpec((4, 5), torch.int64))
    assert report.flops == 0 and not report.skipped
    assert all(r.status is Status.FREE for r in report.records)


def test_input_forms_agree():
    model = LeNet().eval()
    a = flopgraph.analyze(model, torch.randn(2, 1, 28, 28))
    b = flopgraph.analyze(model, (2, 1, 28, 28))
    c = flopgraph.analyze(model, TensorSpec((2, 1, 28, 28)))
    d = flopgraph.analyze(model, kwargs={"x": TensorSpec((2, 1, 28, 28))})
    assert a.flops == b.flops == c.flops == d.flops
    assert a.inputs == (flopgraph.TensorMeta((2, 1, 28, 28), "float32"),)


def test_keyword_and_default_arguments_specialise():
    class Masked(nn.Module):
        def forward(self, x, mask=None, scale: float = 1.0):
            if mask is not None:
                x = x + mask
            return x * scale

    none = flopgraph.analyze(Masked(), (3, 4))
    assert none.flops == 12  # only the multiply
    both = flopgraph.analyze(Masked(), (3, 4), kwargs={"mask": TensorSpec((3, 4))})
    assert both.flops == 24


def test_per_call_handler_does_not_leak():
    model = LeNet().eval()
    base = flopgraph.analyze(model, (1, 1, 28, 28))
    over = flopgraph.analyze(model, (1, 1, 28, 28), handlers={nn.Linear: lambda ctx: Cost(0, 1)})
    linears = (2 * 48_000 + 120) + (2 * 10_080 + 84) + (2 * 840 + 10)
    assert over.flops == base.flops - linears + 3
    assert flopgraph.analyze(model, (1, 1, 28, 28)).flops == base.flops


def test_register_custom_module_globally():
    class Scale(nn.Module):
        def forward(self, x):
            return x * 3

    before = flopgraph.analyze(Scale(), (2, 5))
    assert before.flops == 10  # traced through: the multiply

    @flopgraph.register(Scale, name="scale")
    def scale(ctx):
        return Cost(0, 7 * ctx.y.numel)

    after = flopgraph.analyze(Scale(), (2, 5))
    assert after.flops == 70 and after.records[0].op == "scale"


def test_custom_function_handler_by_method_name():
    class M(nn.Module):
        def forward(self, x):
            return x.cumsum(0)

    r = flopgraph.analyze(M(), (4, 3), handlers={"cumsum": lambda ctx: 5})
    assert r.flops == 5


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda ctx: -1, "negative flops=-1"),
        (lambda ctx: 1.5, "returned float 1.5"),
        (lambda ctx: "many", "returned str"),
        (lambda ctx: Cost(0.5, 1), "macs=0.5"),
        (lambda ctx: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_bad_custom_handlers_are_named(bad, match):
    with pytest.raises(flopgraph.HandlerError, match=match) as info:
        flopgraph.analyze(LeNet(), (1, 1, 28, 28), handlers={nn.Linear: bad})
    assert "fc1" in str(info.value) and "float32[1, 400]" in str(info.value)


def test_json_round_trip():
    report = flopgraph.analyze(BasicBlock(8).train(), (1, 8, 6, 6))
    text = report.to_json()
    data = json.loads(text)
    assert data["schema_version"] == 3
    assert data["totals"] == {"macs": report.macs, "flops": report.flops}
    again = flopgraph.Report.from_json(text)
    assert again == report
    assert again.by_module() == report.by_module()


def test_by_module_is_cumulative():
    report = flopgraph.analyze(LeNet(), (1, 1, 28, 28))
    bm = report.by_module()
    assert bm[""] == report.cost
    assert sum((bm[p] for p in ("conv1", "conv2", "fc1", "fc2", "fc3", "pool")), Cost()) == Cost(
        report.macs, report.flops - sum(r.flops for r in report.records if r.module == "")
    )


def test_shared_parameters_count_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.head = nn.Linear(16, 100, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, idx):
            return self.head(self.emb(idx))

    r = flopgraph.analyze(Tied(), TensorSpec((2, 7), torch.int64))
    assert r.params.total == 1600
    assert r.macs == 2 * 7 * 16 * 100


def test_params_split_and_bytes():
    model = BasicBlock(4)
    model.conv1.weight.requires_grad_(False)
    r = flopgraph.analyze(model, (1, 4, 5, 5))
    assert r.params.total == 2 * 4 * 4 * 9 + 2 * 2 * 4
    assert r.params.non_trainable == 4 * 4 * 9
    assert r.params.buffers == 2 * (4 + 4 + 1)  # running mean, var, num_batches_tracked
    assert r.params.bytes_by_dtype == {"float32": 4 * (r.params.total + 16), "int64": 16}


def test_model_untouched_after_analysis():
    model, calls = bn_model_with_hooks()
    before = snapshot(model)
    report = flopgraph.analyze(model, torch.randn(2, 3, 8, 8))
    assert report.flops > 0
    assert_untouched(model, before)
    assert model[1].num_batches_tracked.item() == 0
    assert calls == []  # the user's hooks never ran


def test_model_untouched_after_failed_analysis():
    model, calls = bn_model_with_hooks()
    before = snapshot(model)
    with pytest.raises(flopgraph.PropagationError):
        flopgraph.analyze(model, (2, 5, 8, 8))  # 5 channels into a 3-channel conv
    assert_untouched(model, before)
    assert calls == []


def test_wrong_shape_error_names_node_and_shapes():
    with pytest.raises(flopgraph.PropagationError) as info:
        flopgraph.analyze(LeNet(), (1, 1, 32, 32))
    msg = str(info.value)
    assert "fc1" in msg and "float32[1, 576]" in msg and "Linear" in msg


def test_untraceable_model_error_names_the_line():
    class DataDependent(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return F.relu(x)
            return x

    with pytest.raises(flopgraph.TraceError) as info:
        flopgraph.analyze(DataDependent(), (2, 3))
    msg = str(info.value)
    assert "DataDependent" in msg and "test_api.py" in msg and "if x.sum() > 0" in msg


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: flopgraph.analyze("resnet", (1, 3)), "torch.nn.Module, got str"),
        (lambda: flopgraph.analyze(LeNet(), ()), "inputs do not match LeNet.forward"),
        (lambda: flopgraph.analyze(LeNet(), (1, 1, 28, 28), convention="x"), "unknown convention"),
        (lambda: TensorSpec((2, -1)), "non-negative ints"),
    ],
)
def test_bad_input_messages(call, match):
    with pytest.raises(flopgraph.InputError, match=match):
        call()


def test_no_activation_memory_for_large_inputs():
    # 8 x 3 x 4096 x 4096 float32 activations would need gigabytes; meta needs none
    r = flopgraph.analyze(nn.Conv2d(3, 64, 3, padding=1), (8, 3, 4096, 4096))
    assert r.macs == 8 * 64 * 4096 * 4096 * 3 * 9


def test_repr_is_one_line():
    assert "\n" not in repr(flopgraph.analyze(LeNet(), (1, 1, 28, 28)))


@pytest.mark.parametrize(
    "model, shape",
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5)), (1, 3, 8, 8)),
        (nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4)), (2, 3, 4, 4)),
        (nn.Sequential(nn.Identity(), nn.BatchNorm2d(3)), (2, 3, 4)),
    ],
)
def test_mismatched_batch_norm_still_fails_at_its_node(model, shape):
    with pytest.raises(flopgraph.PropagationError, match=r"node '_1' \(call_module 1: BatchNorm"):
        flopgraph.analyze(model.eval(), shape)


def test_a_cli_style_shape_string_is_an_input_error():
    import torch

    model = torch.nn.Linear(4, 2)
    with pytest.raises(flopgraph.InputError, match=r"shape tuple such as \(1, 4\)"):
        flopgraph.analyze(model, "1x4")


def test_a_forward_in_training_mode_says_so() -> None:
    import warnings

    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))  # train mode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = flopgraph.analyze(model, (2, 4))
    mode = [w for w in caught if issubclass(w.category, flopgraph.TrainingModeWarning)]
    assert len(mode) == 1 and "Dropout count as in training" in str(mode[0].message)
    assert report.mode == "train"
    # dropout in training mode: 1 FLOP per element (the spec's B), on top of the linear's
    assert report.flops == 2 * (2 * 4 * 4) + 2 * 4 + 2 * 4
    assert flopgraph.Report.from_json(report.to_json()).mode == "train"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = flopgraph.analyze(model.eval(), (2, 4))
    assert report.mode == "eval" and not [
        w for w in caught if issubclass(w.category, flopgraph.TrainingModeWarning)
    ]
    assert report.flops == 2 * (2 * 4 * 4) + 2 * 4
    # a model without mode-dependent modules does not warn in training mode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flopgraph.analyze(torch.nn.Linear(4, 4), (2, 4))
    assert not [w for w in caught if issubclass(w.category, flopgraph.TrainingModeWarning)]


def test_a_sequence_past_the_position_table_is_an_input_error() -> None:
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=64)
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(config).eval()
    ok = flopgraph.analyze(model, flopgraph.TensorSpec((1, 64), torch.int64))
    assert ok.flops > 0  # 64 positions fit the table
    table = r"65 tokens .* position table 'transformer.wpe' \(64"
    with pytest.raises(flopgraph.InputError, match=table):
        flopgraph.analyze(model, flopgraph.TensorSpec((1, 65), torch.int64))


def test_tensor_metas_are_shared_per_shape_and_dtype():
    # one instance per (shape, dtype), never one for another dtype or shape
    from flopgraph.records import TensorMeta

    a, b = TensorMeta.of(torch.empty(2, 3)), TensorMeta.of(torch.zeros(2, 3, device="meta"))
    assert a is b and a == TensorMeta((2, 3), "float32")
    assert TensorMeta.of(torch.empty(2, 3, dtype=torch.float16)) == TensorMeta((2, 3), "float16")
    assert TensorMeta.of(torch.empty(3, 2)) == TensorMeta((3, 2), "float32")
