"""Bad input is a clear error or a miss, never an internal exception or a wrong answer
(issue 8): identities that spell alike, damaged records of every kind, a damaged cache
database, values JSON parsers disagree on, secrets in URLs, and ShotGrid failing under a
``get`` or an auto-populate."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgcache_layers import (
    FileCache,
    LayeredCache,
    MemoryCache,
    QueryError,
    RedisCache,
    SerialisedCache,
    Session,
)
from sgcache_layers.records import PREFIX
from sgcache_layers.testing import ShotgridServer


class _Config:
    scheme = "https"
    server = "site.example.com"
    script_name = "bad_input_tests"
    user_login = None
    sudo_as_login = None


class Stub:
    """A client answering every find with the same rows, counting the calls."""

    config = _Config()

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls = 0

    def find(self, entity_type: str, filters: Any, fields: Any = None, **kwargs: Any) -> Any:
        self.calls += 1
        return [dict(row) for row in self.rows if row["type"] == entity_type]

    def summarize(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return {"summaries": {"id": len(self.rows)}, "groups": []}

    def schema_read(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return {"Shot": {"code": {"data_type": {"value": "text"}}}}


SHOTS = [{"type": "Shot", "id": i, "code": f"SH{i:03d}"} for i in range(1, 6)]


def text_layer(session: Session, store: MemoryCache) -> SerialisedCache:
    """A layer that keeps what the session encodes as text, as a disk or Redis would."""
    return SerialisedCache(store, encode=session.encode, decode=session.decode)


# ----------------------------------------------------------------------------- identities


def test_identities_that_spell_alike_never_share_answers(shotgrid_server: ShotgridServer) -> None:
    """Script ``tool;sudo=alice`` is not script ``tool`` acting as ``alice``."""
    server = shotgrid_server
    server.add_user("alice", "alice-password")
    tricky = server.add_script("tool;sudo=alice")
    tool = server.add_script("tool")
    shared = MemoryCache()
    first = Session(server.client(tricky.name, tricky.key), cache=SerialisedCache(shared))
    second = Session(
        server.client(tool.name, tool.key, sudo_as_login="alice"), cache=SerialisedCache(shared)
    )
    assert first.namespace != second.namespace
    assert not first.namespace.startswith(second.namespace)
    assert not second.namespace.startswith(first.namespace)
    first.find("Shot", [], ["code"])
    first.drain()
    second.find("Shot", [], ["code"])
    assert second.stats.requests["find"] == 1  # nothing of the other identity was used


# --------------------------------------------------------------------------- damaged records

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
record_fields = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(2), json_values),
        "k": st.one_of(st.sampled_from(["q", "e", "x", "v", "zz"]), json_values),
        "t": st.one_of(st.just(1e12), st.floats(), json_values),
        "g": st.one_of(st.just({}), st.dictionaries(st.text(max_size=4), json_values)),
        "T": st.one_of(st.just("Shot"), json_values),
        "i": st.one_of(st.just(1), json_values),
        "r": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {"type": st.one_of(st.just("Shot"), json_values), "id": json_values},
                    optional={"code": json_values, "link": json_values},
                ),
                max_size=3,
            ),
            json_values,
        ),
        "c": st.one_of(st.just(["link"]), json_values),
        "f": st.one_of(st.dictionaries(st.text(max_size=6), json_values), json_values),
        "d": json_values,
        "~t": st.one_of(st.just(["code"]), json_values),
        "~d": st.one_of(st.just(["code"]), json_values),
    },
)
stored_texts = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    json_values.map(json.dumps),
    record_fields.map(lambda r: '["~' + PREFIX + '",' + json.dumps(r) + "]"),
    record_fields.map(lambda r: '["~' + PREFIX + 'x",' + json.dumps(r) + "]"),
    json_values.map(lambda v: '["~sgclv",' + json.dumps(v) + "]"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stored_texts, st.sampled_from(["find", "get", "summarize", "schema"]))
def test_any_stored_text_is_a_miss_or_an_answer_never_an_error(text: str, read: str) -> None:
    """Random text, JSON and damaged records under the key of every read kind."""
    stub = Stub(SHOTS)
    store = MemoryCache()
    session = Session(stub, cache=lambda s: text_layer(s, store))

    def ask() -> Any:
        if read == "find":
            return [e["code"] for e in session.find("Shot", [], ["code"])]
        if read == "get":
            return session.get("Shot", 1)["code"]
        if read == "summarize":
            return session.summarize("Shot", [], [{"field": "id", "type": "count"}])
        return session.schema_read()

    expected = ask()
    session.drain()
    keys = [k for k in store.keys() if "|q|" in k or "|e|" in k or "|v|" in k or "|s|" in k]
    assert keys
    for key in keys:
        store.set(key, text)
    session.reset()
    calls = stub.calls
    assert ask() == expected
    assert stub.calls in (calls, calls + 1)


def test_a_garbage_settings_row_degrades_the_session_to_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache"
    FileCache(str(path)).close()
    with sqlite3.connect(str(path / "cache.db")) as db:
        db.execute("UPDATE Settings SET value = 'garbage' WHERE key = 'eviction_policy'")
    stub = Stub(SHOTS)
    with caplog.at_level(logging.WARNING, logger="sgcache_layers"):
        session = Session(
            stub,
            cache=lambda s: SerialisedCache(FileCache(str(path)), encode=s.encode, decode=s.decode),
        )
    assert len(session.cache.caches) == 1  # memory only
    assert [e["code"] for e in session.find("Shot", [], ["code"])] == [s["code"] for s in SHOTS]
    assert any("memory only" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------- exact values


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_values_parsers_disagree_on_come_back_exactly(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Integers beyond 64 bits, NaN and lone surrogates, in rows and in filter values."""
    rows = [
        {
            "type": "Shot",
            "id": 1,
            "big": 2**64 + 1,
            "small": -(2**63) - 1,
            "huge": 10**30,
            "odd": "lone \ud800 surrogate",
            "link": {"type": "Asset", "id": 7, "name": "\udfff"},
        }
    ]

    def maker(session: Session) -> Any:
        if backend == "file":
            raw: Any = FileCache(str(tmp_path / "cache"))
        else:
            raw = RedisCache(request.getfixturevalue("redis_url"), namespace="exact")
        return SerialisedCache(raw, encode=session.encode, decode=session.decode)

    def read(session: Session) -> Any:
        found = session.find("Shot", [["odd", "is", "lone \ud800 surrogate"]], list(rows[0]))
        return [
            {k: (dict.get(v, "name") if k == "link" else v) for k, v in e.items()} for e in found
        ]

    stub = Stub(rows)
    first = Session(stub, cache=maker)
    expected = read(first)
    first.close()
    second = Session(stub, cache=maker)
    again = read(second)
    assert stub.calls == 1  # the second session read it all from the cache
    assert again == expected
    for name in ("big", "small", "huge"):
        assert type(again[0][name]) is int
    assert again[0]["link"] == "\udfff"


