"""The Session over the real shotgun_api3 client and the loopback server (issue 3)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import (
    NOT_SET,
    Entity,
    FileCache,
    LayeredCache,
    MemoryCache,
    SerialisedCache,
    Session,
)
from sgcache_layers.session import SessionConfigError


def disk_cache_maker(path: Path) -> Any:
    def cache_maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(str(path)), encode=session.encode, decode=session.decode)

    return cache_maker


@pytest.fixture
def sg(shotgrid_server: Any) -> Any:
    return shotgrid_server.client()


@pytest.fixture
def session(sg: Any, tmp_path: Path) -> Any:
    with Session(sg, cache=disk_cache_maker(tmp_path / "cache")) as s:
        yield s


def a_shot(sg: Any) -> dict[str, Any]:
    shot = sg.find_one("Shot", [], ["code", "sg_sequence", "project"], order=[{"field_name": "id"}])
    assert shot is not None
    return shot  # type: ignore[no-any-return]


# -- wiring -------------------------------------------------------------------


def test_cache_is_layered_with_memory_first(sg: Any, tmp_path: Path) -> None:
    memory_only = Session(sg)
    assert isinstance(memory_only.cache, LayeredCache)
    assert len(memory_only.cache.caches) == 1
    assert isinstance(memory_only.cache.caches[0], MemoryCache)

    extra = SerialisedCache(FileCache(str(tmp_path / "c")))
    given = Session(sg, cache=extra)
    assert isinstance(given.cache.caches[0], MemoryCache)
    assert given.cache.caches[1] is extra

    none_maker = Session(sg, cache=lambda session: None)
    assert len(none_maker.cache.caches) == 1

    seen: list[Session] = []

    def maker(session: Session) -> SerialisedCache:
        seen.append(session)
        return SerialisedCache(
            FileCache(str(tmp_path / "d")), encode=session.encode, decode=session.decode
        )

    made = Session(sg, cache=maker)
    assert seen == [made]
    assert isinstance(made.cache.caches[1], SerialisedCache)


def test_a_non_cache_is_refused_with_its_type(sg: Any) -> None:
    with pytest.raises(SessionConfigError, match="dict"):
        Session(sg, cache={})  # type: ignore[arg-type]


def test_environment_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("SG_SCRIPT", raising=False)
    monkeypatch.setenv("SG_API_KEY", "secret-key-value")
    with pytest.raises(SessionConfigError) as info:
        Session()
    assert "SG_SCRIPT" in str(info.value)
    assert "SG_URL" not in str(info.value).split("set ")[-1]
    assert "secret-key-value" not in str(info.value)


def test_environment_builds_a_client(monkeypatch: pytest.MonkeyPatch, shotgrid_server: Any) -> None:
    monkeypatch.setenv("SG_URL", shotgrid_server.url)
    monkeypatch.setenv("SG_SCRIPT", shotgrid_server.script_name)
    monkeypatch.setenv("SG_API_KEY", shotgrid_server.api_key)
    session = Session()
    assert session.find_one("Project", [], ["name"]) is not None
    assert shotgrid_server.api_key not in session.namespace


def test_works_over_mockgun_and_absorbs_update_list(mockgun_sg: Any) -> None:
    project = mockgun_sg.create("Project", {"name": "Mock"})
    shot = mockgun_sg.create("Shot", {"code": "M1", "project": project})
    session = Session(mockgun_sg)
    updated = session.update("Shot", shot["id"], {"code": "M2"})
    assert isinstance(updated, Entity)
    assert updated["code"] == "M2"
    assert session.get("Shot", shot["id"])["code"] == "M2"


# -- entities -----------------------------------------------------------------


def test_one_instance_per_entity(session: Session, sg: Any) -> None:
    shot = a_shot(sg)
    a = session.find_one("Shot", [["id", "is", shot["id"]]], ["code"])
    b = session.find_one("Shot", [["code", "is", shot["code"]]], ["sg_status_list"])
    c = session.get("Shot", shot["id"])
    assert a is b is c
    assert isinstance(a, dict) and isinstance(a, Entity)
    assert a["sg_status_list"] is not None or "sg_status_list" in a


def test_auto_populate_fetches_and_can_be_turned_off(session: Session, sg: Any) -> None:
    shot = session.find_one("Shot", [["id", "is", a_shot(sg)["id"]]], ["code"])
    assert shot is not None
    before = session.stats.requests["find"]
    assert shot.get("description", "absent") == "absent"
    assert session.stats.requests["find"] == before  # .get never asks
    with session.auto_populating(False):
        assert shot["description"] is NOT_SET
        assert session.stats.requests["find"] == before
    shot["description"]  # fetched now
    assert session.stats.requests["find"] == before + 1
    assert "description" in shot


def test_auto_populate_is_per_thread(sg: Any) -> None:
    session = Session(sg, auto_populate=False)
    assert session.auto_populate is False
    session.auto_populate = True
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(session.auto_populate))
    thread.start()
    thread.join()
    assert seen == [False]  # a new thread starts from the constructor's value
    assert session.auto_populate is True


def test_deep_links_merge_into_the_linked_entity(session: Session, sg: Any) -> None:
    task = session.find_one("Task", [["entity", "type_is", "Shot"]], ["entity", "entity.Shot.code"])
    assert task is not None
    requests = session.stats.request_count
    shot = task["entity"]
    assert isinstance(shot, Entity)
    assert shot["code"] == task["entity.Shot.code"]
    assert session.stats.request_count == requests
    assert task in shot.backrefs[("Task", "entity")]


def test_merge_keeps_newer_updated_at(session: Session) -> None:
    old = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    new = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    entity = session.merge({"type": "Shot", "id": 999001, "code": "new", "updated_at": new})
    session.merge({"type": "Shot", "id": 999001, "code": "old", "updated_at": old})
    assert entity["code"] == "new"
    session.merge({"type": "Shot", "id": 999001, "code": "forced", "updated_at": old}, over=True)
    assert entity["code"] == "forced"
    session.merge({"type": "Shot", "id": 999001, "code": "ignored", "extra": 1}, over=False)
    assert entity["code"] == "forced" and entity["extra"] == 1


def test_entity_helpers(session: Session, sg: Any) -> None:
    task = session.find_one("Task", [["entity", "type_is", "Shot"]], ["content", "entity"])
    assert task is not None
    assert task.minimal == {"type": "Task", "id": task["id"]}
    shot = task.parent()
    assert shot is not None and shot.type == "Shot"
    project = task.project()
    assert project is not None and project.type == "Project"
    everything = session.fetch_heirarchy([task])
    assert {e.type for e in everything} >= {"Task", "Shot", "Sequence", "Project"}
    plain = task.as_dict()
    assert type(plain) is dict and type(plain["entity"]) is dict
    json.dumps(plain, default=str)
    assert task.exists() is True
    session.fetch_backrefs([shot], "Task", "entity")
    assert task in shot.backrefs[("Task", "entity")]


# -- reads and writes ---------------------------------------------------------


def test_get_answers_fresh_records_without_requests(session: Session, sg: Any) -> None:
    shot_id = a_shot(sg)["id"]
    first = session.get("Shot", shot_id)
    assert first is not None and first["code"]
    requests = session.stats.request_count
    assert session.get("Shot", shot_id) is first
    assert session.get("Shot", [shot_id, shot_id]) == [first, first]
    assert session.stats.request_count == requests
    session.reset()  # memory layer gone, disk layer remains
    again = session.get("Shot", shot_id)
    assert again is not None and again["code"] == first["code"]
    assert session.stats.request_count == requests


def test_get_of_missing_entity_is_none(session: Session) -> None:
    assert session.get("Shot", 987654) is None


def test_writes_keep_the_cache_true(session: Session, sg: Any) -> None:
    shot = a_shot(sg)
    cached = session.get("Shot", shot["id"])
    session.update("Shot", shot["id"], {"code": "RENAMED", "description": "new words"})
    requests = session.stats.request_count
    assert session.get("Shot", shot["id"])["code"] == "RENAMED"
    assert cached["description"] == "new words"
    assert session.stats.request_count == requests

    created = session.create("Shot", {"code": "NEW_SHOT", "project": shot["project"]})
    assert session.get("Shot", created["id"]) is created
    assert session.stats.request_count == requests + 1

    assert session.delete("Shot", created["id"]) is True
    assert session.get("Shot", created["id"]) is None
    session.reset()
    assert session.get("Shot", created["id"]) is None

    assert session.revive("Shot", created["id"]) is True
    revived = session.get("Shot", created["id"])
    assert revived is not None and revived["code"] == "NEW_SHOT"


def test_batch_keeps_the_cache_true(session: Session, sg: Any) -> None:
    shot = a_shot(sg)
    results = session.batch(
        [
            {
                "request_type": "update",
                "entity_type": "Shot",
                "entity_id": shot["id"],
                "data": {"code": "BATCHED"},
            },
            {
                "request_type": "create",
                "entity_type": "Shot",
                "data": {"code": "BATCH_NEW", "project": shot["project"]},
            },
        ]
    )
    requests = session.stats.request_count
    assert session.get("Shot", shot["id"])["code"] == "BATCHED"
    assert session.get("Shot", results[1]["id"]) is results[1]
    assert session.stats.request_count == requests
    session.batch(
        [{"request_type": "delete", "entity_type": "Shot", "entity_id": results[1]["id"]}]
    )
    assert session.get("Shot", results[1]["id"]) is None


def test_summarize_passes_through(session: Session, sg: Any) -> None:
    expected = sg.summarize("Shot", [], [{"field": "id", "type": "count"}])
    assert session.summarize("Shot", [], [{"field": "id", "type": "count"}]) == expected


def test_linked_entities_are_sent_as_plain_links(session: Session, sg: Any) -> None:
    shot = session.get("Shot", a_shot(sg)["id"])
    project = shot["project"]
    assert isinstance(project, Entity)
    task = session.create("Task", {"content": "x", "entity": shot, "project": project})
    raw = sg.find_one("Task", [["id", "is", task["id"]]], ["entity"])
    assert raw["entity"]["id"] == shot["id"]


# -- across processes ---------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from sgcache_layers import FileCache, SerialisedCache, Session
    import shotgun_api3
    url, script, key, path, shot_id = sys.argv[1:6]
    sg = shotgun_api3.Shotgun(url, script, key, connect=False)
    maker = lambda s: SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode)
    with Session(sg, cache=maker) as session:
        shot = session.get("Shot", int(shot_id))
        with session.auto_populating(False):
            out = {"code": shot["code"], "description": shot["description"],
                   "sequence": shot["sg_sequence"]["id"]}
        out["requests"] = session.stats.request_count
    print(json.dumps(out, default=str))
    """
)


