"""One reader of the event log for a whole farm: :class:`Watcher` and its heartbeat.

Every session that wants to notice other people's changes reads ``EventLogEntry`` itself
(:meth:`Session.sync <sgcache_layers.session.Session.sync>`), so a farm of a thousand
processes asks ShotGrid a thousand times for the same rows.  A watcher asks once for all of
them: it follows the event log of one site, moves the generations the events touch in the
shared Redis (with the gap, backlog and limit handling of
:class:`~sgcache_layers.freshness.EventLog`, which it uses), and keeps a *heartbeat* there,
under the site's ``watch`` key.  While the heartbeat is live (see
:func:`~sgcache_layers.freshness.heartbeat_live`), the sessions sharing that Redis make no
event-log request of their own; when it goes stale they read the event log themselves again.

The heartbeat is a plain dict, for the sessions and for whoever monitors the farm:

``time``
    When the last successful sync began (events up to then are applied); ``None`` before
    the first.  Sessions trust the watcher while this is recent enough for ``interval``.
``interval``
    Seconds between syncs.
``host``, ``pid``, ``id``
    Where the watcher runs, and a random id that tells two watchers apart.
``started``, ``checked``
    When the watcher started, and when it last tried to sync.
``last_event``
    The event-log position after the last sync.
``syncs``, ``events``, ``flushes``, ``failures``
    Successful syncs, events read, namespace flushes (gaps, limits) and failed syncs.
``seconds``
    How long the last successful sync took.
``error``
    The last failure (``"ProtocolError: ..."``, never a credential), ``None`` once a sync
    succeeds again.
``stopped``
    When the watcher stopped cleanly (``None`` while it runs): sessions stop trusting it at
    once.
``version``
    The format of this dict (1) and ``package``, the sgcache_layers version.

Run it with ``sgcache-layers watch --redis URL`` (see the farm guide), or in a process of
your own::

    with Watcher("redis://farm-redis:6379/0") as watcher:  # the site from SG_URL & co.
        watcher.run()  # until watcher.stop() (from a signal handler, say)
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Optional, Union

from .cache import Cache, SerialisedCache
from .config import SessionConfigError, cache_from_spec, parse_cache_spec
from .freshness import EventLog, heartbeat_live, heartbeat_window
from .pool import safe_url
from .records import Keys

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "DEFAULT_INTERVAL",
    "HEARTBEAT_VERSION",
    "Watcher",
    "heartbeat_live",
    "read_heartbeat",
    "window_of",
]

log = logging.getLogger("sgcache_layers.watcher")

#: Seconds between two syncs of a watcher unless told otherwise.
DEFAULT_INTERVAL = 5.0
#: The ``version`` of the heartbeat dict a watcher writes.
HEARTBEAT_VERSION = 1
#: After a wake-up, syncs are at least this many seconds apart (a burst of events is one).
_MIN_GAP = 0.2


def _interval(value: Any) -> float:
    """*value* as a positive, finite number of seconds (``SessionConfigError`` if not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SessionConfigError(
            f"interval must be a number of seconds, not {type(value).__name__}"
        )
    if not math.isfinite(value) or value <= 0:
        raise SessionConfigError(f"interval must be a positive number of seconds, not {value!r}")
    return float(value)


def _url_secrets(url: str) -> list[str]:
    """The parts of a Redis URL that may be secret: its password and password options."""
    found: list[str] = []
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            found.append(urllib.parse.unquote(parts.password))
    except ValueError:
        pass
    netloc = url.partition("://")[2].partition("/")[0]
    if "@" in netloc:  # a multi-host URL urlsplit cannot read
        found.append(netloc.rpartition("@")[0].partition(":")[2])
    query = url.partition("?")[2]
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=False):
        if "password" in name.lower():
            found.append(value)
    return [text for text in found if text]


