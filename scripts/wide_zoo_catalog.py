"""The wide zoo's models: names (cheap to list) and builders (run in a worker).

Every entry is ``family:name``. ``entries(family)`` lists them without building
anything; ``build(key)`` returns ``(model, args, kwargs)`` with real CPU inputs.
Nothing is downloaded: torchvision ``weights=None``, timm ``pretrained=False``,
transformers from config objects, smp ``encoder_weights=None``, open_clip
``pretrained=None``.

timm: one model per timm *family*, a family being the module that registers it
(``timm.list_modules()``). The smallest variant is chosen from its name alone,
by this key, smallest first (see ``timm_pick``):

1. names starting with ``test_`` (timm's unit-test toys) come last;
2. a default input resolution above 256 (``pretrained_cfg.input_size``) comes later;
3. the smallest size word among the name's ``_``-separated tokens
   (atto < femto < pico < nano < micro < tiny/xxs < xs/mini < small/lite <
   medium < base < large < xl < xxl < huge < giant; a name with none ranks as medium);
   (a token that is a size letter and a number, ``s12``, ``l1``, ``b0``, ranks as
   t=tiny, s=small, m=medium, b=base, l=large, h=huge, g=giant);
4. the first number in the name (depth or width: resnet18 < resnet50, b0 < b3);
5. the shorter name, then the alphabetically first.

transformers: configs from ``AutoConfig.for_model(model_type)``, shrunk by
``shrink`` (layers 2, hidden 64, heads 4, kv heads 2, intermediate 64, vocab 128,
4 experts of which 2 per token, hierarchical vision stages 1 block each with
widths 16, 32, 64, ... and heads 1, 2, 4, ...), with a few per-model overrides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

FAMILIES = ("torchvision", "timm", "transformers", "diffusers", "smp", "open_clip")

Built = tuple[nn.Module, tuple[Any, ...], dict[str, Any]]

# ---------------------------------------------------------------------------- torchvision


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models())


def _tv_module(name: str) -> str:
    import torchvision.models as tvm

    for sub in ("quantization", "detection", "video", "optical_flow", "segmentation"):
        if name in tvm.list_models(module=getattr(tvm, sub)):
            return sub
    return "classification"


def _image(h: int, w: int | None = None, b: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, h, w or h)


def build_torchvision(name: str) -> Built:
    import torchvision.models as tvm

    kind = _tv_module(name)
    if kind == "quantization":
        engines = torch.backends.quantized.supported_engines
        torch.backends.quantized.engine = "x86" if "x86" in engines else "fbgemm"
        model = tvm.get_model(name, weights=None, quantize=True)
        size = 299 if "inception" in name else 224
        return model, (_image(size),), {}
    if kind == "detection":
        # the transform resizes to min_size..max_size: keep it small (320) for a CPU run
        extra: dict[str, Any] = {} if name.startswith("ssd") else {"min_size": 320, "max_size": 320}
        model = tvm.get_model(name, weights=None, weights_backbone=None, **extra)
        size = 300 if name.startswith("ssd300") else 320
        return model, ([_image(size)[0]],), {}
    if kind == "segmentation":
        model = tvm.get_model(name, weights=None, weights_backbone=None)
        return model, (_image(224),), {}
    if kind == "video":
        model = tvm.get_model(name, weights=None)
        size = 112 if name in ("r3d_18", "mc3_18", "r2plus1d_18") else 224
        frames = 16
        return model, (torch.randn(1, 3, frames, size, size),), {}
    if kind == "optical_flow":
        model = tvm.get_model(name, weights=None)
        return model, (_image(128), _image(128)), {"num_flow_updates": 4}
    model = tvm.get_model(name, weights=None)
    size = 299 if name == "inception_v3" else 224
    if name.startswith("vit_h_14"):
        size = 224
    return model, (_image(size),), {}


# ---------------------------------------------------------------------------- timm

SIZE_WORDS = {
    "atto": 0, "femto": 1, "pico": 2, "nano": 3, "micro": 4, "tiny": 5, "xxs": 5,
    "xs": 6, "mini": 6, "small": 7, "lite": 7, "medium": 8, "base": 9, "large": 10,
    "xl": 11, "xxl": 12, "huge": 13, "giant": 14, "gigantic": 15,
}  # fmt: skip


def _timm_res(name: str) -> int:
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # a name with no default cfg: assume the usual 224
        return 224
    size = getattr(cfg, "input_size", None) if cfg else None
    return max(size[1:]) if size else 224


LETTERS = {"t": 5, "s": 7, "m": 8, "b": 9, "l": 10, "h": 13, "g": 14}


def _size(token: str) -> int:
    """A size word (``tiny``), or a size letter with a number (``s12``, ``l``)."""
    if token in SIZE_WORDS:
        return SIZE_WORDS[token]
    m = re.fullmatch(r"([a-z]+)\d*", token)
    if m and m.group(1) in SIZE_WORDS:
        return SIZE_WORDS[m.group(1)]
    if m and m.group(1) in LETTERS:
        return LETTERS[m.group(1)]
    return SIZE_WORDS["medium"]


def timm_key(name: str) -> tuple[Any, ...]:
    tokens = re.split(r"[_.]", name)
    size = min((_size(t) for t in tokens), default=SIZE_WORDS["medium"])
    numbers = re.findall(r"\d+", name)
    first = int(numbers[0]) if numbers else 0
    return (name.startswith("test_"), _timm_res(name) > 256, size, first, len(name), name)


def timm_pick(family: str) -> str:
    import timm

    return min(timm.list_models(module=family), key=timm_key)


def _timm_names() -> list[str]:
    import timm

    return sorted(timm_pick(m) for m in timm.list_modules() if timm.list_models(module=m))


def build_timm(name: str) -> Built:
    import timm

    model = timm.create_model(name, pretrained=False)
    size = tuple(model.pretrained_cfg.get("input_size") or (3, 224, 224))
    return model, (torch.randn(1, *size),), {}


# ---------------------------------------------------------------------------- transformers

LAYERS = (
    "num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers",
    "decoder_layers", "num_encoder_layers", "num_decoder_layers", "num_hidden_groups",
)  # fmt: skip
HIDDEN = ("hidden_size", "d_model", "n_embd", "embed_dim", "word_embed_proj_dim", "projection_size")
HEADS = (
    "num_attention_heads", "n_head", "n_heads", "encoder_attention_heads",
    "decoder_attention_heads", "num_heads",
)  # fmt: skip
KV_HEADS = ("num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num")
FFN = (
    "intermediate_size", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "d_ff", "n_inner",
    "moe_intermediate_size", "shared_expert_intermediate_size", "decoder_hidden_size",
    "d_kv_ff", "expert_intermediate_size", "mlp_dim",
)  # fmt: skip
EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts")
TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
             "sep_token_id", "cls_token_id", "mask_token_id", "unk_token_id")  # fmt: skip
HIDDEN_SIZE, N_HEADS, VOCAB = 64, 4, 128


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def shrink(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict made tiny in place of its real sizes, keeping divisibility."""
    out = dict(d)
    for k, v in d.items():
        if isinstance(v, dict) and (k.endswith("_config") or k in ("encoder", "decoder")):
            out[k] = shrink(v)
    # lists derived from the layer count: the config recomputes them
    for k in (
        "layer_types",
        "attention_layers",
        "out_features",
        "out_indices",
        "stage_names",
        "_out_features",
        "_out_indices",
    ):
        out.pop(k, None)
    for k in LAYERS:
        if _int(out.get(k)) and out[k] > 2:
            out[k] = 2
    for k in HIDDEN:
        if _int(out.get(k)) and out[k] > HIDDEN_SIZE:
            out[k] = HIDDEN_SIZE
    for k in HEADS:
        if _int(out.get(k)) and out[k] > N_HEADS:
            out[k] = N_HEADS
    for k in KV_HEADS:
        if _int(out.get(k)) and out[k] > 2:
            out[k] = 2
    for k in FFN:
        if _int(out.get(k)) and out[k] > HIDDEN_SIZE:
            out[k] = HIDDEN_SIZE
    if _int(out.get("head_dim")):
        out["head_dim"] = HIDDEN_SIZE // N_HEADS
    for k in EXPERTS:
        if _int(out.get(k)) and out[k] > 4:
            out[k] = 4
    if _int(out.get("num_experts_per_tok")) and out["num_experts_per_tok"] > 2:
        out["num_experts_per_tok"] = 2
    if _int(out.get("vocab_size")) and out["vocab_size"] > VOCAB:
        out["vocab_size"] = VOCAB
        for k in TOKEN_IDS:
            if _int(out.get(k)) and out[k] >= VOCAB:
                out[k] = VOCAB - 1 - TOKEN_IDS.index(k)
    if _int(out.get("max_position_embeddings")) and out["max_position_embeddings"] > 512:
        out["max_position_embeddings"] = 512
    # hierarchical vision stages: one block each, widths 16, 32, ..., heads 1, 2, ...
    for k in ("depths", "num_blocks", "block_sizes"):
        if isinstance(out.get(k), list) and all(_int(x) for x in out[k]):
            out[k] = [1] * len(out[k])
    for k in ("hidden_sizes", "embed_dims", "dims"):
        if isinstance(out.get(k), list) and all(_int(x) for x in out[k]):
            out[k] = [16 * 2**i for i in range(len(out[k]))]
    for k in ("num_heads", "num_attention_heads"):
        if isinstance(out.get(k), list) and all(_int(x) for x in out[k]):
            out[k] = [2**i for i in range(len(out[k]))]
    if _int(out.get("image_size")) and out["image_size"] > 64:
        out["image_size"] = 64
    return out


