"""One reader of the event log for the farm: ``sgcache-layers watch`` and the sessions that
trust its heartbeat, over the real client, the loopback site and a real redis-server.

The farm tests start real processes behind a barrier (a forkserver, so 32 of them start in
a second rather than importing everything 32 times).  The watcher runs as its own script
identity, so the server's request log tells its event-log reads from the sessions'.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from sgcache_layers import Session
from sgcache_layers.config import SessionConfigError
from sgcache_layers.freshness import heartbeat_live, heartbeat_window
from sgcache_layers.testing.server import ShotgridServer
from sgcache_layers.watcher import Watcher, read_heartbeat

WATCHER_SCRIPT = "farm_watcher"
#: The watch interval of the farm test, and how soon every process must see a change.
INTERVAL = 1.0
FARM = 32


# ----------------------------------------------------------------------------- helpers


def _environment(server: ShotgridServer, script: str, key: str) -> dict[str, str]:
    """This environment without any ShotGrid or cache settings, plus the site's sign-in."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SG_", "SHOTGUN_", "SGCACHE_LAYERS_"))
    }
    env.update({"SG_URL": server.url, "SG_SCRIPT": script, "SG_API_KEY": key})
    return env


def _watch(*args: str) -> list[str]:
    return [sys.executable, "-m", "sgcache_layers", "watch", *args]


