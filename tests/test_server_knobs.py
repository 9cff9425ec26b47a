"""Latency, faults, the request log, identities and the server lifecycle."""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from typing import List

import pytest
import shotgun_api3

from sgcache_layers.testing import ShotgridServer, lognormal_latency

PROJECT = {"type": "Project", "id": 1}


def _timed_find_one(sg: shotgun_api3.Shotgun) -> float:
    start = time.perf_counter()
    sg.find_one("Shot", [["id", "is", 1]], ["code"])
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ latency


def test_latency_makes_calls_slower(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    fast = min(_timed_find_one(sg) for _ in range(3))
    shotgrid_server.latency = 0.15
    slow = _timed_find_one(sg)
    assert slow >= 0.14 > fast
    shotgrid_server.set_latency(lambda: 0.05)
    assert _timed_find_one(sg) >= 0.045
    shotgrid_server.set_latency(None)
    assert _timed_find_one(sg) < 0.14


def test_lognormal_latency_is_seeded_and_centred() -> None:
    draw_a, draw_b = lognormal_latency(0.02, seed=3), lognormal_latency(0.02, seed=3)
    values = [draw_a() for _ in range(400)]
    assert values == [draw_b() for _ in range(400)]
    assert 0.015 < statistics.median(values) < 0.027
    capped = lognormal_latency(0.02, sigma=2.0, maximum=0.05)
    assert max(capped() for _ in range(200)) <= 0.05


def test_find_one_round_trip_is_fast_without_latency(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    for _ in range(5):
        _timed_find_one(sg)
    median = statistics.median(_timed_find_one(sg) for _ in range(50))
    print(f"find_one loopback round trip: median {median * 1000:.2f} ms")
    assert median < 0.020  # generous: the benchmark checks the < 2 ms target


def test_sockets_use_tcp_nodelay(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    sg.find_one("Shot", [])
    httpd = shotgrid_server._httpd
    assert httpd is not None
    with httpd.connections_lock:
        conns = list(httpd.connections)
    assert conns
    assert all(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for c in conns)


# ------------------------------------------------------------------------------ faults


def test_503_raises_on_the_client_once(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    rule = shotgrid_server.inject_fault("503", method="find", count=1)
    sg.create("Shot", {"code": "unaffected", "project": PROJECT})  # other methods pass
    with pytest.raises(shotgun_api3.ProtocolError) as caught:
        sg.find("Shot", [])
    assert caught.value.errcode == 503
    assert rule.fired == 1 and rule.exhausted
    assert sg.find("Shot", [])  # the fault was used up
    statuses = [(r.method, r.status, r.fault) for r in shotgrid_server.requests[-3:]]
    assert statuses == [("create", 200, None), ("read", 503, "503"), ("read", 200, None)]


def test_502_is_retried_by_the_client(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shotgrid_server.reset_requests()
    shotgrid_server.inject_fault("502", method="read", count=1)
    assert sg.find_one("Shot", [["id", "is", 1]], ["code"]) is not None
    assert [r.status for r in shotgrid_server.requests] == [502, 200]


def test_dropped_connections(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shotgrid_server.reset_requests()
    # httplib2 resends once after the server hangs up, so one drop is invisible...
    shotgrid_server.inject_fault("drop", method="find", count=1)
    assert sg.find_one("Shot", [["id", "is", 1]]) is not None
    assert [r.status for r in shotgrid_server.requests] == [0, 200]
    # ...and two in a row reach the caller.
    shotgrid_server.inject_fault("drop", method="find", count=2)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        sg.find_one("Shot", [["id", "is", 1]])
    assert sg.find_one("Shot", [["id", "is", 1]]) is not None


def test_drop_after_work_loses_only_the_answer(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shotgrid_server.inject_fault("drop_after", method="create", count=2)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        sg.create("Asset", {"code": "ghost", "project": PROJECT})
    # the work was done (twice: the transport resent the request)
    assert len(sg.find("Asset", [["code", "is", "ghost"]])) == 2


def test_slow_and_error_faults_and_request_numbers(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shotgrid_server.reset_requests()
    shotgrid_server.inject_fault("slow", method="read", entity_type="Asset", delay=0.2)
    start = time.perf_counter()
    sg.find("Asset", [])
    assert time.perf_counter() - start >= 0.19
    shotgrid_server.inject_fault("error", on_request=3, message="boom")
    sg.find("Shot", [])  # request 2
    with pytest.raises(shotgun_api3.Fault, match="boom"):
        sg.find("Shot", [])  # request 3
    shotgrid_server.inject_fault("503", method="read", skip=1, count=1)
    sg.find("Shot", [])  # passes (skipped)
    with pytest.raises(shotgun_api3.ProtocolError):
        sg.find("Shot", [])
    assert [r.fault for r in shotgrid_server.requests] == ["slow", None, "error", None, "503"]
    with pytest.raises(ValueError):
        shotgrid_server.inject_fault("teapot")


def test_rate_faults_are_seeded() -> None:
    def pattern() -> List[int]:
        with ShotgridServer(fault_seed=7) as server:
            server.inject_fault("503", method="find", rate=0.4, count=None)
            sg = server.client()
            server.reset_requests()
            for _ in range(20):
                try:
                    sg.find("Project", [])
                except shotgun_api3.ProtocolError:
                    pass
            return [r.status for r in server.requests]

    first = pattern()
    assert first == pattern()
    assert 2 <= first.count(503) <= 14 and 503 in first and 200 in first


# ------------------------------------------------------------------------------ request log


def test_request_log_records_and_counts(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shotgrid_server.reset_requests()
    assert shotgrid_server.request_count == 0 and shotgrid_server.requests == []
    before = time.time()
    sg.find("Shot", [["code", "is", "x"]], ["code"])
    sg.create("Asset", {"code": "logged", "project": PROJECT})
    sg.schema_read()
    log = shotgrid_server.requests
    assert [(r.number, r.method, r.entity_type) for r in log] == [
        (1, "read", "Shot"),
        (2, "create", "Asset"),
        (3, "schema_read", None),
    ]
    assert log[0].params["filters"]["conditions"][0]["path"] == "code"
    assert log[0].identity == shotgrid_server.script_name
    assert all(before <= r.time <= time.time() and r.duration >= 0 for r in log)
    assert shotgrid_server.request_count == 3
    assert shotgrid_server.count_requests("find") == 1
    assert shotgrid_server.count_requests(entity_type="Asset") == 1
    shotgrid_server.reset_requests()
    assert shotgrid_server.request_count == 0


def test_request_log_is_thread_safe(shotgrid_server: ShotgridServer) -> None:
    shotgrid_server.reset_requests()
    errors: List[BaseException] = []

    def work() -> None:
        try:
            sg = shotgrid_server.client(connect=False)
            for _ in range(15):
                sg.find_one("Shot", [["id", "is", 1]])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log = shotgrid_server.requests
    assert shotgrid_server.request_count == len(log) == 6 * 16  # one info() per client
    assert sorted(r.number for r in log) == list(range(1, 97))


# ------------------------------------------------------------------------------ identities


def test_second_script_identity_and_permissions(shotgrid_server: ShotgridServer) -> None:
    reader = shotgrid_server.add_script(
        "reader", "reader-key", read_only=True, hidden_fields={"Shot": ["description"]}
    )
    sg_reader = shotgrid_server.client("reader", "reader-key")
    sg_main = shotgrid_server.client()
    shot = sg_main.find_one("Shot", [], ["description"])
    assert shot["description"]
    seen = sg_reader.find_one("Shot", [["id", "is", shot["id"]]], ["description", "code"])
    assert "description" not in seen and seen["code"]
    with pytest.raises(shotgun_api3.Fault):
        sg_reader.create("Shot", {"code": "nope", "project": PROJECT})
    assert {r.identity for r in shotgrid_server.requests} >= {"reader", "sgcache_tests"}
    writer = shotgrid_server.add_script("writer")
    sg_writer = shotgrid_server.client(writer.name, writer.key)
    created = sg_writer.create("Shot", {"code": "by_writer", "project": PROJECT}, ["created_by"])
    assert created["created_by"] == {"type": "ApiUser", "id": writer.link["id"], "name": "writer"}
    assert reader.link != writer.link


# ------------------------------------------------------------------------------ lifecycle


def test_context_manager_stop_releases_the_port() -> None:
    with ShotgridServer() as server:
        port = server.port
        sg = server.client()
        assert sg.find("Project", []) == []
    assert not server.running
    with pytest.raises(ConnectionError):
        sg.find("Project", [])
    # the port is free again: another server can listen on it
    with ShotgridServer(port=port) as again:
        assert again.port == port
        assert again.client().find("Project", []) == []


def test_stop_then_start_again_keeps_port_and_data(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    created = sg.create("Shot", {"code": "survivor", "project": PROJECT})
    port = shotgrid_server.port
    shotgrid_server.stop()
    with pytest.raises(ConnectionError):
        sg.find_one("Shot", [["id", "is", created["id"]]])
    shotgrid_server.start()
    assert shotgrid_server.port == port
    again = sg.find_one("Shot", [["id", "is", created["id"]]], ["code"])
    assert again["code"] == "survivor"


def test_factory_fixture_builds_servers(shotgrid_server_factory: object) -> None:
    make = shotgrid_server_factory
    assert callable(make)
    server = make(scale=0.05, seed=1, script_name="other", api_key="k")
    sg = server.client("other", "k")
    assert sg.find("Shot", [])


def test_session_site_server(shotgrid_site_server: ShotgridServer) -> None:
    sg = shotgrid_site_server.client()
    assert len(sg.find("Shot", [])) == 100
    assert shotgrid_site_server.count_requests("find") == 1
