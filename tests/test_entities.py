"""sgsession's entity semantics on the Session (issue 11), over the real shotgun_api3 client.

Every test counts the requests the loopback server saw, so "without a request" and "in one
batch" are checked where ShotGrid would be billed, not inside the session.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import Entity, RetiredEntityError, Session, records
from sgcache_layers.identity import container_fields
from sgcache_layers.session import SessionConfigError

UTC = dt.timezone.utc
OLD = dt.datetime(2024, 1, 1, tzinfo=UTC)
NEW = dt.datetime(2024, 6, 1, tzinfo=UTC)
NEWEST = dt.datetime(2024, 9, 1, tzinfo=UTC)


@pytest.fixture
def server(shotgrid_server: Any) -> Any:
    return shotgrid_server


@pytest.fixture
def sg(server: Any) -> Any:
    return server.client()


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture
def session(sg: Any, cache_dir: str) -> Any:
    with Session(sg, cache=cache_dir, sync_interval=None) as s:
        yield s


def shot_task(sg: Any) -> dict[str, Any]:
    task = sg.find_one(
        "Task",
        [["entity", "type_is", "Shot"]],
        ["content", "entity", "step", "entity.Shot.code", "step.Step.code"],
        order=[{"field_name": "id"}],
    )
    assert task is not None
    return task  # type: ignore[no-any-return]


def reads(server: Any) -> int:
    """Calls that read: every ``read`` RPC's first page (later pages belong to the call)."""
    return sum(
        1
        for r in server.requests
        if r.method == "read" and (r.params or {}).get("paging", {}).get("current_page", 1) == 1
    )


# -- 1. deep keys ---------------------------------------------------------------


def test_deep_keys_resolve_through_the_linked_entity(
    session: Session, sg: Any, server: Any
) -> None:
    raw = shot_task(sg)
    shot_raw = sg.find_one("Shot", [["id", "is", raw["entity"]["id"]]], ["sg_sequence", "code"])
    sequence_code = sg.find_one("Sequence", [["id", "is", shot_raw["sg_sequence"]["id"]]], ["code"])
    task = session.find_one("Task", [["id", "is", raw["id"]]], ["step", "entity"])
    session.get("Step", raw["step"]["id"])
    shot = session.get("Shot", raw["entity"]["id"])
    assert shot is not None
    session.get("Sequence", shot_raw["sg_sequence"]["id"])
    before = server.request_count

    assert task["step.Step.code"] == raw["step.Step.code"]
    assert task.get("step.Step.code") == raw["step.Step.code"]
    assert "step.Step.code" in task
    assert task["entity.Shot.code"] == raw["entity.Shot.code"]
    path = "entity.Shot.sg_sequence.Sequence.code"
    assert task[path] == task.get(path) == sequence_code["code"]
    assert task.get(["content", "step.Step.code"], "-") == ("-", raw["step.Step.code"])
    # Through a link to another type, ShotGrid answers None; so does the entity.
    assert task.get("entity.Asset.code", "default") is None
    assert "entity.Asset.code" in task
    assert server.request_count == before

    # Unknown locally: get() and `in` never ask, [] auto-populates the path.
    assert task.get("entity.Shot.description", "absent") == "absent"
    assert "entity.Shot.description" not in task
    assert server.request_count == before
    expected = sg.find_one("Task", [["id", "is", raw["id"]]], ["entity.Shot.description"])
    before = server.request_count
    assert task["entity.Shot.description"] == expected["entity.Shot.description"]
    assert server.request_count == before + 1
    with session.auto_populating(False):
        assert task.get("entity.Shot.sg_cut_in", 1) == 1


def test_deep_key_through_an_empty_link_is_none(session: Session, sg: Any, server: Any) -> None:
    project = sg.find_one("Project", [])
    made = sg.create("Task", {"content": "no entity", "project": project})
    task = session.find_one("Task", [["id", "is", made["id"]]], ["entity"])
    before = server.request_count
    assert task["entity"] is None
    assert task["entity.Shot.code"] is None
    assert "entity.Shot.code" in task
    assert server.request_count == before


