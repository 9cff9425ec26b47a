"""Tests of RedisCache against a real, private redis-server."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sgcache_layers.cache import Cache, CacheBackendError, LayeredCache, MemoryCache
from sgcache_layers.redis import RedisCache, strip_credentials
from sgcache_layers.testing.conformance import CacheConformance
from sgcache_layers.testing.redis_server import RedisServer

redis = pytest.importorskip("redis")


class TestRedisCacheConformance(CacheConformance):
    @pytest.fixture
    def cache(self, redis_url: str) -> Iterator[Cache]:
        cache = RedisCache(redis_url)
        yield cache
        cache.close()


class TestRedisCacheOddNamespaceConformance(CacheConformance):
    """A namespace full of glob characters must still scan only itself."""

    @pytest.fixture
    def cache(self, redis_url: str) -> Iterator[Cache]:
        neighbour = RedisCache(redis_url, namespace="ns*")
        neighbour.set("x", "neighbour")
        cache = RedisCache(redis_url, namespace="ns[*]?\\")
        yield cache
        assert neighbour.get("x") == "neighbour"
        cache.close()
        neighbour.close()


@pytest.fixture
def cache(redis_url: str) -> Iterator[RedisCache]:
    cache = RedisCache(redis_url, namespace="test")
    yield cache
    cache.close()


@pytest.fixture
def raw(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_keys_are_namespaced(cache: RedisCache, raw: Any, redis_url: str) -> None:
    other = RedisCache(redis_url, namespace="other")
    cache.set("shot:1", "a")
    other.set("shot:1", "b")
    raw.set("unrelated", "c")
    assert raw.get("test:shot:1") == b"sa"
    assert cache.get("shot:1") == "a" and other.get("shot:1") == "b"
    assert cache.keys() == ["shot:1"]
    cache.clear()
    assert other.get("shot:1") == "b"
    assert raw.get("unrelated") == b"c"


def test_value_types_are_kept(cache: RedisCache, raw: Any) -> None:
    cache.set("s", "text")
    cache.set("b", b"text")
    cache.set("surrogate", "\udcff lone")
    assert type(cache.get("s")) is str and cache.get("s") == "text"
    assert type(cache.get("b")) is bytes and cache.get("b") == b"text"
    assert cache.get("surrogate") == "\udcff lone"
    assert raw.get("test:b") == b"btext"


SURROGATE_KEYS = ["\ud800", "a\udfffb", "\udcff:x", "\ud83d\ude00", "\U0001f600", "*\udc80?"]


def test_lone_surrogate_keys_round_trip(cache: RedisCache, raw: Any) -> None:
    """Keys with lone surrogates are stored and listed exactly, never a UnicodeEncodeError."""
    for index, key in enumerate(SURROGATE_KEYS):
        cache.set(key, f"v{index}\udc00")
    assert raw.get(b"test:\xed\xa0\x80") == "sv0\udc00".encode("utf-8", "surrogatepass")
    for index, key in enumerate(SURROGATE_KEYS):
        assert cache.get(key) == f"v{index}\udc00"
    # a surrogate pair written as two code points is not the character it would pair into
    assert cache.get("\ud83d\ude00") != cache.get("\U0001f600")
    assert sorted(cache.keys()) == sorted(SURROGATE_KEYS)
    wanted = {key: f"v{index}\udc00" for index, key in enumerate(SURROGATE_KEYS)}
    assert cache.get_many([*SURROGATE_KEYS, "\udbff"]) == wanted
    cache.set_many(dict([("\udbff", b"bytes"), ("\ud800", "again")]))
    assert cache.get("\udbff") == b"bytes" and cache.get("\ud800") == "again"
    cache.remove("\udbff")
    with pytest.raises(KeyError):
        cache.remove("\udbff")
    cache.clear("\udfff|\udcff")
    assert sorted(cache.keys()) == sorted(["\ud800", "\ud83d\ude00", "\U0001f600", "*\udc80?"])
    cache.clear(re.compile("^\\*\udc80"))
    assert sorted(cache.keys()) == sorted(["\ud800", "\ud83d\ude00", "\U0001f600"])


def test_surrogate_namespace(redis_url: str, raw: Any) -> None:
    cache = RedisCache(redis_url, namespace="ns\ud800")
    neighbour = RedisCache(redis_url, namespace="ns")
    neighbour.set("x", "neighbour")
    cache.set("\udfff", "value")
    assert raw.get(b"ns\xed\xa0\x80:\xed\xbf\xbf") == b"svalue"
    assert cache.keys() == ["\udfff"] and neighbour.keys() == ["x"]
    cache.clear()
    assert neighbour.get("x") == "neighbour"
    cache.close()
    neighbour.close()


def test_foreign_key_that_is_not_utf8(cache: RedisCache, raw: Any) -> None:
    """A key no str names is left out of keys() and patterns, but clear() empties it too."""
    raw.set(b"test:\xff\xfe", b"sforeign")
    cache.set("mine", "v")
    assert cache.keys() == ["mine"]
    cache.clear(".")
    assert raw.get(b"test:\xff\xfe") == b"sforeign"
    cache.clear()
    assert raw.get(b"test:\xff\xfe") is None


_ODD_TEXT = st.text(
    st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),  # lone surrogates
        st.sampled_from(":*?[]\\{}\x00"),
    ),
    max_size=12,
)
_VALUES = st.one_of(_ODD_TEXT, st.binary(max_size=16))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.dictionaries(_ODD_TEXT, _VALUES, max_size=12), absent=_ODD_TEXT)
@example(data={"": "", "\n": ""}, absent="")  # a pattern for "" must spare "\n"
def test_any_str_key_and_value_round_trips(
    cache: RedisCache, data: dict[str, Any], absent: str
) -> None:
    cache.clear()
    items = list(data.items())
    cache.set_many(dict(items[::2]))
    for key, value in items[1::2]:
        cache.set(key, value)
    for key, value in items:
        got = cache.get(key)
        assert got == value and type(got) is type(value)
    expected = dict(data)
    if absent not in data:
        with pytest.raises(KeyError):
            cache.get(absent)
    else:
        expected[absent] = data[absent]
    assert cache.get_many([*data, absent]) == expected
    assert sorted(cache.keys()) == sorted(data)
    if items:
        doomed = items[0][0]
        # \A..\Z: exactly this key ("$" would also match before a key's final newline).
        cache.clear("\\A" + re.escape(doomed) + "\\Z")
        assert sorted(cache.keys()) == sorted(key for key in data if key != doomed)


@pytest.mark.parametrize("value", [1, None, {"a": 1}, ["x"], 2.5])
def test_only_str_and_bytes_values(cache: RedisCache, value: Any) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        cache.set("k", value)
    with pytest.raises(TypeError, match=type(value).__name__):
        cache.set_many({"k": value})


def test_unknown_record_format_is_a_miss(
    cache: RedisCache, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    raw.set("test:foreign", b"Xsomething else wrote this")
    raw.set("test:badtext", b"s\xff\xfe")
    cache.set("good", "fine")
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        with pytest.raises(KeyError):
            cache.get("foreign")
        with pytest.raises(KeyError):
            cache.get("badtext")
        assert cache.get_many(["foreign", "badtext", "good"]) == {"good": "fine"}
    assert "unknown format" in caplog.text
    assert "something else" not in caplog.text


def test_ttl_expires_entries(redis_url: str) -> None:
    cache = RedisCache(redis_url, ttl=0.3)
    cache.set("a", "1")
    cache.set_many({"b": "2"})
    assert cache.get("a") == "1"
    time.sleep(0.6)
    with pytest.raises(KeyError):
        cache.get("a")
    assert cache.get_many(["a", "b"]) == {}
    with pytest.raises(ValueError):
        RedisCache(redis_url, ttl=0)


def test_get_many_uses_one_mget(cache: RedisCache, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.set_many({f"k{index}": str(index) for index in range(100)})
    calls: list[str] = []
    client = cache._client
    original_mget, original_get = client.mget, client.get

    def mget(*args: Any, **kwargs: Any) -> Any:
        calls.append("mget")
        return original_mget(*args, **kwargs)

    def get(*args: Any, **kwargs: Any) -> Any:
        calls.append("get")
        return original_get(*args, **kwargs)

    monkeypatch.setattr(client, "mget", mget)
    monkeypatch.setattr(client, "get", get)
    found = cache.get_many([f"k{index}" for index in range(100)] + ["missing"])
    assert found == {f"k{index}": str(index) for index in range(100)}
    assert calls == ["mget"]


def test_large_clear_in_batches(cache: RedisCache) -> None:
    cache.set_many({f"shot:{index}": "v" for index in range(1200)})
    cache.set_many({f"asset:{index}": "v" for index in range(10)})
    cache.clear("^shot:")
    assert sorted(cache.keys()) == sorted(f"asset:{index}" for index in range(10))


def test_accepts_a_ready_client(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = RedisCache(client, namespace="given")
    cache.set("a", "1")
    assert cache.get("a") == "1"
    cache.close()  # leaves a client it did not make open
    assert client.ping()
    assert "redis://127.0.0.1" in repr(cache)
    client.close()


def test_rejects_a_decoding_client(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisCache(client)
    client.close()


# -- failures --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_dead_server_raises_backend_error_quickly() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{_free_port()}/0")
    start = time.monotonic()
    for call in (
        lambda: cache.get("a"),
        lambda: cache.set("a", "1"),
        lambda: cache.remove("a"),
        lambda: cache.keys(),
        lambda: cache.clear(),
        lambda: cache.get_many(["a"]),
        lambda: cache.set_many({"a": "1"}),
    ):
        with pytest.raises(CacheBackendError, match="RedisCache|Redis cache"):
            call()
    assert time.monotonic() - start < 10


def test_errors_never_show_credentials() -> None:
    port = _free_port()
    url = f"redis://alice:hunter2-secret@127.0.0.1:{port}/0?password=query-secret"
    cache = RedisCache(url)
    with pytest.raises(CacheBackendError) as caught:
        cache.get("a")
    text = str(caught.value) + repr(cache) + cache.url
    assert "hunter2-secret" not in text
    assert "query-secret" not in text
    assert "alice" not in text
    assert f"127.0.0.1:{port}" in text


def test_strip_credentials() -> None:
    assert strip_credentials("redis://u:p@host:6380/2?password=x") == "redis://host:6380/2"
    assert strip_credentials("rediss://:p@[::1]:6379") == "rediss://[::1]:6379"
    assert strip_credentials("unix:///tmp/redis.sock?db=0&password=x") == "unix:///tmp/redis.sock"


def test_invalid_url_error_has_no_password() -> None:
    with pytest.raises(ValueError) as caught:
        RedisCache("redis://:topsecret@host:notaport/0")
    assert "topsecret" not in str(caught.value)


def test_stopped_server_raises_backend_error_directly() -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    try:
        cache = RedisCache(server.url)
        cache.set("a", "1")
        assert cache.get("a") == "1"
    finally:
        server.stop()
    with pytest.raises(CacheBackendError, match=f"127.0.0.1:{server.port}"):
        cache.get("a")


def test_layered_cache_keeps_serving_when_redis_dies(caplog: pytest.LogCaptureFixture) -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    try:
        redis_layer = RedisCache(server.url)
        layered = LayeredCache([MemoryCache(), redis_layer], warning_interval=0)
        layered.set("shot:1", "sh010")
        assert redis_layer.get("shot:1") == "sh010"
    finally:
        server.stop()
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        assert layered.get("shot:1") == "sh010"  # memory still answers
        with pytest.raises(KeyError):
            layered.get("shot:2")  # Redis is down: a miss, not a crash
        layered.set("shot:3", "sh030")
        assert layered.get("shot:3") == "sh030"
        assert layered.get_many(["shot:1", "shot:9"]) == {"shot:1": "sh010"}
    warnings = [record.getMessage() for record in caplog.records]
    assert any("RedisCache" in message and "CacheBackendError" in message for message in warnings)
    assert all("sh010" not in message for message in warnings)
    assert layered.stats()[1]["errors"] >= 3


def test_redis_server_fixture_helper() -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        assert server.running and server.ping()
        directory = server.directory
        assert directory is not None
        assert server.url.startswith("redis://127.0.0.1:")
    assert not server.running
    assert not server.ping()
    import os

    assert not os.path.exists(directory)


def test_set_many_expiring_sets_an_expiry(cache: RedisCache, raw: Any, redis_url: str) -> None:
    cache.set_many_expiring({"short": "1", "also": "2"}, 30.0)
    cache.set_many({"forever": "3"})
    assert 0 < raw.pttl(b"test:short") <= 30_000
    assert raw.pttl(b"test:forever") == -1  # no expiry
    # The cache's own ttl caps it; through a SerialisedCache and a LayeredCache alike.
    capped = RedisCache(redis_url, namespace="capped", ttl=5.0)
    LayeredCache([MemoryCache(), capped]).set_many_expiring({"k": "v"}, 3600.0)
    assert 0 < raw.pttl(b"capped:k") <= 5_000
    capped.set_many_expiring({"gone": "soon"}, 0.05)
    time.sleep(0.2)
    with pytest.raises(KeyError):
        capped.get("gone")
    with pytest.raises(ValueError, match="positive"):
        cache.set_many_expiring({"x": "1"}, 0)
    capped.close()
