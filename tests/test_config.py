"""Configuration the ecosystem's way: cache specs, ``SGCACHE_LAYERS_*`` and the client variables.

Every spec form is opened for real (FileCache directories under ``tmp_path``, the test
Redis servers of ``conftest.py``) behind a Session talking to the loopback ShotGrid, and the
precedence is checked end to end: an argument beats the environment, which beats the
built-in default.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import (
    FileCache,
    LayeredCache,
    RedisCache,
    SerialisedCache,
    Session,
    SessionConfigError,
)
from sgcache_layers.config import (
    CLIENT_VARIABLES,
    SETTING_VARIABLES,
    client_from_environment,
    default_cache_dir,
    parse_cache_spec,
    parse_duration,
)
from sgcache_layers.testing.redis_server import RedisClusterServer, RedisSentinelServer
from sgcache_layers.testing.server import ShotgridServer

SECRET = "s3cret-Pa55"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration leaks in from the machine; the per-user directory is under tmp_path."""
    names = set(SETTING_VARIABLES.values())
    for url_variable, pairs in CLIENT_VARIABLES:
        names.add(url_variable)
        for _kind, name, secret in pairs:
            names.update((name, secret))
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def server(shotgrid_server: ShotgridServer) -> ShotgridServer:
    return shotgrid_server


def _layers(session: Session) -> list[Any]:
    """The backends under the session's memory layer, shallowest first."""
    (extra,) = session.cache.caches[1:]
    wrapped = list(extra.caches) if isinstance(extra, LayeredCache) else [extra]
    for layer in wrapped:
        assert isinstance(layer, SerialisedCache)
        assert layer.encode == session.encode and layer.decode == session.decode
    return [layer.proxied for layer in wrapped]


def _warm_twice(server: ShotgridServer, cache: Any) -> None:
    """A second session over the same spec answers the first one's query without a request."""
    with Session(server.client(), cache=cache) as first:
        shots = first.find("Shot", [], ["code"])
    server.reset_requests()
    with Session(server.client(), cache=cache) as second:
        assert second.find("Shot", [], ["code"]) == shots
        assert second.stats.request_count == 0
    assert server.count_requests("find", "Shot") == 0


# ------------------------------------------------------------------------ parsing specs


def test_plain_paths_and_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (layer,) = parse_cache_spec("relative/cache")
    assert (layer.kind, layer.target) == ("file", str(tmp_path / "relative" / "cache"))
    (layer,) = parse_cache_spec("~/.cache/sg")
    assert layer.target == str(tmp_path / "home" / ".cache" / "sg")
    (layer,) = parse_cache_spec("file:///var/tmp/sg%20cache?size_limit=1000000&timeout=2m")
    assert layer.target == "/var/tmp/sg cache"
    assert dict(layer.options) == {"size_limit": 1000000, "timeout": 120.0}
    (layer,) = parse_cache_spec("file://localhost/var/tmp/sg")
    assert layer.target == "/var/tmp/sg"


def test_redis_urls_of_every_form() -> None:
    specs = {
        "redis://cache.farm:6379/0": "redis://cache.farm:6379/0",
        "rediss://cache.farm:6380/1": "rediss://cache.farm:6380/1",
        "unix:///run/redis.sock": "unix:///run/redis.sock",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0": "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "redis+cluster://n1:7000,n2:7001": "redis+cluster://n1:7000,n2:7001",
    }
    for spec, label in specs.items():
        (layer,) = parse_cache_spec(spec)
        assert (layer.kind, layer.target, layer.label) == ("redis", spec, label)
        assert dict(layer.options) == {}


def test_redis_options_are_taken_out_and_passwords_kept_out_of_labels() -> None:
    url = f"redis://:{SECRET}@cache.farm:6379/2?namespace=studio%3Aa&socket_timeout=1&ttl=1d"
    (layer,) = parse_cache_spec(url)
    assert layer.target == f"redis://:{SECRET}@cache.farm:6379/2?socket_timeout=1"
    assert dict(layer.options) == {"namespace": "studio:a", "ttl": 86400.0}
    assert SECRET not in layer.label and layer.label == "redis://cache.farm:6379/2"
    (sentinel,) = parse_cache_spec(
        f"redis+sentinel://s1:26379/m/0?sentinel_password={SECRET}&namespace=x"
    )
    assert sentinel.target == f"redis+sentinel://s1:26379/m/0?sentinel_password={SECRET}"
    assert SECRET not in sentinel.label


