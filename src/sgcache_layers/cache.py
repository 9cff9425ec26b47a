"""The cache interface and the in-process caches.

A :class:`Cache` maps ``str`` keys to values.  Backends (memory, disk, Redis)
implement it; :class:`LayeredCache` stacks them, shallowest (fastest) first,
and keeps a tool running when a deeper layer breaks.  Nothing here knows about
ShotGrid: the storage layer only stores.
"""

from __future__ import annotations

import abc
import logging
import math
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import (
    Any,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    TypedDict,
    Union,
)

__all__ = [
    "Cache",
    "CacheBackendError",
    "LRUMemoryCache",
    "LayerStats",
    "LayeredCache",
    "Layers",
    "MemoryCache",
    "ProxyCache",
    "SerialisedCache",
    "estimate_size",
]

logger = logging.getLogger("sgcache_layers.cache")

#: What ``clear`` accepts: a regular expression (source or compiled) or None for all keys.
Pattern = Union[str, "re.Pattern[str]", None]

_MISSING: Any = object()


class CacheBackendError(Exception):
    """A cache's store is broken or out of reach (corrupt file, dead server, ...).

    The one exception a built-in backend raises for a broken store, so callers
    need not know sqlite3 or redis exception types.  :class:`LayeredCache`
    treats it (like any non-``KeyError`` exception from a layer) as a miss.
    """


def key_type_error(key: object) -> TypeError:
    """Return the error every built-in backend raises for a key that is not ``str``."""
    return TypeError(f"cache keys must be str, not {type(key).__name__}")


def check_key(key: object) -> str:
    """Return *key* as a plain ``str`` or raise :func:`key_type_error`.

    Backends call this off their hot paths (after a cheap ``type(key) is str``).
    """
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str(key)
    raise key_type_error(key)


def _compile(pattern: Pattern) -> Optional[re.Pattern[str]]:
    """Compile a ``clear`` pattern (None stays None)."""
    if pattern is None:
        return None
    return re.compile(pattern)


