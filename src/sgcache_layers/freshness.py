"""When a cached answer may be used: generations, the epoch, the authority, the event log.

The one freshness rule (:meth:`Freshness.usable`): a cached answer is used only while it is
younger than its ``max_age`` and none of the generations it depends on has moved.

*Generations* are tokens, one per entity type (``Shot``) and one per bucket of a type's
entities (``Shot#17``), kept in the shared cache layers so that every process sees them.
Every change replaces the tokens it touches: a write through any session (before its
request is sent, as a *pending* token that is never trusted, and again after it returns),
or an event that :class:`EventLog` reads from ShotGrid.  Tokens are ordered (a hybrid
clock: wall time, never less than any token seen plus one), so a token that comes back
from the past - a Redis restored from an old snapshot, a layer that lost writes - is seen
for what it is and replaced, leaving misses rather than stale hits.

The *authority* is the deepest shared layer that answers (a farm-wide Redis rather than a
host's own disk).  A *clock* key, replaced with every move, lets a session confirm with one
read that nothing it knows has moved.  The *epoch* names the current generation of every
data key; a flush replaces it, which orphans every record and every generation at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional

from .cache import Cache, LayeredCache, MemoryCache, ProxyCache, SerialisedCache
from .events import EVENT_FIELDS, changes_from_events, missing_ids
from .records import Keys, bucket_name

__all__ = [
    "EventLog",
    "Freshness",
    "Layout",
    "TokenClock",
    "heartbeat_live",
    "heartbeat_window",
    "is_introduced",
    "is_pending",
    "token_time",
]

log = logging.getLogger("sgcache_layers.freshness")

#: Seconds a pending token (a write whose upkeep never finished) keeps answers uncached.
PENDING_SECONDS = 60.0
# Gaps wider than this are not tracked id by id (the flush already covers them).
_MAX_HOLES = 1000
# The mark of a first token, made where a generation was absent rather than by a move.
_INTRODUCED = "i"
#: A clock this much older than one already seen means a layer went back in time.
_REGRESSION_NS = 60_000_000_000
#: Seconds the first sync of a namespace waits for another process's restart to finish
#: before taking it over (its holder may have died between its claim and its flush).
RESTART_LEASE = 10.0
_RESTART_POLL = 0.05

# Per namespace, the newest clock this process has seen (shared by its sessions), and the
# newest token of each generation, so a new session in this process still knows.
_HIGH_LOCK = threading.Lock()
_CLOCKS: dict[str, str] = {}
_HIGHS: dict[tuple[str, str], dict[str, str]] = {}

_time = time.time


# ---------------------------------------------------------------------------------- tokens


def token_time(token: str) -> int:
    """The clock reading a token was made at (0 for a token of no known shape)."""
    try:
        return int(token[:16], 16)
    except (ValueError, TypeError):
        return 0


def is_pending(token: str) -> bool:
    """Whether *token* marks a write whose upkeep has not finished."""
    return "~" in token


def is_introduced(token: str) -> bool:
    """Whether *token* is a generation's first token (no change made it, see
    :meth:`Freshness._introduce`)."""
    return token.endswith(_INTRODUCED)


def _pending_deadline(token: str) -> float:
    try:
        return float(token.rsplit("~", 1)[1])
    except (IndexError, ValueError):
        return 0.0


class TokenClock:
    """Makes ordered, unique generation tokens: ``<16 hex clock>.<8 hex random>``.

    The clock is wall time in nanoseconds, but never less than one more than any token it
    has seen (:meth:`observe`), so a token made after reading another is always newer.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def observe(self, token: str) -> None:
        """Remember *token*'s clock so that later tokens sort after it."""
        stamp = token_time(token)
        if stamp > self._last:
            with self._lock:
                if stamp > self._last:
                    self._last = stamp

    def new(self, pending_for: Optional[float] = None) -> str:
        """A fresh token; with *pending_for*, a pending one that expires after that long."""
        with self._lock:
            stamp = max(time.time_ns(), self._last + 1)
            self._last = stamp
        token = f"{stamp:016x}.{secrets.token_hex(4)}"
        if pending_for is not None:
            token += f"~{_time() + pending_for:.0f}"
        return token


# ---------------------------------------------------------------------------------- layout


