"""``sgcache-layers serve`` and the command-line error contract."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
from shotgun_api3.shotgun import Shotgun

from sgcache_layers.cli import main

_SCRIPT = Path(sys.executable).with_name("sgcache-layers")
# The installed console script when there is one, else the same entry point through Python.
CLI = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "import sys; from sgcache_layers.cli import main; sys.exit(main())"]
)


def _read_banner(proc: subprocess.Popen[str], deadline: float) -> Dict[str, str]:
    fields: Dict[str, str] = {}
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if ": " in line:
            key, value = line.rstrip("\n").split(": ", 1)
            fields[key] = value
        if line.startswith("Press Ctrl-C"):
            return fields
    raise AssertionError(f"no banner from serve; got {fields}")


def test_serve_prints_url_script_and_key_and_answers() -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--scale", "0.02", "--seed", "3", "--latency", "0.001"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = _read_banner(proc, time.monotonic() + 20)
        assert banner["URL"].startswith("http://127.0.0.1:")
        assert banner["Script name"] == "sgcache_tests"
        assert len(banner["API key"]) >= 16
        sg = Shotgun(banner["URL"], banner["Script name"], banner["API key"])
        assert sg.find("Shot", [], ["code"])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "Stopped after" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_serve_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--scale", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read_banner(proc, time.monotonic() + 20)
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "abc"],
        ["serve", "--port", "70000"],
        ["serve", "--latency", "-1"],
        ["serve", "--scale", "0"],
        ["serve", "--bogus"],
        ["nonsense"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: List[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sgcache-layers: error: ")
    assert "Traceback" not in captured.err and captured.out == ""


def test_bad_arguments_in_a_real_process() -> None:
    proc = subprocess.run(
        [*CLI, "serve", "--scale", "lots"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_placeholder_subcommands_exist(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("demo", "stats", "clear"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
    assert "usage: sgcache-layers" in capsys.readouterr().out
