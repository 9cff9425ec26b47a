"""Load-test the storage layer with many processes at once, and check nothing was lost.

Run ``python benchmarks/bench_load.py [--only filecache] [--seconds 5] [--writers 8]
[--readers 4] [--json PATH]``.  Each section prints a small table; the script
exits 0 only when every section that ran lost no acknowledged entry (and its
store checked out sound), 1 otherwise, 2 when a requested section is not there.

Sections run in the order of ``SECTIONS``; each is a function taking the parsed
options and returning a :class:`SectionResult`.  ``filecache``: writer
processes store keys unique to each writer in one FileCache directory, each
key acknowledged only once ``set`` has returned, while reader processes read
random acknowledged keys; afterwards every acknowledged key must read back
exactly and ``PRAGMA integrity_check`` must say ``ok``.  ``session``: writer
processes, each with its own Session over one FileCache directory and the loopback
ShotGrid server, update their own shots; reader processes read random shots with
``get()`` and ``find()``.  A read that shows an older value than a write that had
returned before the read began is stale; afterwards a new session must show every
shot's last acknowledged write (else it was lost).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import queue
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Callable, Optional

from sgcache_layers.cache import CacheBackendError
from sgcache_layers.file import FileCache

#: Every section this benchmark knows by name, in running order.
SECTION_NAMES = ("filecache", "session")
#: Latencies kept per worker (evenly sampled) for the percentiles.
LATENCY_SAMPLES = 20_000


@dataclasses.dataclass
class SectionResult:
    """What one section measured: table rows, whether it passed, and raw figures."""

    title: str
    rows: list[tuple[str, str]]
    ok: bool
    figures: dict[str, Any]


Section = Callable[[argparse.Namespace], SectionResult]


# -- FileCache section -----------------------------------------------------------------


def value_for(writer: int, index: int, size: int) -> str:
    """The value writer *writer* stores under its *index*-th key (exactly *size* chars)."""
    head = f"{writer}:{index}:"
    return (head * (size // len(head) + 1))[:size]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile of *samples*, in milliseconds (0 when empty)."""
    if not samples:
        return 0.0, 0.0
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def _keep_sample(samples: list[float], count: int, value: float) -> None:
    """Keep at most LATENCY_SAMPLES evenly spread latencies (reservoir sampling)."""
    if len(samples) < LATENCY_SAMPLES:
        samples.append(value)
    else:
        slot = random.randrange(count)
        if slot < LATENCY_SAMPLES:
            samples[slot] = value


