"""Peers side by side: thop, ptflops (both backends), fvcore, FlopCounterMode on resnet18.

Each peer's total is checked twice: against running the peer directly here, and
against the value derived by hand from its documented rules.
"""

import copy
import csv
import io

import pytest
import torch
from conftest import assert_untouched, flop_counter_total, snapshot
from helpers import torchvision_model

import flopgraph
import flopgraph.render.compare
from flopgraph.examples import LeNet
from flopgraph.peers import PEERS, GapKind, PeerResult, PeerSpec, Share, conventions, run_peer
from flopgraph.render.compare_csv import compare_csv
from flopgraph.render.compare_html import compare_html

pytest.importorskip("thop")
pytest.importorskip("ptflops")
pytest.importorskip("fvcore")

SHAPE = (1, 3, 224, 224)
# resnet18 at 224x224, element counts by stage (channels x height x width)
STEM = 64 * 112 * 112  # conv1 / bn1 / relu output                             = 802_816
S1, S2, S3, S4 = 64 * 56 * 56, 128 * 28 * 28, 256 * 14 * 14, 512 * 7 * 7
# 4 BNs per stage, plus a downsample BN in stages 2-4                          = 2_483_712
BN = STEM + 4 * S1 + 5 * S2 + 5 * S3 + 5 * S4
RELU = STEM + 4 * (S1 + S2 + S3 + S4)  # 2 relu calls per block, 2 blocks per stage = 2_308_096
ADDS = 2 * (S1 + S2 + S3 + S4)  # one residual add per block                    = 752_640
MAXPOOL_IN, MAXPOOL_OUT = STEM, S1  # 3x3 stride 2
AVGPOOL_IN, FC_BIAS = S4, 1000  # global pool over 512x7x7, fc 512 -> 1000


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision_model("resnet18").eval()


@pytest.fixture(scope="module")
def compared(resnet18):
    before = snapshot(resnet18)
    c = flopgraph.compare(resnet18, SHAPE, peers=True)
    assert_untouched(resnet18, before)  # thop's buffers, ptflops' attributes and hooks
    return c


def peer(c: flopgraph.Comparison, name: str) -> PeerResult:
    return next(p for p in c.peers if p.name == name)


def contraction_macs(model) -> int:
    """conv + linear multiply-adds: FlopCounterMode counts each as 2 FLOPs."""
    return flop_counter_total(model, torch.randn(SHAPE)) // 2


def direct(name: str, model) -> int:
    """The peer run by hand, the way its documentation shows."""
    x, m = torch.randn(SHAPE), copy.deepcopy(model)
    if name == "thop":
        import thop

        return int(thop.profile(m, inputs=(x,), verbose=False)[0])
    if name.startswith("ptflops"):
        import ptflops

        backend = "aten" if "aten" in name else "pytorch"
        macs, _ = ptflops.get_model_complexity_info(
            m, SHAPE[1:], as_strings=False, print_per_layer_stat=False, backend=backend,
            ost=io.StringIO(),
        )  # fmt: skip
        return int(macs)
    if name == "fvcore":
        from fvcore.nn import FlopCountAnalysis

        return int(FlopCountAnalysis(m, x).unsupported_ops_warnings(False).total())
    return flop_counter_total(m, x)


NAMES = ["thop", "ptflops (pytorch)", "ptflops (aten)", "fvcore", "FlopCounterMode"]


@pytest.mark.parametrize("name", NAMES)
def test_peer_total_is_the_peer_run_directly(compared, resnet18, name):
    p = peer(compared, name)
    assert p.status == "ok" and p.raw == direct(name, resnet18)


def test_peer_totals_follow_their_rules(compared, resnet18):
    c = contraction_macs(resnet18)
    expected = {
        # conv + linear MACs, no bias; BN 2 per element doubled when affine;
        # ReLU and max pool 0; adaptive avg pool (window 49 + 1) per output
        "thop": c + 4 * BN + (49 + 1) * 512,
        # + bias; BN 2 per element (affine); ReLU and pools 1 per input element,
        # each counted twice (module hook and the patched F.relu / F.*_pool2d)
        "ptflops (pytorch)": c + FC_BIAS + 2 * BN + 2 * RELU + 2 * MAXPOOL_IN + 2 * AVGPOOL_IN,
        "ptflops (aten)": c + FC_BIAS,  # mm/addmm/convolution only, bias included
        "fvcore": c + 2 * BN + AVGPOOL_IN,  # BN eval affine 2 per element; pool 1 per input
        "FlopCounterMode": 2 * c,  # 2 FLOPs per MAC, nothing else
    }
    assert {p.name: p.raw for p in compared.peers} == expected