class Cache(abc.ABC):
    """Interface of every cache: ``str`` keys to values.

    A subclass must implement :meth:`get`, :meth:`set` and :meth:`remove`;
    everything else has a working default built on those (and on :meth:`keys`
    for :meth:`values` and :meth:`clear`).
    """

    @abc.abstractmethod
    def get(self, key: str) -> Any:
        """Return the value stored for *key*; raise ``KeyError`` if there is none."""

    @abc.abstractmethod
    def set(self, key: str, value: Any) -> None:
        """Store *value* for *key*, replacing any earlier value."""

    @abc.abstractmethod
    def remove(self, key: str) -> None:
        """Remove *key*; raise ``KeyError`` if it is not stored."""

    def keys(self) -> list[str]:
        """Return the stored keys (a snapshot: others may change them meanwhile)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    @property
    def lists_keys(self) -> bool:
        """Whether :meth:`keys` is implemented (so :meth:`values`/:meth:`clear` work)."""
        return type(self).keys is not Cache.keys

    def values(self) -> list[Any]:
        """Return the values of the current keys (keys gone meanwhile are skipped)."""
        values = []
        for key in self.keys():
            try:
                values.append(self.get(key))
            except KeyError:
                continue
        return values

    def clear(self, pattern: Pattern = None) -> None:
        """Remove every key matching the regular expression *pattern* (``re.search``), or all."""
        regex = _compile(pattern)
        for key in self.keys():
            if regex is not None and regex.search(key) is None:
                continue
            try:
                self.remove(key)
            except KeyError:
                continue

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for those of *keys* that are stored (absent ones left out)."""
        found: dict[str, Any] = {}
        for key in keys:
            try:
                found[key] = self.get(key)
            except KeyError:
                continue
        return found

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping*."""
        for key, value in mapping.items():
            self.set(key, value)

    def set_many_expiring(self, mapping: Mapping[str, Any], seconds: Optional[float]) -> None:
        """Store every item of *mapping*, each for about *seconds* where the backend can
        expire keys (``None``: for good).

        An expiry is a hint that lets a shared store with a memory limit drop what no reader
        could use any more; the default, for backends that cannot expire keys, is
        :meth:`set_many`.
        """
        self.set_many(mapping)

    def add(self, key: str, value: Any) -> bool:
        """Store *value* only if *key* holds nothing; return whether it was stored.

        Atomic in the built-in backends (two processes adding one key: exactly one wins);
        this default checks, then sets.
        """
        try:
            self.get(key)
        except KeyError:
            self.set(key, value)
            return True
        return False

    def close(self) -> None:
        """Release connections or handles; the default has none to release."""
        return None

    def change_token(self) -> Optional[Hashable]:
        """A value that differs whenever the stored data may have changed, or ``None``.

        Callers that re-read a few keys on every operation (a session checking its
        generations) can skip the read while the token stays the same.  ``None`` (the
        default) means the cache cannot tell cheaply; backends that can, say so.
        """
        return None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: ProxyCache batch and listing methods, each with the single-key method it is built on.
_PER_KEY_ROUTES = (
    ("get_many", "get"),
    ("values", "get"),
    ("set_many", "set"),
    ("set_many_expiring", "set"),
    ("add", "set"),
    ("clear", "remove"),
)


def _defined_at(cls: type, name: str) -> int:
    """Position in ``cls.__mro__`` of the class that defines attribute *name*."""
    for index, klass in enumerate(cls.__mro__):
        if name in vars(klass):
            return index
    return len(cls.__mro__)


class ProxyCache(Cache):
    """Pass every call to the *proxied* cache (a base for wrappers).

    A subclass that overrides ``get``, ``set`` or ``remove`` (say, to store
    only the keys that match a rule, ftrack's pattern for a selective cache)
    has the batch and listing methods built on that method go through it too:
    ``get_many``/``values`` call its ``get``, ``set_many`` its ``set`` and
    ``clear`` its ``remove``, key by key.  A subclass that also overrides the
    batch method (as :class:`SerialisedCache` does) keeps its own, and a plain
    ProxyCache passes batches straight to the proxied cache.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for batch, single in _PER_KEY_ROUTES:
            if _defined_at(cls, single) < _defined_at(cls, batch):
                # The batch method predates this override of *single*: it would
                # bypass it, so use Cache's generic version, built on *single*.
                setattr(cls, batch, vars(Cache)[batch])

    def __init__(self, proxied: Cache) -> None:
        self.proxied = proxied

    def get(self, key: str) -> Any:
        """Return the proxied cache's value for *key*."""
        return self.proxied.get(key)

    def set(self, key: str, value: Any) -> None:
        """Store in the proxied cache."""
        self.proxied.set(key, value)

    def remove(self, key: str) -> None:
        """Remove from the proxied cache."""
        self.proxied.remove(key)

    def keys(self) -> list[str]:
        """Return the proxied cache's keys."""
        return list(self.proxied.keys())

    @property
    def lists_keys(self) -> bool:
        """Whether the proxied cache can list its keys."""
        return self.proxied.lists_keys

    def values(self) -> list[Any]:
        """Return the proxied cache's values."""
        return self.proxied.values()

    def clear(self, pattern: Pattern = None) -> None:
        """Clear the proxied cache."""
        self.proxied.clear(pattern)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the proxied cache's values for *keys*."""
        return self.proxied.get_many(keys)

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store *mapping* in the proxied cache."""
        self.proxied.set_many(mapping)

    def set_many_expiring(self, mapping: Mapping[str, Any], seconds: Optional[float]) -> None:
        """Store *mapping* in the proxied cache, expiring there if it can."""
        self.proxied.set_many_expiring(mapping, seconds)

    def add(self, key: str, value: Any) -> bool:
        """Add to the proxied cache."""
        return self.proxied.add(key, value)

    def close(self) -> None:
        """Close the proxied cache."""
        self.proxied.close()

    def change_token(self) -> Optional[Hashable]:
        """The proxied cache's change token."""
        return self.proxied.change_token()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.proxied!r})"


