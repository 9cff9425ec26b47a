"""``sgcache_layers.filters``: ShotGrid filter, order and paging semantics on plain rows."""

from __future__ import annotations

import ast
import copy
import datetime as dt
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgcache_layers import filters as sgf
from sgcache_layers.filters import (
    FilterError,
    SchemaSource,
    Source,
    apply_filter_presets,
    compile_filters,
    filter_rows,
    normalise_filters,
    page_rows,
    path_type,
    sort_rows,
    wire_page,
)
from sgcache_layers.testing import ShotgridServer, demo_schema

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 5, 15, 12, 0, 0, tzinfo=UTC)  # a Wednesday
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


def _link(entity_type: str, entity_id: int, name: str) -> Dict[str, Any]:
    return {"type": entity_type, "id": entity_id, "name": name}


SQ1, SQ2 = _link("Sequence", 1, "SQ010"), _link("Sequence", 2, "sq020")
A1, A2, A3 = _link("Asset", 1, "tree"), _link("Asset", 2, "Rock"), _link("Asset", 3, "car")
STEP = _link("Step", 1, "Comp")


def _tables() -> Dict[str, Dict[int, Dict[str, Any]]]:
    shots = [
        {
            "type": "Shot",
            "id": 1,
            "code": "Alpha_010",
            "description": "hero shot",
            "sg_status_list": "ip",
            "sg_cut_in": 10,
            "sg_frame_rate": 24.0,
            "sg_vfx": True,
            "sg_sequence": SQ1,
            "assets": [A1, A2],
            "tags": ["Hero", "night"],
            "image": None,
            "created_at": NOW - dt.timedelta(hours=2),
        },
        {
            "type": "Shot",
            "id": 2,
            "code": "beta_020",
            "description": None,
            "sg_status_list": "fin",
            "sg_cut_in": 20,
            "sg_frame_rate": None,
            "sg_vfx": False,
            "sg_sequence": SQ2,
            "assets": [A2],
            "tags": [],
            "image": "https://example.com/thumb.png",
            "created_at": (NOW - dt.timedelta(days=3)).astimezone(PLUS_TWO),
        },
        {
            "type": "Shot",
            "id": 3,
            "code": "GAMMA_030",
            "description": "",
            "sg_status_list": None,
            "sg_cut_in": None,
            "sg_frame_rate": 25.0,
            "sg_vfx": None,
            "sg_sequence": None,
            "assets": [],
            "tags": None,
            "image": None,
            "created_at": None,
        },
    ]
    tasks = [
        {
            "type": "Task",
            "id": 10,
            "content": "comp",
            "entity": _link("Shot", 1, "Alpha_010"),
            "step": STEP,
            "due_date": "2024-05-15",
            "start_date": "2024-05-01",
            "task_assignees": [],
        },
        {
            "type": "Task",
            "id": 11,
            "content": "model",
            "entity": _link("Asset", 1, "tree"),
            "step": None,
            "due_date": "2024-06-03",
            "start_date": None,
            "task_assignees": [],
        },
        {
            "type": "Task",
            "id": 12,
            "content": "roto",
            "entity": _link("Shot", 3, "GAMMA_030"),
            "step": STEP,
            "due_date": None,
            "start_date": "2023-12-31",
            "task_assignees": [],
        },
    ]
    return {
        "Shot": {r["id"]: r for r in shots},
        "Task": {r["id"]: r for r in tasks},
        "Sequence": {
            1: {"type": "Sequence", "id": 1, "code": "SQ010", "sg_status_list": "ip"},
            2: {"type": "Sequence", "id": 2, "code": "sq020", "sg_status_list": "fin"},
        },
        "Asset": {
            1: {"type": "Asset", "id": 1, "code": "tree", "sg_asset_type": "Prop"},
            2: {"type": "Asset", "id": 2, "code": "Rock", "sg_asset_type": "Environment"},
            3: {"type": "Asset", "id": 3, "code": "car", "sg_asset_type": "Vehicle"},
        },
        "Step": {1: {"type": "Step", "id": 1, "code": "Comp", "list_order": 5}},
    }


