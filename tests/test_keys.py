"""Tests of the key makers: canonical, collision-free and stable across processes."""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import json
import os
import random
import subprocess
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgcache_layers.keys import KeyMaker, ObjectKeyMaker, StringKeyMaker

MAKER = ObjectKeyMaker()


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


class Entity:
    """An object keyed through __cache_key__."""

    def __init__(self, entity_type: str, entity_id: int) -> None:
        self.entity_type = entity_type
        self.entity_id = entity_id

    def __cache_key__(self) -> Any:
        return (self.entity_type, self.entity_id)

    def method(self, x: int) -> int:
        return x


def module_function() -> None:
    """A function keyed by name."""


# -- fixed expectations ----------------------------------------------------------


def test_golden_keys_do_not_change() -> None:
    """The encoding is a contract: keys on disk and in Redis outlive a release."""
    assert MAKER.key("Shot", 1) == "s4:Shoti1;"
    assert MAKER.key([1, "a"], (None, True, False)) == "l2:i1;s1:at3:NTF"
    assert MAKER.key({"b": 2, "a": 1.5}) == "d2:s1:af0x1.8000000000000p+0;s1:bi2;"
    assert MAKER.key(b"\x00\xff", {"x"}) == "b2:00ffS1:s1:x"
    assert MAKER.key(datetime.date(2024, 1, 2)) == "A2024-01-02;"


def test_distinct_atoms_give_distinct_keys() -> None:
    items = [1, 1.0, True, "1", (1,), [1], b"1", None, {1}, frozenset([1]), {1: 1}, 0, False, ""]
    keys = [MAKER.key(item) for item in items]
    assert len(set(keys)) == len(items)


def test_items_are_not_concatenated_ambiguously() -> None:
    assert MAKER.key("ab", "c") != MAKER.key("a", "bc")
    assert MAKER.key(["a", "b"]) != MAKER.key(["a"], ["b"])
    assert MAKER.key(("a",), "b") != MAKER.key(("a", "b"))
    assert MAKER.key({"a": "b"}) != MAKER.key({"ab": ""})


def test_dict_and_set_order_does_not_matter() -> None:
    assert MAKER.key({"a": 1, "b": [1, 2]}) == MAKER.key({"b": [1, 2], "a": 1})
    assert MAKER.key({3, 1, 2}) == MAKER.key({2, 3, 1})
    assert MAKER.key({1: "x", "1": "y"}) == MAKER.key({"1": "y", 1: "x"})
    assert MAKER.key([1, 2]) != MAKER.key([2, 1])


def test_datetimes() -> None:
    naive = datetime.datetime(2024, 5, 1, 12, 30)
    utc = naive.replace(tzinfo=datetime.timezone.utc)
    plus_two = naive.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    keys = {MAKER.key(value) for value in (naive, utc, plus_two, naive.date(), naive.time())}
    assert len(keys) == 5
    assert "+00:00" in MAKER.key(utc)
    assert MAKER.key(datetime.timedelta(days=1)) != MAKER.key(datetime.timedelta(seconds=86399))


def test_other_supported_types() -> None:
    assert MAKER.key(decimal.Decimal("1.10")) != MAKER.key(decimal.Decimal("1.1"))
    value = uuid.UUID(int=5)
    assert MAKER.key(value) == MAKER.key(uuid.UUID(int=5))
    assert MAKER.key(Colour.RED) != MAKER.key(Colour.BLUE)
    assert "Colour.RED" in MAKER.key(Colour.RED)
    assert MAKER.key(bytearray(b"ab")) == MAKER.key(b"ab")


def test_functions_and_classes_by_module_and_qualified_name() -> None:
    assert MAKER.key(module_function) == MAKER.key(module_function)
    assert "module_function" in MAKER.key(module_function)
    assert MAKER.key(json.dumps) != MAKER.key(json.loads)
    assert MAKER.key(Entity) != MAKER.key(Colour)
    assert "json:dumps" in MAKER.key(json.dumps)
    assert "builtins:len" in MAKER.key(len)
    first = lambda: 1  # noqa: E731
    second = lambda: 2  # noqa: E731
    assert MAKER.key(first) != MAKER.key(second)


def test_objects_with_cache_key_and_bound_methods() -> None:
    assert MAKER.key(Entity("Shot", 1)) == MAKER.key(Entity("Shot", 1))
    assert MAKER.key(Entity("Shot", 1)) != MAKER.key(Entity("Shot", 2))
    assert MAKER.key(Entity("Shot", 1)) != MAKER.key(("Shot", 1))
    assert MAKER.key(Entity("Shot", 1).method) != MAKER.key(Entity("Shot", 2).method)


@pytest.mark.parametrize("item", [object(), 1j, range(3), iter([]), Ellipsis])
def test_unsupported_objects_raise_type_error_naming_the_type(item: Any) -> None:
    with pytest.raises(TypeError, match=type(item).__qualname__):
        MAKER.key(item)
    with pytest.raises(TypeError):
        MAKER.key([{"nested": item}])


