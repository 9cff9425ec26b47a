"""Tests of RedisCache on a real three-primary Redis Cluster."""

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
from sgcache_layers.redis import RedisCache, strip_credentials
from sgcache_layers.testing.conformance import CacheConformance
from sgcache_layers.testing.redis_server import RedisClusterServer, RedisServerError

redis = pytest.importorskip("redis")
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402


def _cluster_client(cluster: RedisClusterServer) -> Any:
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes])


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterServer) -> Iterator[Any]:
    client = _cluster_client(redis_cluster)
    yield client
    client.close()


@pytest.fixture
def node_clients(redis_cluster: RedisClusterServer) -> Iterator[list[Any]]:
    """A plain client per node, to see what each node holds."""
    clients = [redis.Redis(host=host, port=port) for host, port in redis_cluster.nodes]
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def cache(cluster_client: Any) -> Iterator[RedisCache]:
    cache = RedisCache(cluster_client, namespace="test")
    yield cache
    cache.close()


def _names_per_node(node_clients: list[Any], match: bytes) -> list[set[bytes]]:
    return [set(client.scan_iter(match=match, count=1000)) for client in node_clients]


class TestRedisClusterClientConformance(CacheConformance):
    """RedisCache over a ready ``RedisCluster`` client."""

    @pytest.fixture
    def cache(self, cluster_client: Any) -> Iterator[Cache]:
        cache = RedisCache(cluster_client)
        yield cache
        cache.close()


class TestRedisClusterURLConformance(CacheConformance):
    """RedisCache over a ``redis+cluster://`` URL naming every node."""

    @pytest.fixture
    def cache(self, redis_cluster: RedisClusterServer) -> Iterator[Cache]:
        cache = RedisCache(redis_cluster.url)
        yield cache
        cache.close()


class TestRedisClusterHashTagConformance(CacheConformance):
    """A namespace with a hash tag keeps every key in one slot, and still keeps the contract."""

    @pytest.fixture
    def cache(self, redis_cluster: RedisClusterServer) -> Iterator[Cache]:
        host, port = redis_cluster.nodes[1]
        cache = RedisCache(f"redis+cluster://{host}:{port}", namespace="{pinned}")
        yield cache
        cache.close()


# -- key layout ------------------------------------------------------------------


def test_keys_keep_the_single_server_layout(cache: RedisCache, cluster_client: Any) -> None:
    cache.set("shot:1", "a")
    cache.set("ショット", b"\x00")
    assert cluster_client.get(b"test:shot:1") == b"sa"
    assert cluster_client.get("test:ショット".encode()) == b"b\x00"


def test_a_namespace_spreads_over_every_primary(cache: RedisCache, node_clients: list[Any]) -> None:
    cache.set_many({f"entity:{index}": "v" for index in range(300)})
    per_node = _names_per_node(node_clients, b"test:*")
    assert sum(len(names) for names in per_node) == 300
    assert all(len(names) > 50 for names in per_node), [len(names) for names in per_node]


def test_a_hash_tag_namespace_stays_in_one_slot(
    redis_cluster: RedisClusterServer, cluster_client: Any, node_clients: list[Any]
) -> None:
    cache = RedisCache(cluster_client, namespace="{pinned}")
    data = {f"entity:{index}": str(index) for index in range(300)}
    cache.set_many(data)
    per_node = _names_per_node(node_clients, b"{pinned}:*")
    assert sorted(len(names) for names in per_node) == [0, 0, 300]
    names = set().union(*per_node)
    assert len({cluster_client.keyslot(name) for name in names}) == 1
    assert cache.get_many(list(data)) == data
    assert sorted(cache.keys()) == sorted(data)
    cache.clear("^entity:1")
    assert len(cache.keys()) == 300 - 111


# -- multi-key operations across slots -------------------------------------------


def test_get_many_and_set_many_across_slots(cache: RedisCache, cluster_client: Any) -> None:
    data: dict[str, Any] = {}
    for index in range(1500):  # three batches of 500
        data[f"shot:{index}"] = f"value {index}" if index % 3 else f"{index}".encode()
    data["\ud800lone"] = "\udfff"
    cache.set_many(data)
    slots = {cluster_client.keyslot(cache._name(key)) for key in data}
    assert len(slots) > 1000
    found = cache.get_many([*data, "missing", "shot:99999"])
    assert found == data
    assert all(type(found[key]) is type(value) for key, value in data.items())
    assert cache.get("shot:3") == b"3" and cache.get("shot:4") == "value 4"


