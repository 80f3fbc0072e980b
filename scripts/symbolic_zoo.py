"""Symbolic sizes beyond the tests: models of the wide zoo's catalog analysed with
their batch named ``B`` (and a token sequence's length ``T``), then substituted at
batch 2 and 3 (the catalog's sequence length), each compared with a concrete analysis.

    cd scripts && HF_HUB_OFFLINE=1 python symbolic_zoo.py [--every N] [key ...]

One line per model: ``exact`` (both substitutions equal the concrete counts),
``refused`` (a substitution breaks an assumption the trace made: the line names it),
``differs`` (a wrong formula: a bug), ``fails`` (the symbolic trace stopped, with the
reason; the concrete analysis is fine), ``skip`` (the catalog entry has no tensor
input to name).
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import torch
from wide_zoo_catalog import build, entries

import flopgraph
from flopgraph import TensorSpec


def _specs(args: tuple[Any, ...], kwargs: dict[str, Any], b: int | str, t: int | str | None):
    def spec(v: Any) -> Any:
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            return v
        shape: list[int | str] = [b, *v.shape[1:]]
        if t is not None and not v.dtype.is_floating_point and v.dim() == 2:
            shape[1] = t
        return TensorSpec(tuple(shape), v.dtype)

    return tuple(spec(a) for a in args), {k: spec(v) for k, v in kwargs.items()}


def one(key: str) -> str:
    model, args, kwargs = build(key)
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
    if not tensors:
        return "skip"
    seq = next(
        (v.shape[1] for v in tensors if not v.dtype.is_floating_point and v.dim() == 2), None
    )
    sym_args, sym_kw = _specs(args, kwargs, "B", None if seq is None else "T")
    try:
        # the sequence's hint is the catalog's length: a longer one may pass the
        # model's position table (siglip raises for it)
        hints = {"T": seq} if seq is not None and seq >= 2 else None
        report = flopgraph.analyze(model, sym_args, kwargs=sym_kw, hints=hints)
    except flopgraph.FlopgraphError as e:
        return f"fails: {str(e).splitlines()[0][:220]}"
    out = []
    for b in (2, 3):  # torch takes a named size to be >= 2
        values = {"B": b} | ({"T": seq} if seq is not None else {})
        values = {k: v for k, v in values.items() if k in report.symbols}
        c_args, c_kw = _specs(args, kwargs, b, seq)
        concrete = flopgraph.analyze(model, c_args, kwargs=c_kw, frontend="aten")
        try:
            got = report.subs(**values)
        except flopgraph.InputError as e:
            out.append(f"refused at {values}: {str(e)[:160]}")
            continue
        if (got.macs, got.flops) != (concrete.macs, concrete.flops):
            return f"differs at {values}: {got.flops:,} vs {concrete.flops:,}"
    return "exact" if not out else "; ".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("keys", nargs="*")
    p.add_argument("--every", type=int, default=6, help="every Nth model of each family")
    ns = p.parse_args()
    warnings.simplefilter("ignore")
    keys = ns.keys or [
        k for fam in ("torchvision", "timm", "transformers") for k in entries(fam)[:: ns.every]
    ]
    for key in keys:
        start = time.perf_counter()
        try:
            verdict = one(key)
        except Exception as e:  # the catalog's model does not build, or a bug to report
            verdict = f"error: {type(e).__name__}: {str(e)[:200]}"
        print(f"| {key} | {verdict} | {time.perf_counter() - start:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
