"""What a session counts (requests by method, cache hits and misses by layer), and the
farm-wide numbers: every process's counters in the shared layer, summed by their readers.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.parse
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .cache import LayeredCache
from .config import seconds

__all__ = [
    "STATS_INTERVAL",
    "FarmStats",
    "SessionStats",
    "farm_stats",
    "requests_saved",
    "stats_interval_of",
]


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


# ------------------------------------------------------------------------------ farm-wide

#: Seconds between two writes of a process's counters to the shared layer (the default).
STATS_INTERVAL = 5.0
#: Seconds a counter record is kept where the layer can expire keys: the farm's numbers
#: cover the processes that reported within this long.
STATS_TTL = 7 * 86400.0
#: The ``farm`` field of a counter record (its format).
RECORD_VERSION = 1
#: Longest sleep of the publishing thread between two looks at what is due.
_TICK = 1.0
#: Shortest sleep of the publishing thread (an interval of 0 means "at every tick").
_MIN_SLEEP = 0.05
#: Seconds between two warnings about counters that could not be written (per namespace
#: and process, however many sessions share it).
_WARN_EVERY = 60.0
#: Seconds the interpreter's exit may spend writing the last records, all sessions together.
EXIT_BUDGET = 2.0
#: When each namespace of this process last warned: ``prefix -> time.monotonic()``.
_WARNED: dict[str, float] = {}

log = logging.getLogger("sgcache_layers.stats")

Counts = dict[str, Any]


def requests_saved(hits: Mapping[str, int]) -> int:
    """ShotGrid requests the cache saved: every cached answer stands for one request.

    A query hit (``find``, ``summarize``, schema) saved exactly one; an entity record that
    answered a ``get`` counts one per entity, so a ``get`` of many ids answered from records
    (which would have been one request) counts more than one.
    """
    return int(sum(hits.values()))


def stats_interval_of(value: Any) -> Optional[float]:
    """``Session(stats_interval=)``: seconds >= 0 or ``None`` (write no counters), else a
    :class:`~sgcache_layers.config.SessionConfigError` naming the value."""
    return seconds(value, "stats_interval", allow_none=True)


class _Process:
    """Who this process is in a counter key: host, pid and start time (new after a fork)."""

    def __init__(self) -> None:
        self.host = socket.gethostname() or "localhost"
        self.pid = os.getpid()
        self.started = time.time()

    @property
    def key(self) -> str:
        """``<host>|<pid>|<start in ms>``, the host percent-escaped."""
        return f"{urllib.parse.quote(self.host, safe='')}|{self.pid}|{int(self.started * 1000)}"


def _counts(stats: SessionStats) -> Counts:
    """The counters of *stats* as plain data (each copy made in one step, thread safe)."""
    return {
        "hits": dict(stats.hits),
        "misses": dict(stats.misses),
        "requests": dict(stats.requests),
        "stale_served": stats.stale_served,
        "syncs": stats.syncs,
        "flushes": stats.flushes,
    }


def _combine(left: Counts, right: Counts, sign: int = 1) -> Counts:
    """*left* plus (or, with *sign* -1, minus) *right*, counter by counter."""
    out: Counts = {}
    for name in {**left, **right}:
        a, b = left.get(name), right.get(name)
        if isinstance(a, dict) or isinstance(b, dict):
            a, b = a or {}, b or {}
            merged = {k: a.get(k, 0) + sign * b.get(k, 0) for k in {**a, **b}}
            out[name] = {k: v for k, v in merged.items() if v}
        else:
            out[name] = (a or 0) + sign * (b or 0)
    return out


class _Counted:
    """One session's counters, less what was counted before a fork (the parent's)."""

    __slots__ = ("stats", "base")

    def __init__(self, stats: SessionStats) -> None:
        self.stats = stats
        self.base: Counts = {}

    def counts(self) -> Counts:
        now = _counts(self.stats)
        return _combine(now, self.base, -1) if self.base else now


class _Space:
    """This process's sessions of one namespace: what closed ones counted, the live ones."""

    def __init__(self) -> None:
        self.closed: Counts = {}
        self.live: dict[int, _Counted] = {}
        self.sessions = 0

    def fold(self, number: int) -> None:
        """Session *number* closed (or was collected): keep its counts with the closed."""
        with _LOCK:
            counted = self.live.pop(number, None)
            if counted is not None:
                self.closed = _combine(self.closed, counted.counts())

    def total(self) -> Counts:
        """Everything this process counted in the namespace (call under ``_LOCK``)."""
        total = self.closed
        # A copy: a session collected meanwhile is folded by its finalizer, which the
        # collector may run in this very thread, under this very (re-entrant) lock.
        for counted in list(self.live.values()):
            total = _combine(total, counted.counts())
        return total


