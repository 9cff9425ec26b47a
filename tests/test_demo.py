"""``sgcache-layers demo``: end to end in a subprocess, and its parts in-process."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from sgcache_layers import demo
from sgcache_layers.cli import main
from sgcache_layers.testing.server import ShotgridServer

_SCRIPT = Path(sys.executable).with_name("sgcache-layers")
CLI = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "import sys; from sgcache_layers.cli import main; sys.exit(main())"]
)
FAST = ["--latency", "0.005", "--scale", "0.05"]


def _table(out: str) -> Dict[str, List[str]]:
    """Rows of the printed table by run label: [requests, session, wall time, speed-up]."""
    rows: Dict[str, List[str]] = {}
    for line in out.splitlines():
        match = re.match(
            r"^(plain shotgun_api3|Session \+ FileCache, [\w ,]+?)\s+(\d+)\s+(\S+)\s+"
            r"([\d.]+ s)\s+([\d.]+x)$",
            line,
        )
        if match:
            rows[match.group(1)] = list(match.groups()[1:])
    return rows


def _target(server: ShotgridServer) -> demo.Target:
    project = server.store.find_one(
        "Project", [["id", "is", server.production["Project"][0]["id"]]], ["name"]
    )
    user = server.store.find_one(
        "HumanUser", [["id", "is", server.production["HumanUser"][0]["id"]]], ["login"]
    )
    assert project is not None and user is not None
    return demo.Target(
        server.url, server.script_name, server.api_key, project["name"], user["login"]
    )


def test_demo_end_to_end_in_a_subprocess() -> None:
    proc = subprocess.run(
        [*CLI, "demo", *FAST], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "scale 0.05" in out
    assert "answers match: yes" in out
    rows = _table(out)
    assert list(rows) == [
        "plain shotgun_api3",
        "Session + FileCache, cold",
        "Session + FileCache, warm, new process",
    ], out
    plain, cold, warm = rows.values()
    assert int(plain[0]) > 0 and plain[1] == "-"
    assert int(cold[0]) == int(plain[0])
    assert warm[0] == "0" and warm[1] == "0"
    assert "PASS: the warm run in new processes made 0 requests" in out
    assert re.search(r"^(PASS|FAIL): the warm run was [\d.]+x faster", out, re.M)
    temporary = re.search(r"^Cache directory: (.+) \(temporary, removed\)$", out, re.M)
    assert temporary is not None
    assert not os.path.exists(temporary.group(1))


def test_demo_keeps_a_given_cache_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache_dir = tmp_path / "demo-cache"
    status = main(["demo", *FAST, "--seed", "3", "--cache-dir", str(cache_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"Cache directory: {cache_dir} (kept)" in out
    assert (cache_dir / "cache.db").is_file()
    assert main(["stats", "--cache-dir", str(cache_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    (space,) = stats["namespaces"]
    assert space["rows"]["Shot"] > 0
    assert space["records"]["query"]["Task"] == 1


def test_plain_and_session_reads_give_the_same_answers(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    target = _target(shotgrid_server)
    steps: List[str] = []
    plain, _, none = demo._timed_reads(target, None, steps.append)
    assert steps == list(demo.STEPS) and none is None
    shotgrid_server.reset_requests()
    cold, _, cold_requests = demo._timed_reads(target, str(tmp_path), lambda s: None)
    assert cold_requests and shotgrid_server.request_count >= cold_requests
    shotgrid_server.reset_requests()
    warm, _, warm_requests = demo._timed_reads(target, str(tmp_path), lambda s: None)
    assert warm_requests == 0 and shotgrid_server.request_count == 0
    assert demo.digest(plain) == demo.digest(cold) == demo.digest(warm)
    assert plain["latest_versions"] and plain["tasks"] and len(plain["project"]) == 1
    # Every task row carries its step code from the deep field.
    assert all(isinstance(row[-1], str) for row in plain["tasks"])


def test_differing_answers_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(target: demo.Target, cache_dir: str) -> Dict[str, Any]:
        return {"seconds": 0.01, "session_requests": 0, "digest": "0" * 16, "summary": {}}

    monkeypatch.setattr(demo, "_run_fresh_process", wrong)
    out = io.StringIO()
    assert demo.run_demo(latency=0, scale=0.05, warm_runs=2, progress=False, out=out) == 1
    text = out.getvalue()
    assert "answers match: no" in text
    assert "Warm run: 2 new processes" in text


def test_cache_dir_that_is_a_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["demo", "--cache-dir", str(afile), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "not a directory" in err


def test_corrupt_cache_dir_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cache.db").write_bytes(b"garbage" * 1000)
    assert main(["demo", *FAST, "--cache-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_child_without_api_key_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(demo.API_KEY_ENV, raising=False)
    argv = ["warm", "--url", "http://127.0.0.1:1", "--script-name", "s", "--cache-dir", "."]
    assert demo.child_main([*argv, "--project", "p", "--login", "l"]) == 2
    assert demo.API_KEY_ENV in capsys.readouterr().err


def test_format_table_aligns_and_computes_speed_ups() -> None:
    results = [
        demo.RunResult("plain", 10, None, 2.0, "a", {}),
        demo.RunResult("warm", 0, 0, 0.05, "a", {}),
    ]
    lines = demo.format_table(results).splitlines()
    assert lines[0].split() == ["Run", "Requests", "Session", "Wall", "time", "Speed-up"]
    assert lines[2].split()[-1] == "1.0x" and lines[3].split()[-1] == "40.0x"
    assert len({len(line) for line in lines[:2]}) == 1