def _schema() -> Dict[str, Any]:
    schema = copy.deepcopy(demo_schema()[0])
    extra = {
        "tags": "tag_list",
        "sg_secret": "password",
        "sg_link": "url",
        "sg_blob": "serializable",
    }
    for name, kind in extra.items():
        schema["Shot"][name] = {"data_type": {"value": kind}}
    return schema


TABLES = _tables()
SOURCE = SchemaSource(_schema(), TABLES, clock=lambda: NOW)


def ids(entity_type: str, filters: Any, **kwargs: Any) -> List[int]:
    rows = list(TABLES[entity_type].values())
    return [r["id"] for r in filter_rows(entity_type, rows, filters, SOURCE, **kwargs)]


# ------------------------------------------------------------------------------ relations

CASES: List[Tuple[str, List[Any], List[int]]] = [
    # text: case-insensitive, NULLs pass the negations
    ("Shot", [["code", "is", "alpha_010"]], [1]),
    ("Shot", [["code", "is_not", "ALPHA_010"]], [2, 3]),
    ("Shot", [["description", "is", None]], [2]),
    ("Shot", [["description", "is_not", None]], [1, 3]),
    ("Shot", [["description", "is", ""]], [3]),
    ("Shot", [["code", "in", ["BETA_020", "gamma_030"]]], [2, 3]),
    ("Shot", [["code", "in", "beta_020", "nope"]], [2]),
    ("Shot", [["code", "not_in", ["beta_020"]]], [1, 3]),
    ("Shot", [["description", "in", [None, "hero shot"]]], [1, 2]),
    ("Shot", [["code", "contains", "ET"]], [2]),
    ("Shot", [["description", "not_contains", "hero"]], [2, 3]),
    ("Shot", [["code", "starts_with", "g"]], [3]),
    ("Shot", [["code", "ends_with", "_010"]], [1]),
    # status and list fields
    ("Shot", [["sg_status_list", "is", "IP"]], [1]),
    ("Shot", [["sg_status_list", "is_not", "ip"]], [2, 3]),
    ("Shot", [["sg_status_list", "in", ["ip", "fin"]]], [1, 2]),
    ("Shot", [["sg_status_list", "is", None]], [3]),
    # numbers: comparisons never match NULL
    ("Shot", [["sg_cut_in", "is", 10]], [1]),
    ("Shot", [["sg_cut_in", "is_not", 10]], [2, 3]),
    ("Shot", [["sg_cut_in", "less_than", 20]], [1]),
    ("Shot", [["sg_cut_in", "greater_than", 5]], [1, 2]),
    ("Shot", [["sg_cut_in", "between", [10, 15]]], [1]),
    ("Shot", [["sg_cut_in", "between", 10, 20]], [1, 2]),
    ("Shot", [["sg_cut_in", "not_between", [10, 15]]], [2, 3]),
    ("Shot", [["sg_cut_in", "between", [None, 15]]], []),
    ("Shot", [["sg_cut_in", "in", [20, None]]], [2, 3]),
    ("Shot", [["sg_cut_in", "not_in", [20]]], [1, 3]),
    ("Shot", [["sg_cut_in", "less_than", None]], []),
    ("Shot", [["sg_frame_rate", "greater_than", 24.5]], [3]),
    ("Shot", [["id", "in", [1, 3, 99]]], [1, 3]),
    ("Shot", [["id", "greater_than", 1]], [2, 3]),
    # checkbox: NULL reads as false
    ("Shot", [["sg_vfx", "is", True]], [1]),
    ("Shot", [["sg_vfx", "is", False]], [2, 3]),
    ("Shot", [["sg_vfx", "is_not", True]], [2, 3]),
    # dates: strings or date objects, relative to the source clock (2024-05-15)
    ("Task", [["due_date", "is", "2024-05-15"]], [10]),
    ("Task", [["due_date", "is", dt.date(2024, 6, 3)]], [11]),
    ("Task", [["due_date", "is", None]], [12]),
    ("Task", [["due_date", "greater_than", "2024-05-15"]], [11]),
    ("Task", [["due_date", "less_than", dt.datetime(2024, 6, 1, tzinfo=UTC)]], [10]),
    ("Task", [["due_date", "between", ["2024-05-01", "2024-05-31"]]], [10]),
    ("Task", [["due_date", "in", ["2024-06-03", "2000-01-01"]]], [11]),
    ("Task", [["start_date", "in_last", 2, "WEEK"]], [10]),
    ("Task", [["start_date", "in_last", [1, "YEAR"]]], [10, 12]),
    ("Task", [["start_date", "not_in_last", 2, "WEEK"]], [11, 12]),
    ("Task", [["due_date", "in_next", 1, "MONTH"]], [10, 11]),
    ("Task", [["due_date", "in_next", 1, "DAY"]], [10]),
    ("Task", [["due_date", "not_in_next", 1, "DAY"]], [11, 12]),
    ("Task", [["due_date", "in_calendar_day", 0]], [10]),
    ("Task", [["due_date", "in_calendar_week", 3]], [11]),
    ("Task", [["due_date", "in_calendar_month", 0]], [10]),
    ("Task", [["due_date", "in_calendar_month", 1]], [11]),
    ("Task", [["start_date", "in_calendar_year", -1]], [12]),
    # date_time: aware values in any zone, strings on the wire, whole seconds
    ("Shot", [["created_at", "greater_than", "2024-05-14T00:00:00Z"]], [1]),
    ("Shot", [["created_at", "less_than", NOW.astimezone(PLUS_TWO)]], [1, 2]),
    ("Shot", [["created_at", "is", (NOW - dt.timedelta(days=3)).replace(microsecond=5)]], [2]),
    ("Shot", [["created_at", "is", None]], [3]),
    ("Shot", [["created_at", "in_last", 3, "HOUR"]], [1]),
    ("Shot", [["created_at", "in_last", 3, "DAY"]], [1, 2]),
    ("Shot", [["created_at", "not_in_last", 1, "DAY"]], [2, 3]),
    ("Shot", [["created_at", "in_calendar_day", -3]], [2]),
    ("Shot", [["created_at", "in_calendar_week", 0]], [1]),  # weeks start on Monday
    ("Shot", [["created_at", "between", [NOW - dt.timedelta(days=1), NOW]]], [1]),
    # entity links
    ("Shot", [["sg_sequence", "is", {"type": "Sequence", "id": 1}]], [1]),
    ("Shot", [["sg_sequence", "is", None]], [3]),
    ("Shot", [["sg_sequence", "is_not", SQ1]], [2, 3]),
    ("Shot", [["sg_sequence", "in", [SQ1, SQ2]]], [1, 2]),
    ("Shot", [["sg_sequence", "not_in", [SQ1]]], [2, 3]),
    ("Shot", [["sg_sequence", "type_is", "Sequence"]], [1, 2]),
    ("Shot", [["sg_sequence", "type_is_not", "Sequence"]], [3]),
    ("Shot", [["sg_sequence", "name_contains", "Q02"]], [2]),
    ("Shot", [["sg_sequence", "name_not_contains", "sq0"]], [3]),
    ("Shot", [["sg_sequence", "name_is", "sq010"]], [1]),
    ("Shot", [["sg_sequence", "name_starts_with", "SQ"]], [1, 2]),
    ("Shot", [["sg_sequence", "name_ends_with", "20"]], [2]),
    ("Task", [["entity", "type_is", "Asset"]], [11]),
    # multi-entity: any link matches; negations when none does
    ("Shot", [["assets", "is", A2]], [1, 2]),
    ("Shot", [["assets", "is_not", A1]], [2, 3]),
    ("Shot", [["assets", "is", None]], [3]),
    ("Shot", [["assets", "is_not", None]], [1, 2]),
    ("Shot", [["assets", "in", [A1, A3]]], [1]),
    ("Shot", [["assets", "not_in", [A1, A3]]], [2, 3]),
    ("Shot", [["assets", "type_is", "Asset"]], [1, 2]),
    ("Shot", [["assets", "name_contains", "ROC"]], [1, 2]),
    ("Shot", [["assets", "name_not_contains", "tree"]], [2, 3]),
    # tag lists: ``is`` is membership
    ("Shot", [["tags", "is", "hero"]], [1]),
    ("Shot", [["tags", "is_not", "hero"]], [2, 3]),
    ("Shot", [["tags", "is", None]], [2, 3]),
    ("Shot", [["tags", "name_contains", "igh"]], [1]),
    ("Shot", [["tags", "in", ["night", "day"]]], [1]),
    # image: presence only
    ("Shot", [["image", "is", None]], [1, 3]),
    ("Shot", [["image", "is_not", None]], [2]),
    # deep paths fan out over multi-entity hops; reaching nothing reads as NULL
    ("Shot", [["sg_sequence.Sequence.code", "is", "sq010"]], [1]),
    ("Shot", [["sg_sequence.Sequence.code", "is", None]], [3]),
    ("Shot", [["sg_sequence.Sequence.code", "is_not", "sq010"]], [2, 3]),
    ("Shot", [["sg_sequence.Sequence.sg_status_list", "in", ["fin"]]], [2]),
    ("Shot", [["assets.Asset.code", "is", "rock"]], [1, 2]),
    ("Shot", [["assets.Asset.code", "is_not", "rock"]], [3]),
    ("Shot", [["assets.Asset.sg_asset_type", "is", "Prop"]], [1]),
    ("Task", [["entity.Shot.code", "starts_with", "alpha"]], [10]),
    ("Task", [["entity.Shot.code", "is", None]], [11]),  # a link of another type
    ("Task", [["entity.Shot.sg_sequence.Sequence.code", "is", "SQ010"]], [10]),
    ("Task", [["entity.Shot.sg_sequence.Sequence.code", "is", None]], [11, 12]),
    ("Task", [["step.Step.list_order", "greater_than", 4]], [10, 12]),
    ("Task", [["entity.Asset.sg_asset_type", "is", "Prop"]], [11]),
    # groups, in both forms
    ("Shot", [], [1, 2, 3]),
    ("Shot", [["sg_cut_in", "is", 10], ["code", "is", "beta_020"]], []),
    ("Shot", {"filter_operator": "any", "filters": []}, [1, 2, 3]),
    (
        "Shot",
        [
            {
                "filter_operator": "any",
                "filters": [["sg_cut_in", "is", 10], ["sg_frame_rate", "is", 25.0]],
            },
            ["code", "is_not", "gamma_030"],
        ],
        [1],
    ),
    (
        "Shot",
        {
            "logical_operator": "or",
            "conditions": [
                {"path": "code", "relation": "is", "values": ["beta_020"]},
                {
                    "logical_operator": "and",
                    "conditions": [
                        {"path": "sg_vfx", "relation": "is", "values": [True]},
                        {"path": "sg_cut_in", "relation": "less_than", "values": [11]},
                    ],
                },
            ],
        },
        [1, 2],
    ),
]


