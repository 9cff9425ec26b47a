"""Farm-wide numbers (issue 12, point 4): every process's counters in Redis, summed.

Real processes, each a Session over one real ``redis-server`` and the loopback ShotGrid
server, write their counters to Redis; ``sgcache-layers stats --redis URL`` and
:func:`~sgcache_layers.stats.farm_stats` sum them.  The totals must equal what each process
counted, and counting must cost no Redis round trip per read (``total_commands_processed``
before and after, with counters written and not).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from typing import Any, Optional

import pytest

from sgcache_layers import RedisCache, SerialisedCache, Session
from sgcache_layers.records import PREFIX
from sgcache_layers.stats import farm_stats
from sgcache_layers.testing import ShotgridServer
from sgcache_layers.testing.redis_server import RedisServer, redis_command

IDENTITY = "script=sgcache_tests;tz=local;l10n=0"

# A child process: one Session over the cache spec given, running a plan of reads
# ([kind, shot id, times], ...), printing what it counted as one JSON line after close().
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import shotgun_api3
    from sgcache_layers import Session

    url, script, key, cache, plan, interval = sys.argv[1:7]
    sg = shotgun_api3.Shotgun(url, script, key, connect=False)
    every = None if interval == "none" else float(interval)
    session = Session(sg, cache=cache, stats_interval=every)

    def run(steps):
        for kind, shot_id, times in steps:
            for _ in range(times):
                if kind == "find":
                    session.find("Shot", [["id", "is", shot_id]], ["code"])
                else:
                    session.get("Shot", shot_id, ["code", "description"])

    def counts():
        stats = session.stats
        return {"hits": dict(stats.hits), "misses": dict(stats.misses),
                "requests": dict(stats.requests), "pid": os.getpid()}

    steps = json.loads(plan)
    if steps and steps[0] == "fork":  # run the rest in the parent, then in a forked child
        run(steps[1:])
        session.drain()
        before = counts()
        child = os.fork()
        if child == 0:
            run(steps[1:])
            session.close()
            after = counts()
            mine = {name: {k: v - before[name].get(k, 0) for k, v in after[name].items()}
                    for name in ("hits", "misses", "requests")}
            print(json.dumps({**mine, "pid": os.getpid(), "forked": True}), flush=True)
            os._exit(0)
        os.waitpid(child, 0)
        session.close()
        print(json.dumps(before), flush=True)
        sys.exit(0)
    started = time.monotonic()
    run(steps)
    seconds = time.monotonic() - started
    session.close()
    print(json.dumps({**counts(), "writes": session._farm.writes, "seconds": seconds}))
    """
)