def _is_local(cache: Cache) -> bool:
    """Whether a layer lives only in this process (a memory cache, maybe wrapped)."""
    while isinstance(cache, ProxyCache):
        cache = cache.proxied
    return isinstance(cache, MemoryCache)


def _flatten(cache: Cache) -> list[Cache]:
    """The single layers of *cache*, shallowest first, each as a cache of its own.

    Nested LayeredCaches are opened up, and so is a plain SerialisedCache around one
    (``SerialisedCache(LayeredCache([disk, redis]), ...)`` gives one serialised view per
    layer), so bookkeeping can be read from the deepest layer alone.
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


_NEVER: Any = object()


def _revision(cache: LayeredCache) -> Any:
    # Assigning new layers bumps the revision; in-place changes are refused.
    return getattr(cache, "revision", None)


class Layout:
    """Which layer plays which part, derived from ``session.cache`` (and re-derived on change).

    * ``memory``: the first layer when it is a :class:`MemoryCache`: built answers live there;
    * ``store``: the layers after it (records are read and written there), or ``None``;
    * ``shared``: every single layer that outlives the process, shallowest first;
    * ``authorities``: where bookkeeping is read, deepest first (memory when nothing is shared).
    """

    def __init__(self, cache: LayeredCache) -> None:
        self._cache = cache
        self._seen: Any = _NEVER
        self.memory: Optional[MemoryCache] = None
        self.store: Optional[LayeredCache] = None
        self.shared: list[Cache] = []
        self.authorities: list[Cache] = []
        self.writable: Cache = cache
        #: Bumped whenever the parts are re-derived, so users of the layout can notice.
        self.version = 0
        self.refresh()

    def refresh(self) -> bool:
        """Re-derive the parts if the layers changed; returns whether they did."""
        seen = _revision(self._cache)
        if seen == self._seen:
            return False
        self._seen = seen
        layers = list(self._cache.caches)
        first = layers[0] if layers else None
        if isinstance(first, MemoryCache):
            self.memory = first
            rest = layers[1:]
        else:
            self.memory = None
            rest = layers
        self.store = LayeredCache(rest) if rest else None
        flat: list[Cache] = []
        for layer in rest:
            flat.extend(_flatten(layer))
        self.shared = [layer for layer in flat if not _is_local(layer)]
        deepest_first = list(reversed(self.shared)) or list(reversed(flat))
        if not deepest_first:
            deepest_first = [self.memory] if self.memory is not None else []
        self.authorities = deepest_first
        # Bookkeeping is written wherever it is read from, and to memory when alone.
        writable = self.shared or flat
        self.writable = LayeredCache(writable) if writable else self._cache
        self.version += 1
        return True


def _read_many(layers: Sequence[Cache], keys: list[str]) -> dict[str, Any]:
    """Read *keys* from the authority, the first of *layers*; when it fails, nothing is known.

    A shallower layer never answers for a broken authority: it has not seen what processes
    that write only to the authority (other hosts) moved, so its bookkeeping could vouch
    for a stale answer.  Everything unknown is a miss until the authority answers again.
    """
    if not layers:
        return {}
    layer = layers[0]
    try:
        return layer.get_many(keys)
    except Exception as error:  # a broken authority: every token is unknown
        log.warning(
            "cache layer %s failed; its answers are misses: %s", type(layer).__name__, error
        )
    return {}


def _add_first(layers: Sequence[Cache], key: str, value: Any) -> bool:
    """Add *value* under *key* in the authority, the first of *layers*; whether it was stored."""
    if not layers:
        return False
    layer = layers[0]
    try:
        return layer.add(key, value)
    except Exception as error:  # a broken authority takes no claim
        log.warning("cache layer %s failed: %s", type(layer).__name__, error)
    return False


def _write_many(target: Cache, mapping: Mapping[str, Any]) -> None:
    try:
        target.set_many(mapping)
    except Exception as error:  # a broken layer must not break the tool
        log.warning("writing bookkeeping failed: %s: %s", type(error).__name__, error)


# ------------------------------------------------------------------------------- freshness


class Freshness:
    """The generations and epoch of one namespace, and the one rule that uses them.

    Thread safe.  ``known`` holds the tokens confirmed since the clock last moved; every
    check reads the clock (and the epoch) from the authority first, so a move by any
    process is seen by the next check.
    """

    def __init__(
        self,
        keys: Keys,
        layout: Layout,
        *,
        pending_seconds: float = PENDING_SECONDS,
        on_epoch: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.keys = keys
        self.layout = layout
        self.pending_seconds = pending_seconds
        self.tokens = TokenClock()
        self._lock = threading.RLock()
        self._known: dict[str, str] = {}
        # Bumped after every change of the known tokens: the last token map found current
        # is remembered with it (``_current``), so checking it again costs no walk.
        self._known_version = 0
        self._current: Optional[tuple[int, Mapping[str, str], int]] = None
        self._high: dict[str, str] = {}
        self._clock_seen: Optional[str] = None
        # Bumped whenever the known tokens are forgotten: a read that began before must
        # not put its (possibly older) tokens back.
        self._era = 0
        self._marker: Any = None
        self._layout_seen = layout.version
        self._on_epoch = on_epoch
        self.epoch = ""
        self._load_epoch()

    # -- epoch -----------------------------------------------------------------------

    def _load_epoch(self) -> None:
        found = _read_many(self.layout.authorities, [self.keys.epoch])
        epoch = found.get(self.keys.epoch)
        if not isinstance(epoch, str) or not epoch:
            epoch = self.tokens.new()
            if not _add_first(self.layout.authorities, self.keys.epoch, epoch):
                theirs = _read_many(self.layout.authorities, [self.keys.epoch]).get(self.keys.epoch)
                epoch = theirs if isinstance(theirs, str) and theirs else epoch
        self._switch(epoch)

    def _switch(self, epoch: str) -> None:
        with self._lock:
            if epoch == self.epoch:
                return
            changed = bool(self.epoch)
            self.epoch = epoch
            self._known.clear()
            self._known_version += 1
            with _HIGH_LOCK:
                self._high = _HIGHS.setdefault((self.keys.shared, epoch), {})
            self._era += 1
        if changed and self._on_epoch is not None:
            self._on_epoch(epoch)

    def flush(self) -> str:
        """Start a new epoch (every record and generation of the old one is orphaned)."""
        epoch = self.tokens.new()
        _write_many(self.layout.writable, {self.keys.epoch: epoch, self.keys.clock: epoch})
        with self._lock:
            self._clock_seen = None
        self._switch(epoch)
        return epoch

    # -- reading ---------------------------------------------------------------------

    def _gen_key(self, name: str) -> str:
        return self.keys.gen(self.epoch, name)

    def _change_token(self) -> Any:
        authorities = self.layout.authorities
        if not authorities:
            return None
        try:
            return authorities[0].change_token()
        except Exception:  # a broken layer cannot vouch for anything
            return None

    def refresh(self) -> None:
        """Read the clock and epoch (one read); if the clock moved, forget every known token.

        When the authority can tell cheaply that nothing at all was written since the last
        read (its change token), the read is skipped.
        """
        self.layout.refresh()
        if self.layout.version != self._layout_seen:
            self._layout_seen = self.layout.version
            self._clock_seen = None  # new layers: their bookkeeping is read afresh
        marker = self._change_token()
        if marker is not None and marker == self._marker and self._clock_seen is not None:
            return
        keys = self.keys
        found = _read_many(self.layout.authorities, [keys.clock, keys.epoch])
        clock = found.get(keys.clock)
        epoch = found.get(keys.epoch)
        if isinstance(epoch, str) and epoch and epoch != self.epoch:
            self._switch(epoch)
        elif epoch is None and self.epoch:
            # The authority lost its bookkeeping (a reset Redis): nothing of before holds.
            self.flush()
            return
        if not isinstance(clock, str):
            _write_many(self.layout.writable, {keys.clock: self.tokens.new()})
            with self._lock:
                self._known.clear()
                self._known_version += 1
                self._clock_seen = None
                self._era += 1
            return
        if clock != self._clock_seen:
            if self._went_back(clock):
                log.warning(
                    "the cache's generation clock went back in time (a restored or reset "
                    "layer?); flushing the namespace"
                )
                self.flush()
                return
            self.tokens.observe(clock)
            with self._lock:
                self._known.clear()
                self._known_version += 1
                self._clock_seen = clock
                self._era += 1
        self._marker = marker

    def _went_back(self, clock: str) -> bool:
        """Whether the authority's *clock* is older than one this process or a shallower
        layer has seen (by more than a clock-skew margin): it lost writes."""
        stamp = token_time(clock)
        base = self.keys.shared
        with _HIGH_LOCK:
            high = _CLOCKS.get(base)
            if high is None or token_time(high) < stamp:
                _CLOCKS[base] = clock
        seen = [high] if high is not None else []
        for layer in self.layout.authorities[1:]:
            try:
                other = layer.get_many([self.keys.clock]).get(self.keys.clock)
            except Exception:  # a broken shallower layer does not vote
                continue
            if isinstance(other, str):
                seen.append(other)
        return any(token_time(other) - stamp > _REGRESSION_NS for other in seen)

    def current(
        self,
        names: Iterable[str],
        refresh: bool = True,
        created: Optional[set[str]] = None,
    ) -> dict[str, str]:
        """The current token of each generation in *names* (after one clock read).

        Names no layer held get a new token; they are added to *created* if given.
        """
        if refresh:
            self.refresh()
        known = self._known
        result: dict[str, str] = {}
        missing: list[str] = []
        for name in names:
            token = known.get(name)
            if token is None:
                missing.append(name)
            else:
                result[name] = token
        if missing:
            result.update(self._load(missing, created))
        return result

    def _load(self, names: list[str], created: Optional[set[str]] = None) -> dict[str, str]:
        """Read *names* from every shared layer; newest wins, regressions and gaps move."""
        if created is None:
            created = set()
        era = self._era
        keys = [self._gen_key(name) for name in names]
        layers = self.layout.authorities
        # The newest tokens this process knew before the read: only those can show that
        # the cache went back.  A move this process makes while the read is on its way
        # (another thread's write) makes what was read outdated, not a regression.
        with _HIGH_LOCK:
            before = {name: self._high.get(name) for name in names}
        found = _read_many(layers, keys)
        others: list[dict[str, Any]] = []
        for layer in layers[1:]:
            try:
                others.append(layer.get_many(keys))
            except Exception:  # a broken shallower layer just does not vote
                continue
        now = _time()
        fresh: list[str] = []
        loaded: dict[str, str] = {}
        with self._lock:
            for name, key in zip(names, keys):
                token = found.get(key)
                if not isinstance(token, str) or not token:
                    fresh.append(name)  # unknown: never trust a record made against it
                    if created is not None:
                        created.add(name)
                    continue
                newest = token_time(token)
                high = before[name]
                if high is not None and token_time(high) > newest:
                    fresh.append(name)  # the authority went back in time
                    continue
                latest = self._high.get(name)
                if latest is not None and latest is not high and token_time(latest) > newest:
                    # This process moved it since the read: what was read was current
                    # then; the move's token is known already and must stay so.
                    loaded[name] = token
                    continue
                if any(isinstance(o.get(key), str) and token_time(o[key]) > newest for o in others):
                    fresh.append(name)  # a shallower layer saw a later move than the authority
                    continue
                if is_pending(token) and _pending_deadline(token) < now:
                    fresh.append(name)  # a writer died before its upkeep: start clean
                    continue
                self.tokens.observe(token)
                if era == self._era:
                    self._known[name] = token
                    self._known_version += 1
                loaded[name] = token
                if high is None or token_time(token) >= token_time(high):
                    with _HIGH_LOCK:
                        self._high[name] = token
        if fresh:
            new = [name for name in fresh if created is not None and name in created]
            if len(new) == len(fresh):
                loaded.update(self._introduce(fresh))
            else:
                tokens, _ = self.move(fresh)
                loaded.update(tokens)
        return loaded

    def _add(self, key: str, value: str) -> bool:
        return _add_first(self.layout.authorities, key, value)

    def _introduce(self, names: list[str]) -> dict[str, str]:
        """First tokens for generations no layer holds yet.

        Nothing was ever checked against them, so nothing can go stale: the clock is left
        alone (every process keeps what it knows).  Each is added to the authority only if
        still absent, so a first token can never overwrite a move made meanwhile.
        """
        tokens: dict[str, str] = {}
        for name in names:
            key = self._gen_key(name)
            token = self.tokens.new() + _INTRODUCED
            if not self._add(key, token):
                # Another process introduced it first (or no layer took it): use theirs.
                theirs = _read_many(self.layout.authorities, [key]).get(key)
                if isinstance(theirs, str) and theirs:
                    token = theirs
            tokens[name] = token
        with _HIGH_LOCK:
            self._high.update(tokens)
        with self._lock:
            self._known.update(tokens)
            self._known_version += 1
        return tokens

    def seen_types(self) -> list[str]:
        """Type-level generation names this process has met in the current epoch."""
        with _HIGH_LOCK:
            return [name for name in self._high if "#" not in name]

    @property
    def clock_seen(self) -> Optional[str]:
        """The clock value the known tokens were read under (``None``: read it again)."""
        return self._clock_seen

    # -- the rule --------------------------------------------------------------------

    def unchanged(self, gens: Mapping[str, str], refresh: bool = True) -> bool:
        """Whether every token in *gens* is still current and none is pending."""
        if refresh:
            self.refresh()
        version = self._known_version
        last = self._current
        if last is not None and last[0] == version and last[1] is gens and last[2] == len(gens):
            return True  # the same map found current, and nothing known changed since
        known = self._known
        for name, token in gens.items():
            now = known.get(name)
            if now is None:
                break
            if now != token or "~" in now:
                return False
        else:
            self._current = (version, gens, len(gens))
            return True
        current = self.current(gens, refresh=False)
        for name, token in gens.items():
            now = current[name]
            if now != token or "~" in now:
                return False
        return True

    def usable(
        self,
        stamp: float,
        gens: Mapping[str, str],
        max_age: float,
        refresh: bool = True,
    ) -> bool:
        """The freshness rule: younger than *max_age* and no generation it depends on moved."""
        if stamp + max_age <= _time():
            return False
        return self.unchanged(gens, refresh=refresh)

    # -- moving ----------------------------------------------------------------------

    def move(
        self,
        names: Iterable[str],
        pending: bool = False,
        expect: Optional[Mapping[str, str]] = None,
    ) -> tuple[dict[str, str], set[str]]:
        """Replace the tokens of *names* everywhere; returns ``(new tokens, overtaken)``.

        *pending* makes tokens that are never trusted (a write in flight).  With *expect*
        (the tokens a write put there before its request), the names whose token someone
        else replaced meanwhile are returned as *overtaken*.
        """
        names = sorted(set(names))
        if not names:
            return {}, set()
        overtaken: set[str] = set()
        if expect:
            keys = {name: self._gen_key(name) for name in expect}
            found = _read_many(self.layout.authorities, list(keys.values()))
            overtaken = {name for name, key in keys.items() if found.get(key) != expect[name]}
        if self._clock_seen is None:
            self.refresh()  # observe the newest clock first: new tokens sort after it
        pending_for = self.pending_seconds if pending else None
        tokens = {name: self.tokens.new(pending_for) for name in names}
        mapping: dict[str, Any] = {self._gen_key(name): token for name, token in tokens.items()}
        mapping[self.keys.clock] = self.tokens.new()  # written last: readers see moves first
        _write_many(self.layout.writable, mapping)
        # The high-water marks first: a read of these names on its way in another thread
        # then sees the move and does not put its older tokens in place of these.
        with _HIGH_LOCK:
            self._high.update(tokens)
        with self._lock:
            # Someone else may have moved other names meanwhile: the next check reads the
            # clock afresh and forgets what it knew; until then, these tokens are current.
            self._clock_seen = None
            self._known.update(tokens)
            self._known_version += 1
        return tokens, overtaken


def entity_generations(entity_type: str, entity_id: int) -> list[str]:
    """The generations one entity's change moves: its type and its bucket."""
    return [entity_type, bucket_name(entity_type, entity_id)]


