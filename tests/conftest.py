"""Shared fixtures of the storage-layer tests: private redis-servers.

One plain server, one three-primary Redis Cluster and one Sentinel-watched
master, each started once per session and emptied before every test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sgcache_layers.testing.redis_server import (
    RedisClusterServer,
    RedisSentinelServer,
    RedisServer,
)

_NO_REDIS = "redis-server is not installed (apt-get install redis-server)"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port for the whole session (skip if absent)."""
    if not RedisServer.available():
        pytest.skip(_NO_REDIS)
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, emptied for this test."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster_server() -> Iterator[RedisClusterServer]:
    """A three-primary Redis Cluster on loopback ports for the whole session (skip if absent)."""
    if not RedisClusterServer.available():
        pytest.skip(_NO_REDIS)
    with RedisClusterServer() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(redis_cluster_server: RedisClusterServer) -> RedisClusterServer:
    """The session's Redis Cluster, every node emptied for this test."""
    if not redis_cluster_server.running:
        redis_cluster_server.stop()
        redis_cluster_server.start()
    redis_cluster_server.flush()
    return redis_cluster_server


@pytest.fixture(scope="session")
def redis_sentinel_server() -> Iterator[RedisSentinelServer]:
    """A master redis-server and a Sentinel watching it, for the session (skip if absent)."""
    if not RedisSentinelServer.available():
        pytest.skip(_NO_REDIS)
    with RedisSentinelServer() as sentinel:
        yield sentinel


@pytest.fixture
def redis_sentinel(redis_sentinel_server: RedisSentinelServer) -> RedisSentinelServer:
    """The session's Sentinel setup, its master emptied for this test."""
    if not redis_sentinel_server.running:
        redis_sentinel_server.stop()
        redis_sentinel_server.start()
    redis_sentinel_server.flush()
    return redis_sentinel_server
