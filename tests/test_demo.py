"""``sgcache-layers demo``: end to end in a subprocess, and its parts in-process.

The verdict and the exit status rest on what is deterministic (the warm runs' requests,
the answers); times are only reported.  Progress bars appear on a terminal, or when forced,
and never in a report written to a file.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
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


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "demo", *FAST, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_demo_end_to_end_in_a_subprocess() -> None:
    proc = _demo()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # Output to pipes, not a terminal: no progress bar at all.
    assert proc.stderr == ""
    assert "\r" not in proc.stdout
    out = proc.stdout
    assert "scale 0.05" in out
    assert re.search(r"^PASS: answers match across the three runs \(digest \w+\)$", out, re.M)
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
    assert out.rstrip().splitlines()[-1] == "Result: PASS"
    # The speed is reported as measured (median, and the spread of the warm runs), with no
    # verdict of its own.
    assert re.search(r"^  cold run: [\d.]+x \([\d.]+ s\)$", out, re.M)
    assert re.search(
        r"^  warm run: [\d.]+x, median of 3 new processes \(range ([\d.]+)x-([\d.]+)x: "
        r"[\d.]+ s to [\d.]+ s\)$",
        out,
        re.M,
    )
    verdicts = [line for line in out.splitlines() if re.match(r"^(PASS|FAIL)\b", line)]
    assert len(verdicts) == 2 and not any("faster" in line or "x " in line for line in verdicts)
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
    assert "FAIL: answers differ between the runs" in text
    assert "median time of 2 new processes" in text
    assert text.rstrip().splitlines()[-1] == "Result: FAIL"


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


def _report(warm_requests: int, digests: List[str], warm_seconds: List[float]) -> demo.DemoReport:
    """A report of three runs, plain taking 1 s, with the given warm results."""
    plain = demo.RunResult("plain shotgun_api3", 9, None, 1.0, digests[0], {"shots": 5})
    cold = demo.RunResult("Session + FileCache, cold", 9, 8, 1.2, digests[1], {"shots": 5})
    warm = demo.RunResult(
        "Session + FileCache, warm, new process",
        warm_requests,
        warm_requests,
        sorted(warm_seconds)[len(warm_seconds) // 2],
        digests[2],
        {"shots": 5},
    )
    target = demo.Target("http://127.0.0.1:1", "tool", "key", "Proj", "ada")
    return demo.DemoReport(
        scale=0.05,
        seed=0,
        latency=0.0,
        production={"Shot": 5},
        target=target,
        cache_dir="/tmp/x",
        temporary=True,
        results=(plain, cold, warm),
        warm_seconds=tuple(warm_seconds),
    )


def test_the_verdict_rests_on_requests_and_answers_not_on_speed() -> None:
    # A warm run slower than plain still passes: the machine's speed is not the verdict.
    slow = _report(0, ["a", "a", "a"], [2.0, 4.0, 3.0])
    assert slow.checks == {"warm_requests_zero": True, "answers_match": True}
    assert slow.exit_status == 0
    speed = slow.speedups
    assert (speed["warm_min"], speed["warm_median"], speed["warm_max"]) == (0.25, 1 / 3, 0.5)
    text = slow.format_text()
    assert "FAIL" not in text and text.endswith("Result: PASS")
    assert "0.3x, median of 3 new processes (range 0.2x-0.5x: 4.000 s to 2.000 s)" in text

    requests = _report(4, ["a", "a", "a"], [0.01])
    assert requests.checks["warm_requests_zero"] is False and requests.exit_status == 1
    text = requests.format_text()
    assert "FAIL: the warm run in new processes made 4 requests (expected 0)" in text
    assert text.endswith("Result: FAIL")

    answers = _report(0, ["a", "b", "a"], [0.01])
    assert answers.checks["answers_match"] is False and answers.exit_status == 1
    assert "FAIL: answers differ between the runs (digests a, b)" in answers.format_text()
    data = answers.as_json()
    assert data["ok"] is False and data["exit_status"] == 1
    assert data["checks"] == {"warm_requests_zero": True, "answers_match": False}


def test_json_report_for_scripts() -> None:
    proc = _demo("--json", "--warm-runs", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["exit_status"] == 0
    assert data["checks"] == {"warm_requests_zero": True, "answers_match": True}
    assert [run["label"] for run in data["runs"]] == [
        "plain shotgun_api3",
        "Session + FileCache, cold",
        "Session + FileCache, warm, new process",
    ]
    plain, cold, warm = data["runs"]
    assert warm["requests"] == 0 and warm["session_requests"] == 0
    assert plain["requests"] > 0 and plain["session_requests"] is None
    assert plain["digest"] == cold["digest"] == warm["digest"]
    assert plain["rows"] == warm["rows"] and plain["rows"]["shots"] > 0
    assert len(data["warm_seconds"]) == 2
    speed = data["speedup"]
    assert speed["warm_min"] <= speed["warm_median"] <= speed["warm_max"]
    assert data["site"]["scale"] == 0.05 and data["site"]["production"]["Shot"] > 0
    assert data["cache_dir_kept"] is False and not os.path.exists(data["cache_dir"])


def test_forced_progress_into_a_file_leaves_the_report_on_its_own_lines(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with open(log, "w") as both:  # stdout and stderr into one file, as with 2>&1
        proc = subprocess.run(
            [*CLI, "demo", *FAST, "--warm-runs", "1", "--progress"],
            stdout=both,
            stderr=both,
            timeout=120,
            check=False,
        )
    text = log.read_bytes().decode("utf-8")  # as written: no newline translation
    assert proc.returncode == 0, text
    assert "\r" in text and "read" in text  # the bar was drawn, as asked
    lines = text.split("\n")
    report = lines[lines.index(next(line for line in lines if line.startswith("Demo site:"))) :]
    assert all("\r" not in line for line in report), report
    assert "Result: PASS" in report


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_bars_appear_on_a_terminal_by_default() -> None:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    # A terminal of 24 lines of 100 columns (a new pseudo-terminal has no size).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: List[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                return
            if not data:
                return
            chunks.append(data)

    try:
        proc = subprocess.Popen(
            [*CLI, "demo", *FAST, "--warm-runs", "1"],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
        )
        os.close(slave)
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        out, _ = proc.communicate(timeout=120)
        reader.join(timeout=10)
    finally:
        os.close(master)
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, terminal
    assert "read/s" in terminal  # the bar, on the terminal
    assert "\r" not in out and out.rstrip().endswith("Result: PASS")  # a clean report
