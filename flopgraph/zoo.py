"""A model zoo for coverage reports and whole-model tests.

Every entry builds offline (no weights are downloaded; transformers models
from config objects) and, where the constructor allows it, on the meta device,
so building and analyzing a large model costs only its graph. The one
exception is detection: its control flow depends on tensor values, so it is
built on the CPU and fed a real image (the aten frontend runs it for real).
torchvision, timm and transformers are imported only when an entry of theirs
is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .inputs import TensorSpec

IMAGE = (1, 3, 224, 224)


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: how to build it and what to feed it."""

    name: str
    """``library:model`` (``torchvision:resnet50``, ``timm:convnext_tiny``)."""
    build: Callable[[], nn.Module]
    inputs: tuple[Any, ...] = (IMAGE,)
    """Positional inputs as :func:`flopgraph.analyze` takes them: shapes and
    TensorSpecs, or real tensors where the forward needs values (detection)."""
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


DETECTION = "fasterrcnn_mobilenet_v3_large_fpn"


def _detection() -> nn.Module:
    import torchvision

    with torch.random.fork_rng():  # the same weights every time, the caller's RNG untouched
        torch.manual_seed(0)
        model = torchvision.models.get_model(DETECTION, weights=None, weights_backbone=None)
    return model.eval()


def detection_models() -> list[ZooModel]:
    """fasterrcnn_mobilenet_v3_large_fpn on the CPU with one seeded 320 x 320 image: its
    proposals (and so its cost) depend on values, so it runs for real."""
    image = torch.rand(3, 320, 320, generator=torch.Generator().manual_seed(0))
    return [ZooModel(f"torchvision:{DETECTION}", _detection, ([image],))]


# --- transformers, from config objects (never downloaded) ----------------------------------

TOKENS = TensorSpec((1, 128), torch.int64)
DECODER_TOKENS = TensorSpec((1, 32), torch.int64)
LLAMA_SMALL: dict[str, Any] = {
    "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
    "num_attention_heads": 8, "vocab_size": 32000,
}  # fmt: skip
"""A Llama four layers deep and 512 wide (the 32k vocabulary of Llama 2)."""


def gpt2(**config: Any) -> nn.Module:
    """``GPT2LMHeadModel(GPT2Config(**config))``: GPT-2 small by default."""
    import transformers

    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))


def bert(**config: Any) -> nn.Module:
    """``BertModel(BertConfig(**config))``: BERT-base by default."""
    import transformers

    return transformers.BertModel(transformers.BertConfig(**config))


def llama(**config: Any) -> nn.Module:
    """``LlamaForCausalLM`` of :data:`LLAMA_SMALL` updated with ``config``."""
    import transformers

    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**LLAMA_SMALL, **config}))


def t5(**config: Any) -> nn.Module:
    """``T5ForConditionalGeneration(T5Config(**config))``: t5-small by default."""
    import transformers

    return transformers.T5ForConditionalGeneration(transformers.T5Config(**config))


def vit(**config: Any) -> nn.Module:
    """``ViTForImageClassification(ViTConfig(**config))``: ViT-B/16 by default."""
    import transformers

    return transformers.ViTForImageClassification(transformers.ViTConfig(**config))


def transformers_models() -> list[ZooModel]:
    """GPT-2, BERT, a small Llama, T5 (encoder-decoder) and ViT, on the meta device."""

    def meta(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        return lambda: on_meta(make)

    return [
        ZooModel("transformers:gpt2", meta(gpt2), (TOKENS,)),
        ZooModel("transformers:bert", meta(bert), (TOKENS,)),
        ZooModel("transformers:llama", meta(llama), (TOKENS,)),
        ZooModel("transformers:t5", meta(t5), (TOKENS,), {"decoder_input_ids": DECODER_TOKENS}),
        ZooModel("transformers:vit", meta(vit)),
    ]


def zoo() -> list[ZooModel]:
    """The whole zoo, torchvision classification first."""
    return (
        torchvision_classification() + other_models() + detection_models()
        + transformers_models()
    )  # fmt: skip
