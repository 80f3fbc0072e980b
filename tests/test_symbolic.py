"""Symbolic sizes (spec section H): counts as exact formulas of named input sizes.

- GPT-2 and a small Llama: the symbolic total in (B, T) equals the closed form of
  tests/test_closed_form.py evaluated on sympy symbols, term by term;
- resnet50, vit_b_16 and a UNet-like conv net: substituting sizes gives exactly the
  concrete analysis at five or more shapes each, odd image sides included;
- random small models and sizes (hypothesis): ``subs`` equals the concrete count;
- a size that breaks an assumption of the trace is refused, the condition named.
"""

from __future__ import annotations

import pytest
import sympy
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_closed_form import _gpt2, _llama, gpt2_closed_form, llama_closed_form
from torch import nn

import flopgraph
from flopgraph import TensorSpec
from flopgraph.errors import InputError

B, T = sympy.symbols("B T", integer=True, positive=True)


def _same(report: flopgraph.Report, model: nn.Module, shape: tuple[int, ...], **kw: object) -> None:
    values = {n: v for n, v in zip(("B", "H", "W"), shape[:1] + shape[2:], strict=False)}
    concrete = flopgraph.analyze(model, TensorSpec(shape), frontend="aten", **kw)  # type: ignore[arg-type]
    got = report.subs(**{k: v for k, v in values.items() if k in report.symbols})
    assert (got.macs, got.flops) == (concrete.macs, concrete.flops), shape
    assert [r.cost for r in got.records] == [r.cost for r in concrete.records], shape


# --- language models against their closed forms ----------------------------------------------


def test_gpt2_symbolic_total_is_the_closed_form() -> None:
    pytest.importorskip("transformers")
    model, config = _gpt2(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=256)
    report = flopgraph.analyze(model, TensorSpec(("B", "T"), torch.int64))
    assert report.symbols == ("B", "T") and report.skipped == {}
    want = gpt2_closed_form(config, T, B)
    assert sympy.expand(report.macs - want.macs) == 0
    assert sympy.expand(report.flops - want.flops) == 0
    # the position table holds 256 positions: a longer sequence is refused
    assert "T <= 256" in report.assumptions
    with pytest.raises(InputError, match="breaks the assumption T <= 256"):
        report.subs(B=2, T=257)
    # by hand: per layer 2 * 4 heads * 16 (scores, values) MACs per (query, key) pair,
    # so 128 * B * T^2 MACs per layer and 256 * B * T^2 over two
    assert sympy.Poly(sympy.expand(report.macs), B, T).coeff_monomial(B * T**2) == 256


def test_llama_symbolic_total_is_the_closed_form() -> None:
    pytest.importorskip("transformers")
    model, config = _llama(
        hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, vocab_size=1000, use_cache=False,
    )  # fmt: skip
    report = flopgraph.analyze(model, TensorSpec(("B", "T"), torch.int64))
    want = llama_closed_form(config, T, B)
    assert sympy.expand(report.macs - want.macs) == 0
    assert sympy.expand(report.flops - want.flops) == 0
    # and the formula's values are the concrete analyses'
    for b, t in ((2, 3), (3, 40), (2, 129)):
        concrete = flopgraph.analyze(model, TensorSpec((b, t), torch.int64))
        assert report.subs(B=b, T=t).flops == concrete.flops


# --- conv nets: substitution equals the concrete analysis ------------------------------------


def test_resnet50_in_batch_and_image_side() -> None:
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet50().eval()
    report = flopgraph.analyze(model, TensorSpec(("B", 3, "H", "W")))
    assert report.skipped == {}
    for shape in (
        (2, 3, 224, 224),
        (3, 3, 97, 131),
        (2, 3, 65, 64),
        (5, 3, 320, 257),
        (2, 3, 33, 35),
    ):
        _same(report, model, shape)


def test_vit_b_16_in_batch() -> None:
    tv = pytest.importorskip("torchvision")
    model = tv.models.vit_b_16().eval()
    report = flopgraph.analyze(model, TensorSpec(("B", 3, 224, 224)))
    assert report.symbols == ("B",)
    # every op of a ViT runs per image: the count is B times one image's (ViT-B/16 at
    # 224: 17.56 GMACs), so the formula has no constant term
    assert sympy.expand(report.macs).subs(B, 0) == 0
    for b in (2, 3, 4, 7, 16):
        _same(report, model, (b, 3, 224, 224))