def run_child(server: Any, script: str, key: str, path: Path, shot_id: int) -> dict[str, Any]:
    env = dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, server.url, script, key, str(path), str(shot_id)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_second_process_reads_from_disk_without_requests(
    shotgrid_server: Any, sg: Any, tmp_path: Path
) -> None:
    path = tmp_path / "shared"
    shot_id = a_shot(sg)["id"]
    with Session(sg, cache=disk_cache_maker(path)) as first:
        shot = first.get("Shot", shot_id)
        shot.fetch(["description"])
        expected = (shot["code"], shot["description"], shot["sg_sequence"]["id"])
    shotgrid_server.reset_requests()
    out = run_child(
        shotgrid_server, shotgrid_server.script_name, shotgrid_server.api_key, path, shot_id
    )
    assert (out["code"], out["description"], out["sequence"]) == expected
    assert out["requests"] == 0
    assert shotgrid_server.request_count == 0


def test_other_identity_or_site_sees_nothing(shotgrid_server: Any, sg: Any, tmp_path: Path) -> None:
    path = tmp_path / "shared"
    shot_id = a_shot(sg)["id"]
    with Session(sg, cache=disk_cache_maker(path)) as first:
        first.get("Shot", shot_id)
    shotgrid_server.add_script("other_script", "other-key-123")
    other = shotgrid_server.client("other_script", "other-key-123")
    with Session(other, cache=disk_cache_maker(path)) as second:
        second.get("Shot", shot_id)
        assert second.stats.requests["find"] == 1
        assert "other-key-123" not in second.namespace
    with Session(sg, cache=disk_cache_maker(path), site="https://elsewhere.example.com") as third:
        third.get("Shot", shot_id)
        assert third.stats.requests["find"] == 1


