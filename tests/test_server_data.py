"""Demo schema format, the production generator, and a real site's schema on the server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict

from sgcache_layers.testing import (
    ShotgridServer,
    SiteStore,
    demo_schema,
    generate_production,
    load_schema,
)

REAL_SCHEMA = Path(__file__).parent / "fixtures" / "real-site-schema"


def _real_field_keys() -> set[str]:
    with open(REAL_SCHEMA / "schema.json", encoding="utf-8") as fh:
        real = json.load(fh)
    return set(real["Shot"]["code"])


def test_demo_schema_has_the_site_format() -> None:
    schema, schema_entity = demo_schema()
    keys = _real_field_keys()
    for entity_type, fields in schema.items():
        assert entity_type in schema_entity
        assert schema_entity[entity_type]["name"]["value"]
        for name, definition in fields.items():
            assert set(definition) == keys, (entity_type, name)
            assert definition["entity_type"]["value"] == entity_type
            assert "default_value" in definition["properties"]
    expected = {
        ("Shot", "sg_sequence"): "entity",
        ("Shot", "assets"): "multi_entity",
        ("Task", "due_date"): "date",
        ("Version", "created_at"): "date_time",
        ("Task", "sg_status_list"): "status_list",
        ("Shot", "sg_cut_in"): "number",
        ("Shot", "sg_frame_rate"): "float",
        ("Project", "archived"): "checkbox",
        ("Asset", "sg_asset_type"): "list",
        ("Task", "content"): "text",
        ("EventLogEntry", "meta"): "serializable",
        ("Task", "task_assignees"): "multi_entity",
        ("Version", "sg_path_to_movie"): "text",
        ("Version", "sg_task"): "entity",
    }
    for (entity_type, name), data_type in expected.items():
        assert schema[entity_type][name]["data_type"]["value"] == data_type
    assert demo_schema()[0] == schema  # fresh, equal copies


def test_generator_is_deterministic_and_silent() -> None:
    def snapshot(seed: int) -> Dict[str, Any]:
        store = SiteStore(*demo_schema())
        generate_production(store, scale=0.05, seed=seed)
        return {t: store.find(t, [], list(store.schema[t])) for t in ("Shot", "Task", "Version")}

    first = snapshot(0)
    assert first == snapshot(0)
    assert first != snapshot(1)
    assert 3 <= len(first["Shot"]) <= 60 and first["Task"] and first["Version"]


def test_generator_full_scale_counts_and_speed() -> None:
    store = SiteStore(*demo_schema())
    start = time.perf_counter()
    made = generate_production(store, scale=1.0, seed=0)
    elapsed = time.perf_counter() - start
    print(f"generate_production(scale=1.0): {elapsed:.2f} s")
    counts = {t: len(v) for t, v in made.items()}
    assert counts["Project"] == 2 and counts["Step"] == 8 and counts["HumanUser"] == 20
    assert counts["Sequence"] == 20 and counts["Shot"] == 500 and counts["Asset"] == 100
    assert 4000 <= counts["Task"] <= 6000
    assert 1500 <= counts["Version"] <= 2500
    assert store.last_event_id == 0
    assert elapsed < 10  # a few seconds at most, even on a slow CI machine
    # reverse links were filled in
    seq = store.find_one("Sequence", [], ["shots"])
    assert seq is not None and seq["shots"]


def test_generator_over_the_api_writes_events(shotgrid_server_factory: Callable[..., Any]) -> None:
    server: ShotgridServer = shotgrid_server_factory()
    made = generate_production(server.client(), scale=0.02, seed=0)
    assert made["Shot"] and server.last_event_id > 0


def test_real_site_schema_on_the_server(shotgrid_server_factory: Callable[..., Any]) -> None:
    server: ShotgridServer = shotgrid_server_factory(REAL_SCHEMA)
    sg = server.client()
    schema = sg.schema_read()
    assert len(schema) >= 77 and "EventLogEntry" in schema and "CustomEntity01" in schema
    assert sg.schema_entity_read()["Shot"]["name"]["value"] == "Shot"
    assert sg.schema_field_read("Shot", "sg_sequence")["sg_sequence"]["data_type"]["value"] == (
        "entity"
    )

    project = sg.create("Project", {"name": "Real"})
    seq = sg.create("Sequence", {"code": "RS010", "project": project})
    shot = sg.create(
        "Shot",
        {"code": "RS010_0010", "project": project, "sg_sequence": seq},
        ["created_at", "sg_status_list"],
    )
    task = sg.create("Task", {"content": "comp", "entity": shot, "project": project})
    custom = sg.create("CustomEntity01", {"code": "thing", "project": project})
    assert shot["sg_sequence"]["name"] == "RS010" and shot["sg_status_list"] == "wtg"

    found = sg.find(
        "Task",
        [["entity.Shot.sg_sequence.Sequence.code", "is", "RS010"]],
        ["content", "entity", "project"],
    )
    assert found == [
        {
            "type": "Task",
            "id": task["id"],
            "content": "comp",
            "entity": {"type": "Shot", "id": shot["id"], "name": "RS010_0010"},
            "project": {"type": "Project", "id": project["id"], "name": "Real"},
        }
    ]
    assert (
        sg.find_one("Sequence", [["id", "is", seq["id"]]], ["shots"])["shots"][0]["id"]
        == (shot["id"])
    )
    assert sg.update("CustomEntity01", custom["id"], {"description": "x"})["description"] == "x"
    events = sg.find(
        "EventLogEntry",
        [["event_type", "is", "Shotgun_CustomEntity01_Change"]],
        ["attribute_name", "meta"],
    )
    assert "description" in {e["attribute_name"] for e in events}


def test_real_site_schema_accepts_the_generator() -> None:
    schema, schema_entity = load_schema(REAL_SCHEMA)
    store = SiteStore(schema, schema_entity)
    made = generate_production(store, scale=0.05, seed=0)
    assert made["Shot"] and made["Task"]
    task = store.find_one("Task", [["entity", "type_is", "Shot"]], ["entity", "step", "content"])
    assert task is not None and task["entity"]["name"]


def test_load_schema_adds_event_log_when_missing(tmp_path: Path) -> None:
    schema, schema_entity = demo_schema()
    del schema["EventLogEntry"], schema_entity["EventLogEntry"]
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "schema_entity.json").write_text(json.dumps(schema_entity))
    loaded, loaded_entity = load_schema(tmp_path)
    assert "meta" in loaded["EventLogEntry"] and "EventLogEntry" in loaded_entity
    with ShotgridServer((loaded, loaded_entity)) as server:
        sg = server.client()
        sg.create("Project", {"name": "P"})
        assert (
            sg.find("EventLogEntry", [], ["event_type"])[0]["event_type"] == "Shotgun_Project_New"
        )
