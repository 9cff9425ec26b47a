"""A cache shared between machines, on a Redis server, Sentinel or Cluster.

Needs the optional ``redis`` package (``pip install sgcache-layers[redis]``);
it is imported when a :class:`RedisCache` is made, so the rest of the package
works without it.
"""

from __future__ import annotations

import importlib
import re
import threading
import urllib.parse
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Mapping,
    NamedTuple,
    Optional,
    TypeVar,
    Union,
)

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
    import redis.cluster as redis_cluster

__all__ = ["RedisCache", "strip_credentials"]

_T = TypeVar("_T")
_STR_TAG = b"s"
_BYTES_TAG = b"b"
_BATCH = 500
_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")
#: Multi-host URL schemes: scheme -> (kind, plain scheme, default port).
_MULTI_HOST_SCHEMES = {
    "redis+sentinel": ("sentinel", "redis", 26379),
    "rediss+sentinel": ("sentinel", "rediss", 26379),
    "redis+cluster": ("cluster", "redis", 6379),
    "rediss+cluster": ("cluster", "rediss", 6379),
}
#: Query options of a Sentinel URL that are for the Sentinels, not the master.
_SENTINEL_QUERY = ("sentinel_username", "sentinel_password")
_SECRET_QUERY = ("password", "username", *_SENTINEL_QUERY)
#: Error replies from a cluster node that a plain (non-cluster) client cannot follow.
_CLUSTER_REPLIES = ("MOVED ", "ASK ", "CROSSSLOT ", "CLUSTERDOWN ")


def _value_type_error(value: object) -> TypeError:
    return TypeError(f"RedisCache stores str or bytes values, not {type(value).__name__}")


def _encode_text(text: str) -> bytes:
    """UTF-8 that also carries lone surrogates, so every ``str`` round-trips exactly."""
    return text.encode("utf-8", "surrogatepass")


class _MultiHostURL(NamedTuple):
    """The parts of a ``redis+sentinel://`` or ``redis+cluster://`` URL."""

    kind: str  # "sentinel" or "cluster"
    scheme: str  # "redis" or "rediss"
    userinfo: str  # "user:password" as written, "" if none
    hosts: list[tuple[str, int]]
    path: str
    query: str


def _format_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_multi_host(url: str) -> Optional[_MultiHostURL]:
    """Split a multi-host URL; None for any other scheme.  ``ValueError`` if malformed."""
    scheme, separator, rest = url.partition("://")
    known = _MULTI_HOST_SCHEMES.get(scheme.lower())
    if not separator or known is None:
        return None
    kind, plain_scheme, default_port = known
    rest, _, _fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, _, host_list = netloc.rpartition("@")
    hosts = []
    for item in host_list.split(","):
        if item.startswith("["):
            host, bracket, port_text = item[1:].partition("]")
            if not bracket or (port_text and not port_text.startswith(":")):
                raise ValueError("a bracketed IPv6 host needs a closing ']'")
            port_text = port_text[1:]
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError("every host of the list needs a name")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError("a port must be a number") from None
        if not 0 < port < 65536:
            raise ValueError("a port must be between 1 and 65535")
        hosts.append((urllib.parse.unquote(host), port))
    return _MultiHostURL(kind, plain_scheme, userinfo, hosts, slash + path, query)


def strip_credentials(url: str) -> str:
    """Return *url* without user, password or query (which may hold a password)."""
    try:
        multi = _split_multi_host(url)
        if multi is not None:
            hosts = ",".join(_format_host(host, port) for host, port in multi.hosts)
            return f"{url.partition('://')[0]}://{hosts}{multi.path}"
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
    """Return the password-like parts of *url*, to scrub them from error messages.

    Parsed by hand, so a URL that ``urllib`` rejects (or a multi-host one) still
    gives up its secrets.
    """
    secrets: list[str] = []
    netloc = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    userinfo = netloc.rpartition("@")[0]
    if userinfo:
        username, _, password = userinfo.partition(":")
        for secret in (password, username):
            if secret:
                secrets.append(secret)
                secrets.append(urllib.parse.unquote(secret))
    query = url.partition("?")[2].partition("#")[0]
    for name, value in urllib.parse.parse_qsl(query):
        if name.lower() in _SECRET_QUERY and value:
            secrets.append(value)
    return tuple(sorted({secret for secret in secrets if len(secret) > 2}, key=len, reverse=True))