def test_deep_keys_follow_writes_and_relinks(session: Session, sg: Any, server: Any) -> None:
    raw = shot_task(sg)
    task = session.find_one("Task", [["id", "is", raw["id"]]], ["entity", "entity.Shot.code"])
    shot = task["entity"]
    session.update(shot, code="WRITTEN_HERE")
    before = server.request_count
    assert task["entity.Shot.code"] == task.get("entity.Shot.code") == "WRITTEN_HERE"
    assert server.request_count == before
    # Relinked: what was read through the old link is not shown for the new one.
    other = sg.find_one("Shot", [["id", "is_not", shot.id]], ["code"])
    session.update(task, entity={"type": "Shot", "id": other["id"]})
    assert task["entity.Shot.code"] == other["code"]
    assert (
        sg.find_one("Task", [["id", "is", raw["id"]]], ["entity.Shot.code"])["entity.Shot.code"]
        == other["code"]
    )


# -- 2. assignment merges -------------------------------------------------------


def test_assignment_merges_links_into_the_session_entity(
    session: Session, sg: Any, server: Any, cache_dir: str
) -> None:
    raw = shot_task(sg)
    other_shot = sg.find_one(
        "Shot", [["id", "is_not", raw["entity"]["id"]]], ["code", "sg_status_list"]
    )
    task = session.get("Task", raw["id"])
    shot = session.get("Shot", other_shot["id"])
    assert task is not None and shot is not None
    session.drain()  # their own records are in the disk layer now
    before = server.request_count

    task["entity"] = {"type": "Shot", "id": other_shot["id"], "code": "LOCAL"}
    assert dict.__getitem__(task, "entity") is shot
    assert shot["code"] == "LOCAL"
    assert shot["sg_status_list"] == other_shot["sg_status_list"]  # kept, not replaced

    # update() with a nested link merges into the nested entity.
    task.update({"entity": {"type": "Shot", "id": other_shot["id"], "description": "d"}})
    assert dict.__getitem__(task, "entity") is shot
    assert shot["code"] == "LOCAL" and shot["description"] == "d"
    task.update(content="renamed here")
    assert task["content"] == "renamed here"

    # setdefault keeps what is there and merges what is not.
    assert task.setdefault("content", "ignored") == "renamed here"
    linked = task.setdefault("sg_extra", {"type": "Shot", "id": raw["entity"]["id"]})
    assert isinstance(linked, Entity) and linked.id == raw["entity"]["id"]
    assert server.request_count == before

    with pytest.raises(ValueError, match="id of Task"):
        task["id"] = task.id + 1
    with pytest.raises(ValueError, match="type of Task"):
        task.update(type="Shot")

    # Assigned values are this process's: the next get gives what ShotGrid said (here
    # from the task's own record, without a request), and nothing assigned reaches a
    # cache layer another session reads.
    fresh = session.get("Task", raw["id"])
    assert fresh is task
    assert server.request_count == before
    assert task["content"] == raw["content"]
    assert "sg_extra" not in task
    session.drain()
    with Session(sg, cache=cache_dir, sync_interval=None) as other:
        assert other.get("Shot", other_shot["id"])["code"] == other_shot["code"]


# -- 3. merge rules at every depth ---------------------------------------------