def test_long_keys_can_be_hashed() -> None:
    maker = ObjectKeyMaker(max_length=64)
    short = maker.key("Shot", 1)
    assert short == "s4:Shoti1;"
    long_key = maker.key("x" * 100)
    assert long_key.startswith("sha256:") and len(long_key) == 7 + 64
    assert long_key == maker.key("x" * 100)
    assert long_key != maker.key("x" * 101)


def test_string_key_maker() -> None:
    maker = StringKeyMaker()
    assert maker.key("a", 1, None) == "a\x1f1\x1fNone"
    assert StringKeyMaker(separator=":").key("a", "b") == "a:b"
    assert isinstance(maker, KeyMaker)


def test_key_is_str() -> None:
    assert type(MAKER.key("Shot", [["id", "is", 1]])) is str
    assert type(MAKER._key(1)) is str


# -- properties ------------------------------------------------------------------

ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
)
HASHABLE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.binary(max_size=5)),
    lambda children: st.tuples(children, children) | st.frozensets(children, max_size=3),
    max_leaves=6,
)
STRUCTURES = st.recursive(
    ATOMS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(HASHABLE, children, max_size=4)
        | st.sets(HASHABLE, max_size=4)
    ),
    max_leaves=12,
)


def same(left: Any, right: Any) -> bool:
    """Structural identity: same types all the way down (1 is not 1.0 or True)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return bool(left.hex() == right.hex())
    if isinstance(left, datetime.datetime):
        return bool(left == right and left.isoformat() == right.isoformat())
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict):
        return len(left) == len(right) and all(
            any(same(key, other) and same(value, right[other]) for other in right)
            for key, value in left.items()
        )
    if isinstance(left, (set, frozenset)):
        return len(left) == len(right) and all(any(same(a, b) for b in right) for a in left)
    return bool(left == right)


def shuffled(value: Any, rng: random.Random) -> Any:
    """Rebuild *value* with dict and set insertion orders shuffled."""
    if isinstance(value, dict):
        items = [(shuffled(k, rng), shuffled(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    if isinstance(value, tuple):
        return tuple(shuffled(item, rng) for item in value)
    if isinstance(value, (set, frozenset)):
        items = [shuffled(item, rng) for item in value]
        rng.shuffle(items)
        return type(value)(items)
    return value


@settings(max_examples=100, deadline=None)
@given(STRUCTURES, st.randoms(use_true_random=False))
def test_equal_structures_give_equal_keys(value: Any, rng: random.Random) -> None:
    assert MAKER.key(value) == MAKER.key(copy.deepcopy(value))
    assert MAKER.key(value) == MAKER.key(shuffled(value, rng))


@settings(max_examples=300, deadline=None)
@given(ATOMS, ATOMS)
def test_different_atoms_give_different_keys(left: Any, right: Any) -> None:
    if not same(left, right):
        assert MAKER.key(left) != MAKER.key(right)


@settings(max_examples=200, deadline=None)
@given(STRUCTURES, STRUCTURES)
def test_equal_keys_mean_the_same_structure(left: Any, right: Any) -> None:
    assert (MAKER.key(left) == MAKER.key(right)) == same(left, right)


# -- stability across processes ------------------------------------------------------

SAMPLES = """
import datetime, decimal, json, os.path, uuid
samples = [
    ("Shot", [["project", "is", {"type": "Project", "id": 1}],
              ["sg_status_list", "in", ["ip", "rev"]]],
     ["code", "sg_status_list", "sg_sequence"],
     [{"field_name": "code", "direction": "asc"}]),
    {"set of str": {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}},
    frozenset({"x", "y", ("t", 1), b"raw"}),
    {"b": 1.1, "a": -0.0, "c": float("inf"), "d": 10 ** 30, "e": 0.1 + 0.2},
    datetime.datetime(2024, 2, 29, 23, 59, 59, 999999,
                      tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
    datetime.date(1999, 12, 31),
    decimal.Decimal("3.14159"), uuid.UUID(int=2 ** 100),
    json.dumps, os.path.join, dict, "ünïcødé \\u2603 \\U0001f3ac", b"\\x00\\x01",
]
"""


def _keys_in_subprocess(seed: str) -> list[str]:
    code = SAMPLES + (
        "import json\nfrom sgcache_layers.keys import ObjectKeyMaker\n"
        "print(json.dumps([ObjectKeyMaker().key(s) for s in samples]))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED=seed)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    keys: list[str] = json.loads(result.stdout)
    return keys


def test_keys_are_stable_in_fresh_processes() -> None:
    namespace: dict[str, Any] = {}
    exec(SAMPLES, namespace)
    here = [MAKER.key(sample) for sample in namespace["samples"]]
    assert _keys_in_subprocess("1") == here
    assert _keys_in_subprocess("987654") == here
