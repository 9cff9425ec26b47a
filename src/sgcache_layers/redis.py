"""A cache shared between machines, on a Redis server.

Needs the optional ``redis`` package (``pip install sgcache-layers[redis]``);
it is imported when a :class:`RedisCache` is made, so the rest of the package
works without it.
"""

from __future__ import annotations

import importlib
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, TypeVar, Union

from sgcache_layers.cache import (
    Cache,
    CacheBackendError,
    Pattern,
    _compile,
    check_key,
    logger,
)

if TYPE_CHECKING:
    import redis as redis_lib

__all__ = ["RedisCache"]

_T = TypeVar("_T")
_STR_TAG = b"s"
_BYTES_TAG = b"b"
_BATCH = 500
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _value_type_error(value: object) -> TypeError:
    return TypeError(f"RedisCache stores str or bytes values, not {type(value).__name__}")


def strip_credentials(url: str) -> str:
    """Return *url* without user, password or query (which may hold a password)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def _url_secrets(url: str) -> tuple[str, ...]:
    """Return the password-like parts of *url*, to scrub them from error messages."""
    secrets: list[str] = []
    try:
        parts = urllib.parse.urlsplit(url)
        for secret in (parts.password, parts.username):
            if secret:
                secrets.append(secret)
                secrets.append(urllib.parse.unquote(secret))
        for name, value in urllib.parse.parse_qsl(parts.query):
            if name.lower() in ("password", "username") and value:
                secrets.append(value)
    except ValueError:
        pass
    return tuple(sorted({secret for secret in secrets if len(secret) > 2}, key=len, reverse=True))


def _describe_client(client: Any) -> str:
    """Return a credential-free address for a ready-made Redis client."""
    try:
        options = client.connection_pool.connection_kwargs
    except AttributeError:
        return f"<{type(client).__name__}>"
    if options.get("path"):
        return f"unix://{options['path']}"
    host = options.get("host", "localhost")
    return f"redis://{host}:{options.get('port', 6379)}/{options.get('db', 0)}"


class RedisCache(Cache):
    """``str`` -> ``str``/``bytes`` cache in Redis, under ``namespace + ":" + key``.

    *url_or_client* is a ``redis://`` / ``rediss://`` / ``unix://`` URL (the
    client is made with short time-outs so a dead server cannot hang a tool:
    *socket_connect_timeout* and *socket_timeout* seconds, *retries* quick
    retries) or a ready ``redis.Redis`` client (used as it is; it must not
    decode responses).  Values keep their type: a one-byte tag says ``str``
    or ``bytes``.  *ttl* (seconds) makes every entry expire.

    Connection failures and time-outs raise
    :class:`~sgcache_layers.cache.CacheBackendError`, whose message never
    includes credentials from the URL.
    """

    def __init__(
        self,
        url_or_client: Union[str, redis_lib.Redis],
        namespace: str = "sgcache_layers",
        ttl: Optional[float] = None,
        *,
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 2.0,
        retries: int = 1,
        **client_options: Any,
    ) -> None:
        try:
            redis_module: Any = importlib.import_module("redis")
        except ImportError as exc:
            raise ImportError(
                "RedisCache needs the 'redis' package: pip install 'sgcache-layers[redis]'"
            ) from exc
        self._errors: tuple[type[BaseException], ...] = (
            redis_module.exceptions.RedisError,
            OSError,
        )
        self._response_error: type[BaseException] = redis_module.exceptions.ResponseError
        if isinstance(url_or_client, str):
            self.url = strip_credentials(url_or_client)
            self._secrets = _url_secrets(url_or_client)
            backoff = importlib.import_module("redis.backoff")
            retry = importlib.import_module("redis.retry")
            options: dict[str, Any] = {
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": socket_connect_timeout,
                "retry": retry.Retry(backoff.ExponentialBackoff(cap=0.1, base=0.01), retries),
            }
            options.update(client_options)
            try:
                self._client: Any = redis_module.Redis.from_url(url_or_client, **options)
            except ValueError as exc:
                message = self._scrub(str(exc))
                raise ValueError(f"invalid Redis URL {self.url}: {message}") from None
            self._owns_client = True
        else:
            if client_options:
                raise TypeError("client options need a URL, not a ready client")
            self._client = url_or_client
            self.url = _describe_client(url_or_client)
            self._secrets = ()
            self._owns_client = False
            pool = getattr(url_or_client, "connection_pool", None)
            if pool is not None and pool.connection_kwargs.get("decode_responses"):
                raise ValueError("RedisCache needs a client made with decode_responses=False")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be positive seconds or None, not {ttl!r}")
        self.namespace = namespace
        self.ttl = ttl
        self._ttl_ms = None if ttl is None else max(1, int(ttl * 1000))
        self._prefix = namespace + ":"
        self._prefix_bytes = self._prefix.encode("utf-8")
        self._match = _GLOB_SPECIAL.sub(r"\\\1", namespace) + ":*"

    # -- plumbing ------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, operation: str, exc: BaseException) -> CacheBackendError:
        message = self._scrub(f"{type(exc).__name__}: {exc}")
        return CacheBackendError(
            f"the Redis cache at {self.url} failed during {operation}: {message}"
        )

    def _run(self, operation: str, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return function(*args, **kwargs)
        except self._errors as exc:
            raise self._error(operation, exc) from exc

    @staticmethod
    def _encode(value: Any) -> bytes:
        if type(value) is str:
            return _STR_TAG + value.encode("utf-8", "surrogatepass")
        if type(value) is bytes:
            return _BYTES_TAG + value
        raise _value_type_error(value)

    def _decode(self, key: str, raw: bytes) -> Any:
        """Return the stored value; raise ``KeyError`` (with a warning) for an unknown record."""
        tag = raw[:1]
        if tag == _STR_TAG:
            try:
                return raw[1:].decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                problem = "text that is not UTF-8"
        elif tag == _BYTES_TAG:
            return raw[1:]
        else:
            problem = "an unknown format"
        logger.warning(
            "Redis cache at %s: the record for key %r has %s, treating it as a miss",
            self.url,
            key,
            problem,
        )
        raise KeyError(key)

    # -- Cache API -----------------------------------------------------------

    def get(self, key: str) -> Any:
        """Return the value for *key*; ``KeyError`` if absent."""
        if type(key) is not str:
            key = check_key(key)
        try:
            raw = self._client.get(self._prefix + key)
        except self._errors as exc:
            raise self._error("get", exc) from exc
        if raw is None:
            raise KeyError(key)
        return self._decode(key, raw)

    def set(self, key: str, value: Any) -> None:
        """Store the ``str`` or ``bytes`` *value* (expiring after ``ttl`` if set)."""
        if type(key) is not str:
            key = check_key(key)
        payload = self._encode(value)
        try:
            self._client.set(self._prefix + key, payload, px=self._ttl_ms)
        except self._errors as exc:
            raise self._error("set", exc) from exc

    def remove(self, key: str) -> None:
        """Remove *key*; ``KeyError`` if absent."""
        if type(key) is not str:
            key = check_key(key)
        if not self._run("remove", self._client.delete, self._prefix + key):
            raise KeyError(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the stored values for *keys*, with one ``MGET`` per 500 keys."""
        wanted = list(dict.fromkeys(check_key(key) for key in keys))
        found: dict[str, Any] = {}
        prefix = self._prefix
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            raws = self._run("get_many", self._client.mget, [prefix + key for key in batch])
            for key, raw in zip(batch, raws):
                if raw is None:
                    continue
                try:
                    found[key] = self._decode(key, raw)
                except KeyError:
                    continue
        return found

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping* through one pipeline per 500 items."""
        prefix = self._prefix
        items = [(prefix + check_key(key), self._encode(value)) for key, value in mapping.items()]
        for start in range(0, len(items), _BATCH):
            self._run("set_many", self._set_batch, items[start : start + _BATCH])

    def _set_batch(self, items: list[tuple[str, bytes]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for name, payload in items:
            pipe.set(name, payload, px=self._ttl_ms)
        pipe.execute()

    def _scan(self) -> list[bytes]:
        return list(self._client.scan_iter(match=self._match, count=1000))

    def keys(self) -> list[str]:
        """Return this namespace's keys (found with ``SCAN``, so never blocking the server)."""
        strip = len(self._prefix_bytes)
        keys = []
        for raw in self._run("keys", self._scan):
            try:
                keys.append(raw[strip:].decode("utf-8"))
            except UnicodeDecodeError:
                continue
        return keys

    def clear(self, pattern: Pattern = None) -> None:
        """Remove this namespace's keys matching *pattern* (all if None), in batches."""
        regex = _compile(pattern)
        strip = len(self._prefix_bytes)
        doomed = []
        for raw in self._run("clear", self._scan):
            if regex is not None:
                try:
                    key = raw[strip:].decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if regex.search(key) is None:
                    continue
            doomed.append(raw)
        for start in range(0, len(doomed), _BATCH):
            self._run("clear", self._unlink, doomed[start : start + _BATCH])

    def _unlink(self, names: list[bytes]) -> None:
        try:
            self._client.unlink(*names)
        except self._response_error:
            self._client.delete(*names)  # a server older than Redis 4 has no UNLINK

    def close(self) -> None:
        """Close the connections of a client this cache made (a given client is left open)."""
        if not self._owns_client:
            return
        try:
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
            else:
                self._client.connection_pool.disconnect()
        except self._errors as exc:
            logger.debug("closing the Redis cache at %s: %s", self.url, exc)

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r}, namespace={self.namespace!r})"
