"""The JSON codec and what the session does with damaged records (issue 3, point 2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgcache_layers import FileCache, SerialisedCache, Session, records
from sgcache_layers.codec import TAG, CodecError, dumps, loads
from sgcache_layers.entity import Entity


class _Config:
    scheme = "https"
    server = "site.example.com"
    script_name = "codec_tests"
    user_login = None
    sudo_as_login = None


class _NoServer:
    """A stand-in client: these tests must never reach ShotGrid."""

    config = _Config()

    def find(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no request expected")


offsets = st.integers(min_value=-(23 * 3600 + 59 * 60), max_value=23 * 3600 + 59 * 60).map(
    lambda seconds: dt.timezone(dt.timedelta(seconds=seconds))
)
aware = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    offsets,
)
naive = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1))
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
link = st.fixed_dictionaries(
    {"type": st.sampled_from(["Shot", "Asset", "Task", "HumanUser"]), "id": st.integers(1, 10**9)},
    optional={"name": text},
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False),
    text,
    aware,
    naive,
    st.dates(),
)
values = st.recursive(
    st.one_of(scalars, link),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(text, st.just(TAG)), children, max_size=5),
    ),
    max_leaves=20,
)
field_names = st.one_of(
    st.sampled_from(["code", "updated_at", "due_date", "entity", "entity.Shot.code", "tags"]),
    st.from_regex(r"\A[a-z_]{1,12}(\.[A-Z][a-z]{1,8}\.[a-z_]{1,8})?\Z"),
)
field_dicts = st.dictionaries(field_names, values, max_size=8)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types, and datetimes at the same instant *and* offset."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dt.datetime):
        return (
            a == b and a.utcoffset() == b.utcoffset() and (a.tzinfo is None) == (b.tzinfo is None)
        )
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


@pytest.fixture
def session() -> Session:
    return Session(_NoServer())


@settings(max_examples=200, deadline=None)
@given(values)
def test_any_shotgrid_value_round_trips(value: Any) -> None:
    assert same(loads(dumps(value, escape=True)), value)


@settings(max_examples=200, deadline=None)
@given(values)
def test_session_encode_round_trips(value: Any) -> None:
    session = Session(_NoServer())
    assert same(session.decode(session.encode(value)), value)


@settings(max_examples=200, deadline=None)
@given(field_dicts, st.floats(min_value=0, max_value=2e9))
def test_records_round_trip(fields: dict[str, Any], stamp: float) -> None:
    session = Session(_NoServer())
    record = entity_record(fields, stamp)
    assert same(session.decode(session.encode(record)), record)
    assert same(records.decode(records.encode(record)), record)


def entity_record(fields: dict[str, Any], stamp: float = 1.0) -> dict[str, Any]:
    return {
        "v": records.FORMAT_VERSION,
        "k": "e",
        "t": stamp,
        "g": {"Shot#5": "0000000000000001.abcdef01"},
        "T": "Shot",
        "i": 5,
        "f": fields,
    }


@pytest.mark.parametrize(
    "value",
    [
        {"dt": 0.04, "da": [1, 2], "f": "not a record"},
        {"v": 1, "k": "e", "t": "not a number", "f": {}, "dt": ["f"]},
        ["~sgcl-record", {"f": {}}, [], []],
        ["~" + records.PREFIX, {"f": {}}],
        ["~" + records.PREFIX + "x", {"v": records.FORMAT_VERSION}],
        ["~sgclv", 1],
        '["~' + records.PREFIX + '",{}]',
        [],
        {
            "v": 1,
            "k": "v",
            "t": 1.0,
            "g": {},
            "d": {TAG: "dt", "v": "x", "when": dt.date(2024, 1, 2)},
        },
    ],
)
def test_user_data_that_looks_like_a_frame_round_trips(session: Session, value: Any) -> None:
    assert same(session.decode(session.encode(value)), value)


def test_time_zones_keep_their_offset(session: Session) -> None:
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    when = dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=tz)
    back = session.decode(session.encode({"when": when, "day": dt.date(2024, 3, 1)}))
    assert back["when"] == when and back["when"].utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert type(back["day"]) is dt.date


def test_entities_encode_as_references_with_fields(session: Session) -> None:
    shot = session.merge(
        {
            "type": "Shot",
            "id": 7,
            "code": "SH7",
            "project": {"type": "Project", "id": 1, "name": "P"},
        }
    )
    text = session.encode({"shot": shot, "list": [shot]})
    other = Session(_NoServer())
    back = other.decode(text)
    assert isinstance(back["shot"], Entity) and back["shot"] is back["list"][0]
    assert back["shot"]["code"] == "SH7"
    assert back["shot"]["project"]["name"] == "P"


def test_bad_text_raises_codec_error_only() -> None:
    for bad in ["{", "", "\x00\x01", b"\xff\xfe"]:
        with pytest.raises(CodecError):
            loads(bad)
    with pytest.raises(TypeError, match="object"):
        dumps(object())


@pytest.mark.parametrize(
    "stored",
    [
        "not json at all {",
        '{"v": 99, "k": "e", "t": 1e12, "f": {"code": "from the future"}}',
        '{"v": 1, "k": "e", "t": "yesterday", "f": {}}',
        '{"v": 1, "k": "e", "t": 1e12, "f": ["not", "a", "dict"]}',
        '{"v": 1, "k": "zz", "t": 1e12}',
        '["~sgcl-record", {"v": 1, "k": "e", "t": 1e12, "f": {"d": "x"}}, ["d"], []]',
        '["~sgcl-record", {"v": 1}]',
        "[1, 2, 3]",
    ],
)
def test_damaged_or_unknown_records_are_misses(tmp_path: Path, stored: str) -> None:
    class Counting(_NoServer):
        calls = 0

        def find(self, entity_type: str, filters: Any, fields: Any = None, **kw: Any) -> Any:
            Counting.calls += 1
            return [{"type": "Shot", "id": 5, "code": "FROM_SERVER"}]

    path = str(tmp_path / "cache")

    def maker(s: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(path), encode=s.encode, decode=s.decode)

    session = Session(Counting(), cache=maker)
    FileCache(path).set(f"{session.namespace}|e|Shot|5", stored)
    shot = session.get("Shot", 5)
    assert shot is not None and shot["code"] == "FROM_SERVER"
    assert Counting.calls == 1


@pytest.mark.parametrize("accelerated", [True, False], ids=["orjson", "stdlib"])
@settings(max_examples=150, deadline=None)
@given(field_dicts, st.floats(min_value=0, max_value=2e9))
def test_both_parsers_give_the_same_records(
    accelerated: bool, fields: dict[str, Any], stamp: float
) -> None:
    """With or without the optional orjson accelerator, records decode the same."""
    from sgcache_layers import codec

    saved = codec._fast_loads
    if not accelerated:
        codec._fast_loads = None
    try:
        session = Session(_NoServer())
        record = entity_record(fields, stamp)
        assert same(session.decode(session.encode(record)), record)
    finally:
        codec._fast_loads = saved


def test_values_orjson_refuses_still_decode() -> None:
    from sgcache_layers import codec

    if codec._fast_loads is None:
        pytest.skip("orjson is not installed")
    session = Session(_NoServer())
    record = entity_record({"big": 2**80, "inf": float("inf"), "s": "\ud800"})
    back = session.decode(session.encode(record))
    assert back["f"]["big"] == 2**80 and back["f"]["inf"] == float("inf")
    assert back["f"]["s"] == "\ud800"
