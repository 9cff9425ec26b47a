"""ShotgunPool: one ``shotgun_api3.Shotgun`` per concurrent call.

A ``Shotgun`` instance holds one HTTP connection and is not safe to share
between threads.  The pool hands each call an idle clone of a prototype (same
configuration object, its own connection) and takes it back afterwards, so a
session can be used from many threads at once.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from typing import Any, Callable, Optional

__all__ = ["ShotgunPool", "safe_url"]

log = logging.getLogger("sgcache_layers.pool")


class ShotgunPool:
    """A thread-safe stand-in for a ``shotgun_api3.Shotgun``.

    Attribute reads go to the prototype; method calls run on a pooled clone.
    """

    def __init__(self, prototype: Any, max_idle: int = 8) -> None:
        self._prototype = prototype
        self._idle: list[Any] = [prototype]
        self._lock = threading.Lock()
        self._max_idle = max_idle
        #: Called once, before the first call: e.g. to give the instances what they would
        #: otherwise each ask the site for (its capabilities, from a cache).
        self.prepare: Optional[Callable[[], None]] = None
        self._prepared = False
        self._preparing = threading.RLock()
        self._in_prepare = False

    def ensure_prepared(self) -> None:
        """Run :attr:`prepare` if it has not run (once, whichever thread gets here first)."""
        if self._prepared or self.prepare is None:
            return
        with self._preparing:  # other threads wait; the preparing thread's own calls pass
            if self._prepared or self._in_prepare or self.prepare is None:
                return
            self._in_prepare = True
            try:
                self.prepare()
            except Exception as error:  # only a saving: the instances ask for themselves
                log.debug("preparing the ShotGrid clients failed: %s", error)
            finally:
                self._in_prepare = False
                self._prepared = True

    def share(self, name: str, value: Any) -> None:
        """Set attribute *name* on the prototype and every idle instance (clones made
        later copy it from the prototype)."""
        with self._lock:
            for instance in self._idle + [self._prototype]:
                setattr(instance, name, value)

    @property
    def prototype(self) -> Any:
        """The ``Shotgun`` instance the pool was made from."""
        return self._prototype

    @property
    def config(self) -> Any:
        """The configuration shared by every pooled instance."""
        return self._prototype.config

    def _acquire(self) -> Any:
        if not self._prepared and self.prepare is not None:
            self.ensure_prepared()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        clone = copy.copy(self._prototype)
        # A clone shares the config but must open its own connection.
        if hasattr(clone, "_connection"):
            clone._connection = None
        return clone

    def _release(self, instance: Any) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(instance)
                return
        close = getattr(instance, "close", None)
        if close is not None:
            close()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``instance.method(*args, **kwargs)`` on a pooled instance."""
        instance = self._acquire()
        try:
            return getattr(instance, method)(*args, **kwargs)
        finally:
            self._release(instance)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for instance in idle:
            close = getattr(instance, "close", None)
            if close is not None:
                close()
        self._idle.append(self._prototype)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._prototype, name)
        if callable(value) and not name.startswith("_"):
            method: Callable[..., Any] = functools.partial(self.call, name)
            return method
        return value

    def __repr__(self) -> str:
        return f"<ShotgunPool {safe_url(getattr(self._prototype, 'base_url', '?'))}>"


def safe_url(url: str) -> str:
    """*url* without the ``user:password@`` part a ShotGrid URL may carry."""
    scheme, sep, rest = str(url).partition("://")
    if not sep:
        return str(url).rpartition("@")[2]
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"
