"""Benchmark the storage layer against a plain dict, raw diskcache and ftrack_api.cache.

Run ``python benchmarks/bench_cache.py [--keys 10000] [--repeat 5] [--json PATH]``.
Every figure is the median of ``--repeat`` trials, each the best of a few
passes, with the compared implementations interleaved trial by trial (the
machine is shared and noisy).  Targets print as PASS/FAIL; the script always
exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from sgcache_layers.cache import LayeredCache, MemoryCache, SerialisedCache
from sgcache_layers.file import FileCache
from sgcache_layers.keys import ObjectKeyMaker

try:
    import ftrack_api.cache as ftrack_cache
except ImportError:  # pragma: no cover - the bench extra is not installed
    ftrack_cache = None

try:
    import diskcache
except ImportError:  # pragma: no cover - a core dependency
    diskcache = None

FIND_ARGS: tuple[Any, ...] = (
    "Shot",
    [["project", "is", {"type": "Project", "id": 1}], ["sg_status_list", "in", ["ip", "rev"]]],
    ["code", "sg_status_list", "sg_sequence"],
    [{"field_name": "code", "direction": "asc"}],
)

Pass = Callable[[], None]
ROUNDS = 5  # in-memory passes go over the keys this many times, to time more than a blink


# -- data ----------------------------------------------------------------------


def shot(entity_id: int, rng: random.Random) -> dict[str, Any]:
    """A ShotGrid-like Shot record of about 500 bytes of JSON."""
    created = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        minutes=entity_id
    )
    sequence = entity_id // 50 + 1
    return {
        "type": "Shot",
        "id": entity_id,
        "code": f"SEQ{sequence:03d}_SH{entity_id % 1000:04d}",
        "description": "Hero walks into frame, looks at the camera and delivers the line. "
        + "x" * rng.randint(40, 90),
        "sg_status_list": rng.choice(["wtg", "rdy", "ip", "rev", "fin"]),
        "sg_cut_in": 1001,
        "sg_cut_out": 1001 + rng.randint(24, 240),
        "project": {"type": "Project", "id": 70, "name": "Big Buck Bunny"},
        "sg_sequence": {"type": "Sequence", "id": sequence, "name": f"SEQ{sequence:03d}"},
        "created_at": created.isoformat(),
        "updated_at": (created + datetime.timedelta(days=3)).isoformat(),
        "tags": [{"type": "Tag", "id": 5, "name": "vfx"}],
    }


# -- timing --------------------------------------------------------------------


def compare(
    contenders: dict[str, tuple[Pass, int]],
    repeat: int,
    passes: int = 3,
    setup: Optional[Callable[[str], None]] = None,
) -> dict[str, float]:
    """Time each contender ``(pass, ops per pass)``; return the median ops/s of each.

    Each of *repeat* trials runs the contenders' passes interleaved (A B A B
    ...) and keeps each one's fastest pass, so a burst of load from other
    work on the machine hits all of them alike; the order flips every trial.
    *setup* (if given) is called with the contender's name before each pass.
    """
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for trial in range(repeat):
        order = names if trial % 2 == 0 else names[::-1]
        best = dict.fromkeys(names, float("inf"))
        for _ in range(passes):
            for name in order:
                function = contenders[name][0]
                if setup is not None:
                    setup(name)
                gc.collect()
                gc.disable()
                try:
                    start = time.perf_counter()
                    function()
                    elapsed = time.perf_counter() - start
                finally:
                    gc.enable()
                best[name] = min(best[name], elapsed)
        for name in names:
            rates[name].append(contenders[name][1] / best[name])
    return {name: statistics.median(values) for name, values in rates.items()}


def rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k/s"
    return f"{value:.1f}/s"


class Report:
    """Collect measurements and targets, print them, and write JSON."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []

    def measured(self, group: str, name: str, ops_per_s: float, note: str = "") -> None:
        self.rows.append({"group": group, "name": name, "ops_per_s": ops_per_s, "note": note})
        print(f"  {group:<26} {name:<46} {rate(ops_per_s):>11}  {note}")

    def target(self, name: str, value: float, goal: float, higher_is_better: bool = True) -> None:
        passed = value >= goal if higher_is_better else value <= goal
        sign = ">=" if higher_is_better else "<="
        self.targets.append(
            {
                "name": name,
                "value": round(value, 3),
                "goal": f"{sign} {goal}",
                "status": "PASS" if passed else "FAIL",
            }
        )

    def skip(self, name: str, reason: str) -> None:
        self.targets.append({"name": name, "value": None, "goal": reason, "status": "SKIP"})

    def summary(self) -> None:
        print("\nSummary")
        print(f"  {'target':<62} {'value':>9}  {'goal':<8} result")
        for target in self.targets:
            value = "-" if target["value"] is None else f"{target['value']:.2f}"
            print(f"  {target['name']:<62} {value:>9}  {target['goal']:<8} {target['status']}")


