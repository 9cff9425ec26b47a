"""The request path (issue 9): the same rows and order as plain ``shotgun_api3`` with pages
asked in parallel, one batched write kept even by a tool that exits at once, and caches
written by an older release read as misses, never errors."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import FileCache, SerialisedCache, Session
from sgcache_layers.records import PREFIX
from sgcache_layers.testing import ShotgridServer

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = {"type": "Project", "id": 1}


def rows_of(found: list[Any], fields: list[str]) -> list[tuple[Any, ...]]:
    """What ``shotgun_api3`` returned, in order: type, id and each asked field's value."""
    out = []
    for row in found:
        values = []
        for name in fields:
            value = dict.get(row, name)
            if isinstance(value, dict):
                value = (value.get("type"), value.get("id"), dict.get(value, "name"))
            values.append(value)
        out.append((row["type"], row["id"], *values))
    return out


@pytest.fixture(scope="module")
def paged_server() -> Any:
    """A site with 1,234 shots (three pages of 500) and a bit of latency."""
    with ShotgridServer(seed=3) as server:
        rows = [
            {
                "code": f"SH{i:05d}",
                "project": PROJECT,
                "sg_status_list": ("ip", "fin", "wtg")[i % 3],
            }
            for i in range(1234)
        ]
        with server.store.lock:
            server.store.bulk_insert("Project", [{"name": "Paging"}])
            server.store.bulk_insert("Shot", rows)
        yield server


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"order": [{"field_name": "code", "direction": "desc"}]},
        {"order": [{"field_name": "sg_status_list"}, {"field_name": "id", "direction": "desc"}]},
        {"limit": 777},
        {"limit": 1001, "order": [{"field_name": "code"}]},
        {"limit": 500},
        {"limit": 7, "page": 3, "order": [{"field_name": "code"}]},
        {"page": 2},
        {"filter_operator": "any"},
    ],
    ids=lambda kw: ",".join(sorted(kw)) or "plain",
)
def test_find_gives_exactly_what_shotgun_api3_gives(
    paged_server: ShotgridServer, tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    filters = [["project", "is", PROJECT], ["code", "is_not", "nothing"]]
    fields = ["code", "sg_status_list", "project"]
    plain = paged_server.client()
    expected = rows_of(plain.find("Shot", filters, fields, **kwargs), fields)
    paged_server.reset_requests()
    plain.find("Shot", filters, fields, **kwargs)
    plain_requests = paged_server.request_count
    session = Session(
        paged_server.client(),
        cache=lambda s: SerialisedCache(
            FileCache(str(tmp_path / "c")), encode=s.encode, decode=s.decode
        ),
    )
    paged_server.reset_requests()
    assert rows_of(session.find("Shot", filters, fields, **kwargs), fields) == expected
    assert paged_server.request_count == plain_requests  # the same pages, asked at once
    session.close()
    again = Session(
        paged_server.client(),
        cache=lambda s: SerialisedCache(
            FileCache(str(tmp_path / "c")), encode=s.encode, decode=s.decode
        ),
    )
    assert rows_of(again.find("Shot", filters, fields, **kwargs), fields) == expected
    assert again.stats.request_count == 0


def test_pages_after_the_first_are_asked_for_together(paged_server: ShotgridServer) -> None:
    paged_server.set_latency(0.3)
    try:
        session = Session(paged_server.client())
        paged_server.reset_requests()
        assert len(session.find("Shot", [["project", "is", PROJECT]], ["code"])) == 1234
        first, second, third = [r for r in paged_server.requests if r.method == "read"]
        # Page 1 tells the count, so pages 2 and 3 are asked for once it is answered...
        assert min(second.time, third.time) >= first.time + first.duration - 0.05
        # ... and then together: each arrived before the other was answered (the server's
        # own clock; no wall-clock bound on the whole call, which a busy machine breaks).
        assert max(second.time, third.time) < min(
            second.time + second.duration, third.time + third.duration
        )
        assert abs(second.time - third.time) < 0.25
    finally:
        paged_server.set_latency(None)


CHILD = textwrap.dedent(
    """
    import sys
    import shotgun_api3
    from sgcache_layers import FileCache, SerialisedCache, Session
    url, script, key, path = sys.argv[1:5]
    sg = shotgun_api3.Shotgun(url, script, key, connect=False)
    maker = lambda s: SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode)
    session = Session(sg, cache=maker)
    rows = session.find("Shot", [], ["code"])
    print(len(rows), flush=True)
    # no close(): the tool just exits after its read
    """
)


def test_a_tool_that_exits_right_after_its_read_leaves_the_record(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    path = tmp_path / "cache"
    shotgrid_server.set_latency(0.05)
    done = subprocess.run(
        shotgrid_server.child_argv(CHILD, str(path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count = int(done.stdout.strip())
    assert count > 0
    assert "failed" not in done.stderr
    shotgrid_server.reset_requests()
    with Session(
        shotgrid_server.client(),
        cache=lambda s: SerialisedCache(FileCache(str(path)), encode=s.encode, decode=s.decode),
    ) as session:
        assert len(session.find("Shot", [], ["code"])) == count
        assert session.stats.request_count == 0


def test_storing_an_answer_does_not_delay_it(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    """The record is written by the background writer, after the answer was returned."""
    release = threading.Event()
    writers: list[threading.Thread] = []

    class SlowDisk(FileCache):
        hold = False

        def set_many(self, mapping: Any) -> None:
            if self.hold and any("|q|" in key for key in mapping):  # an answer's record
                writers.append(threading.current_thread())
                release.wait(30)  # a disk that takes its time, until the test lets it go
            super().set_many(mapping)

    disks: list[SlowDisk] = []

    def cache_maker(s: Session) -> SerialisedCache:
        disks.append(SlowDisk(str(tmp_path / "slow")))
        return SerialisedCache(disks[-1], encode=s.encode, decode=s.decode)

    session = Session(shotgrid_server.client(), cache=cache_maker)
    # The namespace's bookkeeping (generations of the types involved) exists from here on.
    session.find("Task", [["content", "is_not", "x"]], ["content", "entity", "step"])
    session.drain()
    disks[0].hold = True
    found = session.find("Task", [], ["content", "entity", "step"])
    # The answer came back while its record waited on the disk, in another thread.
    assert found and threading.main_thread() not in writers
    release.set()
    assert session.drain(timeout=10)
    assert writers  # and it was written, by the background writer
    session.close()


@pytest.mark.parametrize("written_by", ["cache-v1", "cache-v2"])
def test_a_cache_written_by_an_older_format_is_read_as_misses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, written_by: str
) -> None:
    """``tests/fixtures/cache-v1`` was written by release 0.1.0 (record format 1),
    ``cache-v2`` by record format 2 (answers with their links whole): see their READMEs."""
    old_prefix = "sgcl" + written_by[-1] + "|"
    path = tmp_path / "cache"
    shutil.copytree(FIXTURES / written_by / "cache", path)
    site = (FIXTURES / written_by / "site.txt").read_text().strip()
    with ShotgridServer(scale=0.05, seed=0) as server:
        old = FileCache(str(path))
        assert any(k.startswith(old_prefix) for k in old.keys())  # what the old code left
        old.close()
        session = Session(
            server.client(),
            site=site,  # the namespace the old records were written for
            cache=lambda s: SerialisedCache(FileCache(str(path)), encode=s.encode, decode=s.decode),
        )
        server.reset_requests()
        shots = session.find("Shot", [], ["code"])
        tasks = session.find("Task", [], ["content", "entity", "step", "task_assignees"])
        session.reset()  # the entity's own record is what get() reads now
        shot = session.get("Shot", shots[0]["id"])
        assert shots and tasks and shot is not None
        assert server.count_requests("find") == 3  # misses, answered by ShotGrid
        plain = server.client().find("Task", [], ["content", "entity", "step", "task_assignees"])

        def links(rows: list[Any]) -> list[Any]:
            return [
                (
                    r["id"],
                    r["entity"]["id"],
                    r["step"]["id"],
                    [u["id"] for u in r["task_assignees"]],
                )
                for r in rows
            ]

        assert links(tasks) == links(plain)
        session.close()
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    # The new records sit beside the old ones, which nothing reads any more.
    reopened = FileCache(str(path))
    keys = reopened.keys()
    assert any(k.startswith(PREFIX + "|") for k in keys)
    assert any(k.startswith(old_prefix) for k in keys)
    reopened.close()


def test_many_threads_asking_one_uncached_question_make_one_request(
    shotgrid_server: ShotgridServer,
) -> None:
    shotgrid_server.set_latency(0.2)
    session = Session(shotgrid_server.client())
    shotgrid_server.reset_requests()
    barrier = threading.Barrier(12)
    results: list[Any] = []

    def ask() -> None:
        barrier.wait()
        results.append(session.find("Task", [], ["content"]))

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12 and all(r == results[0] for r in results)
    assert shotgrid_server.count_requests("find") == 1
