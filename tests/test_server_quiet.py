"""Clients hanging up mid-request are routine: the server logs them, and prints nothing."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import time

import pytest

from sgcache_layers.testing import ShotgridServer

LOGGER = "sgcache_layers.testing.server"


def _request(server: ShotgridServer) -> bytes:
    auth = {"script_name": server.script_name, "script_key": server.api_key}
    params = {"type": "Shot", "filters": {"logical_operator": "and", "conditions": []}}
    body = json.dumps({"method_name": "read", "params": [auth, params]}).encode()
    head = f"POST /api3/json HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN, as a killed client does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_dropped_clients_print_nothing(
    shotgrid_server: ShotgridServer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    request = _request(shotgrid_server)
    address = ("127.0.0.1", shotgrid_server.port)
    capfd.readouterr()
    shotgrid_server.reset_requests()
    shotgrid_server.inject_fault("slow", delay=0.2, count=3)

    for _ in range(3):  # answered after the client is gone: the write fails
        conn = socket.create_connection(address)
        conn.sendall(request)
        _reset(conn)
    half = socket.create_connection(address)  # a body cut short
    half.sendall(request[: len(request) - 20])
    _reset(half)
    headers = socket.create_connection(address)  # headers cut short
    headers.sendall(request[:30])
    _reset(headers)
    garbage = socket.create_connection(address)  # not HTTP at all, then gone
    garbage.sendall(b"\x16\x03\x01 hello?\r\n\r\n")
    garbage.close()

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gone = [r for r in caplog.records if r.name == LOGGER and "went away" in r.getMessage()]
        if len(gone) >= 4 and shotgrid_server.request_count >= 3:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    # the server still answers, and nothing reached stdout or stderr
    conn = http.client.HTTPConnection(*address, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().status == 200
    conn.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    gone = [r for r in caplog.records if r.name == LOGGER and "went away" in r.getMessage()]
    assert len(gone) >= 4 and all(r.levelno == logging.DEBUG for r in gone)
    assert not [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
