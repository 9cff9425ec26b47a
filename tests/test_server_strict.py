"""The loopback server says no where ShotGrid does, and models what it used to ignore.

Each test goes through the real, unmodified ``shotgun_api3`` client.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List

import pytest
import shotgun_api3
from shotgun_api3.shotgun import Shotgun

from sgcache_layers.testing import ShotgridServer

PROJECT = {"type": "Project", "id": 1}
OTHER_PROJECT = {"type": "Project", "id": 2}
T0 = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------------------ sudo


def test_people_may_not_sudo_but_scripts_may(shotgrid_server: ShotgridServer) -> None:
    shotgrid_server.add_user("jane", "secret", firstname="Jane", lastname="Doe")
    shotgrid_server.add_user("joe", "secret2", firstname="Joe", lastname="Roe")
    by_password = shotgrid_server.client(login="jane", password="secret", sudo_as_login="joe")
    with pytest.raises(shotgun_api3.Fault) as caught:
        by_password.find_one("Shot", [])
    assert not isinstance(caught.value, shotgun_api3.AuthenticationFault)
    assert str(caught.value).startswith("The user does not have permission to 'sudo':")
    # the permission is checked before the target: an unknown login gets the same answer
    with pytest.raises(shotgun_api3.Fault, match="permission to 'sudo'"):
        shotgrid_server.client(login="jane", password="secret", sudo_as_login="nobody").find(
            "Shot", []
        )

    token = shotgrid_server.client(login="jane", password="secret").get_session_token()
    by_token = Shotgun(shotgrid_server.url, session_token=token, sudo_as_login="joe")
    with pytest.raises(shotgun_api3.Fault, match="permission to 'sudo'"):
        by_token.find_one("Shot", [])
    assert Shotgun(shotgrid_server.url, session_token=token).find_one("Shot", []) is not None

    as_joe = shotgrid_server.client(sudo_as_login="joe")  # the default script identity
    created = as_joe.create("Shot", {"code": "by_joe", "project": PROJECT}, ["created_by"])
    assert created["created_by"]["name"] == "Joe Roe"


# ------------------------------------------------------------------------------ unfilterable


def test_unfilterable_data_types_fault(shotgrid_server: ShotgridServer) -> None:
    shotgrid_server.add_field("HumanUser", "password_proxy", "password", display_name="Password")
    shotgrid_server.add_field("Shot", "sg_link", "url", display_name="Link")
    sg = shotgrid_server.client()
    thumbnail = [{"type": "Thumbnail", "id": 9}]
    refused: List[Any] = [
        ("Shot", [["image", "is_not", thumbnail]]),
        ("Shot", [["image", "contains", "png"]]),
        ("HumanUser", [["password_proxy", "is_not", None]]),
        ("EventLogEntry", [["meta", "is_not", None]]),
        ("EventLogEntry", [["meta.Shot.code", "is", "x"]]),  # not a link: can't be followed
        ("Shot", [["sg_link", "is", None]]),
        ("Shot", [["sg_vfx", "is", None]]),  # checkbox fields take true or false only
        ("Shot", [["code", "no_such_relation", "x"]]),
        ("Shot", [["code", "less_than", "x"]]),  # not a text relation
        ("Shot", [["sg_cut_in", "is", "ten"]]),
    ]
    for entity_type, filters in refused:
        with pytest.raises(shotgun_api3.Fault):
            sg.find_one(entity_type, filters)
    messages = [r.error for r in shotgrid_server.requests if r.error]
    assert any("filtering on password fields is not supported" in m for m in messages)
    assert any("filtering on serializable fields is not supported" in m for m in messages)
    assert any("image fields can only be filtered with None" in m for m in messages)
    # detecting the presence of a thumbnail is what image filters do support
    shots = sg.find("Shot", [], ["image"])
    assert len(sg.find("Shot", [["image", "is", None]])) == len(shots)
    assert sg.find("Shot", [["image", "is_not", None]]) == []
    with pytest.raises(shotgun_api3.Fault):
        sg.summarize("Shot", [["image", "is_not", thumbnail]], [{"field": "id", "type": "count"}])


# ------------------------------------------------------------------------------ presets


def _versions(server: ShotgridServer) -> Dict[str, int]:
    """Two shots with versions made at known times on tasks of known pipeline steps."""
    store = server.store
    with store.lock:
        early = store.bulk_insert("Step", [{"code": "Early", "list_order": 1}])[0]
        late = store.bulk_insert("Step", [{"code": "Late", "list_order": 9}])[0]
        shot_a, shot_b = store.bulk_insert(
            "Shot",
            [{"code": "preset_a", "project": PROJECT}, {"code": "preset_b", "project": PROJECT}],
        )
        a, b = {"type": "Shot", "id": shot_a}, {"type": "Shot", "id": shot_b}
        task_early, task_late = store.bulk_insert(
            "Task",
            [
                {"content": "early", "entity": a, "step": {"type": "Step", "id": early}},
                {"content": "late", "entity": a, "step": {"type": "Step", "id": late}},
            ],
        )

        def version(code: str, shot: Dict[str, Any], hours: int, task: Any = None) -> int:
            data: Dict[str, Any] = {
                "code": code,
                "project": PROJECT,
                "entity": shot,
                "created_at": T0 + dt.timedelta(hours=hours),
            }
            if task is not None:
                data["sg_task"] = {"type": "Task", "id": task}
            return store.bulk_insert("Version", [data])[0]

        ids = {
            "a_late_step_old": version("pv_a1", a, 1, task_late),
            "a_early_step_new": version("pv_a2", a, 5, task_early),
            "a_no_task_mid": version("pv_a3", a, 3),
            "b_old": version("pv_b1", b, 1),
            "b_new": version("pv_b2", b, 2),
        }
        pub = {"type": "Version", "id": ids["b_new"]}
        low, high = store.bulk_insert(
            "PublishedFile",
            [
                {"code": "pf_v2", "entity": b, "version_number": 2, "version": pub},
                {"code": "pf_v7", "entity": b, "version_number": 7},
            ],
        )
    ids.update(pf_low=low, pf_high=high)
    return ids


def test_additional_filter_presets_are_applied(shotgrid_server: ShotgridServer) -> None:
    ids = _versions(shotgrid_server)
    sg = shotgrid_server.client()
    ours = [["code", "starts_with", "pv_"]]

    def found(preset: Dict[str, Any], filters: Any = ours, entity_type: str = "Version") -> Any:
        rows = sg.find(entity_type, filters, ["code"], additional_filter_presets=[preset])
        return sorted(r["id"] for r in rows)

    by_created = found({"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"})
    assert by_created == sorted([ids["a_early_step_new"], ids["b_new"]])
    by_step = found(
        {"preset_name": "LATEST", "latest_by": "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT"}
    )
    assert by_step == sorted([ids["a_late_step_old"], ids["b_new"]])
    # the preset works on what the filters kept
    without_newest = [*ours, ["id", "is_not", ids["a_early_step_new"]]]
    assert found(
        {"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}, without_newest
    ) == sorted([ids["a_no_task_mid"], ids["b_new"]])
    published = found(
        {"preset_name": "LATEST", "latest_by": "VERSION_NUMBER"},
        [["code", "starts_with", "pf_"]],
        "PublishedFile",
    )
    assert published == [ids["pf_high"]]
    # find_one and ordering still apply
    first = sg.find_one(
        "Version",
        ours,
        ["code"],
        order=[{"field_name": "code", "direction": "desc"}],
        additional_filter_presets=[{"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}],
    )
    assert first["code"] == "pv_b2"
    sent = [r.params for r in shotgrid_server.requests if r.method == "read"][-1]
    assert sent["additional_filter_presets"][0]["preset_name"] == "LATEST"


def test_bad_additional_filter_presets_fault(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    bad: List[Any] = [
        [{"preset_name": "BAD_FILTER"}],
        [{}],
        3,
        [3],
        [{"preset_name": "LATEST", "latest_by": "NEWEST_PLEASE"}],
        [
            {"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"},
            {
                "preset_name": "LATEST",
                "latest_by": "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT",
            },
        ],
    ]
    for presets in bad:
        with pytest.raises(shotgun_api3.Fault):
            sg.find("Version", [], additional_filter_presets=presets)
    with pytest.raises(shotgun_api3.Fault, match="unknown additional filter preset"):
        sg.find("Shot", [], additional_filter_presets=[{"preset_name": "LATEST", "latest_by": "X"}])


# ------------------------------------------------------------------------------ per project


def test_schema_reads_honour_the_project(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    assert sg.server_caps.ensure_per_project_customization()  # so the client sends it
    shotgrid_server.set_project_field_override(
        1, "Shot", "sg_cut_in", visible=False, display_name="Cut Start"
    )
    shotgrid_server.set_project_entity_override(1, "Asset", visible=False, display_name="Thing")

    in_one = sg.schema_field_read("Shot", "sg_cut_in", project_entity=PROJECT)["sg_cut_in"]
    assert in_one["visible"] == {"editable": True, "value": False}
    assert in_one["name"]["value"] == "Cut Start"
    in_two = sg.schema_field_read("Shot", "sg_cut_in", project_entity=OTHER_PROJECT)["sg_cut_in"]
    assert in_two["visible"]["value"] is True and in_two["name"]["value"] == "Cut In"
    site = sg.schema_field_read("Shot", "sg_cut_in")["sg_cut_in"]
    assert site["visible"]["value"] is True and site["name"]["value"] == "Cut In"
    assert sg.schema_field_read("Shot", "code")["code"]["visible"]["editable"] is False

    whole = sg.schema_read(project_entity=PROJECT)
    assert whole["Shot"]["sg_cut_in"]["visible"]["value"] is False
    assert whole["Shot"]["code"]["visible"]["value"] is True
    assert sg.schema_read()["Shot"]["sg_cut_in"]["visible"]["value"] is True
    assert sg.schema_field_read("Shot", project_entity=PROJECT)["sg_cut_in"]["name"]["value"] == (
        "Cut Start"
    )
    entities = sg.schema_entity_read(project_entity=PROJECT)
    assert entities["Asset"]["visible"]["value"] is False
    assert entities["Asset"]["name"]["value"] == "Thing"
    assert sg.schema_entity_read()["Asset"]["name"]["value"] == "Asset"
    assert sg.schema_entity_read(project_entity=OTHER_PROJECT)["Asset"]["visible"]["value"]

    schema_reads = [r for r in shotgrid_server.requests if r.method.startswith("schema_")]
    assert schema_reads[0].params["project"] == PROJECT
    assert any(r.params is None for r in schema_reads)  # the site view sends no project

    # the API's own way: schema_field_update with a project changes visibility there only
    assert sg.schema_field_update("Shot", "sg_cut_out", {"visible": False}, OTHER_PROJECT)
    read = sg.schema_field_read("Shot", "sg_cut_out", project_entity=OTHER_PROJECT)
    assert read["sg_cut_out"]["visible"]["value"] is False
    assert sg.schema_field_read("Shot", "sg_cut_out", PROJECT)["sg_cut_out"]["visible"]["value"]
    with pytest.raises(shotgun_api3.Fault, match="does not exist"):
        sg.schema_read(project_entity={"type": "Project", "id": 999})
    shotgrid_server.clear_project_overrides(1)
    assert sg.schema_field_read("Shot", "sg_cut_in", PROJECT)["sg_cut_in"]["visible"]["value"]


# ------------------------------------------------------------------------------ text search


def test_text_search(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    one = sg.create("Shot", {"code": "zebra crossing 010", "project": PROJECT})
    two = sg.create("Shot", {"code": "Zebra Crossing 020", "project": PROJECT})
    far = sg.create("Shot", {"code": "zebra crossing 030", "project": OTHER_PROJECT})
    prop = sg.create("Asset", {"code": "zebra crossing sign", "project": PROJECT})
    sg.create("Shot", {"code": "zebra only", "project": PROJECT})
    task = sg.create("Task", {"content": "zebra crossing paint", "entity": one, "project": PROJECT})

    result = sg.text_search("Zebra Crossing", {"Shot": []})
    assert set(result) == {"matches", "terms"} and result["terms"] == ["zebra", "crossing"]
    assert [m["id"] for m in result["matches"]] == [one["id"], two["id"], far["id"]]
    first = result["matches"][0]
    assert first == {
        "id": one["id"],
        "type": "Shot",
        "name": "zebra crossing 010",
        "project_id": 1,
        "image": None,
        "links": ["", ""],
        "status": "wtg",
    }
    assert [m["id"] for m in sg.text_search("zebra crossing", {"Shot": []}, [1])["matches"]] == [
        one["id"],
        two["id"],
    ]
    assert len(sg.text_search("zebra crossing", {"Shot": []}, limit=2)["matches"]) == 2
    mixed = sg.text_search(
        "zebra crossing",
        {"Shot": [["code", "ends_with", "020"]], "Asset": [], "Task": []},
        project_ids=[1],
    )["matches"]
    assert [(m["type"], m["id"]) for m in mixed] == [
        ("Shot", two["id"]),
        ("Asset", prop["id"]),
        ("Task", task["id"]),
    ]
    assert mixed[2]["links"] == ["Shot", "zebra crossing 010"]
    assert shotgrid_server.requests[-1].method == "query_display_name_cache"
    with pytest.raises(shotgun_api3.Fault, match="at least 3 characters"):
        sg.text_search("ze", {"Shot": []})
    with pytest.raises(shotgun_api3.Fault):
        sg.text_search("zebra", {"NoSuchType": []})
    with pytest.raises(shotgun_api3.Fault):
        sg.text_search("zebra", {"Shot": [["no_such_field", "is", 1]]})


# ------------------------------------------------------------------------------ return fields


def test_fields_the_type_lacks_are_left_out(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    fields = [
        "code",
        "no_such_field",
        "sg_sequence.Sequence.no_such_field",
        "no_such_link.Sequence.code",
        "code.Sequence.code",
        "sg_sequence.Sequence.code",
    ]
    shot = sg.find_one("Shot", [["sg_sequence", "is_not", None]], fields)
    assert set(shot) == {"type", "id", "code", "sg_sequence.Sequence.code"}
    # a deep field through a link of another type is there, as None
    task = sg.find_one("Task", [["entity", "type_is", "Asset"]], ["entity.Shot.code", "nope"])
    assert set(task) == {"type", "id", "entity.Shot.code"} and task["entity.Shot.code"] is None
    created = sg.create("Asset", {"code": "fresh", "project": PROJECT}, ["no_such_field", "code"])
    assert "no_such_field" not in created and created["code"] == "fresh"
