"""FileCache.change_token: read from the WAL index with no query, and never blind.

A session skips its bookkeeping read while the authority's change token is unchanged, so a
token that fails to move after another process's commit would serve stale answers.  These
tests write from real processes and check that the token moves every time, including after
SQLite deleted and re-created the ``-shm`` file the token is read from.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sgcache_layers.file import FileCache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shared memory files")

#: Writes keys given on stdin, one per line, answering "ok" after each commit.
WRITER = textwrap.dedent(
    """
    import sys
    from sgcache_layers.file import FileCache

    cache = FileCache(sys.argv[1])
    for line in sys.stdin:
        cache.set(line.strip(), "v")
        print("ok", flush=True)
    cache.close()
    """
)


def _writer(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _write(writer: subprocess.Popen[str], key: str) -> None:
    assert writer.stdin is not None and writer.stdout is not None
    writer.stdin.write(key + "\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "ok"


def test_every_commit_of_another_process_moves_the_token(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c")
    cache.set("mine", "v")
    writer = _writer(tmp_path / "c")
    try:
        seen = {cache.change_token()}
        for index in range(50):
            _write(writer, f"k{index}")
            token = cache.change_token()
            assert token is not None and token not in seen, index
            seen.add(token)
            assert cache.change_token() == token  # and stays put while nobody writes
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
    assert cache._shm is not None and cache._shm[1] is not None  # it was the WAL index
    cache.close()


def test_a_shm_file_deleted_and_made_again_is_followed(tmp_path: Path) -> None:
    """Closing the last connection deletes ``cache.db-shm``; the next one makes a new file.
    A cache used again after its close must read the new file, not the deleted one."""
    path = tmp_path / "c"
    cache = FileCache(path)
    cache.set("a", "v")
    before = cache.change_token()
    shm = path / "cache.db-shm"
    cache.close()  # the only connection: SQLite removes the WAL and its index
    assert not shm.exists()
    writer = _writer(path)
    try:
        _write(writer, "b")  # a new -shm, made by another process
        after = cache.change_token()
        assert after is not None and after != before
        _write(writer, "c")
        assert cache.change_token() != after  # the new file is the one being read
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
    cache.close()


def test_other_journal_modes_fall_back_to_data_version(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c", sqlite_journal_mode="delete")
    cache.set("a", "v")
    token = cache.change_token()
    writer = _writer(tmp_path / "c")
    try:
        _write(writer, "b")
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
    assert cache.change_token() != token
    assert cache._shm is not None and cache._shm[1] is None  # no WAL index to read
    cache.close()
