"""The record format: exact round trips, and only ever ``CodecError`` or a miss for anything
else (issue 8, point 5; issue 9, point 2)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgcache_layers import Session, codec, records
from sgcache_layers.codec import CodecError

offsets = st.integers(min_value=-(23 * 60), max_value=23 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
odd_offsets = st.integers(min_value=-86399, max_value=86399).map(
    lambda seconds: dt.timezone(dt.timedelta(seconds=seconds))
)
naive = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1))
aware = st.builds(lambda n, tz: n.replace(tzinfo=tz), naive, st.one_of(offsets, odd_offsets))
texts = st.text(max_size=12)  # lone surrogates included
link = st.fixed_dictionaries(
    {"type": st.sampled_from(["Shot", "Asset", "HumanUser"]), "id": st.integers(1, 10**9)},
    optional={"name": st.one_of(st.none(), texts)},
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too
    st.floats(),  # NaN and infinities too
    texts,
    aware,
    naive,
    st.dates(),
)
values = st.recursive(
    st.one_of(scalars, link),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(texts, st.just(codec.TAG), st.just("~t")), inner, max_size=4),
    ),
    max_leaves=16,
)
names = st.one_of(
    st.sampled_from(["code", "updated_at", "due_date", "entity", "entity.Shot.code", "tags"]),
    st.from_regex(r"\A[a-z_]{1,10}\Z"),
)
fields = st.dictionaries(names.filter(lambda n: n not in ("type", "id")), values, max_size=6)
tokens = st.dictionaries(st.sampled_from(["Shot", "Task", "Shot#3"]), st.text(max_size=6))
stamps = st.floats(min_value=0, max_value=4e9)


@st.composite
def a_record(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["q", "e", "x", "v"]))
    record: dict[str, Any] = {"v": records.FORMAT_VERSION, "k": kind, "t": draw(stamps)}
    # Every stored answer depends on some generation: an entity or a query on its own
    # type's (or one of its buckets'); anything else is not a record (see the next test).
    record["g"] = draw(tokens)
    if kind == "v":
        record["g"].setdefault("Task", draw(st.text(max_size=6)))
        record["d"] = draw(values)
        return record
    record["T"] = "Shot"
    if "Shot" not in record["g"] and "Shot#3" not in record["g"]:
        record["g"][draw(st.sampled_from(["Shot", "Shot#3"]))] = draw(st.text(max_size=6))
    if kind == "q":
        rows = draw(st.lists(fields, max_size=5))
        record["r"] = [dict(row, type="Shot", id=i + 1) for i, row in enumerate(rows)]
        if draw(st.booleans()):
            record["c"] = sorted({k for r in record["r"] for k in r})
        return record
    record["i"] = draw(st.integers(1, 10**6))
    if kind == "e":
        record["f"] = draw(fields)
    return record


def same(a: Any, b: Any) -> bool:
    """Equal with the same types; datetimes at the same instant and offset; NaN is NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])
@settings(max_examples=300, deadline=None)
@given(a_record())
def test_every_record_round_trips_exactly(fast: bool, record: dict[str, Any]) -> None:
    saved = codec._fast_loads, codec._fast_dumps
    if not fast:
        codec._fast_loads = codec._fast_dumps = None
    try:
        assert records.valid(record) is record
        text = records.encode(record)
        assert isinstance(text, str)
        back = records.decode(text)
        assert same(back, record)
        assert records.valid(back) is not None
    finally:
        codec._fast_loads, codec._fast_dumps = saved


def test_plain_records_take_the_fast_frame() -> None:
    row = {"type": "Shot", "id": 1, "code": "A", "when": dt.datetime(2024, 1, 1, 12)}
    record = {"v": records.FORMAT_VERSION, "k": "q", "t": 1.0, "g": {}, "T": "Shot", "r": [row]}
    assert records.encode(record).startswith(f'["~{records.PREFIX}",')
    awkward = dict(record, r=[dict(row, big=2**70)])
    assert records.encode(awkward).startswith(f'["~{records.PREFIX}x",')


junk = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60),
    st.builds(lambda t: f'["~{records.PREFIX}",' + t, st.text(max_size=60)),
    st.builds(lambda t: f'["~{records.PREFIX}x",' + t, st.text(max_size=60)),
)