def _writer(
    path: str,
    writer: int,
    value_size: int,
    acked: Synchronized[int],
    ready: multiprocessing.Queue[str],
    start: Any,
    stop: Any,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """Store ``w<writer>:<index>`` for index 0, 1, ... until *stop*; count acknowledged keys."""
    errors: list[str] = []
    latencies: list[float] = []
    written = 0
    try:
        cache = FileCache(path)
    except CacheBackendError as exc:
        results.put({"role": "writer", "id": writer, "ops": 0, "errors": [str(exc)]})
        ready.put("failed")
        return
    ready.put("writer")
    start.wait()
    while not stop.is_set():
        key = f"w{writer}:{written}"
        began = time.perf_counter()
        try:
            cache.set(key, value_for(writer, written, value_size))
        except CacheBackendError as exc:
            errors.append(str(exc))
            if len(errors) > 20:
                break
            continue
        _keep_sample(latencies, written + 1, time.perf_counter() - began)
        written += 1
        acked.value = written  # acknowledged: set() returned
    cache.close()
    results.put(
        {"role": "writer", "id": writer, "ops": written, "latencies": latencies, "errors": errors}
    )


def _reader(
    path: str,
    reader: int,
    value_size: int,
    acked: list[Synchronized[int]],
    ready: multiprocessing.Queue[str],
    start: Any,
    stop: Any,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """Read random acknowledged keys until *stop*; count misses and wrong values."""
    rng = random.Random(reader)
    errors: list[str] = []
    latencies: list[float] = []
    reads = misses = wrong = 0
    try:
        cache = FileCache(path)
    except CacheBackendError as exc:
        results.put({"role": "reader", "id": reader, "ops": 0, "errors": [str(exc)]})
        ready.put("failed")
        return
    ready.put("reader")
    start.wait()
    while not stop.is_set():
        writer = rng.randrange(len(acked))
        count = acked[writer].value
        if count == 0:
            time.sleep(0.001)
            continue
        index = rng.randrange(count)
        began = time.perf_counter()
        try:
            value = cache.get(f"w{writer}:{index}")
        except KeyError:
            misses += 1
            continue
        except CacheBackendError as exc:
            errors.append(str(exc))
            if len(errors) > 20:
                break
            continue
        finally:
            reads += 1
        _keep_sample(latencies, reads, time.perf_counter() - began)
        if value != value_for(writer, index, value_size):
            wrong += 1
    cache.close()
    results.put(
        {
            "role": "reader",
            "id": reader,
            "ops": reads,
            "misses": misses,
            "wrong": wrong,
            "latencies": latencies,
            "errors": errors,
        }
    )


def _integrity_check(path: str) -> str:
    """``PRAGMA integrity_check`` of the FileCache database at *path*."""
    conn = sqlite3.connect(os.path.join(path, "cache.db"))
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)[:200]


def _verify(path: str, acknowledged: list[int], value_size: int) -> tuple[int, int, str]:
    """Return (lost, wrong, error) for every acknowledged key, read back in a fresh cache."""
    lost = wrong = 0
    try:
        cache = FileCache(path)
    except CacheBackendError as exc:
        return sum(acknowledged), 0, str(exc)
    try:
        for writer, count in enumerate(acknowledged):
            for start in range(0, count, 500):
                indices = range(start, min(count, start + 500))
                found = cache.get_many(f"w{writer}:{index}" for index in indices)
                for index in indices:
                    value = found.get(f"w{writer}:{index}")
                    if value is None:
                        lost += 1
                    elif value != value_for(writer, index, value_size):
                        wrong += 1
    except CacheBackendError as exc:
        return lost, wrong, str(exc)
    finally:
        cache.close()
    return lost, wrong, ""


def filecache_section(options: argparse.Namespace) -> SectionResult:
    """Writers and readers in separate processes on one FileCache directory."""
    context = multiprocessing.get_context("spawn")
    workdir = options.dir or tempfile.mkdtemp(prefix="sgcache-bench-load-")
    path = os.path.join(workdir, "filecache")
    FileCache(path).close()
    writers, readers = options.writers, options.readers
    acked = [context.Value("q", 0, lock=False) for _ in range(writers)]
    ready: multiprocessing.Queue[str] = context.Queue()
    results: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    start, stop = context.Event(), context.Event()
    processes = [
        context.Process(
            target=_writer,
            args=(path, writer, options.value_size, acked[writer], ready, start, stop, results),
        )
        for writer in range(writers)
    ] + [
        context.Process(
            target=_reader,
            args=(path, reader, options.value_size, acked, ready, start, stop, results),
        )
        for reader in range(readers)
    ]
    reports: list[dict[str, Any]] = []
    try:
        for process in processes:
            process.start()
        for _ in processes:
            ready.get(timeout=120)
        began = time.perf_counter()
        start.set()
        time.sleep(options.seconds)
        stop.set()
        window = time.perf_counter() - began  # operations in flight at stop finish unseen
        for _ in processes:
            reports.append(results.get(timeout=120))
        for process in processes:
            process.join(timeout=60)
    except queue.Empty:
        stop.set()
        for process in processes:
            process.kill()
        raise RuntimeError("a worker process did not report in time") from None

    acknowledged = [int(value.value) for value in acked]
    by_role: dict[str, list[dict[str, Any]]] = {"writer": [], "reader": []}
    for report in reports:
        by_role[report["role"]].append(report)
    for report in by_role["writer"]:
        # A writer's own count is authoritative (the shared one may lag by one).
        acknowledged[report["id"]] = max(acknowledged[report["id"]], report["ops"])
    lost, wrong, verify_error = _verify(path, acknowledged, options.value_size)
    integrity = _integrity_check(path)
    errors = [error for report in reports for error in report["errors"]]
    if verify_error:
        errors.append(f"verification: {verify_error}")
    write_ops = sum(report["ops"] for report in by_role["writer"])
    read_ops = sum(report["ops"] for report in by_role["reader"])
    reader_misses = sum(report.get("misses", 0) for report in by_role["reader"])
    reader_wrong = sum(report.get("wrong", 0) for report in by_role["reader"])
    write_p50, write_p99 = _percentiles(
        [sample for report in by_role["writer"] for sample in report.get("latencies", [])]
    )
    read_p50, read_p99 = _percentiles(
        [sample for report in by_role["reader"] for sample in report.get("latencies", [])]
    )
    if options.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)

    ok = (
        lost == 0
        and wrong == 0
        and reader_misses == 0
        and reader_wrong == 0
        and integrity == "ok"
        and not errors
    )
    rows = [
        ("writes/s (all writers)", f"{write_ops / window:,.0f}"),
        ("reads/s (all readers)", f"{read_ops / window:,.0f}"),
        ("write latency p50 / p99", f"{write_p50:.2f} ms / {write_p99:.2f} ms"),
        ("read latency p50 / p99", f"{read_p50:.2f} ms / {read_p99:.2f} ms"),
        ("acknowledged entries", f"{sum(acknowledged):,}"),
        ("acknowledged entries lost", f"{lost:,}"),
        ("read back with a different value", f"{wrong + reader_wrong:,}"),
        ("reader misses of acknowledged keys", f"{reader_misses:,}"),
        ("errors", f"{len(errors):,}"),
        ("PRAGMA integrity_check", integrity),
    ]
    for error in errors[:5]:
        rows.append(("error", error[:120]))
    return SectionResult(
        title=(
            f"FileCache: {writers} writer and {readers} reader processes on one directory, "
            f"{window:.1f} s, values of {options.value_size} chars"
        ),
        rows=rows,
        ok=ok,
        figures={
            "writers": writers,
            "readers": readers,
            "seconds": round(window, 3),
            "writes_per_s": write_ops / window,
            "reads_per_s": read_ops / window,
            "write_latency_ms": {"p50": write_p50, "p99": write_p99},
            "read_latency_ms": {"p50": read_p50, "p99": read_p99},
            "acknowledged": sum(acknowledged),
            "lost": lost,
            "wrong": wrong + reader_wrong,
            "reader_misses": reader_misses,
            "errors": errors,
            "integrity_check": integrity,
        },
    )


