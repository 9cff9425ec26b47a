"""Layered caching for ShotGrid tools: memory, then disk, then Redis.

``Session`` wraps a ``shotgun_api3.Shotgun`` and answers repeated reads from a
:class:`LayeredCache` (always a :class:`MemoryCache` first, then whatever cache
you give it).  The storage classes know nothing of ShotGrid and can be used on
their own or subclassed.

Importing the package is cheap: each public name is imported from the submodule that
defines it the first time it is used (PEP 562), so ``import sgcache_layers`` loads neither
``shotgun_api3`` nor ``diskcache`` nor ``redis``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, MutableMapping, Optional, Sequence, Tuple

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
    from .detached import DetachedError
    from .entity import NOT_SET, Entity, RetiredEntityError
    from .file import FileCache
    from .keys import KeyMaker, ObjectKeyMaker, StringKeyMaker
    from .memoise import Memoiser, memoise, memoise_decorator
    from .pool import ShotgunPool
    from .query import QueryError
    from .redis import RedisCache
    from .session import OfflineError, Session, SessionConfigError, SessionStats
    from .warming import WarmError

__version__ = "0.1.0"

__all__ = [
    "NOT_SET",
    "Cache",
    "CacheBackendError",
    "CodecError",
    "DetachedError",
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
    "RetiredEntityError",
    "SerialisedCache",
    "Session",
    "SessionConfigError",
    "SessionStats",
    "ShotgunPool",
    "StringKeyMaker",
    "WarmError",
    "__version__",
    "memoise",
    "memoise_decorator",
]

#: The submodule defining each public name (the imports above, for type checkers).
_EXPORTS: Dict[str, Tuple[str, ...]] = {
    "cache": (
        "Cache",
        "CacheBackendError",
        "LayeredCache",
        "LRUMemoryCache",
        "MemoryCache",
        "ProxyCache",
        "SerialisedCache",
    ),
    "codec": ("CodecError",),
    "detached": ("DetachedError",),
    "entity": ("NOT_SET", "Entity", "RetiredEntityError"),
    "file": ("FileCache",),
    "keys": ("KeyMaker", "ObjectKeyMaker", "StringKeyMaker"),
    "memoise": ("Memoiser", "memoise", "memoise_decorator"),
    "pool": ("ShotgunPool",),
    "query": ("QueryError",),
    "redis": ("RedisCache",),
    "session": ("OfflineError", "Session", "SessionConfigError", "SessionStats"),
    "warming": ("WarmError",),
}


def _lazy_exports(
    package: str,
    namespace: MutableMapping[str, Any],
    exports: Mapping[str, Sequence[str]],
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for *package*, whose public names load on first access.

    *namespace* is the package's ``globals()``; *exports* maps each submodule to the names
    it defines.  A name is imported from its submodule once, then kept in *namespace*.  Any
    other attribute that names a submodule imports it, as the eager imports used to make
    ``package.submodule`` work after a bare ``import package``.
    """
    origins = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = origins.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
            namespace[name] = value
            return value
        if name.isidentifier() and not name.startswith("_"):
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the submodule exists but needs something missing: say so
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(origins))

    return __getattr__, __dir__


class _Package(types.ModuleType):
    """The package's module type: ``sgcache_layers.memoise`` stays the decorator.

    ``memoise`` names both a submodule and the decorator exported here.  Importing the
    submodule (``from sgcache_layers.memoise import Memoiser``) makes the import system set
    the package attribute ``memoise`` to the module; the eager imports used to rebind it to
    the decorator straight after.  This property keeps that answer whatever is imported in
    whichever order: it ignores the submodule being set, and otherwise keeps what is
    assigned (``monkeypatch.setattr`` works as on any module).
    """

    @property
    def memoise(self) -> Callable[..., Any]:
        value: Optional[Callable[..., Any]] = self.__dict__.get("memoise")
        if value is None:
            from .memoise import memoise as decorator

            value = self.__dict__["memoise"] = decorator
        return value

    @memoise.setter
    def memoise(self, value: Callable[..., Any]) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.memoise":
            return
        self.__dict__["memoise"] = value

    @memoise.deleter
    def memoise(self) -> None:
        self.__dict__.pop("memoise", None)


if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = _lazy_exports(__name__, globals(), _EXPORTS)

sys.modules[__name__].__class__ = _Package