class SerialisedCache(ProxyCache):
    """Encode values on the way into the proxied cache and decode them on the way out.

    A stored value that fails to decode (corrupt, or written in a format this
    version does not know) is a miss with a logged warning, never an exception.
    Encoding errors do propagate: they are the caller's data, not the store.
    """

    def __init__(
        self,
        proxied: Cache,
        encode: Optional[Callable[[Any], Any]] = None,
        decode: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        super().__init__(proxied)
        self.encode = encode
        self.decode = decode

    def _undecodable(self, key: str, exc: Exception) -> None:
        """Log (without the value) that the record for *key* could not be decoded."""
        logger.warning(
            "%s: could not decode the value stored for key %r, treating it as a miss: %s: %.200s",
            type(self).__name__,
            key,
            type(exc).__name__,
            exc,
        )

    def get(self, key: str) -> Any:
        """Return the decoded value for *key*; ``KeyError`` if absent or undecodable."""
        value = self.proxied.get(key)
        decode = self.decode
        if decode is None:
            return value
        try:
            return decode(value)
        except Exception as exc:
            self._undecodable(key, exc)
            raise KeyError(key) from None

    def set(self, key: str, value: Any) -> None:
        """Encode *value* and store it."""
        encode = self.encode
        self.proxied.set(key, value if encode is None else encode(value))

    def values(self) -> list[Any]:
        """Return the decoded values (undecodable ones are skipped)."""
        return Cache.values(self)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return decoded values for the stored *keys*; undecodable ones are left out."""
        found = self.proxied.get_many(keys)
        decode = self.decode
        if decode is None:
            return found
        result: dict[str, Any] = {}
        for key, value in found.items():
            try:
                result[key] = decode(value)
            except Exception as exc:
                self._undecodable(key, exc)
        return result

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Encode every value of *mapping* and store them together."""
        encode = self.encode
        if encode is None:
            self.proxied.set_many(mapping)
        else:
            self.proxied.set_many({key: encode(value) for key, value in mapping.items()})

    def set_many_expiring(self, mapping: Mapping[str, Any], seconds: Optional[float]) -> None:
        """Encode every value of *mapping* and store them together, expiring if it can."""
        encode = self.encode
        if encode is not None:
            mapping = {key: encode(value) for key, value in mapping.items()}
        self.proxied.set_many_expiring(mapping, seconds)

    def add(self, key: str, value: Any) -> bool:
        """Encode *value* and add it to the proxied cache."""
        encode = self.encode
        return self.proxied.add(key, value if encode is None else encode(value))


class LayerStats(TypedDict):
    """Counters of one :class:`LayeredCache` layer."""

    index: int
    name: str
    hits: int
    misses: int
    errors: int


class Layers(tuple[Cache, ...]):
    """The layers of a :class:`LayeredCache`: a sequence that refuses in-place changes.

    ``cache.caches.append(layer)`` on a copy would silently attach nothing, so
    every mutating list method raises ``TypeError`` saying to assign a new
    list instead.  Indexing, iteration, ``len`` and equality with a list or
    tuple of the same layers work as for a list.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            "LayeredCache.caches cannot be changed in place; assign a new list instead: "
            "cache.caches = [*cache.caches, layer]"
        )

    append = insert = extend = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(
                mine is theirs or mine == theirs for mine, theirs in zip(self, other)
            )
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    def __repr__(self) -> str:
        return f"Layers({list(self)!r})"


class LayeredCache(Cache):
    """Stack of caches, shallowest (fastest) first.

    ``get`` answers from the first layer that has the key and copies the value
    into every shallower layer; ``set`` and ``remove`` go to every layer.

    A layer that raises anything but ``KeyError`` (a :class:`CacheBackendError`,
    ``OSError``, a Redis error, ...) is logged as a warning (layer class and
    error, never values) and treated as a miss for reads and skipped for writes,
    so a tool keeps working on the layers that still do.  ``TypeError`` is a
    usage error (a non-``str`` key, an unstorable value) and propagates.
    Warnings for one layer are rate limited to one per *warning_interval*
    seconds (the rest go to debug); :meth:`stats` counts every hit, miss and error.

    :attr:`caches` is read-only in place and replaced by assignment; each
    assignment adds one to :attr:`revision`, so code holding views derived
    from the layers can tell they changed.
    """

    #: How many times :attr:`caches` has been assigned since construction.
    revision: int

    def __init__(self, caches: Sequence[Cache], *, warning_interval: float = 10.0) -> None:
        self.warning_interval = warning_interval
        self._install(caches)
        self.revision = 0

    @property
    def caches(self) -> Layers:
        """The layers, shallowest first (assign a new list to replace them)."""
        return self._caches

    @caches.setter
    def caches(self, caches: Sequence[Cache]) -> None:
        self._install(caches)
        self.revision += 1

    def _install(self, caches: Sequence[Cache]) -> None:
        """Make *caches* the layers and reset the counters (nothing changes on error)."""
        layers = Layers(caches)
        if not layers:
            raise ValueError("LayeredCache needs at least one layer")
        self._caches = layers
        self._first = first = layers[0]
        # The usual front layer is a plain MemoryCache: read its dict directly,
        # saving a call on every warm get (subclasses go through their get()).
        self._first_data: Optional[dict[str, Any]] = (
            first._data if type(first) is MemoryCache else None
        )
        self.reset_stats()

    # -- stats ---------------------------------------------------------------

    def reset_stats(self) -> None:
        """Zero every layer's counters."""
        count = len(self._caches)
        self._first_hits = 0
        self._hits = [0] * count
        self._misses = [0] * count
        self._errors = [0] * count
        self._last_warning = [-math.inf] * count

    def stats(self) -> list[LayerStats]:
        """Return hits, misses (``KeyError``) and errors (anything else) for each layer."""
        return [
            LayerStats(
                index=index,
                name=type(cache).__name__,
                hits=self._hits[index] + (self._first_hits if index == 0 else 0),
                misses=self._misses[index],
                errors=self._errors[index],
            )
            for index, cache in enumerate(self._caches)
        ]

    def _failed(self, index: int, operation: str, exc: BaseException) -> None:
        """Count and log that layer *index* raised *exc* during *operation*."""
        self._errors[index] += 1
        now = time.monotonic()
        if now - self._last_warning[index] >= self.warning_interval:
            self._last_warning[index] = now
            log = logger.warning
        else:
            log = logger.debug
        log(
            "cache layer %d (%s) failed on %s, carrying on without it: %s: %s",
            index,
            type(self._caches[index]).__name__,
            operation,
            type(exc).__name__,
            exc,
        )

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Any:
        """Return the value from the shallowest layer that has *key*, copying it upwards."""
        data = self._first_data
        if data is not None:
            try:
                value = data[key]
            except KeyError:
                return self._get_deeper(key, None)
            except TypeError:
                raise key_type_error(key) from None
            self._first_hits += 1
            return value
        try:
            value = self._first.get(key)
        except KeyError:
            return self._get_deeper(key, None)
        except TypeError:
            raise
        except Exception as exc:
            return self._get_deeper(key, exc)
        self._first_hits += 1
        return value

    def _get_deeper(self, key: str, first_error: Optional[Exception]) -> Any:
        """Look *key* up below the first layer (the first layer missed or failed)."""
        if not isinstance(key, str):
            raise key_type_error(key)
        caches = self._caches
        failed = [False] * len(caches)
        if first_error is None:
            self._misses[0] += 1
        else:
            failed[0] = True
            self._failed(0, "get", first_error)
        for index in range(1, len(caches)):
            try:
                value = caches[index].get(key)
            except KeyError:
                self._misses[index] += 1
                continue
            except TypeError:
                raise
            except Exception as exc:
                failed[index] = True
                self._failed(index, "get", exc)
                continue
            self._hits[index] += 1
            for shallower in range(index):
                if failed[shallower]:
                    continue
                try:
                    caches[shallower].set(key, value)
                except TypeError:
                    raise
                except Exception as exc:
                    self._failed(shallower, "set", exc)
            return value
        raise KeyError(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return stored values for *keys*, asking each layer only for keys still missing."""
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            if not isinstance(key, str):
                raise key_type_error(key)
        found: dict[str, Any] = {}
        missing = wanted
        caches = self._caches
        failed = [False] * len(caches)
        for index, cache in enumerate(caches):
            if not missing:
                break
            try:
                hits = cache.get_many(missing)
            except TypeError:
                raise
            except Exception as exc:
                failed[index] = True
                self._failed(index, "get_many", exc)
                continue
            self._hits[index] += len(hits)
            self._misses[index] += len(missing) - len(hits)
            if not hits:
                continue
            found.update(hits)
            for shallower in range(index):
                if failed[shallower]:
                    continue
                try:
                    caches[shallower].set_many(hits)
                except TypeError:
                    raise
                except Exception as exc:
                    self._failed(shallower, "set_many", exc)
            missing = [key for key in missing if key not in hits]
        if len(found) < 2:
            return found
        return {key: found[key] for key in wanted if key in found}

    def keys(self) -> list[str]:
        """Return the union of the keys of every layer that can list them."""
        merged: dict[str, None] = {}
        listed = False
        for index, cache in enumerate(self._caches):
            try:
                layer_keys = cache.keys()
            except NotImplementedError:
                continue
            except Exception as exc:
                self._failed(index, "keys", exc)
                listed = True
                continue
            listed = True
            merged.update(dict.fromkeys(layer_keys))
        if not listed:
            raise NotImplementedError("no layer of this LayeredCache can list its keys")
        return list(merged)

    @property
    def lists_keys(self) -> bool:
        """Whether any layer can list its keys."""
        return any(cache.lists_keys for cache in self._caches)

    # -- writes --------------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """Store *value* in every layer (failing layers are skipped with a warning)."""
        if type(key) is not str:
            key = check_key(key)
        for index, cache in enumerate(self._caches):
            try:
                cache.set(key, value)
            except TypeError:
                raise
            except Exception as exc:
                self._failed(index, "set", exc)

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping* in every layer."""
        self._store_in_every_layer(mapping, lambda cache: cache.set_many(mapping))

    def set_many_expiring(self, mapping: Mapping[str, Any], seconds: Optional[float]) -> None:
        """Store every item of *mapping* in every layer, expiring where a layer can."""
        self._store_in_every_layer(mapping, lambda cache: cache.set_many_expiring(mapping, seconds))

    def _store_in_every_layer(
        self, mapping: Mapping[str, Any], store: Callable[[Cache], None]
    ) -> None:
        """Check every key of *mapping*, then *store* into each layer (failures skipped)."""
        for key in mapping:
            if not isinstance(key, str):
                raise key_type_error(key)
        for index, cache in enumerate(self._caches):
            try:
                store(cache)
            except TypeError:
                raise
            except Exception as exc:
                self._failed(index, "set_many", exc)

    def add(self, key: str, value: Any) -> bool:
        """Add *value* in the deepest working layer (the one every reader shares); if it
        was stored there, copy it into the shallower ones.  A layer that fails is skipped."""
        if type(key) is not str:
            key = check_key(key)
        caches = self._caches
        for index in range(len(caches) - 1, -1, -1):
            try:
                stored = caches[index].add(key, value)
            except TypeError:
                raise
            except Exception as exc:
                self._failed(index, "add", exc)
                continue
            if stored:
                for shallower in range(index):
                    try:
                        caches[shallower].set(key, value)
                    except TypeError:
                        raise
                    except Exception as exc:
                        self._failed(shallower, "set", exc)
            return bool(stored)
        return False

    def remove(self, key: str) -> None:
        """Remove *key* from every layer; ``KeyError`` only if no working layer had it."""
        if type(key) is not str:
            key = check_key(key)
        removed = False
        for index, cache in enumerate(self._caches):
            try:
                cache.remove(key)
            except KeyError:
                continue
            except TypeError:
                raise
            except Exception as exc:
                self._failed(index, "remove", exc)
                continue
            removed = True
        if not removed:
            raise KeyError(key)

    def clear(self, pattern: Pattern = None) -> None:
        """Clear every layer.

        A layer that cannot list its keys has the matching keys of the other
        layers removed from it instead (gathered before anything is cleared).
        """
        regex = _compile(pattern)
        caches = self._caches
        unlisted = [index for index, cache in enumerate(caches) if not cache.lists_keys]
        known: list[str] = []
        if unlisted:
            if len(unlisted) == len(caches):
                raise NotImplementedError("no layer of this LayeredCache can list its keys")
            known = [key for key in self.keys() if regex is None or regex.search(key) is not None]
        for index, cache in enumerate(caches):
            try:
                if index in unlisted:
                    for key in known:
                        try:
                            cache.remove(key)
                        except KeyError:
                            continue
                else:
                    cache.clear(pattern)
            except TypeError:
                raise
            except Exception as exc:
                self._failed(index, "clear", exc)

    def close(self) -> None:
        """Close every layer (a failing one is logged and skipped)."""
        for index, cache in enumerate(self._caches):
            try:
                cache.close()
            except Exception as exc:
                self._failed(index, "close", exc)

    def change_token(self) -> Optional[Hashable]:
        """Every layer's change token, or ``None`` if one of them cannot tell."""
        tokens = []
        for cache in self._caches:
            try:
                token = cache.change_token()
            except Exception:  # a broken layer cannot vouch for anything
                return None
            if token is None:
                return None
            tokens.append(token)
        return tuple(tokens)

    def __repr__(self) -> str:
        return f"LayeredCache({list(self._caches)!r})"


# Makes MemoryCache.add one step for every thread of the process (adds are rare).
_ADD_LOCK = threading.Lock()


class _StrKeyDict(dict[str, Any]):
    """A dict whose misses say ``TypeError`` for a non-``str`` key (hits cost nothing extra)."""

    __slots__ = ()

    def __missing__(self, key: object) -> Any:
        if type(key) is not str:
            check_key(key)
        raise KeyError(key)


#: What ``MemoryCache(max_bytes=..., sizeof=...)`` accepts: value -> size in bytes.
Sizeof = Callable[[Any], int]


def estimate_size(value: Any) -> int:
    """Return a cheap size estimate of *value* in bytes (the default ``sizeof``).

    ``len()`` for ``str``, ``bytes`` and ``bytearray``; an object whose type
    defines ``__sgcache_sizeof__()`` reports its own size; anything else gets
    :func:`sys.getsizeof`, which is shallow (a dict's items are not counted).
    """
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        return len(value)
    method = getattr(kind, "__sgcache_sizeof__", None)
    if method is not None:
        return int(method(value))
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    return sys.getsizeof(value)


class MemoryCache(Cache):
    """A dict in this process: any value, no copies.

    ``MemoryCache(max_entries=N)`` and/or ``MemoryCache(max_bytes=B)`` give an
    :class:`LRUMemoryCache` that drops the least recently used entries beyond
    *N* entries or *B* bytes (as measured by *sizeof*, default
    :func:`estimate_size`); the unbounded cache is a bare dict behind
    ``get``/``set`` so it costs no more than a dict.
    """

    def __new__(
        cls,
        max_entries: Optional[int] = None,
        max_bytes: Optional[int] = None,
        sizeof: Optional[Sizeof] = None,
    ) -> MemoryCache:
        if cls is MemoryCache and (max_entries is not None or max_bytes is not None):
            return super().__new__(LRUMemoryCache)
        return super().__new__(cls)

    def __init__(
        self,
        max_entries: Optional[int] = None,
        max_bytes: Optional[int] = None,
        sizeof: Optional[Sizeof] = None,
    ) -> None:
        if max_entries is not None or max_bytes is not None:
            raise ValueError("max_entries and max_bytes need LRUMemoryCache")
        if sizeof is not None:
            raise ValueError("sizeof is only used with max_bytes")
        self._data: dict[str, Any] = _StrKeyDict()
        self._bind()

    def _bind(self) -> None:
        """Serve ``get`` straight from the dict when no subclass overrides it.

        The dict's own ``__getitem__`` needs no Python frame, so ``get`` costs
        what a dict lookup does; misses still raise ``KeyError`` (or
        ``TypeError`` for a non-``str`` key, through ``_StrKeyDict``).
        """
        if type(self).get is MemoryCache.get and type(self._data) is _StrKeyDict:
            # object.__setattr__ (not self.__dict__) keeps CPython's fast
            # inline attribute storage for this instance.
            object.__setattr__(self, "get", self._data.__getitem__)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("get", None)  # a bound method of the old dict: rebound on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self._bind()

    def get(self, key: str) -> Any:
        """Return the value for *key*; ``KeyError`` if absent."""
        try:
            return self._data[key]
        except KeyError:
            if type(key) is not str:
                check_key(key)
            raise
        except TypeError:
            raise key_type_error(key) from None

    def set(self, key: str, value: Any) -> None:
        """Store *value* for *key*."""
        try:
            # ``key + ""`` is the cheapest str check: only str (and look-alikes
            # whose + accepts str) pass, and str subclasses come out as str.
            self._data[key + ""] = value
        except TypeError:
            raise key_type_error(key) from None

    def add(self, key: str, value: Any) -> bool:
        """Store *value* if *key* is absent (atomic: one dict operation)."""
        if type(key) is not str:
            key = check_key(key)
        with _ADD_LOCK:
            if key in self._data:
                return False
            self._data[key] = value
            return True

    def remove(self, key: str) -> None:
        """Remove *key*; ``KeyError`` if absent."""
        try:
            del self._data[key]
        except KeyError:
            if type(key) is not str:
                check_key(key)
            raise
        except TypeError:
            raise key_type_error(key) from None

    def keys(self) -> list[str]:
        """Return the keys."""
        return list(self._data)

    def values(self) -> list[Any]:
        """Return the values."""
        return list(self._data.values())

    def clear(self, pattern: Pattern = None) -> None:
        """Remove the keys matching *pattern*, or all."""
        regex = _compile(pattern)
        if regex is None:
            self._data.clear()
            return
        search = regex.search
        for key in [key for key in list(self._data) if search(key) is not None]:
            self._data.pop(key, None)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the stored values for *keys*."""
        data = self._data
        found: dict[str, Any] = {}
        for key in keys:
            if type(key) is not str:
                key = check_key(key)
            value = data.get(key, _MISSING)
            if value is not _MISSING:
                found[key] = value
        return found

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping*."""
        for key in mapping:
            if type(key) is not str:
                check_key(key)
        self._data.update({str(key): value for key, value in mapping.items()})

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self)} entries>)"