def test_nested_links_follow_the_merge_rules(session: Session) -> None:
    shot = session.merge({"type": "Shot", "id": 900001, "code": "new", "updated_at": NEW})
    # An older nested link loses, even inside a newer parent.
    session.merge(
        {
            "type": "Task",
            "id": 900002,
            "updated_at": NEWEST,
            "entity": {"type": "Shot", "id": 900001, "code": "old", "updated_at": OLD},
        }
    )
    assert shot["code"] == "new"
    # A newer nested link wins, even inside an older parent; what it adds is merged.
    task = session.merge(
        {
            "type": "Task",
            "id": 900002,
            "updated_at": OLD,
            "entity": {
                "type": "Shot",
                "id": 900001,
                "code": "newest",
                "sg_status_list": "ip",
                "updated_at": NEWEST,
            },
        }
    )
    assert shot["code"] == "newest" and shot["sg_status_list"] == "ip"
    assert task["updated_at"] == NEWEST  # the older parent did not win either
    # over=True: new values win at every depth; over=False keeps what is there.
    session.merge(
        {"type": "Task", "id": 900002, "entity": {"type": "Shot", "id": 900001, "code": "forced"}},
        over=True,
    )
    assert shot["code"] == "forced"
    session.merge(
        {
            "type": "Task",
            "id": 900002,
            "entity": {"type": "Shot", "id": 900001, "code": "kept?", "extra": 1},
        },
        over=False,
    )
    assert shot["code"] == "forced" and shot["extra"] == 1


def test_tuples_stay_tuples(session: Session) -> None:
    merged = session.merge(({"type": "Shot", "id": 900003, "tags": ({"type": "Tag", "id": 1},)},))
    assert isinstance(merged, tuple)
    assert isinstance(merged[0]["tags"], tuple)
    assert isinstance(merged[0]["tags"][0], Entity)


def test_cyclic_data_merges_into_self_referencing_entities(session: Session) -> None:
    shot: dict[str, Any] = {"type": "Shot", "id": 900004, "code": "cyclic"}
    asset: dict[str, Any] = {"type": "Asset", "id": 900005, "shots": [shot]}
    shot["itself"] = shot
    shot["assets"] = [asset]
    asset["back"] = {"type": "Shot", "id": 900004, "loop": shot}
    entity = session.merge(shot)
    assert entity["itself"] is entity
    other = entity["assets"][0]
    assert other["shots"][0] is entity and other["back"] is entity
    assert entity["loop"] is entity
    text = repr(entity)
    assert "900004" in text
    assert entity.as_dict()["itself"] == {"type": "Shot", "id": 900004}


# -- 4. ownership ---------------------------------------------------------------


def test_entities_of_another_session_are_refused(session: Session, sg: Any) -> None:
    raw = shot_task(sg)
    with Session(sg) as other:
        foreign = other.get("Task", raw["id"])
        assert foreign is not None
        calls = [
            lambda: session.fetch([foreign], ["content"]),
            lambda: session.fetch_core([foreign]),
            lambda: session.fetch_backrefs([foreign], "Version", "sg_task"),
            lambda: session.fetch_heirarchy([foreign]),
            lambda: session.filter_exists([foreign]),
        ]
        for call in calls:
            with pytest.raises(ValueError, match=f"Task {raw['id']} of another session"):
                call()
        with pytest.raises(ValueError, match="plain dict"):
            session.fetch([{"type": "Task", "id": raw["id"]}], ["content"])  # type: ignore[list-item]
        # The entity's own methods go to its own session.
        assert foreign.fetch("content") == raw["content"]
        assert session._identity.get("Task", raw["id"]) is None


# -- 5. write shortcuts ----------------------------------------------------------