def _describe_client(client: Any, cluster: bool) -> str:
    """Return a credential-free address for a ready-made Redis client."""
    if cluster:
        try:
            names = sorted(node.name for node in client.get_nodes())
        except Exception:  # a description must never fail
            names = []
        return "redis+cluster://" + ",".join(names)
    pool: Any = getattr(client, "connection_pool", None)
    if pool is None:
        return f"<{type(client).__name__}>"
    manager: Any = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        addresses = []
        for sentinel in getattr(manager, "sentinels", ()):
            options = sentinel.connection_pool.connection_kwargs
            addresses.append(
                _format_host(options.get("host", "localhost"), options.get("port", 26379))
            )
        db = pool.connection_kwargs.get("db", 0)
        return f"redis+sentinel://{','.join(addresses)}/{pool.service_name}/{db}"
    options = pool.connection_kwargs
    if options.get("path"):
        return f"unix://{options['path']}"
    host = options.get("host", "localhost")
    return f"redis://{host}:{options.get('port', 6379)}/{options.get('db', 0)}"


class RedisCache(Cache):
    """``str`` -> ``str``/``bytes`` cache in Redis, under ``namespace + ":" + key``.

    *url_or_client* is a URL or a ready client (used as it is; it must not
    decode responses):

    * ``redis://``, ``rediss://`` (TLS) or ``unix://`` -- one server;
    * ``redis+sentinel://[user:password@]host:26379[,host2:26379...]/MASTER[/DB]``
      (``rediss+sentinel://`` for TLS to the Sentinels and the master) -- the
      master that the Sentinels know as ``MASTER``, found again after a
      failover.  The user and password are the master's; the Sentinels' own
      come from the ``sentinel_username`` / ``sentinel_password`` query options;
    * ``redis+cluster://[user:password@]host:port[,host2:port...]``
      (``rediss+cluster://`` for TLS) -- a Redis Cluster, found from any of the
      listed nodes, on first use (so a cluster that is down when the cache is
      made only fails the calls);
    * a ``redis.Redis`` (Sentinel's ``master_for(...)`` gives one) or a
      ``redis.cluster.RedisCluster``.

    Clients made from a URL get short time-outs so a dead server cannot hang
    a tool: *socket_connect_timeout* and *socket_timeout* seconds and
    *retries* quick retries; *client_options* go to the redis-py client (for a
    Sentinel URL, ``sentinel_kwargs`` goes to the Sentinel connections).

    Values keep their type: a one-byte tag says ``str`` or ``bytes``.  Keys
    and ``str`` values are UTF-8 with lone surrogates passed through, so any
    ``str`` comes back exactly.  *ttl* (seconds) makes every entry expire.
    A namespace is a key prefix, so namespace ``"a"`` also sees the keys of a
    namespace ``"a:b"`` (as ``"b:..."``): choose namespaces that do not start
    with another one followed by ``":"``.

    On a cluster the keys keep the single-server layout, ``namespace:key``,
    so they hash to slots all over the cluster: a namespace (usually the
    whole studio's cache) spreads its memory and traffic over every primary,
    and data copied key by key between a single server and a cluster stays
    readable.  The price is that multi-key calls are split: ``get_many``
    sends one ``MGET`` per slot and ``set_many`` one pipeline per node, and
    ``keys``/``clear`` ``SCAN`` every primary.  The alternative, a hash tag
    (``{namespace}:key``), would keep a namespace in one slot and make an
    ``MGET`` a single command, but it would put the whole namespace on one
    node, exactly what a cluster is for avoiding.  Whoever wants that can
    still have it: a namespace with a hash tag in it, such as ``"{shots}"``,
    keeps all its keys in one slot.

    Connection failures and time-outs (of any node) raise
    :class:`~sgcache_layers.cache.CacheBackendError`, whose message never
    includes credentials from the URL.
    """

    def __init__(
        self,
        url_or_client: Union[str, redis_lib.Redis, redis_cluster.RedisCluster],
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
            cluster_module: Any = importlib.import_module("redis.cluster")
        except ImportError as exc:
            raise ImportError(
                "RedisCache needs the 'redis' package: pip install 'sgcache-layers[redis]'"
            ) from exc
        exceptions = redis_module.exceptions
        self._errors: tuple[type[BaseException], ...] = (
            exceptions.RedisError,
            exceptions.RedisClusterException,  # not a RedisError
            OSError,
        )
        self._response_error: type[BaseException] = exceptions.ResponseError
        self._cluster_replies: tuple[type[BaseException], ...] = (
            exceptions.AskError,  # and MovedError
            exceptions.ClusterCrossSlotError,
        )
        self._client: Any = None
        self._factory: Optional[Callable[[], Any]] = None
        self._sentinel: Any = None
        self._connect_lock = threading.Lock()
        self._cluster = False
        if isinstance(url_or_client, str):
            self.url = strip_credentials(url_or_client)
            self._secrets = _url_secrets(url_or_client)
            options: dict[str, Any] = {
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": socket_connect_timeout,
            }
            try:
                self._from_url(redis_module, url_or_client, options, retries, client_options)
            except ValueError as exc:
                message = self._scrub(str(exc))
                raise ValueError(f"invalid Redis URL {self.url}: {message}") from None
            self._owns_client = True
        else:
            if client_options:
                raise TypeError("client options need a URL, not a ready client")
            self._client = url_or_client
            self._cluster = isinstance(url_or_client, cluster_module.RedisCluster)
            self.url = _describe_client(url_or_client, self._cluster)
            self._secrets = ()
            self._owns_client = False
            if self._cluster:
                decodes = url_or_client.get_encoder().decode_responses
            else:
                pool = getattr(url_or_client, "connection_pool", None)
                decodes = pool is not None and pool.connection_kwargs.get("decode_responses")
            if decodes:
                raise ValueError("RedisCache needs a client made with decode_responses=False")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be positive seconds or None, not {ttl!r}")
        self.namespace = namespace
        self.ttl = ttl
        self._ttl_ms = None if ttl is None else max(1, int(ttl * 1000))
        self._prefix = _encode_text(namespace + ":")
        self._match = _GLOB_SPECIAL.sub(rb"\\\1", _encode_text(namespace)) + b":*"

    # -- making clients --------------------------------------------------------

    @staticmethod
    def _quick_retry(retries: int) -> Any:
        """A fresh retry policy of *retries* retries, 10 ms apart growing to 100 ms."""
        backoff = importlib.import_module("redis.backoff")
        retry = importlib.import_module("redis.retry")
        return retry.Retry(backoff.ExponentialBackoff(cap=0.1, base=0.01), retries)

    def _from_url(
        self,
        redis_module: Any,
        url: str,
        options: dict[str, Any],
        retries: int,
        client_options: dict[str, Any],
    ) -> None:
        multi = _split_multi_host(url)
        if multi is None:
            options["retry"] = self._quick_retry(retries)
            options.update(client_options)
            self._client = redis_module.Redis.from_url(url, **options)
        elif multi.kind == "cluster":
            self._cluster_from_url(multi, options, retries, client_options)
        else:
            self._sentinel_from_url(multi, options, retries, client_options)

    def _cluster_from_url(
        self,
        multi: _MultiHostURL,
        options: dict[str, Any],
        retries: int,
        client_options: dict[str, Any],
    ) -> None:
        if multi.path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has only database 0")
        connection = importlib.import_module("redis.connection")
        cluster_module: Any = importlib.import_module("redis.cluster")
        userinfo = multi.userinfo + "@" if multi.userinfo else ""
        query = "?" + multi.query if multi.query else ""
        first = f"{multi.scheme}://{userinfo}{_format_host(*multi.hosts[0])}{query}"
        connection.parse_url(first)  # check the query options now, not on first use
        others = multi.hosts[1:]
        options.update(client_options)

        def connect() -> Any:
            nodes = [cluster_module.ClusterNode(host, port) for host, port in others]
            settings = {"retry": self._quick_retry(retries), **options}
            return cluster_module.RedisCluster(url=first, startup_nodes=nodes, **settings)

        self._factory = connect
        self._cluster = True

    def _sentinel_from_url(
        self,
        multi: _MultiHostURL,
        options: dict[str, Any],
        retries: int,
        client_options: dict[str, Any],
    ) -> None:
        service, _, db = urllib.parse.unquote(multi.path.strip("/")).partition("/")
        if not service or "/" in db:
            raise ValueError(
                "a Sentinel URL names its master: redis+sentinel://HOST:PORT/MASTER/DB"
            )
        pairs = urllib.parse.parse_qsl(multi.query, keep_blank_values=True)
        sentinel_auth = {name: value for name, value in pairs if name in _SENTINEL_QUERY}
        query = urllib.parse.urlencode([pair for pair in pairs if pair[0] not in _SENTINEL_QUERY])
        userinfo = multi.userinfo + "@" if multi.userinfo else ""
        connection: Any = importlib.import_module("redis.connection")
        sentinel_module: Any = importlib.import_module("redis.sentinel")
        url_options = connection.parse_url(
            f"{multi.scheme}://{userinfo}{_format_host(*multi.hosts[0])}/{db}?{query}"
        )
        url_options.pop("host", None)
        url_options.pop("port", None)
        tls = url_options.pop("connection_class", None) is not None
        extra_sentinel_options = client_options.pop("sentinel_kwargs", None) or {}
        options["retry"] = self._quick_retry(retries)
        options.update(client_options)
        options.update(url_options)  # as in redis-py, the query wins over keywords
        sentinel_options: dict[str, Any] = {
            "socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
            "retry": self._quick_retry(retries),
        }
        for name, value in sentinel_auth.items():
            sentinel_options[name.removeprefix("sentinel_")] = value
        if tls:
            options["ssl"] = True
            sentinel_options["ssl"] = True
        sentinel_options.update(extra_sentinel_options)
        self._sentinel = sentinel_module.Sentinel(multi.hosts, sentinel_kwargs=sentinel_options)
        self._client = self._sentinel.master_for(service, **options)

    def _connect(self) -> Any:
        """Return the client, making the cluster client of a URL on first use."""
        with self._connect_lock:
            if self._client is None:
                assert self._factory is not None, "only a cluster URL makes its client late"
                try:
                    self._client = self._factory()
                except self._errors as exc:
                    raise self._error("connect", exc) from exc
            return self._client

    # -- plumbing ------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, operation: str, exc: BaseException) -> CacheBackendError:
        message = self._scrub(f"{type(exc).__name__}: {exc}")
        if not self._cluster and (
            isinstance(exc, self._cluster_replies)
            or (isinstance(exc, self._response_error) and str(exc).startswith(_CLUSTER_REPLIES))
        ):
            message += (
                " (the server is a Redis Cluster node: use a redis+cluster:// URL"
                " or a redis.cluster.RedisCluster client)"
            )
        return CacheBackendError(
            f"the Redis cache at {self.url} failed during {operation}: {message}"
        )

    def _run(self, operation: str, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return function(*args, **kwargs)
        except self._errors as exc:
            raise self._error(operation, exc) from exc

    def _name(self, key: str) -> bytes:
        """The Redis key of cache key *key* (a ``str``)."""
        return self._prefix + key.encode("utf-8", "surrogatepass")

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
        client = self._client
        if client is None:
            client = self._connect()
        try:
            raw = client.get(self._prefix + key.encode("utf-8", "surrogatepass"))
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
        client = self._client
        if client is None:
            client = self._connect()
        try:
            name = self._prefix + key.encode("utf-8", "surrogatepass")
            client.set(name, payload, px=self._ttl_ms)
        except self._errors as exc:
            raise self._error("set", exc) from exc

    def add(self, key: str, value: Any) -> bool:
        """Store *value* if *key* is absent (``SET NX``: atomic on the server)."""
        if type(key) is not str:
            key = check_key(key)
        payload = self._encode(value)
        client = self._client
        if client is None:
            client = self._connect()
        try:
            name = self._prefix + key.encode("utf-8", "surrogatepass")
            return bool(client.set(name, payload, nx=True, px=self._ttl_ms))
        except self._errors as exc:
            raise self._error("add", exc) from exc

    def remove(self, key: str) -> None:
        """Remove *key*; ``KeyError`` if absent."""
        if type(key) is not str:
            key = check_key(key)
        client = self._client
        if client is None:
            client = self._connect()
        if not self._run("remove", client.delete, self._name(key)):
            raise KeyError(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the stored values for *keys*, with one ``MGET`` per 500 keys.

        On a cluster each ``MGET`` is split by hash slot (one pipeline per node).
        """
        wanted = list(dict.fromkeys(check_key(key) for key in keys))
        found: dict[str, Any] = {}
        if not wanted:
            return found
        client = self._client
        if client is None:
            client = self._connect()
        mget = client.mget_nonatomic if self._cluster else client.mget
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            raws = self._run("get_many", mget, [self._name(key) for key in batch])
            for key, raw in zip(batch, raws):
                if raw is None:
                    continue
                try:
                    found[key] = self._decode(key, raw)
                except KeyError:
                    continue
        return found

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping* through one pipeline per 500 items.

        On a cluster redis-py sends each pipeline's commands to the node of their slot.
        """
        items = [
            (self._name(check_key(key)), self._encode(value)) for key, value in mapping.items()
        ]
        for start in range(0, len(items), _BATCH):
            self._run("set_many", self._set_batch, items[start : start + _BATCH])

    def set_many_expiring(self, mapping: Mapping[str, Any], seconds: Optional[float]) -> None:
        """Store every item of *mapping*, each expiring after *seconds* (or this cache's
        ``ttl`` if shorter; neither: for good), through one pipeline per 500 items."""
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"seconds must be positive or None, not {seconds!r}")
        expiry = self._ttl_ms
        if seconds is not None:
            wanted = max(1, int(seconds * 1000))
            expiry = wanted if expiry is None else min(expiry, wanted)
        items = [
            (self._name(check_key(key)), self._encode(value)) for key, value in mapping.items()
        ]
        for start in range(0, len(items), _BATCH):
            self._run("set_many", self._set_batch, items[start : start + _BATCH], expiry)

    def _set_batch(self, items: list[tuple[bytes, bytes]], expiry: Optional[int] = None) -> None:
        client = self._client
        if client is None:
            client = self._connect()
        pipe = client.pipeline(transaction=False)
        px = self._ttl_ms if expiry is None else expiry
        for name, payload in items:
            pipe.set(name, payload, px=px)
        pipe.execute()

    def _scan(self) -> list[bytes]:
        """Every Redis key of the namespace, without repeats (``SCAN`` may repeat)."""
        client = self._client
        if client is None:
            client = self._connect()
        if not self._cluster:
            return list(dict.fromkeys(client.scan_iter(match=self._match, count=1000)))
        names: dict[bytes, None] = {}
        for node in client.get_primaries():
            for name in client.scan_iter(match=self._match, count=1000, target_nodes=node):
                names[name] = None
        return list(names)

    def _key_of(self, name: bytes) -> Optional[str]:
        """The cache key of Redis key *name*; None if it is not valid (surrogate-passing) UTF-8."""
        try:
            return name[len(self._prefix) :].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return None

    def keys(self) -> list[str]:
        """Return this namespace's keys (found with ``SCAN``, so never blocking the server)."""
        keys = []
        for name in self._run("keys", self._scan):
            key = self._key_of(name)
            if key is not None:
                keys.append(key)
        return keys

    def clear(self, pattern: Pattern = None) -> None:
        """Remove this namespace's keys matching *pattern* (all if None), in batches."""
        regex = _compile(pattern)
        doomed = []
        for name in self._run("clear", self._scan):
            if regex is not None:
                key = self._key_of(name)
                if key is None or regex.search(key) is None:
                    continue
            doomed.append(name)
        for start in range(0, len(doomed), _BATCH):
            self._run("clear", self._unlink, doomed[start : start + _BATCH])

    def _unlink(self, names: list[bytes]) -> None:
        client = self._client
        if client is None:
            client = self._connect()
        try:
            client.unlink(*names)
        except self._response_error:
            client.delete(*names)  # a server older than Redis 4 has no UNLINK

    def close(self) -> None:
        """Close the connections of a client this cache made (a given client is left open)."""
        if not self._owns_client:
            return
        client = self._client
        if self._factory is not None:  # a cluster client is made again if used again
            with self._connect_lock:
                self._client = None
        for resource in (client, self._sentinel):
            if resource is None:
                continue
            try:
                close = getattr(resource, "close", None)
                if close is not None:
                    close()
                else:
                    resource.connection_pool.disconnect()
            except self._errors as exc:
                logger.debug("closing the Redis cache at %s: %s", self.url, exc)

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r}, namespace={self.namespace!r})"