# ------------------------------------------------------------------------------- event log

Request = Callable[..., Any]


def heartbeat_window(interval: float) -> float:
    """Seconds a watcher's heartbeat is trusted, given the *interval* it syncs at.

    Two intervals, and never less than one interval plus five seconds: room for a slow
    event-log request and a little clock skew between the watcher's host and the others.
    """
    return max(2.0 * interval, interval + 5.0)


def _number(value: Any) -> Optional[float]:
    """*value* as a float when it is a finite int or float (not a bool), else ``None``."""
    if value.__class__ in (int, float) and math.isfinite(value):
        return float(value)
    return None


def heartbeat_live(beat: Any, now: Optional[float] = None) -> bool:
    """Whether *beat* (the value under ``keys.watch``) is a live watcher's heartbeat.

    Live: its last successful sync (``time``) is within :func:`heartbeat_window` of its
    ``interval`` from *now* (either way, so a watcher whose clock runs a little ahead is
    still trusted), and the watcher did not say it ``stopped``.  Anything else (absent,
    malformed, old, stopped) is not live, so sessions read the event log themselves.
    """
    if beat.__class__ is not dict or beat.get("stopped"):
        return False
    synced, interval = _number(beat.get("time")), _number(beat.get("interval"))
    if synced is None or interval is None or interval <= 0:
        return False
    moment = _time() if now is None else now
    return abs(moment - synced) <= heartbeat_window(interval)


