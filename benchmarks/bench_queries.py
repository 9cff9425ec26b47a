"""Query caching on the demo workload, over the loopback server with ShotGrid-like latency.

One run, printed side by side (issue 5 targets):

1. plain ``shotgun_api3``: the demo's pipeline reads, requests and wall time;
2. a Session over a FileCache, cold (fills the cache);
3. a new Session on the same cache, warm: must make 0 requests; wall-time ratio to 1;
4. another client changes one shot; ``sync()`` runs; the warm session re-runs the reads:
   the re-issued requests must be only those of the queries that depend on Shot.

Run: ``python benchmarks/bench_queries.py [--latency 0.15] [--scale 1.0] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from typing import Any

from sgcache_layers import FileCache, SerialisedCache, Session
from sgcache_layers.demo import Target, pipeline_reads
from sgcache_layers.testing import ShotgridServer


def no_tick(step: str) -> None:
    """Progress callback the reads expect; the benchmark prints its own lines."""


def session_on(server: ShotgridServer, path: str) -> Session:
    def cache_maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(path), encode=session.encode, decode=session.decode)

    return Session(server.client(connect=False), cache=cache_maker)


def timed(sg: Any, target: Target) -> float:
    start = time.perf_counter()
    pipeline_reads(sg, target, no_tick)
    return time.perf_counter() - start


def requests_by_type(server: ShotgridServer) -> Counter[str]:
    return Counter(str(r.entity_type) for r in server.requests if r.entity_type != "EventLogEntry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, ShotgridServer(scale=args.scale, seed=0) as server:
        setup: Any = server.client()
        project = setup.find("Project", [], ["name"], order=[{"field_name": "id"}])[0]
        user = setup.find_one("HumanUser", [], ["login"], order=[{"field_name": "id"}])
        target = Target(
            server.url, server.script_name, server.api_key, project["name"], user["login"]
        )
        server.latency = args.latency
        print(
            f"bench_queries: demo reads, scale {args.scale}, "
            f"{args.latency * 1000:.0f} ms a request, {args.rounds} rounds (medians)"
        )

        plain_times, plain_requests = [], 0
        for _ in range(args.rounds):
            server.reset_requests()
            plain_times.append(timed(server.client(connect=False), target))
            plain_requests = server.request_count
        plain = statistics.median(plain_times)

        cold = session_on(server, tmp)
        cold.sync()  # remember the event-log position (the first sync starts a clean namespace)
        server.reset_requests()
        cold_time = timed(cold, target)
        cold_requests = server.request_count
        cold.close()

        warm_times, warm_requests = [], []
        for _ in range(args.rounds):
            warm = session_on(server, tmp)
            server.reset_requests()
            warm_times.append(timed(warm, target))
            warm_requests.append(server.request_count)
            warm.close()
        warm_time = statistics.median(warm_times)

        print(f"  {'run':44s} {'requests':>8s} {'wall time':>10s} {'vs plain':>9s}")
        print(f"  {'plain shotgun_api3':44s} {plain_requests:8d} {plain:9.3f}s {1.0:8.1f}x")
        print(
            f"  {'Session + FileCache, cold':44s} {cold_requests:8d} {cold_time:9.3f}s "
            f"{plain / cold_time:8.1f}x"
        )
        print(
            f"  {'Session + FileCache, warm (new session)':44s} {max(warm_requests):8d} "
            f"{warm_time:9.3f}s {plain / warm_time:8.1f}x"
        )

        # Another client changes one shot; the long-lived session syncs and reads again.
        session = session_on(server, tmp)
        pipeline_reads(session, target, no_tick)
        shot = setup.find_one("Shot", [["project", "is", project]], ["code"])
        setup.update("Shot", shot["id"], {"code": shot["code"] + "_v2"})
        server.reset_requests()
        events = session.sync()
        sync_requests = server.request_count
        server.reset_requests()
        start = time.perf_counter()
        raw = pipeline_reads(session, target, no_tick)
        after_time = time.perf_counter() - start
        reissued = requests_by_type(server)
        changed = [s for s in raw["shots"][0] if s["id"] == shot["id"]]
        session.close()

        # Which of the reads depend on Shot: every read whose answer holds Shot data.
        server.reset_requests()
        pipeline_reads(server.client(connect=False), target, no_tick)
        uncached = requests_by_type(server)
        dependent = {"Shot", "Task", "Version"}  # shots; tasks and versions link to shots
        expected = sum(n for t, n in uncached.items() if t in dependent)

        print(
            f"  after one shot changed: sync read {events} event(s) in {sync_requests} request(s); "
            f"re-issued {sum(reissued.values())} request(s) {dict(sorted(reissued.items()))} "
            f"in {after_time:.3f}s"
        )
        print(
            f"  requests of the queries that depend on Shot (uncached): {expected} "
            f"{ {t: n for t, n in sorted(uncached.items()) if t in dependent} }"
        )
        ok_warm = max(warm_requests) == 0
        ok_reissue = set(reissued) <= dependent and sum(reissued.values()) == expected
        ok_value = bool(changed) and changed[0]["code"].endswith("_v2")
        print(f"  warm session made 0 requests: {'PASS' if ok_warm else 'FAIL'}")
        print(
            "  re-issued only the queries depending on Shot, and saw the change: "
            f"{'PASS' if ok_reissue and ok_value else 'FAIL'}"
        )
        print(f"  wall-time ratio plain / warm: {plain / warm_time:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