_LOCK = threading.RLock()
_PROCESS = _Process()
_SPACES: dict[str, _Space] = {}
_NUMBERS = itertools.count(1)


class FarmStats:
    """Writes this process's counters of one namespace to the shared layer, now and then.

    Every process keeps one cumulative record per namespace, summed over its sessions,
    under ``<keys.stats>|<host>|<pid>|<start ms>`` in the deepest shared layer (the farm's
    Redis when there is one).  A session writes it every *interval* seconds if a counter
    moved (from one thread per process, never from a read), at :meth:`publish`
    (``Session.drain()``), at :meth:`close` and at interpreter exit.  So counting costs no
    round trip per read, and the farm's numbers are the sum of the records
    (:func:`farm_stats`).  A write that fails is tried again at the next one; it never
    raises.  Where the layer can expire keys, a record goes after :data:`STATS_TTL`.

    *layout* is the session's :class:`~sgcache_layers.freshness.Layout` (its ``shared``
    and ``authorities`` are read at each write).  *interval* ``None`` writes nothing.
    """

    def __init__(
        self, stats: SessionStats, prefix: str, layout: Any, interval: Optional[float]
    ) -> None:
        self.prefix = prefix
        self.layout = layout
        self.interval = interval
        #: Records written so far by this session (each one a single write).
        self.writes = 0
        self.number = next(_NUMBERS)
        self._lock = threading.Lock()
        self._last: Optional[Counts] = None
        self._next = time.monotonic() + (interval or 0.0)
        self._closed = False
        counted = _Counted(stats)
        with _LOCK:
            space = _SPACES.get(prefix)
            if space is None:
                space = _SPACES[prefix] = _Space()
            space.live[self.number] = counted
            space.sessions += 1
        # A session dropped without close() still leaves its counts to the process.
        self._fold = weakref.finalize(self, space.fold, self.number)
        if interval is not None:
            _PUBLISHER.add(self)

    @property
    def key(self) -> str:
        """Where this process's record of the namespace goes."""
        return f"{self.prefix}|{_PROCESS.key}"

    def record(self) -> dict[str, Any]:
        """The record as it would be written now (plain JSON-able data)."""
        with _LOCK:
            space = _SPACES[self.prefix]
            counts = space.total()
            sessions, live = space.sessions, len(space.live)
        return self._record(counts, sessions, live)

    @staticmethod
    def _record(counts: Counts, sessions: int, live: int) -> dict[str, Any]:
        return {
            "farm": RECORD_VERSION,
            "host": _PROCESS.host,
            "pid": _PROCESS.pid,
            "started": _PROCESS.started,
            "t": time.time(),
            **counts,
            "saved": requests_saved(counts.get("hits") or {}),
            "sessions": sessions,
            "open": live,
        }

    def _target(self) -> Any:
        layout = self.layout
        if self.interval is None or not layout.shared or not layout.authorities:
            return None
        return layout.authorities[0]

    def due(self, now: float) -> bool:
        """Whether *interval* seconds passed since the last look."""
        return now >= self._next

    def publish(self) -> bool:
        """Write the record now if a counter moved since this session last wrote it."""
        return self._publish() == "written"

    def _publish(self) -> str:
        """``"written"``, ``"unchanged"`` (the record is current), ``"nowhere"`` (no shared
        layer to write to) or ``"failed"``."""
        target = self._target()
        if target is None:
            return "nowhere"
        with self._lock:
            if self.interval is not None:
                self._next = time.monotonic() + self.interval
            with _LOCK:
                space = _SPACES.get(self.prefix)
                if space is None:
                    return "nowhere"
                counts = space.total()
                sessions, live = space.sessions, len(space.live)
            if counts == self._last and not self._closed:
                return "unchanged"
            record = self._record(counts, sessions, live)
            try:
                expiring = getattr(target, "set_many_expiring", None)
                if expiring is not None:
                    expiring({self.key: record}, STATS_TTL)
                else:
                    target.set_many({self.key: record})
            except Exception as error:  # a broken layer must not break the tool
                now = time.monotonic()
                if now - _WARNED.get(self.prefix, -math.inf) >= _WARN_EVERY:
                    _WARNED[self.prefix] = now
                    log.warning(
                        "writing this process's cache counters failed (tried again later): %s: %s",
                        type(error).__name__,
                        error,
                    )
                return "failed"
            self._last = counts
            self.writes += 1
            return "written"

    def close(self) -> None:
        """Keep this session's counts with the process's and write the record a last time."""
        if self._closed:
            return
        _PUBLISHER.discard(self)
        self._fold()
        self._closed = True
        self.publish()
        self.interval = None


