"""Op families: which part of the counting spec an op's rule belongs to.

A coverage report groups a model's flops by family (contraction, elementwise,
reduction, normalization, pooling, attention, recurrent, other). The family of
a rule is read from the handler module that defines it, so a new handler
lands in its family without a second list to keep in sync; the few rules whose
module holds several families are named here.
"""

from __future__ import annotations

from typing import Literal

from .registry import Registry
from .report import Report

Family = Literal[
    "contraction", "elementwise", "reduction", "normalization", "pooling", "attention",
    "recurrent", "other",
]  # fmt: skip
FAMILIES: tuple[Family, ...] = (
    "contraction", "elementwise", "reduction", "normalization", "pooling", "attention",
    "recurrent", "other",
)  # fmt: skip

_BY_MODULE: dict[str, Family] = {
    "contractions": "contraction", "elementwise": "elementwise", "reductions": "reduction",
    "norms": "normalization", "pooling": "pooling", "attention": "attention",
    "transformer": "attention", "recurrent": "recurrent",
}  # fmt: skip
# rules of flopgraph/handlers/misc.py and the third-party handler files
_BY_NAME: dict[str, Family] = {
    "interpolate": "contraction", "dropout": "elementwise", "stochastic_depth": "elementwise",
    "embedding_bag": "reduction", "shifted_window_attention": "attention",
    "roi_align": "pooling", "roi_pool": "pooling",  # torchvision's RoI pools
    "convolution": "contraction",  # the aten frontend's name for every convolution
}  # fmt: skip


def op_families(registry: Registry) -> dict[str, Family]:
    """Op name (as records carry it) -> family, for every counting rule of ``registry``.
    Free rules have no family: they count 0."""
    out: dict[str, Family] = {}
    for _, rule in registry.items():
        if rule.handler is None:
            continue
        module = str(getattr(rule.handler, "__module__", "")).rsplit(".", 1)[-1]
        family = _BY_NAME.get(rule.name) or _BY_MODULE.get(module, "other")
        # an aten rule shares its fx rule's name (and module-less handlers): keep the
        # family the fx rule gave
        if out.get(rule.name, "other") == "other":
            out[rule.name] = family
    return out


def flops_by_family(report: Report, registry: Registry) -> dict[Family, int]:
    """Total flops of each family (every family present, zeros included)."""
    families = op_families(registry)
    out: dict[Family, int] = dict.fromkeys(FAMILIES, 0)
    for record in report.records:
        out[families.get(record.op, "other")] += record.flops
    return out
