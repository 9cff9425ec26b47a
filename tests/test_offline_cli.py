"""``sgcache-layers warm``, ``schema export`` and the warm part of ``stats``, on a real site."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers import Session
from sgcache_layers.cli import main
from sgcache_layers.schema_files import load_schema
from sgcache_layers.testing import ShotgridServer


@pytest.fixture
def site(shotgrid_server: ShotgridServer, monkeypatch: pytest.MonkeyPatch) -> ShotgridServer:
    """The function's site, named by the environment as a tool would find it."""
    for name in ("SGCACHE_LAYERS_CACHE", "SHOTGUN_SITE", "SHOTGUN_SCRIPT", "SHOTGUN_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SG_URL", shotgrid_server.url)
    monkeypatch.setenv("SG_SCRIPT", shotgrid_server.script_name)
    monkeypatch.setenv("SG_API_KEY", shotgrid_server.api_key)
    return shotgrid_server


def _project(server: ShotgridServer) -> dict[str, Any]:
    found = server.client().find_one("Project", [], ["name"], order=[{"field_name": "id"}])
    assert found is not None
    return dict(found)


def test_warm_then_stats_then_work_offline(
    site: ShotgridServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(site)
    cache = str(tmp_path / "cache")
    args = ["warm", "--project", project["name"], "--cache", cache, "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    shots = len(site.client().find("Shot", [["project", "is", project]]))
    assert out.startswith(
        f"Warmed project {project['name']} (id {project['id']}): 11 types read whole, "
        "0 rows read again; event log at 0.\n"
    )
    assert f"  Shot: {shots} rows, 0 retired\n" in out
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "0 types read whole, 0 rows read again" in again
    assert "\n1 requests in " in again

    assert main(["stats", "--cache-dir", cache]) == 0
    stats_text = capsys.readouterr().out
    assert f"  warm project {project['name']} (id {project['id']}): event log at 0" in stats_text
    assert "  warm site: event log at 0" in stats_text
    assert f"    Shot: {shots} rows, 0 retired, " in stats_text
    assert main(["stats", "--cache-dir", cache, "--json"]) == 0
    (space,) = json.loads(capsys.readouterr().out)["namespaces"]
    warm_project, warm_site = space["warm"]
    assert warm_project["project"]["id"] == project["id"] and warm_site["project"] is None
    assert warm_project["types"]["Shot"]["rows"] == shots
    assert sorted(warm_site["types"]) == ["ApiUser", "HumanUser", "Project", "Step"]
    assert space["records"]["warm"] == {"Snapshot": 2}

    with Session(site.client(), cache=cache, mode="offline") as offline:
        site.reset_requests()
        found = offline.find("Shot", [["project", "is", project]], ["code"])
        assert len(found) == shots and site.request_count == 0


def test_warm_some_types_as_json(
    site: ShotgridServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(site)
    cache = str(tmp_path / "cache")
    args = ["warm", "--project", str(project["name"]), "--types", "Shot,Task", "--cache", cache]
    assert main([*args, "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["full"]) == ["Project", "Shot", "Task"]
    assert report["project"]["id"] == project["id"]
    by_id = ["warm", "--project", str(project["id"]), "--cache", cache, "--json"]
    assert main([*by_id, "--types", "Shot", "Task"]) == 0  # no project has that name
    assert json.loads(capsys.readouterr().out)["full"] == []


def test_warm_errors_are_one_line(
    site: ShotgridServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = str(tmp_path / "cache")
    assert main(["warm", "--project", "Nope", "--cache", cache]) == 2
    assert capsys.readouterr().err == ("sgcache-layers: error: there is no project named 'Nope'\n")
    name = _project(site)["name"]
    assert main(["warm", "--project", name, "--types", "Spaceship", "--cache", cache]) == 2
    assert "no entity type 'Spaceship'" in capsys.readouterr().err
    assert main(["warm", "--project", name, "--cache", cache, "--schema", str(tmp_path)]) == 2
    assert "schema: cannot read the schema" in capsys.readouterr().err
    monkeypatch.delenv("SG_API_KEY")
    assert main(["warm", "--project", "x", "--cache", cache]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SG_API_KEY" in err and site.api_key not in err


def test_schema_export_writes_what_schema_reads_answer(
    site: ShotgridServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.json"
    assert main(["schema", "export", "--out", str(out)]) == 0
    sg = site.client()
    schema, entities = sg.schema_read(), sg.schema_entity_read()
    fields = sum(len(f) for f in schema.values())
    assert capsys.readouterr().out == (
        f"Wrote {len(schema)} entity types and {fields} fields to {out}.\n"
    )
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["Shot"]["fields"] == schema["Shot"]
    assert written["Shot"]["name"] == entities["Shot"]["name"]
    loaded = load_schema(out)
    assert loaded.fields == schema and loaded.entities == entities
    with Session(site.client(), schema=str(out), mode="offline") as offline:
        site.reset_requests()
        assert offline.schema_read() == schema
        assert offline.schema_entity_read() == entities
        assert offline.schema_field_read("Shot", "code") == {"code": schema["Shot"]["code"]}
        assert site.request_count == 0
    assert main(["schema", "export", "--out", str(tmp_path / "no" / "such.json")]) == 2
    assert capsys.readouterr().err.startswith("sgcache-layers: error: cannot write ")
