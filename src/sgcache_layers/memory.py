"""The session's memory layer when it is bounded: built answers evicted, bookkeeping kept.

``Session(memory_max_entries=N, memory_max_bytes=B)`` keeps at most *N* built answers
(or *B* bytes of them, as :class:`~sgcache_layers.answers.Answer` estimates its size) in
the memory layer, dropping the least recently used first, so a long-running service does
not grow without bound.  Only answers are evicted: a session with no persistent layer keeps
its bookkeeping (epoch, clock, generations, event-log position) in memory too, and losing
the epoch would look like a reset cache and flush the namespace.  That bookkeeping (at most
one token per entity type and per bucket of a type) is kept whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional

from .cache import LRUMemoryCache, MemoryCache, Pattern, _compile, check_key
from .config import SessionConfigError
from .records import Namespace

__all__ = ["SessionMemory", "memory_layer"]

#: The third part of every key the sites' shared bookkeeping lives under (``sgcl3|site|~site``).
_SHARED_PART = Namespace("", ()).shared.rsplit("|", 1)[1]
_SHARED_MARK = f"|{_SHARED_PART}|"


def _kept(key: str) -> bool:
    """Whether *key* is shared bookkeeping (never evicted): its third part is ``~site``."""
    if _SHARED_MARK not in key:
        return False
    parts = key.split("|", 3)
    return len(parts) == 4 and parts[2] == _SHARED_PART


def _bound(name: str, value: Any) -> Optional[int]:
    """*value* if it is ``None`` or an int >= 1, else :class:`SessionConfigError` naming it."""
    if value is None or (value.__class__ is int and value >= 1):
        return value
    raise SessionConfigError(f"{name} must be None or an int >= 1, not {value!r}")


def memory_layer(max_entries: Any = None, max_bytes: Any = None) -> MemoryCache:
    """The memory layer a session starts with: unbounded (a plain :class:`MemoryCache`,
    the fastest) unless *max_entries* or *max_bytes* bounds it (:class:`SessionMemory`).

    Raises :class:`~sgcache_layers.config.SessionConfigError` naming a bad bound.
    """
    entries = _bound("memory_max_entries", max_entries)
    size = _bound("memory_max_bytes", max_bytes)
    if entries is None and size is None:
        return MemoryCache()
    return SessionMemory(entries, size)


class SessionMemory(LRUMemoryCache):
    """An :class:`~sgcache_layers.cache.LRUMemoryCache` that never evicts shared bookkeeping.

    Keys of the sites' shared bookkeeping (``sgcl3|<site>|~site|...``) live in a plain dict
    beside the bounded entries and count towards neither bound; everything else (built
    answers, and whatever else is stored here) is bounded as in the LRU cache.
    """

    def __init__(self, max_entries: Optional[int] = None, max_bytes: Optional[int] = None) -> None:
        super().__init__(max_entries, max_bytes)
        self._kept: dict[str, Any] = {}

    @property
    def bounded_entries(self) -> int:
        """How many entries the bounds apply to (the rest is kept bookkeeping)."""
        return len(self._lru)

    def get(self, key: str) -> Any:
        """The value for *key* (``KeyError`` if absent); an answer counts as used."""
        if type(key) is str and _kept(key):
            with self._lock:
                return self._kept[key]
        return super().get(key)

    def set(self, key: str, value: Any) -> None:
        """Store *value*; beyond the bounds the least recently used answers are dropped."""
        key = check_key(key)
        if _kept(key):
            with self._lock:
                self._kept[key] = value
            return
        super().set(key, value)

    def add(self, key: str, value: Any) -> bool:
        """Store *value* if *key* is absent (atomic under the lock)."""
        key = check_key(key)
        with self._lock:
            if _kept(key):
                if key in self._kept:
                    return False
                self._kept[key] = value
                return True
            return super().add(key, value)

    def remove(self, key: str) -> None:
        """Remove *key*; ``KeyError`` if absent."""
        key = check_key(key)
        with self._lock:
            if _kept(key):
                del self._kept[key]
                return
            super().remove(key)

    def keys(self) -> list[str]:
        """The kept keys, then the bounded ones (least recently used first)."""
        with self._lock:
            return list(self._kept) + super().keys()

    def values(self) -> list[Any]:
        """The values, in the order of :meth:`keys`."""
        with self._lock:
            return list(self._kept.values()) + super().values()

    def clear(self, pattern: Pattern = None) -> None:
        """Remove the keys matching *pattern*, or all."""
        regex = _compile(pattern)
        with self._lock:
            if regex is None:
                self._kept.clear()
            else:
                for key in [k for k in self._kept if regex.search(k) is not None]:
                    del self._kept[key]
            super().clear(pattern)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored values of *keys* (answers among them count as used)."""
        wanted = [check_key(key) for key in keys]
        found: dict[str, Any] = {}
        with self._lock:
            kept = self._kept
            rest = []
            for key in wanted:
                if _kept(key):
                    if key in kept:
                        found[key] = kept[key]
                else:
                    rest.append(key)
            if rest:
                found.update(super().get_many(rest))
        return found

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping* (every key is checked before any is stored)."""
        items = [(check_key(key), value) for key, value in mapping.items()]
        with self._lock:
            bounded = {}
            for key, value in items:
                if _kept(key):
                    self._kept[key] = value
                else:
                    bounded[key] = value
            if bounded:
                super().set_many(bounded)

    def __len__(self) -> int:
        return len(self._kept) + len(self._lru)

    def __repr__(self) -> str:
        return (
            f"SessionMemory({self._bounds_text()}, <{len(self._lru)} entries, "
            f"{len(self._kept)} kept>)"
        )
