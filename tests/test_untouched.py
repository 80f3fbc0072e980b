"""The untouched guarantee, family by family of the zoo, in train and eval mode.

One small, real-weight (CPU) model per family the zoo and the suite use:
torchvision CNNs, ViT and Swin, segmentation, video, timm, transformers GPT-2,
BERT and Llama, nn.Transformer, recurrent layers. Each is decorated with the
user state an analysis must keep (hooks of every kind, a gradient, a frozen
parameter, a child in the other mode), then analyzed on both frontends where each
applies, compared, and made to fail part-way in three ways (a wrong input, a
handler that raises on the third op, an op after the model that rejects its
output). After every run, successful or not, the model is bitwise as before
(conftest.snapshot: values, identities, version counters, gradients, flags, hook
dicts, every module's ``__dict__``, torch's global hooks) and no hook of the user
ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
from conftest import assert_untouched, listed, snapshot
from torch import nn

import flopgraph
from flopgraph import TensorSpec
from flopgraph.handlers import DEFAULT

pytestmark = pytest.mark.slow

IDS = TensorSpec((1, 16), torch.int64)
FLOAT_IDS = TensorSpec((1, 16), torch.float32)  # token ids of the wrong dtype
IMAGE, BAD_IMAGE = (2, 3, 32, 32), (2, 5, 32, 32)  # five channels into a three-channel stem


@dataclass(frozen=True)
class Family:
    build: Callable[[], nn.Module]
    inputs: tuple[Any, ...] = (IMAGE,)
    bad: tuple[Any, ...] = (BAD_IMAGE,)
    """Inputs the model rejects (one analysis raises before counting)."""
    fx: bool = True
    """Whether fx can trace it (transformers' forward(**kwargs) cannot)."""
    first: Callable[[Any], Any] = lambda out: out
    """The model's first output tensor, from its output."""


def _torchvision(name: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kw)

    return build


def _vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    # 32 x 32 images in 8 x 8 patches, 2 layers of width 32
    return VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=10)


def _swin() -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer([4, 4], 16, [1, 1], [1, 2], [2, 2], num_classes=10)


def _timm(name: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, **kw)

    return build


def _gpt2() -> nn.Module:
    import transformers

    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _bert() -> nn.Module:
    import transformers

    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, max_position_embeddings=64,
    )  # fmt: skip
    return transformers.BertModel(config)


def _llama() -> nn.Module:
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=100, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