# -- lifecycle ----------------------------------------------------------------


def test_reset_close_and_context_manager(sg: Any, tmp_path: Path) -> None:
    path = tmp_path / "c"
    with Session(sg, cache=disk_cache_maker(path)) as session:
        shot = session.get("Shot", a_shot(sg)["id"])
        session.find("Shot", [], ["code"])  # a built answer now lives in the memory layer
        memory = session.cache.caches[0]
        assert memory.keys()
        session.reset()
        assert memory.keys() == []
        disk = session.cache.caches[1]
        assert any("|e|Shot|" in k for k in disk.keys())
        assert session.get("Shot", shot["id"]) is not shot  # identity map was cleared
    assert session.closed


def test_stats_count_requests_and_layer_hits(session: Session, sg: Any) -> None:
    shot_id = a_shot(sg)["id"]
    session.get("Shot", shot_id)
    session.reset()
    session.get("Shot", shot_id)
    stats = session.stats.as_dict()
    assert stats["requests"]["find"] == 1
    layers = stats["layers"]
    assert layers[0]["name"] == "MemoryCache"
    assert layers[1]["hits"] >= 1
    assert stats["hits"]["cache"] >= 1


@pytest.fixture
def mockgun_sg(tmp_path: Path) -> Any:
    """A Mockgun on the real-site schema copied into tests/fixtures."""
    import pickle

    from shotgun_api3.lib import mockgun

    here = Path(__file__).parent / "fixtures" / "real-site-schema"
    schema = json.loads((here / "schema.json").read_text())
    schema_entity = json.loads((here / "schema_entity.json").read_text())
    (tmp_path / "s.pickle").write_bytes(pickle.dumps(schema))
    (tmp_path / "se.pickle").write_bytes(pickle.dumps(schema_entity))
    mockgun.Shotgun.set_schema_paths(str(tmp_path / "s.pickle"), str(tmp_path / "se.pickle"))
    return mockgun.Shotgun("https://mock.example.com", "mock_script", "mock-key")


