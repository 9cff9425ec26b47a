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
* :mod:`~sgcache_layers.upkeep`: what a write moves.

``session.cache`` is always a :class:`~sgcache_layers.cache.LayeredCache` whose first layer
is a :class:`~sgcache_layers.cache.MemoryCache`, followed by the cache the caller gave.
A session is safe to use from many threads at once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from . import codec, records
from .answers import Answers, Policy
from .cache import Cache, CacheBackendError, LayeredCache, MemoryCache
from .entity import NOT_SET, Entity
from .events import SCHEMA_TYPE
from .fetching import Requests, WriteBehind, find_rows, make_executor
from .freshness import EventLog, Freshness, Layout
from .identity import UNCONFIRMED, IdentityMap
from .keys import KeyMaker
from .pool import ShotgunPool
from .query import (
    QueryError,
    _value_key,
    call_digest,
    dependent_types,
    has_plain_repr,
    normalise_fields,
    normalise_filters,
    normalise_order,
)
from .records import FORMAT_VERSION, Keys, Namespace
from .upkeep import Writes

__all__ = ["FORMAT_VERSION", "OfflineError", "Session", "SessionConfigError", "SessionStats"]

log = logging.getLogger("sgcache_layers.session")

MODES = ("direct", "cached", "offline")

CacheArg = Union[None, Cache, Callable[["Session"], Optional[Cache]]]
Seconds = Union[int, float, _dt.timedelta]


class OfflineError(RuntimeError):
    """A write (or other server-only call) was made while the session is offline."""


class SessionConfigError(ValueError):
    """The session could not be configured (missing environment, bad argument)."""


def _seconds(value: Any, name: str, allow_none: bool = False) -> Optional[float]:
    """Seconds from a number or a ``timedelta``, or a :class:`SessionConfigError`."""
    if value is None and allow_none:
        return None
    total = getattr(value, "total_seconds", None)
    if callable(total):
        value = total()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise SessionConfigError(f"{name} must be seconds >= 0 (or a timedelta), not {value!r}")
    return float(value)


def _stale_limit(value: Any) -> Union[bool, float]:
    if isinstance(value, bool):
        return value
    limit = _seconds(value, "stale_if_error")
    assert limit is not None
    return limit


