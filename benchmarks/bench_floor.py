"""The Session against the floor of the machine, on the demo workload (issue 9 targets).

For each scale (0.25, 1 and 4 by default), with the loopback ShotGrid server in its own
process answering every request after ~150 ms, one run measures side by side:

* **plain**: ``shotgun_api3`` running the demo's pipeline reads;
* **floor, cold**: ``shotgun_api3`` fetching each answer's page 1, then its pages 2..n all
  at once on other clients (connected before the clock starts), told the row count in
  advance: the least a cold run can take without asking for a page before page 1 says it
  exists;
* **floor, new process**: the same answers read back as one raw diskcache blob per query,
  decoded with ``orjson`` into plain dicts (what any cache must at least do);
* **floor, same process**: a dict look-up of each answer list (key built from the call's
  ``repr``), returning a new list of the same rows;
* **ours**: a ``Session`` over a ``FileCache``, cold (empty cache), warm in the same
  process, and warm in a new process.

New-process figures are timed inside the child, from before the cache is opened to after
the last read (interpreter start-up is not counted).  Every figure is the median of
``--repeats`` runs.  The floors and ours are run in pairs, one right after the other, so
that both sides of a ratio see the same moment of a shared, noisy machine; a new-process
or same-process ratio is the median of the pairs' ratios.  Targets (exit status 1 if one
is missed):

* warm new process <= 2.5x the floor at every scale, and its cost per row does not grow
  with the production (largest scale's per-row cost <= 1.5x the smallest's);
* warm same process <= 3x the dict look-up floor;
* cold <= 0.85x plain, with the same answers (the cold floor's ratio to plain is printed
  beside it: where no answer has more than two pages it is near 1.0x, and the target is
  below what any cache can do without speculative requests);
* bytes on disk <= 1.5x the floor's.

Run: ``python benchmarks/bench_floor.py [--scales 0.25 1 4] [--latency 0.15] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import diskcache
import orjson

HERE = os.path.abspath(__file__)
READS = ("project", "sequences", "shots", "steps", "tasks", "versions", "user", "script")


# --------------------------------------------------------------------------- the workload


def calls(
    target: dict[str, Any], project_id: int
) -> list[tuple[str, str, tuple[Any, ...], dict[str, Any]]]:
    """The demo's reads as ``(name, method, args, kwargs)``, same as ``demo.pipeline_reads``."""
    from sgcache_layers import demo

    in_project = [["project", "is", {"type": "Project", "id": project_id}]]
    return [
        (
            "project",
            "find_one",
            ("Project", [["name", "is", target["project"]]], demo._PROJECT_FIELDS),
            {},
        ),
        ("sequences", "find", ("Sequence", in_project, demo._SEQUENCE_FIELDS), {}),
        ("shots", "find", ("Shot", in_project, demo._SHOT_FIELDS), {}),
        ("steps", "find", ("Step", [], demo._STEP_FIELDS), {}),
        ("tasks", "find", ("Task", in_project, demo._TASK_FIELDS), {}),
        (
            "versions",
            "find",
            ("Version", in_project, demo._VERSION_FIELDS),
            {"order": [{"field_name": "created_at", "direction": "desc"}]},
        ),
        (
            "user",
            "find_one",
            ("HumanUser", [["login", "is", target["login"]]], demo._USER_FIELDS),
            {},
        ),
        (
            "script",
            "find_one",
            ("ApiUser", [["firstname", "is", target["script"]]], demo._SCRIPT_FIELDS),
            {},
        ),
    ]


def run_reads(
    sg: Any, target: dict[str, Any], planned: Optional[list[Any]] = None
) -> dict[str, list[Any]]:
    """Run the reads through *sg* (a Shotgun or a Session); answers by name."""
    out: dict[str, list[Any]] = {}
    for name, method, args, kwargs in planned or calls(target, target["project_id"]):
        found = getattr(sg, method)(*args, **kwargs)
        out[name] = found if isinstance(found, list) else ([found] if found is not None else [])
    return out


