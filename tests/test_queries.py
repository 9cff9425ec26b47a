"""Query caching, modes and event-log freshness over the loopback server (issue 5)."""

from __future__ import annotations

import json
import logging
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import FileCache, OfflineError, SerialisedCache, Session
from sgcache_layers.query import QueryError, normalise_fields, normalise_filters


def maker(path: Path) -> Any:
    return lambda s: SerialisedCache(FileCache(str(path)), encode=s.encode, decode=s.decode)


@pytest.fixture
def server(shotgrid_server: Any) -> Any:
    return shotgrid_server


@pytest.fixture
def sg(server: Any) -> Any:
    client = server.client()
    client.config.rpc_attempt_interval = 10  # ms between the client's own retries
    return client


@pytest.fixture
def other(server: Any) -> Any:
    """Another client changing the site behind the session's back."""
    return server.client()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def session(sg: Any, path: Path) -> Any:
    with Session(sg, cache=maker(path)) as s:
        yield s


def first_shot(sg: Any) -> Any:
    return sg.find_one("Shot", [], ["code", "project", "sg_sequence"], order=[{"field_name": "id"}])


SHOT_FIELDS = ["code", "sg_status_list", "sg_sequence"]


# -- modes ----------------------------------------------------------------------


def test_cached_mode_answers_repeat_queries_without_requests(session: Session, server: Any) -> None:
    project = first_shot(session.shotgun)["project"]
    server.reset_requests()
    first = session.find("Shot", [["project", "is", project]], SHOT_FIELDS)
    assert server.request_count >= 1
    server.reset_requests()
    again = session.find("Shot", [["project", "is", project]], list(reversed(SHOT_FIELDS)))
    assert again == first and all(a is b for a, b in zip(again, first))
    assert server.request_count == 0
    one = session.find_one("Shot", [["project", "is", project]], SHOT_FIELDS)
    assert one is not None
    session.find_one("Shot", [["project", "is", project]], SHOT_FIELDS)
    assert server.count_requests("find") == 1


def test_direct_mode_always_asks_and_still_merges(sg: Any, server: Any, path: Path) -> None:
    session = Session(sg, cache=maker(path), mode="direct")
    server.reset_requests()
    a = session.find("Shot", [], ["code"])
    b = session.find("Shot", [], ["code"])
    assert server.count_requests("find") == 2
    assert a[0] is b[0]
    session.get("Shot", a[0]["id"])
    assert server.count_requests("find") == 3


def test_offline_mode_answers_only_from_cache(session: Session, server: Any) -> None:
    shots = session.find("Shot", [], SHOT_FIELDS)
    shot_id = shots[0]["id"]
    session.get("Shot", shot_id)
    server.stop()
    with session.using_mode("offline"):
        assert session.mode == "offline"
        assert session.find("Shot", [], SHOT_FIELDS) == shots
        assert session.find("Shot", [["code", "is", "nothing-like-this"]], ["code"]) == []
        assert session.find_one("Asset", [], ["code"]) is None
        assert session.get("Shot", shot_id) is shots[0]
        assert session.get("Asset", 1) is None
        with pytest.raises(OfflineError):
            session.update("Shot", shot_id, {"code": "x"})
        with pytest.raises(OfflineError):
            session.create("Shot", {"code": "x"})
    assert session.mode == "cached"


def test_offline_mode_in_a_fresh_session_with_the_server_down(
    sg: Any, server: Any, path: Path
) -> None:
    with Session(sg, cache=maker(path)) as warm:
        shots = warm.find("Shot", [], SHOT_FIELDS)
    server.stop()
    cold = Session(sg, cache=maker(path), mode="offline")
    again = cold.find("Shot", [], SHOT_FIELDS)
    assert [s["code"] for s in again] == [s["code"] for s in shots]
    assert cold.stats.request_count == 0


def test_max_age_per_call(session: Session, server: Any) -> None:
    session.find("Shot", [], ["code"])
    server.reset_requests()
    session.find("Shot", [], ["code"], max_age=0)
    assert server.count_requests("find") == 1
    session.find("Shot", [], ["code"], max_age=3600)
    assert server.count_requests("find") == 1


def test_mode_setter_validates(session: Session) -> None:
    session.mode = "direct"
    assert session.mode == "direct"
    with pytest.raises(ValueError, match="bogus"):
        session.mode = "bogus"
    with pytest.raises(ValueError, match="bogus"):
        Session(session.shotgun, mode="bogus")


# -- keys -------------------------------------------------------------------------


