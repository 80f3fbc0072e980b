"""A training step on a real GPU (run where one is lent; not in CI).

On ``cuda``, for GPT-2 small, a small Llama (from configs, random weights) and
torchvision's resnet50:
- ``convention="torch"`` with ``training=True`` equals FlopCounterMode around a real
  CUDA forward and ``loss.backward()`` (the fused CUDA attention kernels included);
- the default count of the step equals the same model's count on the CPU, except for
  the attention kernels, which the device chooses (the script reports both);
- the model, its ``.grad`` and an optimizer the user holds come back untouched;
- a real AdamW step is timed (median of 5 after 3 warm-ups) and its MFU and HFU
  computed from flopgraph's exact count against the device's peak.

Usage: ``python scripts/gpu_train_check.py [--json PATH]``; exits non-zero on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import flopgraph


def models() -> dict[str, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    def lm(model: torch.nn.Module, batch: int, tokens: int) -> tuple[Any, dict[str, Any]]:
        ids = torch.randint(0, 1000, (batch, tokens), device="cuda")
        return model, {"input_ids": ids, "labels": ids}

    def resnet() -> tuple[Any, dict[str, Any]]:
        import torchvision

        return torchvision.models.resnet50(), {"x": torch.randn(32, 3, 224, 224, device="cuda")}

    return {
        "gpt2": lambda: lm(GPT2LMHeadModel(GPT2Config(attn_pdrop=0.0, resid_pdrop=0.0,
                                                      embd_pdrop=0.0)), 8, 1024),
        "llama": lambda: lm(LlamaForCausalLM(LlamaConfig(
            hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
            num_attention_heads=16, num_key_value_heads=4, vocab_size=32000)), 8, 1024),
        "resnet50": resnet,
    }  # fmt: skip


def loss_of(out: Any) -> torch.Tensor:
    return out.loss if hasattr(out, "loss") else out.sum()


def call(model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
    return model(inputs["x"]) if "x" in inputs else model(**inputs)


def analyze(model: torch.nn.Module, inputs: dict[str, Any], **kw: Any) -> flopgraph.Report:
    if "x" in inputs:
        return flopgraph.analyze(model, inputs["x"], training=True, **kw)
    return flopgraph.analyze(model, kwargs=inputs, training=True, **kw)


def state_of(model: torch.nn.Module) -> list[Any]:
    return [(n, p.detach().clone(), None if p.grad is None else p.grad.clone(), p._version)
            for n, p in model.named_parameters()]  # fmt: skip


def check(name: str, build: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    model, inputs = build()
    model = model.cuda().train()
    out: dict[str, Any] = {"model": name}
    with FlopCounterMode(display=False) as fc:
        loss_of(call(model, inputs)).backward()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    opt.step()  # the user's optimizer has state and the model has gradients
    before, opt_state = state_of(model), {k: {n: v.clone() for n, v in s.items()}
                                          for k, s in opt.state.items()}  # fmt: skip
    preset = analyze(model, inputs, convention="torch")
    step = analyze(model, inputs, optimizer=opt)
    after = state_of(model)
    untouched = all(
        a[0] == b[0] and torch.equal(a[1], b[1]) and a[3] == b[3]
        and (a[2] is None) == (b[2] is None) and (a[2] is None or torch.equal(a[2], b[2]))
        for a, b in zip(before, after, strict=True)
    ) and all(torch.equal(v, opt_state[k][n]) for k, s in opt.state.items()
              for n, v in s.items())  # fmt: skip
    out["torch_preset"], out["flop_counter"] = preset.flops, fc.get_total_flops()
    out["preset_equal"] = preset.flops == fc.get_total_flops()
    out["untouched"] = untouched
    out["phases"] = {p: c.flops for p, c in step.by_phase().items()}
    out["memory"] = vars(step.step.memory) if step.step and step.step.memory else None
    # a real step, timed
    times = []
    for i in range(8):
        torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_of(call(model, inputs)).backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    out["step_s"] = seconds
    out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    name_ = torch.cuda.get_device_name()
    kind = "H200" if "H200" in name_ else "H100" if "H100" in name_ else None
    if kind is not None:
        u = flopgraph.utilization(step, seconds, accelerator=kind, dtype="tf32")
        out["mfu_tf32"], out["hfu_tf32"] = u.mfu, u.hfu
        out["model_tflops_per_s"] = u.model_flops_per_s / 1e12
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    results, ok = [], True
    print(torch.__version__, torch.cuda.get_device_name())
    for name, build in models().items():
        try:
            r = check(name, build)
        except Exception as e:  # report and go on
            r = {"model": name, "error": f"{type(e).__name__}: {e}"[:500]}
        ok = ok and bool(r.get("preset_equal")) and bool(r.get("untouched"))
        results.append(r)
        print(json.dumps(r))
        torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
