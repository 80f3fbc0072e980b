"""The numbers of docs/training.md: flopgraph's exact training step against the rules of thumb.

    python scripts/training_table.py            # prints the Markdown tables (a few minutes)

Models are built on the meta device from configs (no weights): GPT-2 small (12 layers,
hidden 768, 12 heads, vocabulary 50257) and a Llama-2-7B shape (32 layers, hidden 4096,
32 heads, intermediate 11008, vocabulary 32000), batch 1, in training mode. For each:

- flopgraph: ``analyze(training=True)``, forward + backward (model FLOPs), and the
  AdamW step separately;
- 3 x forward: three times flopgraph's own forward count;
- 6N: 6 x parameters (embeddings included) x tokens;
- PaLM: tokens x (6N + 12 L H Q T), appendix B of the PaLM paper (L layers, H heads,
  Q head dim, T sequence length);
- Megatron: 72 B s l h^2 (1 + s / 6h + V / 12lh), the Megatron-LM paper's count of a
  GPT step without recomputation (96 ... V / 16lh with full recomputation).
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import flopgraph  # noqa: E402


def gpt2(t: int):  # type: ignore[no-untyped-def]
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=max(t, 1024)))


def llama7b(t: int):  # type: ignore[no-untyped-def]
    config = transformers.LlamaConfig(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
        intermediate_size=11008, vocab_size=32000, use_cache=False,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def shape(model) -> tuple[int, int, int, int, int]:  # type: ignore[no-untyped-def]
    c = model.config
    layers = getattr(c, "n_layer", None) or c.num_hidden_layers
    hidden = getattr(c, "n_embd", None) or c.hidden_size
    heads = getattr(c, "n_head", None) or c.num_attention_heads
    return layers, hidden, heads, hidden // heads, c.vocab_size


def step(model, t: int, **kw):  # type: ignore[no-untyped-def]
    ids = torch.zeros(1, t, dtype=torch.long, device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flopgraph.analyze(
            model, kwargs={"input_ids": ids, "labels": ids}, training=True, **kw
        )


def rules_of_thumb(model, t: int, forward: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    layers, h, heads, q, v = shape(model)
    n = sum(p.numel() for p in model.parameters())
    return {
        "3 x forward": 3 * forward,
        "6N": 6 * n * t,
        "PaLM 6N + 12LHQT": t * (6 * n + 12 * layers * heads * q * t),
        "Megatron": 72 * t * layers * h * h + 12 * t * t * layers * h + 6 * t * h * v,
    }


def g(x: int) -> str:
    return f"{x / 1e9:,.1f}"


def table(name: str, build, lengths: list[int]) -> None:  # type: ignore[no-untyped-def]
    print(f"\n### {name}\n")
    print("| tokens | flopgraph fwd + bwd | AdamW step | 3 x forward | 6N | PaLM | Megatron |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for t in lengths:
        with torch.device("meta"):
            model = build(t).train()
        r = step(model, t, optimizer="adamw")
        phases = r.by_phase()
        exact = phases["forward"].flops + phases["backward"].flops
        guess = rules_of_thumb(model, t, phases["forward"].flops)
        cells = [g(exact), g(phases["optimizer"].flops)] + [
            f"{g(v)} ({(v - exact) / exact:+.1%})" for v in guess.values()
        ]
        print(f"| {t:,} | " + " | ".join(cells) + " |")


def fine_tuning(lengths: list[int]) -> None:
    print("\n### GPT-2 small: full, frozen backbone, LoRA, checkpointing (GFLOPs)\n")
    print("| tokens | full | last layer + head trainable | LoRA r=8 on c_attn | "
          "checkpointing: model / hardware |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    for t in lengths:
        with torch.device("meta"):
            full = gpt2(t).train()
        frozen = gpt2(t).to("meta").train()
        frozen.requires_grad_(False)
        frozen.transformer.h[-1].requires_grad_(True)
        frozen.transformer.ln_f.requires_grad_(True)
        row = [step(full, t).flops, step(frozen, t).flops]
        try:
            import peft

            lora = peft.get_peft_model(
                gpt2(t).to("meta"),
                peft.LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True),
            ).train()
            row.append(step(lora, t).flops)
        except ModuleNotFoundError:
            row.append(0)
        ckpt = gpt2(t).to("meta").train()
        ckpt.gradient_checkpointing_enable()
        r = step(ckpt, t)
        cells = [g(x) for x in row] + [f"{g(r.model_flops)} / {g(r.hardware_flops)}"]
        print(f"| {t:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    table("GPT-2 small (124M), batch 1 (GFLOPs; rule of thumb vs exact)", gpt2, [256, 1024])
    table("Llama-2-7B shape, batch 1 (GFLOPs)", llama7b, [512, 2048])
    fine_tuning([256, 1024])