@pytest.mark.parametrize(("entity_type", "filters", "expected"), CASES)
def test_relation(entity_type: str, filters: Any, expected: List[int]) -> None:
    assert ids(entity_type, filters) == expected


def test_filter_operator_any_and_both_forms_agree() -> None:
    either = [["code", "is", "alpha_010"], ["sg_cut_in", "is", 20]]
    assert ids("Shot", either, filter_operator="any") == [1, 2]
    assert ids("Shot", either, filter_operator="all") == []
    for filters, _ in [(c[1], c[2]) for c in CASES]:
        wire = normalise_filters(filters)
        assert normalise_filters(wire) == wire  # idempotent
    for entity_type, filters, expected in CASES:
        assert ids(entity_type, normalise_filters(filters)) == expected


REFUSED: List[Tuple[str, List[Any], str]] = [
    ("Shot", [["no_such", "is", 1]], "Shot.no_such doesn't exist"),
    ("Shot", [["code", "resembles", "x"]], "unknown filter relation 'resembles'"),
    ("Shot", [["code", "less_than", "x"]], "not valid on text fields"),
    ("Shot", [["sg_status_list", "contains", "i"]], "not valid on status_list fields"),
    ("Shot", [["sg_cut_in", "is", "ten"]], "expected a number"),
    ("Shot", [["sg_cut_in", "between", [1]]], "'between' needs two values"),
    ("Shot", [["sg_vfx", "is", None]], "checkbox filters need true or false"),
    ("Shot", [["image", "is", "x.png"]], "image fields can only be filtered with None"),
    ("Shot", [["sg_secret", "is", None]], "filtering on password fields is not supported"),
    ("Shot", [["sg_blob", "is", None]], "filtering on serializable fields is not supported"),
    ("Shot", [["sg_link", "is", None]], "filtering on url fields is not supported"),
    ("Shot", [["created_at", "in_last", 1, "FORTNIGHT"]], "unit must be one of"),
    ("Shot", [["created_at", "in_last", "one", "DAY"]], "needs [count, unit]"),
    ("Shot", [["created_at", "is", "yesterday"]], "invalid date_time value"),
    ("Task", [["due_date", "is", "15/05/2024"]], "invalid date value"),
    ("Task", [["due_date", "in_calendar_day", "today"]], "whole-number offset"),
    ("Shot", [["sg_sequence", "is", "SQ010"]], "expected a link with type and id"),
    ("Shot", [["sg_sequence", "in", ["SQ010"]]], "expected links with type and id"),
    ("Shot", [["sg_sequence", "contains", SQ1]], "not valid on entity fields"),
    ("Shot", [["sg_sequence", "name_contains", 5]], "needs a string"),
    ("Shot", [["code.Sequence.code", "is", "x"]], "is a text field, not a link"),
    ("Shot", [["sg_sequence.Sequence", "is", "x"]], "invalid deep field"),
    ("Shot", [["sg_sequence.Sequence.nope", "is", "x"]], "Sequence.nope doesn't exist"),
    ("Shot", [["$FROM$Task.entity.id", "is", 1]], "$FROM$"),
    ("Shot", [["code"]], "invalid filter"),
    ("Shot", [42], "invalid filter"),
]


