"""Test tooling: a loopback ShotGrid server, a demo schema and a production generator.

Importable without pytest or redis; the pytest fixtures live in
:mod:`sgcache_layers.testing.pytest_plugin` (registered as a pytest plugin).
"""

from __future__ import annotations

from .data import (
    demo_schema,
    ensure_required_entities,
    generate_production,
    load_schema,
)
from .server import (
    FAULT_KINDS,
    FaultRule,
    RequestRecord,
    ScriptIdentity,
    ShotgridServer,
    lognormal_latency,
)
from .store import Actor, SiteError, SiteStore

__all__ = [
    "FAULT_KINDS",
    "Actor",
    "FaultRule",
    "RequestRecord",
    "ScriptIdentity",
    "ShotgridServer",
    "SiteError",
    "SiteStore",
    "demo_schema",
    "ensure_required_entities",
    "generate_production",
    "load_schema",
    "lognormal_latency",
]