class Watcher:
    """Follows a site's event log for every session sharing one Redis.

    *redis* is the Redis the sessions share: a URL as ``Session(cache=...)`` takes it
    (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``, ``redis+cluster://``,
    with the same ``?namespace=`` as the sessions' own), or a ready
    :class:`~sgcache_layers.redis.RedisCache`.  *shotgun* is the site's client; by default
    one is made from the environment (``SG_URL``, ``SG_SCRIPT`` and ``SG_API_KEY``, or
    Toolkit's ``SHOTGUN_*``), as a :class:`~sgcache_layers.session.Session` makes it.  The
    client's identity must be able to read ``EventLogEntry``; what it reads serves every
    identity of the site, since generations are site-wide.

    The watcher is a real session over that Redis alone: :meth:`sync_once` runs the
    session's own event-log sync, forced (a watcher never trusts a heartbeat, its own
    included), then writes the heartbeat.  :meth:`run` does that every *interval* seconds
    until :meth:`stop`; :meth:`start` runs it in a thread and :meth:`wake` asks for a sync
    now (an event daemon's plugin calls it on every event).

    Bad arguments raise :class:`~sgcache_layers.config.SessionConfigError`, naming what is
    wrong and never a password.
    """

    def __init__(
        self,
        redis: Union[str, Cache],
        shotgun: Any = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        sync_limit: int = 5000,
        event_backlog: float = 300.0,
    ) -> None:
        from .session import Session

        self.interval = _interval(interval)
        self._secrets: list[str] = []
        if isinstance(redis, str):
            layers = parse_cache_spec(redis)
            kinds = [layer.kind for layer in layers]
            if kinds != ["redis"]:
                where = " + ".join(layer.label for layer in layers) or "memory"
                raise SessionConfigError(
                    "the watcher needs the one Redis the sessions share (a redis://, "
                    f"rediss://, unix://, redis+sentinel:// or redis+cluster:// URL), not {where}"
                )
            #: Where the heartbeat goes, as logs may show it (no credentials).
            self.label = layers[0].label
            self._secrets.extend(_url_secrets(redis))
        elif isinstance(redis, Cache):
            self.label = type(redis).__name__
        else:
            raise SessionConfigError(
                f"redis must be a Redis URL or a RedisCache, not {type(redis).__name__}"
            )
        self._spec = redis
        self._layer: Optional[Cache] = None
        #: The session the watcher reads through (its only layer is the shared Redis).
        self.session: Session = Session(
            shotgun,
            cache=self._open,
            mode="cached",
            sync_interval=None,
            sync_limit=sync_limit,
            event_backlog=event_backlog,
            stats_interval=None,  # it answers no reads: no counters of its own to publish
        )
        if self._layer is None:
            self.session.close()
            raise SessionConfigError(f"the Redis layer {self.label} could not be opened")
        config = getattr(self.session.shotgun, "config", None)
        for name in ("api_key", "user_password", "session_token", "auth_token", "proxy_pass"):
            value = getattr(config, name, None)
            if isinstance(value, str) and value:
                self._secrets.append(value)
        # The session's own event log: the same gap, backlog and limit handling as sync().
        self._events: EventLog = self.session._events
        self._keys: Keys = self._events.freshness.keys
        #: The site whose event log is followed (no credentials).
        self.site: str = safe_url(self.session.site)
        self.host: str = socket.gethostname()
        self.pid: int = os.getpid()
        self.id: str = secrets.token_hex(4)
        self.started: float = time.time()
        #: When the last successful sync began (``None`` before the first).
        self.synced_at: Optional[float] = None
        self.checked: Optional[float] = None
        self.syncs: int = 0
        self.events: int = 0
        self.failures: int = 0
        self.seconds: float = 0.0
        #: The last failure, as the heartbeat and the logs show it (``None`` after a success).
        self.error: Optional[str] = None
        self._stop: threading.Event = threading.Event()
        self._wake: threading.Event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._others: set[str] = set()

    def _open(self, session: Any) -> Optional[Cache]:
        """The session's cache: the Redis layer alone (kept, to write the heartbeat)."""
        if isinstance(self._spec, str):
            self._layer = cache_from_spec(self._spec, session)
        else:
            self._layer = SerialisedCache(self._spec, encode=session.encode, decode=session.decode)
        return self._layer

    def __repr__(self) -> str:
        return f"<Watcher {self.site} -> {self.label} every {self.interval:g} s>"

    # -- reporting -------------------------------------------------------------------

    def describe(self, error: BaseException) -> str:
        """*error* as one line for logs and the heartbeat, with every known secret hidden."""
        text = " ".join(f"{type(error).__name__}: {error}".split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]

    @property
    def position(self) -> Optional[int]:
        """The event-log position after the last sync (``None`` before it)."""
        return self._events.position

    def heartbeat(self) -> Optional[dict[str, Any]]:
        """The heartbeat now stored in Redis (any watcher's; ``None`` if there is none)."""
        return self._events.heartbeat()

    def _beat(self, stopped: Optional[float] = None) -> dict[str, Any]:
        beat: dict[str, Any] = {
            "version": HEARTBEAT_VERSION,
            "time": self.synced_at,
            "interval": self.interval,
            "host": self.host,
            "pid": self.pid,
            "id": self.id,
            "started": self.started,
            "checked": self.checked,
            "last_event": self.position,
            "syncs": self.syncs,
            "events": self.events,
            "flushes": self.session.stats.flushes,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "stopped": stopped,
            "package": _package_version(),
        }
        assert self._layer is not None
        self._layer.set(self._keys.watch, beat)
        return beat

    def _notice_others(self, beat: Any) -> None:
        """Warn (once per watcher) when another live watcher writes the same heartbeat."""
        if not heartbeat_live(beat) or beat.get("id") == self.id:
            return
        other = str(beat.get("id"))
        if other not in self._others:
            self._others.add(other)
            log.warning(
                "another watcher (host %s, pid %s) also follows this site's event log in %s; "
                "one is enough",
                beat.get("host"),
                beat.get("pid"),
                self.label,
            )

    # -- syncing ---------------------------------------------------------------------

    def sync_once(self) -> int:
        """Read the event log once (forced), move what changed, write the heartbeat.

        Returns the number of events read.  A failure (ShotGrid or Redis) is raised after
        the heartbeat records it, keeping the time of the last success, so sessions stop
        trusting a watcher that cannot read.
        """
        assert self._layer is not None
        began = time.time()
        clock = time.monotonic()
        self.checked = began
        stored: Any = None
        try:
            # One read first: Redis answers (else nothing below is worth doing), and is
            # anyone else watching?
            stored = self._layer.get_many([self._keys.watch]).get(self._keys.watch)
            self._notice_others(stored)
            count = self._events.sync(force=True)
        except Exception as error:
            self.failures += 1
            self.error = self.describe(error)
            # Record the failure, unless another watcher's live heartbeat is there: a
            # watcher that cannot read must not make the farm distrust one that can.
            if not heartbeat_live(stored) or stored.get("id") == self.id:
                try:
                    self._beat()
                except Exception:  # Redis is what failed: nothing to record it in
                    log.debug("writing the heartbeat failed too", exc_info=True)
            raise
        first = self.synced_at is None
        self.synced_at = began
        self.seconds = time.monotonic() - clock
        self.syncs += 1
        self.events += count
        recovered = self.error is not None
        self.error = None
        self._beat()
        if first:
            log.info("following the event log of %s from event %s", self.site, self.position)
        elif recovered:
            log.info("syncing again; the event log is at %s", self.position)
        if count:
            log.info("read %d events; the event log is at %s", count, self.position)
        return count

    def run(self) -> None:
        """Sync every :attr:`interval` seconds until :meth:`stop`; failures are logged.

        A sync that fails is tried again at the next interval.  On a clean stop the
        heartbeat says ``stopped``, so sessions read the event log themselves at once.
        """
        self._stop.clear()
        due = time.monotonic()
        last = -math.inf
        while not self._stop.is_set():
            wait = max(0.0, last + _MIN_GAP - time.monotonic())
            if wait and self._stop.wait(wait):
                break
            last = time.monotonic()
            try:
                self.sync_once()
            except Exception as error:
                log.warning(
                    "syncing failed (%s); trying again in %g s", self.describe(error), self.interval
                )
            due = max(due + self.interval, time.monotonic())
            if self._stop.is_set():
                break
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
        self._mark_stopped()

    def _mark_stopped(self) -> None:
        """Say in the heartbeat that this watcher stopped (if the heartbeat is still ours)."""
        try:
            beat = self.heartbeat()
            if beat is not None and beat.get("id") == self.id:
                self._beat(stopped=time.time())
        except Exception as error:  # Redis went away: the heartbeat goes stale instead
            log.warning("could not mark the heartbeat stopped: %s", self.describe(error))

    def start(self) -> threading.Thread:
        """Run :meth:`run` in a daemon thread; returns the thread."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop.clear()
        thread = threading.Thread(target=self.run, name="sgcache-layers-watcher", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def wake(self) -> None:
        """Sync now rather than at the next interval (safe from any thread or signal)."""
        self._wake.set()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ask :meth:`run` to return after the sync in progress; joins a :meth:`start` thread."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop, then close the session (its Redis connection and ShotGrid connections)."""
        self.stop(timeout=30)
        self.session.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_heartbeat(redis: Union[str, Cache], site: str) -> Optional[dict[str, Any]]:
    """The watcher heartbeat of *site* (a ShotGrid URL) stored in *redis*, or ``None``.

    *redis* is a Redis URL as the sessions' cache spec names it, or a ready
    :class:`~sgcache_layers.cache.Cache` holding what sessions wrote (not wrapped in a
    serialiser).  Read errors of the backend are raised; a missing or unreadable value
    is ``None``.  :func:`~sgcache_layers.freshness.heartbeat_live` says whether sessions
    trust it.
    """
    from . import codec
    from .records import Namespace

    if isinstance(redis, str):
        layers = parse_cache_spec(redis)
        if [layer.kind for layer in layers] != ["redis"]:
            raise SessionConfigError("read_heartbeat needs one Redis URL")
        cache: Cache = layers[0].open()
    else:
        cache = redis
    name = safe_url(site.strip()).lower().rstrip("/")
    key = Keys("", Namespace(name, ()).shared).watch
    try:
        raw = cache.get(key)
    except KeyError:
        return None
    finally:
        if cache is not redis:
            cache.close()
    try:
        value = codec.loads(raw)
    except Exception:  # not what a watcher wrote
        return None
    if isinstance(value, list) and len(value) == 2 and value[0] == "~sgclv":
        value = value[1]
    return value if isinstance(value, dict) else None


def _package_version() -> str:
    from . import __version__

    return __version__


def window_of(beat: Any) -> Optional[float]:
    """Seconds a heartbeat is trusted after its ``time`` (``None`` for a malformed one)."""
    interval = beat.get("interval") if isinstance(beat, dict) else None
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        return None
    return heartbeat_window(float(interval))