# kind -> how its inputs look; see _hf_inputs
HF: dict[str, tuple[str, str, dict[str, Any]]] = {
    # decoder LLMs
    "gpt2": ("AutoModelForCausalLM", "text", {}),
    "gpt_neo": ("AutoModelForCausalLM", "text", {"attention_types": [[["global", "local"], 1]]}),
    "gptj": ("AutoModelForCausalLM", "text", {"rotary_dim": 8}),
    "gpt_neox": ("AutoModelForCausalLM", "text", {}),
    "gpt_bigcode": ("AutoModelForCausalLM", "text", {}),
    "opt": ("AutoModelForCausalLM", "text", {}),
    "bloom": ("AutoModelForCausalLM", "text", {}),
    "falcon": ("AutoModelForCausalLM", "text", {}),
    "llama": ("AutoModelForCausalLM", "text", {}),
    "mistral": ("AutoModelForCausalLM", "text", {}),
    "qwen2": ("AutoModelForCausalLM", "text", {}),
    "qwen3": ("AutoModelForCausalLM", "text", {}),
    "gemma": ("AutoModelForCausalLM", "text", {}),
    "gemma2": ("AutoModelForCausalLM", "text", {}),
    "phi": ("AutoModelForCausalLM", "text", {}),
    "phi3": ("AutoModelForCausalLM", "text", {}),
    "stablelm": ("AutoModelForCausalLM", "text", {}),
    "starcoder2": ("AutoModelForCausalLM", "text", {}),
    "codegen": ("AutoModelForCausalLM", "text", {"rotary_dim": 8}),
    "olmo": ("AutoModelForCausalLM", "text", {}),
    "olmo2": ("AutoModelForCausalLM", "text", {}),
    "cohere": ("AutoModelForCausalLM", "text", {}),
    "granite": ("AutoModelForCausalLM", "text", {}),
    "mamba": ("AutoModelForCausalLM", "text", {}),
    # mixture of experts
    "mixtral": ("AutoModelForCausalLM", "text", {}),
    "qwen2_moe": ("AutoModelForCausalLM", "text", {}),
    "qwen3_moe": ("AutoModelForCausalLM", "text", {}),
    "olmoe": ("AutoModelForCausalLM", "text", {}),
    "granitemoe": ("AutoModelForCausalLM", "text", {}),
    "deepseek_v3": (
        "AutoModelForCausalLM",
        "text",
        {
            "q_lora_rank": 16,
            "kv_lora_rank": 16,
            "qk_rope_head_dim": 8,
            "qk_nope_head_dim": 8,
            "v_head_dim": 16,
            "head_dim": 8,
            "first_k_dense_replace": 1,
            "n_group": 2,
            "topk_group": 1,
        },
    ),
    "jamba": (
        "AutoModelForCausalLM",
        "text",
        {
            "attn_layer_period": 2,
            "attn_layer_offset": 1,
            "expert_layer_period": 2,
            "expert_layer_offset": 1,
            "use_mamba_kernels": False,
        },
    ),
    # encoders
    "bert": ("AutoModel", "text", {}),
    "roberta": ("AutoModel", "text", {}),
    "distilbert": ("AutoModel", "text", {}),
    "albert": ("AutoModel", "text", {"embedding_size": 32}),
    "electra": ("AutoModel", "text", {"embedding_size": 32}),
    "deberta": ("AutoModel", "text", {}),
    "deberta-v2": ("AutoModel", "text", {}),
    "xlm-roberta": ("AutoModel", "text", {}),
    "mpnet": ("AutoModel", "text", {}),
    "modernbert": ("AutoModel", "text", {}),
    "nystromformer": ("AutoModel", "text", {"num_landmarks": 4, "segment_means_seq_len": 16}),
    "fnet": ("AutoModel", "text", {}),
    "funnel": ("FunnelModel", "text", {"num_decoder_layers": 1, "d_head": 16}),
    # encoder-decoders
    "t5": ("AutoModel", "seq2seq", {"d_kv": 16}),
    "mt5": ("AutoModel", "seq2seq", {"d_kv": 16}),
    "bart": ("AutoModel", "seq2seq", {}),
    "mbart": ("AutoModel", "seq2seq", {}),
    "pegasus": ("AutoModel", "seq2seq", {}),
    "marian": ("AutoModel", "seq2seq", {"decoder_vocab_size": VOCAB}),
    "m2m_100": ("AutoModel", "seq2seq", {}),
    "blenderbot": ("AutoModel", "seq2seq", {}),
    "switch_transformers": (
        "AutoModel",
        "seq2seq",
        {"d_kv": 16, "num_sparse_encoder_layers": 1, "num_sparse_decoder_layers": 1},
    ),
    "nllb-moe": ("AutoModel", "seq2seq", {}),
    # vision
    "vit": ("AutoModel", "image", {}),
    "deit": ("AutoModel", "image", {}),
    "beit": ("AutoModel", "image", {}),
    "dinov2": ("AutoModel", "image", {}),
    # a window larger than a late stage's map breaks transformers' Swin: keep 224
    "swin": ("AutoModel", "image", {"embed_dim": 16, "image_size": 224}),
    "swinv2": ("AutoModel", "image", {"embed_dim": 16, "window_size": 4}),
    "convnext": ("AutoModel", "image", {}),
    "convnextv2": ("AutoModel", "image", {}),
    "resnet": ("AutoModel", "image", {"embedding_size": 16}),
    "regnet": ("AutoModel", "image", {}),
    "mobilevit": ("AutoModel", "image", {}),
    "levit": ("AutoModel", "image", {}),
    "poolformer": ("AutoModel", "image", {}),
    "segformer": ("AutoModelForSemanticSegmentation", "image", {}),
    "dpt": (
        "AutoModelForDepthEstimation",
        "image",
        {
            "neck_hidden_sizes": [16, 32, 64, 64],
            "fusion_hidden_size": 32,
            "backbone_out_indices": [0, 1, 2, 3],
            "num_hidden_layers": 4,
        },
    ),
    "upernet": (
        "AutoModelForSemanticSegmentation",
        "image",
        {
            "backbone_config": {
                "model_type": "convnext",
                "hidden_sizes": [16, 32, 64, 128],
                "depths": [1, 1, 1, 1],
                "out_features": ["stage1", "stage2", "stage3", "stage4"],
            },
            "hidden_size": 32,
            "auxiliary_channels": 16,
        },
    ),
    # audio
    "wav2vec2": ("AutoModel", "audio", {}),
    "hubert": ("AutoModel", "audio", {}),
    "wavlm": ("AutoModel", "audio", {}),
    "data2vec-audio": ("AutoModel", "audio", {}),
    "whisper": ("AutoModel", "whisper", {"max_source_positions": 32, "num_mel_bins": 16}),
    "speech_to_text": ("AutoModel", "speech2text", {}),
    "encodec": ("AutoModel", "codec", {"codebook_dim": HIDDEN_SIZE}),
    # multimodal
    "clip": ("AutoModel", "clip", {}),
    "siglip": ("AutoModel", "clip", {}),
    "llava": ("AutoModelForImageTextToText", "llava", {}),
}


