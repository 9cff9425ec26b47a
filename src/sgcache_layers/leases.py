"""Fill leases: of many processes missing the same answer, one asks ShotGrid.

When a render farm starts a job, hundreds of processes ask the same questions of an empty
shared layer at once.  :class:`SingleFlight <sgcache_layers.fetching.SingleFlight>` makes
the threads of one process ask once; a lease does the same across processes.  Before asking,
a process adds a short lease next to the answer's key in the authority layer (the deepest
shared one; :meth:`Cache.add <sgcache_layers.cache.Cache.add>` lets exactly one process
win).  The others wait, reading the shared layer for the answer and using it as soon as it
is there.

* The holder renews its lease while its request runs, and removes it once the record it
  guarded is written (or the request failed).
* A waiter never waits past the lease's deadline plus a bound: a lease that is not renewed
  (its holder died) is taken over by one waiter (another atomic add decides which), and a
  waiter that saw no answer in time asks ShotGrid itself.
* A lease that disappears without an answer (the holder failed, or its answer was already
  outdated) is taken again by a waiter.
* A broken or missing shared layer means no lease: every process asks, as without leases.

A lease is a plain dict: ``{"h": holder, "u": deadline}`` (wall-clock seconds).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional, TypeVar

from .cache import Cache

__all__ = ["LEASE_SECONDS", "WAIT_BOUND", "FillLeases"]

log = logging.getLogger("sgcache_layers.leases")

#: Seconds a lease lasts unless renewed (its holder renews it while the request runs).
LEASE_SECONDS = 5.0
#: Seconds a waiter waits past a lease's deadline before it asks ShotGrid itself.
WAIT_BOUND = 2.0
# How often a waiter looks: first soon, then less often.
_FIRST_POLL = 0.02
_MAX_POLL = 0.25

_T = TypeVar("_T")
_time = time.time


def _holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Held:
    """A lease this process holds, renewed from a timer until released."""

    def __init__(self, leases: FillLeases, layer: Cache, key: str) -> None:
        self.leases = leases
        self.layer = layer
        self.key = key
        self._done = threading.Event()
        self._timer: Optional[threading.Thread] = None

    def start_renewing(self) -> None:
        period = self.leases.seconds / 2

        def renew() -> None:
            while not self._done.wait(period):
                try:
                    self.layer.set(self.key, self.leases.value())
                except Exception as error:  # the waiters will take over; nothing breaks
                    log.debug("renewing a fill lease failed: %s", error)
                    return

        self._timer = threading.Thread(target=renew, name="sgcache-layers-lease", daemon=True)
        self._timer.start()

    def release(self, writer: Any) -> None:
        """Stop renewing; remove the lease after what was queued before (the record)."""
        self._done.set()
        writer.remove(self.layer, [self.key, self.key + "|takeover"])


class FillLeases:
    """Cross-process fill leases on the authority layers of a session (see the module).

    *authorities* gives the layers, deepest first (re-read on every use, since a session's
    layers may change); *writer* queues the lease's removal after the record it guarded.
    """

    def __init__(
        self,
        authorities: Callable[[], Sequence[Cache]],
        writer: Any,
        *,
        seconds: float = LEASE_SECONDS,
        bound: float = WAIT_BOUND,
    ) -> None:
        self.authorities = authorities
        self.writer = writer
        self.seconds = seconds
        self.bound = bound
        self.holder = _holder_id()
        #: Fills this process waited for and another process made (for tests and stats).
        self.waited = 0
        self.taken_over = 0

    def value(self) -> dict[str, Any]:
        """A lease held by this process, valid for :attr:`seconds` from now."""
        return {"h": self.holder, "u": _time() + self.seconds}

    def _layer(self) -> Optional[Cache]:
        layers = self.authorities()
        return layers[0] if layers else None

    def _acquire(self, layer: Cache, key: str) -> Optional[_Held]:
        try:
            if layer.add(key, self.value()):
                return _Held(self, layer, key)
        except Exception as error:
            log.debug("a fill lease could not be taken: %s", error)
            raise
        return None

    def run(
        self,
        key: str,
        fill: Callable[[], _T],
        check: Callable[[], Optional[_T]],
    ) -> _T:
        """*fill()* under the lease of *key*, or what *check()* finds once another process
        filled it.  *check* returns the usable answer from the shared layer, or ``None``."""
        layer = self._layer()
        if layer is None:
            return fill()
        lease_key = key + "|lease"
        try:
            held = self._acquire(layer, lease_key)
        except Exception:  # no shared layer to agree on: ask, as without leases
            return fill()
        if held is None:
            found, held = self._wait(layer, lease_key, check)
            if found is not None:
                return found
        if held is None:
            return fill()
        held.start_renewing()
        try:
            # Another holder may have written the answer and let go just before this
            # process took the lease: look once more before asking.
            found = check()
            return fill() if found is None else found
        finally:
            held.release(self.writer)

    def _wait(
        self, layer: Cache, lease_key: str, check: Callable[[], Optional[_T]]
    ) -> tuple[Optional[_T], Optional[_Held]]:
        """Wait for another holder's answer: ``(answer, None)``, or ``(None, lease)`` once
        this process holds the lease, or ``(None, None)`` when it should just ask."""
        pause = _FIRST_POLL
        deadline = _time() + self.seconds + self.bound  # until the first read says more
        while True:
            found = check()
            if found is not None:
                self.waited += 1
                return found, None
            try:
                lease = layer.get_many([lease_key]).get(lease_key)
            except Exception:
                return None, None
            now = _time()
            if not isinstance(lease, dict) or not isinstance(lease.get("u"), (int, float)):
                # Released: its answer may have landed just after the look above.
                found = check()
                if found is not None:
                    self.waited += 1
                    return found, None
                # Released without an answer we can use (or never readable): take it.
                try:
                    held = self._acquire(layer, lease_key)
                except Exception:
                    return None, None
                if held is not None:
                    return None, held
            elif lease["u"] < now:
                # Not renewed: its holder is gone.  One waiter takes over.
                held = self._take_over(layer, lease_key, lease)
                if held is not None:
                    self.taken_over += 1
                    return None, held
            else:
                deadline = max(deadline, float(lease["u"]) + self.bound)
            if now >= deadline:
                return None, None
            time.sleep(min(pause, max(0.0, deadline - now)))
            pause = min(pause * 1.5, _MAX_POLL)

    def _take_over(self, layer: Cache, lease_key: str, lease: dict[str, Any]) -> Optional[_Held]:
        marker = f"{lease_key}|takeover"
        try:
            if not layer.add(marker, {"h": self.holder, "of": [lease.get("h"), lease["u"]]}):
                current = layer.get_many([marker]).get(marker)
                # A marker left for an older lease (its taker died too) does not count.
                if isinstance(current, dict) and current.get("of") == [lease.get("h"), lease["u"]]:
                    return None
                layer.set(marker, {"h": self.holder, "of": [lease.get("h"), lease["u"]]})
            layer.set(lease_key, self.value())
        except Exception:
            return None
        return _Held(self, layer, lease_key)
