"""Training steps on the wide zoo's models: complete, and the torch preset exact.

    python scripts/training_zoo.py --json training-zoo.json [--only KEY ...] [--limit N]

For each model of scripts/wide_zoo_catalog.py (the same builds: random weights,
small transformers configs; inputs of batch 1 doubled to 2, as batch norm in
training mode needs), in a child process, in training mode:
- flopgraph's default training step (forward, loss, backward, AdamW step): does it
  finish, which ops are skipped;
- ``convention="torch"`` against FlopCounterMode around a real CPU forward and
  ``loss.backward()`` (the math attention kernel on both sides: FlopCounterMode has
  no formula for the fused CPU kernels).
The loss is the model's ``.loss`` when it has one, else the sum of its output's
logits or first floating tensor (as ``--loss sum`` on the command line).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

SAMPLE = [
    "torchvision:resnet18", "torchvision:mobilenet_v3_small", "torchvision:vit_b_16",
    "torchvision:convnext_tiny", "torchvision:efficientnet_b0", "torchvision:swin_t",
    "torchvision:densenet121", "torchvision:regnet_y_400mf", "torchvision:maxvit_t",
    "timm:resnet50", "timm:vit_small_patch16_224", "timm:convnext_atto",
    "timm:deit_tiny_patch16_224",
    "timm:efficientnet_b0", "timm:mobilevitv2_050", "timm:levit_128s", "timm:coat_tiny",
    "transformers:bert", "transformers:gpt2", "transformers:llama", "transformers:t5",
    "transformers:mistral", "transformers:qwen2", "transformers:mixtral", "transformers:qwen3_moe",
    "transformers:vit", "transformers:whisper", "transformers:wav2vec2", "transformers:swin",
    "transformers:gemma2", "transformers:deepseek_v3", "transformers:bart", "transformers:clip",
    "diffusers:UNet2DConditionModel", "diffusers:AutoencoderKL", "smp:Unet", "open_clip:RN50",
]  # fmt: skip


def _loss(out: Any) -> Any:
    import torch

    loss = getattr(out, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    from flopgraph.cli import _first_tensor

    return _first_tensor(out).float().sum()


def _doubled(value: Any) -> Any:
    import torch
    from torch.utils._pytree import tree_map

    def twice(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == 1:
            return torch.cat([t, t])
        return t

    return tree_map(twice, value)


def one(key: str, queue: Any) -> None:
    warnings.simplefilter("ignore")
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    from wide_zoo_catalog import build

    import flopgraph

    torch.set_num_threads(1)
    out: dict[str, Any] = {"key": key}
    try:
        model, args, kwargs = build(key)
        model.train()
        # batch 2: batch norm in training mode needs more than one value per channel
        args, kwargs = _doubled(args), _doubled(kwargs)
        start = time.perf_counter()
        r = flopgraph.analyze(
            model, args, kwargs=kwargs, training=True, loss=_loss, optimizer="adamw"
        )
        out["seconds"] = round(time.perf_counter() - start, 2)
        out["phases"] = {p: c.flops for p, c in r.by_phase().items()}
        out["skipped"] = {k: v.count for k, v in r.skipped.items()}
        with sdpa_kernel(SDPBackend.MATH):
            torch.manual_seed(0)
            preset = flopgraph.analyze(
                model, args, kwargs=kwargs, training=True, loss=_loss, convention="torch"
            )
            torch.manual_seed(0)
            with FlopCounterMode(display=False) as fc:
                _loss(model(*args, **kwargs)).backward()
        out["torch"], out["reference"] = preset.flops, fc.get_total_flops()
        exact = preset.flops == fc.get_total_flops()
        out["status"] = ("exact" if exact else "differs") if not out["skipped"] else "skipped"
    except Exception as e:
        out["status"] = "failed"
        out["error"] = f"{type(e).__name__}: {str(e)[:400]}"
        out["where"] = traceback.format_exc()[-600:]
    queue.put(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="training-zoo.json")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    keys = a.only or SAMPLE
    results = {}
    ctx = mp.get_context("spawn")
    for i, key in enumerate(keys, 1):
        queue = ctx.Queue()
        proc = ctx.Process(target=one, args=(key, queue))
        proc.start()
        proc.join(a.timeout)
        if proc.is_alive():
            proc.kill()
            res = {"key": key, "status": "timeout"}
        else:
            res = queue.get() if not queue.empty() else {"key": key, "status": "crashed"}
        results[key] = res
        extra = res.get("error", "") or (f"skipped {res['skipped']}" if res.get("skipped") else "")
        print(f"[{i}/{len(keys)}] {key:42s} {res['status']:8s} {extra[:150]}", flush=True)
        Path(a.json).write_text(json.dumps(results, indent=1))
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(counts)


if __name__ == "__main__":
    main()
