"""Tests of Memoiser and the memoise decorators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers.cache import LayeredCache, MemoryCache, SerialisedCache
from sgcache_layers.file import FileCache
from sgcache_layers.keys import ObjectKeyMaker
from sgcache_layers.memoise import Memoiser, memoise, memoise_decorator

calls: list[tuple[Any, ...]] = []


def find(entity_type: str, filters: list[Any], fields: Any = None, limit: int = 0) -> list[Any]:
    """Stand-in for an expensive query."""
    calls.append((entity_type, filters, fields, limit))
    return [{"type": entity_type, "id": len(calls), "fields": fields}]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def test_positional_keyword_and_default_forms_share_one_entry() -> None:
    memoiser = Memoiser()
    first = memoiser.call(find, ("Shot", [["id", "is", 1]]))
    assert memoiser.call(find, ("Shot", [["id", "is", 1]], None)) == first
    assert memoiser.call(find, ("Shot",), {"filters": [["id", "is", 1]], "limit": 0}) == first
    keywords = {"limit": 0, "entity_type": "Shot", "filters": [["id", "is", 1]]}
    assert memoiser.call(find, (), keywords) == first
    assert len(calls) == 1
    memoiser.call(find, ("Shot", [["id", "is", 1]]), {"limit": 5})
    memoiser.call(find, ("Asset", [["id", "is", 1]]))
    assert len(calls) == 3


def test_bad_arguments_raise_type_error_like_the_function() -> None:
    with pytest.raises(TypeError):
        Memoiser().call(find, ("Shot",), {"nonsense": 1})
    assert calls == []


def test_returns_deep_copies_by_default() -> None:
    memoiser = Memoiser()
    result = memoiser.call(find, ("Shot", []))
    result[0]["type"] = "mutated"
    assert memoiser.call(find, ("Shot", []))[0]["type"] == "Shot"
    assert len(calls) == 1


def test_return_copies_false_hands_out_the_cached_object() -> None:
    memoiser = Memoiser(return_copies=False)
    assert memoiser.call(find, ("Shot", [])) is memoiser.call(find, ("Shot", []))


def test_different_functions_do_not_collide() -> None:
    def double(x: int) -> int:
        return x * 2

    def triple(x: int) -> int:
        return x * 3

    memoiser = Memoiser()
    assert memoiser.call(double, (2,)) == 4
    assert memoiser.call(triple, (2,)) == 6


def test_varargs_and_builtins() -> None:
    def join(*parts: str, **options: str) -> str:
        return options.get("sep", "-").join(parts)

    memoiser = Memoiser()
    assert memoiser.call(join, ("a", "b")) == "a-b"
    assert memoiser.call(join, ("a", "b"), {"sep": "+"}) == "a+b"
    assert memoiser.call(max, (3, 9)) == 9  # no signature available for some builtins
    assert memoiser.call(max, (3, 9)) == 9


def test_decorator_keeps_the_function_name() -> None:
    memoiser = Memoiser()

    @memoise_decorator(memoiser)
    def square(x: int) -> int:
        """Square."""
        calls.append((x,))
        return x * x

    assert square.__name__ == "square"
    assert square.__doc__ == "Square."
    assert square(3) == 9
    assert square(x=3) == 9
    assert calls == [(3,)]


def test_module_level_memoise() -> None:
    @memoise
    def cube(x: int) -> int:
        calls.append((x,))
        return x**3

    assert cube(2) == 8
    assert cube(2) == 8
    assert len(calls) == 1


class Project:
    def __init__(self, project_id: int) -> None:
        self.project_id = project_id
        self.count = 0

    def __cache_key__(self) -> Any:
        return ("Project", self.project_id)

    def shots(self, status: str = "ip") -> list[str]:
        self.count += 1
        return [f"{self.project_id}:{status}"]


def test_bound_methods_are_keyed_by_their_object() -> None:
    memoiser = Memoiser()
    one, two = Project(1), Project(2)
    assert memoiser.call(one.shots) == ["1:ip"]
    assert memoiser.call(one.shots, (), {"status": "ip"}) == ["1:ip"]
    assert memoiser.call(two.shots) == ["2:ip"]
    assert (one.count, two.count) == (1, 1)


def test_unkeyable_arguments_raise_type_error() -> None:
    class Opaque:
        pass

    def use(thing: Any) -> int:
        return 1

    with pytest.raises(TypeError, match="Opaque"):
        Memoiser().call(use, (Opaque(),))


def test_persistent_memoisation_through_a_file_cache(tmp_path: Path) -> None:
    def layered() -> LayeredCache:
        disk = SerialisedCache(FileCache(tmp_path / "memo"), json.dumps, json.loads)
        return LayeredCache([MemoryCache(), disk])

    first = Memoiser(layered(), ObjectKeyMaker())
    assert first.call(find, ("Shot", [["id", "is", 7]])) == [
        {"type": "Shot", "id": 1, "fields": None}
    ]
    second = Memoiser(layered(), ObjectKeyMaker())
    assert second.call(find, ("Shot", [["id", "is", 7]]))[0]["id"] == 1
    assert len(calls) == 1