def test_equivalent_calls_share_a_key() -> None:
    listed = normalise_filters([["code", "is", "A"], ["sg_status_list", "in", ["ip", "fin"]]])
    grouped = normalise_filters(
        {
            "filter_operator": "all",
            "filters": [["sg_status_list", "in", ["fin", "ip"]], ["code", "is", "A"]],
        }
    )
    assert listed == grouped
    assert normalise_filters([["code", "is", "A"]], "any") != normalise_filters(
        [["code", "is", "A"]]
    )
    assert normalise_fields(["b", "a", "a"]) == normalise_fields(["a", "b"])
    assert normalise_fields(["entity.{Asset,Shot}.code"]) == [
        "entity.Asset.code",
        "entity.Shot.code",
    ]


def test_list_and_dict_filters_hit_the_same_record(session: Session, server: Any) -> None:
    session.find("Shot", [["code", "is_not", "zz"]], ["code"])
    server.reset_requests()
    session.find(
        "Shot", {"filter_operator": "all", "filters": [["code", "is_not", "zz"]]}, ["code"]
    )
    assert server.request_count == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 2},
        {"order": [{"field_name": "code", "direction": "desc"}]},
        {"retired_only": True},
        {"include_archived_projects": False},
        {"limit": 2, "page": 2},
    ],
)
def test_limit_page_order_flags_change_the_key(session: Session, server: Any, kwargs: Any) -> None:
    session.find("Shot", [], ["code"])
    server.reset_requests()
    session.find("Shot", [], ["code"], **kwargs)
    assert server.count_requests("find") == 1


def test_bad_arguments_name_what_was_wrong(session: Session) -> None:
    with pytest.raises(QueryError, match="relation"):
        session.find("Shot", [["code"]], ["code"])
    with pytest.raises(QueryError, match="fields"):
        session.find("Shot", [], "code")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="filter_operator"):
        session.find("Shot", [], ["code"], filter_operator="some")
    with pytest.raises(QueryError, match="limit"):
        session.find("Shot", [], ["code"], limit=-1)


def test_a_damaged_answer_record_is_a_miss(session: Session, server: Any) -> None:
    rows = session.find("Shot", [], ["code"])
    key_calls = server.count_requests("find")
    session.reset()  # the built answer is gone; the disk keeps the record
    disk = session.cache.caches[1]
    (key,) = [k for k in disk.keys() if "|q|Shot|" in k]
    record = disk.get(key)
    assert record["k"] == "q" and len(record["r"]) == len(rows)
    # Rows of another type under this answer's key: not an answer, never an error.
    disk.set(key, dict(record, r=[{"type": "Asset", "id": 1, "code": "wrong"}]))
    again = session.find("Shot", [], ["code"])
    assert [r["code"] for r in again] == [r["code"] for r in rows]
    assert server.count_requests("find") == key_calls + 1


# -- invalidation ------------------------------------------------------------------


def test_write_through_session_refreshes_dependent_queries(session: Session, server: Any) -> None:
    shot = first_shot(session.shotgun)
    tasks = session.find(
        "Task",
        [["entity", "is", {"type": "Shot", "id": shot["id"]}]],
        ["content", "entity.Shot.code"],
    )
    assert tasks
    assets = session.find("Asset", [], ["code"])
    server.reset_requests()
    session.update("Shot", shot["id"], {"code": "CHANGED_BY_SESSION"})
    again = session.find(
        "Task",
        [["entity", "is", {"type": "Shot", "id": shot["id"]}]],
        ["content", "entity.Shot.code"],
    )
    assert {t["entity.Shot.code"] for t in again} == {"CHANGED_BY_SESSION"}
    assert server.count_requests("find") == 1  # the deep-linked query was refreshed
    session.find("Asset", [], ["code"])
    assert server.count_requests("find") == 1  # the Asset query did not depend on Shot
    assert assets


def test_filters_crossing_a_type_depend_on_it(session: Session, server: Any) -> None:
    shot = first_shot(session.shotgun)
    seq_code = session.shotgun.find_one(
        "Sequence", [["id", "is", shot["sg_sequence"]["id"]]], ["code"]
    )["code"]
    found = session.find("Shot", [["sg_sequence.Sequence.code", "is", seq_code]], ["code"])
    assert found
    session.update("Sequence", shot["sg_sequence"]["id"], {"code": "RENAMED_SEQ"})
    assert session.find("Shot", [["sg_sequence.Sequence.code", "is", seq_code]], ["code"]) == []


CHILD = textwrap.dedent(
    """
    import json, sys
    import shotgun_api3
    from sgcache_layers import FileCache, SerialisedCache, Session
    url, script, key, path, action, shot_id = sys.argv[1:7]
    sg = shotgun_api3.Shotgun(url, script, key, connect=False)
    maker = lambda s: SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode)
    with Session(sg, cache=maker) as session:
        if action == "update":
            session.update("Shot", int(shot_id), {"code": "FROM_OTHER_PROCESS"})
        rows = session.find("Shot", [["id", "is", int(shot_id)]], ["code"])
        print(json.dumps({"code": rows[0]["code"], "requests": session.stats.request_count}))
    """
)