def test_every_gap_is_labelled_and_walks_to_our_flops(compared):
    for p in compared.peers:
        assert p.reconciled, p.name
        assert p.raw + sum(g.delta for g in p.gaps) == compared.graph.flops
        assert GapKind.UNEXPLAINED not in {g.kind for g in p.gaps}, p.name
    thop = {(g.kind, g.op): g for g in peer(compared, "thop").gaps}
    assert thop[(GapKind.MISSED, "add")].delta == ADDS  # hooks never see `out += identity`
    assert thop[(GapKind.MISSED, "add")].occurrences == 8
    assert thop[(GapKind.BIAS, "linear")].delta == FC_BIAS
    assert thop[(GapKind.OPS, "relu")].delta == RELU  # thop: ReLU costs 0
    assert thop[(GapKind.UNIT, "")].delta == peer(compared, "thop").raw  # 1 MAC = 2 FLOPs
    pt = {(g.kind, g.op): g for g in peer(compared, "ptflops (pytorch)").gaps}
    assert pt[(GapKind.DOUBLE, "relu")].delta == -2 * RELU  # the second count, as FLOPs
    assert pt[(GapKind.DOUBLE, "max_pool2d")].delta == -2 * MAXPOOL_IN
    assert pt[(GapKind.MISSED, "add")].delta == ADDS
    fcm = {(g.kind, g.op): g for g in peer(compared, "FlopCounterMode").gaps}
    assert GapKind.UNIT not in {k for k, _ in fcm}  # it reports FLOPs already
    assert fcm[(GapKind.OPS, "batch_norm")].delta == 4 * BN  # flopgraph: BN eval affine 4/elt
    assert fcm[(GapKind.OPS, "max_pool2d")].delta == MAXPOOL_OUT * 9
    assert fcm[(GapKind.OPS, "add")].delta == ADDS
    assert fcm[(GapKind.BIAS, "linear")].delta == FC_BIAS
    assert all(g.kind.is_convention for g in fcm.values())


def test_peers_rendered_in_every_format(compared):
    from flopgraph.render.compare import compare_markdown

    md = compare_markdown(compared)
    thop = peer(compared, "thop")
    assert f"| thop | ok | MACs | {thop.raw:,} | {2 * thop.raw:,} |" in md
    assert f"- {ADDS:+,} missed ops: add x8" in md
    d = compared.to_dict()["peers"]
    assert [p["name"] for p in d] == NAMES and all(p["reconciled"] for p in d)
    rows = [r for r in csv.DictReader(io.StringIO(compare_csv(compared))) if r["kind"] == "peer"]
    assert [r["name"] for r in rows] == NAMES
    for r, p in zip(rows, compared.peers, strict=True):
        assert (r["peer_status"], r["peer_unit"], r["reconciled"]) == ("ok", p.unit, "true")
        factor = 2 if p.unit == "MAC" else 1  # a reported MAC is 2 FLOPs
        assert int(r["peer_raw"]) == p.raw and int(r["peer_flops"]) == factor * p.raw
        assert int(r["graph_flops"]) == p.graph_flops == compared.graph.flops
        assert int(r["difference_flops"]) == p.graph_flops - factor * p.raw
    page = compare_html(compared)
    assert '<table id="peers">' in page and f"<li>{ADDS:+,} missed ops: add x8" in page


def _boom(model, args, kw) -> int:
    raise RuntimeError("peer exploded\nwith details")


def test_missing_and_crashing_peers_are_reported_not_raised():
    report = flopgraph.analyze(LeNet().eval(), (1, 1, 28, 28))
    model, args = LeNet().eval(), (torch.randn(1, 1, 28, 28),)
    before = snapshot(model)
    missing = run_peer(
        PeerSpec("nope", "no_such_counter_pkg", "MAC", "-", _boom), model, args, {}, report
    )
    assert (missing.status, missing.raw) == ("missing", None)
    assert "no_such_counter_pkg is not installed" in missing.reason
    crashed = run_peer(PeerSpec("boom", "torch", "MAC", "-", _boom), model, args, {}, report)
    assert crashed.status == "failed" and crashed.reason == "RuntimeError: peer exploded"
    assert_untouched(model, before)


