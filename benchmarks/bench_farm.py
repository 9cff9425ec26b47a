"""A render farm on one Redis: N processes started together, each running the demo reads.

For N = 8 and 32 (``--procs``) and a single process for reference, the processes start
behind a barrier (each makes its client and Session, says it is ready, and waits for the
word), each a ``Session`` over one ``redis-server`` and the loopback ShotGrid server
answering every request after ~150 ms.  Each runs the demo's pipeline reads
(``sgcache_layers.demo.pipeline_reads``) after syncing with the event log, as a tool that
wants fresh data does (``sync_interval``: its first read syncs).  Per run:

* **cold**: Redis empty; **warm**: straight after, Redis holding what the cold run stored;
* ShotGrid requests seen by the server (all processes together, per process, and against
  one process's cold run: 1.0x is what cross-process fill leases aim at);
* event-log reads (``EventLogEntry`` requests; 0 once a live watcher is trusted);
* wall time per process, from the barrier to its last read (p50 and p95 over processes);
* Redis commands per process (``total_commands_processed`` before the processes start and
  after they exit, divided by N; it includes opening the session and connecting, and, with
  a watcher, the watcher's own commands meanwhile);
* the watcher's own ShotGrid requests meanwhile (it signs in as a script of its own).

Every figure is the median of ``--repeats`` runs.  When ``sgcache-layers watch`` exists
(``--watcher auto``, the default), the runs are made again with a watcher subprocess
following the event log (``python -m sgcache_layers watch --redis URL``).  Answers are
compared with plain ``shotgun_api3``'s: exit status 1 if any process read something else.

Run: ``python benchmarks/bench_farm.py [--procs 8 32] [--latency 0.15] [--repeats 3]
[--scale 0.25] [--watcher auto|on|off] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Optional

HERE = os.path.abspath(__file__)
API_KEY = "bench-farm-key"
#: The watcher signs in as a script of its own, so its requests are counted apart.
WATCHER_SCRIPT, WATCHER_KEY = "bench_farm_watcher", "bench-farm-watcher-key"
#: Seconds a child may take from start to its report.
CHILD_TIMEOUT = 600


# ------------------------------------------------------------------------------ children


def child_main() -> int:
    """One farm process: make the session, say ready, wait for the word, read, report."""
    import shotgun_api3

    from sgcache_layers import Session, demo

    target = json.loads(os.environ["BENCH_TARGET"])
    sg = shotgun_api3.shotgun.Shotgun(target["url"], target["script"], target["key"], connect=False)
    sg.config.timeout_secs = 120
    session = Session(sg, cache=target["redis"], sync_interval=300)
    goal = demo.Target(
        url=target["url"],
        script_name=target["script"],
        api_key=target["key"],
        project=target["project"],
        login=target["login"],
    )
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    started = time.perf_counter()
    raw = demo.pipeline_reads(session, goal, lambda step: None)
    seconds = time.perf_counter() - started
    digest = demo.digest(demo.normalise(raw))
    requests = dict(session.stats.requests)
    session.close()
    print(json.dumps({"seconds": seconds, "requests": requests, "digest": digest}), flush=True)
    return 0


# ------------------------------------------------------------------------------ the farm


def _commands(port: int) -> int:
    from sgcache_layers.testing.redis_server import redis_command

    info = redis_command("127.0.0.1", port, "INFO", "stats").decode()
    for line in info.splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("INFO has no total_commands_processed")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def run_farm(count: int, target: dict[str, Any], server: Any, redis_port: int) -> dict[str, Any]:
    """Start *count* processes behind a barrier, let them read, and measure."""
    env = dict(os.environ, BENCH_TARGET=json.dumps(target))
    before = _commands(redis_port)
    children = [
        subprocess.Popen(
            [sys.executable, HERE, "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(
                    f"a farm process failed to start: {child.stderr and child.stderr.read()}"
                )
        server.reset_requests()
        for child in children:  # the barrier: everyone goes now
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        reports = []
        for child in children:
            stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT)
            if child.returncode != 0:
                lines = stderr.strip().splitlines()
                raise RuntimeError(f"a farm process failed: {lines[-1:] or child.returncode}")
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    commands = _commands(redis_port) - before - 1  # less the INFO that read the first count
    seconds = [r["seconds"] for r in reports]
    seen = server.requests
    farm = [r for r in seen if r.identity != WATCHER_SCRIPT]
    return {
        "requests": len(farm),
        "event_log": sum(1 for r in farm if r.entity_type == "EventLogEntry"),
        "watcher": len(seen) - len(farm),
        "methods": dict(Counter(r.method for r in farm)),
        "p50": _percentile(seconds, 0.5),
        "p95": _percentile(seconds, 0.95),
        "redis_per_process": commands / count,
        "digests": sorted({r["digest"] for r in reports}),
        "session_requests": sum(sum(r["requests"].values()) for r in reports),
    }


def _empty_redis(redis: Any, watcher: Optional[subprocess.Popen[str]]) -> None:
    """Empty Redis; with a watcher, wait until its heartbeat is back (it syncs again)."""
    from sgcache_layers.testing.redis_server import redis_command

    redis.flush()
    if watcher is None:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = redis_command("127.0.0.1", redis.port, "KEYS", "*~site|watch")
        if found:
            return
        if watcher.poll() is not None:
            raise RuntimeError("the watcher exited")
        time.sleep(0.1)
    raise RuntimeError("the watcher wrote no heartbeat within 60 s")


def measure(
    counts: list[int],
    repeats: int,
    target: dict[str, Any],
    server: Any,
    redis: Any,
    watcher: Optional[subprocess.Popen[str]],
) -> list[dict[str, Any]]:
    """Cold and warm runs for each count, *repeats* times each; medians per figure."""
    rows = []
    for count in counts:
        runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
        for _ in range(repeats):
            _empty_redis(redis, watcher)
            runs["cold"].append(run_farm(count, target, server, redis.port))
            runs["warm"].append(run_farm(count, target, server, redis.port))
        for kind, measured in runs.items():
            row: dict[str, Any] = {"n": count, "run": kind}
            for name in ("requests", "event_log", "watcher", "p50", "p95", "redis_per_process"):
                row[name] = statistics.median(m[name] for m in measured)
            row["digests"] = sorted({d for m in measured for d in m["digests"]})
            row["spread"] = {name: [m[name] for m in measured] for name in ("requests", "p50")}
            rows.append(row)
    return rows


def start_watcher(target: dict[str, Any]) -> subprocess.Popen[str]:
    env = dict(os.environ, SG_URL=target["url"], SG_SCRIPT=WATCHER_SCRIPT, SG_API_KEY=WATCHER_KEY)
    command = [sys.executable, "-m", "sgcache_layers", "watch", "--redis", target["redis"]]
    return subprocess.Popen(
        [*command, "--interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def watch_exists() -> bool:
    """Whether this sgcache_layers has the ``watch`` subcommand (the farm's watcher)."""
    from sgcache_layers import cli

    return "watch" in cli.SUBCOMMANDS


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    single = next((r for r in rows if r["n"] == 1 and r["run"] == "cold"), None)
    base = single["requests"] if single else None
    print(title)
    print(
        f"{'N':>3} {'run':>5} {'SG reqs':>8} {'per proc':>9} {'vs 1 cold':>10} "
        f"{'event-log':>9} {'p50 s':>7} {'p95 s':>7} {'redis/proc':>11} {'watcher':>8}"
    )
    for r in rows:
        ratio = f"{r['requests'] / base:.2f}x" if base else "-"
        print(
            f"{r['n']:>3} {r['run']:>5} {r['requests']:>8.0f} {r['requests'] / r['n']:>9.1f} "
            f"{ratio:>10} {r['event_log']:>9.0f} {r['p50']:>7.2f} {r['p95']:>7.2f} "
            f"{r['redis_per_process']:>11.1f} {r['watcher']:>8.0f}"
        )
    by = {(r["n"], r["run"]): r for r in rows}
    for count in sorted({r["n"] for r in rows}):
        cold, warm = by[(count, "cold")], by[(count, "warm")]
        speed = cold["p50"] / warm["p50"] if warm["p50"] else float("inf")
        saved = 1 - warm["requests"] / cold["requests"] if cold["requests"] else 0.0
        print(
            f"N={count}: warm p50 is {speed:.1f}x faster than cold; warm asks ShotGrid "
            f"{saved:.0%} less than cold"
        )
    print()


def plain_digest(target: dict[str, Any]) -> str:
    """The demo reads' answers through plain ``shotgun_api3`` (what every process must read)."""
    import shotgun_api3

    from sgcache_layers import demo

    sg = shotgun_api3.shotgun.Shotgun(target["url"], target["script"], target["key"], connect=False)
    goal = demo.Target(
        target["url"], target["script"], target["key"], target["project"], target["login"]
    )
    digest = demo.digest(demo.normalise(demo.pipeline_reads(sg, goal, lambda step: None)))
    sg.close()
    return digest


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--watcher", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main()

    from sgcache_layers.testing import ShotgridServer
    from sgcache_layers.testing.redis_server import RedisServer

    if not RedisServer.available():
        print("bench_farm: redis-server is not installed", file=sys.stderr)
        return 2
    with_watcher = args.watcher == "on" or (args.watcher == "auto" and watch_exists())
    if args.watcher == "on" and not watch_exists():
        print("bench_farm: this sgcache_layers has no 'watch' subcommand", file=sys.stderr)
        return 2
    counts = [1] + [n for n in args.procs if n != 1]
    server = ShotgridServer(scale=args.scale, seed=0, api_key=API_KEY)
    server.add_script(WATCHER_SCRIPT, WATCHER_KEY)
    results: dict[str, Any] = {"latency": args.latency, "repeats": args.repeats}
    with server, RedisServer() as redis:
        sg: Any = server.client()
        project = sg.find(
            "Project", [], ["name"], order=[{"field_name": "id", "direction": "asc"}]
        )[0]
        user = sg.find(
            "HumanUser", [], ["login"], order=[{"field_name": "id", "direction": "asc"}]
        )[0]
        sg.close()
        target = {
            "url": server.url,
            "script": server.script_name,
            "key": API_KEY,
            "project": project["name"],
            "login": user["login"],
            "redis": redis.url,
        }
        truth = plain_digest(target)
        server.set_latency(args.latency)
        print(
            f"bench_farm: the demo's reads in N processes on one Redis, ShotGrid at "
            f"{args.latency * 1000:.0f} ms, scale {args.scale:g}, medians of {args.repeats} "
            f"runs\n"
        )
        modes: list[tuple[str, Optional[str]]] = [("no watcher", None)]
        if with_watcher:
            modes.append(("with a watcher (sgcache-layers watch --interval 1)", "watch"))
        elif args.watcher == "auto":
            print("(no 'sgcache-layers watch' in this version: runs without a watcher only)\n")
        ok = True
        for label, mode in modes:
            watcher = start_watcher(target) if mode == "watch" else None
            try:
                rows = measure(counts, args.repeats, target, server, redis, watcher)
            finally:
                if watcher is not None:
                    watcher.terminate()
                    watcher.wait(timeout=30)
            print_table(label, rows)
            for row in rows:
                if row["digests"] != [truth]:
                    ok = False
                    print(f"FAIL: N={row['n']} {row['run']}: answers differ from shotgun_api3's")
            results[label] = rows
        print(f"{'PASS' if ok else 'FAIL'}: every process read what shotgun_api3 reads")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