# -- benchmarks ------------------------------------------------------------------


def bench_memory(report: Report, keys: list[str], values: list[Any], repeat: int) -> None:
    items = list(zip(keys, values))
    keys = keys * ROUNDS  # each pass goes over the keys ROUNDS times
    items_looped = items * ROUNDS
    count = len(keys)
    plain: dict[str, Any] = {}
    ours = MemoryCache()
    theirs = ftrack_cache.MemoryCache() if ftrack_cache else None

    def dict_set() -> None:
        for key, value in items_looped:
            plain[key] = value

    def dict_get() -> None:
        for key in keys:
            plain[key]

    def our_set() -> None:
        cache_set = ours.set
        for key, value in items_looped:
            cache_set(key, value)

    def our_get() -> None:
        cache_get = ours.get
        for key in keys:
            cache_get(key)

    contenders_set: dict[str, tuple[Pass, int]] = {
        "dict": (dict_set, count),
        "ours": (our_set, count),
    }
    contenders_get: dict[str, tuple[Pass, int]] = {
        "dict": (dict_get, count),
        "ours": (our_get, count),
    }
    if theirs is not None:

        def their_set() -> None:
            cache_set = theirs.set
            for key, value in items_looped:
                cache_set(key, value)

        def their_get() -> None:
            cache_get = theirs.get
            for key in keys:
                cache_get(key)

        contenders_set["ftrack"] = (their_set, count)
        contenders_get["ftrack"] = (their_get, count)

    print("\nMemoryCache (unbounded)")
    for operation, contenders in (("set", contenders_set), ("get", contenders_get)):
        result = compare(contenders, repeat, passes=7)
        report.measured(f"memory {operation}", "dict", result["dict"])
        report.measured(f"memory {operation}", "sgcache_layers MemoryCache", result["ours"])
        if "ftrack" in result:
            report.measured(f"memory {operation}", "ftrack_api.cache.MemoryCache", result["ftrack"])
            report.target(
                f"MemoryCache.{operation} vs ftrack (x faster)",
                result["ours"] / result["ftrack"],
                0.9,
            )
        else:
            report.skip(f"MemoryCache.{operation} vs ftrack (x faster)", "no ftrack")

    bounded = MemoryCache(max_entries=len(items))

    def bounded_set() -> None:
        for key, value in items_looped:
            bounded.set(key, value)

    def bounded_get() -> None:
        for key in keys:
            bounded.get(key)

    bounded_set()
    result = compare({"set": (bounded_set, count), "get": (bounded_get, count)}, repeat)
    report.measured("memory (LRU) set", "MemoryCache(max_entries=N)", result["set"])
    report.measured("memory (LRU) get", "MemoryCache(max_entries=N)", result["get"])


def bench_layered_warm(report: Report, keys: list[str], values: list[Any], repeat: int) -> None:
    ours = LayeredCache([MemoryCache(), MemoryCache()])
    for key, value in zip(keys, values):
        ours.set(key, value)
    theirs_items = list(zip(keys, values))
    keys = keys * ROUNDS
    count = len(keys)

    def our_get() -> None:
        cache_get = ours.get
        for key in keys:
            cache_get(key)

    contenders: dict[str, tuple[Pass, int]] = {"ours": (our_get, count)}
    if ftrack_cache is not None:
        theirs = ftrack_cache.LayeredCache([ftrack_cache.MemoryCache(), ftrack_cache.MemoryCache()])
        for key, value in theirs_items:
            theirs.set(key, value)

        def their_get() -> None:
            cache_get = theirs.get
            for key in keys:
                cache_get(key)

        contenders["ftrack"] = (their_get, count)

    print("\nLayeredCache warm get (hit in the memory layer)")
    result = compare(contenders, repeat, passes=7)
    report.measured("layered warm get", "sgcache_layers LayeredCache", result["ours"])
    if "ftrack" in result:
        report.measured("layered warm get", "ftrack_api.cache.LayeredCache", result["ftrack"])
        report.target(
            "LayeredCache warm get vs ftrack (x faster)", result["ours"] / result["ftrack"], 0.9
        )
    else:
        report.skip("LayeredCache warm get vs ftrack (x faster)", "no ftrack")