class Recurrent(nn.Module):
    """An embedding-free sequence classifier: a GRU, an LSTM and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.lstm = nn.LSTM(16, 16, 2, batch_first=True, bidirectional=True, dropout=0.1)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)
        h, _ = self.lstm(h)
        return self.head(h[:, -1])


def _first_item(out: Any) -> Any:
    return out[0]


FAMILIES: dict[str, Family] = {
    "torchvision:resnet18": Family(_torchvision("resnet18")),
    "torchvision:mobilenet_v3_small": Family(_torchvision("mobilenet_v3_small")),
    "torchvision:vit": Family(_vit),
    "torchvision:swin": Family(_swin),
    "torchvision:lraspp_mobilenet_v3_large": Family(
        _torchvision("lraspp_mobilenet_v3_large", weights_backbone=None, num_classes=3),
        first=lambda out: out["out"],
    ),
    "torchvision:r3d_18": Family(
        _torchvision("r3d_18"),
        ((1, 3, 4, 32, 32),),
        ((1, 3, 4, 32),),  # a 4-d clip
    ),
    "timm:vit_tiny": Family(_timm("vit_tiny_patch16_224", img_size=32)),
    "timm:convnext_atto": Family(_timm("convnext_atto")),
    "timm:efficientnet_b0": Family(_timm("efficientnet_b0")),
    "transformers:gpt2": Family(_gpt2, (IDS,), (FLOAT_IDS,), fx=False, first=_first_item),
    "transformers:bert": Family(_bert, (IDS,), (FLOAT_IDS,), fx=False, first=_first_item),
    "transformers:llama": Family(_llama, (IDS,), (FLOAT_IDS,), fx=False, first=_first_item),
    "torch:nn.Transformer": Family(
        lambda: nn.Transformer(32, 2, 1, 1, 64, batch_first=True),
        ((2, 6, 32), (2, 5, 32)),
        ((2, 6, 31), (2, 5, 32)),  # 31 features into a model of width 32
    ),
    "torch:recurrent": Family(Recurrent, ((2, 5, 8),), ((2, 5, 7),)),
}


class PartWay(nn.Module):
    """Runs the whole model, then an op its output cannot take: a reshape to rows of a
    prime width. fx traces it; the failure comes when shapes are known, after every op
    of the model ran (fx: propagation, aten: recording)."""

    def __init__(self, inner: nn.Module, first: Callable[[Any], Any]) -> None:
        super().__init__()
        self.inner = inner
        self.first = first

    def forward(self, x: Any, y: Any = None) -> torch.Tensor:
        out = self.inner(x) if y is None else self.inner(x, y)
        return self.first(out).reshape(-1, 7919)


def raising_on(n: int, kinds: tuple[str, ...]) -> dict[Any, Callable[..., Any]]:
    """Every default handler of these key kinds, counting calls: the ``n``-th raises."""
    calls = itertools.count(1)

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        def counted(ctx: Any) -> Any:
            if next(calls) == n:
                raise RuntimeError(f"handler failure at op {n}")
            return handler(ctx)

        return counted

    return {
        target: wrap(rule.handler)
        for (kind, target), rule in DEFAULT.items()
        if kind in kinds and rule.handler is not None
    }


def decorate(model: nn.Module, training: bool) -> list[str]:
    """Give ``model`` the state a user's model has, with hooks of every kind on it and its
    first children that record into the returned list if they ever run."""
    model.train(training)
    calls: list[str] = []

    def record(name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: calls.append(name)

    for m in [model, *list(model.children())[:3]]:
        m.register_forward_pre_hook(record("pre"))
        m.register_forward_pre_hook(record("pre_kwargs"), with_kwargs=True)
        m.register_forward_hook(record("post"))
        m.register_forward_hook(record("post_kwargs"), with_kwargs=True, always_call=True)
        m.register_full_backward_pre_hook(record("backward_pre"))
        m.register_full_backward_hook(record("backward"))
        m.register_state_dict_post_hook(record("state_dict"))
        m.register_load_state_dict_post_hook(record("load_state_dict"))
    params = list(model.parameters())
    params[0].grad = torch.full_like(params[0], 0.5)
    params[-1].requires_grad_(False)
    child = next(model.children())
    child.train(not training)
    return calls


def counted(report: flopgraph.Report) -> int:
    return sum(r.status is flopgraph.Status.COUNTED for r in report.records)


def successes(family: Family, model: nn.Module) -> list[tuple[str, Callable[[], Any], Any]]:
    """(label, call, the exception it must raise or None): the analyses that work."""
    inputs = family.inputs
    fx_fails = None if family.fx else flopgraph.TraceError
    return [
        ("fx", lambda: flopgraph.analyze(model, inputs, frontend="fx"), fx_fails),
        ("aten", lambda: flopgraph.analyze(model, inputs, frontend="aten"), None),
        ("compare", lambda: flopgraph.compare(model, inputs), None),
    ]


def failures(
    family: Family, model: nn.Module, ops: dict[str, int]
) -> list[tuple[str, Callable[[], Any], Any]]:
    """Analyses that raise part-way; ``ops``: counted ops per frontend (the handler that
    raises does so at the middle one)."""
    inputs, bad = family.inputs, family.bad
    wrapped = PartWay(model, family.first)
    # one table: aten counts module, function and method calls by the rules fx uses
    kinds = {
        "fx": ("module", "function", "method"),
        "aten": ("module", "function", "method", "aten"),
    }
    error = {"fx": flopgraph.PropagationError, "aten": flopgraph.TraceError}
    out: list[tuple[str, Callable[[], Any], Any]] = []
    for frontend in ("fx", "aten") if family.fx else ("aten",):
        handlers = raising_on(max(1, ops[frontend] // 2), kinds[frontend])
        out += [
            (f"{frontend}, wrong input",
             partial(flopgraph.analyze, model, bad, frontend=frontend), error[frontend]),
            # without block reuse, every counted op calls its handler once (a replayed
            # block's records are copied, their handlers not called again)
            (f"{frontend}, handler raises",
             partial(flopgraph.analyze, model, inputs, frontend=frontend, handlers=handlers,
                     reuse=False),
             flopgraph.HandlerError),
            (f"{frontend}, raises part-way",
             partial(flopgraph.analyze, wrapped, inputs, frontend=frontend), error[frontend]),
        ]  # fmt: skip
    out.append(("compare, wrong input", partial(flopgraph.compare, model, bad),
                error["fx" if family.fx else "aten"]))  # fmt: skip
    return out


def check(label: str, call: Callable[[], Any], error: Any) -> Any:
    if error is None:
        result = call()
        assert result is not None, label
        return result
    with pytest.raises(error) as info:
        call()
    assert "\n" not in str(info.value), label
    return None


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", FAMILIES)
def test_untouched_after_every_analysis_and_failure(name, training):
    family = FAMILIES[name]
    model = family.build()
    calls = decorate(model, training)
    before = snapshot(model)
    ops: dict[str, int] = {}
    for label, call, error in successes(family, model):
        result = check(label, call, error)
        if isinstance(result, flopgraph.Report):
            ops[label] = counted(result)
        assert_untouched(model, before)
        assert calls == [], f"{label}: the user's hooks ran"
    for label, call, error in failures(family, model, ops):
        check(label, call, error)
        assert_untouched(model, before)
        assert calls == [], f"{label}: the user's hooks ran"
    # the model still works for its user, and its hooks still fire
    with torch.no_grad():
        model(*[torch.zeros(s.shape, dtype=s.dtype) if isinstance(s, TensorSpec)
                else torch.randn(s) for s in family.inputs])  # fmt: skip
    assert "pre" in calls and "post" in calls


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_untouched_after_compare_with_peers(training):
    """The peers (thop, ptflops, fvcore, FlopCounterMode) run for real, on copies."""
    model = FAMILIES["torchvision:resnet18"].build()
    calls = decorate(model, training)
    before = snapshot(model)
    result = flopgraph.compare(model, torch.randn(IMAGE), peers=True)
    assert result.peers and result.reconciled
    assert_untouched(model, before)
    assert calls == []


def _zoo():
    """flopgraph.zoo.zoo(), listed in parts: torchvision's list needs torchvision."""
    from flopgraph import zoo

    return (
        listed(zoo.torchvision_classification) + zoo.other_models() + zoo.detection_models()
        + zoo.transformers_models()
    )  # fmt: skip


