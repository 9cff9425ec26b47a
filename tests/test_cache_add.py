"""``Cache.add``: of many processes adding the same keys at once, exactly one wins each."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import FileCache, RedisCache

KEYS = 150
RACERS = 6


def _race(kind: str, where: str, racer: int, start: Any, out: Any) -> None:
    cache = FileCache(where) if kind == "file" else RedisCache(where, namespace="add-race")
    start.wait()
    won = [index for index in range(KEYS) if cache.add(f"key-{index}", f"racer-{racer}")]
    cache.close()
    out.put((racer, won))


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_one_winner_per_key_across_processes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = str(tmp_path / "race") if kind == "file" else request.getfixturevalue("redis_url")
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    racers = [
        context.Process(target=_race, args=(kind, where, racer, start, out))
        for racer in range(RACERS)
    ]
    for process in racers:
        process.start()
    start.set()
    results = dict(out.get(timeout=120) for _ in racers)
    for process in racers:
        process.join(timeout=60)
    winners: dict[int, int] = {}
    for racer, won in results.items():
        for index in won:
            assert index not in winners, f"key {index} was added twice"
            winners[index] = racer
    assert sorted(winners) == list(range(KEYS))
    cache = FileCache(where) if kind == "file" else RedisCache(where, namespace="add-race")
    for index, racer in winners.items():
        assert cache.get(f"key-{index}") == f"racer-{racer}"
    cache.close()
