"""Layered caching for ShotGrid tools: memory, then disk, then Redis."""

from __future__ import annotations

__version__ = "0.1.0"

__all__: list[str] = ["__version__"]
