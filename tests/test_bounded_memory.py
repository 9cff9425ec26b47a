"""Bounded memory (issue 12, point 3): a long-running session does not grow without bound.

``Session(memory_max_entries=..., memory_max_bytes=...)`` bounds the built answers kept in
the memory layer and holds entities weakly, so those no answer and no user code holds go.
Real sessions over the loopback ShotGrid server; the answers are checked against what a
plain ``shotgun_api3`` client reads.
"""

from __future__ import annotations

import gc
import pickle
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import FileCache, MemoryCache, SerialisedCache, Session, SessionConfigError
from sgcache_layers.memory import SessionMemory
from sgcache_layers.testing import ShotgridServer

FIELDS = ["content", "entity", "step", "sg_status_list"]
LOOPS = 300


def _truth(server: ShotgridServer) -> dict[int, tuple[Any, ...]]:
    rows: list[Any] = server.client().find("Task", [], FIELDS)
    return {r["id"]: (r["content"], (r["entity"] or {}).get("id"), r["step"]["id"]) for r in rows}


def _read(session: Session, task_id: int, number: int) -> tuple[Any, ...]:
    """One query no other iteration asks (its own filter), for one task."""
    filters = [["id", "is", task_id], ["content", "is_not", f"never-{number}"]]
    (row,) = session.find("Task", filters, FIELDS)
    return (row["content"], (row["entity"] or {}).get("id"), row["step"]["id"])


def _sizes(session: Session) -> tuple[int, int]:
    gc.collect()
    memory = session._layout.memory
    assert memory is not None
    return len(session._identity), len(memory)


def test_a_long_loop_of_distinct_queries_stays_bounded_and_right(
    shotgrid_site_server: ShotgridServer,
) -> None:
    truth = _truth(shotgrid_site_server)
    ids = sorted(truth)[:LOOPS]
    assert len(ids) == LOOPS
    bounded = Session(shotgrid_site_server.client(), cache=None, memory_max_entries=25)
    free = Session(shotgrid_site_server.client(), cache=None)
    memory = bounded._layout.memory
    assert isinstance(memory, SessionMemory)
    samples: dict[str, list[tuple[int, int]]] = {"bounded": [], "free": []}
    for number, task_id in enumerate(ids):
        assert _read(bounded, task_id, number) == truth[task_id]
        assert _read(free, task_id, number) == truth[task_id]
        if number % 50 == 49:
            samples["bounded"].append(_sizes(bounded))
            samples["free"].append(_sizes(free))
    # 25 answers of one task each, and what they link to (a shot or asset, a step, ...).
    assert memory.bounded_entries == 25
    for entities, entries in samples["bounded"]:
        assert entities <= 25 * 2, samples
        assert entries <= 25 + 10, samples  # the answers and the bookkeeping beside them
    assert samples["bounded"][-1][0] <= samples["bounded"][0][0] + 10, samples
    # Unbounded, both grow with the loop.
    assert samples["free"][-1][0] >= LOOPS
    assert samples["free"][-1][1] >= LOOPS
    assert samples["free"][0][1] < samples["free"][-1][1]
    # An early answer was evicted: asked again, it is right (and asked of ShotGrid again).
    before = bounded.stats.request_count
    assert _read(bounded, ids[0], 0) == truth[ids[0]]
    assert bounded.stats.request_count == before + 1
    bounded.close()
    free.close()


def test_a_byte_bound_keeps_the_answers_within_it(shotgrid_site_server: ShotgridServer) -> None:
    truth = _truth(shotgrid_site_server)
    ids = sorted(truth)[:150]
    session = Session(shotgrid_site_server.client(), cache=None, memory_max_bytes=20_000)
    memory = session._layout.memory
    assert isinstance(memory, SessionMemory)
    most = 0
    for number, task_id in enumerate(ids):
        assert _read(session, task_id, number) == truth[task_id]
        assert memory.current_bytes <= 20_000
        most = max(most, memory.bounded_entries)
    assert 10 < most < 150  # some answers are kept, not all of them
    entities, _ = _sizes(session)
    assert entities <= most * 4
    session.close()


