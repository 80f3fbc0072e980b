"""Frontends turn a model into ops: fx symbolic tracing (a graph of module, function
and method calls) and the aten recorder (the aten ops a forward runs on fake tensors)."""

from .fx import TracedGraph, trace_fx

__all__ = ["TracedGraph", "trace_fx"]
