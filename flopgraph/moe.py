"""Mixture-of-experts: which modules hold routed experts, how many each token runs.

With top-k routing and no token dropping every token runs exactly k of the E routed
experts (spec section H), so the routed work is known from shapes alone and one token
uses k / E of the routed parameters. This module finds the routed-expert containers
of a model from its structure, so that records of their ops can say they are routed
(with k and E) and ``ParamStats.active`` can say what one token uses:

- a container is a module with an int ``num_experts`` = E whose own parameters all
  have E as their first dimension, one of them at least 3-D (transformers' ``*Experts``
  with 3-D weights, JetMoE's ``ParallelExperts``); a module with ``num_experts`` whose
  class name ends in ``Experts`` (DBRX stacks the experts' weights in a child); or a
  ``ModuleList`` named ``experts`` of E modules of one type (one module per expert);
- k is the first int found among :data:`K_NAMES` on the container's parent, then on
  the parent's other children (the router, or k from its class name: ``Top2Router``),
  then on ``model.config``.

Shared experts live outside the container and count as always active, as do routers.
A container whose k cannot be found is not claimed: its records stay unmarked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .records import Routing
from .tree import named_modules

K_NAMES = ("num_experts_per_tok", "top_k", "moe_top_k", "experts_per_token", "num_selected_experts")
"""Attribute names that hold k, the number of routed experts each token runs."""


@dataclass(frozen=True)
class ExpertGroup:
    """One routed-expert container of a model."""

    path: str
    """Dotted module path of the container."""
    routing: Routing
    params: int
    """Elements of the parameters of all E experts."""

    @property
    def active_params(self) -> int:
        """Parameters one token uses here: k of the E equal experts."""
        return self.params * self.routing.k // self.routing.experts


def find_experts(model: torch.nn.Module) -> tuple[ExpertGroup, ...]:
    """The routed-expert containers of ``model``, outermost only, in module order."""
    modules = named_modules(model)
    groups: list[ExpertGroup] = []
    for path, module in modules.items():
        if any(path.startswith(g.path + ".") for g in groups):
            continue
        experts = _experts_of(path, module)
        if experts is None:
            continue
        parent = modules.get(path.rpartition(".")[0], model)
        k = _k_near(parent, module) or _k_of(getattr(model, "config", None))
        if k is None or not 0 < k <= experts:
            continue
        params = sum(p.numel() for p in _unique(module.parameters()))
        groups.append(ExpertGroup(path, Routing(k, experts), params))
    return tuple(groups)


def routing_of(path: str, table: dict[str, Routing]) -> Routing | None:
    """The routing of the container ``path`` is in (itself or an ancestor), or None."""
    while path:
        hit = table.get(path)
        if hit is not None:
            return hit
        path = path.rpartition(".")[0]
    return None


def _experts_of(path: str, module: torch.nn.Module) -> int | None:
    """E when ``module`` is a routed-expert container, else None."""
    n = getattr(module, "num_experts", None)
    own = [p for p in module._parameters.values() if p is not None]
    if isinstance(n, int) and not isinstance(n, bool) and n > 1 and own:
        # 3-D weights [E, out, in] (a router's [E, in] weight is not a container)
        if all(p.dim() >= 2 and p.shape[0] == n for p in own) and any(p.dim() >= 3 for p in own):
            return n
    if isinstance(n, int) and n > 1 and type(module).__name__.endswith("Experts"):
        return n  # DBRX: the E experts' weights stacked in a child's 2-D parameters
    if isinstance(module, torch.nn.ModuleList) and path.rpartition(".")[2] == "experts":
        kinds = {type(m) for m in module}
        if len(module) > 1 and len(kinds) == 1:
            return len(module)
    return None


def _k_near(parent: torch.nn.Module, container: torch.nn.Module) -> int | None:
    k = _k_of(parent)
    if k is not None:
        return k
    for child in parent.children():
        if child is not container:
            k = _k_of(child)
            if k is not None:
                return k
    return None


TOP_K_ROUTER = re.compile(r"Top(\d)Router$")
"""Router classes named by the number of experts each token chooses (transformers'
Switch Transformers and NLLB-MoE routers, which hold no k attribute)."""


def router_k(module: Any) -> int | None:
    """k of a router class named ``...Top<k>Router``, else None."""
    match = TOP_K_ROUTER.search(type(module).__name__)
    return int(match.group(1)) if match else None


def _k_of(obj: Any) -> int | None:
    if obj is None:
        return None
    if router_k(obj) is not None:
        return router_k(obj)
    for name in K_NAMES:
        v = getattr(obj, name, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _unique(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