def test_evicted_answers_come_back_from_the_disk_without_a_request(
    shotgrid_site_server: ShotgridServer, tmp_path: Path
) -> None:
    truth = _truth(shotgrid_site_server)
    ids = sorted(truth)[:60]

    def disk(session: Session) -> SerialisedCache:
        return SerialisedCache(
            FileCache(tmp_path / "cache"), encode=session.encode, decode=session.decode
        )

    session = Session(shotgrid_site_server.client(), cache=disk, memory_max_entries=10)
    for number, task_id in enumerate(ids):
        assert _read(session, task_id, number) == truth[task_id]
    session.drain()
    asked = session.stats.request_count
    for number, task_id in enumerate(ids):  # all but the last ten were evicted from memory
        assert _read(session, task_id, number) == truth[task_id]
    assert session.stats.request_count == asked
    assert len(session._identity) <= 10 * 4 + 10
    session.close()


def test_an_entity_user_code_holds_stays_the_one_entity(
    shotgrid_site_server: ShotgridServer,
) -> None:
    truth = _truth(shotgrid_site_server)
    ids = sorted(truth)
    session = Session(shotgrid_site_server.client(), cache=None, memory_max_entries=5)
    (held,) = session.find("Task", [["id", "is", ids[0]]], FIELDS)
    shot = held["entity"]
    for number, task_id in enumerate(ids[1:80]):
        _read(session, task_id, number)
    gc.collect()
    assert session._identity.get("Task", ids[0]) is held
    (again,) = session.find("Task", [["id", "is", ids[0]]], FIELDS)
    assert again is held and again["entity"] is shot
    session.close()


def test_bookkeeping_is_never_evicted_from_a_memory_only_session(
    shotgrid_server: ShotgridServer,
) -> None:
    """With memory alone, the epoch and clock live in the memory layer: evicting them
    would look like a reset cache and flush the namespace at every read."""
    ids = [r["id"] for r in shotgrid_server.client().find("Shot", [], [])]
    session = Session(shotgrid_server.client(), cache=None, memory_max_entries=1)
    for number in range(30):
        session.find(
            "Shot", [["id", "is", ids[number % len(ids)]], ["code", "is_not", str(number)]]
        )
    epoch = session._freshness.epoch
    before = session.stats.request_count
    for _ in range(3):
        session.find("Shot", [["id", "is", ids[0]]], ["code"])
    assert session.stats.request_count == before + 1  # asked once, then answered from memory
    assert session._freshness.epoch == epoch
    session.close()


def test_the_default_stays_unbounded_on_plain_dicts(shotgrid_server: ShotgridServer) -> None:
    session = Session(shotgrid_server.client(), cache=None)
    session.find("Shot", [], ["code"])
    assert type(session._layout.memory) is MemoryCache
    assert not session._identity.weak
    assert type(session._identity._by_type["Shot"]) is dict
    session.close()


@pytest.mark.parametrize("name", ["memory_max_entries", "memory_max_bytes"])
@pytest.mark.parametrize("value", [0, -5, 2.5, "100", True])
def test_bad_bounds_are_refused_by_name_and_value(
    shotgrid_server: ShotgridServer, name: str, value: Any
) -> None:
    with pytest.raises(SessionConfigError) as caught:
        Session(shotgrid_server.client(), cache=None, **{name: value})
    assert name in str(caught.value) and repr(value) in str(caught.value)


def test_a_pickled_bounded_session_keeps_its_bounds_and_entities(
    shotgrid_server: ShotgridServer,
) -> None:
    session = Session(shotgrid_server.client(), cache=None, memory_max_entries=7)
    shots = session.find("Shot", [], ["code"])
    restored = pickle.loads(pickle.dumps(session))
    memory = restored._layout.memory
    assert isinstance(memory, SessionMemory) and memory.max_entries == 7
    assert restored._identity.weak
    gc.collect()
    assert {e.key for e in restored._identity.entities()} >= {s.key for s in shots}
    restored.attach(shotgrid_server.client())
    assert restored.get("Shot", shots[0]["id"])["code"] == shots[0]["code"]
    session.close()
    restored.close()