def _run_watch(
    server: ShotgridServer, key: str, *args: str, script: str = WATCHER_SCRIPT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _watch(*args),
        env=_environment(server, script, key),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def watcher_key(shotgrid_server: ShotgridServer) -> str:
    """The key of the watcher's own script identity on the site."""
    return shotgrid_server.add_script(WATCHER_SCRIPT).key


@pytest.fixture
def running_watcher(
    shotgrid_server: ShotgridServer, redis_url: str, watcher_key: str, request: Any
) -> Iterator[subprocess.Popen[str]]:
    """``sgcache-layers watch`` in a process of its own; killed if the test did not stop it."""
    interval = getattr(request, "param", INTERVAL)
    process = subprocess.Popen(
        _watch("--redis", redis_url, "--interval", str(interval)),
        env=_environment(shotgrid_server, WATCHER_SCRIPT, watcher_key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_beat(shotgrid_server, redis_url, lambda beat: beat.get("syncs", 0) >= 1)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _wait_for_beat(
    server: ShotgridServer, redis_url: str, ready: Any, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beat = read_heartbeat(redis_url, server.url)
        if beat is not None and ready(beat):
            return beat
        time.sleep(0.05)
    raise AssertionError(f"no such heartbeat within {timeout} s: {beat!r}")


def _event_reads(server: ShotgridServer, identity: str) -> int:
    return sum(
        1 for r in server.requests if r.entity_type == "EventLogEntry" and r.identity == identity
    )


def _first_shot(server: ShotgridServer) -> dict[str, Any]:
    order: Any = [{"field_name": "id", "direction": "asc"}]
    shot = server.client().find_one("Shot", [], ["code"], order=order)
    assert shot is not None
    return dict(shot)


def _code(session: Session, shot_id: int) -> Any:
    """The shot's code as *session* answers it."""
    shot = session.find_one("Shot", [["id", "is", shot_id]], ["code"])
    assert shot is not None
    return shot["code"]


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    # Import everything once in the fork server: each process then starts in milliseconds.
    context.set_forkserver_preload([__name__, "sgcache_layers.session", "shotgun_api3", "redis"])
    return context


def _client(url: str, script: str, key: str) -> Any:
    from shotgun_api3.shotgun import Shotgun

    return Shotgun(url, script, key, connect=False)


# ------------------------------------------------------------------------- the farm


def _farm_process(
    site: tuple[str, str, str], redis_url: str, shot_id: int, new_code: str, barrier: Any, out: Any
) -> None:
    """One farm process: a session over the shared Redis that would sync every 0.2 s."""
    try:
        session = Session(_client(*site), cache=redis_url, sync_interval=0.2)
        barrier.wait(timeout=120)
        first = session.find_one("Shot", [["id", "is", shot_id]], ["code"])
        out.put(("ready", os.getpid(), first["code"] if first else None))
        seen: Optional[float] = None
        deadline = time.time() + 30
        while time.time() < deadline:
            shot = session.find_one("Shot", [["id", "is", shot_id]], ["code"])
            if shot is not None and shot["code"] == new_code:
                seen = time.time()
                break
            time.sleep(0.05)
        out.put(("seen", os.getpid(), seen, session.stats.syncs))
        session.close()
    except BaseException as error:
        out.put(("error", os.getpid(), repr(error)))
        raise


def test_with_a_watcher_32_processes_read_no_event_log_and_see_a_change_in_time(
    shotgrid_server: ShotgridServer,
    redis_url: str,
    watcher_key: str,
    running_watcher: subprocess.Popen[str],
) -> None:
    server = shotgrid_server
    shot = _first_shot(server)
    new_code = "CHANGED_ON_THE_WEB"
    context = _context()
    barrier, out = context.Barrier(FARM), context.Queue()
    site = (server.url, server.script_name, server.api_key)
    farm = [
        context.Process(
            target=_farm_process, args=(site, redis_url, shot["id"], new_code, barrier, out)
        )
        for _ in range(FARM)
    ]
    for process in farm:
        process.start()
    try:
        ready = [out.get(timeout=120) for _ in farm]
        assert [r[0] for r in ready] == ["ready"] * FARM, ready
        assert {r[2] for r in ready} == {shot["code"]}
        changed_at = time.time()
        server.client().update("Shot", shot["id"], {"code": new_code})
        seen = [out.get(timeout=120) for _ in farm]
    finally:
        for process in farm:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [s[0] for s in seen] == ["seen"] * FARM, seen
    lags = sorted(s[2] - changed_at for s in seen if s[2] is not None)
    assert len(lags) == FARM, "some processes never saw the change"
    assert lags[-1] <= INTERVAL + 1.0, f"seen after {lags[0]:.2f}..{lags[-1]:.2f} s"
    # Every process did call sync (its sync_interval passed), and left it to the watcher.
    assert all(s[3] >= 1 for s in seen)
    assert _event_reads(server, server.script_name) == 0
    assert _event_reads(server, WATCHER_SCRIPT) >= 2  # the watcher read for all of them

    # SIGTERM: the watcher finishes its sync, says in its heartbeat that it stopped (so
    # sessions read the event log themselves at once) and exits cleanly.
    running_watcher.send_signal(signal.SIGTERM)
    stdout, stderr = running_watcher.communicate(timeout=30)
    assert running_watcher.returncode == 0, stderr
    assert "Stopped after" in stdout
    beat = read_heartbeat(redis_url, server.url)
    assert beat is not None and beat["stopped"] and not heartbeat_live(beat)
    assert beat["pid"] == running_watcher.pid and beat["interval"] == INTERVAL
    assert beat["last_event"] == server.last_event_id and beat["error"] is None
    for secret in (watcher_key, server.api_key):
        assert secret not in stdout + stderr


def _first_sync_process(site: tuple[str, str, str], redis_url: str, barrier: Any, out: Any) -> None:
    try:
        session = Session(_client(*site), cache=redis_url)
        barrier.wait(timeout=120)
        read = session.sync()
        session.find_one("Project", [], ["name"])  # the next check sees the epoch now
        out.put((session.stats.flushes, session.namespace, read))
        session.close()
    except BaseException as error:
        out.put(("error", repr(error), 0))
        raise


def test_processes_starting_together_without_a_watcher_flush_once(
    shotgrid_server: ShotgridServer, redis_url: str
) -> None:
    """The first sync of a namespace flushes it; of 16 at once, only one may."""
    context = _context()
    racers = 16
    barrier, out = context.Barrier(racers), context.Queue()
    site = (shotgrid_server.url, shotgrid_server.script_name, shotgrid_server.api_key)
    shotgrid_server.client().update("Shot", _first_shot(shotgrid_server)["id"], {"code": "X"})
    shotgrid_server.reset_requests()
    processes = [
        context.Process(target=_first_sync_process, args=(site, redis_url, barrier, out))
        for _ in range(racers)
    ]
    for process in processes:
        process.start()
    try:
        results = [out.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
    assert sum(flushes for flushes, _, _ in results) == 1, results
    assert len({namespace for _, namespace, _ in results}) == 1
    # One request found where the event log is (the restart: no filter, newest first); the
    # others waited for its answer.  A process the scheduler ran only after that answer was
    # saved reads the events since it, as every later sync does: that is no restart.
    reads = [r for r in shotgrid_server.requests if r.entity_type == "EventLogEntry"]
    restarts = [r for r in reads if not r.params["filters"]["conditions"]]
    assert len(restarts) == 1, [r.params for r in reads]
    for later in reads:
        if later not in restarts:
            (condition,) = later.params["filters"]["conditions"]
            assert condition["relation"] == "greater_than", later.params
    assert {read for _, _, read in results} == {0}


def test_a_first_sync_that_fails_leaves_no_claim_behind(
    shotgrid_server: ShotgridServer, redis_url: str
) -> None:
    """A restart whose request fails gives its claim back: the next sync restarts at once."""
    server = shotgrid_server
    first = Session(server.client(), cache=redis_url)
    server.inject_fault("503", entity_type="EventLogEntry")
    with pytest.raises(Exception, match="503"):
        first.sync()
    assert first.stats.flushes == 0
    second = Session(server.client(), cache=redis_url)
    began = time.monotonic()
    assert second.sync() == 0
    assert time.monotonic() - began < 2.0  # not the lease a dead claimer would cost
    assert second.stats.flushes == 1
    first.close()
    second.close()


# ---------------------------------------------------------------------- a stale heartbeat


@pytest.mark.parametrize("running_watcher", [0.5], indirect=True)
def test_a_killed_watcher_goes_stale_and_sessions_sync_themselves(
    shotgrid_server: ShotgridServer, redis_url: str, running_watcher: subprocess.Popen[str]
) -> None:
    server = shotgrid_server
    session = Session(server.client(), cache=redis_url)
    shot = _first_shot(server)
    session.find_one("Shot", [["id", "is", shot["id"]]], ["code"])
    server.reset_requests()
    assert session.sync() == 0
    assert _event_reads(server, server.script_name) == 0  # the watcher is trusted

    running_watcher.send_signal(signal.SIGKILL)  # no clean stop: the heartbeat just ages
    running_watcher.wait(timeout=30)
    beat = read_heartbeat(redis_url, server.url)
    assert beat is not None and beat["stopped"] is None
    stale_at = beat["time"] + heartbeat_window(0.5)
    fell_back: Optional[float] = None
    while time.time() < stale_at + 5:
        session.sync()
        if _event_reads(server, server.script_name):
            fell_back = time.time()
            break
        time.sleep(0.05)
    assert fell_back is not None, "the session never read the event log itself"
    assert stale_at - 0.2 <= fell_back <= stale_at + 1.0
    # From now on the session follows the event log itself.
    server.client().update("Shot", shot["id"], {"code": "AFTER_THE_WATCHER"})
    assert session.sync() == 1
    assert _code(session, shot["id"]) == "AFTER_THE_WATCHER"
    session.close()


# --------------------------------------------------------------------------------- --once


def test_once_syncs_once_writes_a_heartbeat_for_its_interval_and_exits(
    shotgrid_server: ShotgridServer, redis_url: str, watcher_key: str
) -> None:
    server = shotgrid_server
    done = _run_watch(server, watcher_key, "--redis", redis_url, "--once", "--interval", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Read 0 events from ") and "trusted for 60 s" in done.stdout
    assert done.stderr == ""  # --once logs only trouble
    beat = read_heartbeat(redis_url, server.url)
    assert beat is not None and heartbeat_live(beat)
    assert (beat["interval"], beat["syncs"], beat["flushes"]) == (30.0, 1, 1)
    assert beat["last_event"] == server.last_event_id and beat["stopped"] is None
    assert _event_reads(server, WATCHER_SCRIPT) == 1  # where the event log is

    session = Session(server.client(), cache=redis_url)
    shot = _first_shot(server)
    assert _code(session, shot["id"]) == shot["code"]
    server.client().update("Shot", shot["id"], {"code": "CRON_SEES_IT"})
    server.reset_requests()
    # The heartbeat is trusted for two cron periods: until the next run, nobody reads.
    assert session.sync() == 0
    assert _code(session, shot["id"]) == shot["code"]
    assert _event_reads(server, server.script_name) == 0

    again = _run_watch(server, watcher_key, "--redis", redis_url, "--once", "--interval", "30")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Read 1 events ")
    assert _code(session, shot["id"]) == "CRON_SEES_IT"
    assert _event_reads(server, server.script_name) == 0
    session.close()


# ------------------------------------------------------------------------ gaps, in process


def test_a_gap_seen_by_the_watcher_flushes_through_the_event_log(
    shotgrid_server: ShotgridServer, redis_url: str, watcher_key: str
) -> None:
    server = shotgrid_server
    client = server.client(WATCHER_SCRIPT, watcher_key)
    with Watcher(redis_url, client, interval=1) as watcher:
        assert watcher.sync_once() == 0 and watcher.session.stats.flushes == 1
        session = Session(server.client(), cache=redis_url)
        shot = _first_shot(server)
        session.find("Shot", [], ["code"])
        namespace = session.namespace
        skipped = server.skip_event_ids(3)
        server.client().update("Shot", shot["id"], {"code": "AFTER_A_GAP"})
        server.reset_requests()
        assert watcher.sync_once() == 1
        assert watcher.session.stats.flushes == 2  # the gap flushed the namespace
        beat = watcher.heartbeat()
        assert beat is not None and beat["flushes"] == 2
        assert beat["last_event"] == server.last_event_id
        # The session trusts the watcher, and its answers went with the old epoch.
        assert session.sync() == 0
        rows = session.find("Shot", [], ["code"])
        assert session.namespace != namespace
        assert "AFTER_A_GAP" in {r["code"] for r in rows}
        assert server.count_requests("find", "Shot") == 1
        # The missing ids are asked for again (a late commit would still be applied).
        watcher.sync_once()
        (last,) = [r for r in server.requests if r.entity_type == "EventLogEntry"][-1:]
        conditions = last.params["filters"]["conditions"]
        holes = [c["values"] for c in conditions if c["relation"] == "in"]
        assert holes == [[skipped - 2, skipped - 1, skipped]]
        session.close()


def test_a_thread_watcher_woken_by_an_event_daemon(
    shotgrid_server: ShotgridServer, redis_url: str, watcher_key: str
) -> None:
    """start() runs the loop in a thread; wake() syncs at once (a shotgunEvents plugin)."""
    server = shotgrid_server
    watcher = Watcher(redis_url, server.client(WATCHER_SCRIPT, watcher_key), interval=60)
    watcher.start()
    try:
        _wait_for_beat(server, redis_url, lambda beat: beat.get("syncs", 0) >= 1)
        session = Session(server.client(), cache=redis_url, sync_interval=0)
        shot = _first_shot(server)
        session.find_one("Shot", [["id", "is", shot["id"]]], ["code"])
        server.client().update("Shot", shot["id"], {"code": "WOKEN"})
        woken = time.monotonic()
        watcher.wake()
        while _code(session, shot["id"]) != "WOKEN":
            assert time.monotonic() - woken < 5, "the woken watcher did not sync"
            time.sleep(0.02)
    finally:
        watcher.close()
    beat = read_heartbeat(redis_url, server.url)
    assert beat is not None and beat["stopped"] and not heartbeat_live(beat)
    server.reset_requests()
    session.sync()  # a stopped watcher is not trusted: the session reads for itself
    assert _event_reads(server, server.script_name) == 1
    session.close()


# ---------------------------------------------------------------- errors and credentials


def test_credentials_never_appear_in_output(
    shotgrid_server: ShotgridServer, redis_url: str, watcher_key: str
) -> None:
    server = shotgrid_server
    wrong = "not-the-key-" + watcher_key[:8]
    refused = _run_watch(server, wrong, "--redis", redis_url, "--once")
    assert refused.returncode == 1
    assert "AuthenticationFault" in refused.stderr
    assert refused.stderr.splitlines()[-1].startswith("sgcache-layers: error: syncing failed")
    assert wrong not in refused.stdout + refused.stderr
    beat = read_heartbeat(redis_url, server.url)  # the failure is recorded, secret-free
    assert beat is not None and "AuthenticationFault" in beat["error"]
    assert wrong not in str(beat) and not heartbeat_live(beat)

    good = _run_watch(server, watcher_key, "--redis", redis_url, "--once", "--interval", "60")
    assert good.returncode == 0 and watcher_key not in good.stdout + good.stderr
    beat = read_heartbeat(redis_url, server.url)
    assert beat is not None and heartbeat_live(beat) and beat["error"] is None
    # A watcher that cannot read leaves another's live heartbeat alone.
    assert _run_watch(server, wrong, "--redis", redis_url, "--once").returncode == 1
    assert read_heartbeat(redis_url, server.url) == beat

    password = "hunter2-" + watcher_key[:6]
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0]
    for url in (
        f"redis://someone:{password}@{host_port}/0",  # a user this Redis does not know
        f"redis://someone:{password}@127.0.0.1:1/0",  # nothing listens there
        f"redis://{host_port}/0?username=someone&password={password}",
    ):
        done = _run_watch(server, watcher_key, "--redis", url, "--once")
        assert done.returncode == 1, done.stderr
        assert "syncing failed" in done.stderr.splitlines()[-1]
        assert password not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--redis", "/var/tmp/cache", "--once"], "needs the one Redis the sessions share"),
        (["--redis", "user+redis://127.0.0.1:1/0", "--once"], "not /"),
        (["--redis", "redis://127.0.0.1:1/0?colour=blue"], "unknown option 'colour'"),
        (["--redis", "redis://127.0.0.1:1/0", "--interval", "0"], "must be > 0"),
        (["--once"], "--redis"),
    ],
)
def test_bad_arguments_are_one_line(
    shotgrid_server: ShotgridServer, watcher_key: str, args: list[str], message: str
) -> None:
    done = _run_watch(shotgrid_server, watcher_key, *args)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("sgcache-layers: error: ") and message in line


def test_without_credentials_the_error_names_the_variables(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SG_", "SHOTGUN_"))}
    done = subprocess.run(
        [sys.executable, "-m", "sgcache_layers", "watch", "--redis", redis_url, "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "SG_URL" in line and "SG_API_KEY" in line


def test_watcher_arguments_are_checked(shotgrid_server: ShotgridServer, redis_url: str) -> None:
    client = shotgrid_server.client()
    with pytest.raises(SessionConfigError, match="interval must be a positive number"):
        Watcher(redis_url, client, interval=-1)
    with pytest.raises(SessionConfigError, match="interval must be a number of seconds"):
        Watcher(redis_url, client, interval="5")  # type: ignore[arg-type]
    with pytest.raises(SessionConfigError, match="a Redis URL or a RedisCache, not int"):
        Watcher(6379, client)  # type: ignore[arg-type]
    with pytest.raises(SessionConfigError, match="not memory"):
        Watcher("memory", client)


# ---------------------------------------------------------------------- the trust rule


def test_the_heartbeat_rule() -> None:
    now = 1_000_000.0
    beat = {"time": now, "interval": 5.0, "stopped": None}
    assert heartbeat_window(5.0) == 10.0 and heartbeat_window(1.0) == 6.0
    assert heartbeat_window(60.0) == 120.0
    assert heartbeat_live(beat, now + 9.9) and not heartbeat_live(beat, now + 10.1)
    assert heartbeat_live(beat, now - 9.9)  # a watcher whose clock is a little ahead
    assert not heartbeat_live(beat, now - 10.1)  # ... but not one from the far future
    assert not heartbeat_live({**beat, "stopped": now}, now)
    bad: Any
    for bad in (None, [], {}, {"time": None, "interval": 5}, {"time": now, "interval": 0}):
        assert not heartbeat_live(bad, now)
    assert not heartbeat_live({"time": now, "interval": float("nan")}, now)
    assert not heartbeat_live({"time": True, "interval": 5}, now)
