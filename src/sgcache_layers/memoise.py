"""Memoise function calls in a :class:`~sgcache_layers.cache.Cache`.

One call made with positional, keyword or default arguments is one cache
entry: arguments are bound to the function's signature before keying.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar, cast

from sgcache_layers.cache import Cache, MemoryCache
from sgcache_layers.keys import KeyMaker, ObjectKeyMaker

__all__ = ["Memoiser", "memoise", "memoise_decorator", "memoiser"]

_F = TypeVar("_F", bound=Callable[..., Any])
_NO_SIGNATURE: Any = object()
_SIGNATURE_CACHE_SIZE = 1024


class Memoiser:
    """Call functions through a cache: the key is the function plus its bound arguments.

    *cache* defaults to a new :class:`~sgcache_layers.cache.MemoryCache`,
    *key_maker* to :class:`~sgcache_layers.keys.ObjectKeyMaker`.  With
    *return_copies* every result handed out is a deep copy, so a caller
    mutating it cannot change what later callers get.
    """

    def __init__(
        self,
        cache: Optional[Cache] = None,
        key_maker: Optional[KeyMaker] = None,
        return_copies: bool = True,
    ) -> None:
        self.cache: Cache = cache if cache is not None else MemoryCache()
        self.key_maker: KeyMaker = key_maker if key_maker is not None else ObjectKeyMaker()
        self.return_copies = return_copies
        self._signatures: dict[Any, Any] = {}

    def _signature(self, function: Callable[..., Any]) -> Any:
        """Return *function*'s signature (cached), or a marker if it has none."""
        try:
            return self._signatures[function]
        except KeyError:
            pass
        except TypeError:  # unhashable callable
            return self._inspect(function)
        signature = self._inspect(function)
        if len(self._signatures) >= _SIGNATURE_CACHE_SIZE:
            self._signatures.clear()
        self._signatures[function] = signature
        return signature

    @staticmethod
    def _inspect(function: Callable[..., Any]) -> Any:
        try:
            return inspect.signature(function)
        except (TypeError, ValueError):
            return _NO_SIGNATURE

    def arguments(
        self,
        function: Callable[..., Any],
        args: Sequence[Any] = (),
        kw: Optional[Mapping[str, Any]] = None,
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        """Return ``(function, arguments)`` as keyed: defaults applied, names bound.

        A bound method is keyed as its function with ``self`` as first argument.
        Raises ``TypeError`` if the arguments do not fit the signature.
        """
        kw = {} if kw is None else kw
        target = function
        if inspect.ismethod(function):
            target = function.__func__
            args = (function.__self__, *args)
        signature = self._signature(target)
        if signature is _NO_SIGNATURE:
            return target, {"*args": tuple(args), "**kwargs": dict(kw)}
        bound = signature.bind(*args, **kw)
        bound.apply_defaults()
        return target, dict(bound.arguments)

    def call(
        self,
        function: Callable[..., Any],
        args: Optional[Sequence[Any]] = None,
        kw: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """Return ``function(*args, **kw)``, from the cache when this call was made before."""
        args = () if args is None else args
        kw = {} if kw is None else kw
        target, arguments = self.arguments(function, args, kw)
        key = self.key_maker.key(target, arguments)
        try:
            value = self.cache.get(key)
        except KeyError:
            value = function(*args, **kw)
            self.cache.set(key, value)
        if self.return_copies:
            return copy.deepcopy(value)
        return value


def memoise_decorator(memoiser: Memoiser) -> Callable[[_F], _F]:
    """Return a decorator that memoises a function through *memoiser*."""

    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def memoised(*args: Any, **kw: Any) -> Any:
            return memoiser.call(function, args, kw)

        return cast(_F, memoised)

    return decorate


#: The default memoiser: an unbounded memory cache and :class:`ObjectKeyMaker`.
memoiser = Memoiser()

#: Decorator memoising through :data:`memoiser`.
memoise = memoise_decorator(memoiser)
