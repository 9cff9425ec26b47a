"""Shared fixtures of the storage-layer tests: a private redis-server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sgcache_layers.testing.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port for the whole session (skip if absent)."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with RedisServer() as server:
        yield server


def _flush(server: RedisServer) -> None:
    """Empty the server with a raw FLUSHALL (no client library needed)."""
    assert server.port is not None
    with socket.create_connection((server.host, server.port), timeout=5) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        assert conn.recv(64).startswith(b"+OK")


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, emptied for this test."""
    if not redis_server.running:
        redis_server.start()
    _flush(redis_server)
    return redis_server.url
