"""torchvision's detection ops by hand, on both frontends.

RoIAlign: every output bin averages grid_h x grid_w bilinear samples; a sample
is 4 taps (interpolation: 4 MACs, 8 FLOPs) and the average is section C's mean
(1 FLOP per sample). Per sample: 4 MACs, 9 FLOPs. An adaptive sampling ratio
(<= 0) depends on box sizes: its least, one sample per bin, is counted. RoIPool
and PSRoIPool pool a box-dependent window: its least, one element per bin.
nms compares boxes and returns integer indices: free.
"""

import pytest
import torch
from helpers import RoI
from torch import nn

import flopgraph
from flopgraph import Cost, Status
from flopgraph.handlers.torchvision_ops import samples_per_bin

ops = pytest.importorskip("torchvision.ops")  # absent beside the oldest torch tested
MultiScaleRoIAlign, PSRoIAlign, PSRoIPool = ops.MultiScaleRoIAlign, ops.PSRoIAlign, ops.PSRoIPool
RoIAlign, RoIPool, nms = ops.RoIAlign, ops.RoIPool, ops.nms

FRONTENDS = ("fx", "aten")


def only_cost(report: flopgraph.Report, op: str) -> Cost:
    assert report.skipped == {}
    records = [r for r in report.records if r.status is Status.COUNTED]
    assert [r.op for r in records] == [op]
    return records[0].cost


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("layer, x, expected", [
    # out [5, 8, 7, 7] = 1_960 bins x 2 x 2 samples = 7_840 samples:
    # 4 * 7_840 = 31_360 MACs; 2 * 31_360 + 7_840 = 70_560 FLOPs
    (RoIAlign((7, 7), 0.25, 2), (2, 8, 32, 32), Cost(31_360, 70_560)),
    # aligned changes coordinates only; sampling 3 x 3 on out [5, 8, 2, 3] = 240 bins:
    # 2_160 samples -> 8_640 MACs, 17_280 + 2_160 = 19_440 FLOPs
    (RoIAlign((2, 3), 1.0, 3, aligned=True), (1, 8, 9, 9), Cost(8_640, 19_440)),
    # adaptive sampling (-1): one sample per bin, 1_960 samples -> 7_840 MACs,
    # 15_680 + 1_960 = 17_640 FLOPs
    (RoIAlign((7, 7), 0.25, -1), (2, 8, 32, 32), Cost(7_840, 17_640)),
    # position-sensitive: 18 channels / (3 x 3) bins -> out [5, 2, 3, 3] = 90 bins x 4
    # samples = 360 -> 1_440 MACs, 2_880 + 360 = 3_240 FLOPs
    (PSRoIAlign((3, 3), 0.5, 2), (1, 18, 16, 16), Cost(1_440, 3_240)),
])  # fmt: skip
def test_roi_align(frontend, layer, x, expected):
    report = flopgraph.analyze(RoI(layer), (x, (5, 5)), frontend=frontend)
    assert only_cost(report, "roi_align") == expected


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("layer, x, flops", [
    (RoIPool((7, 7), 0.25), (2, 8, 32, 32), 5 * 8 * 7 * 7),  # one per bin: 1_960
    (PSRoIPool(3, 0.5), (1, 18, 16, 16), 5 * 2 * 3 * 3),  # out [5, 2, 3, 3]: 90
])  # fmt: skip
def test_roi_pool_counts_one_element_per_bin(frontend, layer, x, flops):
    report = flopgraph.analyze(RoI(layer), (x, (5, 5)), frontend=frontend)
    assert only_cost(report, "roi_pool") == Cost(0, flops)


def test_samples_per_bin():
    assert [samples_per_bin(r) for r in (-1, 0, 1, 2, 4)] == [1, 1, 1, 4, 16]


class OneLevel(nn.Module):
    """MultiScaleRoIAlign on one feature map (no value-dependent level choice)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = MultiScaleRoIAlign(["0"], 7, 2)

    def forward(self, feature, boxes):
        return self.pool({"0": feature}, [boxes], [(256, 256)])


def _two_levels():
    feats = {"0": torch.rand(1, 8, 64, 64), "1": torch.rand(1, 8, 32, 32)}
    # six boxes, small and large, so that each level gets some
    boxes = torch.tensor([[0, 0, 8, 8], [4, 4, 20, 20], [0, 0, 200, 200],
                          [10, 10, 250, 240], [30, 30, 40, 50], [0, 0, 180, 60]],
                         dtype=torch.float32)  # fmt: skip
    return feats, [boxes], [(256, 256)]


# out [6, 8, 7, 7] = 2_352 bins x 2 x 2 = 9_408 samples: 37_632 MACs,
# 2 * 37_632 + 9_408 = 84_672 FLOPs, however the boxes spread over the levels
MULTISCALE = Cost(37_632, 84_672)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_multiscale_roi_align_on_one_level(frontend):
    report = flopgraph.analyze(OneLevel(), ((1, 8, 64, 64), (6, 4)), frontend=frontend)
    assert report.skipped == {}
    (record,) = [r for r in report.records if r.op == "roi_align"]
    assert record.cost == MULTISCALE
    # fx keeps torchvision's wrapped _multiscale_roi_align whole; aten sees the op
    assert record.kind == ("call_function" if frontend == "fx" else "aten")


def test_multiscale_roi_align_on_two_levels_runs_for_real():
    # boxes pick their level by value (torch.where): fx cannot propagate that on meta
    # tensors, and the aten frontend runs it for real, one roi_align per level
    pool = MultiScaleRoIAlign(["0", "1"], 7, 2)
    report = flopgraph.analyze(pool, _two_levels())
    assert report.frontend.name == "aten" and report.frontend.real_run
    # fx cannot take a dict of feature maps as an input: a TraceError, so auto falls back
    assert "an input holds tensors in a container" in report.frontend.note
    per_level = [r for r in report.records if r.op == "roi_align"]
    assert len(per_level) == 2 and all(r.outputs[0].shape[0] > 0 for r in per_level)
    assert sum((r.cost for r in per_level), Cost()) == MULTISCALE
    assert report.skipped == {}


class Suppress(nn.Module):
    def forward(self, boxes, scores):
        keep = nms(boxes, scores, 0.5)
        return boxes[keep] * 2.0


def test_nms_is_free_and_the_rest_counts():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    report = flopgraph.analyze(Suppress(), (boxes, torch.tensor([0.9, 0.8, 0.7])))
    assert report.frontend.real_run and report.skipped == {}
    (record,) = [r for r in report.records if r.op == "nms"]
    assert record.status is Status.FREE and record.cost == Cost()
    # the second box overlaps the first (IoU 81 / 119 > 0.5): two kept, [2, 4] * 2.0
    assert report.cost == Cost(0, 2 * 4)