def test_write_shortcuts_keep_the_upkeep(session: Session, sg: Any, server: Any) -> None:
    shots = sg.find("Shot", [], ["code"], order=[{"field_name": "id"}], limit=3)
    first = session.get("Shot", shots[0]["id"])
    second = session.get("Shot", shots[1]["id"])
    assert first is not None and second is not None

    assert session.update(first, {"code": "BY_DATA"}) is first
    assert session.update(first, description="by keyword") is first
    assert session.update("Shot", shots[2]["id"], code="BY_TYPE_ID")["code"] == "BY_TYPE_ID"
    before_batches = server.count_requests("batch")
    updated = session.update([first, second], sg_status_list="fin")
    assert updated == [first, second]
    assert server.count_requests("batch") == before_batches + 1

    before = server.request_count
    assert session.get("Shot", first.id)["code"] == "BY_DATA"
    assert first["description"] == "by keyword"
    assert session.get("Shot", second.id)["sg_status_list"] == "fin"
    assert server.request_count == before
    for raw_id, code, status in ((first.id, "BY_DATA", "fin"), (second.id, None, "fin")):
        on_site = sg.find_one("Shot", [["id", "is", raw_id]], ["code", "sg_status_list"])
        assert on_site["sg_status_list"] == status
        if code:
            assert on_site["code"] == code

    assert session.delete(first) is True
    assert session.get("Shot", first.id) is None
    assert sg.find_one("Shot", [["id", "is", first.id]]) is None
    assert session.revive(first) is True
    assert session.get("Shot", first.id)["code"] == "BY_DATA"

    with pytest.raises(TypeError, match="int entity id"):
        session.update("Shot", "7", {"code": "x"})
    with pytest.raises(TypeError, match="not both"):
        session.delete(first, 3)
    with pytest.raises(ValueError, match="at least one field"):
        session.update(first)


# -- 6. retired entities -----------------------------------------------------------


def test_fetching_from_a_retired_entity_raises_like_reading_it(
    session: Session, sg: Any, server: Any
) -> None:
    shot_id = sg.find_one("Shot", [], order=[{"field_name": "id"}])["id"]
    shot = session.get("Shot", shot_id)
    assert shot is not None and shot.exists() is True
    sg.delete("Shot", shot_id)  # behind the session's back
    with pytest.raises(RetiredEntityError, match=f"Shot {shot_id} is retired") as info:
        session.fetch([shot], ["description"])
    assert isinstance(info.value, KeyError)
    assert shot.exists() is False
    with pytest.raises(RetiredEntityError, match="'sg_cut_in'"):
        shot.fetch("sg_cut_in")
    with pytest.raises(KeyError, match=f"Shot {shot_id} is retired"):
        shot["sg_cut_out"]
    # Fields the entity holds are still readable; fetching them needs nothing.
    assert shot.fetch("code") == shot["code"]


# -- 7. get takes fields -----------------------------------------------------------


def test_get_takes_fields(session: Session, sg: Any, server: Any) -> None:
    raws = sg.find("Shot", [], ["description", "sg_cut_in"], order=[{"field_name": "id"}], limit=2)
    before = server.request_count
    shot = session.get("Shot", raws[0]["id"], ["description"])
    assert shot is not None and dict.__contains__(shot, "description")
    assert shot["description"] == raws[0]["description"]
    assert server.request_count == before + 1  # the important fields and these, at once
    shot_again = session.get("Shot", raws[0]["id"], "sg_cut_in")
    assert shot_again is shot and dict.__getitem__(shot, "sg_cut_in") == raws[0]["sg_cut_in"]
    assert server.request_count == before + 2
    both = session.get("Shot", [raws[0]["id"], raws[1]["id"]], ["description", "sg_cut_in"])
    assert [dict.get(e, "sg_cut_in") for e in both] == [r["sg_cut_in"] for r in raws]
    assert server.request_count == before + 3
    # Known fields cost nothing; fetch=False never asks; a bool third is fetch.
    session.get("Shot", raws[0]["id"], ["description"])
    assert session.get("Shot", 987654, fetch=False) is not None
    assert session.get("Shot", 987653, False) is not None
    assert server.request_count == before + 3
    with pytest.raises(TypeError, match="field names"):
        session.get("Shot", raws[0]["id"], [1, 2])  # type: ignore[list-item]


# -- 8. important fields -----------------------------------------------------------


def test_default_results_match_shotgun_api3(session: Session, sg: Any) -> None:
    filters = [["entity", "type_is", "Shot"]]
    raw = sg.find_one("Task", filters, ["content"], order=[{"field_name": "id"}])
    task = session.find_one("Task", filters, ["content"], order=[{"field_name": "id"}])
    assert set(dict.keys(task)) == set(raw)