def test_refetch_keeps_link_display_names(session: Session, sg: Any) -> None:
    shot = session.get("Shot", a_shot(sg)["id"])
    sequence = shot["sg_sequence"]
    name = sequence["name"]  # came with the link
    assert name
    session.get("Sequence", sequence["id"])  # fetches the sequence's own fields
    assert sequence["name"] == name
    assert sequence["code"] == name


REAL_SCHEMA = Path(__file__).parent / "fixtures" / "real-site-schema"


def test_session_on_the_real_site_schema(shotgrid_server_factory: Any, tmp_path: Path) -> None:
    """Nothing in the session leans on our demo schema: a real site's 77 types work."""
    server = shotgrid_server_factory(str(REAL_SCHEMA))
    sg = server.client()
    project = sg.create("Project", {"name": "Real Schema"})
    sequence = sg.create("Sequence", {"code": "RS010", "project": project})
    shot = sg.create("Shot", {"code": "RS010_0010", "project": project, "sg_sequence": sequence})
    custom = sg.create("CustomEntity01", {"code": "widget", "project": project})
    path = tmp_path / "real"
    with Session(sg, cache=disk_cache_maker(path)) as first:
        first.sync()
        first.update("Shot", shot["id"], {"description": "on a real schema"})
        rows = first.find(
            "Shot", [["project", "is", project]], ["code", "sg_sequence.Sequence.code"]
        )
        assert rows[0]["sg_sequence.Sequence.code"] == "RS010"
        assert first.get("CustomEntity01", custom["id"])["code"] == "widget"
        field = first.schema_field_read("Shot", "sg_sequence")["sg_sequence"]
        assert field["data_type"]["value"] == "entity"
    server.reset_requests()
    with Session(sg, cache=disk_cache_maker(path)) as second:
        again = second.find(
            "Shot", [["project", "is", project]], ["code", "sg_sequence.Sequence.code"]
        )
        assert [r["code"] for r in again] == ["RS010_0010"]
        assert second.get("Shot", shot["id"])["description"] == "on a real schema"
        assert second.get("CustomEntity01", custom["id"])["code"] == "widget"
        assert server.request_count == 0
        sg.update("CustomEntity01", custom["id"], {"code": "renamed widget"})
        second.sync()
        assert second.get("CustomEntity01", custom["id"])["code"] == "renamed widget"


