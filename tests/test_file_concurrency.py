"""FileCache under several processes at once: nothing acknowledged is ever lost.

Every test here runs real processes on one real cache directory.  A writer
acknowledges a key (appends its index to an ack file) only after ``set``
returned, so the acknowledged keys are exactly what must read back afterwards,
whatever happened in between: other processes opening and closing caches on the
directory, the writer opening extra caches itself, or a ``SIGKILL``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sgcache_layers.cache import CacheBackendError
from sgcache_layers.file import FileCache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locking and signals")

#: A writer process: sets keys ``w<worker>:<index>``, acknowledging each after ``set``
#: returns, and every *reopen_every* keys opens and closes an extra FileCache on the
#: same directory (in the same process, while its own cache stays open).
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from sgcache_layers.file import FileCache

    path, worker, count, reopen_every, ack_path, go = sys.argv[1:]
    worker, count, reopen_every = int(worker), int(count), int(reopen_every)

    def value(index):
        if index % 97 == 0:
            return ("large %d %d " % (worker, index)) * 4000  # a value file
        if index % 2:
            return ("bytes %d %d" % (worker, index)).encode()
        return "value %d %d" % (worker, index)

    cache = FileCache(path)
    ack = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    while not os.path.exists(go):
        time.sleep(0.002)
    index = 0
    while count < 0 or index < count:
        key = "w%d:%d" % (worker, index)
        cache.set(key, value(index))
        os.write(ack, b"%d\\n" % index)
        if index % reopen_every == 0:
            extra = FileCache(path)
            assert extra.get(key) == value(index)
            extra.change_token()  # maps the WAL index: must not disturb the locks either
            extra.close()
            cache.change_token()
        index += 1
    cache.close()
    print("done")
    """
)

#: A process that opens and closes a FileCache on the directory until *stop* exists.
OPENER = textwrap.dedent(
    """
    import os, sys
    from sgcache_layers.file import FileCache

    path, stop = sys.argv[1:]
    opened = 0
    while not os.path.exists(stop):
        cache = FileCache(path)
        try:
            cache.get("w0:0")
        except KeyError:
            pass
        cache.change_token()
        cache.close()
        opened += 1
    print(opened)
    """
)


def _expected_value(worker: int, index: int) -> str | bytes:
    """The value WRITER stores for ``w<worker>:<index>``."""
    if index % 97 == 0:
        return f"large {worker} {index} " * 4000
    if index % 2:
        return f"bytes {worker} {index}".encode()
    return f"value {worker} {index}"


def _spawn(code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _acknowledged(ack_path: Path, worker: int) -> dict[str, str | bytes]:
    """The keys a writer acknowledged, with their values (a torn last line is ignored)."""
    try:
        text = ack_path.read_text()
    except FileNotFoundError:
        return {}
    acked: dict[str, str | bytes] = {}
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            index = int(line)
            acked[f"w{worker}:{index}"] = _expected_value(worker, index)
    return acked


def _integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of the cache database, as one string."""
    conn = sqlite3.connect(path / "cache.db")
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)


def _read_back_problems(path: Path, expected: dict[str, str | bytes]) -> list[str]:
    """What is wrong with the cache at *path*: unsound database, lost or changed keys."""
    problems = []
    try:
        integrity = _integrity(path)
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity[:500]}")
        cache = FileCache(path)
        try:
            found = cache.get_many(list(expected))
            lost = sorted(set(expected) - set(found))
            if lost:
                problems.append(
                    f"{len(lost)} of {len(expected)} acknowledged keys lost: {lost[:5]}"
                )
            wrong = [key for key in found if found[key] != expected[key]]
            if wrong:
                problems.append(f"{len(wrong)} keys read back a different value: {wrong[:5]}")
            cache.set("after", "still writable")
            if cache.get("after") != "still writable":
                problems.append("a write after the run did not read back")
        finally:
            cache.close()
        integrity = _integrity(path)
        if integrity != "ok":
            problems.append(f"integrity_check after reopening: {integrity[:500]}")
    except (CacheBackendError, sqlite3.Error) as exc:
        problems.append(f"reading the cache back failed: {type(exc).__name__}: {exc}")
    return problems


def _stop(process: subprocess.Popen[str], stop: Path) -> tuple[str, str]:
    stop.touch()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out, err


def test_opening_more_caches_while_others_write_loses_nothing(tmp_path: Path) -> None:
    """Two writers, each also opening extra caches, and a third process opening in a loop.

    Opening a cache must never disturb the locks SQLite holds for the caches
    already open in the same process; when it did (a raw ``open``/``close`` of
    cache.db), the database ended up malformed and acknowledged keys were lost.
    """
    path = tmp_path / "shared"
    FileCache(path).close()
    go, stop = tmp_path / "go", tmp_path / "stop"
    count = 1500
    writers = [
        _spawn(WRITER, path, worker, count, 5, tmp_path / f"ack{worker}", go) for worker in range(2)
    ]
    opener = _spawn(OPENER, path, stop)
    time.sleep(0.3)
    go.touch()
    failures = []
    for worker, process in enumerate(writers):
        out, err = process.communicate(timeout=120)
        if process.returncode != 0 or out.strip() != "done":
            failures.append(f"writer {worker} exited {process.returncode}: {err[-2000:]}")
    _stop(opener, stop)
    expected: dict[str, str | bytes] = {}
    for worker in range(2):
        expected.update(_acknowledged(tmp_path / f"ack{worker}", worker))
    problems = failures + _read_back_problems(path, expected)
    assert not problems, problems
    assert len(expected) == 2 * count


def _kill_when_acknowledged(
    process: subprocess.Popen[str], ack: Path, worker: int, at: int
) -> None:
    """SIGKILL the writer *process* once it has acknowledged *at* keys (it must still run)."""
    deadline = time.monotonic() + 30
    while (
        len(_acknowledged(ack, worker)) < at
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    assert process.poll() is None, process.communicate()[1][-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def test_writers_killed_mid_write_lose_no_acknowledged_key(tmp_path: Path) -> None:
    """Writers (and an opener) killed with SIGKILL while writing: acknowledged keys survive.

    Two rounds of two writers: the second round starts on the database the
    first left behind mid-transaction (SQLite recovers the WAL) and is killed
    in turn.  Each writer dies at a different moment, mostly inside ``set``.
    """
    path = tmp_path / "shared"
    FileCache(path).close()
    go, stop = tmp_path / "go", tmp_path / "stop"
    opener = _spawn(OPENER, path, stop)
    go.touch()
    workers = []
    for first in (0, 2):
        round_workers = [first, first + 1]
        writers = {
            worker: _spawn(WRITER, path, worker, -1, 7, tmp_path / f"ack{worker}", go)
            for worker in round_workers
        }
        for offset, (worker, process) in enumerate(writers.items()):
            at = 300 * (offset + 1)
            _kill_when_acknowledged(process, tmp_path / f"ack{worker}", worker, at)
        workers.extend(round_workers)
    os.kill(opener.pid, signal.SIGKILL)
    opener.communicate(timeout=30)
    expected: dict[str, str | bytes] = {}
    for worker in workers:
        expected.update(_acknowledged(tmp_path / f"ack{worker}", worker))
    assert len(expected) >= 2 * (300 + 600)
    problems = _read_back_problems(path, expected)
    assert not problems, problems
