"""Pickling a session, and attaching a client to a session that was unpickled.

As in sgsession, a pickled :class:`~sgcache_layers.session.Session` keeps its entities and
settings and drops what belongs to one process: the ShotGrid client and its connections,
the cache layers (open files, sockets), locks and threads.  The unpickled session holds
the same entities (as instances of its own) but no client: a placeholder refuses every
request, naming :meth:`~sgcache_layers.session.Session.attach`, which gives it a client
(and cache layers) again.  Entities from a pickle are of unknown freshness, so the first
``get`` of each asks again; they are only re-attached to a client of the same site and
permission identity, never shown to another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .config import SessionConfigError, identity_of, site_of

if TYPE_CHECKING:
    from .keys import KeyMaker
    from .session import Session

__all__ = ["DetachedClient", "DetachedError", "attach", "restore", "session_state"]

#: The version of the pickled state (a newer library refuses what it cannot read).
STATE_VERSION = 1


class DetachedError(RuntimeError):
    """A request was made by an unpickled session before :meth:`Session.attach`."""


class DetachedClient:
    """The client of an unpickled session: it refuses every call, naming ``attach``."""

    config = None

    def close(self) -> None:
        """Nothing to close."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise DetachedError(
            f"this session was unpickled without its ShotGrid client, so it cannot call "
            f"{name}(); give it one with session.attach(shotgun)"
        )


def _bounds(session: Session) -> dict[str, Any]:
    """The settings of bounded memory and farm counters, where not the defaults."""
    from .stats import STATS_INTERVAL

    out: dict[str, Any] = {}
    memory = session._layout.memory
    for name in ("max_entries", "max_bytes"):
        value = getattr(memory, name, None) if session._identity.weak else None
        if value is not None:
            out[f"memory_{name}"] = value
    if session._farm.interval != STATS_INTERVAL:
        out["stats_interval"] = session._farm.interval
    return out


def session_state(session: Session) -> dict[str, Any]:
    """What a pickled session keeps: settings, site, identity and its entities."""
    entities = session._identity.entities()
    return {
        "v": STATE_VERSION,
        "site": session.site,
        "identity": session.identity,
        "given": session._given,
        "settings": {
            "auto_populate": session._default_auto_populate,
            "mode": session._default_mode,
            "max_age": session._max_age,
            "schema_max_age": session.schema_max_age,
            "stale_if_error": session.stale_if_error,
            "sync_interval": session._sync_interval,
            "sync_limit": session.sync_limit,
            "event_backlog": session.event_backlog,
            "add_important": session.add_important,
            **_bounds(session),
        },
        "entities": session.encode(entities),
        "retired": [e.key for e in entities if e._exists is False],
    }


def restore(cls: type[Session], state: dict[str, Any]) -> Session:
    """A detached session of *cls* holding what :func:`session_state` kept."""
    from .session import Session

    if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
        raise SessionConfigError("this pickled session was written by another version")
    settings = dict(state["settings"])
    settings["sync_interval"] = None  # nothing to sync with until a client is attached
    session = cls.__new__(cls)
    Session.__init__(
        session,
        DetachedClient(),
        cache=None,
        auto_populate=settings.pop("auto_populate"),
        site=state["site"],
        identity=state["identity"],
        **settings,
    )
    session.identity = state["identity"]
    session._given = tuple(state["given"])
    session.__dict__["_detached"] = state
    # Held here until attach(): a session with bounded memory holds its entities weakly.
    held = session.__dict__["_held"] = [session.decode(state["entities"])]
    for entity_type, entity_id in state["retired"]:
        retired = session._identity.entity(entity_type, entity_id)
        retired._exists = False
        held.append(retired)
    return session


def attach(session: Session, shotgun: Any, cache: Any, cache_key_maker: Optional[KeyMaker]) -> None:
    """Give an unpickled *session* a client and cache layers, keeping its entities."""
    from .session import Session

    state = session.__dict__.get("_detached")
    if state is None:
        raise SessionConfigError(
            "attach() is for a session that was unpickled; this one has a client"
        )
    site_given, identity_given = state["given"]
    site = (site_given or site_of(shotgun)).lower().rstrip("/")
    parts = (("identity", identity_given),) if identity_given else identity_of(shotgun)
    identity = ";".join(f"{k}={v}" for k, v in parts) if parts else "(unknown)"
    if (site, identity) != (state["site"], state["identity"]):
        raise SessionConfigError(
            f"this session was pickled for {state['site']} as {state['identity']}, and the "
            f"client given is {site} as {identity}: its entities are not shown to another "
            "site or identity (make a new Session for that client)"
        )
    settings = dict(state["settings"])
    held = session._identity
    Session.__init__(
        session,
        shotgun,
        cache,
        cache_key_maker,
        settings.pop("auto_populate"),
        site=site_given,
        identity=identity_given,
        **settings,
    )
    session._identity.take(held)
    session.__dict__.pop("_detached", None)
    session.__dict__.pop("_held", None)