def _position(value: Any) -> Optional[dict[str, Any]]:
    """*value* if it is an event-log position (``{"last": id, "holes": ...}``)."""
    if isinstance(value, dict) and isinstance(value.get("last"), int):
        return value
    return None


def _claim_time(value: Any) -> Optional[float]:
    """When a first-sync claim (``{"restart": token, "t": time}``) was made, else ``None``."""
    if not isinstance(value, dict) or not isinstance(value.get("restart"), str):
        return None
    return _number(value.get("t"))


class EventLog:
    """Follows ShotGrid's ``EventLogEntry`` rows and moves what they changed.

    The position (the last event id read, and ids that were missing, kept for *backlog*
    seconds in case their transaction commits late) is kept in the shared layers, so every
    process of a namespace continues from it.  The first read in a namespace, a gap in event
    ids, or more than *limit* events at once flushes the namespace instead of guessing.

    While a farm watcher (:mod:`sgcache_layers.watcher`) keeps a live heartbeat in the
    authority, :meth:`sync` leaves the reading to it.
    """

    def __init__(
        self,
        freshness: Freshness,
        request: Request,
        *,
        limit: int = 5000,
        backlog: float = 300.0,
        on_flush: Optional[Callable[[], None]] = None,
    ) -> None:
        self.freshness = freshness
        self.request = request
        self.limit = limit
        self.backlog = backlog
        self.on_flush = on_flush
        #: The last event id this object read or saved (``None`` before its first sync).
        self.position: Optional[int] = None
        #: Syncs left to a live watcher (no request made).
        self.watched = 0
        self._claim: Optional[str] = None

    def _bookkeeping(self) -> tuple[Any, Any]:
        """The stored position and heartbeat, in one read of the authority.

        The heartbeat counts only from the deepest layer (where a watcher writes it); when
        that layer fails, the position comes from the next one and no watcher is trusted.
        """
        keys = self.freshness.keys
        for index, layer in enumerate(self.freshness.layout.authorities):
            try:
                found = layer.get_many([keys.sync, keys.watch])
            except Exception as error:  # a broken layer: ask the next one
                log.warning(
                    "cache layer %s failed, trying the next: %s", type(layer).__name__, error
                )
                continue
            return found.get(keys.sync), found.get(keys.watch) if index == 0 else None
        return None, None

    def heartbeat(self) -> Optional[dict[str, Any]]:
        """The watcher heartbeat stored in the authority (``None`` if there is none)."""
        beat = self._bookkeeping()[1]
        return beat if isinstance(beat, dict) else None

    def _read_position(self) -> Any:
        keys = self.freshness.keys
        return _read_many(self.freshness.layout.authorities, [keys.sync]).get(keys.sync)

    def _save(self, last: int, holes: Mapping[int, float]) -> None:
        state = {"last": last, "holes": {str(i): t for i, t in holes.items()}}
        _write_many(self.freshness.layout.writable, {self.freshness.keys.sync: state})
        self.position = last

    def flush(self) -> None:
        """Start a new epoch and tell the owner (which drops what it built)."""
        self.freshness.flush()
        if self.on_flush is not None:
            self.on_flush()

    def _restart(self, holes: Mapping[int, float]) -> None:
        """Flush and continue from the newest event on the site."""
        latest = self.request(
            "find_one",
            "EventLogEntry",
            [],
            ["id"],
            order=[{"field_name": "id", "direction": "desc"}],
        )
        self.flush()
        self._save(int(latest["id"]) if latest else 0, holes)

    def _claim_restart(self, found: Any) -> bool:
        """Whether this process makes the namespace's first restart (flush); only one does.

        Processes that start together all find no position.  The first to *add* a claim
        under the position key restarts; the others wait (up to :data:`RESTART_LEASE`) for
        its position to appear and then return without a flush of their own, since each
        flush would orphan what the others had just stored.  A claim older than the lease
        (its holder died) is taken over, and so is any value that is no claim.
        """
        layout, keys = self.freshness.layout, self.freshness.keys
        self._claim = token = self.freshness.tokens.new()
        mine = {"restart": token, "t": _time()}
        deadline = time.monotonic() + RESTART_LEASE
        while True:
            if found is None:
                if _add_first(layout.authorities, keys.sync, mine):
                    return True
                found = self._read_position()
                if found is None:
                    return True  # no layer takes a claim: restart as a lone process would
                continue
            theirs = _position(found)
            if theirs is not None:
                self.position = theirs["last"]
                return False  # another process restarted meanwhile
            claimed = _claim_time(found)
            if (
                claimed is None
                or abs(_time() - claimed) > RESTART_LEASE
                or time.monotonic() >= deadline
            ):
                _write_many(layout.writable, {keys.sync: mine})
                return True
            time.sleep(_RESTART_POLL)
            found = self._read_position()

    def _release_claim(self) -> None:
        """Remove this process's first-sync claim (its restart failed), if still there."""
        keys = self.freshness.keys
        found = self._read_position()
        if not isinstance(found, dict) or found.get("restart") != self._claim:
            return
        for layer in self.freshness.layout.shared or self.freshness.layout.authorities:
            with contextlib.suppress(Exception):  # absent there, or a broken layer
                layer.remove(keys.sync)

    def sync(self, force: bool = False) -> int:
        """Read new events and move the generations they touch; returns how many were read.

        When a farm watcher's heartbeat in the authority is live (:func:`heartbeat_live`),
        nothing is read and 0 is returned: the watcher reads the event log for every
        process.  *force* reads anyway (the watcher itself never trusts a heartbeat).
        """
        found, beat = self._bookkeeping()
        if not force and heartbeat_live(beat):
            self.watched += 1
            return 0
        state = _position(found)
        if state is None:
            if self._claim_restart(found):
                try:
                    self._restart({})
                except BaseException:
                    self._release_claim()  # the next sync (of anyone) tries again at once
                    raise
            return 0
        last: int = state["last"]
        now = _time()
        holes = {
            int(i): float(t)
            for i, t in (state.get("holes") or {}).items()
            if str(i).isdigit() and isinstance(t, (int, float)) and now - t < self.backlog
        }
        filters: list[Any] = [["id", "greater_than", last]]
        if holes:
            filters.append(["id", "in", sorted(holes)])
        events = list(
            self.request(
                "find",
                "EventLogEntry",
                filters,
                EVENT_FIELDS,
                order=[{"field_name": "id", "direction": "asc"}],
                limit=self.limit,
                **({"filter_operator": "any"} if holes else {}),
            )
        )
        late = [e for e in events if e.get("id") in holes]
        new = [e for e in events if isinstance(e.get("id"), int) and e["id"] > last]
        if late:
            self.apply(late)
            for event in late:
                holes.pop(event["id"], None)
        if len(events) >= self.limit:
            log.warning("more than %s new events; flushing the cache namespace", self.limit)
            self._restart(holes)
            return len(events)
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
            self.apply(new)
        top = max([last] + [e["id"] for e in new])
        self._save(top, holes)
        return len(events)

    def apply(self, events: Iterable[Mapping[str, Any]]) -> set[str]:
        """Move the generations of every type and entity *events* name; returns them."""
        changes = changes_from_events(events)
        names = set(changes.types)
        for entity_type, entity_id in changes.entities:
            names.add(bucket_name(entity_type, entity_id))
        if names:
            self.freshness.move(names)
        return names
