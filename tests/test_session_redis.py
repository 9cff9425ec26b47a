"""Sessions sharing a real Redis, as on a render farm; and a failing layer degrading."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import FileCache, LayeredCache, RedisCache, SerialisedCache, Session


def redis_maker(url: str, namespace: str = "farm") -> Any:
    def cache_maker(session: Session) -> SerialisedCache:
        return SerialisedCache(
            RedisCache(url, namespace=namespace), encode=session.encode, decode=session.decode
        )

    return cache_maker


def test_two_hosts_share_answers_and_generations(shotgrid_server: Any, redis_url: str) -> None:
    # Two sessions with their own memory layers stand for two farm hosts.
    first = Session(shotgrid_server.client(), cache=redis_maker(redis_url))
    second = Session(shotgrid_server.client(), cache=redis_maker(redis_url))
    shots = first.find("Shot", [], ["code"])
    first.drain()  # records are written in the background; wait for them
    shotgrid_server.reset_requests()
    assert [s["code"] for s in second.find("Shot", [], ["code"])] == [s["code"] for s in shots]
    assert shotgrid_server.request_count == 0

    first.update("Shot", shots[0]["id"], {"code": "FARM_RENAMED"})
    again = second.find("Shot", [], ["code"])
    assert again[0]["code"] == "FARM_RENAMED"  # the generation moved in Redis at once
    assert shotgrid_server.count_requests("find") == 1


def test_disk_then_redis_layers(shotgrid_server: Any, redis_url: str, tmp_path: Path) -> None:
    def cache_maker(session: Session) -> LayeredCache:
        return LayeredCache(
            [
                SerialisedCache(
                    FileCache(str(tmp_path / "local")), encode=session.encode, decode=session.decode
                ),
                SerialisedCache(
                    RedisCache(redis_url, namespace="farm2"),
                    encode=session.encode,
                    decode=session.decode,
                ),
            ]
        )

    host_a = Session(shotgrid_server.client(), cache=cache_maker)
    shot_id = host_a.find("Shot", [], ["code"])[0]["id"]
    host_a.get("Shot", shot_id)
    host_a.drain()  # records are written in the background; wait for them
    # Another host with an empty local disk finds it in Redis and fills its disk.
    other_disk = tmp_path / "other"

    def other_maker(session: Session) -> LayeredCache:
        return LayeredCache(
            [
                SerialisedCache(
                    FileCache(str(other_disk)), encode=session.encode, decode=session.decode
                ),
                SerialisedCache(
                    RedisCache(redis_url, namespace="farm2"),
                    encode=session.encode,
                    decode=session.decode,
                ),
            ]
        )

    client = shotgrid_server.client()
    shotgrid_server.reset_requests()
    host_b = Session(client, cache=other_maker)
    assert host_b.get("Shot", shot_id) is not None
    assert shotgrid_server.request_count == 0
    assert any(f"|e|Shot|{shot_id}" in k for k in FileCache(str(other_disk)).keys())


def test_redis_down_degrades_to_shotgrid_with_a_warning(
    shotgrid_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="sgcache_layers"):
        session = Session(shotgrid_server.client(), cache=redis_maker(dead))
        shots = session.find("Shot", [], ["code"])
        assert shots
        shot = session.get("Shot", shots[0]["id"])
        assert shot is not None
        session.update("Shot", shot["id"], {"code": "STILL_WORKS"})
        assert session.get("Shot", shot["id"])["code"] == "STILL_WORKS"
    assert any("failed" in r.getMessage() for r in caplog.records)


def test_corrupt_disk_degrades_to_shotgrid(
    shotgrid_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "disk"

    def maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(str(path)), encode=session.encode, decode=session.decode)

    with Session(shotgrid_server.client(), cache=maker) as warm:
        shot_id = warm.find("Shot", [], ["code"])[0]["id"]
    (path / "cache.db").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="sgcache_layers"):
        try:
            session = Session(shotgrid_server.client(), cache=maker)
        except Exception as error:  # pragma: no cover - must not happen
            pytest.fail(f"a corrupt disk layer broke the session: {error!r}")
        assert session.get("Shot", shot_id) is not None
        assert session.find("Shot", [], ["code"])


def test_one_serialiser_around_disk_and_redis(
    shotgrid_server: Any, redis_url: str, tmp_path: Path
) -> None:
    """The docs' stack: generations still come from Redis, not the host's own disk."""

    def host(disk: str) -> Session:
        def cache_maker(session: Session) -> SerialisedCache:
            stack = LayeredCache(
                [FileCache(str(tmp_path / disk)), RedisCache(redis_url, namespace="farm3")]
            )
            return SerialisedCache(stack, encode=session.encode, decode=session.decode)

        return Session(shotgrid_server.client(), cache=cache_maker)

    host_a, host_b = host("a"), host("b")
    shots_b = host_b.find("Shot", [], ["code"])
    host_a.find("Shot", [], ["code"])
    host_a.update("Shot", shots_b[0]["id"], {"code": "SEEN_ACROSS_HOSTS"})
    # Host B's own disk still holds the old generation; Redis has the new one.
    again = host_b.find("Shot", [], ["code"])
    assert again[0]["code"] == "SEEN_ACROSS_HOSTS"
    fresh_b = host("b")  # a new process on host B, same disk
    assert fresh_b.find("Shot", [], ["code"])[0]["code"] == "SEEN_ACROSS_HOSTS"


def test_records_expire_after_the_longest_age_a_read_accepts(
    shotgrid_server: Any, redis_url: str
) -> None:
    """Data records carry an expiry; bookkeeping never expires (a volatile eviction policy
    can only drop what no reader could use, or cost misses)."""
    redis = pytest.importorskip("redis")
    raw = redis.Redis.from_url(redis_url)
    with Session(
        shotgrid_server.client(),
        cache=redis_maker(redis_url, "ttl"),
        max_age=120,
        schema_max_age=60,
        stale_if_error=900,
    ) as session:
        session.find("Shot", [], ["code"])
        session.get("Shot", 1)
        session.drain()  # written with the expiry of the settings at the time
        session.max_age = 1800
        session.find("Asset", [], ["code"])
        session.drain()
        by_kind: dict[str, list[int]] = {}
        for name in raw.scan_iter(match=b"ttl:*"):
            text = name.decode()
            kind = "query" if "|q|Shot|" in text else None
            kind = kind or ("later" if "|q|Asset|" in text else None)
            kind = kind or ("entity" if "|e|Shot|" in text else None)
            kind = kind or ("bookkeeping" if text.endswith(("|epoch", "|clock")) else None)
            if kind:
                by_kind.setdefault(kind, []).append(raw.pttl(name))
    assert all(880_000 < t <= 900_000 for t in by_kind["query"] + by_kind["entity"])
    assert all(1_780_000 < t <= 1_800_000 for t in by_kind["later"])  # max_age moved it
    assert by_kind["bookkeeping"] and all(t == -1 for t in by_kind["bookkeeping"])
    raw.close()