@pytest.mark.parametrize(("entity_type", "filters", "message"), REFUSED)
def test_refused_filters_name_what_is_wrong(
    entity_type: str, filters: List[Any], message: str
) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filters(entity_type, filters, SOURCE)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_bad_forms_are_refused() -> None:
    with pytest.raises(FilterError, match="filter_operator"):
        compile_filters("Shot", [], SOURCE, filter_operator="some")
    with pytest.raises(FilterError):
        compile_filters("Shot", {"logical_operator": "xor", "conditions": []}, SOURCE)
    with pytest.raises(FilterError):
        compile_filters("Shot", "code is x", SOURCE)


def test_links_that_do_not_count_are_ignored() -> None:
    gone = {(t, i) for t, i in [("Asset", 2), ("Sequence", 1)]}
    source = Source(
        field_type=SOURCE.field_type,
        resolve=SOURCE.resolve,
        link_visible=lambda link: (link.get("type"), link.get("id")) not in gone,
    )
    rows = list(TABLES["Shot"].values())
    found = filter_rows("Shot", rows, [["assets", "is", None]], source)
    assert [r["id"] for r in found] == [2, 3]  # shot 2 only links the gone asset
    found = filter_rows("Shot", rows, [["sg_sequence", "is", None]], source)
    assert [r["id"] for r in found] == [1, 3]


