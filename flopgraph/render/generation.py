"""A generation's costs (prefill, decode steps, total, cache) as a terminal table."""

from __future__ import annotations

from rich.table import Table

from ..generation import Generation
from .cells import Units, nbytes, number, percent


def generation_table(g: Generation, units: Units = "auto") -> Table:
    first, last = g.prompt, g.prompt + g.new_tokens - 1
    t = Table(
        title=f"{g.model}: prompt {g.prompt:,}, {g.new_tokens:,} new tokens, batch {g.batch:,}",
        title_justify="left",
    )
    t.add_column("part")
    t.add_column("FLOPs", justify="right")
    t.add_column("MACs", justify="right")
    t.add_column("% FLOPs", justify="right")
    total = g.total
    rows = [
        (f"prefill ({g.prompt:,} tokens)", g.prefill.cost),
        (f"decode step at c = {first:,}", g.formula(first)),
        (f"decode step at c = {last:,}", g.formula(last)),
        (f"{g.new_tokens:,} decode steps", g.decode_total),
    ]
    for name, cost in rows:
        share = percent(cost.flops, total.flops) if "step at" not in name else ""
        t.add_row(name, number(cost.flops, units), number(cost.macs, units), share)
    t.add_row("total", number(total.flops, units), number(total.macs, units), "100.0%")
    t.caption = (
        f"per generated token: {number(round(g.per_token), units)} FLOPs · "
        f"decode step FLOPs(c) = {g.formula.describe()} · "
        f"cache: {nbytes(g.kv_cache_bytes(first), units)} at c = {first:,}, "
        f"{nbytes(g.kv_cache_bytes(last), units)} at c = {last:,}"
    )
    t.caption_justify = "left"
    return t