# -- Session section -------------------------------------------------------------------

SHOTS_PER_WRITER = 40


def _session_on(url: str, script: str, key: str, path: str) -> Any:
    import shotgun_api3

    from sgcache_layers import SerialisedCache, Session

    sg = shotgun_api3.shotgun.Shotgun(url, script, key, connect=False)
    sg.config.timeout_secs = 60
    return Session(
        sg, cache=lambda s: SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode)
    )


def _code_number(code: Any) -> int:
    """``w3-17`` -> 17 (-1 for a code no writer wrote)."""
    try:
        return int(str(code).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _session_writer(
    site: tuple[str, str, str, str],
    writer: int,
    shots: list[int],
    acked: Any,
    ready: multiprocessing.Queue[str],
    start: Any,
    stop: Any,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """Update this writer's shots in turn; a write counts once ``update`` has returned."""
    errors: list[str] = []
    latencies: list[float] = []
    session = _session_on(*site)
    ready.put("writer")
    start.wait()
    written = 0
    while not stop.is_set():
        slot = written % len(shots)
        number = written // len(shots)
        began = time.perf_counter()
        try:
            session.update("Shot", shots[slot], {"code": f"w{writer}-{number}"})
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            errors.append(f"{type(exc).__name__}: {exc}")
            if len(errors) > 20:
                break
            continue
        _keep_sample(latencies, written + 1, time.perf_counter() - began)
        acked[writer * SHOTS_PER_WRITER + slot] = number  # acknowledged: update() returned
        written += 1
    session.close()
    results.put(
        {"role": "writer", "id": writer, "ops": written, "latencies": latencies, "errors": errors}
    )


def _session_reader(
    site: tuple[str, str, str, str],
    reader: int,
    shots: list[int],
    acked: Any,
    ready: multiprocessing.Queue[str],
    start: Any,
    stop: Any,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """Read random shots with get() and find(); a read older than a returned write is stale."""
    rng = random.Random(reader)
    errors: list[str] = []
    latencies: list[float] = []
    reads = stale = 0
    session = _session_on(*site)
    ready.put("reader")
    start.wait()
    while not stop.is_set():
        slot = rng.randrange(len(shots))
        floor = acked[slot]  # a write this new had returned before the read began
        began = time.perf_counter()
        try:
            if reads % 2:
                code = session.get("Shot", shots[slot])["code"]
            else:
                rows = session.find("Shot", [["id", "is", shots[slot]]], ["code"])
                code = rows[0]["code"]
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            errors.append(f"{type(exc).__name__}: {exc}")
            if len(errors) > 20:
                break
            continue
        reads += 1
        _keep_sample(latencies, reads, time.perf_counter() - began)
        if floor >= 0 and _code_number(code) < floor:
            stale += 1
    session.close()
    results.put(
        {
            "role": "reader",
            "id": reader,
            "ops": reads,
            "stale": stale,
            "latencies": latencies,
            "errors": errors,
        }
    )


def session_section(options: argparse.Namespace) -> SectionResult:
    """Writer and reader processes, each with its own Session, over one FileCache and the
    loopback ShotGrid server."""
    from sgcache_layers.testing import ShotgridServer

    context = multiprocessing.get_context("spawn")
    workdir = options.dir or tempfile.mkdtemp(prefix="sgcache-bench-load-")
    path = os.path.join(workdir, "session")
    writers, readers = options.writers, options.readers
    server = ShotgridServer().start()
    try:
        with server.store.lock:
            project = server.store.bulk_insert("Project", [{"name": "Load"}])[0]
            shots = server.store.bulk_insert(
                "Shot",
                [
                    {"code": "unwritten", "project": {"type": "Project", "id": project}}
                    for _ in range(writers * SHOTS_PER_WRITER)
                ],
            )
        site = (server.url, server.script_name, server.api_key, path)
        acked = context.Array("q", [-1] * len(shots), lock=False)
        ready: multiprocessing.Queue[str] = context.Queue()
        results: multiprocessing.Queue[dict[str, Any]] = context.Queue()
        start, stop = context.Event(), context.Event()
        mine = [shots[w * SHOTS_PER_WRITER : (w + 1) * SHOTS_PER_WRITER] for w in range(writers)]
        processes = [
            context.Process(
                target=_session_writer,
                args=(site, writer, mine[writer], acked, ready, start, stop, results),
            )
            for writer in range(writers)
        ] + [
            context.Process(
                target=_session_reader,
                args=(site, reader, shots, acked, ready, start, stop, results),
            )
            for reader in range(readers)
        ]
        reports: list[dict[str, Any]] = []
        try:
            for process in processes:
                process.start()
            for _ in processes:
                ready.get(timeout=180)
            began = time.perf_counter()
            start.set()
            time.sleep(options.seconds)
            stop.set()
            window = time.perf_counter() - began
            for _ in processes:
                reports.append(results.get(timeout=180))
            for process in processes:
                process.join(timeout=60)
        except queue.Empty:
            stop.set()
            for process in processes:
                process.kill()
            raise RuntimeError("a worker process did not report in time") from None
        # Afterwards a new session must show every shot's last acknowledged write, as
        # ShotGrid itself does.
        plain: Any = server.client()
        truth = {row["id"]: row["code"] for row in plain.find("Shot", [], ["code"])}
        check = _session_on(*site)
        lost = 0
        for slot, shot_id in enumerate(shots):
            number = acked[slot]
            if number < 0:
                continue
            shown = check.get("Shot", shot_id)["code"]
            if _code_number(shown) < number or shown != truth[shot_id]:
                lost += 1
        check.close()
    finally:
        server.stop()
    if options.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    by_role: dict[str, list[dict[str, Any]]] = {"writer": [], "reader": []}
    for report in reports:
        by_role[report["role"]].append(report)
    errors = [error for report in reports for error in report["errors"]]
    write_ops = sum(report["ops"] for report in by_role["writer"])
    read_ops = sum(report["ops"] for report in by_role["reader"])
    stale = sum(report.get("stale", 0) for report in by_role["reader"])
    write_p50, write_p99 = _percentiles(
        [sample for report in by_role["writer"] for sample in report.get("latencies", [])]
    )
    read_p50, read_p99 = _percentiles(
        [sample for report in by_role["reader"] for sample in report.get("latencies", [])]
    )
    ok = lost == 0 and stale == 0 and not errors and write_ops > 0 and read_ops > 0
    rows = [
        ("writes/s (all writers, update())", f"{write_ops / window:,.0f}"),
        ("reads/s (all readers, get()/find())", f"{read_ops / window:,.0f}"),
        ("write latency p50 / p99", f"{write_p50:.2f} ms / {write_p99:.2f} ms"),
        ("read latency p50 / p99", f"{read_p50:.2f} ms / {read_p99:.2f} ms"),
        ("writes acknowledged", f"{write_ops:,}"),
        ("acknowledged writes lost", f"{lost:,}"),
        ("stale reads after a write returned", f"{stale:,}"),
        ("errors", f"{len(errors):,}"),
    ]
    for error in errors[:5]:
        rows.append(("error", error[:120]))
    return SectionResult(
        title=(
            f"Session: {writers} writer and {readers} reader processes, one FileCache, the "
            f"loopback ShotGrid server, {window:.1f} s"
        ),
        rows=rows,
        ok=ok,
        figures={
            "writers": writers,
            "readers": readers,
            "seconds": round(window, 3),
            "writes_per_s": write_ops / window,
            "reads_per_s": read_ops / window,
            "write_latency_ms": {"p50": write_p50, "p99": write_p99},
            "read_latency_ms": {"p50": read_p50, "p99": read_p99},
            "writes": write_ops,
            "lost": lost,
            "stale_reads": stale,
            "errors": errors,
        },
    )


# -- driver ------------------------------------------------------------------------------

#: The sections that exist, by name, in running order (names from SECTION_NAMES).
SECTIONS: dict[str, Section] = {"filecache": filecache_section, "session": session_section}


def print_section(result: SectionResult) -> None:
    print(f"\n{result.title}")
    width = max(len(label) for label, _ in result.rows)
    for label, value in result.rows:
        print(f"  {label:<{width}}  {value}")
    print(f"  {'result':<{width}}  {'PASS' if result.ok else 'FAIL'}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=SECTION_NAMES, help="run one section (default: every section)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="load time (default 5)")
    parser.add_argument("--writers", type=int, default=8, help="writer processes (default 8)")
    parser.add_argument("--readers", type=int, default=4, help="reader processes (default 4)")
    parser.add_argument(
        "--value-size", type=int, default=256, help="characters per value (default 256)"
    )
    parser.add_argument("--dir", help="work in this directory and keep it (default: a temp dir)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    options = parser.parse_args(argv)

    names = [options.only] if options.only else [name for name in SECTION_NAMES if name in SECTIONS]
    missing = [name for name in names if name not in SECTIONS]
    if missing:
        print(f"bench_load: no {', '.join(missing)} section in this version", file=sys.stderr)
        return 2
    print(f"bench_load: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    results = {}
    for name in names:
        result = SECTIONS[name](options)
        print_section(result)
        results[name] = result
    if options.json:
        with open(options.json, "w", encoding="utf-8") as output:
            json.dump(
                {name: {"ok": r.ok, **r.figures} for name, r in results.items()}, output, indent=2
            )
    return 0 if all(result.ok for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
