"""Frontends turn a model into an op graph: fx symbolic tracing for now."""

from .fx import TracedGraph, trace_fx

__all__ = ["TracedGraph", "trace_fx"]
