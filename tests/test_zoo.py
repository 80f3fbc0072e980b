"""The model zoo: no skipped op in the default convention, and the multiply-adds of
contractions agree with FlopCounterMode on every model.

Every model but fasterrcnn is data-less (meta device), so a forward under
FlopCounterMode costs only its dispatch; fasterrcnn's boxes depend on values, so it
runs for real on one small image. Run time of this file is recorded in
docs/benchmarks.md ("Coverage over the model zoo").
"""

import warnings

import pytest
import torch
from conftest import flop_counter_total, listed
from helpers import meta_input

import flopgraph
from flopgraph.zoo import (
    ZooModel,
    detection_models,
    other_models,
    torchvision_classification,
    transformers_models,
)

pytestmark = pytest.mark.slow

# ops whose multiply-adds FlopCounterMode has no formula for (upsampling)
NOT_IN_FLOP_COUNTER = {"interpolate"}


def analyzed(entry: ZooModel) -> tuple[torch.nn.Module, flopgraph.Report]:
    """The entry's model and its report, with no op skipped (a skip would warn)."""
    model = entry.build()
    with warnings.catch_warnings():
        warnings.simplefilter("error", flopgraph.SkippedOpWarning)
        report = flopgraph.analyze(model, entry.inputs, kwargs=entry.kwargs)
    assert report.skipped == {}
    assert report.macs > 0
    return model, report


def check(entry: ZooModel) -> None:
    model, report = analyzed(entry)
    counted = sum(r.macs for r in report.records if r.op not in NOT_IN_FLOP_COUNTER)
    inputs = [meta_input(v) for v in entry.inputs]
    kwargs = {k: meta_input(v) for k, v in entry.kwargs.items()}
    assert 2 * counted == flop_counter_total(model, *inputs, **kwargs)


@pytest.mark.parametrize("entry", listed(torchvision_classification), ids=lambda e: e.name)
def test_torchvision_classification(entry):
    check(entry)


@pytest.mark.parametrize("entry", other_models(), ids=lambda e: e.name)
def test_segmentation_video_timm_transformer(entry):
    check(entry)


@pytest.mark.parametrize("entry", transformers_models(), ids=lambda e: e.name)
def test_transformers(entry):
    pytest.importorskip("transformers")
    check(entry)


def test_detection():
    (entry,) = detection_models()
    model, report = analyzed(entry)
    assert report.frontend.real_run  # its proposals depend on values
    assert {r.target for r in report.records if r.op in ("roi_align", "nms")} == {
        "torchvision.roi_align.default",
        "torchvision.nms.default",
    }
    # FlopCounterMode runs on the same real image (values decide the proposals); it has
    # no formula for upsampling (the transform's resize) nor for torchvision::roi_align
    counted = sum(r.macs for r in report.records if r.op not in {"interpolate", "roi_align"})
    assert 2 * counted == flop_counter_total(model, *entry.inputs)