def _spawn(server: ShotgridServer, cache: str, plan: Any, interval: str = "5") -> Any:
    return subprocess.Popen(
        server.child_argv(CHILD, cache, json.dumps(plan), interval),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _results(children: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for child in children:
        stdout, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
        out.extend(json.loads(line) for line in stdout.splitlines() if line.strip())
    return out


def _shots(server: ShotgridServer) -> list[int]:
    rows = server.client().find("Shot", [], [], order=[{"field_name": "id", "direction": "asc"}])
    return [int(r["id"]) for r in rows]


def _namespace(stats: dict[str, Any], site: str) -> dict[str, Any]:
    (entry,) = [s for s in stats["sites"] if s["site"] == site]
    (space,) = [n for n in entry["namespaces"] if n["identity"] == IDENTITY]
    return dict(space)


def _summed(results: list[dict[str, Any]], name: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for result in results:
        total.update(result[name])
    return {k: v for k, v in total.items() if v}


#: Commands a new connection sends (redis-py's handshake), not part of any read.
_HANDSHAKE = ("cmdstat_hello", "cmdstat_client|setinfo", "cmdstat_client")


def _commands(port: int) -> Counter[str]:
    """How many times Redis ran each command so far (``INFO commandstats``)."""
    info = redis_command("127.0.0.1", port, "INFO", "commandstats").decode()
    counts: Counter[str] = Counter()
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            counts[name] = int(rest.split(",", 1)[0].split("=", 1)[1])
    return counts


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sgcache_layers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_farm_totals_are_the_sum_of_what_each_process_counted(
    shotgrid_server: ShotgridServer, redis_url: str
) -> None:
    ids = _shots(shotgrid_server)
    plans = [
        [["find", ids[0], 5], ["find", ids[1], 3], ["get", ids[2], 2]],
        [["find", ids[0], 2], ["get", ids[3], 4]],
        [["find", ids[4], 7], ["find", ids[1], 1], ["get", ids[2], 1]],
        [["get", ids[5], 3], ["find", ids[6], 2]],
    ]
    shotgrid_server.reset_requests()
    children = [_spawn(shotgrid_server, redis_url, plan) for plan in plans]
    results = _results(children)
    assert len(results) == 4
    # What the processes counted is what ShotGrid saw.
    made = sum(sum(r["requests"].values()) for r in results)
    assert made == shotgrid_server.request_count

    cache = RedisCache(redis_url)
    try:
        space = _namespace(farm_stats(cache), shotgrid_server.url)
    finally:
        cache.close()
    hits, misses = _summed(results, "hits"), _summed(results, "misses")
    assert space["processes"] == 4 and space["sessions"] == 4 and space["open"] == 0
    assert space["hits_by_kind"] == hits and space["hits"] == sum(hits.values())
    assert space["misses_by_kind"] == misses and space["misses"] == sum(misses.values())
    assert space["requests_by_method"] == _summed(results, "requests")
    assert space["requests"] == made
    assert space["saved"] == sum(hits.values())
    assert sum(hits.values()) > 0 and made > 0

    # The command prints the same sums.
    done = _cli("stats", "--redis", redis_url, "--json")
    assert done.returncode == 0, done.stderr
    printed = _namespace(json.loads(done.stdout), shotgrid_server.url)
    for name in ("processes", "hits", "misses", "requests", "saved"):
        assert printed[name] == space[name]
    text = _cli("stats", "--redis", redis_url)
    assert text.returncode == 0, text.stderr
    assert f"Site {shotgrid_server.url} ({PREFIX})" in text.stdout
    assert f"  {IDENTITY}: 4 processes (4 sessions, 0 open)" in text.stdout
    assert (
        f"    hits {space['hits']}, misses {space['misses']}, requests made {made}, "
        f"requests saved {space['saved']}"
    ) in text.stdout
    assert "watcher: no heartbeat" in text.stdout
    assert shotgrid_server.api_key not in text.stdout + done.stdout


def test_counting_costs_no_redis_round_trip_per_read(
    shotgrid_server: ShotgridServer, redis_server: RedisServer, redis_url: str
) -> None:
    """The same reads with counters written every 50 ms and with none: the difference in
    commands Redis processed is exactly the counter writes, a few for a thousand reads."""
    ids = _shots(shotgrid_server)
    plan = [["find", ids[0], 1500], ["get", ids[1], 500]]
    (warm,) = _results([_spawn(shotgrid_server, redis_url, plan, "none")])  # fills Redis
    assert warm["requests"]["find"] == 2
    assert redis_server.port is not None
    spent: dict[str, Counter[str]] = {}
    runs: dict[str, dict[str, Any]] = {}
    for label, interval in (("off", "none"), ("on", "0.05"), ("default", "5")):
        before = _commands(redis_server.port)
        (runs[label],) = _results([_spawn(shotgrid_server, redis_url, plan, interval)])
        spent[label] = _commands(redis_server.port) - before
        for name in _HANDSHAKE:  # connections the pool opened: not round trips of reads
            spent[label].pop(name, None)
    reads = 2000
    assert runs["off"]["writes"] == 0
    assert sum(spent["off"].values()) > reads  # each read checks the clock: one MGET
    for label in ("on", "default"):
        run = runs[label]
        assert run["hits"] == runs["off"]["hits"] and run["requests"] == runs["off"]["requests"]
        # Every counter write is one SET; no other command differs.
        extra = spent[label] - spent["off"]
        assert extra == Counter({"cmdstat_set": run["writes"]}), (spent, runs)
        assert not spent["off"] - spent[label], (spent, runs)
        # At most one write per interval while reading, and the last one at close().
        every = 0.05 if label == "on" else 5.0
        assert 1 <= run["writes"] <= run["seconds"] / every + 2, run
        assert run["writes"] * 20 < reads
    assert runs["default"]["writes"] == 1  # a short process writes once, at close()


def test_a_forked_child_reports_as_its_own_process(
    shotgrid_server: ShotgridServer, redis_url: str
) -> None:
    ids = _shots(shotgrid_server)
    plan = ["fork", ["find", ids[0], 3], ["get", ids[1], 2], ["find", ids[2], 1]]
    results = _results([_spawn(shotgrid_server, redis_url, plan)])
    assert len(results) == 2 and results[0]["pid"] != results[1]["pid"]
    cache = RedisCache(redis_url)
    try:
        space = _namespace(farm_stats(cache), shotgrid_server.url)
    finally:
        cache.close()
    assert space["processes"] == 2
    assert space["hits_by_kind"] == _summed(results, "hits")
    assert space["misses_by_kind"] == _summed(results, "misses")
    assert space["requests_by_method"] == _summed(results, "requests")


def _heartbeat(session: Session, url: str, beat: Optional[dict[str, Any]]) -> None:
    """Write a watcher heartbeat as a watcher would: a plain dict under ``keys.watch``."""
    layer = SerialisedCache(RedisCache(url), encode=session.encode, decode=session.decode)
    try:
        if beat is not None:
            layer.set(session._keys.watch, beat)
    finally:
        layer.close()


def test_the_heartbeat_age_is_shown_and_no_credential_ever(
    shotgrid_server: ShotgridServer,
) -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    secret = "farm-secret-9f3c"
    with RedisServer() as server:
        assert server.port is not None
        redis_command("127.0.0.1", server.port, "CONFIG", "SET", "requirepass", secret)
        url = f"redis://:{secret}@127.0.0.1:{server.port}/0"
        with Session(shotgrid_server.client(), cache=url) as session:
            session.find("Shot", [], ["code"])
            session.find("Shot", [], ["code"])
            _heartbeat(
                session,
                url,
                {"time": time.time() - 30, "interval": 10.0, "host": "watch-host", "pid": 4242},
            )
        text = _cli("stats", "--redis", url)
        done = _cli("stats", "--redis", url, "--json")
        down = _cli("stats", "--redis", f"redis://:{secret}@127.0.0.1:1/0")
    assert text.returncode == 0 and done.returncode == 0, text.stderr + done.stderr
    assert "watcher: heartbeat 3" in text.stdout
    assert "s old (host watch-host, pid 4242, every 10 s)" in text.stdout
    assert f"  {IDENTITY}: 1 process (1 session, 0 open)" in text.stdout
    stats = json.loads(done.stdout)
    (site,) = stats["sites"]
    assert 29 < site["watcher"]["age"] < 60 and site["watcher"]["host"] == "watch-host"
    assert _namespace(stats, shotgrid_server.url)["hits"] == 1
    assert stats["redis"] == f"redis://127.0.0.1:{server.port}/0"
    assert down.returncode != 0 and down.stdout == ""
    assert len(down.stderr.splitlines()) == 1 and "Traceback" not in down.stderr
    for output in (text.stdout, text.stderr, done.stdout, done.stderr, down.stderr):
        assert secret not in output
        assert shotgrid_server.api_key not in output


def test_stats_takes_a_cache_dir_or_a_redis_url_not_both(tmp_path: Any) -> None:
    done = _cli("stats", "--cache-dir", str(tmp_path), "--redis", "redis://127.0.0.1:1/0")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
    done = _cli("stats", "--redis", str(tmp_path))
    assert done.returncode == 2 and "one Redis URL" in done.stderr


# A child with several sessions it never closes: it reads, says so, waits until the test has
# stopped Redis, then exits (the interpreter's exit writes the counters a last time).
UNCLOSED = textwrap.dedent(
    """
    import sys
    import shotgun_api3
    from sgcache_layers import Session

    url, script, key, cache = sys.argv[1:5]
    sessions = []
    for number in range(6):
        session = Session(shotgun_api3.Shotgun(url, script, key, connect=False), cache=cache)
        session.find("Shot", [], ["code"])
        sessions.append(session)
    print("read", flush=True)
    sys.stdin.readline()
    """
)


def test_an_exit_with_unclosed_sessions_and_redis_gone_warns_once(
    shotgrid_server: ShotgridServer,
) -> None:
    """The counters are the process's: at exit one session per namespace writes them, and a
    dead Redis is tried once, with one warning, not once per unclosed session."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        child = subprocess.Popen(
            shotgrid_server.child_argv(UNCLOSED, server.url),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "read"
    # Redis is gone now.
    child.stdin.write("\n")
    child.stdin.flush()
    _out, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    failures = [line for line in stderr.splitlines() if "cache counters failed" in line]
    assert len(failures) == 1, stderr
    assert "Traceback" not in stderr and shotgrid_server.api_key not in stderr


def test_totals_survive_sessions_collected_while_counting() -> None:
    """A session dropped meanwhile is folded by its finalizer, which can run in the very
    thread that is summing the live sessions (the collector runs it there, under the same
    re-entrant lock): the sum must not trip over the shrinking dict.  In the full suite it
    once killed the publishing thread.  Here the last reference to a session goes while
    another session's counters are read, the moment a collection could strike."""
    from sgcache_layers import stats as stats_module

    class Nowhere:
        shared = False
        authorities: list[Any] = []

    held: dict[str, Any] = {}

    class DropsAnother(stats_module.SessionStats):
        """Counters whose reading lets go of another session (as a collection would)."""

        @property  # type: ignore[override]
        def hits(self) -> Any:
            held.pop("victim", None)
            return self._hits

        @hits.setter
        def hits(self, value: Any) -> None:
            self._hits = value

    prefix = "test-collected-while-counting"
    kept = stats_module.FarmStats(stats_module.SessionStats(), prefix, Nowhere(), None)
    reader = stats_module.FarmStats(DropsAnother(), prefix, Nowhere(), None)
    counters = stats_module.SessionStats()
    counters.requests["find"] += 3
    held["victim"] = stats_module.FarmStats(counters, prefix, Nowhere(), None)
    space = stats_module._SPACES[prefix]
    assert len(space.live) == 3
    with stats_module._LOCK:
        total = space.total()
    assert total["requests"] == {"find": 3}  # counted once, while it went
    assert space.live.keys() == {kept.number, reader.number}
    assert space.total()["requests"] == {"find": 3}  # now with the closed ones
    kept.close()
    reader.close()