def _hf_config(model_type: str) -> Any:
    from transformers import AutoConfig

    _cls, _kind, over = HF[model_type]
    base = AutoConfig.for_model(model_type)
    if model_type == "llava":
        d = {
            "text_config": shrink(AutoConfig.for_model("llama").to_dict()),
            "vision_config": shrink(AutoConfig.for_model("clip_vision_model").to_dict()),
            "image_token_id": VOCAB - 8,
            "vision_feature_layer": -1,
        }
        d["vision_config"]["image_size"] = 32
        d["vision_config"]["patch_size"] = 8
        return AutoConfig.for_model("llava", **d)
    d = shrink(base.to_dict())
    for k, v in over.items():
        d[k] = shrink(v) if isinstance(v, dict) and k.endswith("_config") else v
    d.pop("model_type", None)
    d.pop("transformers_version", None)
    if d.get("backbone_config") and isinstance(d["backbone_config"], dict):
        from transformers import CONFIG_MAPPING

        bc = dict(d["backbone_config"])
        d["backbone_config"] = CONFIG_MAPPING[bc.pop("model_type")](**bc)
    return AutoConfig.for_model(model_type, **d)


def _hf_inputs(kind: str, cfg: Any) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    vocab = getattr(cfg, "vocab_size", None) or getattr(cfg.get_text_config(), "vocab_size", VOCAB)
    ids = torch.randint(0, min(vocab, VOCAB) - 10, (1, 16), generator=g)
    if kind == "text":
        return {"input_ids": ids}
    if kind == "seq2seq":
        return {"input_ids": ids, "decoder_input_ids": ids[:, :8]}
    if kind == "image":
        size = getattr(cfg, "image_size", 64)
        size = size if _int(size) else 64
        return {"pixel_values": torch.randn(1, getattr(cfg, "num_channels", 3), size, size)}
    if kind == "audio":
        return {"input_values": torch.randn(1, 4000)}
    if kind == "whisper":
        return {
            "input_features": torch.randn(1, cfg.num_mel_bins, 2 * cfg.max_source_positions),
            "decoder_input_ids": ids[:, :8],
        }
    if kind == "speech2text":
        feats = cfg.input_feat_per_channel * cfg.input_channels
        return {"input_features": torch.randn(1, 64, feats), "decoder_input_ids": ids[:, :8]}
    if kind == "codec":
        return {"input_values": torch.randn(1, cfg.audio_channels, 2400)}
    if kind == "clip":
        vc = cfg.vision_config
        return {"input_ids": ids, "pixel_values": torch.randn(1, 3, vc.image_size, vc.image_size)}
    if kind == "llava":
        vc = cfg.vision_config
        n_img = (vc.image_size // vc.patch_size) ** 2
        img = torch.full((1, n_img), cfg.image_token_id)
        return {
            "input_ids": torch.cat([ids[:, :4], img, ids[:, 4:]], dim=1),
            "pixel_values": torch.randn(1, 3, vc.image_size, vc.image_size),
        }
    raise ValueError(kind)


def build_transformers(model_type: str) -> Built:
    import transformers

    cls_name, kind, _ = HF[model_type]
    cfg = _hf_config(model_type)
    torch.manual_seed(0)
    cls = getattr(transformers, cls_name)
    model = cls.from_config(cfg) if cls_name.startswith("Auto") else cls(cfg)
    return model, (), _hf_inputs(kind, model.config)


# ---------------------------------------------------------------------------- the rest


def build_diffusers(name: str) -> Built:
    import diffusers

    torch.manual_seed(0)
    if name == "UNet2DConditionModel":
        model = diffusers.UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        )  # fmt: skip
        args = (torch.randn(1, 4, 16, 16), torch.tensor([10]), torch.randn(1, 8, 32))
        return model, args, {}
    if name == "DiTTransformer2DModel":
        model = diffusers.DiTTransformer2DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
            num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=1000,
        )  # fmt: skip
        return (
            model,
            (torch.randn(1, 4, 8, 8),),
            {"timestep": torch.tensor([10]), "class_labels": torch.tensor([1])},
        )
    if name == "AutoencoderKL":
        model = diffusers.AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1, sample_size=32,
        )  # fmt: skip
        return model, (torch.randn(1, 3, 32, 32),), {}
    raise KeyError(name)