def test_keys_and_clear_see_every_node(cache: RedisCache, node_clients: list[Any]) -> None:
    shots = {f"shot:{index}": "v" for index in range(200)}
    assets = {f"asset:{index}": "v" for index in range(200)}
    cache.set_many({**shots, **assets})
    assert all(_names_per_node(node_clients, b"test:shot:*"))  # some on every node
    assert sorted(cache.keys()) == sorted([*shots, *assets])
    cache.clear("^shot:")
    assert not any(_names_per_node(node_clients, b"test:shot:*"))
    assert all(_names_per_node(node_clients, b"test:asset:*"))
    assert sorted(cache.keys()) == sorted(assets)
    cache.clear()
    assert cache.keys() == []
    assert not any(_names_per_node(node_clients, b"test:*"))


def test_large_clear_on_cluster(cache: RedisCache) -> None:
    cache.set_many({f"shot:{index}": "v" for index in range(1200)})
    cache.set_many({f"asset:{index}": "v" for index in range(10)})
    cache.clear("^shot:")
    assert sorted(cache.keys()) == sorted(f"asset:{index}" for index in range(10))


def test_namespaces_never_mix_on_the_cluster(cluster_client: Any) -> None:
    names = ["alpha", "alphabet", "alpha*", "{alpha}", "alph?", "[a]lpha"]
    caches = {name: RedisCache(cluster_client, namespace=name) for name in names}
    cluster_client.set(b"alpha", b"sbare")
    cluster_client.set(b"alphax:1", b"sother")
    for name, cache in caches.items():
        cache.set_many({f"k{index}": f"{name} {index}" for index in range(50)})
        cache.set("own", name)
    for name, cache in caches.items():
        assert sorted(cache.keys()) == sorted(["own", *(f"k{index}" for index in range(50))])
        assert cache.get("own") == name
        assert cache.get_many(["k7", "own"]) == {"k7": f"{name} 7", "own": name}
    caches["alpha*"].clear()
    caches["alpha"].clear("^k")
    assert caches["alpha*"].keys() == []
    assert caches["alpha"].keys() == ["own"]
    for name in ("alphabet", "{alpha}", "alph?", "[a]lpha"):
        assert len(caches[name].keys()) == 51
    assert cluster_client.get(b"alpha") == b"sbare"
    assert cluster_client.get(b"alphax:1") == b"sother"


def test_surrogate_keys_on_the_cluster(cache: RedisCache) -> None:
    keys = [f"\ud800{index}" for index in range(40)] + ["\udfff:x", "plain"]
    cache.set_many({key: key for key in keys})
    assert sorted(cache.keys()) == sorted(keys)
    assert cache.get_many(keys) == {key: key for key in keys}
    cache.clear("^\ud800")
    assert sorted(cache.keys()) == ["plain", "\udfff:x"]


# -- addresses, URLs and errors ---------------------------------------------------


def test_repr_names_the_cluster(redis_cluster: RedisClusterServer, cluster_client: Any) -> None:
    from_url = RedisCache(redis_cluster.url)
    assert repr(from_url) == f"RedisCache({redis_cluster.url!r}, namespace='sgcache_layers')"
    given = RedisCache(cluster_client, namespace="x")
    assert given.url.startswith("redis+cluster://")
    for host, port in redis_cluster.nodes:
        assert f"{host}:{port}" in given.url
    with pytest.raises(ValueError, match="decode_responses"):
        RedisCache(
            RedisCluster(
                host=redis_cluster.host, port=redis_cluster.ports[0], decode_responses=True
            )
        )


