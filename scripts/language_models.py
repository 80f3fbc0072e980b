"""The tables of docs/language-models.md: total and active parameters, FLOPs per token
of prefill and decode at 4k / 32k / 128k context, attention's share, against 2N.

Every model is built from its published shape on the meta device (no weights, no
download) and counted with flopgraph.generation() on fake tensors.

    HF_HUB_OFFLINE=1 python scripts/language_models.py [--only NAME] [--contexts 4096,32768]
    HF_HUB_OFFLINE=1 python scripts/language_models.py --bench forward|decode [--only NAME]

``--bench`` times one analysis in this (fresh) process instead: ``forward``, the
model at 1 x 4096 with ``analyze``; ``decode``, one decode step at 128k context (the
trace of the 131,072-token prefill that fills the cache, then the step), with the
peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

import flopgraph


def _shapes() -> dict[str, Callable[[], Any]]:
    import transformers as t

    llama3 = dict(vocab_size=128256, rope_theta=500000.0, max_position_embeddings=131072)
    return {
        "Llama-3-8B": lambda: t.LlamaConfig(
            hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=8, **llama3),
        "Llama-3-70B": lambda: t.LlamaConfig(
            hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
            num_attention_heads=64, num_key_value_heads=8, **llama3),
        "Mixtral-8x7B": lambda: t.MixtralConfig(max_position_embeddings=131072),
        "Qwen3-30B-A3B": lambda: t.Qwen3MoeConfig(
            hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
            num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
            num_experts=128, num_experts_per_tok=8, vocab_size=151936,
            max_position_embeddings=131072),
        "DeepSeek-V3": lambda: t.DeepseekV3Config(max_position_embeddings=163840),
    }  # fmt: skip


def attention_share(report: flopgraph.Report) -> float:
    ops = report.by_operator()
    attn = sum(c.flops for op, c in ops.items() if "attention" in op)
    return attn / report.flops


def bench(what: str, name: str) -> None:
    import transformers

    from flopgraph.generation import _cache_argument, _Steps

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(_shapes()[name]()).eval()
    built = time.perf_counter() - start
    start = time.perf_counter()
    if what == "forward":
        report = flopgraph.analyze(model, flopgraph.TensorSpec((1, 4096), torch.int64))
        seconds = time.perf_counter() - start
        print(
            f"{name} forward 1x4096: {seconds:.2f} s, {report.flops:,} FLOPs, "
            f"{len(report.skipped)} skipped",
            end="",
        )
    else:
        steps = _Steps(model, _cache_argument(model), 1, "default")
        _, step, nbytes = steps.at(131072)
        seconds = time.perf_counter() - start
        print(
            f"{name} decode step at c = 131,072: {seconds:.2f} s, {step.flops:,} FLOPs, "
            f"{len(step.skipped)} skipped, cache {nbytes:,} B",
            end="",
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"; model built in {built:.1f} s; peak RSS {rss:.0f} MB")


def main() -> None:
    import transformers

    p = argparse.ArgumentParser()
    p.add_argument("--only")
    p.add_argument("--contexts", default="4096,32768,131072")
    p.add_argument("--bench", choices=("forward", "decode"))
    ns = p.parse_args()
    if ns.bench:
        bench(ns.bench, ns.only or "DeepSeek-V3")
        return
    contexts = [int(x) for x in ns.contexts.split(",")]
    warnings.simplefilter("ignore")
    for name, make in _shapes().items():
        if ns.only and ns.only != name:
            continue
        torch.set_default_dtype(torch.bfloat16)  # served in bf16: the cache is 2 bytes
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(make()).eval()
        torch.set_default_dtype(torch.float32)
        for ctx in contexts:
            start = time.perf_counter()
            g = flopgraph.generation(model, prompt=ctx, new_tokens=1)
            seconds = time.perf_counter() - start
            n, active = g.prefill.params.total, g.prefill.params.active or 0
            # the input embedding is a lookup: 2N counts it, a forward does not
            prefill_per_token = g.prefill.flops / ctx
            decode = g.formula(ctx)
            print(
                f"| {name} | {ctx:,} | {n / 1e9:.2f}B | {active / 1e9:.2f}B "
                f"| {prefill_per_token / 1e9:.1f} | {decode.flops / 1e9:.1f} "
                f"| {attention_share(g.prefill):.0%} | {attention_share(g.decode(ctx)):.0%} "
                f"| {2 * active / 1e9:.1f} | {g.kv_cache_bytes(ctx) / 2**30:.2f} GiB "
                f"| {seconds:.1f} s |",
                flush=True,
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
