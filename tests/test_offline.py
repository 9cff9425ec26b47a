"""Offline answers after a warm: the same rows, order and values ShotGrid gives, or a miss.

One site is warmed once (with retired rows, notes and an archived project in it); every
offline read goes through a *new* session over the same cache directory, so it is answered
from the stored snapshot, and is compared with the same call made by plain
``shotgun_api3`` against the site.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgcache_layers import FileCache, SerialisedCache, Session
from sgcache_layers import filters as sgf
from sgcache_layers.demo import Target, normalise, pipeline_reads
from sgcache_layers.testing import ShotgridServer

PROJECT_TYPES = ["Shot", "Task", "Version", "Asset", "Sequence", "PublishedFile", "Note"]
SITE_TYPES = ["Step", "HumanUser", "Project", "ApiUser"]
#: Deep paths the generated queries use, by type (every hop lands in a warmed type).
DEEP = {
    "Shot": ["sg_sequence.Sequence.code", "assets.Asset.code", "project.Project.name"],
    "Task": [
        "entity.Shot.code",
        "entity.Shot.sg_sequence.Sequence.code",
        "entity.Asset.sg_asset_type",
        "step.Step.code",
        "task_assignees.HumanUser.login",
    ],
    "Version": ["sg_task.Task.content", "entity.Shot.sg_status_list", "user.HumanUser.name"],
    "Asset": ["shots.Shot.code", "project.Project.name"],
    "Sequence": ["shots.Shot.sg_status_list"],
    "PublishedFile": ["version.Version.code", "task.Task.step.Step.code"],
    "Note": ["note_links.Shot.code", "tasks.Task.content"],
    "Step": [],
    "HumanUser": ["projects.Project.name"],
    "Project": ["users.HumanUser.login"],
    "ApiUser": [],
}
#: Relations the generated queries use, by data type (negations included).
RELATIONS = {
    "text": [
        "is",
        "is_not",
        "in",
        "not_in",
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
    ],
    "list": ["is", "is_not", "in", "not_in"],
    "status_list": ["is", "is_not", "in", "not_in"],
    "entity_type": ["is", "is_not", "in"],
    "color": ["is", "is_not", "contains"],
    "number": ["is", "is_not", "less_than", "greater_than", "between", "not_between", "in"],
    "float": ["is", "is_not", "less_than", "greater_than", "between", "not_in"],
    "duration": ["is", "is_not", "less_than", "greater_than", "between"],
    "checkbox": ["is", "is_not"],
    "date": [
        "is",
        "is_not",
        "less_than",
        "greater_than",
        "between",
        "in",
        "in_calendar_month",
        "in_calendar_year",
    ],
    "date_time": [
        "is",
        "is_not",
        "less_than",
        "greater_than",
        "between",
        "in_last",
        "not_in_last",
        "in_next",
        "in_calendar_week",
    ],
    "entity": [
        "is",
        "is_not",
        "in",
        "not_in",
        "type_is",
        "type_is_not",
        "name_contains",
        "name_not_contains",
        "name_is",
        "name_starts_with",
    ],
    "multi_entity": ["is", "is_not", "in", "not_in", "type_is", "name_contains", "name_ends_with"],
}
MISSING = object()


def _cache(path: Path) -> Any:
    def cache_maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(str(path)), encode=session.encode, decode=session.decode)

    return cache_maker


class Site:
    """The warmed site: its server, a plain client, the warmed project and what it holds."""

    def __init__(self, server: ShotgridServer, path: Path) -> None:
        self.server = server
        self.path = path
        self.sg = server.client()
        self.project = self.sg.find_one("Project", [], ["name"], order=[{"field_name": "id"}])
        self.schema = self.sg.schema_read()
        self.offline = self.session(mode="offline")
        self.tables: dict[str, dict[int, dict[str, Any]]] = {}
        self.retired: dict[str, dict[int, dict[str, Any]]] = {}
        held = self.offline._snapshots
        for scope in ("site", str(self.project["id"])):
            snapshot = held.load(scope)
            assert snapshot is not None
            for name, table in snapshot.tables.items():
                self.tables[name] = dict(table.live)
                self.retired[name] = dict(table.retired)
        self.fields = {
            name: [
                f
                for f, d in self.schema[name].items()
                if d["data_type"]["value"] not in ("image", "url", "serializable")
            ]
            for name in self.tables
        }
        self.source = sgf.SchemaSource(self.schema, self.tables)

    def session(self, **kwargs: Any) -> Session:
        return Session(self.server.client(connect=False), cache=_cache(self.path), **kwargs)

    def values(self, entity_type: str, path: str) -> list[Any]:
        """Distinct values *path* reaches on the rows of *entity_type* (live and retired)."""
        getter = sgf.compile_path(entity_type, path, self.source)[1]
        seen: list[Any] = []
        rows = list(self.tables[entity_type].values()) + list(self.retired[entity_type].values())
        for row in rows:
            for value in getter(row):
                for item in value if isinstance(value, list) else [value]:
                    if item is not None and item not in seen:
                        seen.append(item)
        return seen


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A small site with retired rows, notes and an archived project, warmed once."""
    with ShotgridServer(scale=0.1, seed=5) as server:
        sg = server.client()
        first, second = sg.find("Project", [], ["name"], order=[{"field_name": "id"}])
        project = {"type": "Project", "id": first["id"]}
        sg.update("Project", second["id"], {"archived": True})
        in_project = [["project", "is", project]]
        shots = sg.find("Shot", in_project, ["code"], order=[{"field_name": "id"}])
        tasks = sg.find("Task", in_project, ["content"], order=[{"field_name": "id"}])
        versions = sg.find("Version", in_project, ["code"], order=[{"field_name": "id"}])
        assets = sg.find("Asset", in_project, ["code"], order=[{"field_name": "id"}])
        for index, shot in enumerate(shots[:4]):
            sg.create(
                "Note",
                {
                    "project": project,
                    "subject": f"Note {index} on {shot['code']}",
                    "content": "please fix the edges" if index % 2 else "looks good",
                    "note_links": [shot, versions[index]],
                    "tasks": tasks[index : index + 2],
                    "sg_status_list": "opn" if index % 2 else "clsd",
                },
            )
        sg.delete("Asset", assets[0]["id"])  # linked from shots: the links disappear
        for shot in shots[-2:]:
            sg.delete("Shot", shot["id"])
        for task in tasks[::40]:
            sg.delete("Task", task["id"])
        sg.delete("Version", versions[3]["id"])
        sg.update("Shot", shots[5]["id"], {"sg_status_list": "hld", "description": None})
        path = tmp_path_factory.mktemp("warm")
        with Session(server.client(), cache=_cache(path)) as session:
            report = session.warm(first["name"], progress=False)
        assert report["full"] and report["retired"]["Shot"] == 2
        yield Site(server, path)


