"""Loopback ShotGrid server speed: find_one round trip (target < 2 ms), paging, writes.

Run with ``python benchmarks/bench_server.py``; exits 1 if the find_one median misses 2 ms.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable, List

from sgcache_layers.testing import ShotgridServer

TARGET_FIND_ONE = 0.002


def _measure(call: Callable[[], object], repeat: int, warmup: int = 10) -> List[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _report(name: str, times: List[float]) -> float:
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    print(f"{name:<44} median {median * 1000:8.2f} ms   p95 {p95 * 1000:8.2f} ms   n={len(times)}")
    return median


def main() -> int:
    """Run the benchmark on a full-scale demo production; returns the exit status."""
    start = time.perf_counter()
    server = ShotgridServer(scale=1.0, seed=0)
    print(f"generate_production(scale=1.0) + server: {time.perf_counter() - start:.2f} s")
    with server:
        sg = server.client()
        find_one = _report(
            "find_one Shot by id (loopback round trip)",
            _measure(lambda: sg.find_one("Shot", [["id", "is", 42]], ["code"]), 500),
        )
        _report(
            "find_one Task by deep filter",
            _measure(
                lambda: sg.find_one(
                    "Task", [["entity.Shot.code", "is", "SQ010_0010"]], ["content"]
                ),
                50,
            ),
        )
        _report(
            "find 500 Shots (one page)",
            _measure(lambda: sg.find("Shot", [], ["code", "sg_sequence", "assets"]), 20, 2),
        )
        _report(
            "find all Tasks (~5,000 rows, 10 pages)",
            _measure(lambda: sg.find("Task", [], ["content", "entity", "step"]), 5, 1),
        )
        counter = iter(range(10**6))
        _report(
            "create Shot (with event rows)",
            _measure(
                lambda: sg.create(
                    "Shot", {"code": f"b{next(counter)}", "project": {"type": "Project", "id": 1}}
                ),
                200,
            ),
        )
        _report(
            "update Shot",
            _measure(lambda: sg.update("Shot", 42, {"description": str(time.time())}), 200),
        )
    ok = find_one < TARGET_FIND_ONE
    print(
        f"find_one median {'meets' if ok else 'MISSES'} the {TARGET_FIND_ONE * 1000:.0f} ms target"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