@dataclass
class SessionStats:
    """Counters a session keeps: requests by method, cache hits and misses by layer.

    ``hits`` and ``misses`` count answers looked up in the cache: ``query`` for ``find``,
    ``summarize`` and schema answers, ``cache`` for entities' own records.  A ``get``
    answered by an entity already in memory is not counted.
    """

    requests: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)
    stale_served: int = 0
    syncs: int = 0
    flushes: int = 0
    cache: Optional[LayeredCache] = field(default=None, repr=False, compare=False)
    store: Optional[Callable[[], Optional[LayeredCache]]] = field(
        default=None, repr=False, compare=False
    )

    @property
    def layers(self) -> list[dict[str, Any]]:
        """Hits, misses and errors of each layer of ``session.cache``.

        Records read from the layers after memory directly count there.
        """
        if self.cache is None:
            return []
        rows: list[dict[str, Any]] = [dict(s) for s in self.cache.stats()]
        store = self.store() if self.store is not None else None
        if store is not None:
            for row, extra in zip(rows[1:], store.stats()):
                for name in ("hits", "misses", "errors"):
                    row[name] += extra[name]  # type: ignore[literal-required,unused-ignore]
        return rows

    @property
    def request_count(self) -> int:
        """Total number of ShotGrid requests made."""
        return sum(self.requests.values())

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of every counter, for printing or JSON."""
        return {
            "requests": dict(self.requests),
            "hits": dict(self.hits),
            "misses": dict(self.misses),
            "stale_served": self.stale_served,
            "syncs": self.syncs,
            "flushes": self.flushes,
            "layers": self.layers,
        }


class _ThreadState(threading.local):
    auto_populate: Optional[bool] = None
    mode: Optional[str] = None
    bypass: int = 0


def _site_of(shotgun: Any) -> str:
    """The site URL, lower-cased, without credentials or a trailing slash."""
    config = getattr(shotgun, "config", None)
    scheme = getattr(config, "scheme", None)
    server = getattr(config, "server", None)
    url = f"{scheme}://{server}" if scheme and server else str(getattr(shotgun, "base_url", ""))
    url = url.lower().rstrip("/")
    scheme_part, sep, rest = url.partition("://")
    if sep:
        url = scheme_part + sep + rest.rpartition("@")[2]
    return url


def _identity_of(shotgun: Any) -> Optional[tuple[tuple[str, str], ...]]:
    """The permission identity of a client: script or user, plus sudo (never a secret)."""
    config = getattr(shotgun, "config", None)
    script = getattr(config, "script_name", None)
    login = getattr(config, "user_login", None)
    sudo = getattr(config, "sudo_as_login", None)
    parts: list[tuple[str, str]]
    if script:
        parts = [("script", str(script))]
    elif login:
        parts = [("user", str(login))]
    elif "mockgun" in type(shotgun).__module__:
        parts = [("mockgun", "local")]  # Mockgun keeps no credentials; its data is local
    else:
        return None
    if sudo:
        parts.append(("sudo", str(sudo)))
    return tuple(parts)


def _options_of(shotgun: Any) -> tuple[tuple[str, str], ...]:
    """Client options that change what answers look like."""
    config = getattr(shotgun, "config", None)
    utc = getattr(config, "convert_datetimes_to_utc", True)
    localized = getattr(config, "localized", False)
    return (("tz", "local" if utc else "utc"), ("l10n", "1" if localized else "0"))


def _client_zone(shotgun: Any) -> Optional[_dt.tzinfo]:
    """The zone the client gives aware datetimes in (``None``: leave them as stored)."""
    config = getattr(shotgun, "config", None)
    if config is None or not getattr(config, "convert_datetimes_to_utc", False):
        return None
    try:
        from shotgun_api3.shotgun import SG_TIMEZONE
    except ImportError:  # pragma: no cover - a core dependency
        return None
    zone: Optional[_dt.tzinfo] = getattr(SG_TIMEZONE, "local", None)
    return zone


def _copy_value(value: Any) -> Any:
    """A copy deep enough that callers cannot alter a cached answer."""
    if isinstance(value, list):
        return [_copy_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy_value(v) for k, v in value.items()}
    return value


class Session:
    """A ``shotgun_api3``-compatible session that caches reads in layers."""

    #: Fields fetched for every entity that :meth:`get` or :meth:`fetch_core` loads.
    important_fields_for_all: list[str] = ["updated_at"]
    #: Extra fields fetched per type by :meth:`get` and :meth:`fetch_core`.
    important_fields: dict[str, list[str]] = {
        "Project": ["name"],
        "Sequence": ["code", "project"],
        "Shot": ["code", "sg_sequence", "sg_status_list", "project"],
        "Asset": ["code", "sg_asset_type", "sg_status_list", "project"],
        "Step": ["code", "short_name", "entity_type"],
        "Task": ["content", "step", "entity", "sg_status_list", "project"],
        "Version": ["code", "entity", "sg_task", "sg_status_list", "project"],
        "PublishedFile": ["code", "entity", "task", "version_number", "project"],
        "HumanUser": ["login", "name"],
        "ApiUser": ["firstname"],
    }
    #: The field that points at each type's parent, for :meth:`fetch_heirarchy`.
    parent_fields: dict[str, Optional[str]] = {
        "Project": None,
        "Sequence": "project",
        "Shot": "sg_sequence",
        "Asset": "project",
        "Task": "entity",
        "Version": "entity",
        "PublishedFile": "entity",
        "Note": "project",
    }

    def __init__(
        self,
        shotgun: Any = None,
        cache: CacheArg = None,
        cache_key_maker: Optional[KeyMaker] = None,
        auto_populate: bool = True,
        *,
        mode: str = "cached",
        max_age: Seconds = 600.0,
        schema_max_age: Seconds = 3600.0,
        stale_if_error: Union[bool, Seconds] = True,
        sync_interval: Optional[Seconds] = None,
        sync_limit: int = 5000,
        event_backlog: Seconds = 300.0,
        site: Optional[str] = None,
        identity: Optional[str] = None,
    ) -> None:
        if shotgun is None:
            shotgun = self._shotgun_from_environment()
        if mode not in MODES:
            raise SessionConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self._max_age = _seconds(max_age, "max_age") or 0.0
        self.schema_max_age = _seconds(schema_max_age, "schema_max_age") or 0.0
        self.stale_if_error = _stale_limit(stale_if_error)
        self._sync_interval = _seconds(sync_interval, "sync_interval", allow_none=True)
        if not isinstance(sync_limit, int) or sync_limit < 1:
            raise SessionConfigError(f"sync_limit must be an int >= 1, not {sync_limit!r}")
        self.sync_limit = sync_limit
        #: Seconds to keep asking for event ids that were missing (late commits).
        self.event_backlog = _seconds(event_backlog, "event_backlog") or 0.0

        # A real client is wrapped in a pool so the session is thread-safe; any other
        # object (a Mockgun, a test double) is used as it is.
        self.shotgun: Any = shotgun
        try:
            from shotgun_api3.shotgun import Shotgun as _Shotgun

            if isinstance(shotgun, _Shotgun):
                self.shotgun = ShotgunPool(shotgun)
        except ImportError:  # pragma: no cover - shotgun_api3 is a core dependency
            pass
        parts = ((("identity", identity),) if identity else None) or _identity_of(shotgun)
        if not parts:
            raise SessionConfigError(
                "cannot tell the permission identity of this client (no script name or "
                "user login); pass identity='...' so cached data stays in its own namespace"
            )
        self.site = (site or _site_of(shotgun)).lower().rstrip("/")
        self.identity = ";".join(f"{k}={v}" for k, v in parts)
        #: Makes cache keys from normalised calls (``None``: the built-in fast, stable one).
        self.cache_key_maker: Optional[KeyMaker] = cache_key_maker
        self.stats = SessionStats()
        self._default_auto_populate = bool(auto_populate)
        self._default_mode = mode
        self._state = _ThreadState()
        self._closed = False
        self._next_sync = math.inf if self._sync_interval is None else 0.0
        self._policies: dict[tuple[Any, ...], Policy] = {}
        self._plans: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
        self._tz = _client_zone(shotgun)
        self._value_decode = codec.make_decoder(self._decode_entity)

        self.cache = LayeredCache([MemoryCache()] + self._extra_layers(cache))
        self._keys = Keys(Namespace(self.site, parts, _options_of(shotgun)).base)
        self._layout = Layout(self.cache)
        self._identity = IdentityMap(self, self._still_current)
        self._freshness = Freshness(self._keys, self._layout, on_epoch=self._on_epoch)
        self._requests = Requests(self.shotgun, self.stats.requests)
        self._pages = make_executor()
        self._writer = WriteBehind()
        self._answers = Answers(
            keys=self._keys,
            layout=self._layout,
            freshness=self._freshness,
            identity=self._identity,
            requests=self._requests,
            writer=self._writer,
            stats=self.stats,
        )
        self._writes = Writes(
            freshness=self._freshness,
            identity=self._identity,
            answers=self._answers,
            request=self._requests,
            outbound=self._outbound,
        )
        self._events = EventLog(
            self._freshness,
            self._requests,
            limit=sync_limit,
            backlog=self.event_backlog,
            on_flush=self._flushed,
        )
        self.stats.cache = self.cache
        self.stats.store = lambda: self._layout.store

    # ------------------------------------------------------------------ set-up
    def _extra_layers(self, cache: CacheArg) -> list[Cache]:
        extra: Any = cache
        if callable(cache) and not isinstance(cache, Cache):
            try:
                extra = cache(self)
            except (CacheBackendError, OSError) as error:
                # A broken persistent layer must not stop the tool: run on memory alone.
                log.warning("the session's cache could not be opened; using memory only: %s", error)
                extra = None
        if extra is None:
            return []
        if not isinstance(extra, Cache):
            raise SessionConfigError(
                f"cache must be a Cache or a callable returning one, not {type(extra).__name__}"
            )
        return [extra]

    @staticmethod
    def _shotgun_from_environment() -> Any:
        names = ("SG_URL", "SG_SCRIPT", "SG_API_KEY")
        missing = [name for name in names if not os.environ.get(name)]
        if missing:
            raise SessionConfigError(
                "no shotgun client given and the environment does not say how to make one: "
                f"set {', '.join(missing)}"
            )
        from shotgun_api3.shotgun import Shotgun

        return Shotgun(
            os.environ["SG_URL"], os.environ["SG_SCRIPT"], os.environ["SG_API_KEY"], connect=False
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
        self._max_age = _seconds(value, "max_age") or 0.0

    @property
    def sync_interval(self) -> Optional[float]:
        """Seconds between automatic syncs on reads, or ``None`` for none."""
        return self._sync_interval

    @sync_interval.setter
    def sync_interval(self, value: Optional[Seconds]) -> None:
        self._sync_interval = _seconds(value, "sync_interval", allow_none=True)
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
            age = _seconds(max_age, "max_age") or 0.0
        memo = (mode, age, self.stale_if_error, state.bypass > 0)
        policy = self._policies.get(memo)
        if policy is None:
            if len(self._policies) > 64:
                self._policies.clear()
            policy = self._policies[memo] = Policy(*memo)
        return policy

    # ------------------------------------------------------------------ codec
    def encode(self, data: Any) -> str:
        """Return *data* as JSON text; entities become references with their fields."""
        if records.is_record(data):
            return records.encode(data)
        body = codec.escape(data, self._entity_ref)
        return '["~sgclv",' + codec.dumps(body, escape=False) + "]"

    def decode(self, text: Union[str, bytes]) -> Any:
        """Decode text written by :meth:`encode`; entities are merged into this session."""
        if records.is_text_record(text):
            return records.decode(text, self._tz)
        value = self._value_decode(text)
        if value.__class__ is not list or len(value) != 2 or value[0] != "~sgclv":
            raise codec.CodecError("not a value written by Session.encode")
        return value[1]

    def _entity_ref(self, data: Any, top: bool = True) -> Any:
        """The tagged reference an entity is encoded as (``None`` for anything else)."""
        if not isinstance(data, Entity):
            return None
        ref: dict[str, Any] = {codec.TAG: "entity", "type": data.type, "id": data.id}
        if top:
            inner = lambda value: self._entity_ref(value, top=False)  # noqa: E731
            ref["fields"] = {
                codec.escape_key(name): codec.escape(value, inner)
                for name, value in dict.items(data)
                if name not in ("type", "id")
            }
        else:
            name = dict.get(data, "name")
            if name is not None:
                ref["fields"] = {"name": codec.escape(name)}
        return ref

    def _decode_entity(self, obj: dict[str, Any]) -> Any:
        etype, eid = obj.get("type"), obj.get("id")
        if not isinstance(etype, str) or not isinstance(eid, int):
            return obj
        entity = self._identity.entity(etype, eid)
        fields = obj.get("fields")
        if isinstance(fields, dict):
            self._identity.merge_fields(entity, fields, over=None)
        return entity

    # ---------------------------------------------------------- freshness glue
    @property
    def namespace(self) -> str:
        """The prefix of every data key this session writes right now."""
        return f"{self._keys.base}|{self._freshness.epoch}"

    def _still_current(self, deps: Mapping[str, str]) -> bool:
        return self._answers.still_current(deps)

    def _on_epoch(self, epoch: str) -> None:
        """Another process flushed: what this process built belongs to the old epoch."""
        memory = self._layout.memory
        if memory is not None:
            with contextlib.suppress(Exception):
                memory.clear()
        self._identity.invalidate()

    def _flushed(self) -> None:
        self.stats.flushes += 1

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
    def get(
        self,
        entity_type: str,
        id_or_ids: Union[int, Sequence[int]],
        fetch: bool = True,
    ) -> Any:
        """One entity by type and id (or a list for a list of ids); ``None`` if absent.

        An entity in memory or a record in any cache layer answers while it is fresh.
        """
        if not isinstance(entity_type, str) or not entity_type:
            raise QueryError(f"entity_type must be a non-empty string, not {entity_type!r}")
        if isinstance(id_or_ids, bool) or not isinstance(id_or_ids, (int, list, tuple)):
            raise TypeError(
                f"get() takes an int id or a list of ids, not {type(id_or_ids).__name__}"
            )
        ids = [id_or_ids] if isinstance(id_or_ids, int) else list(id_or_ids)
        for entity_id in ids:
            if isinstance(entity_id, bool) or not isinstance(entity_id, int):
                raise TypeError(f"entity ids must be int, not {type(entity_id).__name__}")
        found = self._get_many(entity_type, list(dict.fromkeys(ids)), fetch, self._policy())
        out = [found.get(i) for i in ids]
        return out[0] if isinstance(id_or_ids, int) else out

    def _get_many(
        self, entity_type: str, ids: list[int], fetch: bool, policy: Policy
    ) -> dict[int, Optional[Entity]]:
        answers = self._answers
        found: dict[int, Optional[Entity]] = {}
        if policy.reads or policy.offline:
            unstored: list[Entity] = []
            for entity_id in ids:
                entity = self._identity.get(entity_type, entity_id)
                if answers.live(entity, policy):
                    assert entity is not None
                    found[entity_id] = None if entity._exists is False else entity
                    if entity._stored is not entity._deps and entity._exists:
                        unstored.append(entity)
            if unstored and policy.writes:
                # Known from an answer: leave its own record for other processes' gets.
                answers.store_entities(unstored)
            wanted = [i for i in ids if i not in found]
            found.update(answers.from_records(entity_type, wanted, policy))
        wanted = [i for i in ids if i not in found]
        if wanted and not policy.offline and fetch:
            known: set[str] = set()
            for entity_id in wanted:
                entity = self._identity.get(entity_type, entity_id)
                if entity is not None:
                    known.update(n for n in dict.keys(entity) if "." not in n)
            fields = self._core_fields(entity_type, known)
            found.update(answers.fetch_ids(entity_type, wanted, fields, policy))
        elif wanted and not fetch and not policy.offline:
            for entity_id in wanted:
                found[entity_id] = self._identity.entity(entity_type, entity_id)
        return found

    def _core_fields(self, entity_type: str, known: Iterable[str] = ()) -> list[str]:
        """Important fields of a type plus the fields an entity already holds.

        ``name`` is left out unless important: on most types it only arrived as a link's
        display name and is not a field ShotGrid could return.
        """
        names = set(self.important_fields_for_all)
        names.update(self.important_fields.get(entity_type, ()))
        names.update(n for n in known if n not in ("type", "id", "name"))
        return sorted(names)

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
        try:
            signature: Optional[str] = repr(args)
        except Exception:  # an argument that cannot show itself: plan without the memo
            signature = None
        plan = self._plans.get(signature) if signature is not None else None
        if plan is None:
            plan = self._plan_find(*args)
            if signature is not None and has_plain_repr(args):
                if len(self._plans) > 4096:
                    self._plans.clear()
                self._plans[signature] = plan
        digest, nfields, nfilters = plan
        policy = self._policy(max_age)
        found = self._answers.find_cached(digest, entity_type, policy)
        if found is not None:
            return found

        def deps() -> list[str]:
            return dependent_types(entity_type, nfields, nfilters)

        def ask() -> list[dict[str, Any]]:
            self._requests.count("find")
            if self._requests.closed:
                raise RuntimeError("this session is closed")
            return find_rows(
                self.shotgun,
                self._pages,
                entity_type,
                self._outbound(filters),
                nfields,
                order=order,
                filter_operator=filter_operator,
                limit=limit,
                retired_only=retired_only,
                page=page,
                include_archived_projects=include_archived_projects,
                additional_filter_presets=additional_filter_presets,
            )

        return self._answers.find(digest, entity_type, deps, ask, policy)

    def _plan_find(
        self,
        entity_type: Any,
        filters: Any,
        fields: Any,
        order: Any,
        filter_operator: Any,
        limit: Any,
        retired_only: Any,
        page: Any,
        include_archived_projects: Any,
        additional_filter_presets: Any,
    ) -> tuple[str, list[str], dict[str, Any]]:
        """Check and normalise a ``find`` call: its key digest, fields and filters."""
        if not isinstance(entity_type, str) or not entity_type:
            raise QueryError(f"entity_type must be a non-empty string, not {entity_type!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise QueryError(f"limit must be an int >= 0, not {limit!r}")
        if isinstance(page, bool) or not isinstance(page, int) or page < 0:
            raise QueryError(f"page must be an int >= 0, not {page!r}")
        nfields = normalise_fields(fields)
        nfilters = normalise_filters(filters, filter_operator)
        call = {
            "m": "find",
            "t": entity_type,
            "f": nfilters,
            "fl": nfields,
            "o": normalise_order(order),
            "l": limit,
            "p": page,
            "r": bool(retired_only),
            "a": bool(include_archived_projects),
            "x": _value_key(additional_filter_presets or []),
        }
        return self._digest(call), nfields, nfilters

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

    def _digest(self, call: Any) -> str:
        if self.cache_key_maker is None:
            return call_digest(call)
        return Keys.digest(self.cache_key_maker.key(call))

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
    ) -> Any:
        """``Shotgun.summarize``, cached like a query."""
        if not isinstance(entity_type, str) or not entity_type:
            raise QueryError(f"entity_type must be a non-empty string, not {entity_type!r}")
        for name, items in (("summary_fields", summary_fields), ("grouping", grouping or [])):
            if not isinstance(items, (list, tuple)) or not all(
                isinstance(i, Mapping) and isinstance(i.get("field"), str) for i in items
            ):
                raise QueryError(
                    f"{name} must be a list of {{'field': ..., 'type': ...}} dicts, not {items!r}"
                )
        nfilters = normalise_filters(filters, filter_operator)
        summaries = sorted([str(s["field"]), str(s.get("type"))] for s in summary_fields)
        groups = [
            [str(g["field"]), str(g.get("type")), str(g.get("direction", "asc"))]
            for g in (grouping or [])
        ]
        call = {
            "m": "summarize",
            "t": entity_type,
            "f": nfilters,
            "s": summaries,
            "g": groups,
            "a": bool(include_archived_projects),
        }
        paths = [s[0] for s in summaries] + [g[0] for g in groups]
        deps = dependent_types(entity_type, paths, nfilters)
        kwargs: dict[str, Any] = {}
        if filter_operator:
            kwargs["filter_operator"] = filter_operator
        if grouping:
            kwargs["grouping"] = [dict(g) for g in grouping]
        if not include_archived_projects:
            kwargs["include_archived_projects"] = False
        outbound = self._outbound(filters)
        fields = [dict(s) for s in summary_fields]

        def ask() -> Any:
            return self._requests("summarize", entity_type, outbound, fields, **kwargs)

        return self._answers.value(
            "v", entity_type, self._digest(call), deps, ask, self._policy(max_age), _copy_value
        )

    def schema_read(self, project_entity: Optional[Mapping[str, Any]] = None) -> Any:
        """``Shotgun.schema_read``, cached with :attr:`schema_max_age`."""
        return self._schema_call("schema_read", (), project_entity)

    def schema_entity_read(self, project_entity: Optional[Mapping[str, Any]] = None) -> Any:
        """``Shotgun.schema_entity_read``, cached with :attr:`schema_max_age`."""
        return self._schema_call("schema_entity_read", (), project_entity)

    def schema_field_read(
        self,
        entity_type: str,
        field_name: Optional[str] = None,
        project_entity: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """``Shotgun.schema_field_read``, cached with :attr:`schema_max_age`."""
        return self._schema_call("schema_field_read", (entity_type, field_name), project_entity)

    def _schema_call(
        self, method: str, args: tuple[Any, ...], project_entity: Optional[Mapping[str, Any]]
    ) -> Any:
        project = None
        if project_entity is not None:
            project = {"type": project_entity["type"], "id": project_entity["id"]}
        call = {"m": method, "a": list(args), "p": project}
        call_args: list[Any] = list(args)
        while call_args and call_args[-1] is None:
            call_args.pop()

        def ask() -> Any:
            if project is not None:
                return self._requests(method, *call_args, project_entity=project)
            return self._requests(method, *call_args)

        policy = self._policy(self.schema_max_age)
        return self._answers.value(
            "s", method, self._digest(call), [SCHEMA_TYPE], ask, policy, _copy_value
        )

    # -------------------------------------------------------------- fetching
    def populate_field(self, entity: Entity, name: str) -> Any:
        """Called by ``entity[name]`` for a missing field (the entity owner protocol)."""
        if not self.auto_populate:
            return NOT_SET
        self.fetch([entity], [name])
        try:
            return dict.__getitem__(entity, name)
        except KeyError:
            if self.mode == "offline":
                return NOT_SET
            if entity._exists is False:
                raise KeyError(
                    f"{entity.type} {entity.id} is retired or does not exist, so it has no "
                    f"field {name!r}"
                ) from None
            raise KeyError(
                f"{entity.type} {entity.id} has no field {name!r} (ShotGrid did not return it)"
            ) from None

    def index_backrefs(self) -> None:
        """Build the backref index (the entity owner protocol)."""
        self._identity.index_backrefs()

    def fetch(self, entities: Iterable[Entity], fields: Iterable[str], force: bool = False) -> None:
        """Make sure *entities* hold *fields*, asking ShotGrid only for what is missing."""
        names = normalise_fields(list(fields))
        policy = self._policy()
        by_type: dict[str, list[Entity]] = {}
        for entity in entities:
            if force or any(not dict.__contains__(entity, n) for n in names):
                by_type.setdefault(entity.type, []).append(entity)
        if not by_type or not names:
            return
        answers = self._answers
        for entity_type, group in by_type.items():
            if (policy.reads or policy.offline) and not force:
                answers.from_records(entity_type, [e.id for e in group], policy)
                group = [e for e in group if any(not dict.__contains__(e, n) for n in names)]
            if not group or policy.offline:
                continue
            wanted = sorted(set(names) | {"updated_at"})
            answers.fetch_ids(entity_type, [e.id for e in group], wanted, policy)

    def fetch_core(self, entities: Iterable[Entity]) -> None:
        """Fetch the important fields of *entities* and of the entities they link to."""
        entities = list(entities)
        by_type: dict[str, list[Entity]] = {}
        for entity in entities:
            by_type.setdefault(entity.type, []).append(entity)
        linked: list[Entity] = []
        for entity_type, group in by_type.items():
            names = self._core_fields(entity_type)
            self.fetch(group, names)
            for entity in group:
                for name in names:
                    value = dict.get(entity, name)
                    if isinstance(value, Entity):
                        linked.append(value)
        second: dict[str, list[Entity]] = {}
        for entity in linked:
            second.setdefault(entity.type, []).append(entity)
        for entity_type, group in second.items():
            self.fetch(group, self._core_fields(entity_type))

    def fetch_backrefs(self, entities: Iterable[Entity], entity_type: str, field_name: str) -> None:
        """Find every *entity_type* whose *field_name* links to one of *entities*."""
        links = [e.minimal for e in entities]
        if links:
            self.find(entity_type, [[field_name, "in", links]], [field_name])

    def fetch_heirarchy(self, entities: Iterable[Entity]) -> list[Entity]:
        """Fetch parents up to the project; return every entity involved."""
        involved: dict[tuple[str, int], Entity] = {}
        current = list(entities)
        while current:
            for entity in current:
                involved[entity.key] = entity
            by_field: dict[tuple[str, str], list[Entity]] = {}
            for entity in current:
                parent_field = self.parent_fields.get(entity.type)
                if parent_field:
                    by_field.setdefault((entity.type, parent_field), []).append(entity)
            for (_, parent_field), group in by_field.items():
                self.fetch(group, [parent_field])
            parents = [e.parent(fetch=False) for e in current]
            current = list(
                {p.key: p for p in parents if p is not None and p.key not in involved}.values()
            )
        return list(involved.values())

    fetch_hierarchy = fetch_heirarchy

    def filter_exists(
        self, entities: Iterable[Entity], check: bool = True, force: bool = False
    ) -> set[Entity]:
        """The entities that exist (are not retired), or whose state is unknown."""
        entities = list(entities)
        if check and self.mode != "offline":
            by_type: dict[str, list[Entity]] = {}
            for entity in entities:
                if force or entity._exists is None:
                    by_type.setdefault(entity.type, []).append(entity)
            for entity_type, group in by_type.items():
                ids = [e.id for e in group]
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    rows = self._requests("find", entity_type, [["id", "in", chunk]], [])
                    alive = {row["id"] for row in rows}
                    for entity in group:
                        if entity.id in chunk:
                            entity._exists = entity.id in alive
        return {e for e in entities if e._exists is not False}

    def merge(self, data: Any, over: Optional[bool] = None) -> Any:
        """Import raw ShotGrid data: every entity-like dict becomes the session's Entity.

        *over* ``True`` lets new values win, ``False`` keeps old ones, and ``None`` (the
        default) lets the newer ``updated_at`` win.  Returns a copy of *data* with entities
        in place of dicts.
        """
        return self._identity.merge(data, over, UNCONFIRMED)

    # ----------------------------------------------------------------- writes
    def _check_writable(self, method: str) -> None:
        if self.mode == "offline":
            raise OfflineError(f"{method}() needs ShotGrid, but the session is offline")

    def _outbound(self, data: Any) -> Any:
        """Entities become plain links before they are sent to ShotGrid."""
        if isinstance(data, Entity):
            return data.minimal
        if isinstance(data, Mapping):
            return {k: self._outbound(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self._outbound(v) for v in data]
        return data

    def create(
        self,
        entity_type: str,
        data: Mapping[str, Any],
        return_fields: Optional[Sequence[str]] = None,
    ) -> Entity:
        """``Shotgun.create``; the new entity joins the identity map and the cache."""
        self._check_writable("create")
        return self._writes.create(entity_type, data, return_fields)

    def update(
        self,
        entity_type: str,
        entity_id: int,
        data: Mapping[str, Any],
        multi_entity_update_modes: Optional[Mapping[str, str]] = None,
    ) -> Entity:
        """``Shotgun.update``; the new values are readable at once without a request."""
        self._check_writable("update")
        return self._writes.update(entity_type, entity_id, data, multi_entity_update_modes)

    def delete(self, entity_type: str, entity_id: int) -> bool:
        """``Shotgun.delete`` (retire); the entity is no longer served by :meth:`get`."""
        self._check_writable("delete")
        return self._writes.delete(entity_type, entity_id)

    def revive(self, entity_type: str, entity_id: int) -> bool:
        """``Shotgun.revive``; the entity is served again."""
        self._check_writable("revive")
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
        drain too.  Returns ``False`` if *timeout* seconds passed first.
        """
        return self._writer.flush(timeout)

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
        self._pages.shutdown()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            self.cache.close()
        close = getattr(self.shotgun, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

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