class RefusesCpu(torch.nn.Module):
    """Traces and runs on meta tensors; a real CPU forward (every peer's) raises."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        if isinstance(x, torch.Tensor) and x.device.type == "cpu":  # proxies pass
            raise ValueError("no real arithmetic here")
        return self.fc(x)


def test_crashing_peers_are_reported_and_the_comparison_stands():
    model = RefusesCpu()
    before = snapshot(model)
    c = flopgraph.compare(model, (2, 4), peers=True)
    assert c.reconciled and c.graph == c.hooks == flopgraph.Cost(32, 2 * 32 + 8)  # 2x4 @ 4x4 + bias
    assert [p.name for p in c.peers] == NAMES
    for p in c.peers:
        assert p.status == "failed" and p.raw is None, p.name
        assert p.reason.endswith("ValueError: no real arithmetic here"), p.reason
    assert "failed: " in flopgraph.render.compare.compare_markdown(c)
    rows = [r for r in csv.DictReader(io.StringIO(compare_csv(c))) if r["kind"] == "peer"]
    assert [(r["name"], r["peer_status"], r["peer_raw"], r["reconciled"]) for r in rows] == [
        (name, "failed", "", "") for name in NAMES
    ]
    assert all(r["note"] == p.reason for r, p in zip(rows, c.peers, strict=True))
    assert_untouched(model, before)


def test_thop_with_keyword_inputs_fails_politely():
    model = LeNet().eval()
    c = flopgraph.compare(model, kwargs={"x": flopgraph.TensorSpec((1, 1, 28, 28))}, peers=True)
    thop = peer(c, "thop")
    assert thop.status == "failed" and "positional inputs only" in thop.reason
    assert peer(c, "FlopCounterMode").status == "ok"


def test_meta_model_peers_run_on_a_materialised_copy():
    with torch.device("meta"):
        model = torchvision_model("resnet18").eval()
    before = snapshot(model)
    c = flopgraph.compare(model, (1, 3, 64, 64), peers=True)
    assert all(p.status == "ok" and p.reconciled for p in c.peers)
    assert peer(c, "FlopCounterMode").raw == 2 * c.graph.macs
    assert all(t.is_meta for t in model.parameters())
    assert_untouched(model, before)


# --- a peer reconciles only when its restated rules predict its total -------------------

# LeNet on 1x1x28x28: conv1 6x28x28 outputs x 3x3x1, conv2 16x10x10 x 5x5x6; three
# linear layers 400 -> 120 -> 84 -> 10
LENET_CONV = 6 * 28 * 28 * 9 + 16 * 10 * 10 * 150  # = 42_336 + 240_000 = 282_336
LENET_LINEAR = 400 * 120 + 120 * 84 + 84 * 10  # = 58_920


def lenet_peer(name: str) -> PeerResult:
    model = LeNet().eval()
    report = flopgraph.analyze(model, (1, 1, 28, 28))
    spec = next(s for s in PEERS if s.name == name)
    return run_peer(spec, model, (torch.randn(1, 1, 28, 28),), {}, report)


def test_a_corrupted_peer_rule_leaves_the_gap_unexplained(monkeypatch):
    true = lenet_peer("thop")
    # thop: conv and linear multiply-adds, max pool 0, F.relu unseen
    assert true.raw == LENET_CONV + LENET_LINEAR and true.reconciled and true.unexplained == 0
    convs = conventions._THOP["count_convNd"]
    monkeypatch.setitem(  # the restated conv rule now says 3x the multiply-adds
        conventions._THOP, "count_convNd", lambda r, m: Share(3 * convs(r, m).raw)
    )
    p = lenet_peer("thop")
    assert p.raw == true.raw and not p.reconciled
    # restated 2 x 282,336 MACs too many, at 2 FLOPs per MAC; the walk shows it as a leftover
    (gap,) = [g for g in p.gaps if g.kind is GapKind.UNEXPLAINED]
    assert p.unexplained == gap.delta == 2 * (2 * LENET_CONV) == 1_129_344
    assert "NOT reconciled" in "\n".join(flopgraph.render.compare.gap_lines(p))


def test_a_corrupted_dispatch_peer_rule_is_caught(monkeypatch):
    true = lenet_peer("FlopCounterMode")
    assert true.raw == 2 * (LENET_CONV + LENET_LINEAR) and true.reconciled
    rule = conventions.MODELS["FlopCounterMode"]

    def corrupted(model):
        share = rule(model)  # +12,345 FLOPs for every contraction

        def plus(r):
            s = share(r)
            return Share(s.raw + 12_345, note=s.note) if r.op in conventions.CONTRACTIONS else s

        return plus

    monkeypatch.setitem(conventions.MODELS, "FlopCounterMode", corrupted)
    p = lenet_peer("FlopCounterMode")
    assert not p.reconciled
    assert p.unexplained == 5 * 12_345  # 2 convs + 3 linears, FLOPs already (no unit gap)
    assert p.to_dict()["reconciled"] is False and p.to_dict()["unexplained"] == 61_725
