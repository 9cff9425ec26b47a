"""Warming: the requests a first warm makes, an incremental warm's single event-log read,
what changes make it fetch again, and how snapshots follow the freshness rule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import pytest

from sgcache_layers import FileCache, SerialisedCache, Session
from sgcache_layers.session import OfflineError
from sgcache_layers.testing import ShotgridServer
from sgcache_layers.warming import WarmError

TYPES = [
    "ApiUser",
    "Asset",
    "HumanUser",
    "Note",
    "Project",
    "PublishedFile",
    "Sequence",
    "Shot",
    "Step",
    "Task",
    "Version",
]


def _cache(path: Path) -> Callable[[Session], SerialisedCache]:
    def cache_maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(str(path)), encode=session.encode, decode=session.decode)

    return cache_maker


def _project(server: ShotgridServer) -> dict[str, Any]:
    sg = server.client()
    found = sg.find_one("Project", [], ["name"], order=[{"field_name": "id"}])
    assert found is not None
    return dict(found)


def _norm(value: Any) -> Any:
    if isinstance(value, Mapping):
        if "type" in value and "id" in value:
            return (value["type"], value["id"], dict.get(value, "name"))
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def _table(rows: Any, fields: list[str]) -> list[Any]:
    return [(r["type"], r["id"], [_norm(dict.get(r, f)) for f in fields]) for r in rows]


def assert_same_everywhere(server: ShotgridServer, path: Path, project: Mapping[str, Any]) -> None:
    """Every warmed type read whole (live and retired) is the same offline as online."""
    sg = server.client()
    schema = sg.schema_read()
    with Session(server.client(connect=False), cache=_cache(path), mode="offline") as offline:
        server.reset_requests()
        for name in TYPES:
            fields = [
                f
                for f, d in schema[name].items()
                if d["data_type"]["value"] not in ("image", "url")
            ]
            scope = [["project", "is", dict(project)]] if "project" in schema[name] else []
            for retired in (False, True):
                online = sg.find(name, scope, fields, retired_only=retired)
                offline.reset()
                answered = offline._snapshots.counts["answered"]
                found = offline.find(name, scope, fields, retired_only=retired)
                assert offline._snapshots.counts["answered"] == answered + 1, name
                assert _table(found, fields) == _table(online, fields), (name, retired)
        assert server.count_requests() == 2 * len(TYPES)  # the online reads only


# ------------------------------------------------------------------------ first warms


def test_a_first_warm_reads_each_type_once_live_and_once_retired(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    client = shotgrid_server.client()  # connected: its info() request is made now
    shotgrid_server.reset_requests()
    with Session(client, cache=_cache(tmp_path)) as session:
        report = session.warm(project["name"], progress=False)
    assert sorted(report["full"]) == TYPES
    assert report["updated"] == {} and report["events"] == 0
    assert report["project"] == {"type": "Project", "id": project["id"], "name": project["name"]}
    count = shotgrid_server.count_requests
    for name in TYPES:
        if name != "Project":
            assert count("read", name) == 2, name  # small types: one page live, one retired
    assert count("read", "Project") == 3  # the name looked up, then the two reads
    assert count("schema_read") == 1
    assert count("read", "EventLogEntry") == 2  # the first sync, then the position
    assert shotgrid_server.request_count == 2 * len(TYPES) + 4 == report["requests"]
    assert report["rows"]["Shot"] == len(
        shotgrid_server.client().find("Shot", [["project", "is", project]])
    )
    assert_same_everywhere(shotgrid_server, tmp_path, project)


def test_big_types_are_read_in_pages_of_the_sites_size(
    shotgrid_server_factory: Callable[..., ShotgridServer], tmp_path: Path
) -> None:
    server = shotgrid_server_factory(scale=0.3)
    project = _project(server)
    tasks = len(server.client().find("Task", [["project", "is", project]]))
    assert tasks > 500
    client = server.client()
    server.reset_requests()
    with Session(client, cache=_cache(tmp_path)) as session:
        session.warm(project["id"], ["Task"], progress=False)
    assert server.count_requests("read", "Task") == math.ceil(tasks / 500) + 1
    assert server.count_requests("read", "Project") == 1 + 2  # the id checked, then read
    assert server.count_requests() == math.ceil(tasks / 500) + 1 + 3 + 2 + 1
    pages = [r.params["paging"] for r in server.requests if r.entity_type == "Task"]
    assert all(p["entities_per_page"] == 500 for p in pages)


def test_a_given_schema_saves_the_schema_read(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    schema = shotgrid_server.client().schema_read()
    client = shotgrid_server.client()
    shotgrid_server.reset_requests()
    with Session(client, cache=_cache(tmp_path), schema=schema) as session:
        session.warm(project, ["Shot"], {"Shot": ["code", "sg_sequence"]}, progress=False)
    assert shotgrid_server.count_requests("schema_read") == 0
    with Session(shotgrid_server.client(), cache=_cache(tmp_path), mode="offline") as offline:
        in_project = [["project", "is", project]]
        assert len(offline.find("Shot", in_project, ["code", "sg_sequence"])) > 0
        assert offline.find("Shot", in_project, ["description"]) == []  # not warmed: a miss
        assert offline._snapshots.counts == {"answered": 1, "missed": 1}


# ------------------------------------------------------------------- incremental warms


def test_an_unchanged_project_costs_one_event_log_request(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
    client = shotgrid_server.client()
    shotgrid_server.reset_requests()
    with Session(client, cache=_cache(tmp_path)) as session:
        report = session.warm(project["name"], progress=False)
    assert [(r.method, r.entity_type) for r in shotgrid_server.requests] == [
        ("read", "EventLogEntry")
    ]
    assert report["full"] == [] and report["updated"] == {} and report["requests"] == 1


def test_an_incremental_warm_reads_only_what_the_events_name(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    sg = shotgrid_server.client()
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
    in_project = [["project", "is", project]]
    shots = sg.find("Shot", in_project, ["code", "sg_sequence"])
    tasks = sg.find("Task", in_project, ["content"])
    sequence = shots[0]["sg_sequence"]
    sg.update("Shot", shots[0]["id"], {"code": "renamed_0010", "sg_status_list": "hld"})
    sg.update("Sequence", sequence["id"], {"code": "SQ999"})  # in every shot's link
    sg.create("Shot", {"code": "new_0020", "project": project, "sg_sequence": sequence})
    sg.delete("Task", tasks[0]["id"])
    other = sg.find_one("Project", [["id", "is_not", project["id"]]], ["name"])
    sg.create("Shot", {"code": "elsewhere", "project": other})  # not this project's
    client = shotgrid_server.client()
    shotgrid_server.reset_requests()
    with Session(client, cache=_cache(tmp_path)) as session:
        report = session.warm(project["name"], progress=False)
    assert report["full"] == []
    assert sorted(report["updated"]) == ["Sequence", "Shot", "Task"]
    assert shotgrid_server.count_requests("read", "EventLogEntry") == 1
    assert shotgrid_server.count_requests("read", "Shot") == 1  # all found live
    assert shotgrid_server.count_requests("read", "Task") == 2  # one was retired
    assert shotgrid_server.count_requests("read", "Sequence") == 1
    assert shotgrid_server.count_requests() == 5
    (shot_read,) = [r for r in shotgrid_server.requests if r.entity_type == "Shot"]
    ids = shot_read.params["filters"]["conditions"][0]["values"]
    assert len(ids) == 2  # the renamed shot and the new one, not every shot in the sequence
    assert_same_everywhere(shotgrid_server, tmp_path, project)


def test_renamed_links_to_unwarmed_entities_are_read_again(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    """Tasks link people; with people not warmed, a rename re-reads the tasks naming them."""
    project = _project(shotgrid_server)
    sg = shotgrid_server.client()
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], ["Task"], progress=False)
    in_project = [["project", "is", project]]
    task = sg.find_one(
        "Task", in_project + [["task_assignees", "is_not", None]], ["task_assignees"]
    )
    user = task["task_assignees"][0]
    sg.update("HumanUser", user["id"], {"name": "Renamed Person"})
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        report = session.warm(project["name"], ["Task"], progress=False)
    # The tasks naming the person, and the project listing them among its users.
    assert report["full"] == [] and sorted(report["updated"]) == ["Project", "Task"]
    fields = ["content", "task_assignees"]
    with Session(shotgrid_server.client(), cache=_cache(tmp_path), mode="offline") as offline:
        found = offline.find("Task", in_project, fields)
    assert _table(found, fields) == _table(sg.find("Task", in_project, fields), fields)
    assert any(a["name"] == "Renamed Person" for t in found for a in dict.get(t, "task_assignees"))


def test_a_revived_entity_brings_back_the_links_a_site_hid(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    sg = shotgrid_server.client()
    in_project = [["project", "is", project]]
    shot = sg.find_one("Shot", in_project + [["assets", "is_not", None]], ["assets"])
    asset = shot["assets"][0]
    sg.delete("Asset", asset["id"])
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
        sg.revive("Asset", asset["id"])
        report = session.warm(project["name"], progress=False)
    assert "Shot" in report["full"]  # its assets may link the revived asset
    with Session(shotgrid_server.client(), cache=_cache(tmp_path), mode="offline") as offline:
        back = offline.find_one("Shot", in_project + [["id", "is", shot["id"]]], ["assets"])
    assert [a["id"] for a in back["assets"]] == [a["id"] for a in shot["assets"]]
    assert_same_everywhere(shotgrid_server, tmp_path, project)


def test_a_schema_change_reads_the_types_again_with_the_new_field(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
        shotgrid_server.add_field("Shot", "sg_lens", "text")
        sg = shotgrid_server.client()
        shot = sg.find_one("Shot", [["project", "is", project]], ["code"])
        sg.update("Shot", shot["id"], {"sg_lens": "35mm"})
        report = session.warm(project["name"], progress=False)
    assert sorted(report["full"]) == TYPES
    with Session(shotgrid_server.client(), cache=_cache(tmp_path), mode="offline") as offline:
        found = offline.find("Shot", [["sg_lens", "is", "35mm"], ["project", "is", project]])
    assert [s["id"] for s in found] == [shot["id"]]


def test_too_many_events_read_everything_again(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    sg = shotgrid_server.client()
    with Session(shotgrid_server.client(), cache=_cache(tmp_path), sync_limit=5) as session:
        session.warm(project["name"], progress=False)
        for shot in sg.find("Shot", [["project", "is", project]], limit=6):
            sg.update("Shot", shot["id"], {"description": "changed"})
        report = session.warm(project["name"], progress=False)
    assert sorted(report["full"]) == TYPES
    assert_same_everywhere(shotgrid_server, tmp_path, project)


def test_missing_event_ids_are_asked_for_again(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    sg = shotgrid_server.client()
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
        skipped = shotgrid_server.skip_event_ids(2)
        shot = sg.find_one("Shot", [["project", "is", project]], ["code"])
        sg.update("Shot", shot["id"], {"code": "after_the_gap"})
        session.warm(project["name"], progress=False)
        shotgrid_server.reset_requests()
        session.warm(project["name"], progress=False)
    (events,) = shotgrid_server.requests
    assert events.params["filters"]["logical_operator"] == "or"
    asked = [c["values"] for c in events.params["filters"]["conditions"] if c["relation"] == "in"]
    assert asked == [[skipped - 1, skipped]]


# ---------------------------------------------------------------------- freshness


def test_snapshots_follow_the_freshness_rule_in_cached_mode(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    sg = shotgrid_server.client()
    in_project = [["project", "is", project]]
    with Session(shotgrid_server.client(), cache=_cache(tmp_path), snapshots=True) as session:
        session.warm(project["name"], progress=False)
        epoch = session.namespace
        shotgrid_server.reset_requests()
        ip = session.find("Shot", in_project + [["sg_status_list", "is", "ip"]], ["code"])
        assert shotgrid_server.request_count == 0  # a new read, answered by the snapshot
        assert [s["id"] for s in ip] == [
            s["id"] for s in sg.find("Shot", in_project + [["sg_status_list", "is", "ip"]])
        ]
        shot = sg.find_one("Shot", in_project, ["code"])
        sg.update("Shot", shot["id"], {"sg_status_list": "ip"})
        assert session.sync() > 0  # moves Shot: the snapshot of shots is stale now
        assert session.namespace == epoch  # the warm settled the log: no flush
        shotgrid_server.reset_requests()
        fresh = session.find("Shot", in_project + [["sg_status_list", "is", "ip"]], ["id"])
        assert shotgrid_server.count_requests("read", "Shot") == 1
        assert shot["id"] in [s["id"] for s in fresh]
        steps = session.find("Step", [["code", "is", "Comp"]], ["code"])
        assert len(steps) == 1 and shotgrid_server.count_requests("read", "Step") == 0
        session.warm(project["name"], progress=False)
        shotgrid_server.reset_requests()
        again = session.find("Shot", in_project + [["sg_status_list", "is_not", "ip"]], ["id"])
        assert shotgrid_server.request_count == 0
        assert shot["id"] not in [s["id"] for s in again]
        shotgrid_server.reset_requests()
        session.find("Shot", in_project + [["code", "is", "x"]], max_age=0)
        assert shotgrid_server.count_requests("read", "Shot") == 1  # too old for max_age=0


def test_a_session_without_snapshots_asks_in_cached_mode(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
        shotgrid_server.reset_requests()
        session.find("Shot", [["project", "is", project]], ["code"])
        assert shotgrid_server.count_requests("read", "Shot") == 1


def test_a_flush_forgets_the_snapshot(shotgrid_server: ShotgridServer, tmp_path: Path) -> None:
    project = _project(shotgrid_server)
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
        session.flush()
        with session.using_mode("offline"):
            assert session.find("Shot", [["project", "is", project]], ["code"]) == []
        report = session.warm(project["name"], progress=False)
    assert sorted(report["full"]) == TYPES


def test_a_memory_only_session_answers_from_its_own_warm(
    shotgrid_server: ShotgridServer,
) -> None:
    project = _project(shotgrid_server)
    with Session(shotgrid_server.client()) as session:
        session.warm(project["id"], ["Shot"], progress=False)
        shotgrid_server.reset_requests()
        with session.using_mode("offline"):
            shots = session.find("Shot", [["project", "is", project]], ["code"])
        assert shots and shotgrid_server.request_count == 0


# ------------------------------------------------------------------------- errors


def test_warm_says_what_it_cannot_do(shotgrid_server: ShotgridServer) -> None:
    with Session(shotgrid_server.client()) as session:
        with pytest.raises(WarmError, match="no project named 'Nope'"):
            session.warm("Nope", progress=False)
        with pytest.raises(WarmError, match="no entity type 'Spaceship'"):
            session.warm(_project(shotgrid_server)["id"], ["Spaceship"], progress=False)
        with pytest.raises(WarmError, match="Shot has no field 'nope'"):
            session.warm(_project(shotgrid_server)["id"], ["Shot"], {"Shot": ["nope"]})
        with pytest.raises(WarmError, match="no project with id 999"):
            session.warm(999, progress=False)
        with session.using_mode("offline"), pytest.raises(OfflineError):
            session.warm("Nope")


def test_the_progress_bar_goes_to_stderr_when_asked(
    shotgrid_server: ShotgridServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with Session(shotgrid_server.client()) as session:
        session.warm(_project(shotgrid_server)["id"], ["Shot"], progress=True)
    assert "warming" in capsys.readouterr().err


def test_a_deep_path_into_another_project_is_a_miss(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    project = _project(shotgrid_server)
    sg = shotgrid_server.client()
    other = sg.find_one("Project", [["id", "is_not", project["id"]]], [])
    elsewhere = sg.find_one("Asset", [["project", "is", other]], ["code"])
    shot = sg.find_one("Shot", [["project", "is", project]], ["code", "assets"])
    sg.update("Shot", shot["id"], {"assets": [elsewhere]})
    task = sg.find_one("Task", [["project", "is", project]], ["content"])
    sg.update("Task", task["id"], {"entity": elsewhere})
    with Session(shotgrid_server.client(), cache=_cache(tmp_path)) as session:
        session.warm(project["name"], progress=False)
    in_project = [["project", "is", project]]
    with Session(shotgrid_server.client(), cache=_cache(tmp_path), mode="offline") as offline:
        # The link itself is known (with its name as the warm saw it)...
        found = offline.find("Shot", in_project + [["id", "is", shot["id"]]], ["assets"])
        assert [a["id"] for a in found[0]["assets"]] == [elsewhere["id"]]
        # ... but what it reaches is not: the read is not answered, not answered wrongly.
        deep = in_project + [["assets.Asset.code", "is", elsewhere["code"]]]
        assert offline.find("Shot", deep, ["code"]) == []
        # A deep field through a multi-entity link is None on a site: nothing to reach.
        (through,) = offline.find(
            "Shot", in_project + [["id", "is", shot["id"]]], ["assets.Asset.code"]
        )
        assert dict.get(through, "assets.Asset.code") is None
        assert (
            offline.find("Task", in_project + [["id", "is", task["id"]]], ["entity.Asset.code"])
            == []
        )
        assert offline._snapshots.counts == {"answered": 2, "missed": 2}
    assert [s["id"] for s in sg.find("Shot", deep)] == [shot["id"]]
    (online,) = sg.find("Task", [["id", "is", task["id"]]], ["entity.Asset.code"])
    assert online["entity.Asset.code"] == elsewhere["code"]