def test_add_important_brings_important_fields_and_links(sg: Any, server: Any) -> None:
    raw = shot_task(sg)
    shot_raw = sg.find_one("Shot", [["id", "is", raw["entity"]["id"]]], ["code", "sg_sequence"])
    step_raw = sg.find_one("Step", [["id", "is", raw["step"]["id"]]], ["short_name"])
    with Session(sg, add_important=True) as session:
        task = session.find_one("Task", [["id", "is", raw["id"]]])
        before = server.request_count
        with session.auto_populating(False):
            assert task["content"] == raw["content"]
            assert task["entity"]["code"] == shot_raw["code"]
            assert task["entity"]["sg_sequence"].id == shot_raw["sg_sequence"]["id"]
            assert task["step"]["short_name"] == step_raw["short_name"]
            assert task["project"]["name"]
        assert server.request_count == before
        made = session.create(
            "Task",
            {
                "content": "with important",
                "entity": raw["entity"],
                "project": raw["project"] if "project" in raw else sg.find_one("Project", []),
            },
        )
        with session.auto_populating(False):
            assert made["entity"]["code"] == shot_raw["code"]
            assert made["step"] is None


def test_heirarchy_of_2000_tasks_takes_at_most_three_calls(shotgrid_server_factory: Any) -> None:
    server = shotgrid_server_factory(scale=0.6, seed=3)
    sg = server.client()
    order = [{"field_name": "id"}]
    on_shots = sg.find("Task", [["entity", "type_is", "Shot"]], ["entity"], order=order)
    on_assets = sg.find("Task", [["entity", "type_is", "Asset"]], ["entity"], order=order)
    raw_tasks = on_shots[:1700] + on_assets[:300]
    assert len({t["id"] for t in raw_tasks}) == 2000
    shots = {
        s["id"]: s
        for s in sg.find("Shot", [], ["code", "sg_sequence", "sg_status_list", "project"])
    }
    assets = {a["id"]: a for a in sg.find("Asset", [], ["code", "sg_asset_type", "project"])}
    sequences = {s["id"]: s for s in sg.find("Sequence", [], ["code", "project"])}
    projects = {p["id"]: p for p in sg.find("Project", [], ["name"])}
    with Session(sg) as session:
        tasks = session.merge([{"type": "Task", "id": t["id"]} for t in raw_tasks])
        before = reads(server)
        everything = session.fetch_heirarchy(tasks)
        assert reads(server) - before <= 3
        by_type: dict[str, list[Entity]] = {}
        for entity in everything:
            by_type.setdefault(entity.type, []).append(entity)
        expected_shots = {t["entity"]["id"] for t in raw_tasks if t["entity"]["type"] == "Shot"}
        expected_assets = {t["entity"]["id"] for t in raw_tasks if t["entity"]["type"] == "Asset"}
        assert {e.id for e in by_type["Shot"]} == expected_shots
        assert {e.id for e in by_type["Asset"]} == expected_assets
        assert {e.id for e in by_type["Sequence"]} == {
            shots[i]["sg_sequence"]["id"] for i in expected_shots
        }
        assert len(by_type["Task"]) == 2000
        checked = before_checks = reads(server)
        with session.auto_populating(False):
            for shot in by_type["Shot"]:
                raw = shots[shot.id]
                assert shot["code"] == raw["code"]
                assert shot["sg_status_list"] == raw["sg_status_list"]
                assert shot["sg_sequence"].id == raw["sg_sequence"]["id"]
                assert shot["project"].id == raw["project"]["id"]
                assert "updated_at" in shot
            for asset in by_type["Asset"]:
                assert asset["code"] == assets[asset.id]["code"]
                assert asset["sg_asset_type"] == assets[asset.id]["sg_asset_type"]
            for sequence in by_type["Sequence"]:
                assert sequence["code"] == sequences[sequence.id]["code"]
                assert sequence["project"].id == sequences[sequence.id]["project"]["id"]
            for project in by_type["Project"]:
                assert project["name"] == projects[project.id]["name"]
            for task in by_type["Task"]:
                parent = task.parent(fetch=False)
                assert parent is not None
                assert task in parent.backrefs[("Task", "entity")]
                assert task.project(fetch=False) is not None
            for shot in by_type["Shot"]:
                assert shot in shot["sg_sequence"].backrefs[("Shot", "sg_sequence")]
        assert reads(server) == checked == before_checks
        # A second time, everything is there: no call at all.
        session.fetch_heirarchy(tasks)
        assert reads(server) == checked


