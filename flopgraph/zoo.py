"""A model zoo for coverage reports and whole-model tests.

Every entry builds offline (no weights are downloaded) and, where the
constructor allows it, on the meta device, so building and analyzing a large
model costs only its graph. torchvision and timm are imported only when an
entry of theirs is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

IMAGE = (1, 3, 224, 224)


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: how to build it and what to feed it."""

    name: str
    """``library:model`` (``torchvision:resnet50``, ``timm:convnext_tiny``)."""
    build: Callable[[], nn.Module]
    inputs: tuple[Any, ...] = (IMAGE,)
    """Positional inputs as :func:`flopgraph.analyze` takes them (shapes here)."""
    kwargs: dict[str, Any] = field(default_factory=dict)


def on_meta(make: Callable[[], nn.Module]) -> nn.Module:
    """``make()`` on the meta device, in eval mode. A constructor that cannot run
    there (one that reads tensor values, as torchvision's RegNet does) runs on the
    CPU, and the model then moves to meta: every zoo model is data-less."""
    try:
        with torch.device("meta"):
            return make().eval()
    except (NotImplementedError, RuntimeError):
        return make().to("meta").eval()


def _torchvision(name: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return on_meta(lambda: torchvision.models.get_model(name, weights=None, **kw))

    return build


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return on_meta(lambda: timm.create_model(name, pretrained=False))

    return build


def _transformer() -> nn.Module:
    return on_meta(lambda: nn.Transformer(batch_first=True))


def torchvision_classification() -> list[ZooModel]:
    """Every classification model torchvision lists."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return [
        ZooModel(
            f"torchvision:{n}",
            _torchvision(n),
            ((1, 3, 299, 299),) if n == "inception_v3" else (IMAGE,),
        )
        for n in names
    ]


SEGMENTATION = ("fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
TIMM = (
    "vit_small_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
    "convnext_tiny", "efficientnet_b0", "resnet50d", "mixer_b16_224", "regnetx_002",
    "mobilenetv3_large_100",
)  # fmt: skip


def other_models() -> list[ZooModel]:
    """Segmentation, video, timm and torch.nn.Transformer entries."""
    out = [
        ZooModel(f"torchvision:{n}", _torchvision(n, weights_backbone=None)) for n in SEGMENTATION
    ]
    out.append(ZooModel("torchvision:r3d_18", _torchvision("r3d_18"), ((1, 3, 16, 112, 112),)))
    out += [ZooModel(f"timm:{n}", _timm(n)) for n in TIMM]
    out.append(ZooModel("torch:nn.Transformer", _transformer, ((1, 32, 512), (1, 24, 512))))
    return out


def zoo() -> list[ZooModel]:
    """The whole zoo, torchvision classification first."""
    return torchvision_classification() + other_models()