def test_a_plain_client_on_a_cluster_node_says_so(
    redis_cluster: RedisClusterServer, cluster_client: Any
) -> None:
    first, last = redis_cluster.slot_ranges()[0]
    key = next(
        f"k{index}"
        for index in range(1000)
        if not first <= cluster_client.keyslot(f"test:k{index}") <= last
    )
    host, port = redis_cluster.nodes[0]
    cache = RedisCache(f"redis://{host}:{port}/0", namespace="test")
    with pytest.raises(CacheBackendError, match="redis\\+cluster://") as caught:
        cache.get(key)
    assert "MovedError" in str(caught.value)
    cache.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_cluster_url_errors_show_no_credentials() -> None:
    ports = [_free_port(), _free_port()]
    url = (
        f"redis+cluster://alice:hunter2-secret@127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
        "?password=query-secret"
    )
    cache = RedisCache(url)  # made on first use, so a dead cluster fails only the calls
    start = time.monotonic()
    with pytest.raises(CacheBackendError) as caught:
        cache.get("a")
    assert time.monotonic() - start < 5
    text = str(caught.value) + repr(cache) + cache.url
    for secret in ("hunter2-secret", "query-secret", "alice"):
        assert secret not in text
    assert f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}" in text


def test_strip_credentials_of_multi_host_urls() -> None:
    assert (
        strip_credentials("redis+cluster://u:p@a:7000,[::1]:7001,b?password=x")
        == "redis+cluster://a:7000,[::1]:7001,b:6379"
    )
    assert (
        strip_credentials("rediss+sentinel://:p@s1,s2:26380/mymaster/2?sentinel_password=y")
        == "rediss+sentinel://s1:26379,s2:26380/mymaster/2"
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://:topsecret@127.0.0.1:notaport",
        "redis+cluster://:topsecret@127.0.0.1:7000/3",
        "redis+cluster://:topsecret@127.0.0.1:7000?socket_timeout=soon",
        "redis+cluster://:topsecret@,127.0.0.1:7000",
        "redis+cluster://:topsecret@[::1:7000",
    ],
)
def test_invalid_cluster_urls(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        RedisCache(url)
    assert "topsecret" not in str(caught.value)
    assert "invalid Redis URL" in str(caught.value)


# -- a cluster that goes down -----------------------------------------------------


def _every_call(cache: RedisCache) -> list[Any]:
    return [
        lambda: cache.get("a"),
        lambda: cache.set("a", "1"),
        lambda: cache.remove("a"),
        lambda: cache.keys(),
        lambda: cache.clear(),
        lambda: cache.clear("^a"),
        lambda: cache.get_many(["a", "b", "c"]),
        lambda: cache.set_many({"a": "1", "b": "2", "c": "3"}),
    ]


def test_a_stopped_cluster_raises_backend_error_quickly() -> None:
    if not RedisClusterServer.available():
        pytest.skip("redis-server is not installed")
    cluster = RedisClusterServer().start()
    try:
        from_url = RedisCache(cluster.url)
        client = _cluster_client(cluster)
        given = RedisCache(client)
        data = {f"k{index}": "v" for index in range(100)}
        from_url.set_many(data)
        assert given.get_many(list(data)) == data
        first, last = cluster.slot_ranges()[2]
        down = next(key for key in data if first <= client.keyslot(from_url._name(key)) <= last)
        up = next(key for key in data if not first <= client.keyslot(from_url._name(key)) <= last)
        cluster.stop_node(2)
        start = time.monotonic()
        for cache in (from_url, given):
            assert cache.get(up) == "v"  # the other primaries still answer
            with pytest.raises(CacheBackendError, match="redis\\+cluster://"):
                cache.get(down)
            with pytest.raises(CacheBackendError):
                cache.keys()
            with pytest.raises(CacheBackendError):
                cache.get_many(list(data))
        assert time.monotonic() - start < 5
    finally:
        cluster.stop()
    start = time.monotonic()
    for cache in (from_url, given, RedisCache(cluster.url)):
        for call in _every_call(cache):
            with pytest.raises(CacheBackendError, match="Redis cache at redis\\+cluster://"):
                call()
    assert time.monotonic() - start < 10
    client.close()
    assert cluster.directory is None and not cluster.running
    for host, port in cluster.nodes:
        with pytest.raises(OSError), socket.create_connection((host, port), timeout=0.5):
            pass


def test_a_cluster_that_cannot_start_leaves_nothing_behind() -> None:
    pattern = os.path.join(tempfile.gettempdir(), "sgcache-redis-cluster-*")
    before = set(glob.glob(pattern))
    cluster = RedisClusterServer(executable="false", startup_timeout=1)
    with pytest.raises(RedisServerError, match="did not start"):
        cluster.start()
    assert set(glob.glob(pattern)) == before
    assert cluster.directory is None and not cluster.running and not cluster._processes
