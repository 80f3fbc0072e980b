"""The model zoo: no skipped op in the default convention, and the multiply-adds of
contractions agree with FlopCounterMode on every model.

Every model is data-less (meta device), so a forward under FlopCounterMode costs
only its dispatch. Run time of this file is recorded in docs/conventions-notes-coverage.md.
"""

import warnings

import pytest
import torch
from conftest import flop_counter_total

import flopgraph
from flopgraph.zoo import ZooModel, other_models, torchvision_classification

pytestmark = pytest.mark.slow

# ops whose multiply-adds FlopCounterMode has no formula for (upsampling)
NOT_IN_FLOP_COUNTER = {"interpolate"}


def _meta(value):
    if isinstance(value, tuple) and all(isinstance(s, int) for s in value):
        return torch.empty(value, device="meta")
    return value


def check(entry: ZooModel) -> None:
    model = entry.build()
    with warnings.catch_warnings():
        warnings.simplefilter("error", flopgraph.SkippedOpWarning)
        report = flopgraph.analyze(model, entry.inputs, kwargs=entry.kwargs)
    assert report.skipped == {}
    assert report.macs > 0
    counted = sum(r.macs for r in report.records if r.op not in NOT_IN_FLOP_COUNTER)
    inputs = [_meta(v) for v in entry.inputs]
    kwargs = {k: _meta(v) for k, v in entry.kwargs.items()}
    assert 2 * counted == flop_counter_total(model, *inputs, **kwargs)


@pytest.mark.parametrize("entry", torchvision_classification(), ids=lambda e: e.name)
def test_torchvision_classification(entry):
    check(entry)


@pytest.mark.parametrize("entry", other_models(), ids=lambda e: e.name)
def test_segmentation_video_timm_transformer(entry):
    check(entry)
