"""Hooks that are part of the model run (on the shadow); the user's own hooks never do."""

import warnings

import pytest
import torch
from conftest import assert_untouched, flop_counter_total, snapshot
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import flopgraph
from flopgraph.frontends.model_hooks import is_model_hook, library_of


class Doubled(nn.Module):
    """A linear 4 -> 3 whose output a forward hook doubles: the hook is arithmetic."""

    def __init__(self, hook) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.fc.register_forward_hook(hook)

    def forward(self, x):
        return self.fc(x)


def doubling(module, args, out):
    return out * 2


# x[2, 4]: linear macs 2*4*3 = 24, flops 48 + 6 (bias) = 54; the hook's mul: 6 flops
LINEAR, MUL = (24, 54), 6


@pytest.mark.parametrize("frontend", ["aten", "auto"])
def test_a_hook_marked_part_of_the_model_is_counted(frontend):
    model = Doubled(flopgraph.part_of_model(lambda m, a, out: doubling(m, a, out)))
    before = snapshot(model)
    report = flopgraph.analyze(model, torch.randn(2, 4), frontend=frontend)
    assert_untouched(model, before)
    assert (report.macs, report.flops) == (LINEAR[0], LINEAR[1] + MUL)
    assert report.frontend.name == "aten"
    if frontend == "auto":  # fx runs no hooks: the model goes to aten, saying why
        assert "forward hooks of its own" in report.frontend.note


def test_fx_refuses_a_model_with_hooks_of_its_own():
    model = Doubled(flopgraph.part_of_model(lambda m, a, out: doubling(m, a, out)))
    with pytest.raises(flopgraph.TraceError, match="fx graphs do not run module hooks"):
        flopgraph.analyze(model, torch.randn(2, 4), frontend="fx")


@pytest.mark.parametrize("frontend", ["fx", "aten"])
def test_a_users_debugging_hooks_never_run(frontend, capsys):
    """Hooks defined in the user's code (here: this test) are the user's, whichever
    model they are on: on a model of the user's own, and on a library's model."""
    seen = []

    def collect(module, args, out):  # a hook that mutates a global list
        seen.append(out)

    def show(module, args, out):
        print("debug", out.shape)

    model = Doubled(collect)
    model.fc.register_forward_hook(show)
    model.fc.register_forward_hook(doubling)  # arithmetic, but not marked: not run
    report = flopgraph.analyze(model, torch.randn(2, 4), frontend=frontend)
    assert (report.macs, report.flops) == LINEAR
    tv = pytest.importorskip("torchvision")
    lib = tv.models.resnet18(weights=None).eval()
    lib.layer1.register_forward_hook(collect)
    lib.fc.register_forward_pre_hook(lambda m, a: print("pre", a[0].shape))
    before = snapshot(lib)
    hooked = flopgraph.analyze(lib, (1, 3, 32, 32), frontend=frontend)
    assert_untouched(lib, before)
    plain = flopgraph.analyze(tv.models.resnet18(weights=None).eval(), (1, 3, 32, 32))
    assert hooked.cost == plain.cost
    assert seen == [] and capsys.readouterr().out == ""


def test_which_hooks_are_the_models():
    tv = pytest.importorskip("torchvision")
    assert library_of(tv.models.resnet18()) == "torchvision"
    assert library_of(Doubled(doubling)) == ""  # the user's own code has no library
    assert not is_model_hook(doubling, "torchvision")
    assert is_model_hook(flopgraph.part_of_model(lambda *a: None), "")
    from torch.nn.utils.weight_norm import WeightNorm

    assert is_model_hook(WeightNorm("weight", 0), "")  # torch's own weight_norm


def test_module_to_inside_forward():
    """``self.fc.to(dtype)`` in forward converts the shadow's weights, never the user's."""

    class Cast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            # as switch_transformers' router does: a conversion to the same dtype, which
            # Module._apply would swap in place (fake twins refuse)
            self.fc = self.fc.to(x.dtype)
            return self.fc(x)

    model = Cast()
    before = snapshot(model)
    report = flopgraph.analyze(model, torch.randn(2, 4), frontend="aten")
    assert_untouched(model, before)
    assert model.fc.weight.dtype == torch.float32
    # linear 4 -> 3 on [2, 4]: macs 2*4*3 = 24, flops 48 + 6 (bias) = 54
    assert report.by_dtype() == {"float32": flopgraph.Cost(24, 54)}


transformers = pytest.importorskip("transformers")


def segformer():
    c = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 2], decoder_hidden_size=16, num_labels=3,
    )  # fmt: skip
    return transformers.SegformerForSemanticSegmentation(c).eval(), torch.randn(1, 3, 32, 32)


def upernet():
    backbone = transformers.ConvNextConfig(
        hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    c = transformers.UperNetConfig(
        backbone_config=backbone, hidden_size=16, num_labels=3, use_auxiliary_head=False
    )
    return transformers.UperNetForSemanticSegmentation(c).eval(), torch.randn(1, 3, 64, 64)


def dpt():
    c = transformers.DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
        image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=16, head_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
    )  # fmt: skip
    return transformers.DPTForDepthEstimation(c).eval(), torch.randn(1, 3, 32, 32)


@pytest.mark.slow
@pytest.mark.parametrize("build", [segformer, upernet, dpt], ids=lambda b: b.__name__)
@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "after-a-real-forward"])
def test_transformers_models_that_collect_hidden_states_with_hooks(build, warm):
    """transformers 5 installs its output-collecting hooks on the first forward: on the
    shadow for a fresh model, on the model itself after a real forward (then they are
    the model's own and run on the shadow). Either way every op counts, and the torch
    preset equals FlopCounterMode around a real CPU forward."""
    model, x = build()
    if warm:
        with torch.no_grad():
            model(x)
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = flopgraph.analyze(model, x)
        torch_preset = flopgraph.analyze(model, x, convention="torch")
    assert_untouched(model, before)
    assert report.skipped == {} and report.macs > 0
    assert not report.frontend.real_run
    # on a real CPU forward FlopCounterMode counts 0 for the fused attention kernel
    # (docs/why-tools-disagree.md): compare with the math backend, which it counts
    with sdpa_kernel(SDPBackend.MATH):
        assert torch_preset.flops == flop_counter_total(model, x)
