"""pytest fixtures for the loopback ShotGrid server (registered as the ``sgcache_layers`` plugin).

Fixtures:

``shotgrid_server``
    Function scope: a fresh demo site with a small production (scale 0.05), started, and
    stopped afterwards.  Mutate it freely.
``shotgrid_client``
    Function scope: ``shotgrid_server.client()``, a real ``shotgun_api3.Shotgun``.
``shotgrid_server_factory``
    Function scope: ``make(**kwargs) -> ShotgridServer`` for servers with another schema,
    scale or identity; each one is started and stopped at teardown.
``shotgrid_site_server``
    Session scope: one larger demo site (scale 0.2) shared by the whole run.  Treat it as
    read-only: latency, faults and the request log are reset before each test that uses it,
    but data changes would leak into other tests.

pytest loads this module in every run of an environment where the package is installed, so
it imports only pytest at load time; the server (and with it ``shotgun_api3``) is imported by
the fixtures that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, List

import pytest

if TYPE_CHECKING:
    from shotgun_api3.shotgun import Shotgun

    from .server import ShotgridServer

#: Production scale of the function-scoped server: a handful of everything.
SMALL_SCALE = 0.05
#: Production scale of the session-scoped server.
SITE_SCALE = 0.2


@pytest.fixture
def shotgrid_server() -> Iterator[ShotgridServer]:
    """A fresh, started demo site with a small production; stopped after the test."""
    from .server import ShotgridServer

    server = ShotgridServer(scale=SMALL_SCALE, seed=0)
    with server:
        yield server


@pytest.fixture
def shotgrid_client(shotgrid_server: ShotgridServer) -> Shotgun:
    """A real ``shotgun_api3.Shotgun`` connected to :func:`shotgrid_server`."""
    return shotgrid_server.client()


@pytest.fixture
def shotgrid_server_factory() -> Iterator[Callable[..., ShotgridServer]]:
    """Build started servers with any ``ShotgridServer`` arguments; all stop at teardown."""
    from .server import ShotgridServer

    made: List[ShotgridServer] = []

    def make(*args: Any, **kwargs: Any) -> ShotgridServer:
        server = ShotgridServer(*args, **kwargs).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture(scope="session")
def _shotgrid_site_server_session() -> Iterator[ShotgridServer]:
    from .server import ShotgridServer

    server = ShotgridServer(scale=SITE_SCALE, seed=0)
    with server:
        yield server


@pytest.fixture
def shotgrid_site_server(_shotgrid_site_server_session: ShotgridServer) -> ShotgridServer:
    """The shared session site, with knobs and request log reset; do not change its data."""
    server = _shotgrid_site_server_session
    server.clear_faults()
    server.set_latency(None)
    server.reset_requests()
    if not server.running:
        server.start()
    return server
