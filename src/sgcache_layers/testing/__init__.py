"""Test tooling: a loopback ShotGrid server, a demo schema and a production generator.

Importable without pytest or redis; the pytest fixtures live in
:mod:`sgcache_layers.testing.pytest_plugin` (registered as a pytest plugin).  Like the
package, this one imports each public name on first use, so loading the plugin (which
pytest does in every run) costs no ``shotgun_api3`` import until a fixture needs a server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy_exports

if TYPE_CHECKING:
    from typing import Dict, Tuple

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

#: The submodule defining each public name (the imports above, for type checkers).
_EXPORTS: Dict[str, Tuple[str, ...]] = {
    "data": ("demo_schema", "ensure_required_entities", "generate_production", "load_schema"),
    "server": (
        "FAULT_KINDS",
        "FaultRule",
        "RequestRecord",
        "ScriptIdentity",
        "ShotgridServer",
        "lognormal_latency",
    ),
    "store": ("Actor", "SiteError", "SiteStore"),
}

if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = _lazy_exports(__name__, globals(), _EXPORTS)