def build_smp(name: str) -> Built:
    import segmentation_models_pytorch as smp

    model = getattr(smp, name)(encoder_name="resnet18", encoder_weights=None, classes=2)
    return model, (_image(128),), {}


def build_open_clip(name: str) -> Built:
    import open_clip

    model = open_clip.create_model(name, pretrained=None)
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    text = torch.randint(0, 1000, (1, model.context_length))
    return model, (_image(size), text), {}


OTHER = {
    "diffusers": ["UNet2DConditionModel", "DiTTransformer2DModel", "AutoencoderKL"],
    "smp": ["Unet", "FPN", "DeepLabV3"],
    "open_clip": ["RN50", "ViT-B-32"],
}

BUILDERS: dict[str, Callable[[str], Built]] = {
    "torchvision": build_torchvision,
    "timm": build_timm,
    "transformers": build_transformers,
    "diffusers": build_diffusers,
    "smp": build_smp,
    "open_clip": build_open_clip,
}


def entries(family: str) -> list[str]:
    """The ``family:name`` keys of one family, without building any model."""
    if family == "torchvision":
        names = _torchvision_names()
    elif family == "timm":
        names = _timm_names()
    elif family == "transformers":
        names = list(HF)
    else:
        names = OTHER[family]
    return [f"{family}:{n}" for n in names]


def build(key: str) -> Built:
    family, name = key.split(":", 1)
    model, args, kwargs = BUILDERS[family](name)
    return model.eval(), args, kwargs
