"""Tests of FileCache: contract, permissions, no unpickling, processes, corruption."""

from __future__ import annotations

import json
import logging
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers.cache import (
    Cache,
    CacheBackendError,
    LayeredCache,
    MemoryCache,
    SerialisedCache,
)
from sgcache_layers.file import FileCache
from sgcache_layers.testing.conformance import CacheConformance, SelectiveProxy

MODE_RAW, MODE_BINARY, MODE_PICKLE = 1, 2, 4


class TestFileCacheConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return FileCache(self.tmp_path / "cache")


class TestFileCacheLruConformance(CacheConformance):
    """The per-key get_many path (an eviction policy that updates on read)."""

    def make_cache(self) -> Cache:
        return FileCache(self.tmp_path / "cache", eviction_policy="least-recently-used")


class TestSerialisedFileCacheConformance(CacheConformance):
    supports_bytes = False

    def make_cache(self) -> Cache:
        return SerialisedCache(FileCache(self.tmp_path / "cache"), json.dumps, json.loads)


class TestSelectiveFileCacheConformance(CacheConformance):
    """ftrack's selective-cache pattern (a ProxyCache subclass) over a FileCache."""

    def make_cache(self) -> Cache:
        return SelectiveProxy(
            FileCache(self.tmp_path / "cache"), lambda key: not key.startswith("drop:")
        )


def _run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- values ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 1.5, None, ["a"], {"a": 1}, bytearray(b"x")])
def test_only_str_and_bytes_values(tmp_path: Path, value: Any) -> None:
    cache = FileCache(tmp_path / "c")
    with pytest.raises(TypeError, match=type(value).__name__):
        cache.set("k", value)
    with pytest.raises(TypeError, match=type(value).__name__):
        cache.set_many({"ok": "fine", "k": value})
    with pytest.raises(KeyError):
        cache.get("ok")  # set_many checks everything before writing


