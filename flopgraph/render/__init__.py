"""Renderers: pure functions from a Report to text or rich renderables."""
