"""compare() on the aten frontend: models fx cannot trace, a real run, and the
conventions it refuses. Expected counts are derived by hand beside them."""

import pytest
import torch
from helpers import AssertingResidual, Residual, ValueBranch, corrupt_hook_rule
from torch import nn

import flopgraph
from flopgraph import Cost
from flopgraph.differences import Reason
from flopgraph.render.compare import compare_markdown

# x [2, 8]: fc 2*8*8 = 128 MACs, 256 + 16 (bias) = 272 FLOPs; the add 16; the layer
# norm (6 + 2 affine) * 16 = 128; relu 16
FC, ADD, NORM, RELU = Cost(128, 272), Cost(0, 16), Cost(0, 128), Cost(0, 16)


def test_a_model_fx_cannot_trace_is_compared_on_aten():
    c = flopgraph.compare(AssertingResidual(), (2, 8))
    assert c.frontend.name == "aten" and c.frontend.note.startswith("fx was not used:")
    assert c.graph == FC + ADD + NORM + RELU == Cost(128, 432)
    assert c.hooks == FC + NORM == Cost(128, 400)  # hooks see the two leaves only
    assert [(d.module, d.op, d.reason, d.cost) for d in c.differences] == [
        ("", "add", Reason.OUTSIDE_LEAVES, ADD),
        ("", "relu", Reason.OUTSIDE_LEAVES, RELU),
    ]
    assert c.reconciled
    assert c.module("fc").graph == c.module("fc").hooks == FC
    assert c.to_dict()["frontend"]["name"] == "aten"
    assert "convention default; graph from the aten frontend." in compare_markdown(c)


def test_fx_asked_for_explicitly_still_fails():
    with pytest.raises(flopgraph.TraceError, match="wrong width"):
        flopgraph.compare(AssertingResidual(), (2, 8), frontend="fx")


def test_a_real_run_is_hooked_for_real():
    c = flopgraph.compare(ValueBranch().eval(), torch.ones(2, 8))
    assert c.frontend.name == "aten" and c.frontend.real_run
    assert "graph from the aten frontend, real run." in compare_markdown(c)
    # x.mean() over 2 x 8 = 16 FLOPs, outside the leaf; the comparison is boolean (free);
    # fc: 2*8*4 = 64 MACs, 128 + 8 = 136 FLOPs on both sides
    assert c.hooks == Cost(64, 136) and c.graph == Cost(64, 152)
    assert [(d.op, d.reason, d.flops) for d in c.differences] == [
        ("mean", Reason.OUTSIDE_LEAVES, 16)
    ]
    assert c.reconciled


def test_the_same_model_on_both_frontends_reconciles_with_the_same_gap():
    fx = flopgraph.compare(Residual(), (2, 8))
    at = flopgraph.compare(Residual(), (2, 8), frontend="aten")
    assert fx.frontend.name == "fx" and at.frontend.name == "aten"
    assert fx.graph == at.graph and fx.hooks == at.hooks and fx.difference == at.difference
    assert {d.reason for d in fx.differences} == {Reason.FUNCTIONAL}  # fx knows dataflow
    assert {d.reason for d in at.differences} == {Reason.OUTSIDE_LEAVES}
    assert fx.reconciled and at.reconciled


@pytest.mark.parametrize("convention", ["torch", "fvcore"])
def test_presets_cannot_be_compared(convention):
    with pytest.raises(flopgraph.InputError, match="this preset has none"):
        flopgraph.compare(nn.Linear(8, 4), (2, 8), convention=convention)


@pytest.mark.slow
def test_gpt2_compares_on_aten():
    pytest.importorskip("transformers")
    from flopgraph.zoo import TOKENS, gpt2, on_meta

    model = on_meta(lambda: gpt2(n_layer=2))
    c = flopgraph.compare(model, TOKENS)
    assert c.frontend.name == "aten" and c.reconciled
    assert c.graph == flopgraph.analyze(model, TOKENS).cost
    # hooks see the nn.Linear head: 128 tokens x 768 x 50_257 vocabulary, no bias
    head = 128 * 768 * 50257  # = 4_940_464_128
    assert c.module("lm_head").hooks == c.module("lm_head").graph == Cost(head, 2 * head)
    # the projections are transformers' Conv1D (no module rule): outside leaves
    assert {d.reason for d in c.differences} == {Reason.OUTSIDE_LEAVES}


def test_a_corrupted_hook_rule_is_not_reconciled_on_aten(monkeypatch):
    assert flopgraph.compare(AssertingResidual(), (2, 8)).reconciled
    corrupt_hook_rule(monkeypatch, nn.Linear, lambda c: Cost(c.macs, c.flops + 12_345))
    c = flopgraph.compare(AssertingResidual(), (2, 8))
    assert c.frontend.name == "aten" and not c.reconciled
    # fc's aten records (FC) against its one hook call (FC + 12,345 FLOPs): named on fc
    assert [(d.module, d.reason, d.cost) for d in c.unexplained] == [
        ("fc", Reason.UNEXPLAINED, Cost(0, -12_345))
    ]
    assert c.explained == ADD + RELU  # the two ops outside leaves, from their records
    assert "unexplained in fc" in c.reconciliation
