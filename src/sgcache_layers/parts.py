"""The parts of a Session, made and wired together in one place.

:class:`~sgcache_layers.session.Session` checks its arguments and then calls
:func:`assemble`, which builds each part (see :doc:`architecture`) and gives every part
only the others it talks to: the layers and their roles, the keys, the identity map and
its codec, freshness, the request path, the read path, the writes' upkeep, the event log
and the farm counters.  Keeping the wiring here leaves the facade with what users call.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .answers import Answers
from .cache import LayeredCache, MemoryCache
from .config import open_layers, options_of
from .fetching import Requests, WriteBehind, make_executor
from .freshness import EventLog, Freshness, Layout
from .graph import Graph
from .identity import IdentityMap, outbound
from .memory import memory_layer
from .offline import Snapshots
from .pool import ShotgunPool
from .reads import Reads
from .records import Keys, Namespace, SessionCodec
from .stats import FarmStats, stats_interval_of
from .upkeep import Writes

if TYPE_CHECKING:
    from .session import Session

__all__ = ["assemble", "client_of"]


def client_of(shotgun: Any) -> Any:
    """The client a session talks through: a real ``Shotgun`` wrapped in a pool (so the
    session is thread-safe); anything else (a Mockgun, a test double) as it is."""
    try:
        from shotgun_api3.shotgun import Shotgun
    except ImportError:  # pragma: no cover - shotgun_api3 is a core dependency
        return shotgun
    return ShotgunPool(shotgun) if isinstance(shotgun, Shotgun) else shotgun


def assemble(
    session: Session,
    layers: Any,
    parts: tuple[tuple[str, str], ...],
    *,
    memory_max_entries: Any,
    memory_max_bytes: Any,
    stats_interval: Any,
    schema: Any,
    snapshots: bool,
) -> None:
    """Build *session*'s parts over the cache spec *layers* and the identity *parts*.

    The first layer is always the memory layer, bounded when a bound is given (answers
    beyond it are dropped and the identity map holds its entities weakly).  Raises
    :class:`~sgcache_layers.config.SessionConfigError` for a bad bound or cache spec.
    """
    memory = memory_layer(memory_max_entries, memory_max_bytes)
    publish_every = stats_interval_of(stats_interval)
    session.cache = LayeredCache([memory] + open_layers(layers, session))
    namespace = Namespace(session.site, parts, options_of(session.shotgun))
    keys = session._keys = Keys(namespace.base, namespace.shared)
    layout = session._layout = Layout(session.cache)
    # The identity map asks the read path whether generations still hold; the read path
    # is made below, from the map (the lambda looks it up when first called).
    identity = session._identity = IdentityMap(
        session, lambda deps: answers.still_current(deps), weak=type(memory) is not MemoryCache
    )
    session._codec = SessionCodec(identity, session._tz)

    def on_epoch(epoch: str) -> None:
        """Another process flushed: what this process built belongs to the old epoch."""
        if layout.memory is not None:
            with contextlib.suppress(Exception):
                layout.memory.clear()
        identity.invalidate()

    def flushed() -> None:
        session.stats.flushes += 1

    freshness = session._freshness = Freshness(keys, layout, on_epoch=on_epoch)
    requests = session._requests = Requests(session.shotgun, session.stats.requests)
    session._pages = make_executor()
    # Records expire (where a layer can) once no read could use them.
    writer = session._writer = WriteBehind(ttl=session._record_ttl())
    answers = session._answers = Answers(
        keys=keys,
        layout=layout,
        freshness=freshness,
        identity=identity,
        requests=requests,
        writer=writer,
        stats=session.stats,
    )
    session._graph = Graph(session, identity, answers)
    session._reads = Reads(session)
    if isinstance(session.shotgun, ShotgunPool):
        session.shotgun.prepare = session._reads.server_caps
    session._snapshots = Snapshots(session, schema=schema, in_cached_mode=snapshots)
    session._writes = Writes(
        freshness=freshness,
        identity=identity,
        answers=answers,
        request=requests,
        outbound=outbound,
    )
    session._events = EventLog(
        freshness,
        requests,
        limit=session.sync_limit,
        backlog=session.event_backlog,
        on_flush=flushed,
    )
    session.stats.cache = session.cache
    session.stats.store = lambda: layout.store
    #: Writes this session's counters to the shared layer (``sgcache-layers stats``).
    session._farm = FarmStats(session.stats, keys.stats, layout, publish_every)