def test_stacks_split_before_urls_only(tmp_path: Path) -> None:
    layers = parse_cache_spec(f"{tmp_path}/c++cache+redis+sentinel://s:26379/m/0+file:///x")
    assert [(layer.kind, layer.target) for layer in layers] == [
        ("file", f"{tmp_path}/c++cache"),
        ("redis", "redis+sentinel://s:26379/m/0"),
        ("file", "/x"),
    ]
    pair = parse_cache_spec([f"{tmp_path}/a", "redis://h:1/0+rediss://h:2/0"])
    assert [layer.target for layer in pair] == [f"{tmp_path}/a", "redis://h:1/0", "rediss://h:2/0"]


def test_user_and_true_are_the_platformdirs_directory(tmp_path: Path) -> None:
    expected = str(tmp_path / "xdg-cache" / "sgcache_layers")
    assert default_cache_dir() == expected
    assert [layer.target for layer in parse_cache_spec(True)] == [expected]
    (user, redis) = parse_cache_spec("user+redis://farm:6379/0")
    assert (user.target, redis.target) == (expected, "redis://farm:6379/0")
    assert parse_cache_spec("memory") == [] == parse_cache_spec(" Memory ") == parse_cache_spec([])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty cache spec"),
        ("memory+redis://h:1/0", "'memory' stands alone"),
        (["/tmp/a", "memory"], "'memory' stands alone"),
        ("memcached://h:11211", "unknown scheme 'memcached'"),
        (f"http://user:{SECRET}@h/x?password={SECRET}", "unknown scheme 'http'"),
        ("file://server/share/cache", "a file URL names a local path"),
        ("file:///tmp/c?size_limit=big", "size_limit must be a number of bytes"),
        ("file:///tmp/c?eviction=none", "unknown option 'eviction'"),
        ("file:///tmp/c?timeout=soon", "timeout: expected seconds"),
        (f"redis://:{SECRET}@h:1/0?socket_timout=1", "unknown option 'socket_timout'"),
        (f"redis://:{SECRET}@h:1/0?ttl=0", "ttl must be > 0"),
        (f"redis://:{SECRET}@h:1/0?namespace=", "an empty namespace"),
        (["/tmp/a", 3], "not int"),
        (42, "not int"),
        ("/tmp/a+file:///tmp/a", "names /tmp/a twice"),
    ],
)
def test_bad_specs_say_what_is_wrong_and_never_show_a_password(spec: Any, message: str) -> None:
    with pytest.raises(SessionConfigError, match=message) as info:
        parse_cache_spec(spec)
    assert SECRET not in str(info.value)


# ---------------------------------------------------------------- opening them in a session


def test_a_path_persists_across_sessions(server: ShotgridServer, tmp_path: Path) -> None:
    path = tmp_path / "cache"
    _warm_twice(server, str(path))
    assert (path / "cache.db").is_file()
    with Session(server.client(), cache=f"file://{path}") as session:
        (layer,) = _layers(session)
        assert isinstance(layer, FileCache) and layer.path == str(path)


def test_true_makes_a_private_per_user_directory(server: ShotgridServer, tmp_path: Path) -> None:
    _warm_twice(server, True)
    made = tmp_path / "xdg-cache" / "sgcache_layers"
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(made.parent).st_mode) == 0o700  # created by FileCache too
    with Session(server.client(), cache=True) as session:
        (layer,) = _layers(session)
        assert isinstance(layer, FileCache) and layer.path == str(made)


