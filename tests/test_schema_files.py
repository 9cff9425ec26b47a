"""Schemas without a site: every accepted shape, schema reads answered from a file, and
the snapshot record kinds that carry warmed rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from shotgun_api3.shotgun import Fault

from sgcache_layers import Session, records
from sgcache_layers.config import SessionConfigError
from sgcache_layers.schema_files import SchemaFile, export_schema, load_schema
from sgcache_layers.testing import ShotgridServer, demo_schema

FIELDS, ENTITIES = demo_schema()


def _combined() -> dict[str, Any]:
    """shotgrid_orm's file: each type's schema_entity_read entry plus its fields."""
    return {t: {**ENTITIES[t], "fields": FIELDS[t]} for t in FIELDS}


@pytest.mark.parametrize(
    ("shape", "fields", "entities"),
    [
        ("schema_read", FIELDS, {}),
        ("schema_entity_read", {}, ENTITIES),
        ("combined", FIELDS, ENTITIES),
    ],
)
def test_each_shape_reads_as_fields_and_entities(
    shape: str, fields: Any, entities: Any, tmp_path: Path
) -> None:
    data = {"schema_read": FIELDS, "schema_entity_read": ENTITIES, "combined": _combined()}[shape]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    for source in (data, json.dumps(data), path, str(path)):
        loaded = load_schema(source)  # type: ignore[arg-type]
        assert loaded.fields == fields and loaded.entities == entities


def test_a_directory_holds_schema_json_and_schema_entity_json(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text(json.dumps(FIELDS), encoding="utf-8")
    assert load_schema(tmp_path) == SchemaFile(FIELDS, {})
    (tmp_path / "schema_entity.json").write_text(json.dumps(ENTITIES), encoding="utf-8")
    assert load_schema(tmp_path) == SchemaFile(FIELDS, ENTITIES)


def test_the_real_site_fixture_loads(tmp_path: Path) -> None:
    folder = Path(__file__).parent / "fixtures" / "real-site-schema"
    loaded = load_schema(folder)
    assert loaded.fields and loaded.entities
    assert set(loaded.field_types()) == set(loaded.fields)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "not list"),
        ("[1, 2]", "must be a JSON object"),
        ({"Shot": 5}, "is not an object"),
        ({"Shot": {"code": {"data_type": {"value": "text"}}, "name": {"value": "x"}}}, "mixes"),
        ("{not json", "not JSON"),
        (42, "not int"),
    ],
)
def test_what_is_not_a_schema_says_why(data: Any, message: str) -> None:
    with pytest.raises(SessionConfigError, match=message):
        load_schema(data)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SessionConfigError, match="cannot read the schema"):
        load_schema(tmp_path / "nope.json")
    with pytest.raises(SessionConfigError, match="^schema: cannot read"):
        Session(object(), identity="x", schema=str(tmp_path / "nope.json"))


def test_schema_reads_come_from_the_file_in_cached_and_offline_modes(
    shotgrid_server: ShotgridServer,
) -> None:
    client = shotgrid_server.client()
    schema = client.schema_read()
    project = client.find_one("Project", [], [])
    shotgrid_server.reset_requests()
    with Session(client, schema=_combined()) as session:
        assert session.schema_read() == FIELDS
        assert session.schema_entity_read() == ENTITIES
        assert session.schema_field_read("Shot") == FIELDS["Shot"]
        assert session.schema_field_read("Shot", "code") == {"code": FIELDS["Shot"]["code"]}
        with session.using_mode("offline"):
            assert session.schema_field_read("Shot", "sg_cut_in") is not None
            assert session.schema_field_read("Spaceship") is None  # not in the file
        assert shotgrid_server.request_count == 0
        # What the file cannot say is asked: a field it lacks, a project's view, direct mode.
        with pytest.raises(Fault, match="doesn't exist"):
            session.schema_field_read("Shot", "nope")
        assert shotgrid_server.count_requests("schema_field_read") == 1
        assert session.schema_read(project) == client.schema_read(project)
        with session.using_mode("direct"):
            assert session.schema_read() == schema
        assert shotgrid_server.count_requests("schema_read") == 3


def test_an_entity_only_file_leaves_the_field_reads_to_the_site(
    shotgrid_server: ShotgridServer,
) -> None:
    client = shotgrid_server.client()
    with Session(client, schema=ENTITIES) as session:
        shotgrid_server.reset_requests()
        assert session.schema_entity_read() == ENTITIES
        assert shotgrid_server.request_count == 0
        assert session.schema_read() == client.schema_read()
        assert shotgrid_server.count_requests("schema_read") == 2


def test_export_writes_atomically_and_reads_back(
    shotgrid_server: ShotgridServer, tmp_path: Path
) -> None:
    path = tmp_path / "site.json"
    written = export_schema(shotgrid_server.client(), path)
    assert load_schema(path) == written
    assert [p.name for p in tmp_path.iterdir()] == ["site.json"]  # no temporary file left


# ------------------------------------------------------------------------ records


def _head() -> dict[str, Any]:
    return {
        "v": records.FORMAT_VERSION,
        "k": "w",
        "t": 1.5,
        "g": {},
        "S": "12",
        "P": {"type": "Project", "id": 12, "name": "A"},
        "e": 40,
        "h": {"38": 1.0},
        "n": "abc",
        "ty": {
            "Shot": {
                "f": ["code"],
                "d": ["Shot"],
                "t": 1.5,
                "g": {"Shot": "tok"},
                "a": True,
                "c": [["12.abc.0", False, 1]],
            }
        },
        "sc": {"Shot": {"code": "text"}},
        "q": None,
        "pp": 500,
    }


def test_snapshot_records_are_valid_and_round_trip() -> None:
    zone = dt.timezone(dt.timedelta(hours=2))
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=zone)
    chunk = {
        "v": records.FORMAT_VERSION,
        "k": "c",
        "t": 1.5,
        "g": {},
        "T": "Shot",
        "R": False,
        "r": [{"type": "Shot", "id": 3, "code": "A", "created_at": when, "assets": []}],
    }
    for record in (_head(), chunk):
        assert records.valid(record) is record
        text = records.encode(record)
        assert text.startswith(f'["~{records.PREFIX}",')  # the fast frame, datetimes as columns
        back = records.decode(text, dt.timezone.utc)
        assert back == record
    back = records.decode(records.encode(chunk), dt.timezone.utc)
    assert back["r"][0]["created_at"].tzinfo is dt.timezone.utc


@pytest.mark.parametrize(
    "change",
    [
        {"S": 5},
        {"e": "40"},
        {"n": None},
        {"P": []},
        {"ty": {"Shot": {"f": [], "d": [], "t": 1.0, "g": {}, "c": [["x", 1, 1]]}}},
        {"ty": {"Shot": {"f": [], "d": [], "t": "now", "g": {}, "c": []}}},
        {"sc": {"Shot": []}},
    ],
)
def test_damaged_heads_are_not_records(change: dict[str, Any]) -> None:
    assert records.valid({**_head(), **change}) is None


def test_damaged_chunks_are_not_records() -> None:
    chunk = {
        "v": records.FORMAT_VERSION,
        "k": "c",
        "t": 1.0,
        "g": {},
        "T": "Shot",
        "R": False,
        "r": [],
    }
    assert records.valid(chunk) is chunk
    assert records.valid({**chunk, "R": None}) is None
    assert records.valid({**chunk, "r": [{"type": "Task", "id": 1}]}) is None