def test_summarize_with_bad_summary_fields_names_them() -> None:
    session = Session(Stub(SHOTS))
    with pytest.raises(QueryError, match="summary_fields"):
        session.summarize("Shot", [], [5])  # type: ignore[list-item]
    with pytest.raises(QueryError, match="grouping"):
        session.summarize("Shot", [], [{"field": "id", "type": "count"}], grouping=[{"x": 1}])


def test_no_password_from_the_site_url_shows(shotgrid_server: ShotgridServer) -> None:
    from shotgun_api3 import Shotgun

    url = shotgrid_server.url.replace("http://", "http://basic-user:s3cret-Pass@")
    sg = Shotgun(url, shotgrid_server.script_name, shotgrid_server.api_key, connect=False)
    session = Session(sg)
    for text in (repr(session.shotgun), repr(session), session.namespace, session.site):
        assert "s3cret-Pass" not in text
        assert shotgrid_server.api_key not in text


# ------------------------------------------------------------------------ stale_if_error


def test_get_and_auto_populate_serve_stale_records_when_shotgrid_fails(
    shotgrid_server: ShotgridServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = shotgrid_server
    path = tmp_path / "cache"

    def maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(str(path)), encode=session.encode, decode=session.decode)

    shot_id = int(server.client().find("Shot", [], [], order=[{"field_name": "id"}])[0]["id"])
    with Session(server.client(), cache=maker) as warm:
        shot = warm.get("Shot", shot_id)
        shot.fetch(["description"])
        expected = (shot["code"], shot["description"])
        warm.find("Shot", [["id", "is", shot_id]], ["code"])
    client = server.client()
    client.config.max_rpc_attempts = 1
    session = Session(client, cache=maker, max_age=0)  # everything cached is too old
    server.inject_fault("503", method="find", count=None)
    with caplog.at_level(logging.WARNING, logger="sgcache_layers"):
        got = session.get("Shot", shot_id)
        assert got is not None and got["code"] == expected[0]
        assert session.stats.stale_served == 1
        (row,) = session.find("Shot", [["id", "is", shot_id]], ["code"])
        assert session.stats.stale_served == 2
        session.reset()
        (row,) = session.find("Shot", [["id", "is", shot_id]], ["code"])
        assert "description" not in row
        assert row["description"] == expected[1]  # auto-populated from the stale record
    assert session.stats.stale_served == 4
    assert sum("stale" in r.getMessage() for r in caplog.records) >= 3
    with pytest.raises(Exception, match="503"):
        session.get("Shot", shot_id + 100000)  # nothing cached: the outage itself


def test_a_broken_layer_mid_run_degrades_to_a_miss(
    shotgrid_server: ShotgridServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A layer that starts failing after the session started: misses and warnings only."""

    class Flaky(MemoryCache):
        broken = False

        def get(self, key: str) -> Any:
            if self.broken:
                raise OSError("the disk went away")
            return super().get(key)

        def get_many(self, keys: Any) -> Any:
            if self.broken:
                raise OSError("the disk went away")
            return super().get_many(keys)

        def set_many(self, mapping: Any) -> None:
            if self.broken:
                raise OSError("the disk went away")
            super().set_many(mapping)

    flaky = Flaky()
    session = Session(shotgrid_server.client(), cache=LayeredCache([flaky]))
    first = [e["code"] for e in session.find("Shot", [], ["code"])]
    flaky.broken = True
    session.reset()
    with caplog.at_level(logging.WARNING, logger="sgcache_layers"):
        assert [e["code"] for e in session.find("Shot", [], ["code"])] == first
        assert session.get("Shot", session.find("Shot", [], ["code"])[0]["id"]) is not None
    assert any("failed" in r.getMessage() for r in caplog.records)


def test_stale_if_error_seconds_bound_how_stale_an_answer_may_be(
    shotgrid_server: ShotgridServer,
) -> None:
    import time

    server = shotgrid_server
    client = server.client()
    client.config.max_rpc_attempts = 1
    session = Session(client, stale_if_error=0.5)
    assert [e["code"] for e in session.find("Shot", [], ["code"])]
    server.inject_fault("503", method="find", count=None)
    assert session.find("Shot", [], ["code"], max_age=0)  # younger than half a second
    assert session.stats.stale_served == 1
    time.sleep(0.6)
    with pytest.raises(Exception, match="503"):
        session.find("Shot", [], ["code"], max_age=0)  # now too stale to serve
    with pytest.raises(ValueError, match="stale_if_error"):
        Session(client, stale_if_error=-1)