@settings(max_examples=500, deadline=None)
@given(junk)
def test_anything_else_is_a_codec_error_or_not_a_record(text: Any) -> None:
    try:
        decoded = records.decode(text)
    except CodecError:
        return
    assert isinstance(decoded, dict)
    records.valid(decoded)  # never raises: a malformed record is just not valid


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        json_like,
        st.fixed_dictionaries(
            {"v": st.just(2), "k": st.sampled_from(["q", "e", "x", "v"])},
            optional={
                "t": json_like,
                "g": json_like,
                "T": json_like,
                "i": json_like,
                "r": json_like,
                "f": json_like,
                "d": json_like,
                "c": json_like,
            },
        ),
    )
)
def test_valid_never_raises(value: Any) -> None:
    found = records.valid(value)
    assert found is None or found is value


extra_values = st.recursive(
    st.one_of(
        scalars,
        link,
        st.binary(max_size=6),
        st.frozensets(st.integers(), max_size=3),
        st.sets(st.text(max_size=3), max_size=3),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.one_of(texts, st.integers(), st.booleans()), inner, max_size=3),
    ),
    max_leaves=12,
)


class _Config:
    scheme = "https"
    server = "site.example.com"
    script_name = "records_tests"
    user_login = None
    sudo_as_login = None


class _NoServer:
    config = _Config()


@settings(max_examples=300, deadline=None)
@given(extra_values)
def test_session_values_round_trip_exactly_or_refuse_clearly(value: Any) -> None:
    session = Session(_NoServer())
    try:
        text = session.encode(value)
    except (TypeError, CodecError):
        return
    back = session.decode(text)
    assert same(back, value) or _sets_equal(back, value)


def _sets_equal(a: Any, b: Any) -> bool:
    if isinstance(a, (set, frozenset)) and type(a) is type(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) or _sets_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        return len(a) == len(b) and all(same(x, y) or _sets_equal(x, y) for x, y in zip(a, b))
    return False


ZONE_CHECK = """
import datetime as dt, os, random, sys, time
os.environ["TZ"] = sys.argv[1]
time.tzset()
from shotgun_api3.shotgun import SG_TIMEZONE
from sgcache_layers.records import _Zone
zone = _Zone(SG_TIMEZONE.local)
rng = random.Random(7)
utc = dt.timezone.utc
bad = 0
def check(value):
    global bad
    expected = value.replace(tzinfo=SG_TIMEZONE.utc).astimezone(SG_TIMEZONE.local)
    got = zone.convert(value.astimezone(dt.timezone(dt.timedelta(hours=rng.randint(-9, 9)))))
    same = got == expected and got.tzinfo is expected.tzinfo
    bad += not (same and got.replace(tzinfo=None) == expected.replace(tzinfo=None))
for _ in range(3000):
    check(dt.datetime(1971, 1, 1, tzinfo=utc) + dt.timedelta(seconds=rng.randint(0, 2 * 10**9)))
for minute in range(0, 366 * 24 * 60, 13):  # a whole year, through both changes of clock
    check(dt.datetime(2023, 1, 1, tzinfo=utc) + dt.timedelta(minutes=minute))
print(bad)
"""


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "America/St_Johns",
    ],
)
def test_times_come_back_in_the_clients_own_zone_exactly(zone: str) -> None:
    """What the client gives (shotgun_api3's local zone, daylight saving and all)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", ZONE_CHECK, zone], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


@pytest.mark.parametrize(
    "record",
    [
        {"v": records.FORMAT_VERSION, "k": "q", "t": 1.0, "g": {}, "T": "Shot", "r": []},
        {"v": records.FORMAT_VERSION, "k": "q", "t": 1.0, "g": {"Task": "a"}, "T": "Shot", "r": []},
        {
            "v": records.FORMAT_VERSION,
            "k": "e",
            "t": 1.0,
            "g": {"Shot#": "a"},
            "T": "Sh",
            "i": 1,
            "f": {},
        },
        {"v": records.FORMAT_VERSION, "k": "x", "t": 1.0, "g": {}, "T": "Shot", "i": 1},
        {"v": records.FORMAT_VERSION, "k": "v", "t": 1.0, "g": {}, "d": 3},
    ],
    ids=["query-no-gens", "query-other-type", "entity-other-type", "retired-no-gens", "value"],
)
def test_a_record_that_depends_on_nothing_of_its_own_is_a_miss(record: dict[str, Any]) -> None:
    """A record checked against no generation of its own would be fresh whatever changed
    (a planted ``{"g": {}}`` answered every find with its rows): it is not a record."""
    assert records.valid(record) is None
