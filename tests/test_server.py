"""The loopback ShotGrid server answers the real, unmodified shotgun_api3 client like a site."""

from __future__ import annotations

import datetime as dt
import http.client
import json
from typing import Any, Dict, List

import pytest
import shotgun_api3
from shotgun_api3.shotgun import Shotgun

from sgcache_layers.testing import ShotgridServer

PROJECT = {"type": "Project", "id": 1}


def _bulk_shots(server: ShotgridServer, count: int, prefix: str = "bulk") -> List[int]:
    rows = [
        {"code": f"{prefix}_{i:05d}", "project": PROJECT, "sg_status_list": "ip"}
        for i in range(count)
    ]
    with server.store.lock:
        return server.store.bulk_insert("Shot", rows)


def _raw_call(server: ShotgridServer, method: str, params: Any) -> Dict[str, Any]:
    """POST one JSON-RPC call without the client, to see exactly what travels."""
    auth = {"script_name": server.script_name, "script_key": server.api_key}
    body = json.dumps({"method_name": method, "params": [auth, params]})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/api3/json", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        data: Dict[str, Any] = json.loads(response.read())
        return data
    finally:
        conn.close()


# ------------------------------------------------------------------------------ info / auth


def test_info_reports_a_modern_version(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client(connect=False)
    info = sg.info()
    assert info["version"] >= [8, 0, 0]
    assert sg.server_caps.version >= (7, 4, 0)  # enables paging without counts
    assert sg.find_one("Project", [["id", "is", 1]], ["name"])["name"] == "Big Buck Rabbit"


def test_wrong_key_or_script_raises_authentication_fault(shotgrid_server: ShotgridServer) -> None:
    with pytest.raises(shotgun_api3.AuthenticationFault):
        shotgrid_server.client(api_key="not-the-key").find("Shot", [])
    with pytest.raises(shotgun_api3.AuthenticationFault):
        shotgrid_server.client("nobody", "whatever").find("Shot", [])
    assert shotgrid_server.client().find_one("Shot", []) is not None


def test_user_login_session_token_and_sudo(shotgrid_server: ShotgridServer) -> None:
    user = shotgrid_server.add_user("jane", "secret", firstname="Jane", lastname="Doe")
    sg = shotgrid_server.client(login="jane", password="secret")
    assert sg.find_one("HumanUser", [["login", "is", "jane"]], ["name"])["name"] == "Jane Doe"
    with pytest.raises(shotgun_api3.AuthenticationFault):
        shotgrid_server.client(login="jane", password="wrong").find("Shot", [])

    token = sg.get_session_token()
    by_token = Shotgun(shotgrid_server.url, session_token=token)
    shot = by_token.create("Shot", {"code": "by_token", "project": PROJECT}, ["created_by"])
    assert shot["created_by"]["id"] == user["id"]

    sudo = shotgrid_server.client(sudo_as_login="jane")
    created = sudo.create("Shot", {"code": "sudo_shot", "project": PROJECT}, ["created_by"])
    assert created["created_by"] == {"type": "HumanUser", "id": user["id"], "name": "Jane Doe"}
    event = sudo.find_one("EventLogEntry", [["entity", "is", created]], ["user", "meta"])
    assert event["user"]["id"] == user["id"]
    assert event["meta"]["sudo_actual_user"]["type"] == "ApiUser"


# ------------------------------------------------------------------------------ reads


def test_paging_returns_every_row_over_several_requests(shotgrid_server: ShotgridServer) -> None:
    _bulk_shots(shotgrid_server, 1100)
    total = shotgrid_server.store.count("Shot")
    sg = shotgrid_server.client()
    shotgrid_server.reset_requests()
    shots = sg.find("Shot", [], ["code"])
    assert len(shots) == total > 1000
    assert len({s["id"] for s in shots}) == total
    reads = [r for r in shotgrid_server.requests if r.method == "read"]
    assert len(reads) == 3
    assert [r.params["paging"]["current_page"] for r in reads] == [1, 2, 3]
    assert all(r.params["paging"]["entities_per_page"] == 500 for r in reads)
    # limit above one page still stops at the limit
    assert len(sg.find("Shot", [], ["code"], limit=700)) == 700


def test_limit_page_and_order(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    everything = sg.find("Shot", [], ["code", "sg_status_list"])
    by_code_desc = sorted(everything, key=lambda s: s["code"], reverse=True)
    ordered = sg.find("Shot", [], ["code"], order=[{"field_name": "code", "direction": "desc"}])
    assert [s["id"] for s in ordered] == [s["id"] for s in by_code_desc]

    first = sg.find(
        "Shot", [], ["code"], order=[{"field_name": "code", "direction": "asc"}], limit=5
    )
    assert [s["code"] for s in first] == sorted(s["code"] for s in everything)[:5]
    page2 = sg.find(
        "Shot", [], ["code"], order=[{"field_name": "code", "direction": "asc"}], limit=5, page=2
    )
    assert [s["code"] for s in page2] == sorted(s["code"] for s in everything)[5:10]

    two_keys = sg.find(
        "Shot",
        [],
        ["code", "sg_status_list"],
        order=[
            {"field_name": "sg_status_list", "direction": "asc"},
            {"field_name": "code", "direction": "desc"},
        ],
    )
    expected = sorted(everything, key=lambda s: s["code"], reverse=True)
    expected = sorted(expected, key=lambda s: s["sg_status_list"])
    assert [s["id"] for s in two_keys] == [s["id"] for s in expected]
    # default order is by id
    assert [s["id"] for s in everything] == sorted(s["id"] for s in everything)


def test_nested_filter_groups(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    tasks = sg.find("Task", [], ["content", "sg_status_list", "step"])
    filters = [
        {
            "filter_operator": "any",
            "filters": [
                {
                    "filter_operator": "all",
                    "filters": [["content", "is", "comp"], ["sg_status_list", "is", "ip"]],
                },
                {
                    "filter_operator": "all",
                    "filters": [
                        ["content", "starts_with", "light"],
                        ["sg_status_list", "in", ["wtg", "rdy"]],
                    ],
                },
            ],
        },
        ["sg_status_list", "is_not", "omt"],
    ]
    found = sg.find("Task", filters, ["content", "sg_status_list"])
    expected = [
        t
        for t in tasks
        if (
            (t["content"] == "comp" and t["sg_status_list"] == "ip")
            or (t["content"].startswith("light") and t["sg_status_list"] in ("wtg", "rdy"))
        )
    ]
    assert expected
    assert sorted(t["id"] for t in found) == sorted(t["id"] for t in expected)
    either = sg.find(
        "Task",
        [["content", "is", "comp"], ["content", "is", "roto"]],
        ["content"],
        filter_operator="any",
    )
    assert {t["content"] for t in either} == {"comp", "roto"}


def test_entity_in_filter_with_several_values(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    steps = sg.find("Step", [], ["code"])[:2]
    tasks = sg.find("Task", [], ["step"])
    found = sg.find("Task", [["step", "in", steps]], ["step"])
    wanted = {s["id"] for s in steps}
    assert len(found) == sum(1 for t in tasks if t["step"]["id"] in wanted)
    assert {t["step"]["id"] for t in found} == wanted
    not_found = sg.find("Task", [["step", "not_in", steps]], ["step"])
    assert len(found) + len(not_found) == len(tasks)


def test_links_carry_display_names(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    version = sg.find_one("Version", [], ["entity", "sg_task", "project", "user", "created_by"])
    task = sg.find_one("Task", [["id", "is", version["sg_task"]["id"]]], ["content"])
    assert version["sg_task"]["name"] == task["content"]
    assert version["project"]["name"] in ("Big Buck Rabbit", "Night Shift")
    shot = sg.find_one("Shot", [["id", "is", version["entity"]["id"]]], ["code"])
    assert version["entity"] == {"type": "Shot", "id": shot["id"], "name": shot["code"]}
    person = sg.find_one("HumanUser", [["id", "is", version["user"]["id"]]], ["name"])
    assert version["user"]["name"] == person["name"]


def test_deep_link_fields_and_filters(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shot = sg.find_one("Shot", [], ["code", "sg_sequence"])
    seq_code = shot["sg_sequence"]["name"]
    tasks = sg.find(
        "Task",
        [
            ["entity.Shot.sg_sequence.Sequence.code", "is", seq_code],
            ["step.Step.code", "is", "Comp"],
        ],
        ["content", "entity.Shot.code", "entity.Shot.sg_sequence", "step.Step.short_name"],
    )
    assert tasks
    for task in tasks:
        assert task["step.Step.short_name"] == "CMP"
        assert task["entity.Shot.sg_sequence"]["name"] == seq_code
        assert task["entity.Shot.code"].startswith(seq_code)
    # a deep field through a link of another type is None, as on a site
    asset_task = sg.find_one("Task", [["entity", "type_is", "Asset"]], ["entity.Shot.code"])
    assert asset_task["entity.Shot.code"] is None
    # filtering through a multi-entity link
    asset = sg.find_one("Asset", [["shots", "is_not", None]], ["code", "shots"])
    via_asset = sg.find("Shot", [["assets.Asset.code", "is", asset["code"]]], ["code"])
    assert {s["id"] for s in via_asset} >= {s["id"] for s in asset["shots"]}


def test_date_and_datetime_values_travel_as_on_a_site(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    task = sg.find_one("Task", [["due_date", "is_not", None]], ["due_date", "created_at"])
    assert isinstance(task["due_date"], str) and len(task["due_date"]) == 10
    assert isinstance(task["created_at"], dt.datetime) and task["created_at"].tzinfo is not None
    raw = _raw_call(
        shotgrid_server,
        "read",
        {
            "type": "Task",
            "filters": {
                "logical_operator": "and",
                "conditions": [{"path": "id", "relation": "is", "values": [task["id"]]}],
            },
            "return_fields": ["due_date", "created_at"],
            "paging": {"entities_per_page": 1, "current_page": 1},
        },
    )
    record = raw["results"]["entities"][0]
    assert record["due_date"] == task["due_date"]
    assert dt.datetime.strptime(record["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert raw["results"]["paging_info"]["has_next_page"] is False
    # datetime filters compare in UTC
    created = task["created_at"]
    later = sg.find("Task", [["created_at", "greater_than", created]], ["created_at"])
    assert later and all(t["created_at"] > created for t in later)
    due = sg.find(
        "Task", [["due_date", "is", dt.date.fromisoformat(task["due_date"])]], ["due_date"]
    )
    assert task["id"] in {t["id"] for t in due}


def test_retired_only_and_archived_projects(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shot = sg.find_one("Shot", [], ["code"])
    assert sg.delete("Shot", shot["id"]) is True
    assert sg.find_one("Shot", [["id", "is", shot["id"]]]) is None
    retired = sg.find("Shot", [], ["code"], retired_only=True)
    assert [s["id"] for s in retired] == [shot["id"]]

    project_two = {"type": "Project", "id": 2}
    in_two = sg.find("Asset", [["project", "is", project_two]])
    assert in_two
    sg.update("Project", 2, {"archived": True})
    assert sg.find("Asset", [["project", "is", project_two]]) == in_two  # default: included
    assert sg.find("Asset", [["project", "is", project_two]], include_archived_projects=False) == []
    visible = sg.find("Project", [], ["name"], include_archived_projects=False)
    assert [p["id"] for p in visible] == [1]


# ------------------------------------------------------------------------------ writes


def test_create_with_return_fields_sets_server_fields(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    seq = sg.find_one("Sequence", [], ["code"])
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    shot = sg.create(
        "Shot",
        {"code": "new_shot", "project": PROJECT, "sg_sequence": seq},
        return_fields=[
            "created_at",
            "updated_at",
            "created_by",
            "updated_by",
            "sg_status_list",
            "sg_sequence.Sequence.code",
        ],
    )
    assert shot["code"] == "new_shot"
    assert shot["project"] == {"type": "Project", "id": 1, "name": "Big Buck Rabbit"}
    assert shot["sg_sequence"] == {"type": "Sequence", "id": seq["id"], "name": seq["code"]}
    assert shot["sg_sequence.Sequence.code"] == seq["code"]
    assert shot["sg_status_list"] == "wtg"  # schema default
    assert shot["created_at"] >= before and shot["created_at"] == shot["updated_at"]
    assert shot["created_by"]["type"] == "ApiUser"
    assert shot["created_by"]["name"] == shotgrid_server.script_name
    # the reverse field on the sequence follows
    again = sg.find_one("Sequence", [["id", "is", seq["id"]]], ["shots"])
    assert {"type": "Shot", "id": shot["id"], "name": "new_shot"} in again["shots"]


def test_create_rejects_bad_data(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    with pytest.raises(shotgun_api3.Fault):
        sg.create("Shot", {"code": "x", "no_such_field": 1})
    with pytest.raises(shotgun_api3.Fault):
        sg.create("Shot", {"code": "x", "sg_status_list": "not-a-status"})
    with pytest.raises(shotgun_api3.Fault):
        sg.create("Shot", {"code": "x", "project": {"type": "Project", "id": 999}})
    with pytest.raises(shotgun_api3.Fault):
        sg.find("Shot", [["no_such_field", "is", 1]])
    with pytest.raises(shotgun_api3.Fault):
        sg.find("NoSuchType", [])


def test_update_returns_a_dict_and_moves_updated_at(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shot = sg.find_one("Shot", [], ["code", "updated_at"])
    result = sg.update("Shot", shot["id"], {"description": "changed", "sg_cut_in": 1009})
    assert result == {"type": "Shot", "id": shot["id"], "description": "changed", "sg_cut_in": 1009}
    first = sg.find_one("Shot", [["id", "is", shot["id"]]], ["updated_at", "updated_by"])
    assert first["updated_at"] > shot["updated_at"]
    assert first["updated_by"]["type"] == "ApiUser"
    sg.update("Shot", shot["id"], {"description": "changed again"})
    second = sg.find_one("Shot", [["id", "is", shot["id"]]], ["updated_at"])
    assert second["updated_at"] > first["updated_at"]  # moves even within the same second


def test_multi_entity_update_modes(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    a1, a2, a3 = sg.find("Asset", [], ["code"])[:3]
    shot = sg.create("Shot", {"code": "multi", "project": PROJECT})

    def ids() -> List[int]:
        return [
            a["id"] for a in sg.find_one("Shot", [["id", "is", shot["id"]]], ["assets"])["assets"]
        ]

    result = sg.update("Shot", shot["id"], {"assets": [a1, a2]})
    assert [a["id"] for a in result["assets"]] == [a1["id"], a2["id"]]
    assert result["assets"][0]["name"] == a1["code"]
    sg.update("Shot", shot["id"], {"assets": [a3, a1]}, multi_entity_update_modes={"assets": "add"})
    assert ids() == [a1["id"], a2["id"], a3["id"]]
    sg.update(
        "Shot", shot["id"], {"assets": [a1, a3]}, multi_entity_update_modes={"assets": "remove"}
    )
    assert ids() == [a2["id"]]
    sg.update("Shot", shot["id"], {"assets": [a3]}, multi_entity_update_modes={"assets": "set"})
    assert ids() == [a3["id"]]
    assert shot["id"] in {
        s["id"] for s in sg.find_one("Asset", [["id", "is", a3["id"]]], ["shots"])["shots"]
    }
    assert shot["id"] not in {
        s["id"] for s in sg.find_one("Asset", [["id", "is", a2["id"]]], ["shots"])["shots"]
    }
    # multi-entity filters
    assert [s["id"] for s in sg.find("Shot", [["assets", "is", a3], ["code", "is", "multi"]])] == [
        shot["id"]
    ]
    assert sg.find("Shot", [["assets", "in", [a1, a3]], ["code", "is", "multi"]])


def test_delete_and_revive(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shot = sg.find_one("Shot", [["tasks", "is_not", None]], ["code", "tasks"])
    task_id = shot["tasks"][0]["id"]
    assert sg.delete("Shot", shot["id"]) is True
    assert sg.delete("Shot", shot["id"]) is False
    # links to a retired entity disappear from reads, as on a site
    assert sg.find_one("Task", [["id", "is", task_id]], ["entity"])["entity"] is None
    assert sg.revive("Shot", shot["id"]) is True
    assert sg.revive("Shot", shot["id"]) is False
    assert sg.find_one("Task", [["id", "is", task_id]], ["entity"])["entity"]["id"] == shot["id"]
    with pytest.raises(shotgun_api3.Fault):
        sg.delete("Shot", 987654)


def test_batch_is_all_or_nothing(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shot = sg.find_one("Shot", [], ["code"])
    results = sg.batch(
        [
            {
                "request_type": "create",
                "entity_type": "Shot",
                "data": {"code": "batch_a", "project": PROJECT},
                "return_fields": ["sg_status_list"],
            },
            {
                "request_type": "update",
                "entity_type": "Shot",
                "entity_id": shot["id"],
                "data": {"description": "from batch"},
            },
            {"request_type": "delete", "entity_type": "Shot", "entity_id": shot["id"]},
        ]
    )
    assert results[0]["code"] == "batch_a" and results[0]["sg_status_list"] == "wtg"
    assert results[1] == {"type": "Shot", "id": shot["id"], "description": "from batch"}
    assert results[2] is True

    events_before = shotgrid_server.last_event_id
    count_before = len(sg.find("Shot", []))
    with pytest.raises(shotgun_api3.Fault):
        sg.batch(
            [
                {
                    "request_type": "create",
                    "entity_type": "Shot",
                    "data": {"code": "batch_b", "project": PROJECT},
                },
                {
                    "request_type": "update",
                    "entity_type": "Shot",
                    "entity_id": 987654,
                    "data": {"code": "nope"},
                },
            ]
        )
    assert len(sg.find("Shot", [])) == count_before
    assert sg.find("Shot", [["code", "is", "batch_b"]]) == []
    assert sg.find("EventLogEntry", [["id", "greater_than", events_before]]) == []


def test_summarize_count_and_sum_with_grouping(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shots = sg.find("Shot", [], ["sg_cut_duration", "sg_sequence", "sg_status_list"])
    result = sg.summarize(
        "Shot", [], [{"field": "id", "type": "count"}, {"field": "sg_cut_duration", "type": "sum"}]
    )
    assert result["summaries"] == {
        "id": len(shots),
        "sg_cut_duration": sum(s["sg_cut_duration"] for s in shots),
    }
    grouped = sg.summarize(
        "Shot",
        [["sg_status_list", "is_not", "omt"]],
        [{"field": "sg_cut_duration", "type": "sum"}, {"field": "id", "type": "record_count"}],
        grouping=[{"field": "sg_status_list", "type": "exact", "direction": "asc"}],
    )
    kept = [s for s in shots if s["sg_status_list"] != "omt"]
    names = [g["group_name"] for g in grouped["groups"]]
    assert names == sorted({s["sg_status_list"] for s in kept})
    for group in grouped["groups"]:
        members = [s for s in kept if s["sg_status_list"] == group["group_value"]]
        assert group["summaries"] == {
            "sg_cut_duration": sum(s["sg_cut_duration"] for s in members),
            "id": len(members),
        }
    by_seq = sg.summarize(
        "Shot",
        [],
        [{"field": "id", "type": "count"}],
        grouping=[{"field": "sg_sequence", "type": "exact", "direction": "desc"}],
    )
    first = by_seq["groups"][0]
    assert first["group_value"]["type"] == "Sequence"
    assert first["group_name"] == first["group_value"]["name"]


def test_schema_reads(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    schema = sg.schema_read()
    assert {
        "Project",
        "Sequence",
        "Shot",
        "Asset",
        "Step",
        "Task",
        "Version",
        "HumanUser",
        "ApiUser",
        "EventLogEntry",
    } <= set(schema)
    assert schema["Task"]["due_date"]["data_type"]["value"] == "date"
    assert schema["Shot"]["assets"]["properties"]["valid_types"]["value"] == ["Asset"]
    entities = sg.schema_entity_read()
    assert entities["Shot"]["name"]["value"] == "Shot"
    field = sg.schema_field_read("Shot", "sg_status_list")
    assert list(field) == ["sg_status_list"]
    assert "ip" in field["sg_status_list"]["properties"]["valid_values"]["value"]
    assert set(sg.schema_field_read("Shot")) == set(schema["Shot"])


def test_results_share_nothing_with_the_store(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    shot = sg.find_one("Shot", [["assets", "is_not", None]], ["code", "assets", "sg_sequence"])
    shot["code"] = "mutated"
    shot["assets"].append({"type": "Asset", "id": 999})
    shot["sg_sequence"]["name"] = "mutated"
    again = sg.find_one("Shot", [["id", "is", shot["id"]]], ["code", "assets", "sg_sequence"])
    assert again["code"] != "mutated" and {"type": "Asset", "id": 999} not in again["assets"]
    assert again["sg_sequence"]["name"] != "mutated"
    # the in-process API hands out copies too
    local = shotgrid_server.store.find_one("Shot", [["id", "is", shot["id"]]], ["code", "assets"])
    assert local is not None
    local["assets"].clear()
    local["code"] = "mutated"
    fresh = shotgrid_server.store.find_one("Shot", [["id", "is", shot["id"]]], ["code", "assets"])
    assert fresh is not None and fresh["code"] == again["code"] and fresh["assets"]


def test_in_process_store_matches_http(shotgrid_server: ShotgridServer) -> None:
    sg = shotgrid_server.client()
    filters: List[Any] = [["sg_status_list", "in", ["ip", "wtg"]]]
    over_http = sg.find(
        "Task",
        filters,
        ["content", "entity", "created_at"],
        order=[{"field_name": "content", "direction": "asc"}],
    )
    local = shotgrid_server.store.find(
        "Task",
        filters,
        ["content", "entity", "created_at"],
        order=[{"field_name": "content", "direction": "asc"}],
    )
    assert [t["id"] for t in local] == [t["id"] for t in over_http]
    assert local[0]["entity"] == over_http[0]["entity"]
    updated = shotgrid_server.store.update("Task", local[0]["id"], {"content": "local"})
    assert isinstance(updated, dict) and updated["content"] == "local"
