"""Offline work: what a warm costs, and how fast new reads are answered from it (issue 14).

For the demo project at each scale (1 and 4 by default), on a loopback site that adds
about 150 ms to every answer (lognormal, like ``sgcache-layers demo``):

* **warm**: wall time, requests the site saw, bytes on disk (the cache directory) and in
  snapshot records, and an incremental warm of the unchanged project (one request);
* **new reads**: a fixed set of queries the session never asked before (filters with deep
  paths, order, paging, a filter preset, a summary), answered
  - *offline* from the snapshot, in a new session (its first read loads the snapshot from
    disk: reported apart),
  - *cached*: the same queries asked once in cached mode, then again in a new session
    (each answered from its stored record),
  - by plain ``shotgun_api3`` against the site.

Times are medians over ``--rounds`` rounds, with the spread seen (min-max) because the
machine is shared and noisy; compare the ratios, not the absolute times.

Run: ``python benchmarks/bench_offline.py [--scales 1 4] [--latency 0.15] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Callable

from sgcache_layers import Session
from sgcache_layers.testing.server import ShotgridServer, lognormal_latency

Query = tuple[str, tuple[Any, ...], dict[str, Any]]


def _disk_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, files in os.walk(path)
        for name in files
    )


def _record_bytes(path: str) -> int:
    """Bytes of the snapshot records (heads and chunks) as stored."""
    from sgcache_layers import FileCache

    cache = FileCache(path)
    try:
        keys = [k for k in cache.keys() if "|w|" in k or "|c|" in k]
        return sum(len(str(cache.get(k)).encode("utf-8")) for k in keys)
    finally:
        cache.close()


def queries(server: ShotgridServer, project: dict[str, Any]) -> list[Query]:
    """New reads of the project: what a tool asks, none of them asked before."""
    store = server.store
    link = {"type": "Project", "id": project["id"]}
    in_project: list[Any] = [["project", "is", link]]
    shots = store.find("Shot", in_project, ["code"], order=[{"field_name": "id"}])
    sequences = store.find("Sequence", in_project, ["code"], order=[{"field_name": "id"}])
    steps = store.find("Step", [], ["code"], order=[{"field_name": "id"}])
    users = store.find("HumanUser", [], ["login"], order=[{"field_name": "id"}])
    out: list[Query] = []
    for status in ("ip", "rdy", "wtg", "fin"):
        out.append(
            ("find", ("Shot", in_project + [["sg_status_list", "is", status]], ["code"]), {})
        )
    for step in steps:
        fields = ["content", "entity", "sg_status_list", "step.Step.code"]
        out.append(("find", ("Task", in_project + [["step", "is", step]], fields), {}))
    for sequence in sequences[:4]:
        deep = in_project + [["entity.Shot.sg_sequence", "is", sequence]]
        out.append(("find", ("Task", deep, ["content", "due_date"]), {}))
    for shot in shots[: 40 - len(out) - 6]:
        out.append(
            (
                "find",
                ("Version", in_project + [["entity", "is", shot]], ["code", "created_at"]),
                {"order": [{"field_name": "created_at", "direction": "desc"}], "limit": 1},
            )
        )
    latest = [{"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}]
    linked = in_project + [["entity", "is_not", None]]
    out.append(("find", ("Version", linked, ["code"]), {"additional_filter_presets": latest}))
    text = in_project + [
        ["content", "contains", "anim"],
        ["due_date", "greater_than", "2024-02-01"],
    ]
    out.append(("find", ("Task", text, ["content"]), {"order": [{"field_name": "due_date"}]}))
    out.append(("find", ("HumanUser", [["login", "is", users[0]["login"]]], ["name"]), {}))
    out.append(("find", ("Shot", in_project, ["code"]), {"limit": 25, "page": 2}))
    out.append(
        (
            "summarize",
            ("Task", in_project, [{"field": "id", "type": "count"}]),
            {"grouping": [{"field": "step", "type": "exact", "direction": "asc"}]},
        )
    )
    out.append(("find_one", ("Project", [["name", "is", project["name"]]], ["name"]), {}))
    return out


def _ask(target: Any, batch: Sequence[Query]) -> list[float]:
    """Seconds each query took on *target* (a Session or a Shotgun)."""
    times = []
    for method, args, kwargs in batch:
        start = time.perf_counter()
        getattr(target, method)(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return times


def _spread(values: Sequence[float], unit: float = 1e3) -> str:
    return (
        f"{statistics.median(values) * unit:.2f} "
        f"({min(values) * unit:.2f}-{max(values) * unit:.2f})"
    )


def bench_scale(scale: float, latency: float, rounds: int, plain_queries: int) -> dict[str, Any]:
    spec = lognormal_latency(latency, sigma=0.25, seed=0, maximum=latency * 4) if latency else None
    server = ShotgridServer(scale=scale, seed=0, latency=spec)
    project = server.store.find_one("Project", [], ["name"], order=[{"field_name": "id"}])
    assert project is not None
    result: dict[str, Any] = {"scale": scale}
    with server, tempfile.TemporaryDirectory(prefix="bench-offline-") as folder:
        warm_dir = os.path.join(folder, "warm")
        batch = queries(server, project)
        client = server.client()
        server.reset_requests()
        with Session(client, cache=warm_dir) as session:
            start = time.perf_counter()
            report = session.warm(project["name"], progress=False)
            result["warm_seconds"] = time.perf_counter() - start
            result["warm_requests"] = server.request_count
            result["rows"] = sum(report["rows"].values())
            server.reset_requests()
            start = time.perf_counter()
            session.warm(project["name"], progress=False)
            result["again_seconds"] = time.perf_counter() - start
            result["again_requests"] = server.request_count
        result["disk_bytes"] = _disk_bytes(warm_dir)
        result["record_bytes"] = _record_bytes(warm_dir)

        offline, loads = [], []
        for _ in range(rounds):
            server.reset_requests()
            with Session(server.client(connect=False), cache=warm_dir, mode="offline") as s:
                times = _ask(s, batch)
                assert s._snapshots.counts == {"answered": len(batch)}, s._snapshots.counts
            assert server.request_count == 0
            loads.append(times[0])
            offline.append(statistics.median(times[1:]))

        cached_dir = os.path.join(folder, "cached")
        with Session(server.client(), cache=cached_dir) as session:
            _ask(session, batch)  # asked once: every answer is stored
            session.drain()
        cached = []
        for _ in range(rounds):
            server.reset_requests()
            with Session(server.client(connect=False), cache=cached_dir) as s:
                cached.append(statistics.median(_ask(s, batch)))
            assert server.request_count == 0

        plain = _ask(client, batch[:plain_queries])
        result.update(offline=offline, loads=loads, cached=cached, plain=plain)
        result["queries"] = len(batch)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--latency", type=float, default=0.15, help="median seconds per answer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plain-queries", type=int, default=12, help="queries asked plainly")
    args = parser.parse_args(argv)
    say: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    say(f"bench_offline: latency {args.latency * 1e3:.0f} ms median, {args.rounds} rounds")
    for scale in args.scales:
        r = bench_scale(scale, args.latency, args.rounds, args.plain_queries)
        say("")
        say(f"scale {scale:g}: {r['rows']} rows warmed")
        say(
            f"  warm:               {r['warm_seconds']:.2f} s, {r['warm_requests']} requests, "
            f"{r['disk_bytes'] / 2**20:.1f} MiB on disk "
            f"({r['record_bytes'] / 2**20:.1f} MiB of snapshot records)"
        )
        say(
            f"  warm again:         {r['again_seconds'] * 1e3:.0f} ms, "
            f"{r['again_requests']} request(s) (unchanged project)"
        )
        say(f"  new reads ({r['queries']} queries), ms per read, median (min-max of rounds):")
        say(f"    offline:          {_spread(r['offline'])}")
        say(f"    first offline read (loads the snapshot): {_spread(r['loads'])}")
        say(f"    cached (stored):  {_spread(r['cached'])}")
        say(
            f"    plain shotgun_api3: {_spread(r['plain'])} "
            f"(min-max of {len(r['plain'])} reads, once each)"
        )
        ratio = statistics.median(r["plain"]) / statistics.median(r["offline"])
        say(f"    offline is {ratio:.0f}x faster than plain shotgun_api3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
