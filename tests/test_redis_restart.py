"""A Redis restarted mid-run, its data lost (issue 12, point 5): misses, never a stale answer.

Long-lived sessions in real processes share one ``redis-server`` of the test's own.  It
stops; the reads meanwhile go to ShotGrid with a warning (no crash); another process's
session changes a shot while it is down (its generation moves are lost with Redis); Redis
starts again on the same port, empty.  Every reader, and a new process, must then read the
new value, the first of them by asking ShotGrid.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from sgcache_layers.testing import ShotgridServer
from sgcache_layers.testing.redis_server import RedisServer

# A child: one Session over the cache spec given, taking commands on stdin ("read",
# "update CODE") and answering each with a JSON line; warnings are counted, not printed.
CHILD = textwrap.dedent(
    """
    import json, logging, sys
    import shotgun_api3
    from sgcache_layers import Session

    url, script, key, cache, shot_id = sys.argv[1:6]
    shot_id = int(shot_id)
    warnings = []

    class Count(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("sgcache_layers").addHandler(Count())
    logging.getLogger("sgcache_layers").propagate = False
    sg = shotgun_api3.Shotgun(url, script, key, connect=False)
    sg.config.rpc_attempt_interval = 10
    session = Session(sg, cache=cache)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "read":
            got = session.get("Shot", shot_id)["code"]  # before the find merges anything
            found = session.find("Shot", [["id", "is", shot_id]], ["code"])[0]["code"]
            print(json.dumps({"get": got, "find": found, "warnings": len(warnings),
                              "requests": session.stats.request_count}), flush=True)
        elif command[0] == "update":
            session.update("Shot", shot_id, {"code": command[1]})
            print(json.dumps({"done": command[1], "warnings": len(warnings)}), flush=True)
    session.close()
    """
)


class Child:
    """A child process and its line protocol."""

    def __init__(self, server: ShotgridServer, cache: str, shot_id: int) -> None:
        self.process = subprocess.Popen(
            server.child_argv(CHILD, cache, str(shot_id)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(command + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            assert self.process.stderr is not None
            raise AssertionError(f"the child died: {self.process.stderr.read()}")
        return dict(json.loads(line))

    def quit(self) -> None:
        """Let the child close its session and exit; it must exit 0."""
        _, stderr = self.process.communicate("quit\n", timeout=60)
        assert self.process.returncode == 0, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop and start again."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _first_reads(readers: list[Child], code: str) -> list[dict[str, Any]]:
    """Each reader reads twice (the second time from memory); the second answers."""
    for child in readers:
        first = child.ask("read")
        assert (first["get"], first["find"]) == (code, code)
    warm = [child.ask("read") for child in readers]
    assert all((w["get"], w["find"]) == (code, code) for w in warm)
    return warm


def test_a_redis_restarted_empty_costs_misses_never_a_stale_answer(
    shotgrid_server: ShotgridServer, redis: RedisServer
) -> None:
    """Farm sessions over Redis alone: down, a change by another process, back empty."""
    shot: Any = shotgrid_server.client().find_one("Shot", [], ["code"])
    assert shot is not None
    old, new = shot["code"], "CHANGED_WHILE_REDIS_WAS_DOWN"
    url = redis.url
    children: list[Child] = []
    try:
        # Readers that read while Redis is down, one that does not, and a writer.
        down_readers = [Child(shotgrid_server, url, shot["id"]) for _ in range(2)]
        quiet = Child(shotgrid_server, url, shot["id"])
        writer = Child(shotgrid_server, url, shot["id"])
        children = [*down_readers, quiet, writer]
        warm = _first_reads([*down_readers, quiet], old)

        port = redis.port
        redis.stop()
        # Down: reads go to ShotGrid, with a warning, and say what ShotGrid says.
        for child, seen in zip(down_readers, warm):
            before = child.ask("read")
            assert (before["get"], before["find"]) == (old, old)
            assert before["requests"] > seen["requests"] and before["warnings"] > 0
        done = writer.ask("update " + new)
        assert done["done"] == new and done["warnings"] > 0  # its moves did not reach Redis
        for child in down_readers:
            asked = child.ask("read")
            assert (asked["get"], asked["find"]) == (new, new)
        assert all(child.process.poll() is None for child in children)

        redis.start(port=port)  # the same address, no data
        assert redis.url == url
        # The reader that saw nothing of the outage goes first: its memory holds the old
        # answers, checked against generations that only the lost Redis knew.
        back = quiet.ask("read")
        assert (back["get"], back["find"]) == (new, new)
        assert back["requests"] > warm[2]["requests"]  # a miss: it asked ShotGrid
        for child in [*down_readers, writer]:
            again = child.ask("read")
            assert (again["get"], again["find"]) == (new, new)
        fresh = Child(shotgrid_server, url, shot["id"])
        children.append(fresh)
        after = fresh.ask("read")
        assert (after["get"], after["find"]) == (new, new)
        for child in children:
            child.quit()
    finally:
        for child in children:
            child.kill()


def test_a_host_disk_does_not_answer_for_redis_while_it_is_down(
    shotgrid_server: ShotgridServer, redis: RedisServer, tmp_path: Path
) -> None:
    """A host with its own disk under Redis: while Redis is down, its disk cannot know what
    other hosts changed meanwhile, so it must not vouch for cached answers.

    Today it does (issue 12, point 5): ``Freshness.refresh`` reads the clock and epoch
    with ``_read_many(layout.authorities, ...)``, which falls back to the next layer that
    answers, the host's disk.  The first read of the outage starts the disk's bookkeeping
    afresh (a miss, asked of ShotGrid); after another host's update, the disk says nothing
    moved, and the next read serves the old value from memory without asking ShotGrid.
    """
    shot: Any = shotgrid_server.client().find_one("Shot", [], ["code"])
    assert shot is not None
    old, new = shot["code"], "CHANGED_ON_ANOTHER_HOST"
    url = redis.url
    children: list[Child] = []
    try:
        on_disk = Child(shotgrid_server, f"{tmp_path / 'host'}+{url}", shot["id"])
        writer = Child(shotgrid_server, url, shot["id"])  # another host: Redis alone
        children = [on_disk, writer]
        _first_reads([on_disk], old)
        port = redis.port
        redis.stop()
        during = on_disk.ask("read")  # the host's disk takes over the bookkeeping
        assert (during["get"], during["find"]) == (old, old) and during["warnings"] > 0
        assert writer.ask("update " + new)["done"] == new
        asked = on_disk.ask("read")
        assert (asked["get"], asked["find"]) == (new, new), asked
        redis.start(port=port)
        again = on_disk.ask("read")
        assert (again["get"], again["find"]) == (new, new)
        for child in children:
            child.quit()
    finally:
        for child in children:
            child.kill()