def test_a_poorer_session_does_not_make_the_cache_poorer(sg: Any, tmp_path: Path) -> None:
    path = tmp_path / "rich"
    shot_id = a_shot(sg)["id"]
    with Session(sg, cache=disk_cache_maker(path)) as rich:
        rich.get("Shot", shot_id).fetch(["description", "sg_cut_in"])
    with Session(sg, cache=disk_cache_maker(path)) as poor:
        poor.find("Shot", [["id", "is", shot_id]], ["code"])  # knows only the code
    with Session(sg, cache=disk_cache_maker(path)) as third:
        shot = third.get("Shot", shot_id)
        with third.auto_populating(False):
            assert shot["description"] is not NOT_SET
            assert "sg_cut_in" in shot
        assert third.stats.request_count == 0


def test_update_drops_deep_values_through_the_changed_link(session: Session, sg: Any) -> None:
    shot = session.find_one(
        "Shot", [["id", "is", a_shot(sg)["id"]]], ["sg_sequence", "sg_sequence.Sequence.code"]
    )
    assert shot is not None
    other = sg.create("Sequence", {"code": "OTHER_SEQ", "project": shot["project"]})
    session.update("Shot", shot["id"], {"sg_sequence": other})
    assert "sg_sequence.Sequence.code" not in shot
    session.reset()
    again = session.get("Shot", shot["id"])
    assert "sg_sequence.Sequence.code" not in again
    assert again["sg_sequence"]["id"] == other["id"]


def test_sudo_as_login_is_its_own_namespace(shotgrid_server: Any, tmp_path: Path) -> None:
    """A script acting as a user may see other rows: never share its answers."""
    path = tmp_path / "sudo"
    login = shotgrid_server.client().find_one("HumanUser", [], ["login"])["login"]
    plain = Session(shotgrid_server.client(), cache=disk_cache_maker(path))
    plain.find("Shot", [], ["code"])
    as_user = Session(shotgrid_server.client(sudo_as_login=login), cache=disk_cache_maker(path))
    assert as_user.namespace != plain.namespace
    assert f"sudo={login}" in as_user.namespace
    as_user.find("Shot", [], ["code"])
    assert as_user.stats.requests["find"] == 1


def test_the_session_follows_the_layers_it_is_given(sg: Any, tmp_path: Path) -> None:
    """``session.cache.caches`` refuses in-place changes; an assigned list is used."""
    session = Session(sg)
    with pytest.raises(TypeError, match="assign"):
        session.cache.caches.append(MemoryCache())  # type: ignore[attr-defined]
    disk = SerialisedCache(
        FileCache(str(tmp_path / "added")), encode=session.encode, decode=session.decode
    )
    session.cache.caches = [session.cache.caches[0], disk]
    session.find("Shot", [], ["code"])
    session.get("Shot", a_shot(sg)["id"])
    session.drain()
    keys = disk.keys()
    assert any("|q|Shot|" in k for k in keys) and any("|e|Shot|" in k for k in keys)
    assert any(k.endswith("|clock") for k in keys)  # bookkeeping moved there too
    again = Session(sg, cache=disk)
    again.find("Shot", [], ["code"])
    assert again.stats.request_count == 0