def bench_disk(
    report: Report, workdir: str, keys: list[str], values: list[Any], repeat: int
) -> None:
    count = len(keys)
    encoded = [json.dumps(value) for value in values]
    ours_disk = SerialisedCache(FileCache(os.path.join(workdir, "ours")), json.dumps, json.loads)
    raw = diskcache.Cache(os.path.join(workdir, "raw"))
    items = list(zip(keys, values))

    def raw_set() -> None:
        dumps = json.dumps
        for key, value in items:
            raw.set(key, dumps(value))

    def our_set() -> None:
        for key, value in items:
            ours_disk.set(key, value)

    def raw_get() -> None:
        loads = json.loads
        for key in keys:
            loads(raw.get(key))

    def our_get() -> None:
        for key in keys:
            ours_disk.get(key)

    def our_get_many() -> None:
        ours_disk.get_many(keys)

    print(f"\nDisk: SerialisedCache(FileCache, json) vs raw diskcache + json, {count} keys")
    sets = compare({"raw": (raw_set, count), "ours": (our_set, count)}, repeat, passes=2)
    gets = compare(
        {"raw": (raw_get, count), "ours": (our_get, count), "ours get_many": (our_get_many, count)},
        repeat,
        passes=3,
    )
    report.measured("disk set", "diskcache.Cache.set + json.dumps", sets["raw"])
    report.measured("disk set", "SerialisedCache(FileCache).set", sets["ours"])
    report.measured("disk get", "json.loads(diskcache.Cache.get)", gets["raw"])
    report.measured("disk get", "SerialisedCache(FileCache).get", gets["ours"])
    report.measured("disk get", "SerialisedCache(FileCache).get_many", gets["ours get_many"])
    report.target(
        "disk set time vs raw diskcache+json (x slower)", sets["raw"] / sets["ours"], 1.3, False
    )
    report.target(
        "disk get time vs raw diskcache+json (x slower)", gets["raw"] / gets["ours"], 1.3, False
    )

    # Cold get through the whole stack: memory misses, every value from disk.
    cold_count = min(count, 1000)
    cold_keys = keys[:cold_count]
    cold_dir = os.path.join(workdir, "cold")
    cold_disk = SerialisedCache(FileCache(os.path.join(cold_dir, "ours")), json.dumps, json.loads)
    cold_disk.set_many(dict(zip(cold_keys, values[:cold_count])))
    layered: list[LayeredCache] = []

    def fresh_ours(name: str) -> None:
        layered[:] = [LayeredCache([MemoryCache(), cold_disk])]

    def our_cold() -> None:
        cache_get = layered[0].get
        for key in cold_keys:
            cache_get(key)

    contenders: dict[str, tuple[Pass, int]] = {"ours": (our_cold, cold_count)}
    sample = cold_keys
    if ftrack_cache is not None:
        import dbm.dumb

        dbm_path = os.path.join(cold_dir, "ftrack.dbm")
        with dbm.dumb.open(dbm_path, "c") as database:  # fill it in one go
            for key, text in zip(cold_keys, encoded[:cold_count]):
                database[key.encode("ascii")] = text
        their_disk = ftrack_cache.SerialisedCache(
            ftrack_cache.FileCache(dbm_path), json.dumps, json.loads
        )
        # ftrack reopens its dbm file on every call, so time a sample of the keys.
        sample = random.Random(1).sample(cold_keys, min(150, cold_count))
        their_layered: list[Any] = []

        def their_cold() -> None:
            cache_get = their_layered[0].get
            for key in sample:
                cache_get(key)

        contenders["ftrack"] = (their_cold, len(sample))

        def setup(name: str) -> None:
            if name == "ours":
                fresh_ours(name)
            else:
                layers = [ftrack_cache.MemoryCache(), their_disk]
                their_layered[:] = [ftrack_cache.LayeredCache(layers)]

    else:
        setup = fresh_ours
    print(
        "\nLayeredCache([MemoryCache(), SerialisedCache(FileCache, json)]) cold get, "
        f"{cold_count} keys"
    )
    result = compare(contenders, max(3, repeat), passes=1, setup=setup)
    report.measured("layered cold get", "sgcache_layers (diskcache)", result["ours"])
    if "ftrack" in result:
        report.measured(
            "layered cold get",
            "ftrack_api.cache (dbm)",
            result["ftrack"],
            f"({len(sample)} keys timed)",
        )
        report.target(
            f"LayeredCache cold get vs ftrack at {cold_count} keys (x faster)",
            result["ours"] / result["ftrack"],
            100,
        )
    else:
        report.skip("LayeredCache cold get vs ftrack (x faster)", "no ftrack")
    raw.close()