class TinyUNet(nn.Module):
    """Two levels down (stride-2 conv, max pool), back up (transposed conv, then padded
    to the skip's size as odd sides need, the pattern of the common PyTorch UNet),
    skip connections by cat."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.enc2 = nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(16, 32, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec1 = nn.Conv2d(32, 16, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec2 = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = F.relu(self.enc1(x))
        s2 = F.relu(self.enc2(self.down(s1)))
        m = F.relu(self.mid(self.pool(s2)))
        d = F.relu(self.dec1(torch.cat([_to(self.up1(m), s2), s2], 1)))
        return self.head(F.relu(self.dec2(torch.cat([_to(self.up2(d), s1), s1], 1))))


def _to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    dy, dx = like.shape[2] - x.shape[2], like.shape[3] - x.shape[3]
    return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


def test_unet_like_net_at_odd_sizes() -> None:
    model = TinyUNet().eval()
    report = flopgraph.analyze(model, TensorSpec(("B", 3, "H", "W")))
    assert report.skipped == {}
    assert "floor" in str(report.flops)  # stride 2 and the pool make floor divisions
    # the trace took the hints' branches (H 67: half map 34, even, no padding; W 69:
    # half map 35, odd, padded by one): sizes with the same parities follow the formula
    for shape in ((2, 3, 67, 69), (3, 3, 31, 65), (2, 3, 63, 9), (4, 3, 99, 101), (2, 3, 71, 21)):
        _same(report, model, shape)
    # and a side whose half map has the other parity was not traced: refused, named
    with pytest.raises(InputError, match="breaks the assumption"):  # torch words it its way
        report.subs(B=2, H=67, W=64)


# --- any small model, any sizes ----------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    width=st.integers(1, 6),
    pool=st.booleans(),
    b=st.integers(2, 5),
    h=st.integers(12, 40),
    w=st.integers(12, 40),
)
def test_subs_equals_the_concrete_count(
    kernel: int, stride: int, padding: int, width: int, pool: bool, b: int, h: int, w: int
) -> None:
    layers: list[nn.Module] = [nn.Conv2d(3, width, kernel, stride, padding), nn.ReLU()]
    if pool:
        layers.append(nn.AvgPool2d(2))
    layers += [nn.Conv2d(width, 4, 3, padding=1), nn.Flatten(2)]
    model = nn.Sequential(*layers).eval()
    report = flopgraph.analyze(model, TensorSpec(("B", 3, "H", "W")), hints={"H": 41, "W": 43})
    try:
        got = report.subs(B=b, H=h, W=w)
    except InputError as e:  # refused: it must name an assumption that fails here
        assert "breaks the assumption" in str(e)
        return
    concrete = flopgraph.analyze(model, TensorSpec((b, 3, h, w)), frontend="aten")
    assert (got.macs, got.flops) == (concrete.macs, concrete.flops)


# --- assumptions ---------------------------------------------------------------------------


def test_values_that_break_an_assumption_are_refused_by_name() -> None:
    model = TinyUNet().eval()
    report = flopgraph.analyze(model, TensorSpec(("B", 3, "H", "W")))
    assert "B >= 2" in report.assumptions
    with pytest.raises(InputError, match=r"breaks the assumption B >= 2"):
        report.subs(B=1, H=64, W=64)
    with pytest.raises(InputError, match="breaks the assumption"):
        report.subs(B=2, H=2, W=64)  # the stride-2 map would be 1 wide
    with pytest.raises(InputError, match="needs a value for each of B, H, W; missing W"):
        report.subs(B=2, H=64)


def test_a_size_the_trace_fixed_is_an_assumption() -> None:
    tv = pytest.importorskip("torchvision")
    # ViT's positions fix the image side: naming it gives H == 224 as an assumption
    report = flopgraph.analyze(
        tv.models.vit_b_16().eval(), TensorSpec(("B", 3, "H", "H")), hints={"H": 224}
    )
    assert "Eq(H, 224)" in report.assumptions
    with pytest.raises(InputError, match=r"Eq\(H, 224\)"):
        report.subs(B=2, H=256)


def test_symbolic_report_survives_json_and_renders() -> None:
    model = TinyUNet().eval()
    report = flopgraph.analyze(model, TensorSpec(("B", 3, "H", "W")))
    again = flopgraph.Report.from_json(report.to_json())
    assert again.symbols == report.symbols and again.assumptions == report.assumptions
    assert sympy.simplify(again.flops - report.flops) == 0
    assert again.subs(B=2, H=31, W=21).flops == report.subs(B=2, H=31, W=21).flops
    from flopgraph.render import View, render_text

    for fmt in ("table", "markdown", "html", "csv", "json"):
        assert "B" in render_text(report, fmt, View(), 120)  # type: ignore[arg-type]


class _Resize(nn.Module):
    """Down by a stride-2 conv, back to the input's size by bilinear interpolation."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.interpolate(self.down(x), size=x.shape[-2:], mode="bilinear"))


def test_interpolate_to_a_symbolic_size() -> None:
    report = flopgraph.analyze(_Resize(), TensorSpec(("B", 3, "H", "W")))
    # by hand, per image: the stride-2 conv 8*3*9 MACs per output position (+ bias),
    # the resize 4 taps (2 FLOPs each) per output element, the head 2*8*9 MACs + bias,
    # every one of the H x W outputs; the conv's map is ceil(H/2) x ceil(W/2)
    h, w = sympy.symbols("H W", integer=True, positive=True)
    half = (sympy.floor((h - 1) / 2) + 1) * (sympy.floor((w - 1) / 2) + 1)
    want = B * half * 8 * (2 * 27 + 1) + B * h * w * (8 * 4 * 2 + 2 * (2 * 72 + 1))
    assert sympy.simplify(report.flops - want) == 0
    for shape in ((2, 3, 31, 17), (3, 3, 64, 65), (2, 3, 9, 100), (4, 3, 33, 33), (2, 3, 128, 7)):
        _same(report, _Resize().eval(), shape)
