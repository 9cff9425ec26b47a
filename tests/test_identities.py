"""Every way to log in, every client option that changes answers: each client gets exactly
what its own plain client returns, and no two share entries (issue 10, points 1 and 2)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest
from shotgun_api3 import Shotgun

from sgcache_layers import FileCache, RedisCache, SerialisedCache, Session
from sgcache_layers.testing import ShotgridServer


def file_maker(path: Path) -> Any:
    return lambda s: SerialisedCache(FileCache(str(path)), encode=s.encode, decode=s.decode)


def redis_maker(url: str) -> Any:
    return lambda s: SerialisedCache(
        RedisCache(url, namespace="identities"), encode=s.encode, decode=s.decode
    )


def shown(rows: list[Any], fields: list[str]) -> list[tuple[Any, ...]]:
    """Rows with their field values as the caller sees them, datetimes with their zone."""
    out = []
    for row in rows:
        values = []
        for name in fields:
            value = dict.get(row, name)
            if isinstance(value, dt.datetime):
                value = (value, value.tzinfo is None, value.utcoffset(), type(value.tzinfo))
            elif isinstance(value, dict):
                value = (value.get("type"), value.get("id"))
            values.append(value)
        out.append((row["type"], row["id"], *values))
    return out


@pytest.fixture(params=["file", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """One cache every client in a test shares: a directory or one Redis."""
    if request.param == "file":
        return file_maker(tmp_path / "shared")
    return redis_maker(request.getfixturevalue("redis_url"))


FIELDS = ["code", "created_at", "updated_at", "sg_sequence"]


def test_clients_converting_datetimes_differently_each_get_their_own(
    shotgrid_server: ShotgridServer, shared: Any
) -> None:
    server = shotgrid_server
    local = server.client()  # convert_datetimes_to_utc=True: aware, in the local zone
    utc = server.client(convert_datetimes_to_utc=False)  # naive UTC
    for client in (local, utc):
        expected = shown(client.find("Shot", [], FIELDS), FIELDS)
        with Session(client, cache=shared) as first:
            assert shown(first.find("Shot", [], FIELDS), FIELDS) == expected
        server.reset_requests()
        with Session(client, cache=shared) as again:
            assert shown(again.find("Shot", [], FIELDS), FIELDS) == expected
            assert again.stats.request_count == 0  # from the cache, in this client's form
    assert Session(local).namespace != Session(utc).namespace


def test_localized_clients_do_not_share(shotgrid_server: ShotgridServer, shared: Any) -> None:
    plain = shotgrid_server.client()
    localized = shotgrid_server.client()
    localized.config.localized = True
    with Session(plain, cache=shared) as first:
        first.schema_field_read("Shot", "code")
        first.find("Shot", [], ["code"])
    with Session(localized, cache=shared) as second:
        assert second.namespace != Session(plain).namespace
        second.schema_field_read("Shot", "code")
        second.find("Shot", [], ["code"])
        assert second.stats.request_count == 2


def _logins(server: ShotgridServer) -> dict[str, Shotgun]:
    """A client for every way to log in, two users of each kind."""
    for login in ("ann", "bob"):
        server.add_user(login, f"{login}-password-9f2")
    server.add_script("other_tool", "other-tool-key-51a")
    ann = server.client(login="ann", password="ann-password-9f2")
    bob = server.client(login="bob", password="bob-password-9f2")
    return {
        "script": server.client(),
        "other script": server.client("other_tool", "other-tool-key-51a"),
        "script as ann": server.client(sudo_as_login="ann"),
        "script as bob": server.client(sudo_as_login="bob"),
        "user ann": ann,
        "user bob": bob,
        "ann's session": server.client(session_token=ann.get_session_token()),
        "bob's session": server.client(session_token=bob.get_session_token()),
    }


SECRETS = (
    "ann-password-9f2",
    "bob-password-9f2",
    "other-tool-key-51a",
)


def test_every_way_to_log_in_works_apart_and_keeps_secrets(
    shotgrid_server: ShotgridServer, shared: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = shotgrid_server
    clients = _logins(server)
    secrets = (
        list(SECRETS)
        + [server.api_key]
        + [c.config.session_token for c in clients.values() if c.config.session_token]
    )
    namespaces = {}
    with caplog.at_level(logging.DEBUG, logger="sgcache_layers"):
        for name, client in clients.items():
            session = Session(client, cache=shared)  # no extra argument needed
            server.reset_requests()
            rows = session.find("Shot", [], ["code"])
            assert rows, name
            assert server.count_requests("find") == 1, f"{name} read someone else's answer"
            session.get("Shot", rows[0]["id"]).fetch(["description"])
            session.drain()
            namespaces[name] = session.namespace
            session.close()
    bases = [n.rsplit("|", 1)[0] for n in namespaces.values()]
    assert len(set(bases)) == len(bases)  # every identity its own namespace
    # One more session per identity now reads its own answers, and only its own.
    for name, client in clients.items():
        with Session(client, cache=shared) as again:
            server.reset_requests()
            again.find("Shot", [], ["code"])
            assert server.request_count == 0, name
    texts = list(namespaces.values()) + [r.getMessage() for r in caplog.records]
    keys = _keys(shared)
    for secret in secrets:
        assert not any(secret in text for text in texts + keys)


def _keys(maker: Any) -> list[str]:
    class _Owner:
        def encode(self, data: Any) -> str:
            return str(data)

        def decode(self, text: Any) -> Any:
            return text

    cache = maker(_Owner())
    try:
        return list(cache.keys())
    finally:
        cache.close()


def test_two_sessions_of_one_user_share_when_told_who_it_is(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    server = shotgrid_server
    server.add_user("cat", "cat-password-77")
    first = server.client(
        session_token=server.client(login="cat", password="cat-password-77").get_session_token()
    )
    second = server.client(
        session_token=server.client(login="cat", password="cat-password-77").get_session_token()
    )
    assert Session(first).namespace != Session(second).namespace  # tokens say nothing more
    with Session(first, cache=file_maker(tmp_path / "c"), identity="user=cat") as one:
        one.find("Shot", [], ["code"])
    with Session(second, cache=file_maker(tmp_path / "c"), identity="user=cat") as two:
        two.find("Shot", [], ["code"])
        assert two.stats.request_count == 0


def test_a_write_by_one_identity_moves_what_every_identity_cached(
    shotgrid_server: ShotgridServer, shared: Any
) -> None:
    """Changes are facts about the site: one identity's write reaches another's answers."""
    server = shotgrid_server
    server.add_user("writer", "pw")
    shot_id = server.client().find("Shot", [], [], order=[{"field_name": "id"}])[0]["id"]
    reader = Session(server.client(), cache=shared)
    writer = Session(server.client(login="writer", password="pw"), cache=shared)
    assert reader.namespace.split("|")[2] != writer.namespace.split("|")[2]  # own data
    filters = [["id", "is", shot_id]]
    assert reader.find("Shot", filters, ["code"])[0]["code"] != "BY_ANOTHER_IDENTITY"
    reader.get("Shot", shot_id)
    writer.update("Shot", shot_id, {"code": "BY_ANOTHER_IDENTITY"})
    assert reader.find("Shot", filters, ["code"])[0]["code"] == "BY_ANOTHER_IDENTITY"
    assert reader.get("Shot", shot_id)["code"] == "BY_ANOTHER_IDENTITY"
    reader.close()
    writer.close()