# ------------------------------------------------------------------------- comparing


def _norm(value: Any) -> Any:
    """A value as the client gives it, links as ``(type, id, name)``."""
    if isinstance(value, Mapping):
        if "type" in value and "id" in value:
            return ("link", value["type"], value["id"], dict.get(value, "name"))
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def _rows(rows: Any, fields: list[str]) -> list[Any]:
    out = []
    for row in rows:
        values = []
        for name in fields:
            found = dict.get(row, name, MISSING)
            values.append("<absent>" if found is MISSING else _norm(found))
        out.append((row["type"], row["id"], values))
    return out


def _same(site: Site, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call *method* online (plain client) and offline (a fresh read); assert equal."""
    online = getattr(site.sg, method)(*args, **kwargs)
    session = site.offline
    session.reset()  # no entity known from an earlier read: names come from this answer
    answered = session._snapshots.counts["answered"]
    offline = getattr(session, method)(*args, **kwargs)
    assert session._snapshots.counts["answered"] == answered + 1, "not answered offline"
    if method == "summarize":
        assert offline == online
        return online
    fields = list(args[2] if len(args) > 2 else kwargs.get("fields") or [])
    if method == "find_one":
        online, offline = [online] if online else [], [offline] if offline else []
    assert _rows(offline, fields) == _rows(online, fields)
    return online


# -------------------------------------------------------------------------- the tests


def test_the_demo_reads_are_the_same_offline(site: Site) -> None:
    user = site.sg.find_one("HumanUser", [], ["login"], order=[{"field_name": "id"}])
    target = Target(
        site.server.url,
        site.server.script_name,
        site.server.api_key,
        site.project["name"],
        user["login"],
    )
    online = normalise(pipeline_reads(site.sg, target, lambda step: None))
    with site.session(mode="offline") as session:
        site.server.reset_requests()
        offline = normalise(pipeline_reads(session, target, lambda step: None))
        assert site.server.request_count == 0
        assert session._snapshots.counts == {"answered": 8}
    assert offline == online
    assert len(online["tasks"]) > 100 and len(online["latest_versions"]) > 10


def test_reads_of_every_warmed_type_in_full(site: Site) -> None:
    project = [["project", "is", site.project]]
    for name in PROJECT_TYPES:
        fields = site.fields[name] + DEEP[name]
        rows = _same(site, "find", name, project, fields)
        assert len(rows) == len(site.tables[name])
        _same(site, "find", name, project, fields, retired_only=True)
    for name in SITE_TYPES:
        _same(site, "find", name, [], site.fields[name] + DEEP[name])


def test_paging_order_presets_and_archived_projects(site: Site) -> None:
    project = [["project", "is", site.project]]
    order = [
        {"field_name": "sg_sequence.Sequence.code"},
        {"field_name": "code", "direction": "desc"},
    ]
    for limit, page in [(0, 0), (7, 0), (7, 2), (0, 1), (3, 40), (501, 0)]:
        _same(site, "find", "Shot", project, ["code"], order, None, limit, False, page)
    _same(site, "find_one", "Task", project, ["content", "entity"], [{"field_name": "due_date"}])
    latest = [{"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}]
    linked = project + [["entity", "is_not", None]]
    rows = _same(
        site, "find", "Version", linked, ["code", "entity"], additional_filter_presets=latest
    )
    assert 0 < len(rows) < len(site.tables["Version"])
    # Versions of a retired shot show no entity, yet a site groups them by it: a miss.
    missed = site.offline._snapshots.counts["missed"]
    assert site.offline.find("Version", project, ["code"], additional_filter_presets=latest) == []
    assert site.offline._snapshots.counts["missed"] == missed + 1
    by_step = [
        {"preset_name": "LATEST", "latest_by": "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT"}
    ]
    _same(site, "find", "Version", linked, ["code"], additional_filter_presets=by_step)
    numbers = [{"preset_name": "LATEST", "latest_by": "VERSION_NUMBER"}]
    _same(site, "find", "PublishedFile", linked, ["code"], additional_filter_presets=numbers)
    rows = _same(site, "find", "Project", [], ["name"], include_archived_projects=False)
    assert [r["id"] for r in rows] == [site.project["id"]]
    _same(site, "find", "Shot", project, ["code"], include_archived_projects=False)
    archived = [["project", "is", {"type": "Project", "id": site.project["id"] + 1}]]
    assert site.offline.find("Shot", archived, ["code"]) == []  # another project: a miss


def test_summaries_are_the_same_offline(site: Site) -> None:
    project = [["project", "is", site.project]]
    counts = [{"field": "id", "type": "count"}, {"field": "duration", "type": "sum"}]
    _same(site, "summarize", "Task", project, counts)
    _same(
        site,
        "summarize",
        "Task",
        project + [["sg_status_list", "is_not", "fin"]],
        counts
        + [{"field": "due_date", "type": "latest"}, {"field": "est_in_mins", "type": "average"}],
        grouping=[
            {"field": "entity", "type": "exact", "direction": "asc"},
            {"field": "step", "type": "exact", "direction": "desc"},
        ],
    )
    _same(
        site,
        "summarize",
        "Version",
        project,
        [{"field": "created_at", "type": "maximum"}, {"field": "id", "type": "record_count"}],
        grouping=[{"field": "created_at", "type": "week", "direction": "desc"}],
    )
    _same(
        site,
        "summarize",
        "Shot",
        project,
        [{"field": "sg_cut_duration", "type": "sum"}, {"field": "sg_vfx", "type": "checked"}],
        grouping=[{"field": "sg_cut_duration", "type": "hundreds", "direction": "asc"}],
    )
    _same(
        site,
        "summarize",
        "Task",
        project,
        [{"field": "sg_status_list", "type": "percentage", "value": "ip"}],
        grouping=[{"field": "step.Step.code", "type": "firstletter"}],
    )


# ---------------------------------------------------------------- generated queries


@st.composite
def condition(draw: Any, site: Site, entity_type: str) -> list[Any]:
    """One ``[path, relation, values...]`` over a warmed field, with values from the data."""
    paths = site.fields[entity_type] + DEEP[entity_type] + ["id"]
    while True:
        path = draw(st.sampled_from(paths))
        kind = sgf.path_type(entity_type, path, site.source)
        if kind in RELATIONS:
            break
    relation = draw(st.sampled_from(RELATIONS[kind]))
    seen = site.values(entity_type, path) or [None]
    value = draw(st.sampled_from(seen))
    other = draw(st.sampled_from(seen))
    if kind in ("entity", "multi_entity"):
        link = {"type": value["type"], "id": value["id"]} if value else None
        if relation in ("type_is", "type_is_not"):
            return [path, relation, value["type"] if value else "Shot"]
        if relation.startswith("name_"):
            name = str((value or {}).get("name") or "x")
            cut = draw(st.integers(0, max(0, len(name) - 1)))
            part = name if relation == "name_is" else name[cut : cut + 3] or name
            return [path, relation, draw(st.sampled_from([part, part.upper()]))]
        if relation in ("in", "not_in"):
            pair = [link] + ([{"type": other["type"], "id": other["id"]}] if other else [])
            return [path, relation, pair]
        return [path, relation, draw(st.sampled_from([link, None]))]
    if relation in ("between", "not_between"):
        low, high = sorted([value, other]) if value is not None and other is not None else (1, 9)
        return [path, relation, [low, high]]
    if relation in ("in", "not_in"):
        return [path, relation, [value, other]]
    if relation in ("contains", "not_contains", "starts_with", "ends_with"):
        text = str(value or "a")
        cut = draw(st.integers(0, len(text)))
        part = (
            text[:cut]
            if relation == "starts_with"
            else text[cut:]
            if relation == "ends_with"
            else text[cut : cut + 3]
        )
        return [path, relation, draw(st.sampled_from([part, part.upper()])) or text]
    if relation in ("in_last", "not_in_last", "in_next"):
        return [
            path,
            relation,
            draw(st.integers(1, 900)),
            draw(st.sampled_from(["DAY", "MONTH", "YEAR"])),
        ]
    if relation.startswith("in_calendar_"):
        return [path, relation, draw(st.integers(-40, 2))]
    if kind == "checkbox":
        return [path, relation, draw(st.booleans())]
    if isinstance(value, str):
        return [path, relation, draw(st.sampled_from([value, value.upper(), None]))]
    if isinstance(value, dt.datetime) and draw(st.booleans()):
        value = value.astimezone(dt.timezone(dt.timedelta(hours=draw(st.integers(-9, 9)))))
    return [path, relation, draw(st.sampled_from([value, None])) if "is" in relation else value]


@st.composite
def filters(draw: Any, site: Site, entity_type: str, depth: int = 0) -> list[Any]:
    """Conditions and nested groups (``filter_operator`` any/all) over *entity_type*."""
    out: list[Any] = []
    for _ in range(draw(st.integers(0 if depth else 1, 3))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = draw(filters(site, entity_type, depth + 1))
            out.append({"filter_operator": draw(st.sampled_from(["any", "all"])), "filters": inner})
        else:
            out.append(draw(condition(site, entity_type)))
    return out


@st.composite
def query(draw: Any, site: Site) -> tuple[str, dict[str, Any]]:
    entity_type = draw(st.sampled_from(PROJECT_TYPES + PROJECT_TYPES + SITE_TYPES))
    conditions = draw(filters(site, entity_type))
    call: dict[str, Any] = {}
    if entity_type in PROJECT_TYPES:
        conditions = [["project", "is", site.project]] + conditions
    elif draw(st.booleans()):
        call["filter_operator"] = "any"
    sortable = site.fields[entity_type] + DEEP[entity_type] + ["id"]
    order = [
        {
            "field_name": draw(st.sampled_from(sortable)),
            "direction": draw(st.sampled_from(["asc", "desc"])),
        }
        for _ in range(draw(st.integers(0, 2)))
    ]
    names = draw(
        st.lists(st.sampled_from(site.fields[entity_type] + DEEP[entity_type]), max_size=6)
    )
    if entity_type == "PublishedFile":
        names = [n for n in names if n != "name"]  # "name" is not its display name: see _norm
    if draw(st.integers(0, 5)) == 0:
        names.append("no_such_field")
    call.update(
        entity_type=entity_type,
        filters=conditions,
        fields=names,
        order=order,
        limit=draw(st.sampled_from([0, 0, 1, 5, 30])),
        page=draw(st.sampled_from([0, 0, 0, 1, 2])),
        retired_only=draw(st.integers(0, 6)) == 5,
    )
    return entity_type, call


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_queries_are_the_same_offline(site: Site, data: Any) -> None:
    """Random filters (many relations, nested groups, deep paths), order, paging, retired
    rows and field selection: offline answers equal the site's, row for row."""
    _, call = data.draw(query(site))
    call = dict(call)
    entity_type = call.pop("entity_type")
    _same(site, "find", entity_type, call.pop("filters"), call.pop("fields"), **call)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_summaries_are_the_same_offline(site: Site, data: Any) -> None:
    entity_type = data.draw(st.sampled_from(["Shot", "Task", "Version"]))
    conditions = [["project", "is", site.project]] + data.draw(filters(site, entity_type, 1))
    numeric = [
        f
        for f in site.fields[entity_type]
        if site.schema[entity_type][f]["data_type"]["value"] in ("number", "float", "duration")
    ]
    kinds = ["count", "sum", "average", "maximum", "minimum", "record_count"]
    summaries = [
        {"field": name, "type": data.draw(st.sampled_from(kinds))}
        for name in data.draw(
            st.lists(st.sampled_from(numeric), min_size=1, max_size=3, unique=True)
        )
    ]
    groupable = [
        f
        for f in site.fields[entity_type]
        if site.schema[entity_type][f]["data_type"]["value"]
        in ("entity", "status_list", "list", "date", "date_time", "number", "checkbox")
    ]
    grouping = [
        {
            "field": data.draw(st.sampled_from(groupable)),
            "type": data.draw(st.sampled_from(["exact", "exact", "month", "tens", "firstletter"])),
            "direction": data.draw(st.sampled_from(["asc", "desc"])),
        }
        for _ in range(data.draw(st.integers(0, 2)))
    ]
    _same(site, "summarize", entity_type, conditions, summaries, grouping=grouping)


# -------------------------------------------------------------------------- misses


def test_what_the_snapshot_does_not_hold_is_a_miss(site: Site) -> None:
    session = site.offline
    project = [["project", "is", site.project]]
    other = [["project", "is", {"type": "Project", "id": site.project["id"] + 1}]]
    misses = [
        ("Shot", [], ["code"]),  # no project: other projects' shots are not held
        ("Shot", other, ["code"]),  # a project that was not warmed
        ("Group", [], ["code"]),  # a type that was not warmed
        ("Shot", project + [["image", "is", None]], ["code"]),  # images are not warmed
        ("Shot", project, ["image"]),
        ("Task", project + [["task_assignees.Group.code", "is", "x"]], ["content"]),
        ("Shot", [{"filter_operator": "any", "filters": project}], ["code"]),
        ("Shot", project + [["$FROM$Task.entity.id", "is", 1]], ["code"]),
    ]
    for entity_type, filters_, fields in misses:
        missed = session._snapshots.counts["missed"]
        assert session.find(entity_type, filters_, fields) == []
        assert session._snapshots.counts["missed"] == missed + 1, (entity_type, filters_, fields)
    assert session.find_one("Shot", [], ["code"]) is None
    assert session.summarize("Shot", [], [{"field": "id", "type": "count"}]) is None
    assert session.find("Shot", project, ["code"], retired_only=True) != []


def test_a_field_the_site_lacks_is_left_out_not_a_miss(site: Site) -> None:
    project = [["project", "is", site.project]]
    _same(site, "find", "Shot", project, ["code", "no_such_field", "sg_sequence.Sequence.nope"])
