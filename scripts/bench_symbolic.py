"""Symbolic against concrete analysis time: resnet50 in (B, H, W), GPT-2 and the
Llama-2-70B shape in (B, T), each in this process after one warm-up of both.

    HF_HUB_OFFLINE=1 python scripts/bench_symbolic.py
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

import flopgraph
from flopgraph import TensorSpec


def _best(fn: Callable[[], Any], n: int = 3) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import torchvision
    import transformers

    warnings.simplefilter("ignore")
    with torch.device("meta"):
        gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
        llama = transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                hidden_size=8192,
                intermediate_size=28672,
                num_hidden_layers=80,
                num_attention_heads=64,
                num_key_value_heads=8,
                vocab_size=32000,
            )  # fmt: skip
        ).eval()
    cases = [
        ("resnet50", torchvision.models.resnet50().eval(), (1, 3, 224, 224), ("B", 3, "H", "W"),
         torch.float32),
        ("GPT-2", gpt2, (1, 1024), ("B", "T"), torch.int64),
        ("Llama-2-70B shape", llama, (1, 4096), ("B", "T"), torch.int64),
    ]  # fmt: skip
    print("| model | concrete | symbolic | ratio | formula (FLOPs) |")
    print("|---|---|---|---|---|")
    for name, model, shape, names, dtype in cases:
        concrete = TensorSpec(shape, dtype)
        symbolic = TensorSpec(names, dtype)
        flopgraph.analyze(model, concrete, frontend="aten")
        report = flopgraph.analyze(model, symbolic)
        c = _best(lambda m=model, s=concrete: flopgraph.analyze(m, s, frontend="aten"))
        s = _best(lambda m=model, s=symbolic: flopgraph.analyze(m, s))
        text = flopgraph.symbolic.formula_text(report.flops)
        print(f"| {name} | {c:.2f} s | {s:.2f} s | {s / c:.1f}x | {text[:70]} |", flush=True)


if __name__ == "__main__":
    main()