def test_a_list_and_a_stack_give_file_layers_in_order(
    server: ShotgridServer, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for spec in ([str(a), f"file://{b}"], f"{a}+file://{b}"):
        with Session(server.client(), cache=spec) as session:
            assert [layer.path for layer in _layers(session)] == [str(a), str(b)]
    _warm_twice(server, [str(a), str(b)])


def test_memory_and_none_mean_memory_only(server: ShotgridServer, tmp_path: Path) -> None:
    for cache in ("memory", None):
        with Session(server.client(), cache=cache) as session:
            assert len(session.cache.caches) == 1


def test_a_layer_that_cannot_be_opened_is_left_out_with_a_warning(
    server: ShotgridServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    good = tmp_path / "good"
    spec = f"{blocker}/cache+file://{good}"
    with (
        caplog.at_level(logging.WARNING, logger="sgcache_layers.config"),
        Session(server.client(), cache=spec) as session,
    ):
        assert [layer.path for layer in _layers(session)] == [str(good)]
        assert session.find("Shot", [], ["code"])
    assert f"cache layer {blocker}/cache could not be opened" in caplog.text
    with Session(server.client(), cache=f"{blocker}/cache") as session:
        assert len(session.cache.caches) == 1  # nothing left: memory only


def test_redis_url_with_namespace_and_ttl(server: ShotgridServer, redis_url: str) -> None:
    spec = f"{redis_url}?namespace=sgcl-test&ttl=1h"
    _warm_twice(server, spec)
    with Session(server.client(), cache=spec) as session:
        (layer,) = _layers(session)
        assert isinstance(layer, RedisCache)
        assert (layer.namespace, layer.ttl) == ("sgcl-test", 3600.0)
        assert layer.keys()  # the first session's records, under its namespace
    plain = RedisCache(redis_url, namespace="other")
    try:
        assert plain.keys() == []
    finally:
        plain.close()


def test_file_then_redis_stack(server: ShotgridServer, tmp_path: Path, redis_url: str) -> None:
    spec = f"{tmp_path / 'disk'}+{redis_url}?namespace=stack"
    _warm_twice(server, spec)
    with Session(server.client(), cache=spec) as session:
        disk, redis = _layers(session)
        assert isinstance(disk, FileCache) and isinstance(redis, RedisCache)
        assert redis.keys() and disk.keys()
    # The farm's Redis alone warms a machine whose disk cache is new.
    _warm_twice(server, f"{tmp_path / 'other-disk'}+{redis_url}?namespace=stack")


def test_sentinel_url(server: ShotgridServer, redis_sentinel: RedisSentinelServer) -> None:
    spec = redis_sentinel.url + "?namespace=via-sentinel"
    _warm_twice(server, spec)
    with Session(server.client(), cache=spec) as session:
        (layer,) = _layers(session)
        assert layer.url.startswith("redis+sentinel://") and layer.keys()


def test_cluster_url(server: ShotgridServer, redis_cluster: RedisClusterServer) -> None:
    spec = redis_cluster.url + "?namespace=via-cluster"
    _warm_twice(server, spec)
    with Session(server.client(), cache=spec) as session:
        (layer,) = _layers(session)
        assert layer.url.startswith("redis+cluster://") and layer.keys()


def test_a_malformed_redis_url_is_a_config_error_without_the_password(
    server: ShotgridServer,
) -> None:
    with pytest.raises(SessionConfigError, match="^cache: invalid Redis URL") as info:
        Session(server.client(), cache=f"redis://:{SECRET}@h:notaport/0")
    assert SECRET not in str(info.value)


# ------------------------------------------------------------------ SGCACHE_LAYERS_* variables


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "1.5", "90s", "10m", "2H", "1d", ".5m")] == [
        90.0,
        1.5,
        90.0,
        600.0,
        7200.0,
        86400.0,
        30.0,
    ]
    for bad in ("-1", "ten", "10 minutes", "1e3"):
        with pytest.raises(SessionConfigError):
            parse_duration(bad)


