"""The loopback server writes EventLogEntry rows the way a ShotGrid site does."""

from __future__ import annotations

from typing import Any, Dict, List

from shotgun_api3.shotgun import Shotgun

from sgcache_layers.testing import ShotgridServer

EVENT_FIELDS = [
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "project",
    "user",
    "created_at",
    "description",
]
PROJECT = {"type": "Project", "id": 1}


def _events_after(sg: Shotgun, last_id: int) -> List[Dict[str, Any]]:
    return sg.find(
        "EventLogEntry",
        [["id", "greater_than", last_id]],
        EVENT_FIELDS,
        order=[{"field_name": "id", "direction": "asc"}],
    )


def test_seeded_production_has_no_events(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    assert shotgrid_server.last_event_id == 0
    assert sg.find("EventLogEntry", []) == []
    assert sg.find("Shot", [])  # but data is there


def test_create_update_delete_revive_write_events(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    me = {
        "type": "ApiUser",
        "id": shotgrid_server.add_script("sgcache_tests", shotgrid_server.api_key).link["id"],
    }
    start = shotgrid_server.last_event_id
    shot = sg.create("Shot", {"code": "ev_shot", "project": PROJECT, "description": "d"})
    events = _events_after(sg, start)
    assert [e["event_type"] for e in events] == ["Shotgun_Shot_New"] + ["Shotgun_Shot_Change"] * 3
    new = events[0]
    assert new["meta"] == {"type": "new_entity", "entity_type": "Shot", "entity_id": shot["id"]}
    assert new["entity"] == {"type": "Shot", "id": shot["id"], "name": "ev_shot"}
    assert new["project"]["id"] == 1 and new["user"]["id"] == me["id"]
    assert {e["attribute_name"] for e in events[1:]} == {"code", "project", "description"}
    assert all(e["meta"]["in_create"] is True for e in events[1:])

    mark = events[-1]["id"]
    sg.update(
        "Shot", shot["id"], {"code": "ev_renamed", "description": "d", "sg_status_list": "ip"}
    )
    changes = _events_after(sg, mark)
    # one row per field that really changed ("description" did not)
    assert [(e["event_type"], e["attribute_name"]) for e in changes] == [
        ("Shotgun_Shot_Change", "code"),
        ("Shotgun_Shot_Change", "sg_status_list"),
    ]
    assert changes[0]["meta"] == {
        "type": "attribute_change",
        "attribute_name": "code",
        "entity_type": "Shot",
        "entity_id": shot["id"],
        "field_data_type": "text",
        "old_value": "ev_shot",
        "new_value": "ev_renamed",
    }
    assert changes[1]["meta"]["field_data_type"] == "status_list"
    assert changes[1]["meta"]["old_value"] == "wtg" and changes[1]["meta"]["new_value"] == "ip"

    mark = changes[-1]["id"]
    sg.delete("Shot", shot["id"])
    sg.revive("Shot", shot["id"])
    life = _events_after(sg, mark)
    assert [e["event_type"] for e in life] == ["Shotgun_Shot_Retirement", "Shotgun_Shot_Revival"]
    assert life[0]["meta"]["type"] == "entity_retirement"
    assert life[0]["meta"]["entity_id"] == shot["id"]
    assert life[1]["meta"]["type"] == "entity_revival"

    everything = _events_after(sg, start)
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e["created_at"] is not None for e in everything)


def test_entity_and_multi_entity_change_meta(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    seq_a = sg.find_one("Sequence", [], ["code"])
    seq_b = sg.create("Sequence", {"code": "SQ_NEW", "project": PROJECT})
    shot = sg.find_one("Shot", [["sg_sequence", "is", seq_a]], ["code", "sg_sequence"])
    asset = sg.find_one("Asset", [], ["code"])
    sg.update("Shot", shot["id"], {"assets": []})
    mark = shotgrid_server.last_event_id
    sg.update("Shot", shot["id"], {"sg_sequence": seq_b, "assets": [asset]})
    events = _events_after(sg, mark)
    by_key = {(e["entity"]["type"], e["attribute_name"]): e for e in events}
    link = by_key[("Shot", "sg_sequence")]["meta"]
    assert link["field_data_type"] == "entity"
    assert link["old_value"]["id"] == seq_a["id"] and link["new_value"]["id"] == seq_b["id"]
    multi = by_key[("Shot", "assets")]["meta"]
    assert multi["field_data_type"] == "multi_entity"
    assert [a["id"] for a in multi["added"]] == [asset["id"]] and multi["removed"] == []
    assert [a["id"] for a in multi["new_value"]] == [asset["id"]]
    # the other side of each link changes too, pointing back at the original event
    assert ("Sequence", "shots") in by_key
    assert ("Asset", "shots") in by_key
    reverse = by_key[("Asset", "shots")]["meta"]
    assert reverse["original_event_log_entry_id"] == by_key[("Shot", "assets")]["id"]


def test_event_id_gap_and_schema_change_events(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    sg.create("Asset", {"code": "gap_a", "project": PROJECT})
    before_gap = shotgrid_server.last_event_id
    last_skipped = shotgrid_server.skip_event_ids(5)
    assert last_skipped == before_gap + 5
    sg.create("Asset", {"code": "gap_b", "project": PROJECT})
    after = _events_after(sg, before_gap)
    assert after[0]["id"] == before_gap + 6  # ids before_gap+1 .. +5 never exist

    mark = shotgrid_server.last_event_id
    event_id = shotgrid_server.record_schema_change(
        "Shot", "code", old_value="Shot Code", new_value="Shot Name"
    )
    field = shotgrid_server.add_field("Shot", "sg_budget", "float", display_name="Budget")
    assert field == "sg_budget"
    schema_events = _events_after(sg, mark)
    assert [e["event_type"] for e in schema_events] == [
        "Shotgun_DisplayColumn_Change",
        "Shotgun_DisplayColumn_New",
    ]
    assert schema_events[0]["id"] == event_id
    assert schema_events[0]["meta"]["new_value"] == "Shot Name"
    assert schema_events[0]["entity"]["type"] == "DisplayColumn"
    assert sg.schema_field_read("Shot", "sg_budget")["sg_budget"]["data_type"]["value"] == "float"
    shot = sg.find_one("Shot", [], ["sg_budget"])
    assert shot["sg_budget"] is None
    sg.update("Shot", shot["id"], {"sg_budget": 12.5})
    # through the API, too
    created = sg.schema_field_create("Shot", "text", "Client Note")
    assert created == "sg_client_note"
    assert _events_after(sg, shotgrid_server.last_event_id - 2)[-1]["event_type"] == (
        "Shotgun_DisplayColumn_New"
    )


def test_event_ids_stay_increasing_across_threads(shotgrid_server: ShotgridServer) -> None:
    import threading

    errors: List[BaseException] = []

    def work(n: int) -> None:
        try:
            client = shotgrid_server.client()
            for i in range(5):
                client.create("Asset", {"code": f"t{n}_{i}", "project": PROJECT})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sg = shotgrid_server.client()
    news = sg.find(
        "EventLogEntry",
        [["event_type", "is", "Shotgun_Asset_New"]],
        ["entity"],
        order=[{"field_name": "id", "direction": "asc"}],
    )
    assert len(news) == 20
    assert [e["entity"]["id"] for e in news] == sorted(e["entity"]["id"] for e in news)