def _positive_bound(name: str, bound: Optional[int]) -> Optional[int]:
    """Return *bound* if it is None or a positive int, else raise ``ValueError``."""
    if bound is None or (isinstance(bound, int) and not isinstance(bound, bool) and bound >= 1):
        return bound
    raise ValueError(f"{name} must be a positive int, not {bound!r}")


class LRUMemoryCache(MemoryCache):
    """A :class:`MemoryCache` bounded to *max_entries* entries and/or *max_bytes* bytes.

    Beyond either bound the least recently used entries are dropped first
    (``get``, ``get_many`` and ``set`` count as use).  Sizes come from
    *sizeof* (default :func:`estimate_size`), measured once when a value is
    stored; a value larger than *max_bytes* on its own is not kept at all (and
    replaces, so removes, what the key held).  Safe to share between threads.
    """

    def __init__(
        self,
        max_entries: Optional[int] = None,
        max_bytes: Optional[int] = None,
        sizeof: Optional[Sizeof] = None,
    ) -> None:
        if max_entries is None and max_bytes is None:
            raise ValueError("LRUMemoryCache needs max_entries or max_bytes")
        if sizeof is not None and max_bytes is None:
            raise ValueError("sizeof is only used with max_bytes")
        self.max_entries = _positive_bound("max_entries", max_entries)
        self.max_bytes = _positive_bound("max_bytes", max_bytes)
        self.sizeof: Sizeof = estimate_size if sizeof is None else sizeof
        self._lru: OrderedDict[str, Any] = OrderedDict()
        self._data = self._lru
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.RLock()

    @property
    def current_bytes(self) -> int:
        """Total size of the stored values, by *sizeof* (0 without *max_bytes*)."""
        return self._bytes

    # -- bookkeeping (callers hold the lock) -----------------------------------

    def _measure(self, value: Any) -> int:
        """Return the size of *value*, or 0 when bytes are not bounded."""
        if self.max_bytes is None:
            return 0
        size = self.sizeof(value)
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"sizeof returned {size!r}, not a size in bytes")
        return size

    def _put(self, key: str, value: Any, size: int) -> None:
        """Store one entry as the most recently used and drop what no longer fits."""
        lru = self._lru
        max_bytes = self.max_bytes
        if max_bytes is not None:
            self._bytes -= self._sizes.pop(key, 0)
            if size > max_bytes:
                lru.pop(key, None)  # too big to keep: the old value goes too
                return
            self._sizes[key] = size
            self._bytes += size
        lru[key] = value
        lru.move_to_end(key)
        max_entries = self.max_entries
        if max_entries is not None:
            while len(lru) > max_entries:
                self._drop_oldest()
        if max_bytes is not None:
            while self._bytes > max_bytes:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        key, _value = self._lru.popitem(last=False)
        if self.max_bytes is not None:
            self._bytes -= self._sizes.pop(key)

    def _forget(self, key: str) -> None:
        """Remove *key* (known present) from the LRU and the size accounts."""
        del self._lru[key]
        if self.max_bytes is not None:
            self._bytes -= self._sizes.pop(key)

    # -- Cache API -------------------------------------------------------------

    def get(self, key: str) -> Any:
        """Return the value for *key* and mark it most recently used."""
        with self._lock:
            try:
                value = self._lru[key]
            except KeyError:
                if type(key) is not str:
                    check_key(key)
                raise
            except TypeError:
                raise key_type_error(key) from None
            self._lru.move_to_end(key)
            return value

    def set(self, key: str, value: Any) -> None:
        """Store *value*, dropping the least recently used entries beyond the bounds."""
        if type(key) is not str:
            key = check_key(key)
        max_entries = self.max_entries
        if self.max_bytes is None and max_entries is not None:
            # Entries only: the old LRU path, with no size bookkeeping.
            with self._lock:
                lru = self._lru
                lru[key] = value
                lru.move_to_end(key)
                while len(lru) > max_entries:
                    lru.popitem(last=False)
            return
        size = self._measure(value)
        with self._lock:
            self._put(key, value, size)

    def add(self, key: str, value: Any) -> bool:
        """Store *value* if *key* is absent, within the bounds (atomic under the lock)."""
        if type(key) is not str:
            key = check_key(key)
        with self._lock:
            if key in self._lru:
                return False
            self.set(key, value)
            return True

    def remove(self, key: str) -> None:
        """Remove *key*; ``KeyError`` if absent."""
        if type(key) is not str:
            key = check_key(key)
        with self._lock:
            self._forget(key)

    def keys(self) -> list[str]:
        """Return the keys, least recently used first."""
        with self._lock:
            return list(self._lru)

    def values(self) -> list[Any]:
        """Return the values, least recently used first."""
        with self._lock:
            return list(self._lru.values())

    def clear(self, pattern: Pattern = None) -> None:
        """Remove the keys matching *pattern*, or all."""
        regex = _compile(pattern)
        with self._lock:
            if regex is None:
                self._lru.clear()
                self._sizes.clear()
                self._bytes = 0
                return
            search = regex.search
            for key in [key for key in self._lru if search(key) is not None]:
                self._forget(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the stored values for *keys* and mark them used."""
        found: dict[str, Any] = {}
        with self._lock:
            lru = self._lru
            for key in keys:
                if type(key) is not str:
                    key = check_key(key)
                value = lru.get(key, _MISSING)
                if value is not _MISSING:
                    lru.move_to_end(key)
                    found[key] = value
        return found

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping* (all keys are checked before any is stored)."""
        items = [(check_key(key), value, self._measure(value)) for key, value in mapping.items()]
        with self._lock:
            for key, value, size in items:
                self._put(key, value, size)

    def _bounds_text(self) -> str:
        """The bounds as a repr shows them (``max_entries=N, max_bytes=B``)."""
        bounds = []
        if self.max_entries is not None:
            bounds.append(f"max_entries={self.max_entries}")
        if self.max_bytes is not None:
            bounds.append(f"max_bytes={self.max_bytes}")
        return ", ".join(bounds)

    def __repr__(self) -> str:
        return f"LRUMemoryCache({self._bounds_text()}, <{len(self)} entries>)"
