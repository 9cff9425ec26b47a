"""Tests of RedisCache on a real master watched by a real Redis Sentinel."""

from __future__ import annotations

import glob
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sgcache_layers.cache import Cache, CacheBackendError
from sgcache_layers.redis import RedisCache
from sgcache_layers.testing.conformance import CacheConformance
from sgcache_layers.testing.redis_server import RedisSentinelServer, RedisServerError

redis = pytest.importorskip("redis")
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402
from redis.sentinel import Sentinel  # noqa: E402


@pytest.fixture
def master_client(redis_sentinel: RedisSentinelServer) -> Iterator[Any]:
    """A client of the master as Sentinel finds it: ``Sentinel(...).master_for(name)``."""
    sentinel = Sentinel(redis_sentinel.sentinels, socket_timeout=2, socket_connect_timeout=1)
    client = sentinel.master_for(redis_sentinel.service_name, socket_timeout=2)
    yield client
    client.close()
    sentinel.close()


class TestSentinelMasterClientConformance(CacheConformance):
    """RedisCache over a ready Sentinel-managed master client."""

    @pytest.fixture
    def cache(self, master_client: Any) -> Iterator[Cache]:
        cache = RedisCache(master_client)
        yield cache
        cache.close()


class TestSentinelURLConformance(CacheConformance):
    """RedisCache over a ``redis+sentinel://`` URL."""

    @pytest.fixture
    def cache(self, redis_sentinel: RedisSentinelServer) -> Iterator[Cache]:
        cache = RedisCache(redis_sentinel.url)
        yield cache
        cache.close()


def test_sentinel_keeps_the_single_server_layout(redis_sentinel: RedisSentinelServer) -> None:
    cache = RedisCache(redis_sentinel.url, namespace="test")
    cache.set("shot:1", "a")
    cache.set("\ud800", b"raw")
    master = redis.Redis.from_url(redis_sentinel.master.url)
    assert master.get(b"test:shot:1") == b"sa"
    assert master.get(b"test:\xed\xa0\x80") == b"braw"
    assert sorted(cache.keys()) == sorted(["shot:1", "\ud800"])
    master.close()
    cache.close()


def test_sentinel_url_database_and_repr(redis_sentinel: RedisSentinelServer) -> None:
    host, port = redis_sentinel.sentinels[0]
    url = f"redis+sentinel://{host}:{port}/{redis_sentinel.service_name}/3"
    cache = RedisCache(url, namespace="db3")
    cache.set("a", "1")
    master = redis.Redis.from_url(redis_sentinel.master.url.rsplit("/", 1)[0] + "/3")
    assert master.get(b"db3:a") == b"s1"
    assert repr(cache) == f"RedisCache({url!r}, namespace='db3')"
    master.close()
    cache.close()


def test_repr_of_a_given_master_client(
    master_client: Any, redis_sentinel: RedisSentinelServer
) -> None:
    cache = RedisCache(master_client)
    host, port = redis_sentinel.sentinels[0]
    assert cache.url == f"redis+sentinel://{host}:{port}/{redis_sentinel.service_name}/0"


def test_sentinel_errors_show_no_credentials(redis_sentinel: RedisSentinelServer) -> None:
    """The servers know no such users, so AUTH fails: the error must not repeat the secrets."""
    host, port = redis_sentinel.sentinels[0]
    base = f"redis+sentinel://{host}:{port}/mymaster/0"
    for url, failing in (
        (f"redis+sentinel://alice:hunter2-secret@{host}:{port}/mymaster/0", "master"),
        (f"{base}?sentinel_username=carol&sentinel_password=sentinel-secret", "sentinel"),
        (f"{base}?username=dave&password=query-secret", "master"),
    ):
        cache = RedisCache(url)
        with pytest.raises(CacheBackendError) as caught:
            cache.get("a")
        text = str(caught.value) + repr(cache) + cache.url
        if failing == "sentinel":
            assert "MasterNotFoundError" in text
        else:
            assert "AuthenticationError" in text or "WRONGPASS" in text
        for secret in (
            "hunter2-secret",
            "sentinel-secret",
            "query-secret",
            "alice",
            "carol",
            "dave",
        ):
            assert secret not in text
        assert f"redis+sentinel://{host}:{port}/mymaster/0" in text
        cache.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:topsecret@127.0.0.1:26379",
        "redis+sentinel://:topsecret@127.0.0.1:26379/",
        "redis+sentinel://:topsecret@127.0.0.1:26379/mymaster/0/extra",
        "redis+sentinel://:topsecret@127.0.0.1:99999/mymaster",
        "redis+sentinel://:topsecret@127.0.0.1:26379/mymaster/0?socket_timeout=soon",
    ],
)
def test_invalid_sentinel_urls(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        RedisCache(url)
    assert "topsecret" not in str(caught.value)
    assert "invalid Redis URL" in str(caught.value)


def _every_call(cache: RedisCache) -> list[Any]:
    return [
        lambda: cache.get("a"),
        lambda: cache.set("a", "1"),
        lambda: cache.remove("a"),
        lambda: cache.keys(),
        lambda: cache.clear(),
        lambda: cache.get_many(["a", "b"]),
        lambda: cache.set_many({"a": "1", "b": "2"}),
    ]


def test_a_stopped_master_or_sentinel_raises_backend_error_quickly() -> None:
    if not RedisSentinelServer.available():
        pytest.skip("redis-server is not installed")
    servers = RedisSentinelServer().start()
    try:
        cache = RedisCache(servers.url)
        # a ready client keeps its own retry policy: redis-py's default backs off for seconds
        quick = {"socket_timeout": 1, "socket_connect_timeout": 1, "retry": Retry(NoBackoff(), 1)}
        sentinel = Sentinel(servers.sentinels, sentinel_kwargs=quick)
        master = sentinel.master_for(servers.service_name, **quick)
        given = RedisCache(master)
        cache.set("a", "1")
        assert given.get("a") == "1"
        servers.master.stop()  # the Sentinel still names it: connections are refused
        start = time.monotonic()
        for call in _every_call(cache):
            with pytest.raises(CacheBackendError, match="Redis cache at redis\\+sentinel://"):
                call()
        assert time.monotonic() - start < 5
    finally:
        servers.stop()
    start = time.monotonic()
    for each in (cache, RedisCache(servers.url)):
        for call in _every_call(each):
            with pytest.raises(CacheBackendError, match="MasterNotFoundError|ConnectionError"):
                call()
    assert time.monotonic() - start < 5
    with pytest.raises(CacheBackendError):
        given.get("a")
    given.close()
    sentinel.close()
    assert servers.directory is None and not servers.running
    with pytest.raises(OSError), socket.create_connection(servers.sentinels[0], timeout=0.5):
        pass


def test_a_sentinel_that_cannot_start_leaves_nothing_behind() -> None:
    pattern = os.path.join(tempfile.gettempdir(), "sgcache-redis-*")
    before = set(glob.glob(pattern))
    servers = RedisSentinelServer(executable="false", startup_timeout=1)
    with pytest.raises(RedisServerError, match="did not start"):
        servers.start()
    assert set(glob.glob(pattern)) == before
    assert not servers.running and servers.directory is None and servers.master.directory is None
