"""Counts and the untouched guarantee on a real GPU (run where one is lent; not in CI).

For each model, on ``cuda``:
- flopgraph's counts (auto and aten frontends, default convention) equal the counts of
  the same model analyzed on the CPU (the contract does not depend on the device);
- ``convention="torch"`` equals FlopCounterMode around a real CUDA forward (where the
  fused attention kernels have formulas);
- the model comes back bitwise untouched (values, version counters, gradients,
  requires_grad, training flags, hooks), also after an analysis that fails.

Usage: ``python scripts/gpu_check.py [--json PATH]``; exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import flopgraph
from flopgraph import TensorSpec


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything an analysis must leave as it was."""
    state = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        state[name] = (
            id(t),
            t.detach().clone(),
            t._version,
            t.requires_grad,
            None if t.grad is None else t.grad.clone(),
        )
    flags = {n: m.training for n, m in model.named_modules()}
    hooks = {
        n: tuple(len(getattr(m, d)) for d in ("_forward_hooks", "_forward_pre_hooks"))
        for n, m in model.named_modules()
    }
    return {"state": state, "flags": flags, "hooks": hooks}


def same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    problems = []
    for name, (ident, value, version, req, grad) in a["state"].items():
        ident2, value2, version2, req2, grad2 = b["state"][name]
        if ident != ident2 or version != version2 or req != req2:
            problems.append(f"{name}: identity/version/requires_grad changed")
        if not torch.equal(value, value2):
            problems.append(f"{name}: values changed")
        if (grad is None) != (grad2 is None) or (grad is not None and not torch.equal(grad, grad2)):
            problems.append(f"{name}: grad changed")
    if a["flags"] != b["flags"]:
        problems.append("training flags changed")
    if a["hooks"] != b["hooks"]:
        problems.append("hooks changed")
    return problems


def torchvision_model(name: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kw)

    return build


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64)
    return GPT2LMHeadModel(cfg)


def llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128, max_position_embeddings=64,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


class Sdpa(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(64, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(2, 32, 3, 4, 16).permute(2, 0, 3, 1, 4)
        return nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


CASES: list[tuple[str, Callable[[], nn.Module], tuple[Any, ...], str]] = [
    ("resnet18", torchvision_model("resnet18"), ((2, 3, 64, 64),), "eval"),
    ("resnet18-train", torchvision_model("resnet18"), ((2, 3, 64, 64),), "train"),
    ("mobilenet_v3_small", torchvision_model("mobilenet_v3_small"), ((1, 3, 96, 96),), "eval"),
    ("vit_b_16", torchvision_model("vit_b_16"), ((1, 3, 224, 224),), "eval"),
    ("sdpa-half", Sdpa, ((2, 32, 64),), "half"),
    ("gpt2", gpt2, (TensorSpec((1, 32), torch.int64),), "eval"),
    ("llama", llama, (TensorSpec((1, 32), torch.int64),), "eval"),
]


def real_inputs(specs: tuple[Any, ...], device: str, dtype: torch.dtype | None) -> list[Any]:
    out = []
    for s in specs:
        shape, dt = (s.shape, s.dtype) if isinstance(s, TensorSpec) else (s, torch.float32)
        if dt.is_floating_point:
            out.append(torch.randn(shape, device=device, dtype=dtype or dt))
        else:
            out.append(torch.randint(0, 100, shape, device=device, dtype=dt))
    return out


def flop_counter(model: nn.Module, xs: list[Any], grad: bool = False) -> int:
    """FlopCounterMode around a real forward; with autograd on, nn.MultiheadAttention
    takes its slow path, whose products it counts (its fused fast path has no formula)."""
    with FlopCounterMode(display=False) as mode, torch.set_grad_enabled(grad):
        model(*xs)
    return int(mode.get_total_flops())


def check(
    name: str, build: Callable[[], nn.Module], specs: tuple[Any, ...], mode: str, device: str
) -> dict[str, Any]:
    torch.manual_seed(0)
    cpu = build()
    cpu.train(mode == "train")
    gpu = copy.deepcopy(cpu).to(device)
    dtype = None
    if mode == "half":
        gpu = gpu.half()
        dtype = torch.float16
    result: dict[str, Any] = {"model": name, "mode": mode, "problems": []}
    xs = real_inputs(specs, device, dtype)
    before = snapshot(gpu)
    t0 = time.perf_counter()
    auto = flopgraph.analyze(gpu, tuple(xs))
    result["seconds_auto"] = round(time.perf_counter() - t0, 3)
    aten = flopgraph.analyze(gpu, tuple(xs), frontend="aten")
    reference = flopgraph.analyze(cpu.half() if mode == "half" else cpu, tuple(x.cpu() for x in xs))
    result.update(
        frontend=auto.frontend.name,
        flops_cuda=auto.flops,
        flops_cuda_aten=aten.flops,
        flops_cpu=reference.flops,
        skipped=sorted(auto.skipped),
    )
    if not (auto.cost == aten.cost == reference.cost):
        result["problems"].append(
            f"counts differ: cuda auto {auto.cost}, cuda aten {aten.cost}, cpu {reference.cost}"
        )
    if auto.skipped:
        result["problems"].append(f"skipped ops: {sorted(auto.skipped)}")
    torch_preset = flopgraph.analyze(gpu, tuple(xs), convention="torch").flops
    real = flop_counter(gpu, xs) if mode != "train" else None
    if real is not None and real != torch_preset:
        result["flop_counter_cuda_no_grad"] = real
        real = flop_counter(gpu, xs, grad=True)
    result.update(torch_preset=torch_preset, flop_counter_cuda=real)
    if real is not None and real != torch_preset:
        result["problems"].append(f"torch preset {torch_preset} != FlopCounterMode {real}")
    # an analysis that fails part-way (a handler that raises) must leave the model too
    try:
        planted = {nn.Conv2d: _boom, nn.Linear: _boom, torch.ops.aten.addmm: _boom}
        flopgraph.analyze(gpu, tuple(xs), handlers=planted)
    except flopgraph.FlopgraphError:
        pass
    after = snapshot(gpu)
    result["problems"] += same(before, after)
    return result


def _boom(ctx: Any) -> Any:
    raise RuntimeError("planted failure")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--device", default="cuda", help="cpu for a dry run of the script")
    parser.add_argument("--only", default="", help="models whose name contains this")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    where = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"torch {torch.__version__}, flopgraph {flopgraph.__version__}, {where}")
    results = []
    for name, build, specs, mode in CASES:
        if args.only not in name:
            continue
        try:
            r = check(name, build, specs, mode, args.device)
        except Exception as e:  # noqa: BLE001 - a crash is a result to report
            r = {"model": name, "mode": mode, "problems": [f"crashed: {e!r}"]}
            traceback.print_exc()
        results.append(r)
        status = "ok" if not r["problems"] else "; ".join(r["problems"])
        print(f"{name:22s} {r.get('flops_cuda', '-')!s:>16s} {status}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "results": results}, f, indent=1)
    return int(any(r["problems"] for r in results))


if __name__ == "__main__":
    sys.exit(main())
