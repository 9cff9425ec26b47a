"""FileCache given odd input or a damaged store: an exact round trip or a clear error.

Odd ``str`` (lone surrogates, NULs) must come back exactly.  A damaged store
(garbage in diskcache's ``Settings`` table, random bytes in cache.db or in a
value file) must surface only as :class:`CacheBackendError` (naming the path)
or as a miss, never as ``KeyError``/``ValueError``/``TypeError`` from inside
diskcache: a ``TypeError`` would even get past a LayeredCache as a usage error.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgcache_layers.cache import CacheBackendError, LayeredCache, MemoryCache
from sgcache_layers.file import FileCache

SURROGATE_KEYS = ["\ud800", "a\udfffb", "\ud83d\ude00", "shot:\udc80" * 3, "ü\ud800ü"]
SMALL = "small \ud800 value \udfff"
LARGE = "large \udc80 value " * 5000  # over diskcache's 32 KiB: a value file
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)


def _sql(path: Path, statement: str, *args: Any) -> None:
    conn = sqlite3.connect(path / "cache.db")
    try:
        with conn:
            conn.execute(statement, args)
    finally:
        conn.close()


# -- lone surrogates and other odd str -----------------------------------------------


@pytest.mark.parametrize("policy", [None, "least-recently-used"])
def test_surrogate_keys_and_values_round_trip(tmp_path: Path, policy: Any) -> None:
    path = tmp_path / "c"
    cache = FileCache(path, eviction_policy=policy)
    for index, key in enumerate(SURROGATE_KEYS):
        cache.set(key, SMALL + str(index))
    cache.set("plain", LARGE)
    cache.set("\ud800large", LARGE)
    for index, key in enumerate(SURROGATE_KEYS):
        assert cache.get(key) == SMALL + str(index)
    assert cache.get("plain") == LARGE
    assert cache.get("\ud800large") == LARGE
    assert sorted(cache.keys()) == sorted([*SURROGATE_KEYS, "plain", "\ud800large"])
    assert len(cache.values()) == len(SURROGATE_KEYS) + 2
    wanted = [*SURROGATE_KEYS, "plain", "absent\ud800"]
    got = cache.get_many(wanted)
    assert list(got) == [*SURROGATE_KEYS, "plain"]
    assert got["plain"] == LARGE
    cache.close()

    reopened = FileCache(path)
    assert reopened.get("\ud800") == SMALL + "0"
    reopened.set_many({"\udbff": LARGE, "b\ud800": "x\udfff", "b": "plain"})
    assert reopened.get_many(["\udbff", "b\ud800", "b"]) == {
        "\udbff": LARGE,
        "b\ud800": "x\udfff",
        "b": "plain",
    }
    reopened.clear("^b")
    assert "b\ud800" not in reopened.keys() and "b" not in reopened.keys()
    reopened.clear("\ud800")
    assert sorted(reopened.keys()) == sorted(
        ["a\udfffb", "\ud83d\ude00", "shot:\udc80" * 3, "plain", "\udbff"]
    )
    reopened.remove("\udbff")
    with pytest.raises(KeyError):
        reopened.get("\udbff")
    with pytest.raises(KeyError):
        reopened.remove("\udbff")
    reopened.clear()
    assert reopened.keys() == []
    assert list(path.rglob("*.val")) == []  # value files of surrogate text were removed too


def test_surrogate_key_does_not_alias_another_key(tmp_path: Path) -> None:
    """A BLOB key FileCache did not write (valid UTF-8, or not UTF-8 at all) is never a key."""
    path = tmp_path / "c"
    cache = FileCache(path)
    cache.set("abc", "text key")
    cache.set("\ud800", "surrogate key")
    cache.close()
    for blob in (b"abc", b"\xff\xfe", b"\xed\xa0\x80\xff"):
        _sql(
            path,
            "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count,"
            " tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, 1, NULL, ?)",
            blob,
            time.time(),
            time.time(),
            "planted",
        )
    cache = FileCache(path)
    assert sorted(cache.keys()) == ["abc", "\ud800"]
    assert cache.get("abc") == "text key"
    assert cache.get_many(["abc", "\ud800"]) == {"abc": "text key", "\ud800": "surrogate key"}


def test_surrogates_through_a_layered_cache(tmp_path: Path) -> None:
    layered = LayeredCache([MemoryCache(), FileCache(tmp_path / "c")])
    layered.set("\ud800", "\udfff")
    layered.set_many({"k\udc00": LARGE})
    fresh = LayeredCache([MemoryCache(), FileCache(tmp_path / "c")])
    assert fresh.get("\ud800") == "\udfff"
    assert fresh.get_many(["k\udc00"]) == {"k\udc00": LARGE}
    assert fresh.stats()[1]["errors"] == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.dictionaries(ANY_TEXT, ANY_TEXT | st.binary(max_size=12), max_size=6))
def test_any_str_round_trips(tmp_path: Path, items: dict[str, Any]) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "c"
    cache = FileCache(path)
    try:
        cache.set_many(items)
        for key, value in items.items():
            assert cache.get(key) == value
            assert type(cache.get(key)) is type(value)
        assert cache.get_many(list(items)) == items
        assert sorted(cache.keys()) == sorted(items)
        for key in items:
            cache.remove(key)
        assert cache.keys() == []
    finally:
        cache.close()


# -- garbage in the Settings table ---------------------------------------------------


GARBAGE_SETTINGS = [
    "UPDATE Settings SET value = 'garbage' WHERE key = 'size_limit'",
    "UPDATE Settings SET value = 'garbage' WHERE key = 'eviction_policy'",
    "UPDATE Settings SET value = 7 WHERE key = 'eviction_policy'",
    "UPDATE Settings SET value = 'garbage' WHERE key = 'cull_limit'",
    "UPDATE Settings SET value = 'garbage' WHERE key = 'statistics'",
    "UPDATE Settings SET value = 5 WHERE key = 'tag_index'",
    "UPDATE Settings SET value = 'wal; DROP TABLE Cache' WHERE key = 'sqlite_journal_mode'",
    "UPDATE Settings SET value = 'garbage' WHERE key = 'sqlite_mmap_size'",
    "UPDATE Settings SET value = 9 WHERE key = 'sqlite_synchronous'",
    "UPDATE Settings SET value = 'garbage' WHERE key = 'disk_min_file_size'",
    "UPDATE Settings SET value = x'00ff' WHERE key = 'sqlite_cache_size'",
    "UPDATE Settings SET value = 'garbage' WHERE key = 'count'",
    "UPDATE Settings SET value = NULL WHERE key = 'size'",
    "INSERT INTO Settings VALUES ('disk__directory', '/')",
    "INSERT INTO Settings VALUES ('_local', 'garbage')",
    "INSERT INTO Settings VALUES ('sqlite_user_version', '1; DROP TABLE Cache')",
    "INSERT INTO Settings VALUES (42, 'garbage')",
    "DROP TABLE Cache",
]


@pytest.mark.parametrize("statement", GARBAGE_SETTINGS)
def test_garbage_settings_are_a_backend_error_on_open(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "c"
    cache = FileCache(path)
    cache.set("a", "1")
    cache.close()
    try:
        _sql(path, statement)
    except sqlite3.IntegrityError:  # pragma: no cover - depends on SQLite's type checks
        pytest.skip("SQLite refused the garbage")
    try:
        reopened = FileCache(path)
    except CacheBackendError as exc:
        assert str(path) in str(exc)
        return
    # Opening may repair what it can (a dropped table is recreated): then it works.
    assert statement == "DROP TABLE Cache"
    with pytest.raises(KeyError):
        reopened.get("a")
    reopened.set("a", "2")
    assert reopened.get("a") == "2"


def test_settings_garbled_while_open_are_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "c"
    cache = FileCache(path, size_limit=1)
    cache.set("a", "1")
    _sql(path, "DELETE FROM Settings WHERE key = 'size'")
    with pytest.raises(CacheBackendError, match=str(path)):
        cache.set("b", "2")  # diskcache reads 'size' to decide whether to cull
    _sql(path, "UPDATE Settings SET value = 'garbage' WHERE key = 'count'")
    with pytest.raises(CacheBackendError, match=str(path)):
        len(cache)
    _sql(path, "UPDATE Settings SET value = 'x; y' WHERE key = 'sqlite_mmap_size'")
    cache.close()  # the next use opens a connection, which applies the sqlite_ settings
    with pytest.raises(CacheBackendError, match=str(path)):
        cache.get("a")


def test_a_session_style_maker_degrades_on_garbage_settings(tmp_path: Path) -> None:
    """What a Session's cache_maker relies on: a CacheBackendError, then memory only."""
    path = tmp_path / "c"
    FileCache(path).close()
    _sql(path, "UPDATE Settings SET value = 'garbage' WHERE key = 'eviction_policy'")
    layers: list[Any] = [MemoryCache()]
    try:
        layers.append(FileCache(path))
    except CacheBackendError:
        pass
    assert len(layers) == 1


