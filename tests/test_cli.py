"""``sgcache-layers stats`` and ``clear`` on a cache directory a real Session filled, and errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from sgcache_layers import FileCache, SerialisedCache, Session
from sgcache_layers.cli import cache_stats, main
from sgcache_layers.records import PREFIX
from sgcache_layers.testing.server import ShotgridServer

_SCRIPT = Path(sys.executable).with_name("sgcache-layers")
CLI = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "import sys; from sgcache_layers.cli import main; sys.exit(main())"]
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("sgcache-layers: error: ")
    return lines[0]


@pytest.fixture
def populated(shotgrid_server: ShotgridServer, tmp_path: Path) -> Dict[str, Any]:
    """A cache directory filled by a Session with shots, tasks and a project."""
    path = tmp_path / "cache"

    def cache_maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(path), encode=session.encode, decode=session.decode)

    with Session(shotgrid_server.client(), cache=cache_maker) as session:
        shots = session.find("Shot", [], ["code", "sg_sequence"])
        tasks = session.find("Task", [], ["content", "step"])
        projects = session.find("Project", [], ["name"])
        namespace = session.namespace
    return {
        "path": str(path),
        "shots": len(shots),
        "tasks": len(tasks),
        "projects": len(projects),
        "site": shotgrid_server.url,
        "namespace": namespace,
        "api_key": shotgrid_server.api_key,
    }


def _query_count(stats: Dict[str, Any], entity_type: str) -> int:
    (space,) = stats["namespaces"]
    return int(space["records"].get("query", {}).get(entity_type, 0))


# ----------------------------------------------------------------------------------- stats


def test_stats_text_breaks_down_by_namespace_kind_and_type(
    populated: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--cache-dir", populated["path"]]) == 0
    out = capsys.readouterr().out
    assert f"Cache directory: {populated['path']}" in out
    assert re.search(r"^Entries: \d+$", out, re.M)
    assert re.search(r"^Size on disk: .* \(\d+ bytes\)$", out, re.M)
    assert f"Namespace {populated['site']} | script=sgcache_tests;tz=local;l10n=0 ({PREFIX})" in out
    assert f"  query Shot: 1 ({populated['shots']} rows)\n" in out
    assert f"  query Task: 1 ({populated['tasks']} rows)\n" in out
    assert "shared by every identity" in out and "generations:" in out
    assert populated["api_key"] not in out


def test_stats_json_matches_the_cache(populated: Dict[str, Any]) -> None:
    proc = _run("stats", "--cache-dir", populated["path"], "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    cache = FileCache(populated["path"])
    try:
        assert stats["entries"] == len(cache.keys())
    finally:
        cache.close()
    assert stats["bytes"] > 0
    (space,) = stats["namespaces"]
    assert space["site"] == populated["site"]
    assert space["identity"] == "script=sgcache_tests;tz=local;l10n=0"
    (shared,) = stats["sites"]  # epoch, clock and generations: the site's, every identity's
    assert shared["site"] == populated["site"]
    assert space["entries"] + shared["entries"] == stats["entries"]
    assert 0 < shared["generations"] < shared["entries"]
    assert space["rows"]["Shot"] == populated["shots"]
    assert space["rows"]["Project"] == populated["projects"]
    assert space["records"]["query"] == {"Project": 1, "Shot": 1, "Task": 1}
    assert "bookkeeping" not in space["records"]
    assert stats["other_entries"] == 0


def test_stats_counts_foreign_keys_and_old_epochs(populated: Dict[str, Any]) -> None:
    cache = FileCache(populated["path"])
    try:
        cache.set("my-own-key", "value")
        old = populated["namespace"].rsplit("|", 1)[0] + "|old-epoch|q|Shot|abc"
        cache.set(old, "{}")
        stats = cache_stats(cache)
    finally:
        cache.close()
    assert stats["other_entries"] == 1
    (space,) = stats["namespaces"]
    assert space["old_epoch_entries"] == 1
    assert space["records"]["query"]["Shot"] == 2
    assert space["rows"]["Shot"] == populated["shots"]  # the old epoch's rows do not count


# ----------------------------------------------------------------------------------- clear


def test_clear_with_pattern_removes_only_matching_keys(
    populated: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = populated["path"]
    assert main(["clear", "--cache-dir", path, "--pattern", r"\|q\|Shot\|"]) == 0
    out = capsys.readouterr().out
    assert "Removed 1 entries matching" in out
    assert main(["stats", "--cache-dir", path, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert _query_count(stats, "Shot") == 0
    assert _query_count(stats, "Task") == 1


def test_clear_everything(populated: Dict[str, Any]) -> None:
    before = FileCache(populated["path"])
    try:
        total = len(before.keys())
    finally:
        before.close()
    proc = _run("clear", "--cache-dir", populated["path"])
    assert proc.returncode == 0, proc.stderr
    assert f"Removed {total} entries from {populated['path']} (0 left)." in proc.stdout
    after = FileCache(populated["path"])
    try:
        assert after.keys() == []
    finally:
        after.close()


def test_clear_pattern_matching_nothing(
    populated: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clear", "--cache-dir", populated["path"], "--pattern", "^nothing$"]) == 0
    assert "Removed 0 entries matching '^nothing$'" in capsys.readouterr().out


def _entries(path: str) -> List[str]:
    cache = FileCache(path)
    try:
        return sorted(cache.keys())
    finally:
        cache.close()


def test_clear_dry_run_counts_and_removes_nothing(
    populated: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = populated["path"]
    before = _entries(path)
    assert main(["clear", "--cache-dir", path, "--pattern", r"\|q\|", "--dry-run"]) == 0
    out = capsys.readouterr().out
    queries = sum(1 for key in before if "|q|" in key)
    assert queries == 3  # Shot, Task and Project
    assert out == (
        f"Would remove {queries} entries matching '\\\\|q\\\\|' from {path} "
        f"({len(before) - queries} would be left); nothing was removed (--dry-run).\n"
    )
    assert _entries(path) == before
    assert main(["clear", "--cache-dir", path, "--dry-run"]) == 0
    assert f"Would remove {len(before)} entries from {path} (0 would be left)" in (
        capsys.readouterr().out
    )
    assert _entries(path) == before


def test_clear_json_reports_what_was_and_would_be_removed(populated: Dict[str, Any]) -> None:
    path = populated["path"]
    before = _entries(path)
    pattern = r"\|g\|"  # the change generations
    generations = [key for key in before if re.search(pattern, key)]
    assert generations
    dry = _run("clear", "--cache-dir", path, "--pattern", pattern, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "cache_dir": path,
        "pattern": pattern,
        "dry_run": True,
        "matched": len(generations),
        "removed": 0,
        "left": len(before),
    }
    assert _entries(path) == before
    done = _run("clear", "--cache-dir", path, "--pattern", pattern, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "cache_dir": path,
        "pattern": pattern,
        "dry_run": False,
        "matched": len(generations),
        "removed": len(generations),
        "left": len(before) - len(generations),
    }
    assert _entries(path) == [key for key in before if key not in generations]


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("command", ["stats", "clear"])
def test_missing_directory_is_an_error_and_is_not_created(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing" / "cache"
    assert main([command, "--cache-dir", str(missing)]) == 2
    captured = capsys.readouterr()
    assert "does not exist" in _one_error_line(captured.err)
    assert captured.out == ""
    assert not missing.exists()
    assert not missing.parent.exists()


@pytest.mark.parametrize("command", ["stats", "clear"])
def test_directory_without_database_is_an_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("not a cache")
    assert main([command, "--cache-dir", str(tmp_path)]) == 2
    assert "no cache.db" in _one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


@pytest.mark.parametrize("command", ["stats", "clear"])
def test_corrupt_database_is_an_error(command: str, populated: Dict[str, Any]) -> None:
    database = Path(populated["path"]) / "cache.db"
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    database.write_bytes(b"this is not an SQLite database\n" * 200)
    proc = _run(command, "--cache-dir", populated["path"])
    assert proc.returncode == 2
    assert populated["path"] in _one_error_line(proc.stderr)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["clear", "--cache-dir", ".", "--pattern", "(unclosed"], "bad regular expression"),
        (["no-such-command"], "invalid choice"),
        (["demo", "--latency", "fast"], "expected a number"),
        (["demo", "--scale", "0"], "must be > 0"),
        (["demo", "--seed", "x"], "expected an integer"),
        (["demo", "--warm-runs", "0"], "must be >= 1"),
        (["stats"], "--cache-dir"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    argv: List[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in _one_error_line(captured.err)
    assert captured.out == ""


def test_bad_regex_in_a_real_process() -> None:
    proc = _run("clear", "--cache-dir", "/nonexistent", "--pattern", "[")
    assert proc.returncode == 2
    assert "bad regular expression" in _one_error_line(proc.stderr)