def test_values_keep_their_type_small_and_large(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c")
    big_text = "line\r\nwith crlf and ünïcode\n" * 5000  # stored in a value file
    big_bytes = os.urandom(100_000)
    cache.set_many({"s": "text", "b": b"bytes", "bs": big_text, "bb": big_bytes})
    assert cache.get("s") == "text" and type(cache.get("s")) is str
    assert cache.get("b") == b"bytes" and type(cache.get("b")) is bytes
    assert cache.get("bs") == big_text
    assert cache.get("bb") == big_bytes
    assert cache.get_many(["bs", "bb"]) == {"bs": big_text, "bb": big_bytes}


def test_values_survive_reopen_in_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "persist"
    cache = FileCache(path)
    cache.set("text", "héllo")
    cache.set("raw", b"\x00\x01")
    cache.set("big", "x" * 70_000)
    cache.close()
    result = _run_python(
        """
        import sys
        from sgcache_layers.file import FileCache
        cache = FileCache(sys.argv[1])
        text, raw, big = cache.get("text"), cache.get("raw"), cache.get("big")
        print(repr((text, raw, type(text).__name__, type(raw).__name__, len(big))))
        cache.set("from-child", "yes")
        """,
        str(path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(("héllo", b"\x00\x01", "str", "bytes", 70_000))
    assert FileCache(path).get("from-child") == "yes"


def test_size_limit_and_eviction_policy_pass_through(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c", size_limit=1, eviction_policy="least-recently-used")
    for index in range(60):
        cache.set(f"k{index}", "v" * 100)
    assert len(cache) < 60
    assert cache._cache.eviction_policy == "least-recently-used"


# -- permissions -----------------------------------------------------------------


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_directory_and_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "parent" / "cache"
    cache = FileCache(path)
    cache.set("small", "v")
    cache.set("large", b"x" * 100_000)
    assert _mode(path) == 0o700
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(tmp_path / "new" / "parent") == 0o700
    files = [p for p in path.rglob("*")]
    assert any(p.suffix == ".val" for p in files)
    for entry in files:
        if entry.is_dir():
            assert _mode(entry) == 0o700, entry
        else:
            assert _mode(entry) & 0o077 == 0, entry


def test_existing_empty_directory_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "open"
    path.mkdir()
    os.chmod(path, 0o755)
    FileCache(path)
    assert _mode(path) == 0o700


def test_shared_directory_is_not_chmodded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "shared"
    path.mkdir()
    (path / "someone-elses-file").write_text("x")
    os.chmod(path, 0o755)
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        FileCache(path)
    assert _mode(path) == 0o755
    assert "open to other users" in caplog.text


# -- never unpickle ----------------------------------------------------------------


class _Exploit:
    """Unpickling this creates the file at ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _plant(db: Path, rows: list[tuple[Any, ...]]) -> None:
    """Insert raw rows (key, raw, mode, filename, value) into the Cache table."""
    with sqlite3.connect(db) as conn:
        for key, raw, mode, filename, value in rows:
            conn.execute(
                "INSERT INTO Cache (key, raw, store_time, expire_time, access_time,"
                " access_count, tag, size, mode, filename, value)"
                " VALUES (?, ?, ?, NULL, ?, 0, NULL, 0, ?, ?, ?)",
                (key, raw, time.time(), time.time(), mode, filename, value),
            )
    conn.close()


def test_planted_pickles_run_no_code(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c"
    cache = FileCache(path)
    cache.set("honest", "value")
    cache.close()
    markers = [tmp_path / f"pwned-{index}" for index in range(3)]
    payloads = [pickle.dumps(_Exploit(str(marker)), protocol=2) for marker in markers]
    value_file = path / "ab" / "cd" / "evil.val"
    value_file.parent.mkdir(parents=True)
    value_file.write_bytes(payloads[1])
    _plant(
        path / "cache.db",
        [
            ("in-db", 1, MODE_PICKLE, None, payloads[0]),  # pickled value in the row
            ("in-file", 1, MODE_PICKLE, "ab/cd/evil.val", None),  # pickled value file
            (payloads[2], 0, MODE_RAW, None, "v"),  # pickled key (raw=0)
            ("number", 1, MODE_RAW, None, 42),  # not a str/bytes value
        ],
    )
    cache = FileCache(path)
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        for key in ("in-db", "in-file", "number"):
            with pytest.raises(KeyError):
                cache.get(key)
        assert cache.get_many(["in-db", "in-file", "number", "honest"]) == {"honest": "value"}
        assert sorted(cache.keys()) == ["honest", "in-db", "in-file", "number"]
        assert cache.values() == ["value"]
        layered = LayeredCache([MemoryCache(), cache])
        with pytest.raises(KeyError):
            layered.get("in-db")
        cache.clear("^in-")
        cache.clear()
    assert "refusing to load" in caplog.text
    for marker in markers:
        assert not marker.exists()
    assert cache.keys() == []


def test_planted_value_file_outside_the_cache_is_not_read_or_removed(tmp_path: Path) -> None:
    path = tmp_path / "c"
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"do not touch")
    cache = FileCache(path)
    cache.close()
    _plant(
        path / "cache.db",
        [
            ("escape", 1, MODE_BINARY, "../precious.txt", None),
            ("absolute", 1, MODE_BINARY, str(outside), None),
        ],
    )
    cache = FileCache(path)
    for key in ("escape", "absolute"):
        with pytest.raises(KeyError):
            cache.get(key)
        cache.remove(key)
    assert outside.read_bytes() == b"do not touch"


# -- concurrency -------------------------------------------------------------------


def test_four_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    FileCache(path).close()
    go = tmp_path / "go"
    code = textwrap.dedent(
        """
        import os, sys, time
        from sgcache_layers.file import FileCache
        path, worker, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        cache = FileCache(path)
        while not os.path.exists(go):
            time.sleep(0.005)
        for index in range(2000):
            cache.set(f"w{worker}:{index}", f"value {worker} {index}")
        cache.close()
        print("done")
        """
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(worker), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(4)
    ]
    time.sleep(0.3)
    go.touch()
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        assert out.strip() == "done"
        assert err == ""
    cache = FileCache(path)
    expected = {
        f"w{worker}:{index}": f"value {worker} {index}"
        for worker in range(4)
        for index in range(2000)
    }
    assert len(cache) == 8000
    assert cache.get_many(list(expected)) == expected


def test_many_threads_share_one_file_cache(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(200):
                cache.set(f"t{worker}:{index}", str(index))
                assert cache.get(f"t{worker}:{index}") == str(index)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache.keys()) == 800


def test_lock_held_too_long_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "c"
    cache = FileCache(path, timeout=0.05, retries=1)
    cache.set("a", "1")
    blocker = sqlite3.connect(path / "cache.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(CacheBackendError, match="locked"):
            cache.set("b", "2")
        assert cache.get("a") == "1"  # readers are not blocked (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    cache.set("b", "2")
    assert cache.get("b") == "2"


# -- corruption ------------------------------------------------------------------


def _garble(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        try:
            os.remove(str(path / "cache.db") + suffix)
        except FileNotFoundError:
            pass
    (path / "cache.db").write_bytes(b"this is not a database " * 400)


def test_garbage_database_raises_backend_error_on_open(tmp_path: Path) -> None:
    path = tmp_path / "c"
    FileCache(path).close()
    _garble(path)
    with pytest.raises(CacheBackendError) as caught:
        FileCache(path)
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, sqlite3.Error)


def test_database_garbled_while_open_raises_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "c"
    cache = FileCache(path)
    cache.set("a", "1")
    cache.close()
    _garble(path)
    for call in (
        lambda: cache.get("a"),
        lambda: cache.set("a", "2"),
        lambda: cache.remove("a"),
        lambda: cache.keys(),
        lambda: cache.clear(),
        lambda: cache.get_many(["a"]),
        lambda: cache.set_many({"a": "2"}),
    ):
        with pytest.raises(CacheBackendError, match=str(path)):
            call()


def test_layered_cache_carries_on_without_a_garbled_file_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c"
    file_cache = FileCache(path)
    layered = LayeredCache([MemoryCache(), file_cache], warning_interval=0)
    layered.set("kept", "in memory")
    file_cache.close()
    _garble(path)
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        assert layered.get("kept") == "in memory"
        with pytest.raises(KeyError):
            layered.get("other")
        layered.set("new", "value")
        assert layered.get("new") == "value"
    assert "FileCache" in caplog.text and "CacheBackendError" in caplog.text
    assert layered.stats()[1]["errors"] == 2


def test_the_planted_exploit_is_real_for_plain_diskcache(tmp_path: Path) -> None:
    """Control: the same planted row does run code when plain diskcache reads it."""
    import diskcache

    path = tmp_path / "c"
    FileCache(path).close()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    _plant(path / "cache.db", [("in-db", 1, MODE_PICKLE, None, payload)])
    with diskcache.Cache(str(path)) as plain:
        plain.get("in-db")
    assert marker.exists()
