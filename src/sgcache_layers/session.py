"""The Session: a caching, entity-aware stand-in for ``shotgun_api3.Shotgun``.

A session keeps one :class:`~sgcache_layers.entity.Entity` per ``(type, id)``,
merges every answer into those instances, and stores what it learns in
``session.cache``: always a :class:`~sgcache_layers.cache.LayeredCache` whose
first layer is a :class:`~sgcache_layers.cache.MemoryCache`, followed by the
cache the caller gave (disk, Redis, anything subclassing ``Cache``).

What is stored (see the docs' "What is stored" page):

* entity records: an entity's fields and the time they were fetched;
* query records: the ``(type, id)`` list a ``find`` returned, the time, and the
  *generation* of every entity type the answer depends on;
* generations: one unique token per entity type, replaced whenever a write
  through any session (or an event read by :meth:`Session.sync`) changes that
  type.  They live in the shared layers, so every process sees them at once.

Every key starts with a namespace made of the format version, the site and the
permission identity (script name or user login, and ``sudo_as_login``); two
identities never read each other's entries and no secret is ever in a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from . import codec
from .cache import (
    Cache,
    CacheBackendError,
    LayeredCache,
    MemoryCache,
    ProxyCache,
    SerialisedCache,
)
from .entity import NOT_SET, Entity
from .events import EVENT_FIELDS, SCHEMA_TYPE, Changes, changes_from_events, missing_ids
from .keys import KeyMaker, ObjectKeyMaker
from .pool import ShotgunPool
from .query import (
    QueryError,
    dependent_types,
    normalise_fields,
    normalise_filters,
    normalise_order,
)

__all__ = ["FORMAT_VERSION", "OfflineError", "Session", "SessionConfigError", "SessionStats"]

log = logging.getLogger("sgcache_layers.session")

#: Version of the record format; part of every key and every record.
FORMAT_VERSION = 1

MODES = ("direct", "cached", "offline")

_time = time.time

CacheArg = Union[None, Cache, Callable[["Session"], Optional[Cache]]]


class OfflineError(RuntimeError):
    """A write (or other server-only call) was made while the session is offline."""


class SessionConfigError(ValueError):
    """The session could not be configured (missing environment, bad argument)."""


@dataclass
class SessionStats:
    """Counters a session keeps: requests by method, cache hits and misses by layer.

    ``hits`` and ``misses`` count look-ups in the cache layers: ``cache`` for entity
    records, ``query`` for query and value records.  A :meth:`Session.get` answered
    by a live entity that is still fresh is not counted: that path is kept as
    cheap as a dict look-up.  :attr:`layers` breaks hits down by layer.
    """

    requests: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)
    stale_served: int = 0
    syncs: int = 0
    flushes: int = 0
    cache: Optional[LayeredCache] = field(default=None, repr=False, compare=False)
    records: Optional[LayeredCache] = field(default=None, repr=False, compare=False)

    @property
    def layers(self) -> list[dict[str, Any]]:
        """Hits, misses and errors of each layer of ``session.cache``.

        Entity records, read from the layer after memory directly, count there.
        """
        if self.cache is None:
            return []
        rows: list[dict[str, Any]] = [dict(s) for s in self.cache.stats()]
        if self.records is not None:
            extra = self.records.stats()[0]
            row = rows[1] if len(rows) > 1 else rows[0]
            row["hits"] += extra["hits"]
            row["misses"] += extra["misses"]
            row["errors"] += extra["errors"]
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


class _Inflight:
    """One uncached call being answered; other threads asking the same wait on it."""

    __slots__ = ("event", "result", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None


class _ThreadState(threading.local):
    auto_populate: Optional[bool] = None
    mode: Optional[str] = None


def _is_local(cache: Cache) -> bool:
    """Whether a layer lives only in this process (a memory cache, maybe wrapped)."""
    while isinstance(cache, ProxyCache):
        cache = cache.proxied
    return isinstance(cache, MemoryCache)


def _flatten(cache: Cache) -> list[Cache]:
    """The single layers of *cache*, shallowest first, each as a cache of its own.

    Nested LayeredCaches are opened up, and so is a plain SerialisedCache around one
    (``SerialisedCache(LayeredCache([disk, redis]), ...)`` gives one serialised view
    per layer), so the session can read bookkeeping from the deepest layer alone.
    """
    if isinstance(cache, LayeredCache):
        out: list[Cache] = []
        for layer in cache.caches:
            out.extend(_flatten(layer))
        return out
    if type(cache) is SerialisedCache:
        inner = _flatten(cache.proxied)
        if len(inner) > 1:
            return [
                SerialisedCache(layer, encode=cache.encode, decode=cache.decode) for layer in inner
            ]
    return [cache]


def _is_unavailable(error: BaseException) -> bool:
    """Whether an exception means ShotGrid could not answer (5xx, network)."""
    errcode = getattr(error, "errcode", None)
    if isinstance(errcode, int):
        return errcode >= 500
    if isinstance(error, (OSError, http.client.HTTPException, TimeoutError)):
        return True
    module = type(error).__module__ or ""
    return "httplib2" in module


def _site_of(shotgun: Any) -> str:
    """The site URL, lower-cased, without credentials or a trailing slash."""
    config = getattr(shotgun, "config", None)
    scheme = getattr(config, "scheme", None)
    server = getattr(config, "server", None)
    if scheme and server:
        url = f"{scheme}://{server}"
    else:
        url = str(getattr(shotgun, "base_url", "") or "")
    url = url.lower().rstrip("/")
    return re.sub(r"//[^/@]*@", "//", url)


def _identity_of(shotgun: Any) -> Optional[str]:
    """The permission identity of a client: script or user, plus sudo."""
    config = getattr(shotgun, "config", None)
    script = getattr(config, "script_name", None)
    login = getattr(config, "user_login", None)
    sudo = getattr(config, "sudo_as_login", None)
    if script:
        ident = f"script={script}"
    elif login:
        ident = f"user={login}"
    elif "mockgun" in type(shotgun).__module__:
        ident = "mockgun"  # Mockgun keeps no credentials; its data is local anyway.
    else:
        return None
    if sudo:
        ident += f";sudo={sudo}"
    return ident


def _copy_value(value: Any) -> Any:
    """A copy of a field value deep enough that callers cannot alter a cached record."""
    if isinstance(value, list):
        return [_copy_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy_value(v) for k, v in value.items()}
    return value


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("type"), str)
        and isinstance(value.get("id"), int)
    )


def _link_types(data: Any) -> set[str]:
    """Entity types linked anywhere inside *data* (a field dict or value)."""
    found: set[str] = set()
    if isinstance(data, Entity) or _is_link(data):
        found.add(data["type"] if not isinstance(data, Entity) else data.type)
        return found
    if isinstance(data, Mapping):
        for value in data.values():
            found |= _link_types(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            found |= _link_types(value)
    return found


_MISSING: Any = object()
# Gaps wider than this are not tracked id by id (the flush already covers them).
_MAX_HOLES = 1000
_CONTAINERS_AND_ENTITY = (dict, list, tuple, Entity)


def _new_token() -> str:
    return f"{time.time_ns():x}-{secrets.token_hex(4)}"


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
        max_age: float = 600.0,
        schema_max_age: float = 3600.0,
        stale_if_error: bool = True,
        sync_interval: Optional[float] = None,
        sync_limit: int = 5000,
        event_backlog: float = 300.0,
        site: Optional[str] = None,
        identity: Optional[str] = None,
    ) -> None:
        if shotgun is None:
            shotgun = self._shotgun_from_environment()
        if mode not in MODES:
            raise SessionConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        for name, value in (("max_age", max_age), ("schema_max_age", schema_max_age)):
            if not isinstance(value, (int, float)) or value < 0:
                raise SessionConfigError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if sync_interval is not None and (
            not isinstance(sync_interval, (int, float)) or sync_interval < 0
        ):
            raise SessionConfigError(
                f"sync_interval must be seconds >= 0 or None, not {sync_interval!r}"
            )

        # A real client is wrapped in a pool so the session is thread-safe; any
        # other object (a Mockgun, a test double) is used as it is.
        self.shotgun: Any = shotgun
        try:
            from shotgun_api3.shotgun import Shotgun as _Shotgun

            if isinstance(shotgun, _Shotgun):
                self.shotgun = ShotgunPool(shotgun)
        except ImportError:  # pragma: no cover - shotgun_api3 is a core dependency
            pass

        self.site = (site or _site_of(shotgun)).lower().rstrip("/")
        ident = identity or _identity_of(shotgun)
        if not ident:
            raise SessionConfigError(
                "cannot tell the permission identity of this client (no script name or "
                "user login); pass identity='...' so cached data stays in its own namespace"
            )
        self.identity = ident
        self.cache_key_maker: KeyMaker = cache_key_maker or ObjectKeyMaker()
        self._max_age = float(max_age)
        # [max_age, or -inf while the fast path is off], read by the closure behind get().
        self._fast_state: list[float] = [-math.inf]
        self.schema_max_age = float(schema_max_age)
        self.stale_if_error = stale_if_error
        self._sync_interval = sync_interval
        self.sync_limit = sync_limit
        #: Seconds to keep asking for event ids that were missing (late commits).
        self.event_backlog = float(event_backlog)
        self.stats = SessionStats()

        self._default_auto_populate = bool(auto_populate)
        self._default_mode = mode
        self._state = _ThreadState()
        self._lock = threading.RLock()
        self._entities: dict[tuple[str, int], Entity] = {}
        self._backrefs_on = False  # see _enable_backrefs
        # The same entities indexed by type then id, for the hot path of get().
        self._by_type: dict[str, dict[int, Entity]] = {}
        self._inflight: dict[str, _Inflight] = {}
        self._inflight_lock = threading.Lock()
        self._seen_gens: dict[str, str] = {}
        self._next_sync = math.inf if sync_interval is None else 0.0
        self._closed = False
        self._decoder = codec.make_decoder(self._decode_entity, fast=True)
        self._mode_overrides = 0
        self._update_fast()
        self.get = self._make_fast_get()  # type: ignore[method-assign]

        self._base = f"sgcl{FORMAT_VERSION}|{self.site}|{self.identity}"
        self._epoch_key = self._base + "|epoch"
        self._sync_key = self._base + "|sync"

        memory = MemoryCache()
        layers: list[Cache] = [memory]
        extra: Any = cache
        if callable(cache) and not isinstance(cache, Cache):
            try:
                extra = cache(self)
            except (CacheBackendError, OSError) as error:
                # A broken persistent layer must not stop the tool: run on memory alone.
                log.warning("the session's cache could not be opened; using memory only: %s", error)
                extra = None
        if extra is not None:
            if not isinstance(extra, Cache):
                raise SessionConfigError(
                    f"cache must be a Cache or a callable returning one, not {type(extra).__name__}"
                )
            layers.append(extra)
        self.cache = LayeredCache(layers)
        # Entity records go straight to the layers below memory: while the process
        # runs, the identity map already holds them, so a copy in the memory layer
        # would only cost time and memory.  Query and value records use every layer.
        self._records: LayeredCache = LayeredCache([extra if extra is not None else memory])
        self.stats.cache = self.cache
        self.stats.records = self._records
        flat = _flatten(self.cache)
        self._local_layers = [layer for layer in flat if _is_local(layer)]
        shared = [layer for layer in flat if not _is_local(layer)]
        # Bookkeeping (generations, epoch, event position) is read from the deepest
        # layer that answers: a host-local disk can lag behind a farm-wide Redis.
        self._authorities: list[Cache] = list(reversed(shared)) or [memory]
        self._shared: Cache = LayeredCache(shared) if shared else memory
        self._epoch = ""
        self._ns = ""
        self._load_epoch()

    # ------------------------------------------------------------------ set-up
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
        self._update_fast()

    @contextlib.contextmanager
    def using_mode(self, mode: str) -> Iterator[None]:
        """Within the block (and this thread), use another mode."""
        if mode not in MODES:
            raise SessionConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        previous = self._state.mode
        self._state.mode = mode
        with self._lock:
            self._mode_overrides += 1
            self._update_fast()
        try:
            yield
        finally:
            self._state.mode = previous
            with self._lock:
                self._mode_overrides -= 1
                self._update_fast()

    def _update_fast(self) -> None:
        """Whether :meth:`get` may answer from live entities without looking at modes."""
        fast = (
            self._default_mode == "cached"
            and self._mode_overrides == 0
            and self.sync_interval is None
        )
        self._fast_state[0] = self._max_age if fast else -math.inf

    @property
    def max_age(self) -> float:
        """Seconds a cached answer stays fresh (``find(..., max_age=)`` overrides per call)."""
        return self._max_age

    @max_age.setter
    def max_age(self, value: float) -> None:
        if not isinstance(value, (int, float)) or value < 0:
            raise SessionConfigError(f"max_age must be a number of seconds >= 0, not {value!r}")
        self._max_age = float(value)
        self._update_fast()

    @property
    def sync_interval(self) -> Optional[float]:
        """Seconds between automatic syncs on reads, or ``None`` for none."""
        return self._sync_interval

    @sync_interval.setter
    def sync_interval(self, value: Optional[float]) -> None:
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise SessionConfigError(f"sync_interval must be seconds >= 0 or None, not {value!r}")
        self._sync_interval = value
        self._next_sync = math.inf if value is None else 0.0
        self._update_fast()

    def _make_fast_get(self) -> Callable[..., Any]:
        """Build ``get``: live, fresh entities answer with no attribute look-ups at all.

        This is the hottest call of a pipeline tool, so the common case runs in a
        closure over the identity map instead of through the session's attributes.
        """
        by_type = self._by_type
        state = self._fast_state
        slow = self._get
        one = self._get_one_cached
        server = self._entities_from_server
        clock = _time

        def get(entity_type: str, id_or_ids: Union[int, Sequence[int]], fetch: bool = True) -> Any:
            try:
                entity = by_type[entity_type][id_or_ids]  # type: ignore[index]
            except (KeyError, TypeError):  # unknown, or a list of ids
                pass
            else:
                # state[0] is max_age in plain cached mode with no automatic sync,
                # and -inf otherwise: then nothing is fresh here and the full path runs.
                if entity._fetched_at > clock() - state[0]:
                    return entity
            if id_or_ids.__class__ is int and fetch and state[0] != -math.inf:
                # Cached mode, one id, no sync due: straight to the cache layers.
                hit, found = one(entity_type, id_or_ids)
                if hit:
                    return found
                return server(entity_type, [id_or_ids]).get(id_or_ids)
            return slow(entity_type, id_or_ids, fetch)

        get.__doc__ = Session.get.__doc__
        return get

    # ------------------------------------------------------------------ codec
    def encode(self, data: Any) -> str:
        """Return *data* as JSON text; entities become references with their fields."""
        if type(data) is dict and self._record(data) is not None:
            return codec.dumps(codec.pack_record(data))
        return codec.dumps(codec.frame_plain(self._encodable(data, top=True)))

    def decode(self, text: Union[str, bytes]) -> Any:
        """Decode text written by :meth:`encode`; entities are merged into this session."""
        return codec.unpack_record(self._decoder(text))

    def _encodable(self, data: Any, top: bool) -> Any:
        if isinstance(data, Entity):
            ref: dict[str, Any] = {codec.TAG: "entity", "type": data.type, "id": data.id}
            if top:
                ref["fields"] = {
                    codec.escape_key(name): self._encodable(value, top=False)
                    for name, value in dict.items(data)
                    if name not in ("type", "id")
                }
            else:
                name = dict.get(data, "name")
                if name is not None:
                    ref["fields"] = {"name": name}
            return ref
        if isinstance(data, Mapping):
            return {codec.escape_key(str(k)): self._encodable(v, top) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self._encodable(v, top) for v in data]
        return data

    def _decode_entity(self, obj: dict[str, Any]) -> Any:
        etype, eid = obj.get("type"), obj.get("id")
        if not isinstance(etype, str) or not isinstance(eid, int):
            return obj
        entity = self._entity(etype, eid)
        fields = obj.get("fields")
        if isinstance(fields, dict):
            with self._lock:
                self._merge_fields(entity, fields, over=None)
        return entity

    # ------------------------------------------------------------------ keys
    def _load_epoch(self) -> None:
        """Read (or start) the namespace epoch that every data key carries."""
        epoch = self._shared_get(self._epoch_key)
        if not isinstance(epoch, str):
            epoch = _new_token()
            self._safe_set(self._epoch_key, epoch)
        self._switch_epoch(epoch)

    def _switch_epoch(self, epoch: str) -> None:
        with self._lock:
            changed = bool(self._epoch) and epoch != self._epoch
            self._epoch = epoch
            self._ns = f"{self._base}|{epoch}"
            if changed:
                for layer in self._local_layers:
                    self._try(layer.clear)
                for entity in self._entities.values():
                    entity._fetched_at = 0.0
                self._seen_gens.clear()

    @property
    def namespace(self) -> str:
        """The prefix of every data key this session writes right now."""
        return self._ns

    def _entity_key(self, entity_type: str, entity_id: int) -> str:
        return f"{self._ns}|e|{entity_type}|{entity_id}"

    def _gen_key(self, entity_type: str) -> str:
        return f"{self._base}|g|{entity_type}"

    def _call_key(self, kind: str, entity_type: str, call: Any) -> str:
        text = self.cache_key_maker.key(call)
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        return f"{self._ns}|{kind}|{entity_type}|{digest}"

    # ---------------------------------------------------------- cache helpers
    def _try(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run a cache operation; a failure is a warning, never the caller's crash."""
        try:
            return func(*args)
        except KeyError:
            return None
        except NotImplementedError:
            return None
        except Exception as error:  # a broken layer must not break the tool
            log.warning("cache operation %s failed: %s", getattr(func, "__name__", func), error)
            return None

    def _shared_get_many(self, keys: list[str]) -> dict[str, Any]:
        """Read *keys* from the deepest shared layer that works (its misses are misses)."""
        for layer in self._authorities:
            try:
                return layer.get_many(keys)
            except Exception as error:  # a broken layer: ask the next one up
                log.warning(
                    "cache layer %s failed, trying the next: %s", type(layer).__name__, error
                )
        return {}

    def _shared_get(self, key: str) -> Any:
        return self._shared_get_many([key]).get(key)

    def _safe_set(self, key: str, value: Any) -> None:
        self._try(self.cache.set, key, value)

    def _discard(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._try(self.cache.remove, key)

    @staticmethod
    def _record(value: Any, kind: Optional[str] = None) -> Optional[dict[str, Any]]:
        """*value* if it is a well-formed record of this format (and *kind*), else ``None``.

        Anything else (another format version, a damaged or foreign value) is a
        miss: the caller asks ShotGrid instead of failing.
        """
        if type(value) is not dict or value.get("v") != FORMAT_VERSION:
            return None
        found = value.get("k")
        if kind is not None and found != kind:
            return None
        stamp = value.get("t")
        if stamp.__class__ is not float and stamp.__class__ is not int:
            return None
        if found == "e":
            ok = type(value.get("f")) is dict
        elif found == "x":
            ok = True
        elif found == "q":
            refs = value.get("r")
            ok = (
                type(refs) is list
                and type(value.get("g")) is dict
                and all(
                    type(r) is list and len(r) == 2 and type(r[0]) is str and type(r[1]) is int
                    for r in refs
                )
            )
        elif found == "v":
            ok = type(value.get("g")) is dict and "d" in value
        else:
            ok = False
        return value if ok else None

    # ------------------------------------------------------------ generations
    def _current_gens(self, types: Iterable[str]) -> dict[str, str]:
        """Read the epoch and the generations of *types* from the shared layers."""
        types = list(types)
        keys = [self._epoch_key] + [self._gen_key(t) for t in types]
        found = self._shared_get_many(keys)
        epoch = found.get(self._epoch_key)
        if isinstance(epoch, str) and epoch != self._epoch:
            self._switch_epoch(epoch)
        gens: dict[str, str] = {}
        missing: dict[str, str] = {}
        for entity_type in types:
            token = found.get(self._gen_key(entity_type))
            if not isinstance(token, str):
                # An unknown generation starts afresh: never trust a record against it.
                token = _new_token()
                missing[self._gen_key(entity_type)] = token
            gens[entity_type] = token
        if missing:
            self._try(self.cache.set_many, missing)
        moved = [t for t, g in gens.items() if self._seen_gens.get(t, g) != g]
        if moved:
            self._forget_types_locally(moved)
        self._seen_gens.update(gens)
        return gens

    def _bump(self, types: Iterable[str]) -> None:
        """Move the generation of every type in *types*: dependent answers go stale."""
        tokens = {t: _new_token() for t in set(types)}
        if not tokens:
            return
        self._try(self.cache.set_many, {self._gen_key(t): g for t, g in tokens.items()})
        self._seen_gens.update(tokens)

    def _forget_types_locally(self, types: Iterable[str]) -> None:
        """Another process changed these types: distrust the live entities of them.

        Their next :meth:`get` reads a record again, and :meth:`_confirmed` checks it
        against the deepest layer because its generation stamp is now old.
        """
        types = set(types)
        with self._lock:
            for entity in self._entities.values():
                if entity.type in types:
                    entity._fetched_at = 0.0

    # ------------------------------------------------------------ identity map
    def _entity(self, entity_type: str, entity_id: int) -> Entity:
        by_id = self._by_type.get(entity_type)
        if by_id is not None:
            entity = by_id.get(entity_id)
            if entity is not None:
                return entity
        else:
            by_id = self._by_type.setdefault(entity_type, {})
        # setdefault is atomic: two threads racing here still share one instance.
        entity = self._entities.setdefault(
            (entity_type, entity_id), Entity(self, entity_type, entity_id)
        )
        by_id.setdefault(entity_id, entity)
        return entity

    def _link(self, value: Mapping[str, Any], over: Optional[bool]) -> Entity:
        """Turn a link dict into the session's Entity, keeping what the link carries."""
        if value.__class__ is Entity and value.session is self:
            return value
        entity_type, entity_id = value["type"], value["id"]
        by_id = self._by_type.get(entity_type)
        entity = by_id.get(entity_id) if by_id is not None else None
        if entity is None:
            entity = self._entity(entity_type, entity_id)
        if len(value) == 3 and "name" in value:
            # The common link {type, id, name}: the display name is always current.
            name = value["name"]
            if dict.get(entity, "name", _MISSING) != name:
                dict.__setitem__(entity, "name", name)
            return entity
        for key, extra in value.items():
            if key == "type" or key == "id":
                continue
            # A link's display name is always current; other extras only fill gaps.
            if key == "name" or not dict.__contains__(entity, key):
                dict.__setitem__(entity, key, self._convert(extra, over))
        return entity

    def _convert(self, value: Any, over: Optional[bool]) -> Any:
        """A copy of a raw value with links turned into entities (never shares containers)."""
        cls = value.__class__
        if cls is dict or cls is Entity:
            if "id" in value and "type" in value and (cls is Entity or _is_link(value)):
                return self._link(value, over)
            return {k: self._convert(v, over) for k, v in value.items()}
        if cls is list or cls is tuple:
            return [self._convert(v, over) for v in value]
        return value

    def _merge_fields(
        self,
        entity: Entity,
        fields: Mapping[str, Any],
        over: Optional[bool],
        catch_up: bool = True,
    ) -> None:
        """Merge raw field values into *entity*; the caller holds the lock.

        With *catch_up*, a link that arrives now also receives the deep values
        (``"entity.Shot.code"``) the entity already held from earlier answers.
        """
        if over is None:
            over = True
            new_time = fields.get("updated_at")
            if new_time is not None:
                old_time = dict.get(entity, "updated_at")
                if old_time is not None:
                    try:
                        over = not new_time < old_time
                    except TypeError:  # naive against aware: cannot tell, take the new
                        pass
        contains = dict.__contains__
        setitem = dict.__setitem__
        by_type = self._by_type
        deep: Optional[list[tuple[str, Any]]] = None
        linked_heads: Optional[set[str]] = None
        for name, value in fields.items():
            if name == "type" or name == "id":
                continue
            if not over and contains(entity, name):
                continue
            cls = value.__class__
            if cls is dict:
                link_id = value.get("id")
                link_type = value.get("type")
                if link_id.__class__ is int and link_type.__class__ is str:
                    by_id = by_type.get(link_type)
                    linked = by_id.get(link_id) if by_id is not None else None
                    if linked is not None and len(value) == 3 and "name" in value:
                        # The usual link {type, id, name} to a known entity, inline.
                        if dict.get(linked, "name", _MISSING) != value["name"]:
                            setitem(linked, "name", value["name"])
                        value = linked
                    else:
                        value = self._link(value, over)
                else:
                    value = self._convert(value, over)
                cls = value.__class__
            elif cls is list or cls is tuple or cls is Entity:
                value = self._convert(value, over)
                cls = value.__class__
            setitem(entity, name, value)
            if "." in name:
                if deep is None:
                    deep = []
                deep.append((name, value))
            elif cls is Entity:
                if self._backrefs_on:
                    self._add_backrefs(entity, name, value)
                if catch_up:
                    if linked_heads is None:
                        linked_heads = set()
                    linked_heads.add(name)
            elif cls is list and self._backrefs_on:
                self._add_backrefs(entity, name, value)
        if linked_heads is not None:
            # A newly known link also receives deep values held from earlier answers.
            merged = {name for name, _ in deep} if deep else set()
            for name in list(dict.keys(entity)):
                if "." in name and name not in merged and name.split(".", 1)[0] in linked_heads:
                    if deep is None:
                        deep = []
                    deep.append((name, dict.__getitem__(entity, name)))
        if deep:
            for name, value in deep:
                # "entity.Shot.code" is also merged into the linked Shot as "code".
                head, link_type, rest = (name.split(".", 2) + ["", ""])[:3]
                target = dict.get(entity, head)
                if rest and target.__class__ is Entity and target._key[0] == link_type:
                    if "." not in rest and value.__class__ not in _CONTAINERS_AND_ENTITY:
                        # The usual case, "step.Step.code": a plain value, set in place.
                        if over or not contains(target, rest):
                            setitem(target, rest, value)
                    else:
                        self._merge_fields(target, {rest: value}, over=over)

    @staticmethod
    def _add_backrefs(entity: Entity, field_name: str, value: Any) -> None:
        """Record on each entity *value* links to that *entity* links to it by *field_name*."""
        key = (entity._key[0], field_name)
        for item in value if value.__class__ is list else (value,):
            if item.__class__ is Entity:
                backrefs = item._backrefs
                if backrefs is None:
                    backrefs = item._backrefs = {}
                refs = backrefs.get(key)
                if refs is None:
                    refs = backrefs[key] = set()
                refs.add(entity)

    def _enable_backrefs(self) -> None:
        """Build the backref index on first use; merges keep it up to date afterwards.

        A tool that never looks at backrefs (most of them) never pays for them.
        """
        with self._lock:
            if self._backrefs_on:
                return
            for entity in list(self._entities.values()):
                for name, value in list(dict.items(entity)):
                    if "." not in name and name != "type" and name != "id":
                        self._add_backrefs(entity, name, value)
            self._backrefs_on = True

    def _merge_row(self, row: Mapping[str, Any], over: Optional[bool], fetched_at: float) -> Entity:
        entity = self._entity(row["type"], row["id"])
        self._merge_fields(entity, row, over=over)
        entity._fetched_at = fetched_at
        entity._exists = True
        return entity

    def merge(self, data: Any, over: Optional[bool] = None) -> Any:
        """Import raw ShotGrid data: every entity-like dict becomes the session's Entity.

        *over* ``True`` lets new values win, ``False`` keeps old ones, and ``None``
        (the default) lets the newer ``updated_at`` win.  Returns a copy of *data*
        with entities in place of dicts.
        """
        with self._lock:
            return self._merge_any(data, over)

    def _merge_any(self, data: Any, over: Optional[bool]) -> Any:
        if isinstance(data, Mapping) and _is_link(data) and not isinstance(data, Entity):
            entity = self._entity(data["type"], data["id"])
            self._merge_fields(entity, data, over=over)
            return entity
        if isinstance(data, Entity):
            return data if data.session is self else self._merge_any(dict(data), over)
        if isinstance(data, Mapping):
            return {k: self._merge_any(v, over) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return type(data)(self._merge_any(v, over) for v in data)
        return data

    # -------------------------------------------------------- entity records
    @staticmethod
    def _plain(value: Any) -> Any:
        if isinstance(value, Entity):
            link = {"type": value.type, "id": value.id}
            name = dict.get(value, "name")
            if name is not None:
                link["name"] = name
            return link
        if isinstance(value, list):
            return [Session._plain(v) for v in value]
        if isinstance(value, dict):
            return {k: Session._plain(v) for k, v in value.items()}
        return value

    def _snapshot(self, entity: Entity) -> dict[str, Any]:
        fields = {
            name: self._plain(value)
            for name, value in dict.items(entity)
            if name not in ("type", "id")
        }
        record = {"v": FORMAT_VERSION, "k": "e", "t": entity._fetched_at, "f": fields}
        generation = self._seen_gens.get(entity.type)
        if generation is not None:
            record["g"] = generation
        return record

    def _confirmed(
        self, entity_type: str, key: str, record: dict[str, Any]
    ) -> Optional[dict[str, Any]]:
        """*record*, or the deepest layer's copy if *record* predates a generation move.

        Writers keep the deepest layer exact (they overwrite or drop the records of
        what they change), so its copy is trusted and re-stamped into every layer.
        """
        current = self._seen_gens.get(entity_type)
        if current is None or record.get("g") == current or len(self._authorities) == 0:
            return record
        deep = self._record(self._shared_get_many([key]).get(key))
        if deep is None:
            return None
        if deep.get("g") != current:
            deep = dict(deep)
            deep["g"] = current
            self._try(self._records.set, key, deep)
        return deep

    def _store_entities(self, entities: Iterable[Entity], changed: Iterable[str] = ()) -> None:
        """Write entity records, keeping the fields a stored record already had.

        A session that knows fewer fields of an entity must not make the cache
        poorer: fields of the record in the deepest layer (which writers and syncs
        keep exact) are carried over, and the record keeps the older fetch time.
        Fields in *changed*, and deep keys through them, are not carried.
        """
        with self._lock:
            records = {self._entity_key(e.type, e.id): self._snapshot(e) for e in entities}
        if not records:
            return
        changed = set(changed)
        existing = self._shared_get_many(list(records))
        for key, record in records.items():
            old = self._record(existing.get(key), "e")
            if old is None:
                continue
            fields = record["f"]
            carried = {
                name: value
                for name, value in old["f"].items()
                if name not in fields
                and name not in changed
                and not ("." in name and name.split(".", 1)[0] in changed)
            }
            if carried:
                carried.update(fields)
                record["f"] = carried
                record["t"] = min(record["t"], old["t"])
        self._try(self._records.set_many, records)

    def _store_retired(self, entity_type: str, ids: Iterable[int]) -> None:
        now = _time()
        records = {
            self._entity_key(entity_type, i): {"v": FORMAT_VERSION, "k": "x", "t": now} for i in ids
        }
        if records:
            self._try(self._records.set_many, records)

    # ------------------------------------------------------------- requests
    def _request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise RuntimeError("this session is closed")
        self.stats.requests[method] += 1
        return getattr(self.shotgun, method)(*args, **kwargs)

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

    def _maybe_sync(self) -> None:
        if self._next_sync <= _time() and self.mode != "offline":
            interval = self.sync_interval if self.sync_interval is not None else math.inf
            self._next_sync = _time() + interval
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

        A fresh record in any cache layer answers without a request.
        """
        return self._get(entity_type, id_or_ids, fetch)

    def _get(
        self,
        entity_type: str,
        id_or_ids: Union[int, Sequence[int]],
        fetch: bool = True,
    ) -> Any:
        if id_or_ids.__class__ is int:
            return self._get_many(entity_type, [id_or_ids], fetch)[0]
        if isinstance(id_or_ids, (list, tuple)):
            return self._get_many(entity_type, list(id_or_ids), fetch)
        raise TypeError(f"get() takes an int id or a list of ids, not {type(id_or_ids).__name__}")

    def _get_many(self, entity_type: str, ids: list[int], fetch: bool) -> list[Optional[Entity]]:
        for entity_id in ids:
            if entity_id.__class__ is not int:
                raise TypeError(f"entity ids must be int, not {type(entity_id).__name__}")
        self._maybe_sync()
        mode = self.mode
        if mode == "cached" and len(ids) == 1:
            # One id, the usual case: skip the batch bookkeeping below.
            hit, entity = self._get_one_cached(entity_type, ids[0])
            if hit:
                return [entity]
            if not fetch:
                return [self._entity(entity_type, ids[0])]
            return [self._entities_from_server(entity_type, ids).get(ids[0])]
        now = _time()
        found: dict[int, Optional[Entity]] = {}
        if mode != "direct":
            for entity_id in ids:
                entity = self._entities.get((entity_type, entity_id))
                if entity is None or entity._exists is False:
                    continue
                if mode == "offline":
                    # Offline serves what is known, whatever its age.
                    if len(entity) > 2:
                        found[entity_id] = entity
                elif entity._fetched_at and entity._fetched_at + self._max_age > now:
                    found[entity_id] = entity
            wanted = [i for i in dict.fromkeys(ids) if i not in found]
            if wanted:
                found.update(self._entities_from_cache(entity_type, wanted, mode == "offline"))
        wanted = [i for i in dict.fromkeys(ids) if i not in found]
        if wanted and mode != "offline" and fetch:
            found.update(self._entities_from_server(entity_type, wanted))
        if wanted and not fetch and mode != "offline":
            for entity_id in wanted:
                found.setdefault(entity_id, self._entity(entity_type, entity_id))
        return [found.get(i) for i in ids]

    def _get_one_cached(self, entity_type: str, entity_id: int) -> tuple[bool, Optional[Entity]]:
        """``(True, entity_or_None)`` when memory or a cache layer answers for one entity."""
        entity = self._entities.get((entity_type, entity_id))
        now = _time()
        max_age = self._max_age
        if (
            entity is not None
            and entity._exists is not False
            and (entity._fetched_at + max_age > now)
        ):
            return True, entity
        key = f"{self._ns}|e|{entity_type}|{entity_id}"
        try:
            value = self._records.get(key)
        except KeyError:
            value = None
        except Exception as error:
            log.warning("cache read failed: %s", error)
            value = None
        record = self._usable_record(entity_type, key, value, max_age, now)
        if record is None:
            self.stats.misses["cache"] += 1
            return False, None
        if record["k"] == "x":
            self.stats.hits["cache"] += 1
            return True, None
        if entity is None:
            entity = self._entity(entity_type, entity_id)
        with self._lock:
            self._merge_record(entity, record)
        self.stats.hits["cache"] += 1
        return True, entity

    def _usable_record(
        self, entity_type: str, key: str, value: Any, max_age: float, now: float
    ) -> Optional[dict[str, Any]]:
        """*value* if it is an entity record (``e``) or tombstone (``x``) to trust now.

        It must be well formed, pass :meth:`_confirmed` when its generation is old,
        and be younger than *max_age*; anything else is a miss.
        """
        record = self._record(value)
        if record is None:
            return None
        kind = record["k"]
        if kind == "e":
            record = self._confirmed(entity_type, key, record)
            if record is None:
                return None
        elif kind != "x":
            return None
        return record if record["t"] + max_age > now else None

    def _merge_record(self, entity: Entity, record: dict[str, Any]) -> None:
        """Merge a stored entity record; the caller holds the lock."""
        fields = record["f"]
        if len(entity) == 2:
            # A brand-new instance (type and id only) has nothing older to keep, and
            # its links and deep keys arrive together: no catching up to do.
            self._merge_fields(entity, fields, over=True, catch_up=False)
        else:
            self._merge_fields(entity, fields, over=None)
        if record["t"] > entity._fetched_at:
            entity._fetched_at = record["t"]
        entity._exists = True

    def _entities_from_cache(
        self, entity_type: str, ids: list[int], any_age: bool
    ) -> dict[int, Optional[Entity]]:
        keys = {self._entity_key(entity_type, i): i for i in ids}
        if len(keys) == 1:
            (only,) = keys
            value = self._try(self._records.get, only)
            records = {} if value is None else {only: value}
        else:
            records = self._try(self._records.get_many, list(keys)) or {}
        now = _time()
        max_age = math.inf if any_age else self._max_age
        out: dict[int, Optional[Entity]] = {}
        with self._lock:
            for key, entity_id in keys.items():
                value = self._usable_record(entity_type, key, records.get(key), max_age, now)
                if value is None:
                    continue
                if value["k"] == "x":
                    out[entity_id] = None
                    continue
                entity = self._entity(entity_type, entity_id)
                self._merge_record(entity, value)
                out[entity_id] = entity
        self.stats.hits["cache"] += len(out)
        self.stats.misses["cache"] += len(ids) - len(out)
        return out

    def _core_fields(self, entity_type: str, known: Iterable[str] = ()) -> list[str]:
        """Important fields of a type plus the fields an entity already holds.

        ``name`` is left out unless important: on most types it only arrived as a
        link's display name and is not a field ShotGrid could return.
        """
        names = set(self.important_fields_for_all)
        important = self.important_fields.get(entity_type, ())
        names.update(important)
        names.update(n for n in known if n not in ("type", "id", "name"))
        return sorted(names)

    def _entities_from_server(
        self, entity_type: str, ids: list[int]
    ) -> dict[int, Optional[Entity]]:
        known: set[str] = set()
        for entity_id in ids:
            entity = self._entities.get((entity_type, entity_id))
            if entity is not None:
                known.update(dict.keys(entity))
        fields = self._core_fields(entity_type, known)
        out: dict[int, Optional[Entity]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            filters = [["id", "in", chunk]] if len(chunk) > 1 else [["id", "is", chunk[0]]]
            rows = self._request("find", entity_type, filters, fields)
            now = _time()
            with self._lock:
                entities = [self._merge_row(row, over=True, fetched_at=now) for row in rows]
            self._store_entities(entities)
            for entity in entities:
                out[entity.id] = entity
            gone = [i for i in chunk if i not in out]
            for entity_id in gone:
                out[entity_id] = None
                existing = self._entities.get((entity_type, entity_id))
                if existing is not None:
                    existing._exists = False
            self._store_retired(entity_type, gone)
        return out

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
        max_age: Optional[float] = None,
    ) -> list[Entity]:
        """``Shotgun.find``, answered from the cache when a fresh answer is there."""
        if not isinstance(entity_type, str) or not entity_type:
            raise QueryError(f"entity_type must be a non-empty string, not {entity_type!r}")
        if not isinstance(limit, int) or limit < 0:
            raise QueryError(f"limit must be an int >= 0, not {limit!r}")
        if not isinstance(page, int) or page < 0:
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
            "x": additional_filter_presets or [],
        }
        kwargs: dict[str, Any] = {}
        if order:
            kwargs["order"] = list(order)
        if filter_operator:
            kwargs["filter_operator"] = filter_operator
        if limit:
            kwargs["limit"] = limit
        if retired_only:
            kwargs["retired_only"] = True
        if page:
            kwargs["page"] = page
        if not include_archived_projects:
            kwargs["include_archived_projects"] = False
        if additional_filter_presets:
            kwargs["additional_filter_presets"] = additional_filter_presets
        request_fields = list(nfields)
        deps = dependent_types(entity_type, nfields, nfilters)

        def fetch() -> list[dict[str, Any]]:
            result = self._request(
                "find", entity_type, self._outbound(filters), request_fields, **kwargs
            )
            return list(result)

        return self._cached_call(  # type: ignore[no-any-return]
            "q", entity_type, call, deps, fetch, nfields, max_age, kind="find"
        )

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
        max_age: Optional[float] = None,
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
        max_age: Optional[float] = None,
    ) -> Any:
        """``Shotgun.summarize``, cached like a query."""
        nfilters = normalise_filters(filters, filter_operator)
        summaries = sorted(
            ([str(s.get("field")), str(s.get("type"))] for s in summary_fields), key=repr
        )
        groups = [
            [str(g.get("field")), str(g.get("type")), str(g.get("direction", "asc"))]
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
            kwargs["grouping"] = list(grouping)
        if not include_archived_projects:
            kwargs["include_archived_projects"] = False

        def fetch() -> Any:
            return self._request(
                "summarize", entity_type, self._outbound(filters), list(summary_fields), **kwargs
            )

        return self._cached_call("v", entity_type, call, deps, fetch, [], max_age, kind="value")

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
        call_args: list[Any] = [a for a in args]
        while call_args and call_args[-1] is None:
            call_args.pop()

        def fetch() -> Any:
            if project is not None:
                return self._request(method, *call_args, project_entity=project)
            return self._request(method, *call_args)

        return self._cached_call(
            "s", method, call, [SCHEMA_TYPE], fetch, [], self.schema_max_age, kind="value"
        )

    # ------------------------------------------------------- cached call core
    def _cached_call(
        self,
        key_kind: str,
        entity_type: str,
        call: Any,
        deps: list[str],
        fetch: Callable[[], Any],
        fields: list[str],
        max_age: Optional[float],
        kind: str,
    ) -> Any:
        """Answer a read from a fresh record, or ask ShotGrid once for all threads."""
        self._maybe_sync()
        mode = self.mode
        age = self.max_age if max_age is None else float(max_age)
        if mode == "offline":
            key = self._call_key(key_kind, entity_type, call)
            answer = self._answer_from_record(key, None, fields, kind, math.inf)
            if answer is not None:
                self.stats.hits["query"] += 1
                return answer[0]
            self.stats.misses["query"] += 1
            return [] if kind == "find" else None
        key = self._call_key(key_kind, entity_type, call)
        record = self._load_record(key, kind) if mode == "cached" else None
        # A record depends on the types of its call and on every type its rows
        # linked to when it was stored: all of their generations must be unmoved.
        types = set(deps) | set(record["g"]) if record is not None else set(deps)
        namespace = self._ns
        gens = self._current_gens(sorted(types))
        if self._ns != namespace:  # another process flushed: the record is from before
            key = self._call_key(key_kind, entity_type, call)
            record = None
        if record is not None:
            answer = self._answer(record, gens, fields, kind, age)
            if answer is not None:
                self.stats.hits["query"] += 1
                return answer[0]
        self.stats.misses["query"] += 1

        with self._inflight_lock:
            waiter = self._inflight.get(key)
            leader = waiter is None
            if waiter is None:
                waiter = self._inflight[key] = _Inflight()
        if not leader:
            waiter.event.wait()
            if waiter.error is not None:
                raise waiter.error
            return waiter.result
        try:
            try:
                result = fetch()
            except Exception as error:
                if mode == "cached" and self.stale_if_error and _is_unavailable(error):
                    stale = self._answer_from_record(key, None, fields, kind, math.inf)
                    if stale is not None:
                        self.stats.stale_served += 1
                        log.warning(
                            "ShotGrid unavailable (%s: %s); serving a stale cached answer for %s",
                            type(error).__name__,
                            error,
                            entity_type,
                        )
                        waiter.result = stale[0]
                        return stale[0]
                raise
            waiter.result = self._store_answer(key, gens, fields, kind, result)
            return waiter.result
        except BaseException as error:
            waiter.error = error
            raise
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)
            waiter.event.set()

    def _load_record(self, key: str, kind: str) -> Optional[dict[str, Any]]:
        """The well-formed query (``find``) or value record stored under *key*."""
        return self._record(self._try(self.cache.get, key), "q" if kind == "find" else "v")

    def _answer_from_record(
        self,
        key: str,
        gens: Optional[dict[str, str]],
        fields: list[str],
        kind: str,
        max_age: float,
    ) -> Optional[tuple[Any]]:
        """The answer the record under *key* gives, or ``None`` if missing or stale."""
        record = self._load_record(key, kind)
        return None if record is None else self._answer(record, gens, fields, kind, max_age)

    def _answer(
        self,
        record: dict[str, Any],
        gens: Optional[dict[str, str]],
        fields: list[str],
        kind: str,
        max_age: float,
    ) -> Optional[tuple[Any]]:
        """The answer *record* gives if younger than *max_age* and no generation moved."""
        if record["t"] + max_age <= _time():
            return None
        if gens is not None:
            stored = record["g"]
            for entity_type, token in gens.items():
                if stored.get(entity_type) != token:
                    return None
        if kind == "value":
            return (_copy_value(record["d"]),)
        return self._entities_for_refs(record["r"], fields, record.get("m") or ())

    def _entities_for_refs(
        self, refs: list[list[Any]], fields: list[str], missing: Iterable[str]
    ) -> Optional[tuple[list[Entity]]]:
        absent = set(missing)
        needed = [f for f in fields if f not in absent]
        out: list[Entity] = []
        lacking: list[tuple[int, str, int]] = []
        make = self._entity
        contains = dict.__contains__
        for position, (entity_type, entity_id) in enumerate(refs):
            entity = make(entity_type, entity_id)
            out.append(entity)
            if len(entity) == 2 and needed:
                lacking.append((position, entity_type, entity_id))
                continue
            for name in needed:
                if not contains(entity, name):
                    lacking.append((position, entity_type, entity_id))
                    break
        if lacking:
            prefix = self._ns + "|e|"
            keys = [f"{prefix}{t}|{i}" for _, t, i in lacking]
            records = self._try(self._records.get_many, keys) or {}
            with self._lock:
                for key, (position, _, _) in zip(keys, lacking):
                    record = self._record(records.get(key), "e")
                    if record is None:
                        return None
                    entity = out[position]
                    self._merge_record(entity, record)
                    for name in needed:
                        if not dict.__contains__(entity, name):
                            return None
        return (out,)

    def _store_answer(
        self, key: str, gens: dict[str, str], fields: list[str], kind: str, result: Any
    ) -> Any:
        now = _time()
        if kind == "value":
            record = {"v": FORMAT_VERSION, "k": "v", "t": now, "g": gens, "d": result}
            self._try(self.cache.set, key, record)
            return _copy_value(result)
        rows: list[Mapping[str, Any]] = result
        missing: set[str] = set()
        with self._lock:
            entities = []
            for row in rows:
                for name in fields:
                    if name not in row:
                        missing.add(name)
                entity = self._merge_row(row, over=None, fetched_at=now)
                entities.append(entity)
        self._store_entities(entities)
        # Types linked from the rows also shape the answer (their display names).
        linked: set[str] = set()
        for row in rows:
            for name, value in row.items():
                if name not in ("type", "id"):
                    linked |= _link_types(value)
        extra = linked - set(gens)
        if extra:
            gens = dict(gens)
            gens.update(self._current_gens(sorted(extra)))
        record = {
            "v": FORMAT_VERSION,
            "k": "q",
            "t": now,
            "g": gens,
            "r": [[e.type, e.id] for e in entities],
            "m": sorted(missing),
        }
        self._try(self.cache.set, key, record)
        return entities

    # -------------------------------------------------------------- fetching
    def _populate(self, entity: Entity, field_name: str) -> Any:
        """Called by ``entity[field]`` when the field is missing."""
        if not self.auto_populate:
            return NOT_SET
        self.fetch([entity], [field_name])
        try:
            return dict.__getitem__(entity, field_name)
        except KeyError:
            if self.mode == "offline":
                return NOT_SET
            if entity._exists is False:
                raise KeyError(
                    f"{entity.type} {entity.id} is retired or does not exist, so it has no "
                    f"field {field_name!r}"
                ) from None
            raise KeyError(
                f"{entity.type} {entity.id} has no field {field_name!r} "
                "(ShotGrid did not return it)"
            ) from None

    def fetch(self, entities: Iterable[Entity], fields: Iterable[str], force: bool = False) -> None:
        """Make sure *entities* hold *fields*, asking ShotGrid only for what is missing."""
        names = normalise_fields(list(fields))
        by_type: dict[str, list[Entity]] = {}
        for entity in entities:
            if force or any(not dict.__contains__(entity, n) for n in names):
                by_type.setdefault(entity.type, []).append(entity)
        if not by_type or not names:
            return
        mode = self.mode
        for entity_type, group in by_type.items():
            if mode != "direct" and not force:
                self._entities_from_cache(
                    entity_type, [e.id for e in group], any_age=(mode == "offline")
                )
                group = [e for e in group if any(not dict.__contains__(e, n) for n in names)]
            if not group or mode == "offline":
                continue
            ids = [e.id for e in group]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = self._request(
                    "find", entity_type, [["id", "in", chunk]], sorted(set(names) | {"updated_at"})
                )
                now = _time()
                with self._lock:
                    merged = []
                    for row in rows:
                        entity = self._entity(row["type"], row["id"])
                        # Only a bare instance becomes fresh: fetching a few fields of
                        # a stale entity does not make its other fields fresh.
                        bare = len(entity) == 2
                        self._merge_fields(entity, row, over=True)
                        entity._exists = True
                        if bare:
                            entity._fetched_at = now
                        merged.append(entity)
                    returned = {e.id for e in merged}
                    for entity in group:
                        if entity.id in chunk and entity.id not in returned:
                            entity._exists = False
                self._store_entities(merged)

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
        if not links:
            return
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
            parents: list[Entity] = []
            for entity in current:
                parent = entity.parent(fetch=False)
                if parent is not None and parent.key not in involved:
                    parents.append(parent)
            current = list({p.key: p for p in parents}.values())
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
                    rows = self._request("find", entity_type, [["id", "in", chunk]], [])
                    alive = {row["id"] for row in rows}
                    for entity in group:
                        if entity.id in chunk:
                            entity._exists = entity.id in alive
        return {e for e in entities if e._exists is not False}

    # ----------------------------------------------------------------- writes
    def create(
        self,
        entity_type: str,
        data: Mapping[str, Any],
        return_fields: Optional[Sequence[str]] = None,
    ) -> Entity:
        """``Shotgun.create``; the new entity joins the identity map and the cache."""
        self._check_writable("create")
        args: list[Any] = [entity_type, self._outbound(data)]
        if return_fields:
            args.append(list(return_fields))
        result = self._request("create", *args)
        with self._lock:
            entity = self._merge_row(result, over=True, fetched_at=_time())
        self._store_entities([entity])
        self._bump({entity_type} | _link_types(data))
        return entity

    def update(
        self,
        entity_type: str,
        entity_id: int,
        data: Mapping[str, Any],
        multi_entity_update_modes: Optional[Mapping[str, str]] = None,
    ) -> Entity:
        """``Shotgun.update``; the new values are readable at once without a request."""
        self._check_writable("update")
        kwargs: dict[str, Any] = {}
        if multi_entity_update_modes:
            kwargs["multi_entity_update_modes"] = dict(multi_entity_update_modes)
        old = self._entities.get((entity_type, entity_id))
        touched = {entity_type} | _link_types(data)
        if old is not None:
            touched |= _link_types({k: dict.get(old, k) for k in data})
        result = self._request("update", entity_type, entity_id, self._outbound(data), **kwargs)
        if isinstance(result, list):  # Mockgun answers with a list
            result = result[0] if result else {"type": entity_type, "id": entity_id}
        with self._lock:
            entity = self._entity(entity_type, entity_id)
            fetched_at = entity._fetched_at or _time()
            # Deep values read through a changed link ("sg_sequence.Sequence.code") are
            # no longer known, nor are multi-entity lists the answer does not hold.
            for name in list(dict.keys(entity)):
                if "." in name and name.split(".", 1)[0] in data:
                    dict.pop(entity, name)
            if multi_entity_update_modes:
                for name in multi_entity_update_modes:
                    if name not in result:
                        dict.pop(entity, name, None)
            self._merge_fields(entity, result, over=True)
            entity._fetched_at = fetched_at
            entity._exists = True
        self._store_entities([entity], changed=data)
        self._bump(touched)
        return entity

    def delete(self, entity_type: str, entity_id: int) -> bool:
        """``Shotgun.delete`` (retire); the entity is no longer served by :meth:`get`."""
        self._check_writable("delete")
        entity = self._entities.get((entity_type, entity_id))
        touched = {entity_type}
        if entity is not None:
            touched |= _link_types(dict(entity))
        result = bool(self._request("delete", entity_type, entity_id))
        if entity is not None:
            entity._exists = False
            entity._fetched_at = 0.0
        self._store_retired(entity_type, [entity_id])
        self._bump(touched)
        return result

    def revive(self, entity_type: str, entity_id: int) -> bool:
        """``Shotgun.revive``; the entity is served again."""
        self._check_writable("revive")
        result = bool(self._request("revive", entity_type, entity_id))
        entity = self._entities.get((entity_type, entity_id))
        if entity is not None:
            entity._exists = True
            entity._fetched_at = 0.0
        self._discard([self._entity_key(entity_type, entity_id)])
        self._bump({entity_type})
        return result

    def batch(self, requests: Sequence[Mapping[str, Any]]) -> list[Any]:
        """``Shotgun.batch``; each result is kept in the cache like its single call."""
        self._check_writable("batch")
        outbound = [self._outbound(dict(r)) for r in requests]
        results = self._request("batch", outbound)
        touched: set[str] = set()
        out: list[Any] = []
        stored: list[Entity] = []
        now = _time()
        for request, result in zip(requests, results):
            kind = request.get("request_type")
            entity_type = request.get("entity_type")
            touched.add(str(entity_type))
            touched |= _link_types(request.get("data") or {})
            if kind in ("create", "update") and isinstance(result, Mapping):
                with self._lock:
                    entity = self._entity(result["type"], result["id"])
                    fetched_at = entity._fetched_at or now
                    self._merge_fields(entity, result, over=True)
                    entity._fetched_at = fetched_at
                    entity._exists = True
                stored.append(entity)
                out.append(entity)
            elif kind == "delete":
                entity_id = request.get("entity_id")
                found = self._entities.get((str(entity_type), int(entity_id or 0)))
                if found is not None:
                    found._exists = False
                    found._fetched_at = 0.0
                    touched |= _link_types(dict(found))
                self._store_retired(str(entity_type), [int(entity_id or 0)])
                out.append(result)
            else:
                out.append(result)
        self._store_entities(stored)
        self._bump(touched)
        return out

    # ------------------------------------------------------------------ sync
    def sync(self) -> int:
        """Read new ``EventLogEntry`` rows and invalidate what they changed.

        Returns the number of events read.  The first sync in a namespace, a gap
        in event ids, or more events than ``sync_limit`` flushes the namespace.
        The ids of a gap are asked for again for :attr:`event_backlog` seconds:
        an event whose transaction commits late is applied when it shows up.
        """
        if self.mode == "offline":
            return 0
        self.stats.syncs += 1
        if self.sync_interval is not None:
            self._next_sync = _time() + self.sync_interval
        state = self._shared_get(self._sync_key)
        if not (isinstance(state, dict) and isinstance(state.get("last"), int)):
            self._restart_event_log({})
            return 0
        last: int = state["last"]
        now = _time()
        holes = {
            int(i): float(t)
            for i, t in (state.get("holes") or {}).items()
            if str(i).isdigit() and isinstance(t, (int, float)) and now - t < self.event_backlog
        }
        filters: list[Any] = [["id", "greater_than", last]]
        if holes:
            filters.append(["id", "in", sorted(holes)])
        events = list(
            self._request(
                "find",
                "EventLogEntry",
                filters,
                EVENT_FIELDS,
                order=[{"field_name": "id", "direction": "asc"}],
                limit=self.sync_limit,
                **({"filter_operator": "any"} if holes else {}),
            )
        )
        late = [e for e in events if e.get("id") in holes]
        new = [e for e in events if isinstance(e.get("id"), int) and e["id"] > last]
        if late:
            # Events that committed after we passed their ids: apply them now.
            self._apply_changes(changes_from_events(late))
            for event in late:
                holes.pop(event["id"], None)
        if len(events) >= self.sync_limit:
            log.warning("more than %s new events; flushing the cache namespace", self.sync_limit)
            self._restart_event_log(holes)
            return len(events)
        changes = changes_from_events(new)
        gap = missing_ids(last, new)
        if gap:
            log.warning(
                "event ids %s..%s are missing after id %s; flushing the cache namespace",
                gap[0],
                gap[-1],
                last,
            )
            self.flush()
            if len(gap) <= _MAX_HOLES:
                holes.update(dict.fromkeys(gap, now))
        elif new:
            self._apply_changes(changes)
        self._safe_set(
            self._sync_key,
            {"last": max(changes.last_id, last), "holes": {str(i): t for i, t in holes.items()}},
        )
        return len(events)

    def _restart_event_log(self, holes: dict[int, float]) -> None:
        """Flush the namespace and continue from the newest event on the site."""
        latest = self._request(
            "find_one",
            "EventLogEntry",
            [],
            ["id"],
            order=[{"field_name": "id", "direction": "desc"}],
        )
        self.flush()
        state = {
            "last": int(latest["id"]) if latest else 0,
            "holes": {str(i): t for i, t in holes.items()},
        }
        self._safe_set(self._sync_key, state)

    def _apply_changes(self, changes: Changes) -> None:
        self._discard(self._entity_key(t, i) for t, i in changes.entities)
        with self._lock:
            for key in changes.entities:
                entity = self._entities.get(key)
                if entity is not None:
                    entity._fetched_at = 0.0
        self._bump(changes.types)

    def flush(self) -> None:
        """Forget everything cached in this namespace, in every layer and process."""
        self.stats.flushes += 1
        old_ns = self._ns
        self._safe_set(self._epoch_key, _new_token())
        epoch = self._shared_get(self._epoch_key)
        self._switch_epoch(epoch if isinstance(epoch, str) else _new_token())
        if old_ns:
            # Best effort: drop the old epoch's entries where the backend can list keys.
            self._try(self._shared.clear, "^" + re.escape(old_ns + "|"))
        for layer in self._local_layers:
            self._try(layer.clear)
        with self._lock:
            for entity in self._entities.values():
                entity._fetched_at = 0.0

    # -------------------------------------------------------------- lifecycle
    def reset(self) -> None:
        """Clear the memory layer and the identity map; persistent layers keep their records."""
        self._try(self.cache.caches[0].clear)
        with self._lock:
            self._entities.clear()
            self._by_type.clear()
            self._seen_gens.clear()

    def close(self) -> None:
        """Close the cache layers and the ShotGrid connections."""
        if self._closed:
            return
        self._closed = True
        self._try(self.cache.close)
        close = getattr(self.shotgun, "close", None)
        if close is not None:
            self._try(close)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Anything the session does not wrap goes to the client, like sgsession.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["shotgun"], name)