def bench_keys(report: Report, repeat: int) -> None:
    calls = 3000
    ours = ObjectKeyMaker()

    def our_keys() -> None:
        make = ours.key
        for _ in range(calls):
            make(*FIND_ARGS)

    contenders: dict[str, tuple[Pass, int]] = {"ours": (our_keys, calls)}
    if ftrack_cache is not None:
        theirs = ftrack_cache.ObjectKeyMaker()

        def their_keys() -> None:
            make = theirs.key
            for _ in range(calls):
                make(*FIND_ARGS)

        contenders["ftrack"] = (their_keys, calls)
    print("\nObjectKeyMaker.key(*find_args)")
    result = compare(contenders, repeat)
    report.measured("key maker", "sgcache_layers ObjectKeyMaker", result["ours"])
    if "ftrack" in result:
        report.measured("key maker", "ftrack_api.cache.ObjectKeyMaker", result["ftrack"])
        report.target(
            "ObjectKeyMaker.key vs ftrack (x faster)", result["ours"] / result["ftrack"], 2
        )
    else:
        report.skip("ObjectKeyMaker.key vs ftrack (x faster)", "no ftrack")


def bench_redis(report: Report, values: list[Any], repeat: int) -> None:
    name = "RedisCache.get_many(100) per key vs 100 gets (x faster)"
    try:
        from sgcache_layers.redis import RedisCache
        from sgcache_layers.testing.redis_server import RedisServer
    except ImportError as exc:  # pragma: no cover
        report.skip(name, f"SKIP: {exc}")
        return
    if not RedisServer.available():
        print("\nRedis: SKIP (redis-server is not installed)")
        report.skip(name, "SKIP")
        return
    try:
        import redis  # noqa: F401
    except ImportError:
        print("\nRedis: SKIP (the redis package is not installed)")
        report.skip(name, "SKIP")
        return
    with RedisServer() as server:
        cache = SerialisedCache(RedisCache(server.url), json.dumps, json.loads)
        batch = [f"sg:e:Shot:{index}" for index in range(100)]
        cache.set_many(dict(zip(batch, values)))
        rounds = 20

        def singles() -> None:
            for _ in range(rounds):
                for key in batch:
                    cache.get(key)

        def many() -> None:
            for _ in range(rounds):
                cache.get_many(batch)

        print("\nRedisCache (private redis-server on loopback)")
        result = compare(
            {"get": (singles, rounds * len(batch)), "get_many": (many, rounds * len(batch))}, repeat
        )
        report.measured("redis get", "100 x RedisCache.get", result["get"])
        report.measured("redis get", "RedisCache.get_many(100 keys)", result["get_many"])
        report.target(name, result["get_many"] / result["get"], 4)
        cache.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000, help="number of keys (default 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="trials per figure (default 5)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    rng = random.Random(42)
    keys = [f"sg:e:Shot:{1000 + index}" for index in range(args.keys)]
    values = [shot(1000 + index, rng) for index in range(args.keys)]
    size = statistics.mean(len(json.dumps(value)) for value in values[:200])
    print(
        f"bench_cache: {args.keys} keys, values ~{size:.0f} bytes of JSON, median of "
        f"{args.repeat} trials; Python {sys.version.split()[0]}"
    )
    if ftrack_cache is None:
        print("ftrack_api is not installed: the ftrack comparisons are skipped")

    report = Report()
    workdir = tempfile.mkdtemp(prefix="sgcache-bench-")
    try:
        bench_memory(report, keys, values, args.repeat)
        bench_layered_warm(report, keys, values, args.repeat)
        bench_disk(report, workdir, keys, values, args.repeat)
        bench_keys(report, args.repeat)
        bench_redis(report, values, args.repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.summary()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as output:
            json.dump(
                {
                    "keys": args.keys,
                    "repeat": args.repeat,
                    "python": sys.version.split()[0],
                    "measurements": report.rows,
                    "targets": report.targets,
                },
                output,
                indent=2,
            )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
