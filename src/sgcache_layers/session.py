"""The Session: a caching, entity-aware stand-in for ``shotgun_api3.Shotgun``.

This module is the facade users call: it checks arguments, keeps the per-thread state
(mode, auto-populate, bypass) and hands the work to the parts, each in its own module:

* :mod:`~sgcache_layers.identity`: one :class:`~sgcache_layers.entity.Entity` per
  ``(type, id)`` and the merge rules;
* :mod:`~sgcache_layers.records`: what is stored under which key, and the record format;
* :mod:`~sgcache_layers.freshness`: generations, the epoch, the authoritative layer, the
  event log - and the one rule that says whether a cached answer may be used;
* :mod:`~sgcache_layers.answers`: the read path through the layers;
* :mod:`~sgcache_layers.fetching`: asking ShotGrid (one request for many waiting threads,
  parallel pages, background writes);
* :mod:`~sgcache_layers.upkeep`: what a write moves;
* :mod:`~sgcache_layers.reads`: the query calls behind :meth:`Session.find` and its kin;
* :mod:`~sgcache_layers.parts`: builds the parts and wires them together.

``session.cache`` is always a :class:`~sgcache_layers.cache.LayeredCache` whose first layer
is a :class:`~sgcache_layers.cache.MemoryCache`, followed by the cache the caller gave.
A session is safe to use from many threads at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast, overload

from .answers import Answers, Policy
from .cache import Cache, LayeredCache
from .config import (
    FROM_ENVIRONMENT,
    MODES,
    Seconds,
    SessionConfigError,
    Settings,
    client_zone,
    identity_of,
    record_ttl,
    seconds,
    setting,
    shotgun_from_environment,
    site_of,
)
from .detached import attach, restore, session_state
from .entity import Entity
from .fetching import Requests, WriteBehind
from .freshness import EventLog, Freshness, Layout
from .graph import IMPORTANT_FIELDS, IMPORTANT_FOR_ALL, IMPORTANT_LINKS, PARENT_FIELDS, Graph
from .identity import IdentityMap
from .keys import KeyMaker
from .offline import Snapshots
from .parts import assemble, client_of
from .query import get_arguments
from .reads import Reads
from .records import FORMAT_VERSION, Keys, SessionCodec
from .stats import STATS_INTERVAL, FarmStats, SessionStats
from .upkeep import Writes

__all__ = ["FORMAT_VERSION", "OfflineError", "Session", "SessionConfigError", "SessionStats"]

log = logging.getLogger("sgcache_layers.session")

CacheArg = Union[None, bool, str, Sequence[str], Cache, Callable[["Session"], Optional[Cache]]]


class OfflineError(RuntimeError):
    """A write (or other server-only call) was made while the session is offline."""


class _ThreadState(threading.local):
    auto_populate: Optional[bool] = None
    mode: Optional[str] = None
    bypass: int = 0


class Session:
    """A ``shotgun_api3``-compatible session that caches reads in layers."""

    #: Fields fetched for every entity that :meth:`get` or :meth:`fetch_core` loads.
    important_fields_for_all: list[str] = list(IMPORTANT_FOR_ALL)
    #: Extra fields fetched per type by :meth:`get` and :meth:`fetch_core`.
    important_fields: dict[str, list[str]] = {k: list(v) for k, v in IMPORTANT_FIELDS.items()}
    #: Link fields whose linked types' important fields come along: ``{type: {field:
    #: [linked types]}}``, e.g. a Task's ``entity.Shot.code`` and ``step.Step.short_name``.
    important_links: dict[str, dict[str, list[str]]] = {
        k: {f: list(t) for f, t in v.items()} for k, v in IMPORTANT_LINKS.items()
    }
    #: The field that points at each type's parent, for :meth:`fetch_heirarchy`.
    parent_fields: dict[str, Optional[str]] = dict(PARENT_FIELDS)

    #: The layers: a memory layer first, then the caller's (made by :mod:`.parts`).
    cache: LayeredCache
    _keys: Keys
    _layout: Layout
    _identity: IdentityMap
    _codec: SessionCodec
    _freshness: Freshness
    _requests: Requests
    _pages: Any
    _writer: WriteBehind
    _answers: Answers
    _graph: Graph
    _reads: Reads
    _snapshots: Snapshots
    _writes: Writes
    _events: EventLog
    _farm: FarmStats

    def __init__(
        self,
        shotgun: Any = None,
        cache: CacheArg = FROM_ENVIRONMENT,
        cache_key_maker: Optional[KeyMaker] = None,
        auto_populate: bool = True,
        *,
        mode: str = FROM_ENVIRONMENT,
        max_age: Seconds = FROM_ENVIRONMENT,
        schema_max_age: Seconds = FROM_ENVIRONMENT,
        stale_if_error: Union[bool, Seconds] = FROM_ENVIRONMENT,
        sync_interval: Optional[Seconds] = FROM_ENVIRONMENT,
        sync_limit: int = 5000,
        event_backlog: Seconds = 300.0,
        site: Optional[str] = None,
        identity: Optional[str] = None,
        schema: Any = None,
        snapshots: bool = False,
        add_important: bool = False,
        memory_max_entries: Optional[int] = None,
        memory_max_bytes: Optional[int] = None,
        stats_interval: Optional[Seconds] = STATS_INTERVAL,
    ) -> None:
        if shotgun is None:
            shotgun = shotgun_from_environment()
        # Arguments left out come from SGCACHE_LAYERS_* variables, then the defaults.
        settings = Settings.resolve(
            mode, max_age, schema_max_age, stale_if_error, sync_interval, sync_limit, event_backlog
        )
        mode = settings.mode
        self._max_age = settings.max_age
        self.schema_max_age = settings.schema_max_age
        self.stale_if_error = settings.stale_if_error
        self._sync_interval = settings.sync_interval
        self.sync_limit = settings.sync_limit
        #: Seconds to keep asking for event ids that were missing (late commits).
        self.event_backlog = settings.event_backlog

        self.shotgun: Any = client_of(shotgun)  # a real client gets a pool
        parts = ((("identity", identity),) if identity else None) or identity_of(shotgun)
        if not parts:
            raise SessionConfigError(
                "cannot tell the permission identity of this client (no script name or "
                "user login); pass identity='...' so cached data stays in its own namespace"
            )
        self._given = (site, identity)
        self.site = (site or site_of(shotgun)).lower().rstrip("/")
        self.identity = ";".join(f"{k}={v}" for k, v in parts)
        #: Makes cache keys from normalised calls (``None``: the built-in fast, stable one).
        self.cache_key_maker: Optional[KeyMaker] = cache_key_maker
        self.stats = SessionStats()
        self._default_auto_populate = bool(auto_populate)
        #: Whether find/find_one/create also return the important fields and links.
        self.add_important = bool(add_important)
        self._default_mode = mode
        self._state = _ThreadState()
        self._closed = False
        self._next_sync = math.inf if self._sync_interval is None else 0.0
        self._tz = client_zone(shotgun)

        assemble(
            self,
            setting("cache", cache),
            parts,
            memory_max_entries=memory_max_entries,
            memory_max_bytes=memory_max_bytes,
            stats_interval=stats_interval,
            schema=schema,
            snapshots=snapshots,
        )

    def __repr__(self) -> str:
        return f"<Session {self.site} {self.identity} mode={self.mode}>"

    # ------------------------------------------------------------ per-thread state
    @property
    def auto_populate(self) -> bool:
        """Whether reading a missing field fetches it (stored per thread)."""
        value = self._state.auto_populate
        return self._default_auto_populate if value is None else value

    @auto_populate.setter
    def auto_populate(self, value: bool) -> None:
        self._state.auto_populate = bool(value)

    @contextlib.contextmanager
    def auto_populating(self, auto_populate: bool) -> Iterator[None]:
        """Within the block (and this thread), set :attr:`auto_populate`."""
        previous = self._state.auto_populate
        self._state.auto_populate = bool(auto_populate)
        try:
            yield
        finally:
            self._state.auto_populate = previous

    @property
    def mode(self) -> str:
        """``"direct"``, ``"cached"`` or ``"offline"``; see the docs on modes."""
        value = self._state.mode
        return self._default_mode if value is None else value

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise SessionConfigError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
        self._default_mode = value
        self._state.mode = None

    @contextlib.contextmanager
    def using_mode(self, mode: str) -> Iterator[None]:
        """Within the block (and this thread), use another mode."""
        if mode not in MODES:
            raise SessionConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        previous = self._state.mode
        self._state.mode = mode
        try:
            yield
        finally:
            self._state.mode = previous

    @contextlib.contextmanager
    def bypass(self) -> Iterator[None]:
        """Within the block (and this thread), neither read nor write the cache."""
        self._state.bypass += 1
        try:
            yield
        finally:
            self._state.bypass -= 1

    @property
    def max_age(self) -> float:
        """Seconds a cached answer stays fresh (``find(..., max_age=)`` overrides per call)."""
        return self._max_age

    @max_age.setter
    def max_age(self, value: Seconds) -> None:
        self._max_age = seconds(value, "max_age") or 0.0
        self._writer.ttl = self._record_ttl()

    def _record_ttl(self) -> float:
        return record_ttl(self._max_age, self.schema_max_age, self.stale_if_error)

    @property
    def sync_interval(self) -> Optional[float]:
        """Seconds between automatic syncs on reads, or ``None`` for none."""
        return self._sync_interval

    @sync_interval.setter
    def sync_interval(self, value: Optional[Seconds]) -> None:
        self._sync_interval = seconds(value, "sync_interval", allow_none=True)
        self._next_sync = math.inf if self._sync_interval is None else 0.0

    def _policy(self, max_age: Optional[Seconds] = None) -> Policy:
        """How the current call may use the cache."""
        if self._next_sync <= time.time():
            self._maybe_sync()
        state = self._state
        mode = state.mode or self._default_mode
        if max_age is None:
            age = self._max_age
        elif (max_age.__class__ is int or max_age.__class__ is float) and max_age >= 0:
            age = float(max_age)
        else:
            age = seconds(max_age, "max_age") or 0.0
        return Policy.of(mode, age, self.stale_if_error, state.bypass > 0)

    # ------------------------------------------------------------------ codec
    def encode(self, data: Any) -> str:
        """Return *data* as JSON text; entities become references with their fields."""
        return self._codec.encode(data)

    def decode(self, text: Union[str, bytes]) -> Any:
        """Decode text written by :meth:`encode`; entities are merged into this session."""
        return self._codec.decode(text)

    # ---------------------------------------------------------- freshness glue
    @property
    def namespace(self) -> str:
        """The prefix of every data key this session writes right now."""
        return f"{self._keys.base}|{self._freshness.epoch}"

    def _maybe_sync(self) -> None:
        interval = self._sync_interval
        self._next_sync = time.time() + (interval if interval is not None else math.inf)
        if self.mode == "offline" or self._state.bypass:
            return
        try:
            self.sync()
        except Exception as error:
            log.warning("automatic sync failed: %s", error)

    # ------------------------------------------------------------------ reads
    @overload
    def get(
        self,
        entity_type: str,
        id_or_ids: int,
        fields: Union[None, bool, str, Sequence[str]] = ...,
        fetch: bool = ...,
    ) -> Optional[Entity]: ...

    @overload
    def get(
        self,
        entity_type: str,
        id_or_ids: Sequence[int],
        fields: Union[None, bool, str, Sequence[str]] = ...,
        fetch: bool = ...,
    ) -> list[Optional[Entity]]: ...

    def get(
        self,
        entity_type: str,
        id_or_ids: Union[int, Sequence[int]],
        fields: Union[None, bool, str, Sequence[str]] = None,
        fetch: bool = True,
    ) -> Union[Optional[Entity], list[Optional[Entity]]]:
        """One entity by type and id (or a list for a list of ids); ``None`` if absent.

        An entity in memory or a record in any cache layer answers while it is fresh.
        *fields* (a name or a list) are fetched when an entity lacks them; *fetch*
        ``False`` never asks ShotGrid.  A bool in third place is *fetch*, as in
        sgsession's older ``get(type, id, fetch)``.
        """
        ids, names, fetch = get_arguments(entity_type, id_or_ids, fields, fetch)
        unique = list(dict.fromkeys(ids))
        found = self._graph.get_many(entity_type, unique, fetch, self._policy(), names)
        out = [found.get(i) for i in ids]
        return out[0] if isinstance(id_or_ids, int) else out

    def find(
        self,
        entity_type: str,
        filters: Any,
        fields: Optional[Sequence[str]] = None,
        order: Optional[Sequence[Mapping[str, Any]]] = None,
        filter_operator: Optional[str] = None,
        limit: int = 0,
        retired_only: bool = False,
        page: int = 0,
        include_archived_projects: bool = True,
        additional_filter_presets: Optional[list[dict[str, Any]]] = None,
        *,
        max_age: Optional[Seconds] = None,
    ) -> list[Entity]:
        """``Shotgun.find``, answered from the cache when a fresh answer is there."""
        if self.add_important:
            fields = self._graph.with_important(entity_type, fields)
        args = (
            entity_type,
            filters,
            fields,
            order,
            filter_operator,
            limit,
            retired_only,
            page,
            include_archived_projects,
            additional_filter_presets,
        )
        return self._reads.find(args, self._policy(max_age))

    def find_one(
        self,
        entity_type: str,
        filters: Any,
        fields: Optional[Sequence[str]] = None,
        order: Optional[Sequence[Mapping[str, Any]]] = None,
        filter_operator: Optional[str] = None,
        retired_only: bool = False,
        include_archived_projects: bool = True,
        additional_filter_presets: Optional[list[dict[str, Any]]] = None,
        *,
        max_age: Optional[Seconds] = None,
    ) -> Optional[Entity]:
        """``Shotgun.find_one``: the first match or ``None``."""
        rows = self.find(
            entity_type,
            filters,
            fields,
            order,
            filter_operator,
            1,
            retired_only,
            0,
            include_archived_projects,
            additional_filter_presets,
            max_age=max_age,
        )
        return rows[0] if rows else None

    def summarize(
        self,
        entity_type: str,
        filters: Any,
        summary_fields: Sequence[Mapping[str, Any]],
        filter_operator: Optional[str] = None,
        grouping: Optional[Sequence[Mapping[str, Any]]] = None,
        include_archived_projects: bool = True,
        *,
        max_age: Optional[Seconds] = None,
    ) -> Optional[dict[str, Any]]:
        """``Shotgun.summarize``, cached like a query."""
        args = (
            entity_type,
            filters,
            summary_fields,
            filter_operator,
            grouping,
            include_archived_projects,
        )
        answer = self._reads.summarize(args, self._policy(max_age))
        return cast(Optional[dict[str, Any]], answer)

    def text_search(
        self,
        text: str,
        entity_types: Mapping[str, Any],
        project_ids: Optional[Sequence[int]] = None,
        limit: Optional[int] = None,
        *,
        max_age: Optional[Seconds] = None,
    ) -> Any:
        """``Shotgun.text_search``, cached like a query over the types it searches."""
        policy = self._policy(max_age)
        return self._reads.text_search(text, entity_types, project_ids, limit, policy)

    def schema_read(
        self, project_entity: Optional[Mapping[str, Any]] = None
    ) -> Optional[dict[str, dict[str, dict[str, Any]]]]:
        """``Shotgun.schema_read``, cached with :attr:`schema_max_age`."""
        schema = self._schema("schema_read", (), project_entity)
        return cast(Optional[dict[str, dict[str, dict[str, Any]]]], schema)

    def schema_entity_read(
        self, project_entity: Optional[Mapping[str, Any]] = None
    ) -> Optional[dict[str, dict[str, Any]]]:
        """``Shotgun.schema_entity_read``, cached with :attr:`schema_max_age`."""
        schema = self._schema("schema_entity_read", (), project_entity)
        return cast(Optional[dict[str, dict[str, Any]]], schema)

    def schema_field_read(
        self,
        entity_type: str,
        field_name: Optional[str] = None,
        project_entity: Optional[Mapping[str, Any]] = None,
    ) -> Optional[dict[str, dict[str, Any]]]:
        """``Shotgun.schema_field_read``, cached with :attr:`schema_max_age`."""
        args = (entity_type, field_name)
        schema = self._schema("schema_field_read", args, project_entity)
        return cast(Optional[dict[str, dict[str, Any]]], schema)

    def _schema(
        self, method: str, args: tuple[Any, ...], project: Optional[Mapping[str, Any]]
    ) -> Any:
        return self._reads.schema(method, args, project, self._policy(self.schema_max_age))

    # -------------------------------------------------------------- fetching
    def populate_field(self, entity: Entity, name: str) -> Any:
        """Called by ``entity[name]`` for a missing field (the entity owner protocol)."""
        return self._graph.populate_field(entity, name)

    def index_backrefs(self) -> None:
        """Build the backref index (the entity owner protocol)."""
        self._identity.index_backrefs()

    def assign_fields(self, entity: Entity, fields: Mapping[str, Any]) -> None:
        """Merge what is assigned to an entity (the entity owner protocol)."""
        self._identity.assign(entity, fields)

    def fetch(self, entities: Iterable[Entity], fields: Iterable[str], force: bool = False) -> None:
        """Make sure *entities* hold *fields*, asking ShotGrid only for what is missing.

        Raises :class:`~sgcache_layers.entity.RetiredEntityError` for an entity that
        ShotGrid reports retired.
        """
        own = self._graph.own(entities, "fetch")
        self._graph.fetch(own, [fields] if isinstance(fields, str) else fields, force, True)

    def fetch_core(self, entities: Iterable[Entity]) -> None:
        """Fetch the important fields of *entities* and of the entities they link to."""
        self._graph.fetch_core(self._graph.own(entities, "fetch_core"))

    def fetch_backrefs(self, entities: Iterable[Entity], entity_type: str, field_name: str) -> None:
        """Find every *entity_type* whose *field_name* links to one of *entities*."""
        own = self._graph.own(entities, "fetch_backrefs")
        self._graph.fetch_backrefs(own, entity_type, field_name)

    def fetch_heirarchy(self, entities: Iterable[Entity]) -> list[Entity]:
        """Every entity from *entities* up to the project, with their important fields.

        Tasks on Shots and Assets take at most three requests, however many; backrefs
        between the entities are indexed.
        """
        return self._graph.fetch_heirarchy(self._graph.own(entities, "fetch_heirarchy"))

    fetch_hierarchy = fetch_heirarchy

    def filter_exists(
        self, entities: Iterable[Entity], check: bool = True, force: bool = False
    ) -> set[Entity]:
        """The entities that exist (are not retired), or whose state is unknown."""
        own = self._graph.own(entities, "filter_exists")
        return self._graph.filter_exists(own, check, force)

    def merge(self, data: Any, over: Optional[bool] = None) -> Any:
        """Import raw ShotGrid data: every entity-like dict becomes the session's Entity.

        *over* ``True`` lets new values win, ``False`` keeps old ones, and ``None`` (the
        default) lets the newer ``updated_at`` win.  Returns a copy of *data* with entities
        in place of dicts.  The entities at the top of *data* count as loaded now: ``get``
        serves them without a request while they are fresh (until a change to their type
        is seen), in this session only - merged data is never written to a cache layer.
        """
        return self._graph.merge(data, over)

    def warm(
        self,
        project: Any,
        entity_types: Optional[Sequence[str]] = None,
        fields: Optional[Mapping[str, Sequence[str]]] = None,
        *,
        progress: Optional[bool] = None,
    ) -> dict[str, Any]:
        """Fetch a project's entities so that reads of it can be answered offline.

        See the offline guide; returns a report of what was fetched.
        """
        return self._snapshots.warm(project, entity_types, fields, progress=progress)

    # ----------------------------------------------------------------- writes
    def _check_writable(self, method: str) -> None:
        if self.mode == "offline":
            raise OfflineError(f"{method}() needs ShotGrid, but the session is offline")

    def create(
        self,
        entity_type: str,
        data: Mapping[str, Any],
        return_fields: Optional[Sequence[str]] = None,
    ) -> Entity:
        """``Shotgun.create``; the new entity joins the identity map and the cache."""
        self._check_writable("create")
        if self.add_important:
            return_fields = self._graph.with_important(entity_type, return_fields)
        return self._writes.create(entity_type, data, return_fields)

    def update(
        self,
        entity_type: Any,
        entity_id: Any = None,
        data: Optional[Mapping[str, Any]] = None,
        multi_entity_update_modes: Optional[Mapping[str, str]] = None,
        **fields: Any,
    ) -> Any:
        """``Shotgun.update``; the new values are readable at once without a request.

        Besides ``update(type, id, data)``: ``update(entity, data)``,
        ``update(entity, **fields)`` and ``update([entity, ...], **fields)``, which writes
        them all in one batch and returns the list of entities.
        """
        self._check_writable("update")
        targets, values, many = self._writes.update_arguments(entity_type, entity_id, data, fields)
        if many:
            return self._writes.update_many(targets, values, multi_entity_update_modes)
        ((entity_type, entity_id),) = targets
        return self._writes.update(entity_type, entity_id, values, multi_entity_update_modes)

    def delete(self, entity_type: Any, entity_id: Optional[int] = None) -> bool:
        """``Shotgun.delete`` (retire); ``delete(entity)`` too.  ``get`` gives ``None`` after."""
        self._check_writable("delete")
        ((entity_type, entity_id),) = self._writes.targets(entity_type, entity_id, "delete")
        return self._writes.delete(entity_type, entity_id)

    def revive(self, entity_type: Any, entity_id: Optional[int] = None) -> bool:
        """``Shotgun.revive``; ``revive(entity)`` too.  The entity is served again."""
        self._check_writable("revive")
        ((entity_type, entity_id),) = self._writes.targets(entity_type, entity_id, "revive")
        return self._writes.revive(entity_type, entity_id)

    def batch(self, requests: Sequence[Mapping[str, Any]]) -> list[Any]:
        """``Shotgun.batch``; each result is kept in the cache like its single call."""
        self._check_writable("batch")
        return self._writes.batch(requests)

    # ------------------------------------------------------------------ sync
    def sync(self) -> int:
        """Read new ``EventLogEntry`` rows and invalidate what they changed.

        Returns the number of events read.  The first sync in a namespace, a gap in event
        ids, or more events than ``sync_limit`` flushes the namespace.  The ids of a gap
        are asked for again for :attr:`event_backlog` seconds: an event whose transaction
        commits late is applied when it shows up.
        """
        if self.mode == "offline":
            return 0
        self.stats.syncs += 1
        if self._sync_interval is not None:
            self._next_sync = time.time() + self._sync_interval
        self._events.limit = self.sync_limit
        self._events.backlog = self.event_backlog
        return self._events.sync()

    def flush(self) -> None:
        """Forget everything cached in this namespace, in every layer and process."""
        self._events.flush()

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until every record this session has queued is written to its layers.

        Answers are stored from a background thread so that a read never waits for the
        cache; other processes see them a moment later.  ``close()`` and interpreter exit
        drain too.  Returns ``False`` if *timeout* seconds passed first.  This process's
        counters are written to the shared layer too (if they moved).
        """
        done = self._writer.flush(timeout)
        self._farm.publish()
        return done

    # -------------------------------------------------------------- lifecycle
    def reset(self) -> None:
        """Clear the memory layer and the identity map; persistent layers keep their records."""
        self._writer.flush()
        memory = self._layout.memory
        if memory is not None:
            with contextlib.suppress(Exception):
                memory.clear()
        self._identity.clear()

    def close(self) -> None:
        """Write what is pending, then close the cache layers and the ShotGrid connections."""
        if self._closed:
            return
        self._closed = True
        self._requests.closed = True
        self._writer.close()
        self._pages.shutdown()
        self._farm.close()  # the final counters, before the layers close
        with contextlib.suppress(Exception):
            self.cache.close()
        close = getattr(self.shotgun, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def attach(
        self,
        shotgun: Any,
        cache: CacheArg = FROM_ENVIRONMENT,
        cache_key_maker: Optional[KeyMaker] = None,
    ) -> None:
        """Give a session that was unpickled its client (and cache layers) again.

        A pickled session keeps its settings and entities but not its client, cache
        layers or locks (see :mod:`~sgcache_layers.detached`).  The client must be of the
        same site and identity; the entities stay the same objects and are asked for again
        on their next ``get``.
        """
        attach(self, shotgun, cache, cache_key_maker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (restore, (type(self), session_state(self)))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # Anything the session does not define goes to the client, like sgsession;
            # private names too (tools call _call_rpc), dunder names never.
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            try:
                shotgun = self.__dict__["shotgun"]
            except KeyError:
                raise AttributeError(name) from None
            return getattr(shotgun, name)