def test_cache_from_the_environment_and_explicit_arguments_win(
    server: ShotgridServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGCACHE_LAYERS_CACHE", str(tmp_path / "from-env"))
    with Session(server.client()) as session:
        assert [layer.path for layer in _layers(session)] == [str(tmp_path / "from-env")]
    with Session(server.client(), cache=str(tmp_path / "given")) as session:
        assert [layer.path for layer in _layers(session)] == [str(tmp_path / "given")]
    with Session(server.client(), cache=None) as session:
        assert len(session.cache.caches) == 1
    monkeypatch.setenv("SGCACHE_LAYERS_CACHE", "")  # empty counts as unset
    with Session(server.client()) as session:
        assert len(session.cache.caches) == 1


def test_a_bad_environment_spec_names_the_variable(
    server: ShotgridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGCACHE_LAYERS_CACHE", f"redis://:{SECRET}@h:1/0?bogus=1")
    with pytest.raises(SessionConfigError, match="^SGCACHE_LAYERS_CACHE: .*'bogus'") as info:
        Session(server.client())
    assert SECRET not in str(info.value)
    monkeypatch.setenv("SGCACHE_LAYERS_CACHE", f"redis://:{SECRET}@h:notaport/0")
    with pytest.raises(
        SessionConfigError, match="^SGCACHE_LAYERS_CACHE: invalid Redis URL"
    ) as info:
        Session(server.client())
    assert SECRET not in str(info.value)
    # An explicit argument wins, so the bad variable is not even read.
    with Session(server.client(), cache=None) as session:
        assert len(session.cache.caches) == 1


def test_settings_from_the_environment(
    server: ShotgridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(server.client()) as session:
        defaults = (
            session.mode,
            session.max_age,
            session.schema_max_age,
            session.stale_if_error,
            session.sync_interval,
        )
    assert defaults == ("cached", 600.0, 3600.0, True, None)
    monkeypatch.setenv("SGCACHE_LAYERS_MODE", "Direct")
    monkeypatch.setenv("SGCACHE_LAYERS_MAX_AGE", "10m")
    monkeypatch.setenv("SGCACHE_LAYERS_SCHEMA_MAX_AGE", "1d")
    monkeypatch.setenv("SGCACHE_LAYERS_STALE_IF_ERROR", "off")
    monkeypatch.setenv("SGCACHE_LAYERS_SYNC_INTERVAL", "30s")
    with Session(server.client()) as session:
        assert session.mode == "direct"
        assert (session.max_age, session.schema_max_age) == (600.0, 86400.0)
        assert session.stale_if_error is False and session.sync_interval == 30.0
    with Session(
        server.client(),
        mode="offline",
        max_age=5,
        schema_max_age=6,
        stale_if_error=True,
        sync_interval=None,
    ) as session:
        assert (session.mode, session.max_age, session.schema_max_age) == ("offline", 5.0, 6.0)
        assert session.stale_if_error is True and session.sync_interval is None
    monkeypatch.setenv("SGCACHE_LAYERS_STALE_IF_ERROR", "2h")
    monkeypatch.setenv("SGCACHE_LAYERS_SYNC_INTERVAL", "never")
    with Session(server.client()) as session:
        assert session.stale_if_error == 7200.0 and session.sync_interval is None


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("SGCACHE_LAYERS_MODE", "fast", "expected one of direct, cached, offline"),
        ("SGCACHE_LAYERS_MAX_AGE", "-5", "expected seconds"),
        ("SGCACHE_LAYERS_SCHEMA_MAX_AGE", "an hour", "expected seconds"),
        ("SGCACHE_LAYERS_STALE_IF_ERROR", "maybe", "expected seconds"),
        ("SGCACHE_LAYERS_SYNC_INTERVAL", "often", "expected seconds"),
    ],
)
def test_bad_setting_variables_name_themselves(
    server: ShotgridServer, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SessionConfigError, match=f"^{name}: {message}"):
        Session(server.client())


# ----------------------------------------------------------------------- client variables


def test_client_variables_and_their_precedence() -> None:
    ours = {"SG_URL": "https://a.example", "SG_SCRIPT": "tool", "SG_API_KEY": SECRET}
    toolkit_script = {
        "SHOTGUN_HOST": "https://b.example",
        "SHOTGUN_SCRIPT_NAME": "tk",
        "SHOTGUN_SCRIPT_KEY": SECRET,
    }
    toolkit_user = {
        "SHOTGUN_HOST": "https://b.example",
        "SHOTGUN_USER_LOGIN": "jdoe",
        "SHOTGUN_USER_PASSWORD": SECRET,
    }
    got = client_from_environment(ours)
    assert (got.url, got.kind, got.name, got.secret) == (
        "https://a.example",
        "script",
        "tool",
        SECRET,
    )
    assert SECRET not in repr(got)
    got = client_from_environment(toolkit_script)
    assert (got.url, got.kind, got.name) == ("https://b.example", "script", "tk")
    assert got.variables == ("SHOTGUN_HOST", "SHOTGUN_SCRIPT_NAME", "SHOTGUN_SCRIPT_KEY")
    got = client_from_environment(toolkit_user)
    assert (got.kind, got.name) == ("login", "jdoe")
    # Toolkit's order within its family: the user login before the script key.
    assert client_from_environment({**toolkit_script, **toolkit_user}).kind == "login"
    # This package's own variables before Toolkit's.
    assert client_from_environment({**toolkit_user, **ours}).url == "https://a.example"


@pytest.mark.parametrize(
    "environ, names",
    [
        ({}, ["SG_URL", "SG_SCRIPT", "SHOTGUN_HOST", "SHOTGUN_USER_LOGIN", "SHOTGUN_SCRIPT_KEY"]),
        ({"SG_URL": "https://a", "SG_API_KEY": SECRET}, ["set SG_SCRIPT"]),
        ({"SHOTGUN_HOST": "https://b"}, ["set SHOTGUN_USER_LOGIN and SHOTGUN_USER_PASSWORD"]),
        (
            {"SHOTGUN_HOST": "https://b", "SHOTGUN_SCRIPT_NAME": "tk"},
            ["set SHOTGUN_SCRIPT_KEY (or SHOTGUN_USER_LOGIN and SHOTGUN_USER_PASSWORD)"],
        ),
        # The first family with a site decides, even when a later one is complete.
        (
            {
                "SG_URL": "https://a",
                "SHOTGUN_HOST": "https://b",
                "SHOTGUN_SCRIPT_NAME": "tk",
                "SHOTGUN_SCRIPT_KEY": SECRET,
            },
            ["SG_URL names a site", "set SG_SCRIPT and SG_API_KEY"],
        ),
    ],
)
def test_an_incomplete_environment_names_what_is_missing(
    environ: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(SessionConfigError) as info:
        client_from_environment(environ)
    for name in names:
        assert name in str(info.value)
    assert SECRET not in str(info.value)


def test_sessions_from_toolkit_variables(
    server: ShotgridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOTGUN_HOST", server.url)
    monkeypatch.setenv("SHOTGUN_SCRIPT_NAME", server.script_name)
    monkeypatch.setenv("SHOTGUN_SCRIPT_KEY", server.api_key)
    with Session() as session:
        assert session.identity.startswith(f"script={server.script_name}")
        assert session.find_one("Project", [], ["name"]) is not None
    server.add_user("jdoe", SECRET)
    monkeypatch.setenv("SHOTGUN_USER_LOGIN", "jdoe")
    monkeypatch.setenv("SHOTGUN_USER_PASSWORD", SECRET)
    with Session() as session:
        assert session.identity.startswith("user=jdoe")
        assert session.find_one("Project", [], ["name"]) is not None
        assert SECRET not in session.namespace


def test_an_explicit_client_wins_over_the_environment(
    server: ShotgridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SG_URL", "http://127.0.0.1:9")
    with Session(server.client()) as session:  # SG_URL alone would be an error
        assert session.find_one("Project", [], ["name"]) is not None


@pytest.fixture
def no_redis_package(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``import redis`` fail, as on a machine without the extra."""
    for name in ("redis", "redis.cluster", "redis.connection"):
        monkeypatch.setitem(sys.modules, name, None)
    yield


def test_redis_without_the_package_is_a_config_error(
    server: ShotgridServer, no_redis_package: None
) -> None:
    with pytest.raises(SessionConfigError, match="needs the 'redis' package"):
        Session(server.client(), cache="redis://127.0.0.1:1/0")
