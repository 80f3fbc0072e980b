"""flopgraph.generation() on causal LMs of the wide zoo's catalog (tiny configs from
transformers' defaults, scripts/wide_zoo_catalog.py): prefill 5, decode at c = 5,
the decode formula, the cache bytes, and any failure, one line per model.

    HF_HUB_OFFLINE=1 python scripts/generation_zoo.py [model_type ...]
"""

from __future__ import annotations

import sys
import time
import warnings

from wide_zoo_catalog import HF, build_transformers

import flopgraph


def main(names: list[str]) -> None:
    warnings.simplefilter("ignore")
    names = names or [k for k, (cls, _, _) in HF.items() if cls == "AutoModelForCausalLM"]
    for name in names:
        try:
            model, _, _ = build_transformers(name)
        except Exception as e:  # the catalog's config does not build
            print(f"{name}: does not build: {type(e).__name__}: {str(e)[:150]}")
            continue
        start = time.perf_counter()
        try:
            g = flopgraph.generation(model, prompt=5, new_tokens=3)
            step = g.decode(5)
        except flopgraph.FlopgraphError as e:
            print(f"{name}: refused: {str(e)[:300]}", flush=True)
            continue
        print(
            f"| {name} | {time.perf_counter() - start:.1f} s | {len(step.skipped)} "
            f"| {g.formula.describe()} | {g.kv_cache_bytes(5):,} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