# -- 9. serialisation --------------------------------------------------------------


def test_a_session_pickles_without_its_client_and_reattaches(
    session: Session, sg: Any, server: Any
) -> None:
    raw = shot_task(sg)
    task = session.find_one("Task", [["id", "is", raw["id"]]], ["content", "entity", "step"])
    shot = task["entity"]
    shot.fetch("code")

    restored = pickle.loads(pickle.dumps(session))
    assert isinstance(restored, Session)
    again = restored.get("Task", raw["id"], fetch=False)
    assert again is not task and again.session is restored
    with restored.auto_populating(False):
        assert again["content"] == raw["content"]
        assert again["entity"]["code"] == raw["entity.Shot.code"]
        assert isinstance(again["entity"], Entity) and again["entity"].session is restored
    with pytest.raises(RuntimeError, match="attach"):
        restored.find("Shot", [])

    restored.attach(server.client())
    before = server.request_count
    refreshed = restored.get("Task", raw["id"])
    assert refreshed is again  # the same instances, now confirmed against ShotGrid again
    assert server.request_count == before + 1
    assert restored.find_one("Shot", [["id", "is", shot.id]], ["code"])["code"] == shot["code"]

    server.add_user("artist", "pw")
    detached = pickle.loads(pickle.dumps(session))
    with pytest.raises(SessionConfigError, match="pickled"):
        detached.attach(server.client(login="artist", password="pw"))


def test_as_dict_gives_repeated_references_minimal(session: Session, sg: Any) -> None:
    raw = shot_task(sg)
    task = session.find_one("Task", [["id", "is", raw["id"]]], ["entity", "project"])
    shot = task["entity"]
    shot.fetch(["project", "code"])
    plain = task.as_dict()
    # The project is met twice (the task's and the shot's): in full once, then minimal.
    first, second = plain["entity"]["project"], plain["project"]
    assert {first["id"], second["id"]} == {task["project"].id}
    assert sorted([len(first), len(second)]) == [2, len(task["project"])]
    assert {"type": "Project", "id": task["project"].id} in (first, second)
    assert task.minimal == {"type": "Task", "id": raw["id"]}
    assert pickle.loads(pickle.dumps(task)) == plain


# -- 10. merge feeds the cache ------------------------------------------------------


def test_merged_entities_are_served_by_get(
    session: Session, sg: Any, server: Any, cache_dir: str
) -> None:
    raw = sg.find_one("Shot", [], ["code", "updated_at"], order=[{"field_name": "id"}])
    merged = session.merge({"type": "Shot", "id": raw["id"], "code": "FROM_ELSEWHERE"})
    before = server.request_count
    assert session.get("Shot", raw["id"]) is merged
    assert session.get("Shot", [raw["id"]]) == [merged]
    assert server.request_count == before
    # This session's only: a new session over the same cache asks ShotGrid.
    session.drain()
    with Session(sg, cache=cache_dir, sync_interval=None) as other:
        assert other.get("Shot", raw["id"])["code"] == raw["code"]
    # A change seen in the event log moves its generations: merged data is not served.
    sg.update("Shot", raw["id"], {"description": "changed elsewhere"})
    session.sync()
    before = server.request_count
    assert session.get("Shot", raw["id"])["code"] == raw["code"]
    assert server.request_count > before


