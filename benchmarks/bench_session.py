"""Session look-up cost against the bare cache underneath it (issue 3 targets).

Two ratios, each measured in one run (medians of several rounds; the machine is
shared and noisy, so compare ratios, not absolute times):

* memory: ``session.get`` of an entity already in memory, against a bare
  ``MemoryCache.get`` of the same number of keys.  Target <= 5x.
* disk: in a fresh process, ``session.get`` of an entity that only the disk layer
  holds, against ``FileCache.get`` plus ``json.loads`` of the same records, also
  in a fresh process.  Target <= 2x (median of the per-round ratios; the two
  sides alternate which runs first).

Run: ``python benchmarks/bench_session.py [--scale 1.0] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

from sgcache_layers import FileCache, MemoryCache, SerialisedCache, Session
from sgcache_layers.testing import ShotgridServer


def cache_maker(path: str) -> Any:
    return lambda s: SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode)


def bench_memory(
    server: ShotgridServer, path: str, ids: list[int], rounds: int
) -> tuple[float, float, float]:
    """Seconds per look-up: session.get of entities in memory, and bare MemoryCache.get."""
    session = Session(server.client(), cache=cache_maker(path))
    session.get("Shot", ids)
    memory = MemoryCache()
    keys = [f"sgcl1|site|script=x|e|Shot|{i}" for i in ids]
    for key in keys:
        memory.set(key, {"code": key})
    repeat = max(1, 200_000 // len(ids))
    ours, bare, ratios = [], [], []
    get, mget = session.get, memory.get
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            for entity_id in ids:
                get("Shot", entity_id)
        ours.append((time.perf_counter() - start) / (repeat * len(ids)))
        start = time.perf_counter()
        for _ in range(repeat):
            for key in keys:
                mget(key)
        bare.append((time.perf_counter() - start) / (repeat * len(ids)))
        ratios.append(ours[-1] / bare[-1])
    assert session.stats.requests["find"] == 1, session.stats.as_dict()
    return statistics.median(ours), statistics.median(bare), statistics.median(ratios)


CHILD = textwrap.dedent(
    """
    import json, sys, time
    with open(sys.argv[1]) as handle:
        args = json.load(handle)
    if args["what"] == "session":
        import shotgun_api3
        from sgcache_layers import FileCache, SerialisedCache, Session
        sg = shotgun_api3.Shotgun(args["url"], args["script"], args["key"], connect=False)
        start = time.perf_counter()
        session = Session(sg, cache=lambda s: SerialisedCache(
            FileCache(args["path"]), encode=s.encode, decode=s.decode))
        opened = time.perf_counter()
        for entity_id in args["ids"]:
            entity = session.get("Shot", entity_id)
            assert entity is not None and entity.get("code")
        done = time.perf_counter()
        requests = session.stats.request_count
    else:
        from sgcache_layers import FileCache
        start = time.perf_counter()
        cache = FileCache(args["path"])
        opened = time.perf_counter()
        for key in args["keys"]:
            record = json.loads(cache.get(key))  # the same stored text the session reads
            assert record[1]["f"]["code"]
        done = time.perf_counter()
        requests = 0
    print(json.dumps({"open": opened - start, "per_get": (done - opened) / len(args["ids"]),
                      "requests": requests}))
    """
)


def child(args: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(args, handle)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, handle.name], capture_output=True, text=True
        )
    finally:
        os.unlink(handle.name)
    if out.returncode != 0:
        raise SystemExit(f"bench_session: the {args['what']} child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def bench_disk(
    server: ShotgridServer, path: str, ids: list[int], rounds: int
) -> tuple[float, float, float, int]:
    """Seconds per look-up in fresh processes: session.get from disk, FileCache.get + json.loads."""
    with Session(server.client(), cache=cache_maker(path)) as session:
        session.get("Shot", ids)
        keys = [session._answers.entity_key("Shot", i) for i in ids]
    common = {
        "url": server.url,
        "script": server.script_name,
        "key": server.api_key,
        "path": path,
        "ids": ids,
        "keys": keys,
    }
    ours, bare, ratios, requests = [], [], [], 0
    for index in range(rounds):
        # Alternate which side runs first so drift in machine load hits both.
        order = ("session", "baseline") if index % 2 == 0 else ("baseline", "session")
        got = {}
        for what in order:
            server.reset_requests()
            got[what] = child(dict(common, what=what))
            if what == "session":
                requests += got[what]["requests"] + server.request_count
        ours.append(got["session"]["per_get"])
        bare.append(got["baseline"]["per_get"])
        ratios.append(ours[-1] / bare[-1])
    return statistics.median(ours), statistics.median(bare), statistics.median(ratios), requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, ShotgridServer(scale=args.scale, seed=0) as server:
        ids = [row["id"] for row in server.client().find("Shot", [], [])]
        print(
            f"bench_session: {len(ids)} shots, {args.rounds} rounds, medians, "
            f"python {sys.version.split()[0]}"
        )
        ours, bare, ratio_mem = bench_memory(server, os.path.join(tmp, "mem"), ids, args.rounds)
        print(
            f"  memory: session.get {ours * 1e9:8.0f} ns   MemoryCache.get {bare * 1e9:8.0f} ns"
            f"   ratio {ratio_mem:5.2f}x  (target <= 5x)  {'PASS' if ratio_mem <= 5 else 'FAIL'}"
        )
        ours, bare, ratio_disk, requests = bench_disk(
            server, os.path.join(tmp, "disk"), ids, args.rounds
        )
        print(
            f"  disk (fresh process): session.get {ours * 1e6:8.1f} us   FileCache.get+json.loads "
            f"{bare * 1e6:8.1f} us   ratio {ratio_disk:5.2f}x  (target <= 2x)  "
            f"{'PASS' if ratio_disk <= 2 else 'FAIL'}"
        )
        print(f"  ShotGrid requests made by the fresh-process sessions: {requests}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