def _after_fork() -> None:
    """In a forked child: a new process id, and what was counted so far is the parent's."""
    global _PROCESS, _LOCK
    _PROCESS = _Process()
    _LOCK = threading.RLock()
    for space in _SPACES.values():
        space.closed = {}
        space.sessions = len(space.live)
        for counted in list(space.live.values()):
            counted.base = _counts(counted.stats)
    _PUBLISHER.after_fork()


class _Publisher:
    """The one thread per process that writes the due records of every live session."""

    def __init__(self) -> None:
        self._members: weakref.WeakSet[FarmStats] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sgcache-layers-stats", daemon=True)
        self._thread.start()

    def add(self, farm: FarmStats) -> None:
        """Write *farm*'s record whenever it is due (starts the thread on first use)."""
        with self._lock:
            self._members.add(farm)
            if self._thread is None or not self._thread.is_alive():
                self._start()
            self._wake.notify()

    def discard(self, farm: FarmStats) -> None:
        """Stop looking at *farm*."""
        with self._lock:
            self._members.discard(farm)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._members:
                    self._wake.wait()
                members = list(self._members)
            now = time.monotonic()
            sleep = _TICK
            for member in members:
                interval = member.interval
                if interval is None:
                    continue
                sleep = min(sleep, interval)
                if member.due(now):
                    try:
                        member.publish()
                    except Exception:  # the thread goes on for the other sessions
                        log.debug("writing cache counters failed", exc_info=True)
            del members
            time.sleep(max(_MIN_SLEEP, sleep))

    def publish_all(self, budget: float = EXIT_BUDGET) -> None:
        """Write the record of every namespace with live sessions (at interpreter exit).

        The record is the process's, so one session of a namespace writes it for all; once
        a write of a namespace failed (its Redis gone), its other sessions do not try again,
        and nothing more is tried after *budget* seconds: an exit never waits on a dead
        layer once per unclosed session.
        """
        with self._lock:
            members = list(self._members)
        deadline = time.monotonic() + budget
        settled: set[str] = set()
        for member in members:
            if member.prefix in settled:
                continue
            if time.monotonic() >= deadline:
                break
            outcome = "failed"
            with contextlib.suppress(Exception):
                outcome = member._publish()
            if outcome != "nowhere":
                settled.add(member.prefix)

    def after_fork(self) -> None:
        """The thread did not survive the fork: start another for the inherited sessions."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread = None
        for member in list(self._members):
            member._lock = threading.Lock()
            space = _SPACES.get(member.prefix)
            member._last = space.total() if space is not None else None  # nothing new yet
        if self._members:
            self._start()


_PUBLISHER = _Publisher()
atexit.register(_PUBLISHER.publish_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# ------------------------------------------------------------------------------- reading

#: ``<format>|<site>|<identity>|stats|<host>|<pid>|<start ms>``: a process's counter record.
_RECORD_KEY = re.compile(r"^(sgcl\d+)\|([^|]*)\|([^|]*)\|stats\|([^|]*)\|(\d+)\|(\d+)$")
#: ``<format>|<site>|~site|watch``: a site's watcher heartbeat.
_WATCH_KEY = re.compile(r"^(sgcl\d+)\|([^|]*)\|~site\|watch$")
#: What of a heartbeat is shown (nothing else of it is ever printed).
_BEAT_FIELDS = ("interval", "host", "pid", "checked", "last_event", "error")


def _stored(value: Any) -> Any:
    """A value as a session stored it: text from :meth:`Session.encode`, or already decoded."""
    if isinstance(value, (str, bytes)):
        from .codec import CodecError, loads

        try:
            value = loads(value)
        except (CodecError, ValueError):
            return None
        if isinstance(value, list) and len(value) == 2 and value[0] == "~sgclv":
            return value[1]
        return None
    return value


def _number(value: Any) -> Optional[float]:
    if value.__class__ in (int, float) and math.isfinite(value):
        return float(value)
    return None


def _identity_text(part: str) -> str:
    """A namespace's identity part as people read it (values unescaped)."""
    out = []
    for item in part.split(";"):
        name, _, value = item.partition("=")
        out.append(f"{name}={urllib.parse.unquote(value)}")
    return ";".join(out)


