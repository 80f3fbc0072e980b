"""torchvision classification models against FlopCounterMode, and ResNet-50's residual adds."""

import pytest
import torch
from conftest import flop_counter_total
from helpers import torchvision_model

import flopgraph

MODELS = [
    "resnet18", "resnet50", "vgg16", "mobilenet_v3_large", "efficientnet_b0", "densenet121",
    "convnext_tiny", "regnet_y_400mf", "shufflenet_v2_x1_0", "squeezenet1_0",
]  # fmt: skip


def build(name: str) -> torch.nn.Module:
    """On the meta device where the constructor allows it (regnet's does not)."""
    try:
        with torch.device("meta"):
            return torchvision_model(name).eval()
    except NotImplementedError:
        return torchvision_model(name).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_macs_match_flop_counter_mode(name):
    model = build(name)
    report = flopgraph.analyze(model, (1, 3, 224, 224))
    # FlopCounterMode counts exactly the multiply-adds of contractions, times two
    x = torch.empty(1, 3, 224, 224, device=next(model.parameters()).device)
    assert 2 * report.macs == flop_counter_total(model, x)
    assert report.skipped == {}
    assert report.params.total == sum(p.numel() for p in model.parameters())


def test_resnet50_residual_adds():
    report = flopgraph.analyze(build("resnet50"), (1, 3, 224, 224))
    adds = [r for r in report.records if r.op == "add"]
    # one residual add per bottleneck, output channels x spatial size of its stage
    expected = (
        3 * 256 * 56 * 56  # layer1: 3 blocks                              = 2_408_448
        + 4 * 512 * 28 * 28  # layer2: 4 blocks                             = 1_605_632
        + 6 * 1024 * 14 * 14  # layer3: 6 blocks                            = 1_204_224
        + 3 * 2048 * 7 * 7  # layer4: 3 blocks                              = 301_056
    )
    assert len(adds) == 16
    assert sum(a.flops for a in adds) == expected == 5_519_360
    stages = zip((1, 2, 3, 4), (3, 4, 6, 3), strict=True)
    blocks = [f"layer{i}.{j}" for i, n in stages for j in range(n)]
    assert [a.module for a in adds] == blocks
    by_module = report.by_module()
    assert by_module["layer1.0"].flops >= adds[0].flops


def test_resnet18_cpu_and_meta_agree():
    cpu = torchvision_model("resnet18").eval()
    a = flopgraph.analyze(cpu, torch.randn(1, 3, 64, 64))
    b = flopgraph.analyze(build("resnet18"), (1, 3, 64, 64))
    assert (a.macs, a.flops, a.params) == (b.macs, b.flops, b.params)


def test_every_call_node_is_accounted_for():
    model = build("resnet18")
    report = flopgraph.analyze(model, (1, 3, 64, 64))
    graph = torch.fx.symbolic_trace(model).graph  # plain fx: same leaves for resnet18
    calls = [n for n in graph.nodes if n.op in ("call_module", "call_function", "call_method")]
    counts = report.status_counts()
    assert sum(counts.values()) == len(report.records) == len(calls)
    assert counts[flopgraph.Status.SKIPPED] == 0
    assert counts[flopgraph.Status.COUNTED] > 0 and counts[flopgraph.Status.FREE] > 0