@pytest.mark.parametrize("entry", _zoo(), ids=lambda e: e.name)
def test_whole_zoo_untouched_in_training(entry):
    """Every zoo model (meta: no values, but an in-place write still bumps a tensor's
    version counter; detection: real weights, and it fails in training without
    targets), in training, where batch norms would update their statistics."""
    model = entry.build()
    calls = decorate(model, True)
    before = snapshot(model)
    try:
        flopgraph.analyze(model, entry.inputs, kwargs=entry.kwargs)
    except flopgraph.FlopgraphError as e:  # detection in training wants targets: a failure
        assert "targets should not be none when in training mode" in str(e)
    assert_untouched(model, before)
    assert calls == []


@pytest.mark.parametrize("training", [False, True])
def test_generation_leaves_the_model_untouched(training: bool) -> None:
    # generation() wraps the model in a module of its own and runs the model's cache
    # code on fake tensors: the user's model, its hooks and flags come out as they were
    pytest.importorskip("transformers")
    model = _llama()
    calls = decorate(model, training)
    before = snapshot(model)
    g = flopgraph.generation(model, prompt=3, new_tokens=2)
    assert g.decode(4).skipped == {}
    assert_untouched(model, before)
    assert calls == []


@pytest.mark.parametrize("training", [False, True])
def test_a_symbolic_analysis_leaves_the_model_untouched(training: bool) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    calls = decorate(model, training)
    before = snapshot(model)
    report = flopgraph.analyze(model, TensorSpec(("B", 3, "H", "W")))
    assert report.symbols == ("B", "H", "W")
    assert_untouched(model, before)
    assert calls == []
    with pytest.raises(flopgraph.InputError):  # and when it fails
        flopgraph.analyze(model, TensorSpec(("B", 3, "H", "W")), training=True)
    assert_untouched(model, before)
