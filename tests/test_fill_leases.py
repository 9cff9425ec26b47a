"""Fill leases across processes (issue 12, point 1): of many processes that miss the same
answer at once, one asks ShotGrid and the others use its answer.

Real processes behind a barrier, the real shotgun_api3 client over the loopback server (with
latency, so that they overlap as on a farm) and a real redis-server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import RedisCache, SerialisedCache, Session
from sgcache_layers.leases import FillLeases
from sgcache_layers.testing import ShotgridServer
from sgcache_layers.testing.server import lognormal_latency

# One farm process: waits for the go file, runs the demo's reads through a Session over
# Redis, prints what it read (a digest) and what it asked.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import shotgun_api3
    from sgcache_layers import Session
    from sgcache_layers.demo import Target, digest, normalise, pipeline_reads

    url, script, key, redis_url, project, login, go, sync = sys.argv[1:9]
    sg = shotgun_api3.Shotgun(url, script, key, connect=False)
    # "sync": a tool that wants fresh data; its first read syncs with the event log.
    session = Session(sg, cache=redis_url, sync_interval=300 if sync == "sync" else None)
    target = Target(url, script, key, project, login)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    raw = pipeline_reads(session, target, lambda step: None)
    session.close()
    print(json.dumps({
        "digest": digest(normalise(raw)),
        "asked": session.stats.request_count,
        "waited": session._answers.leases.waited,
    }), flush=True)
    """
)


@pytest.fixture
def farm_site(shotgrid_server_factory: Any) -> ShotgridServer:
    # ~60 ms a request: the processes' fills overlap, as on a farm at ~150 ms.
    latency = lognormal_latency(0.06, sigma=0.25, seed=1, maximum=0.2)
    return shotgrid_server_factory(scale=0.1, seed=2, latency=latency)  # type: ignore[no-any-return]


def _target(server: ShotgridServer) -> tuple[str, str]:
    project = server.store.find_one(
        "Project", [["id", "is", server.production["Project"][0]["id"]]], ["name"]
    )
    user = server.store.find_one(
        "HumanUser", [["id", "is", server.production["HumanUser"][0]["id"]]], ["login"]
    )
    assert project is not None and user is not None
    return str(project["name"]), str(user["login"])


def _farm(
    server: ShotgridServer, redis: str, count: int, go: Path, sync: bool = False
) -> list[dict[str, Any]]:
    project, login = _target(server)
    args = [server.url, server.script_name, server.api_key, redis, project, login, str(go)]
    args.append("sync" if sync else "-")
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for child in children:  # all started and waiting: the barrier
            assert child.stdout is not None
            line = child.stdout.readline()
            assert "ready" in line, child.stderr.read() if child.stderr else ""
        server.reset_requests()
        go.touch()
        results = []
        for child in children:
            out, err = child.communicate(timeout=180)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


def test_thirty_two_processes_cost_what_one_cold_run_costs(
    farm_site: ShotgridServer, redis_url: str, tmp_path: Path
) -> None:
    (alone,) = _farm(farm_site, redis_url + "?namespace=one", 1, tmp_path / "go-one")
    cold = farm_site.request_count
    assert cold > 0 and alone["asked"] > 0

    results = _farm(farm_site, redis_url + "?namespace=farm", 32, tmp_path / "go-farm")
    assert {r["digest"] for r in results} == {alone["digest"]}  # the same answers
    assert farm_site.request_count == cold  # and ShotGrid asked no more than for one run
    assert sum(r["waited"] for r in results) > 0


def test_processes_whose_first_read_syncs_cost_what_one_cold_run_costs(
    farm_site: ShotgridServer, redis_url: str, tmp_path: Path
) -> None:
    """The first sync on an empty Redis flushes the namespace under the waiting farm: the
    fills after it must still agree on one lease and one record per query."""
    (alone,) = _farm(farm_site, redis_url + "?namespace=one", 1, tmp_path / "go-one", True)
    cold = farm_site.request_count
    assert farm_site.count_requests(entity_type="EventLogEntry") == 1

    results = _farm(farm_site, redis_url + "?namespace=farm", 16, tmp_path / "go-farm", True)
    assert {r["digest"] for r in results} == {alone["digest"]}
    assert farm_site.request_count == cold, [(r.method, r.entity_type) for r in farm_site.requests]