def digest(answers: dict[str, list[Any]]) -> str:
    """Answers compared as ``shotgun_api3`` gives them: rows in order, requested fields only."""
    from sgcache_layers import demo

    fields = {
        name: spec[2][2]
        for name, spec in zip(READS, calls({"project": "", "login": "", "script": ""}, 0))
    }
    normal = {
        name: [
            [r["type"], r["id"]] + [demo._norm(dict.get(r, f)) for f in fields[name]] for r in rows
        ]
        for name, rows in answers.items()
    }
    return demo.digest(normal)


def run_paged_floor(
    sg: Any, pool: list[Any], target: dict[str, Any], counts: dict[str, int]
) -> dict[str, list[Any]]:
    """The cold floor: each ``find`` as page 1 on *sg*, then pages 2..n together on the
    clients of *pool* (one page at a time each), the row count (*counts*, from a plain run)
    known in advance."""
    out: dict[str, list[Any]] = {}
    per_page = sg.config.records_per_page
    idle: queue.Queue[Any] = queue.Queue()
    for client in pool:
        idle.put(client)

    def one_page(args: tuple[Any, ...], kwargs: dict[str, Any], page: int) -> list[Any]:
        client = idle.get()
        try:
            return client.find(*args, page=page, **kwargs)  # type: ignore[no-any-return]
        finally:
            idle.put(client)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(pool)) as threads:
        for name, method, args, kwargs in calls(target, target["project_id"]):
            if method != "find":
                found = getattr(sg, method)(*args, **kwargs)
                out[name] = [found] if found is not None else []
                continue
            rows = sg.find(*args, page=1, **kwargs)
            pages = -(-counts[name] // per_page)
            rest = threads.map(functools.partial(one_page, args, kwargs), range(2, pages + 1))
            for more in rest:
                rows.extend(more)
            out[name] = rows
    return out


def row_count(answers: dict[str, list[Any]]) -> int:
    return sum(len(rows) for rows in answers.values())


# ------------------------------------------------------------------------------ children


def _client(target: dict[str, Any]) -> Any:
    from shotgun_api3.shotgun import Shotgun

    sg = Shotgun(target["url"], target["script"], target["key"], connect=False)
    sg.config.timeout_secs = 120
    return sg


def child_ours(target: dict[str, Any], path: str) -> dict[str, Any]:
    import shotgun_api3  # noqa: F401 - imports are not what is measured

    from sgcache_layers import FileCache, SerialisedCache, Session

    planned = calls(target, target["project_id"])  # the harness's own work, not timed
    start = time.perf_counter()
    sg = _client(target)
    session = Session(
        sg,
        cache=lambda s: SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode),
    )
    answers = run_reads(session, target, planned)
    seconds = time.perf_counter() - start
    requests = session.stats.request_count
    session.close()
    return {
        "seconds": seconds,
        "requests": requests,
        "digest": digest(answers),
        "rows": row_count(answers),
    }


def child_floor(target: dict[str, Any], path: str) -> dict[str, Any]:
    start = time.perf_counter()
    cache = diskcache.Cache(path)
    rows = 0
    for name in READS:
        blob = cache.get(name)
        rows += len(orjson.loads(blob))
    seconds = time.perf_counter() - start
    cache.close()
    return {"seconds": seconds, "rows": rows}