# -- the fast merge of answer rows agrees with the general merge ---------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


class _OfflineConfig:
    scheme = "https"
    server = "merge.example.com"
    script_name = "merge_tests"
    user_login = None
    api_key = "not-a-real-key"
    session_token = None
    sudo_as_login = None


class _OfflineClient:
    config = _OfflineConfig()


_link_ids = st.one_of(st.integers(1, 4), st.integers(1, 4), st.sampled_from(["3", 2.0, True]))
_links = st.one_of(
    st.fixed_dictionaries(
        {
            # Task: a link to a row of the same answer (before it, after it, or itself).
            "type": st.sampled_from(["Shot", "Asset", "Task"]),
            "id": _link_ids,
            "name": st.just("set per row below"),
        }
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["Shot", "Asset"]), "id": _link_ids}),
    st.just("not a link"),
    st.none(),
)
_rows = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(1, 6),
            "entity": _links,
            "task_assignees": st.lists(_links, max_size=3),
            "content": st.sampled_from(["x", "y"]),
        }
    ),
    max_size=8,
)


def _shape(value: Any) -> Any:
    if isinstance(value, Entity):
        return ("E", value.type, value.id)
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return value


def _held(session: Session) -> dict[Any, Any]:
    return {
        (e.type, e.id): {k: _shape(v) for k, v in dict.items(e)}
        for e in session._identity.entities()
    }


@settings(max_examples=200, deadline=None)
@given(_rows)
def test_answer_rows_merge_like_the_general_merge(rows: list[dict[str, Any]]) -> None:
    """``merge_rows`` (the short way for answers, links inlined) leaves the same entities,
    fields and link names as merging the same rows the general way, whatever the rows:
    repeated links with other names, ids that are not ints, lists with non-links."""
    rows = [{"type": "Task", **row} for row in rows]
    for number, row in enumerate(rows):
        # Names change from row to row, but within a row one entity has one name (which
        # of two names in one row wins is not a rule of either path).
        for link in [row["entity"], *row["task_assignees"]]:
            if isinstance(link, dict) and "name" in link:
                link["name"] = f"name {number % 3}"
    fast, general = Session(_OfflineClient()), Session(_OfflineClient())
    deps = {"Task": "g1", "Shot": "g1", "Asset": "g1"}
    try:
        got = fast._identity.merge_rows(
            "Task", pickle.loads(pickle.dumps(rows)), deps, 1.0, over=True
        )
        want = [
            general._identity.merge(row, over=True, deps=deps)
            for row in pickle.loads(pickle.dumps(rows))
        ]
        assert [_shape(e) for e in got] == [_shape(e) for e in want]
        assert _held(fast) == _held(general)
    finally:
        fast.close()
        general.close()