def child(server: Any, path: Path, action: str, shot_id: int) -> dict[str, Any]:
    done = subprocess.run(
        server.child_argv(CHILD, str(path), action, str(shot_id)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_update_in_another_process_is_seen_at_once(
    session: Session, server: Any, path: Path
) -> None:
    shot_id = first_shot(session.shotgun)["id"]
    before = session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"]
    assert child(server, path, "read", shot_id) == {"code": before, "requests": 0}
    out = child(server, path, "update", shot_id)
    assert out["code"] == "FROM_OTHER_PROCESS"
    # This long-lived session sees the other process's write on its next call.
    assert (
        session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"] == "FROM_OTHER_PROCESS"
    )


def test_outside_change_needs_sync(session: Session, other: Any, server: Any) -> None:
    shot_id = first_shot(other)["id"]
    session.sync()  # first sync: flush and remember the last event id
    before = session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"]
    other.update("Shot", shot_id, {"code": "CHANGED_OUTSIDE"})
    # Documented: inside max_age and without a sync, cached mode answers the old value.
    assert session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"] == before
    assert session.get("Shot", shot_id)["code"] == before
    assert session.sync() >= 1
    assert session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"] == "CHANGED_OUTSIDE"
    assert session.get("Shot", shot_id)["code"] == "CHANGED_OUTSIDE"


def test_sync_touches_only_dependent_queries(session: Session, other: Any, server: Any) -> None:
    session.sync()
    session.find("Shot", [], ["code"])
    session.find("Asset", [], ["code"])
    shot_id = first_shot(other)["id"]
    other.update("Shot", shot_id, {"description": "outside"})
    session.sync()
    server.reset_requests()
    session.find("Asset", [], ["code"])
    assert server.count_requests("find") == 0
    session.find("Shot", [], ["code"])
    assert server.count_requests("find") == 1


def test_first_sync_and_gaps_flush_the_namespace(session: Session, other: Any, server: Any) -> None:
    session.find("Asset", [], ["code"])
    session.sync()
    assert session.stats.flushes == 1
    session.find("Asset", [], ["code"])
    server.skip_event_ids(5)
    other.update("Shot", first_shot(other)["id"], {"description": "after a gap"})
    server.reset_requests()
    session.sync()
    assert session.stats.flushes == 2
    session.find("Asset", [], ["code"])
    assert server.count_requests("find", "Asset") == 1


def test_sync_position_is_shared_by_processes(sg: Any, server: Any, path: Path) -> None:
    with Session(sg, cache=maker(path)) as first:
        first.sync()
        first.find("Asset", [], ["code"])
    with Session(sg, cache=maker(path)) as second:
        second.sync()
        assert second.stats.flushes == 0  # continues from the shared last event id
        server.reset_requests()
        second.find("Asset", [], ["code"])
        assert server.count_requests("find") == 0


def test_sync_interval_syncs_on_reads(sg: Any, other: Any, path: Path) -> None:
    session = Session(sg, cache=maker(path), sync_interval=0)
    shot_id = first_shot(other)["id"]
    session.find("Shot", [["id", "is", shot_id]], ["code"])
    other.update("Shot", shot_id, {"code": "AUTO_SYNCED"})
    assert session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"] == "AUTO_SYNCED"
    assert session.stats.syncs >= 2


# -- errors --------------------------------------------------------------------------


def test_stale_answer_when_shotgrid_fails(
    session: Session, server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rows = session.find("Shot", [], ["code"])
    server.inject_fault("503", method="find", count=None)
    with caplog.at_level(logging.WARNING, logger="sgcache_layers"):
        again = session.find("Shot", [], ["code"], max_age=0)
    assert again == rows
    assert session.stats.stale_served == 1
    assert any("stale" in r.getMessage() for r in caplog.records)
    with pytest.raises(Exception) as info:
        session.find("Asset", [], ["code"])  # nothing cached: the original error
    assert "503" in str(info.value)


def test_stale_answer_when_shotgrid_is_unreachable(session: Session, server: Any) -> None:
    rows = session.find("Shot", [], ["code"])
    session.shotgun.config.max_rpc_attempts = 1
    server.stop()
    assert session.find("Shot", [], ["code"], max_age=0) == rows
    assert session.stats.stale_served == 1


def test_no_stale_answer_when_disabled(sg: Any, server: Any, path: Path) -> None:
    session = Session(sg, cache=maker(path), stale_if_error=False)
    session.find("Shot", [], ["code"])
    server.inject_fault("503", method="find", count=None)
    with pytest.raises(Exception, match="503"):
        session.find("Shot", [], ["code"], max_age=0)


def test_eight_threads_one_request(session: Session, server: Any) -> None:
    server.set_latency(0.3)
    server.reset_requests()
    barrier = threading.Barrier(8)
    results: list[Any] = []

    def ask() -> None:
        barrier.wait()
        results.append(session.find("Shot", [["code", "is_not", "stampede"]], ["code"]))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(r == results[0] for r in results)
    assert server.count_requests("find") == 1


# -- schema -------------------------------------------------------------------------


def test_schema_reads_are_cached_and_dropped_on_schema_events(
    sg: Any, server: Any, path: Path
) -> None:
    with Session(sg, cache=maker(path)) as first:
        first.sync()
        schema = first.schema_read()
        assert "Shot" in schema
        assert first.schema_field_read("Shot", "code")["code"]["data_type"]["value"] == "text"
        assert "Shot" in first.schema_entity_read()
    server.reset_requests()
    with Session(sg, cache=maker(path)) as second:
        assert second.schema_read() == schema
        second.schema_field_read("Shot", "code")
        assert server.request_count == 0
        server.add_field("Shot", "sg_new_field", "text")
        second.sync()
        server.reset_requests()
        assert "sg_new_field" in second.schema_read()["Shot"]
        assert server.count_requests("schema_read") == 1
    assert Session(sg).schema_max_age == 3600


def test_answers_depend_on_types_their_links_name(
    session: Session, other: Any, server: Any
) -> None:
    """A Task answer shows each shot's display name, so a renamed shot makes it stale."""
    session.sync()
    shot_id = first_shot(other)["id"]
    link = {"type": "Shot", "id": shot_id}
    tasks = session.find("Task", [["entity", "is", link]], ["content", "entity"])
    assert tasks
    other.update("Shot", shot_id, {"code": "RENAMED_FOR_LINKS"})
    session.sync()
    server.reset_requests()
    again = session.find("Task", [["entity", "is", link]], ["content", "entity"])
    assert server.count_requests("find", "Task") == 1
    assert {t["entity"]["name"] for t in again} == {"RENAMED_FOR_LINKS"}


def test_events_that_commit_late_are_still_applied(
    session: Session, other: Any, server: Any
) -> None:
    """An event id can appear after higher ids were read (a slow transaction)."""
    shot_id = first_shot(other)["id"]
    session.sync()
    hole = server.skip_event_ids(1)  # this id will be filled late
    other.update("Asset", other.find_one("Asset", [], [])["id"], {"description": "x"})
    session.sync()  # sees the gap: flushes and remembers the missing id
    before = session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"]
    other.update("Shot", shot_id, {"code": "COMMITTED_LATE"})
    # Give that change's event the missing, lower id, as a late commit would have.
    rows = server.store._db["EventLogEntry"]
    late_id = max(rows)
    row = rows.pop(late_id)
    row["id"] = hole
    rows[hole] = row
    assert session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"] == before
    session.sync()
    assert session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"] == "COMMITTED_LATE"


def test_missing_ids_are_forgotten_after_the_backlog(
    sg: Any, other: Any, server: Any, path: Path
) -> None:
    session = Session(sg, cache=maker(path), event_backlog=0)
    session.sync()
    server.skip_event_ids(3)
    other.update("Asset", other.find_one("Asset", [], [])["id"], {"description": "y"})
    session.sync()
    server.reset_requests()
    session.sync()
    (request,) = [r for r in server.requests if r.entity_type == "EventLogEntry"]
    assert "in" not in str(request.params["filters"])  # no longer asks for the old holes


def test_many_threads_with_different_reads(session: Session, sg: Any, server: Any) -> None:
    """The session wraps the client in a pool: concurrent reads each get a connection."""
    from concurrent.futures import ThreadPoolExecutor

    server.set_latency(0.02)
    expected = {
        entity_type: sorted(r["id"] for r in sg.find(entity_type, [], []))
        for entity_type in ("Shot", "Asset", "Task", "Version", "Sequence", "Step")
    }
    shot_ids = expected["Shot"]

    def work(index: int) -> tuple[str, list[int]]:
        entity_type = list(expected)[index % len(expected)]
        rows = session.find(entity_type, [], ["id"])
        session.get("Shot", shot_ids[index % len(shot_ids)])
        return entity_type, sorted(r["id"] for r in rows)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(48)))
    for entity_type, ids in results:
        assert ids == expected[entity_type]


def test_text_search_is_cached_and_follows_writes(session: Session, server: Any) -> None:
    shot = first_shot(session.shotgun)
    term = shot["code"][:4]
    found = session.text_search(term, {"Shot": []})
    assert found["matches"]
    server.reset_requests()
    assert session.text_search(term, {"Shot": []}) == found
    assert server.request_count == 0
    session.update("Shot", shot["id"], {"code": "ZZZ_RENAMED"})
    again = session.text_search(term, {"Shot": []})
    assert (
        server.count_requests("text_search") + server.count_requests("query_display_name_cache")
        == 1
    )
    assert len(again["matches"]) == len(found["matches"]) - 1