def test_source_defaults_and_path_types() -> None:
    plain = Source(field_type=SOURCE.field_type)
    rows = list(TABLES["Shot"].values())
    # without resolve a deep path reaches no row, so it reads as NULL
    found = filter_rows("Shot", rows, [["sg_sequence.Sequence.code", "is", None]], plain)
    assert [r["id"] for r in found] == [1, 2, 3]
    found = filter_rows("Shot", rows, [["sg_sequence", "name_is", "sq020"]], plain)
    assert [r["id"] for r in found] == [2]  # names from the links themselves
    assert path_type("Task", "entity.Shot.sg_sequence.Sequence.code", SOURCE) == "text"
    assert path_type("Task", "entity.Shot.nope", SOURCE) is None
    assert path_type("Shot", "type", SOURCE) == "entity_type"
    assert path_type("Shot", "id", SOURCE) == "number"
    assert SOURCE.link_name(SQ2) == "sq020"
    assert SOURCE.link_name({"type": "Shot", "id": 99, "name": "kept"}) == "kept"


def test_the_engine_imports_nothing_of_ours() -> None:
    tree = ast.parse(Path(sgf.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "calendar", "datetime", "json", "re", "dataclasses", "typing"}


# ------------------------------------------------------------------------------ order


def order(entity_type: str, spec: List[Dict[str, str]]) -> List[int]:
    rows = list(TABLES[entity_type].values())[::-1]
    return [r["id"] for r in sort_rows(entity_type, rows, spec, SOURCE)]


def test_ordering() -> None:
    assert order("Shot", []) == [1, 2, 3]  # by id when unordered
    assert order("Shot", [{"field_name": "code", "direction": "desc"}]) == [3, 2, 1]
    # NULLs last ascending, first descending (Postgres)
    assert order("Shot", [{"field_name": "sg_cut_in", "direction": "asc"}]) == [1, 2, 3]
    assert order("Shot", [{"field_name": "sg_cut_in", "direction": "desc"}]) == [3, 2, 1]
    # links by display name, case-insensitive: SQ010 < sq020
    assert order("Shot", [{"field_name": "sg_sequence", "direction": "asc"}]) == [1, 2, 3]
    assert order("Shot", [{"column": "sg_sequence", "direction": "desc"}]) == [3, 2, 1]
    # datetimes across zones; ties keep id order; several keys
    assert order("Shot", [{"field_name": "created_at"}]) == [2, 1, 3]
    assert order(
        "Shot",
        [{"field_name": "sg_vfx", "direction": "asc"}, {"field_name": "code", "direction": "desc"}],
    ) == [2, 1, 3]
    assert order("Task", [{"field_name": "entity.Shot.code", "direction": "desc"}]) == [11, 12, 10]
    assert order("Task", [{"field_name": "due_date", "direction": "desc"}]) == [12, 11, 10]
    assert order("Shot", [{"field_name": "assets", "direction": "desc"}]) == [1, 2, 3]
    with pytest.raises(FilterError, match="direction"):
        order("Shot", [{"field_name": "code", "direction": "up"}])
    with pytest.raises(FilterError, match="doesn't exist"):
        order("Shot", [{"field_name": "nope"}])
    with pytest.raises(FilterError):
        order("Shot", [{"direction": "asc"}])


# ------------------------------------------------------------------------------ paging


@pytest.mark.parametrize(
    ("limit", "page", "expected"),
    [
        (0, 0, list(range(1200))),
        (5, 0, list(range(5))),
        (5, 3, list(range(10, 15))),
        (700, 0, list(range(700))),
        (0, 2, list(range(500, 1000))),
        (700, 2, list(range(500, 1000))),  # the client ignores such a limit with a page
        (0, 4, []),
    ],
)
def test_page_rows_is_what_find_returns(limit: int, page: int, expected: List[int]) -> None:
    rows = [{"type": "Shot", "id": i} for i in range(1200)]
    assert [r["id"] for r in page_rows(rows, limit, page)] == expected


def test_wire_pages_and_bad_paging() -> None:
    rows = [{"type": "Shot", "id": i} for i in range(1100)]
    first, more = wire_page(rows, 500, 1)
    last, done = wire_page(rows, 500, 3)
    assert len(first) == 500 and more and len(last) == 100 and not done
    assert len(wire_page(rows, 5000, 1)[0]) == 500  # a site caps pages at 500
    for bad in ({"limit": -1}, {"page": "2"}, {"per_page": 0}):
        with pytest.raises(FilterError):
            page_rows(rows, **bad)


# ------------------------------------------------------------------------------ presets


def test_presets_keep_the_latest_per_entity() -> None:
    shot_a, shot_b = _link("Shot", 1, "a"), _link("Shot", 2, "b")
    versions = [
        {"type": "Version", "id": 1, "entity": shot_a, "created_at": NOW, "sg_task": None},
        {"type": "Version", "id": 2, "entity": shot_a, "created_at": NOW - dt.timedelta(1)},
        {"type": "Version", "id": 3, "entity": shot_b, "created_at": NOW},
        {"type": "Version", "id": 4, "entity": shot_b, "created_at": NOW},  # a tie: higher id
        {"type": "Version", "id": 5, "entity": None, "created_at": None},
    ]
    latest = [{"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}]
    kept = apply_filter_presets("Version", versions, latest, SOURCE)
    assert [r["id"] for r in kept] == [1, 4, 5]
    published = [
        {"type": "PublishedFile", "id": 1, "entity": shot_a, "version_number": 3},
        {"type": "PublishedFile", "id": 2, "entity": shot_a, "version_number": 12},
        {"type": "PublishedFile", "id": 3, "entity": shot_a, "version_number": None},
    ]
    by_number = [{"preset_name": "LATEST", "latest_by": "VERSION_NUMBER"}]
    assert [
        r["id"] for r in apply_filter_presets("PublishedFile", published, by_number, SOURCE)
    ] == [2]
    assert apply_filter_presets("Version", versions, None, SOURCE) == versions
    for bad in (3, [3], [{}], [{"preset_name": "NEWEST"}], [{"preset_name": "LATEST"}]):
        with pytest.raises(FilterError):
            apply_filter_presets("Version", versions, bad, SOURCE)
    with pytest.raises(FilterError, match="CUT_SHOT_VERSIONS"):
        apply_filter_presets("Version", versions, [{"preset_name": "CUT_SHOT_VERSIONS"}], SOURCE)


# ------------------------------------------------------------------------------ speed


def test_compiled_filters_are_fast() -> None:
    rows = [
        {
            "type": "Shot",
            "id": i,
            "code": f"shot_{i:05d}",
            "sg_status_list": ("ip", "fin", "wtg")[i % 3],
            "sg_cut_in": i % 100,
            "sg_sequence": SQ1 if i % 2 else SQ2,
            "assets": [A1, A2] if i % 5 else [],
            "created_at": NOW - dt.timedelta(minutes=i),
        }
        for i in range(20000)
    ]
    filters = [
        ["sg_status_list", "in", ["ip", "wtg"]],
        {
            "filter_operator": "any",
            "filters": [["code", "contains", "7"], ["sg_cut_in", "between", [10, 20]]],
        },
        ["sg_sequence.Sequence.code", "is", "SQ010"],
        ["assets", "is_not", A3],
        ["created_at", "in_last", 30, "DAY"],
    ]
    start = time.perf_counter()
    predicate = compile_filters("Shot", filters, SOURCE)
    found = [r for r in rows if predicate(r)]
    ordered = sort_rows("Shot", found, [{"field_name": "code", "direction": "desc"}], SOURCE)
    elapsed = time.perf_counter() - start
    assert found and ordered[0]["code"] > ordered[-1]["code"]
    assert elapsed < 1.5, f"{elapsed:.2f} s for 20,000 rows"


# ------------------------------------------------------------------------------ vs the server

TYPES = ("Shot", "Task", "Sequence", "Asset", "Step", "Version", "HumanUser", "Project")
PROPERTY_FIELDS: Dict[str, List[str]] = {
    "Shot": [
        "code",
        "description",
        "sg_status_list",
        "sg_cut_in",
        "sg_frame_rate",
        "sg_vfx",
        "sg_shot_type",
        "sg_sequence",
        "assets",
        "created_at",
        "sg_sequence.Sequence.code",
        "assets.Asset.sg_asset_type",
    ],
    "Task": [
        "content",
        "sg_status_list",
        "due_date",
        "start_date",
        "duration",
        "milestone",
        "step",
        "entity",
        "task_assignees",
        "created_at",
        "entity.Shot.code",
        "step.Step.list_order",
        "entity.Shot.sg_sequence.Sequence.code",
    ],
}
RELATIONS: Dict[str, List[str]] = {
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
    "number": ["is", "is_not", "less_than", "greater_than", "between", "not_between", "in"],
    "float": ["is", "is_not", "less_than", "greater_than", "between", "not_in"],
    "duration": ["is", "is_not", "less_than", "greater_than", "between"],
    "checkbox": ["is", "is_not"],
    "date": ["is", "is_not", "less_than", "greater_than", "between", "in", "in_calendar_month"],
    "date_time": ["is", "is_not", "less_than", "greater_than", "between", "in_last"],
    "entity": ["is", "is_not", "in", "not_in", "type_is", "type_is_not", "name_contains"],
    "multi_entity": ["is", "is_not", "in", "type_is", "name_contains", "name_not_contains"],
}


@pytest.fixture(scope="module")
def site() -> Iterator[Tuple[ShotgridServer, Any, Dict[str, Dict[int, Dict[str, Any]]]]]:
    """A small site and the plain rows a client reads from it (an offline snapshot)."""
    with ShotgridServer(scale=0.1, seed=3) as server:
        sg = server.client()
        schema = sg.schema_read()
        tables = {
            t: {r["id"]: r for r in sg.find(t, [], [f for f in schema[t] if f != "image"])}
            for t in TYPES
        }
        yield server, schema, tables


def _values(
    tables: Mapping[str, Mapping[int, Mapping[str, Any]]],
    source: SchemaSource,
    entity_type: str,
    path: str,
) -> List[Any]:
    getter = sgf.compile_path(entity_type, path, source)[1]
    seen: List[Any] = []
    for row in tables[entity_type].values():
        for value in getter(row):
            items = value if isinstance(value, list) else [value]
            for item in items:
                if item is not None and item not in seen:
                    seen.append(item)
    return seen


@st.composite
def simple_filters(draw: Any, site: Any) -> Tuple[str, List[Any], str, List[Dict[str, str]]]:
    server, schema, tables = site
    source = SchemaSource(schema, tables)
    entity_type = draw(st.sampled_from(sorted(PROPERTY_FIELDS)))
    conditions = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PROPERTY_FIELDS[entity_type]))
        kind = sgf.path_type(entity_type, path, source)
        assert kind is not None
        relation = draw(st.sampled_from(RELATIONS[kind]))
        seen = _values(tables, source, entity_type, path) or [None]
        value = draw(st.sampled_from(seen))
        if kind in ("entity", "multi_entity"):
            if relation in ("type_is", "type_is_not"):
                args: List[Any] = [value["type"] if value else "Shot"]
            elif relation.startswith("name_"):
                name = str((value or {}).get("name") or "x")
                args = [name[: draw(st.integers(1, max(1, len(name))))].upper()]
            elif relation in ("in", "not_in"):
                args = [[value, draw(st.sampled_from(seen))]]
            else:
                args = [draw(st.sampled_from([value, None]))]
        elif relation in ("between", "not_between"):
            other = draw(st.sampled_from(seen))
            args = [[value, other]] if value is not None and other is not None else [[1, 2]]
        elif relation in ("in", "not_in"):
            args = [[value, draw(st.sampled_from(seen))]]
        elif relation in ("contains", "not_contains", "starts_with", "ends_with"):
            text = str(value or "a")
            cut = draw(st.integers(0, len(text)))
            part = text[cut : cut + 3] if relation != "starts_with" else text[:cut]
            args = [draw(st.sampled_from([part, part.upper()])) or text]
        elif relation == "in_last":
            args = [draw(st.integers(1, 900)), draw(st.sampled_from(["DAY", "WEEK", "MONTH"]))]
        elif relation == "in_calendar_month":
            args = [draw(st.integers(-40, 2))]
        elif kind == "checkbox":
            args = [draw(st.booleans())]
        elif kind in ("text", "list", "status_list") and isinstance(value, str):
            args = [draw(st.sampled_from([value, value.upper(), None]))]
        else:
            args = [draw(st.sampled_from([value, None])) if relation in ("is", "is_not") else value]
        conditions.append([path, relation, *args])
    operator = draw(st.sampled_from(["all", "any"]))
    sort_field = draw(st.sampled_from(PROPERTY_FIELDS[entity_type]))
    direction = draw(st.sampled_from(["asc", "desc"]))
    return entity_type, conditions, operator, [{"field_name": sort_field, "direction": direction}]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_plain_rows_agree_with_the_server(site: Any, data: Any) -> None:
    """The same filters answer the same rows on a client snapshot as on the site."""
    server, schema, tables = site
    entity_type, filters, operator, sort = data.draw(simple_filters(site))
    sg = server.client(connect=False)
    source = SchemaSource(schema, tables)
    remote = sg.find(
        entity_type, filters, ["id"], order=copy.deepcopy(sort), filter_operator=operator
    )
    local = filter_rows(entity_type, tables[entity_type].values(), filters, source, operator)
    local = sort_rows(entity_type, local, sort, source)
    assert [r["id"] for r in local] == [r["id"] for r in remote], (filters, operator, sort)