def in_child(kind: str, target: dict[str, Any], path: str) -> dict[str, Any]:
    env = dict(os.environ, BENCH_TARGET=json.dumps(target))
    done = subprocess.run(
        [sys.executable, HERE, "--child", kind, path],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {kind} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ the run


def start_server(scale: float, latency: float) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    key = "bench-floor-key"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sgcache_layers",
            "serve",
            "--scale",
            str(scale),
            "--latency",
            str(latency),
            "--api-key",
            key,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if line.startswith("URL: "):
            url = line.split(" ", 1)[1].strip()
        if line.startswith("Press Ctrl-C"):
            break
    target = {"url": url, "script": "sgcache_tests", "key": key}
    sg = _client(target)
    project = sg.find("Project", [], ["name"], order=[{"field_name": "id"}])[0]
    user = sg.find("HumanUser", [], ["login"], order=[{"field_name": "id"}])[0]
    target.update(project=project["name"], project_id=project["id"], login=user["login"])
    sg.close()
    return proc, target


def median_of(repeats: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    values = [run() for _ in range(repeats)]
    return statistics.median(values), values


def paired(
    repeats: int, floor: Callable[[], float], ours: Callable[[], float]
) -> tuple[list[float], list[float], float]:
    """Run *floor* and *ours* one after the other *repeats* times (alternating which goes
    first); the times of each and the median of the pairs' ratios."""
    floors: list[float] = []
    mine: list[float] = []
    for number in range(repeats):
        if number % 2:
            mine.append(ours())
            floors.append(floor())
        else:
            floors.append(floor())
            mine.append(ours())
    ratio = statistics.median(m / f for m, f in zip(mine, floors))
    return floors, mine, ratio


def disk_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def one_scale(scale: float, latency: float, repeats: int) -> dict[str, Any]:
    from sgcache_layers import FileCache, SerialisedCache, Session

    proc, target = start_server(scale, latency)
    tmp = tempfile.mkdtemp(prefix="bench-floor-")
    try:
        # plain shotgun_api3 (also the answers the floor stores)
        plain_answers: dict[str, list[Any]] = {}

        def plain() -> float:
            sg = _client(target)
            start = time.perf_counter()
            plain_answers.update(run_reads(sg, target))
            seconds = time.perf_counter() - start
            sg.close()
            return seconds

        plain_s, plain_all = median_of(repeats, plain)
        rows = row_count(plain_answers)

        counts = {name: len(found) for name, found in plain_answers.items()}
        paged_answers: dict[str, list[Any]] = {}

        def paged_floor() -> float:
            sg = _client(target)
            pool = [_client(target) for _ in range(8)]  # as many as ours uses
            for client in pool:
                assert client.server_caps  # its info request made before the clock starts
            start = time.perf_counter()
            paged_answers.update(run_paged_floor(sg, pool, target, counts))
            seconds = time.perf_counter() - start
            for client in [sg, *pool]:
                client.close()
            return seconds

        floor_cold_s, floor_cold_all = median_of(repeats, paged_floor)

        floor_dir = os.path.join(tmp, "floor")
        raw = diskcache.Cache(floor_dir)
        for name, found in plain_answers.items():
            raw.set(name, orjson.dumps(found, default=str))
        raw.close()
        # ours, cold: a fresh cache directory each time
        cold_answers: dict[str, list[Any]] = {}
        cold_dirs: list[str] = []

        def cold() -> float:
            path = os.path.join(tmp, f"ours-{len(cold_dirs)}")
            cold_dirs.append(path)
            start = time.perf_counter()
            session = Session(
                _client(target),
                cache=lambda s: SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode),
            )
            cold_answers.update(run_reads(session, target))
            seconds = time.perf_counter() - start
            session.close()
            return seconds

        cold_s, cold_all = median_of(repeats, cold)
        ours_dir = cold_dirs[-1]

        # ours, warm in the same process
        session = Session(
            _client(target),
            cache=lambda s: SerialisedCache(FileCache(ours_dir), encode=s.encode, decode=s.decode),
        )
        run_reads(session, target)

        def same() -> float:
            start = time.perf_counter()
            run_reads(session, target)
            return time.perf_counter() - start

        # the dict look-up floor
        table = {
            repr((m, a, k)): plain_answers[n] for n, m, a, k in calls(target, target["project_id"])
        }

        def lookup() -> float:
            start = time.perf_counter()
            for _name, method, args, kwargs in calls(target, target["project_id"]):
                found = table[repr((method, args, kwargs))]
                list(found)
            return time.perf_counter() - start

        floor_same_all, same_all, same_ratio = paired(max(repeats, 20), lookup, same)
        session.close()
        floor_same = statistics.median(floor_same_all)
        same_s = statistics.median(same_all)

        reports: list[dict[str, Any]] = []

        def ours_new() -> float:
            reports.append(in_child("ours", target, ours_dir))
            return float(reports[-1]["seconds"])

        floor_new_all, warm_new_all, new_ratio = paired(
            repeats, lambda: float(in_child("floor", target, floor_dir)["seconds"]), ours_new
        )
        floor_new = statistics.median(floor_new_all)
        warm_new = statistics.median(warm_new_all)
        return {
            "scale": scale,
            "rows": rows,
            "plain": plain_s,
            "cold": cold_s,
            "floor_cold": floor_cold_s,
            "floor_new": floor_new,
            "warm_new": warm_new,
            "floor_same": floor_same,
            "warm_same": same_s,
            "new_ratio": new_ratio,
            "same_ratio": same_ratio,
            "bytes_floor": disk_bytes(floor_dir),
            "bytes_ours": disk_bytes(ours_dir),
            "warm_requests": sum(r["requests"] for r in reports),
            "same_answers": len(
                {digest(plain_answers), digest(cold_answers), digest(paged_answers)}
                | {r["digest"] for r in reports}
            )
            == 1,
            "spread": {
                "plain": plain_all,
                "cold": cold_all,
                "floor_cold": floor_cold_all,
                "floor_new": floor_new_all,
                "warm_new": [r["seconds"] for r in reports],
                "warm_same": same_all[:5],
                "floor_same": floor_same_all[:5],
            },
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.25, 1.0, 4.0])
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, path = args.child
        target = json.loads(os.environ["BENCH_TARGET"])
        report = child_ours(target, path) if kind == "ours" else child_floor(target, path)
        print(json.dumps(report))
        return 0

    results = [one_scale(scale, args.latency, args.repeats) for scale in args.scales]
    ok = True
    print(f"latency {args.latency * 1000:.0f} ms, medians of {args.repeats} runs\n")
    header = (
        f"{'scale':>5} {'rows':>6} {'plain s':>8} {'cold s':>8} {'cold/plain':>10} "
        f"{'floor/plain':>11} "
        f"{'floor ms':>9} {'warm ms':>8} {'warm/floor':>10} {'us/row':>7} "
        f"{'dict us':>8} {'same us':>8} {'same/dict':>9} {'bytes x':>8}"
    )
    print(header)
    for r in results:
        r["cold_ratio"] = r["cold"] / r["plain"]
        r["floor_cold_ratio"] = r["floor_cold"] / r["plain"]
        r["bytes_ratio"] = r["bytes_ours"] / r["bytes_floor"]
        r["us_per_row"] = r["warm_new"] / r["rows"] * 1e6
        print(
            f"{r['scale']:>5g} {r['rows']:>6} {r['plain']:>8.3f} {r['cold']:>8.3f} "
            f"{r['cold_ratio']:>9.2f}x {r['floor_cold_ratio']:>10.2f}x "
            f"{r['floor_new'] * 1e3:>9.1f} {r['warm_new'] * 1e3:>8.1f} "
            f"{r['new_ratio']:>9.2f}x {r['us_per_row']:>7.2f} {r['floor_same'] * 1e6:>8.0f} "
            f"{r['warm_same'] * 1e6:>8.0f} {r['same_ratio']:>8.2f}x {r['bytes_ratio']:>7.2f}x"
        )
    print()
    checks = []
    for r in results:
        checks.append(
            (f"scale {r['scale']:g}: warm new process <= 2.5x floor", r["new_ratio"] <= 2.5)
        )
        checks.append(
            (f"scale {r['scale']:g}: warm same process <= 3x dict look-up", r["same_ratio"] <= 3)
        )
        checks.append(
            (
                f"scale {r['scale']:g}: cold <= 0.85x plain (the cold floor: "
                f"{r['floor_cold_ratio']:.2f}x)",
                r["cold_ratio"] <= 0.85,
            )
        )
        checks.append(
            (f"scale {r['scale']:g}: bytes on disk <= 1.5x floor", r["bytes_ratio"] <= 1.5)
        )
        checks.append((f"scale {r['scale']:g}: same answers as plain", r["same_answers"]))
        checks.append(
            (f"scale {r['scale']:g}: warm new process made 0 requests", r["warm_requests"] == 0)
        )
    growth = results[-1]["us_per_row"] / results[0]["us_per_row"]
    checks.append(
        (
            f"cost per row, largest/smallest scale {growth:.2f} (<= 1.5: does not grow)",
            growth <= 1.5,
        )
    )
    for label, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {label}")
        ok = ok and passed
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