def _heartbeat(value: Any, now: float) -> Optional[dict[str, Any]]:
    """The shown part of a watcher heartbeat, with its age (``None`` if malformed)."""
    if not isinstance(value, dict):
        return None
    stamp = _number(value.get("time"))
    beat: dict[str, Any] = {
        "time": stamp,
        "age": None if stamp is None else round(now - stamp, 3),
        "stopped": _number(value.get("stopped")),
    }
    for name in _BEAT_FIELDS:
        item = value.get(name)
        if item is None or isinstance(item, (str, int, float)):
            beat[name] = item
    return beat


def _add(total: dict[str, int], counts: Any) -> None:
    if isinstance(counts, dict):
        for name, value in counts.items():
            if isinstance(name, str) and value.__class__ is int:
                total[name] = total.get(name, 0) + value


def farm_stats(cache: Any, now: Optional[float] = None) -> dict[str, Any]:
    """The farm's numbers in *cache* (the shared layer, raw or decoding), as a JSON-able dict.

    Per site (``sites``): the watcher's heartbeat (``watcher``, with its ``age`` in seconds;
    ``None`` when there is none) and per namespace (one site and identity) the sum of every
    process's counter record: ``hits``, ``misses``, ``requests`` (made), ``saved`` (requests
    the cache saved), how many ``processes`` reported, how many ``sessions`` they opened
    and how many are still ``open``, with breakdowns by kind and method.  Reads every key of
    the cache once (``SCAN`` on Redis) and the records in batches.
    """
    moment = time.time() if now is None else now
    wanted = [k for k in cache.keys() if _RECORD_KEY.match(k) or _WATCH_KEY.match(k)]
    found = cache.get_many(wanted) if wanted else {}
    sites: dict[tuple[str, str], dict[str, Any]] = {}

    def site_of(version: str, site: str) -> dict[str, Any]:
        entry = sites.get((version, site))
        if entry is None:
            entry = sites[(version, site)] = {
                "site": urllib.parse.unquote(site),
                "format": version,
                "watcher": None,
                "_spaces": {},
            }
        return entry

    for key in wanted:
        value = _stored(found.get(key))
        watch = _WATCH_KEY.match(key)
        if watch is not None:
            site_of(*watch.groups())["watcher"] = _heartbeat(value, moment)
            continue
        match = _RECORD_KEY.match(key)
        if match is None or not isinstance(value, dict) or value.get("farm") != RECORD_VERSION:
            continue
        version, site, identity = match.groups()[:3]
        spaces = site_of(version, site)["_spaces"]
        space = spaces.get(identity)
        if space is None:
            space = spaces[identity] = {
                "identity": _identity_text(identity),
                "processes": 0,
                "sessions": 0,
                "open": 0,
                "hits_by_kind": {},
                "misses_by_kind": {},
                "requests_by_method": {},
                "stale_served": 0,
                "syncs": 0,
                "flushes": 0,
                "saved": 0,
                "last_report": None,
            }
        space["processes"] += 1
        _add(space["hits_by_kind"], value.get("hits"))
        _add(space["misses_by_kind"], value.get("misses"))
        _add(space["requests_by_method"], value.get("requests"))
        for name in ("sessions", "open", "stale_served", "syncs", "flushes", "saved"):
            item = value.get(name)
            space[name] += item if item.__class__ is int else 0
        stamp = _number(value.get("t"))
        if stamp is not None and (space["last_report"] is None or stamp > space["last_report"]):
            space["last_report"] = stamp
    out = []
    for place in sorted(sites):
        entry = sites[place]
        spaces = entry.pop("_spaces")
        entry["namespaces"] = []
        for identity in sorted(spaces):
            space = spaces[identity]
            space["hits"] = sum(space["hits_by_kind"].values())
            space["misses"] = sum(space["misses_by_kind"].values())
            space["requests"] = sum(space["requests_by_method"].values())
            entry["namespaces"].append(space)
        out.append(entry)
    return {"sites": out, "time": moment}
