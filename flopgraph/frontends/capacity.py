"""Capacity-limited routers, counted at their capacity bound (spec section H).

A router with an expert capacity C (Switch Transformers' top-1 router, NLLB-MoE's
top-2) drops what an expert receives beyond C tokens, so the experts' work depends on
which experts the tokens choose. The bound is the most work any routing can give
them: min(k x T, E x C) (token, expert) pairs per group of T tokens that share the
capacity (a sequence for Switch, the whole batch for NLLB-MoE). A real run of the
model's own code attains it when the choices are spread evenly: the router's logits
are overwritten (outside the recording: not an op of the model) so that choice j of
token t is expert (k t + j) mod E, every expert receives the floor or the ceiling of
k T / E choices, and keeps min(that, C) of them.

``analyze(..., routing="taken")`` (:data:`ROUTING`) leaves the routers alone: the
real run counts the routing its inputs and weights choose.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal

import torch

from ..moe import router_k
from ..tree import named_modules

RoutingPolicy = Literal["bound", "taken"]
ROUTINGS: tuple[RoutingPolicy, ...] = ("bound", "taken")
ROUTING: ContextVar[RoutingPolicy] = ContextVar("routing", default="bound")
"""How a real run counts capacity-limited routers (``analyze(..., routing=...)``)."""


def capacity_routers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, int]]:
    """(path, router, k) of the routers in ``model`` that have an expert capacity and
    score the experts with one linear ``classifier``."""
    out = []
    for path, m in named_modules(model).items():
        k, classifier = router_k(m), m._modules.get("classifier")
        if k and hasattr(m, "expert_capacity") and isinstance(classifier, torch.nn.Linear):
            out.append((path, m, k))
    return out


def balance(
    model: torch.nn.Module, twin: Callable[[torch.nn.Module], torch.nn.Module]
) -> list[str]:
    """Make the twins (``twin(module)``) of ``model``'s capacity-limited routers choose
    evenly spread experts; returns their paths. Nothing when ``routing="taken"``."""
    if ROUTING.get() != "bound":
        return []
    found = capacity_routers(model)
    for _, router, k in found:
        classifier = twin(router)._modules["classifier"]  # a Linear, as the router's is
        classifier.__dict__["forward"] = _balanced(classifier.forward, k)  # type: ignore[union-attr]
    return [path for path, _, _ in found]


def bound_note(paths: list[str]) -> str:
    """What the report's frontend note says of the routers :func:`balance` spread."""
    if not paths:
        return ""
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    return (
        f"capacity-limited routers ({paths[0]}{more}) counted at their capacity bound: "
        "each token's choices spread evenly over the experts (routing='taken' counts the "
        "routing this run chooses)"
    )


def _balanced(forward: Callable[..., torch.Tensor], k: int) -> Callable[..., torch.Tensor]:
    def scores(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        from torch.utils._python_dispatch import _disable_current_modes

        out = forward(x, *args, **kwargs)
        with _disable_current_modes(), torch.no_grad():
            tokens, experts = out.shape[-2], out.shape[-1]
            t = torch.arange(tokens, device=out.device).unsqueeze(-1)
            rank = (torch.arange(experts, device=out.device) - k * t) % experts
            out.copy_((-rank).to(out.dtype).expand_as(out))  # choice j: expert k t + j
        return out

    return scores