@pytest.mark.parametrize(
    ("settings_", "error"),
    [
        ({"eviction_policy": "nonsense"}, ValueError),
        ({"size_limit": -1}, ValueError),
        ({"size_limit": "big"}, ValueError),
        ({"sqlite_journal_mode": "wal; DROP TABLE Cache"}, ValueError),
        ({"cull_limit": "x"}, ValueError),
        ({"no_such_setting": 1}, TypeError),
        ({"count": 5}, TypeError),
        ({"disk_directory": "/"}, TypeError),
    ],
)
def test_bad_explicit_settings_are_the_callers_error(
    tmp_path: Path, settings_: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        FileCache(tmp_path / "c", **settings_)


def test_good_explicit_settings_still_pass(tmp_path: Path) -> None:
    cache = FileCache(
        tmp_path / "c",
        size_limit=2**20,
        eviction_policy="least-frequently-used",
        cull_limit=5,
        statistics=True,
        sqlite_synchronous="FULL",
        sqlite_cache_size=-2000,
        sqlite_busy_timeout=100,
    )
    cache.set("a", "1")
    assert cache.get("a") == "1"
    assert cache.get_many(["a"]) == {"a": "1"}


# -- random damage to cache.db and value files -----------------------------------------


def _exercise(path: Path) -> None:
    """Open and use the cache: only CacheBackendError and KeyError may come out."""
    try:
        cache = FileCache(path)
    except CacheBackendError as exc:
        assert str(path) in str(exc)
        return
    try:
        for call in (
            lambda: cache.get("k1"),
            lambda: cache.get("big"),
            lambda: cache.get_many(["k0", "k2", "big", "\ud800"]),
            lambda: cache.keys(),
            lambda: cache.values(),
            lambda: cache.set("new", "value"),
            lambda: cache.set("newbig", "y" * 40_000),
            lambda: cache.set_many({"k3": "three", "k4": b"four"}),
            lambda: cache.remove("k0"),
            lambda: len(cache),
            lambda: cache.clear("^k"),
            lambda: cache.clear(),
        ):
            try:
                call()
            except (CacheBackendError, KeyError):
                pass
    finally:
        cache.close()


def _populated(path: Path) -> None:
    cache = FileCache(path)
    cache.set_many({f"k{index}": f"value {index}" for index in range(40)})
    cache.set("\ud800", "\udfff")
    cache.set("big", "x" * 40_000)
    cache.set("bigs", "\ud800" * 40_000)
    cache.set("bigb", os.urandom(40_000))
    cache.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    damage=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64)), max_size=8),
)
def test_random_bytes_in_the_database_never_escape(
    tmp_path: Path, damage: list[tuple[float, bytes]]
) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "c"
    _populated(path)
    database = path / "cache.db"
    size = database.stat().st_size
    with open(database, "r+b") as handle:  # no SQLite connection is open on it
        for where, junk in damage:
            handle.seek(int(where * max(size - len(junk), 0)))
            handle.write(junk)
    _exercise(path)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(max_size=200), truncate=st.booleans())
def test_random_bytes_in_value_files_never_escape(
    tmp_path: Path, junk: bytes, truncate: bool
) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "c"
    _populated(path)
    for value_file in path.rglob("*.val"):
        with open(value_file, "r+b") as handle:
            if truncate:
                handle.truncate(0)
            handle.write(junk)
    _exercise(path)


def test_undecodable_value_file_is_a_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c"
    cache = FileCache(path)
    cache.set("big", "é" * 40_000)
    cache.set("bigs", "\ud800" * 40_000)
    for value_file in path.rglob("*.val"):
        value_file.write_bytes(b"\xff\xfe not utf-8")
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        for key in ("big", "bigs"):
            with pytest.raises(KeyError):
                cache.get(key)
        assert cache.get_many(["big", "bigs"]) == {}
    assert "not valid UTF-8" in caplog.text
