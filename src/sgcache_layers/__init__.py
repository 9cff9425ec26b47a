"""Layered caching for ShotGrid tools: memory, then disk, then Redis.

``Session`` wraps a ``shotgun_api3.Shotgun`` and answers repeated reads from a
:class:`LayeredCache` (always a :class:`MemoryCache` first, then whatever cache
you give it).  The storage classes know nothing of ShotGrid and can be used on
their own or subclassed.
"""

from __future__ import annotations

from .cache import (
    Cache,
    CacheBackendError,
    LayeredCache,
    LRUMemoryCache,
    MemoryCache,
    ProxyCache,
    SerialisedCache,
)
from .codec import CodecError
from .entity import NOT_SET, Entity
from .file import FileCache
from .keys import KeyMaker, ObjectKeyMaker, StringKeyMaker
from .memoise import Memoiser, memoise, memoise_decorator
from .pool import ShotgunPool
from .query import QueryError
from .redis import RedisCache
from .session import OfflineError, Session, SessionConfigError, SessionStats

__version__ = "0.1.0"

__all__ = [
    "NOT_SET",
    "Cache",
    "CacheBackendError",
    "CodecError",
    "Entity",
    "FileCache",
    "KeyMaker",
    "LRUMemoryCache",
    "LayeredCache",
    "MemoryCache",
    "Memoiser",
    "ObjectKeyMaker",
    "OfflineError",
    "ProxyCache",
    "QueryError",
    "RedisCache",
    "SerialisedCache",
    "Session",
    "SessionConfigError",
    "SessionStats",
    "ShotgunPool",
    "StringKeyMaker",
    "__version__",
    "memoise",
    "memoise_decorator",
]