def _stored(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """*rows* as an answer record after a trip through the cache (encode, decode, valid)."""
    record = {
        "v": records.FORMAT_VERSION,
        "k": "q",
        "t": 1.0,
        "g": {"Task": "g1", "Shot": "g1", "Asset": "g1"},
        "T": "Task",
        "r": rows,
        "c": container_fields(rows),
    }
    back = records.valid(records.decode(records.encode(record)), ("q",))
    assert back is not None
    return back


@settings(max_examples=200, deadline=None)
@given(_rows, st.booleans())
def test_stored_answers_merge_like_the_rows_shotgrid_gave(
    rows: list[dict[str, Any]], one_name_per_entity: bool
) -> None:
    """An answer read back from the cache, links numbered into its table, leaves the same
    entities, fields and link names as the rows ShotGrid gave, and gives those rows back."""
    rows = [{"type": "Task", **row} for row in rows]
    for number, row in enumerate(rows):
        for link in [row["entity"], *row["task_assignees"]]:
            if isinstance(link, dict) and "name" in link:
                link["name"] = f"{link['id']!r}" if one_name_per_entity else f"n{number % 3}"
    stored = _stored(pickle.loads(pickle.dumps(rows)))
    assert records.rows_of(stored) == rows
    plain, cached = Session(_OfflineClient()), Session(_OfflineClient())
    deps = stored["g"]
    try:
        want = plain._identity.merge_rows("Task", pickle.loads(pickle.dumps(rows)), deps, 1.0)
        links = (stored["L"], stored["l"]) if "l" in stored else None
        got = cached._identity.merge_rows("Task", stored["r"], deps, 1.0, links=links)
        assert [_shape(e) for e in got] == [_shape(e) for e in want]
        assert _held(cached) == _held(plain)
    finally:
        plain.close()
        cached.close()


def test_an_answer_stores_each_link_once() -> None:
    shot = {"type": "Shot", "id": 7, "name": "SQ010_0010"}
    users = [{"type": "HumanUser", "id": i, "name": f"user {i}"} for i in (1, 2)]
    rows = [
        {"type": "Task", "id": i, "entity": dict(shot), "task_assignees": [dict(u) for u in users]}
        for i in range(1, 4)
    ]
    stored = _stored(pickle.loads(pickle.dumps(rows)))
    assert stored["L"] == [
        ["Shot", 7, "SQ010_0010"],
        ["HumanUser", 1, "user 1"],
        ["HumanUser", 2, "user 2"],
    ]
    assert sorted(stored["l"]) == ["entity", "task_assignees"]
    assert stored["r"][2] == {"type": "Task", "id": 3, "entity": 0, "task_assignees": [1, 2]}
    assert records.rows_of(stored) == rows
    # A column holding anything but the usual link keeps its values whole.
    odd = [dict(rows[0], entity={**shot, "valid": "valid"}), rows[1]]
    stored = _stored(pickle.loads(pickle.dumps(odd)))
    assert stored["l"] == ["task_assignees"] and stored["r"][0]["entity"]["valid"] == "valid"
    # An id that only equals a link's id (True == 1, 1.0 == 1) is not that link.
    for other in (True, 1.0):
        lookalike = [rows[0], dict(rows[1], task_assignees=[{**users[0], "id": other}])]
        stored = _stored(pickle.loads(pickle.dumps(lookalike)))
        back = records.rows_of(stored)[1]["task_assignees"][0]["id"]
        assert back.__class__ is other.__class__
    # One entity under two display names in one answer: the answer keeps its links whole.
    renamed = [rows[0], dict(rows[1], entity={**shot, "name": "renamed"})]
    stored = _stored(pickle.loads(pickle.dumps(renamed)))
    assert "L" not in stored and records.rows_of(stored) == renamed


def test_a_damaged_link_table_is_a_miss() -> None:
    rows = [{"type": "Task", "id": 1, "entity": {"type": "Shot", "id": 7, "name": "A"}}]
    good = _stored(rows)
    assert good["l"] == ["entity"]
    damaged: list[dict[str, Any]] = [
        {**good, "L": "not a table"},
        {**good, "L": [["Shot", "7", "A"]]},
        {**good, "L": [["Shot", 7]]},
        {**good, "L": [["Shot", 7, 3]]},
        {**good, "L": []},  # the row's number points past the table
        {**good, "l": "entity"},
        {**good, "l": ["id"]},
        {**good, "l": [1]},
        {k: v for k, v in good.items() if k != "L"},
        {**good, "r": [{**good["r"][0], "entity": -1}]},
        {**good, "r": [{**good["r"][0], "entity": True}]},
        {**good, "r": [{**good["r"][0], "entity": "0"}]},
        {**good, "r": [{**good["r"][0], "entity": [0, 5]}]},
        {**good, "r": [{**good["r"][0], "entity": {"type": "Shot", "id": 7, "name": "A"}}]},
        {**good, "k": "c", "R": False},
    ]
    for record in damaged:
        assert records.valid(record) is None, record
        text = '["~' + records.PREFIX + '",' + json.dumps(record) + "]"
        assert records.valid(records.decode(text)) is None, record