def test_a_waiter_takes_over_from_a_holder_that_died(
    shotgrid_server: ShotgridServer, redis_url: str
) -> None:
    """A lease that is not renewed is taken over, within its deadline plus the bound."""
    url = redis_url + "?namespace=takeover"
    # A process takes the lease of the answer and is killed before it asks.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from sgcache_layers import Session
                import shotgun_api3
                sg = shotgun_api3.Shotgun({shotgrid_server.url!r}, {shotgrid_server.script_name!r},
                                          {shotgrid_server.api_key!r}, connect=False)
                session = Session(sg, cache={url!r})
                answers = session._answers
                answers.leases.seconds = 1.0  # renewed every 0.5 s while alive
                key = answers.data_key("q", "Shot", session._reads.plan(
                    ("Shot", [], ["code"], None, None, 0, False, 0, True, None))[0])
                def fill():
                    print("holding", flush=True)
                    time.sleep(600)
                answers.leases.run(key, fill, lambda: None)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with Session(shotgrid_server.client(), cache=url) as session:
            leases = session._answers.leases
            leases.seconds, leases.bound = 1.0, 0.5  # a short lease, for the test's sake
            expected = len(shotgrid_server.client().find("Shot", [], []))
            started = time.monotonic()
            before = shotgrid_server.count_requests("find", "Shot")
            rows = session.find("Shot", [], ["code"])
            waited = time.monotonic() - started
            assert len(rows) == expected
            assert shotgrid_server.count_requests("find", "Shot") == before + 1
            # The dead holder's lease (1 s, no longer renewed) expired and was taken over,
            # within its deadline plus the bound (and a margin for a busy machine).
            assert waited < 1.0 + 0.5 + 1.5
            assert leases.taken_over == 1
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_broken_shared_layer_means_no_lease(shotgrid_server: ShotgridServer) -> None:
    """Without a working shared layer every process asks, as without leases."""
    asked: list[int] = []
    leases = FillLeases(lambda: [_Broken()], writer=None)
    assert leases.run("k", lambda: asked.append(1) or "filled", lambda: None) == "filled"
    assert asked == [1]
    none = FillLeases(lambda: [], writer=None)
    assert none.run("k", lambda: "alone", lambda: None) == "alone"
    # A memory-only session takes no lease either.
    with Session(shotgrid_server.client()) as session:
        assert session._answers.leases.authorities() == []


class _Broken(SerialisedCache):
    def __init__(self) -> None:
        super().__init__(RedisCache("redis://127.0.0.1:9/0", socket_timeout=0.05))


def test_the_sites_capabilities_are_asked_for_once_per_cache(
    shotgrid_server_factory: Any, tmp_path: Path
) -> None:
    """``shotgun_api3`` asks ``info()`` before its first call in every process (and in each
    pooled copy made before); a session takes it from the cache like the schema."""
    server = shotgrid_server_factory(scale=0.3, seed=0)
    cache = str(tmp_path / "cache")
    with Session(server.client(), cache=cache) as first:
        first.find("Task", [], ["content"])  # several pages, asked for in parallel
    assert server.count_requests("info") == 1
    code = textwrap.dedent(
        f"""
        import shotgun_api3
        from sgcache_layers import Session
        sg = shotgun_api3.Shotgun({server.url!r}, {server.script_name!r}, {server.api_key!r},
                                  connect=False)
        with Session(sg, cache={cache!r}) as session:
            session.find("Shot", [], ["code"])  # a miss: one request, and no info()
            print(sg.server_caps.version)
        """
    )
    before = server.count_requests("find", "Shot")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert server.count_requests("find", "Shot") == before + 1
    assert server.count_requests("info") == 1
    assert done.stdout.strip().startswith("(")  # the capabilities it was given


def test_direct_mode_never_takes_an_answer_from_a_lease(
    shotgrid_server: ShotgridServer, redis_url: str
) -> None:
    url = redis_url + "?namespace=direct"
    shot = shotgrid_server.client().find_one("Shot", [], ["code"], order=[{"field_name": "id"}])
    with Session(shotgrid_server.client(), cache=url) as cached:
        cached.find("Shot", [["id", "is", shot["id"]]], ["code"])
        cached.drain()
    shotgrid_server.client().update("Shot", shot["id"], {"code": "CHANGED_UNSEEN"})
    with Session(shotgrid_server.client(), cache=url, mode="direct") as direct:
        rows = direct.find("Shot", [["id", "is", shot["id"]]], ["code"])
    assert rows[0]["code"] == "CHANGED_UNSEEN"
