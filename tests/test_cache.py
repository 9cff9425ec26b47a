"""Tests of the cache interface, the memory caches and the wrappers."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from sgcache_layers.cache import (
    Cache,
    CacheBackendError,
    LayeredCache,
    LRUMemoryCache,
    MemoryCache,
    ProxyCache,
    SerialisedCache,
    estimate_size,
)
from sgcache_layers.file import FileCache
from sgcache_layers.testing.conformance import CacheConformance, SelectiveProxy


class MinimalCache(Cache):
    """A user cache implementing only the three abstract methods."""

    def __init__(self) -> None:
        self.store: dict[Any, Any] = {}

    def get(self, key: str) -> Any:
        return self.store[key]

    def set(self, key: str, value: Any) -> None:
        self.store[key] = value

    def remove(self, key: str) -> None:
        del self.store[key]


class BrokenCache(MemoryCache):
    """A memory cache whose store can be switched to failing."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.error: Exception = CacheBackendError("disk on fire")

    def _check(self) -> None:
        if self.broken:
            raise self.error

    def get(self, key: str) -> Any:
        self._check()
        return super().get(key)

    def set(self, key: str, value: Any) -> None:
        self._check()
        super().set(key, value)

    def remove(self, key: str) -> None:
        self._check()
        super().remove(key)

    def keys(self) -> list[str]:
        self._check()
        return super().keys()

    def clear(self, pattern: Any = None) -> None:
        self._check()
        super().clear(pattern)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        self._check()
        return super().get_many(keys)

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        self._check()
        super().set_many(mapping)


# -- conformance ---------------------------------------------------------------


class TestMemoryCacheConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return MemoryCache()


class TestBoundedMemoryCacheConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return MemoryCache(max_entries=1000)


class TestByteBoundedMemoryCacheConformance(CacheConformance):
    """Bounded by bytes only: roomy enough for the suite's 1 MiB values."""

    def make_cache(self) -> Cache:
        return MemoryCache(max_bytes=16 * 2**20)


class TestDoublyBoundedMemoryCacheConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return MemoryCache(max_entries=1000, max_bytes=16 * 2**20, sizeof=estimate_size)


class TestSerialisedJsonConformance(CacheConformance):
    supports_bytes = False

    def make_cache(self) -> Cache:
        return SerialisedCache(MemoryCache(), json.dumps, json.loads)


class TestProxyCacheConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return ProxyCache(MemoryCache())


def _not_dropped(key: str) -> bool:
    return not key.startswith("drop:")


class TestSelectiveProxyConformance(CacheConformance):
    """ftrack's selective-cache pattern over memory: the whole contract still holds."""

    def make_cache(self) -> Cache:
        return SelectiveProxy(MemoryCache(), _not_dropped)


class TestLayeredSelectiveProxyConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return LayeredCache(
            [
                SelectiveProxy(MemoryCache(max_entries=1000), _not_dropped),
                SelectiveProxy(FileCache(self.tmp_path / "files"), _not_dropped),
            ]
        )


class TestLayeredMemoryFileConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return LayeredCache([MemoryCache(), FileCache(self.tmp_path / "files")])


class TestMinimalUserCacheConformance(CacheConformance):
    enforces_str_keys = False

    def make_cache(self) -> Cache:
        return MinimalCache()


class TestLayeredMinimalUserCacheConformance(CacheConformance):
    def make_cache(self) -> Cache:
        return LayeredCache([MemoryCache(max_entries=1000), MinimalCache()])


class TestLayeredOnlyMinimalConformance(CacheConformance):
    enforces_str_keys = False

    def make_cache(self) -> Cache:
        return LayeredCache([MinimalCache(), MinimalCache()])


# -- Cache defaults ------------------------------------------------------------


def test_minimal_cache_defaults() -> None:
    cache = MinimalCache()
    assert not cache.lists_keys
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    with pytest.raises(NotImplementedError):
        cache.keys()
    with pytest.raises(NotImplementedError):
        cache.values()
    with cache:
        pass


def test_abstract_methods_are_required() -> None:
    class Incomplete(Cache):
        def get(self, key: str) -> Any:
            raise KeyError(key)

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]


def test_cache_backend_error_is_an_exception() -> None:
    assert issubclass(CacheBackendError, Exception)
    assert not issubclass(CacheBackendError, KeyError)


# -- MemoryCache ---------------------------------------------------------------


def test_memory_cache_stores_any_value_without_copying() -> None:
    cache = MemoryCache()
    value = {"type": "Shot", "id": 1}
    cache.set("shot", value)
    assert cache.get("shot") is value
    assert len(cache) == 1


def test_memory_cache_str_subclass_key_is_stored_as_str() -> None:
    class Name(str):
        pass

    cache = MemoryCache()
    cache.set(Name("a"), 1)
    assert type(cache.keys()[0]) is str
    assert cache.get("a") == 1


def test_memory_cache_subclass_overriding_get_is_used() -> None:
    class Counting(MemoryCache):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def get(self, key: str) -> Any:
            self.count += 1
            return super().get(key)

    cache = Counting()
    cache.set("a", 1)
    assert cache.get("a") == 1
    assert LayeredCache([cache]).get("a") == 1
    assert cache.count == 2
    with pytest.raises(KeyError):
        cache.get("b")
    with pytest.raises(TypeError, match="int"):
        cache.get(1)  # type: ignore[arg-type]


def test_memory_cache_copies_and_pickles_independently() -> None:
    import copy
    import pickle

    cache = MemoryCache()
    cache.set("a", [1])
    for clone in (copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        clone.set("b", 2)
        assert clone.get("b") == 2
        assert clone.get("a") == [1]
        assert sorted(clone.keys()) == ["a", "b"]
        with pytest.raises(TypeError):
            clone.get(1)  # type: ignore[arg-type]
    assert cache.keys() == ["a"]
    with pytest.raises(KeyError):
        cache.get("b")


def test_bounded_memory_cache_is_a_memory_cache() -> None:
    cache = MemoryCache(max_entries=2)
    assert isinstance(cache, MemoryCache)
    assert isinstance(cache, LRUMemoryCache)
    assert cache.max_entries == 2
    assert type(MemoryCache()) is MemoryCache


@pytest.mark.parametrize("bad", [0, -1])
def test_bounded_memory_cache_rejects_bad_bound(bad: int) -> None:
    with pytest.raises(ValueError):
        MemoryCache(max_entries=bad)


def test_lru_eviction_order() -> None:
    cache = MemoryCache(max_entries=3)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.set("c", 3)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.set("d", 4)  # evicts b, the least recently used
    assert cache.keys() == ["c", "a", "d"]
    with pytest.raises(KeyError):
        cache.get("b")
    cache.set("c", 33)  # overwriting counts as use
    cache.set("e", 5)  # evicts a
    assert cache.keys() == ["d", "c", "e"]
    assert cache.get_many(["d", "x"]) == {"d": 4}  # get_many counts as use
    cache.set("f", 6)  # evicts c
    assert cache.keys() == ["e", "d", "f"]
    cache.set_many({"g": 7, "h": 8})
    assert cache.keys() == ["f", "g", "h"]


def test_lru_is_safe_under_threads() -> None:
    cache = MemoryCache(max_entries=50)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for index in range(2000):
                key = f"k{(index + offset) % 80}"
                cache.set(key, index)
                try:
                    cache.get(key)
                except KeyError:
                    pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache.keys()) == 50


class Sized:
    """A value that reports its own size, as the default ``sizeof`` asks."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __sgcache_sizeof__(self) -> int:
        return self.size


def test_unbounded_memory_cache_keeps_its_dict_fast_path() -> None:
    cache = MemoryCache()
    assert type(cache) is MemoryCache
    assert isinstance(cache.get, types.BuiltinMethodType)  # the dict's own __getitem__


def test_estimate_size() -> None:
    assert estimate_size("héllo") == 5
    assert estimate_size(b"abc") == 3
    assert estimate_size(bytearray(7)) == 7
    assert estimate_size(Sized(1234)) == 1234
    assert estimate_size({"a": 1}) == sys.getsizeof({"a": 1})

    class Name(str):
        pass

    assert estimate_size(Name("abcd")) == 4


def test_max_bytes_drops_least_recently_used_first() -> None:
    cache = MemoryCache(max_bytes=10)
    assert isinstance(cache, LRUMemoryCache)
    assert cache.max_bytes == 10 and cache.max_entries is None
    cache.set("a", "12345")
    cache.set("b", "123")
    cache.set("c", "12")
    assert cache.current_bytes == 10
    assert cache.get("a") == "12345"  # a is now the most recently used
    cache.set("d", "1")  # 11 bytes: b, the least recently used, goes
    assert cache.keys() == ["c", "a", "d"]
    assert cache.current_bytes == 8
    cache.set("c", "1234")  # replacing re-measures: 10 bytes, nothing dropped
    assert cache.keys() == ["a", "d", "c"] and cache.current_bytes == 10
    assert cache.get_many(["a", "zz"]) == {"a": "12345"}
    cache.set_many({"e": "12", "f": "1"})  # 13 bytes: d then c go
    assert cache.keys() == ["a", "e", "f"] and cache.current_bytes == 8
    cache.remove("e")
    assert cache.current_bytes == 6
    cache.clear("^a$")
    assert cache.keys() == ["f"] and cache.current_bytes == 1
    cache.clear()
    assert cache.keys() == [] and cache.current_bytes == 0


def test_an_entry_larger_than_max_bytes_is_not_kept() -> None:
    cache = MemoryCache(max_bytes=10)
    cache.set("small", "1234")
    cache.set("huge", "x" * 11)
    with pytest.raises(KeyError):
        cache.get("huge")
    assert cache.keys() == ["small"]  # the others were not flushed to make room
    cache.set("small", "y" * 11)  # the oversized value replaces the old one: both gone
    with pytest.raises(KeyError):
        cache.get("small")
    assert cache.current_bytes == 0
    cache.set_many({"a": "1", "big": "z" * 50, "b": "2"})
    assert cache.keys() == ["a", "b"] and cache.current_bytes == 2
    cache.set("exact", "e" * 10)  # exactly the bound is kept, everything else goes
    assert cache.keys() == ["exact"] and cache.current_bytes == 10


def test_both_bounds_and_a_custom_sizeof() -> None:
    cache = MemoryCache(max_entries=3, max_bytes=100, sizeof=lambda value: value["size"])
    for index in range(4):
        cache.set(f"k{index}", {"size": 10})
    assert cache.keys() == ["k1", "k2", "k3"]  # the entry bound bites first
    cache.set("big", {"size": 90})  # 120 bytes in 3 entries: the byte bound bites
    assert cache.keys() == ["k3", "big"] and cache.current_bytes == 100
    assert "max_entries=3" in repr(cache) and "max_bytes=100" in repr(cache)


def test_sizeof_of_objects_defaults_to_their_own_report() -> None:
    cache = MemoryCache(max_bytes=1000)
    cache.set("a", Sized(600))
    cache.set("b", Sized(600))
    assert cache.keys() == ["b"]
    cache.set("c", Sized(5000))
    assert cache.keys() == ["b"]


@pytest.mark.parametrize(
    "arguments",
    [
        {"max_bytes": 0},
        {"max_bytes": -5},
        {"max_bytes": "10"},
        {"max_bytes": True},
        {"max_entries": 2.5},
        {"sizeof": len},
        {"max_entries": 3, "sizeof": len},
    ],
)
def test_bounded_memory_cache_rejects_bad_arguments(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MemoryCache(**arguments)


def test_a_sizeof_returning_nonsense_is_an_error() -> None:
    cache = MemoryCache(max_bytes=10, sizeof=lambda value: -1)
    with pytest.raises(ValueError, match="sizeof"):
        cache.set("a", "v")
    assert cache.keys() == []


def test_byte_bounded_cache_is_safe_under_threads() -> None:
    cache = MemoryCache(max_entries=40, max_bytes=300)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for index in range(2000):
                key = f"k{(index * 7 + offset) % 90}"
                if index % 11 == 0:
                    cache.set_many({key: "v" * (index % 23), key + "x": "w" * (index % 5)})
                else:
                    cache.set(key, "v" * (index % 37))
                try:
                    cache.get(key)
                except KeyError:
                    pass
                if index % 13 == 0:
                    try:
                        cache.remove(key)
                    except KeyError:
                        pass
                if index % 97 == 0:
                    cache.clear("7$")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert isinstance(cache, LRUMemoryCache)
    stored = dict(zip(cache.keys(), cache.values()))
    assert len(stored) <= 40
    assert cache.current_bytes == sum(len(value) for value in stored.values()) <= 300


def test_bounded_memory_caches_copy_and_pickle() -> None:
    import copy
    import pickle

    cache = MemoryCache(max_entries=5, max_bytes=100)
    cache.set("a", "12345")
    for clone in (copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        clone.set("b", "1")
        assert clone.keys() == ["a", "b"] and clone.current_bytes == 6
    assert cache.keys() == ["a"]


# -- ProxyCache / SerialisedCache --------------------------------------------


class RecordingCache(MemoryCache):
    """Record which methods were called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        self.calls.append("get_many")
        return super().get_many(keys)

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        self.calls.append("set_many")
        super().set_many(mapping)

    def clear(self, pattern: Any = None) -> None:
        self.calls.append("clear")
        super().clear(pattern)

    def close(self) -> None:
        self.calls.append("close")


def test_proxy_passes_everything_through() -> None:
    inner = RecordingCache()
    proxy = ProxyCache(inner)
    proxy.set_many({"a": 1})
    assert proxy.get_many(["a"]) == {"a": 1}
    proxy.clear()
    proxy.close()
    assert inner.calls == ["set_many", "get_many", "clear", "close"]
    assert proxy.lists_keys
    assert not ProxyCache(MinimalCache()).lists_keys


def _kept(key: str) -> bool:
    return key.startswith("keep:")


def test_selective_proxy_batches_go_through_its_methods() -> None:
    inner = RecordingCache()
    proxy = SelectiveProxy(inner, _kept)
    proxy.set_many({"keep:1": 1, "drop:2": 2})
    inner.set("drop:3", 3)
    assert proxy.get_many(["keep:1", "drop:2", "drop:3"]) == {"keep:1": 1}
    assert proxy.values() == [1]
    proxy.clear()
    assert inner.keys() == ["drop:3"]
    assert inner.calls == []  # no batch call bypassed the proxy's get/set/remove
    assert proxy.calls[:2] == [("set", "keep:1"), ("set", "drop:2")]
    assert ("get", "drop:3") in proxy.calls
    assert ("remove", "drop:3") in proxy.calls


def test_selective_proxy_sees_every_write_through_a_layered_cache(tmp_path: Path) -> None:
    """Writes, batch writes and get_many write-backs all reach the proxy's own set."""
    memory = MemoryCache()
    front = SelectiveProxy(memory, _kept)
    disk = FileCache(tmp_path / "c")
    back = SelectiveProxy(disk, _kept)
    layered = LayeredCache([front, back])
    layered.set("keep:a", "1")
    layered.set("drop:b", "2")
    layered.set_many({"keep:c": "3", "drop:d": "4"})
    expected_sets = [("set", key) for key in ("keep:a", "drop:b", "keep:c", "drop:d")]
    assert [call for call in front.calls if call[0] == "set"] == expected_sets
    assert [call for call in back.calls if call[0] == "set"] == expected_sets
    assert sorted(memory.keys()) == ["keep:a", "keep:c"]
    assert sorted(disk.keys()) == ["keep:a", "keep:c"]

    # A deeper plain layer answers; the write-back into the selective front layer
    # (set_many for get_many, set for get) must still obey its rule.
    plain = MemoryCache()
    plain.set_many({"keep:x": "x", "drop:y": "y"})
    front.calls.clear()
    layered = LayeredCache([front, plain])
    assert layered.get_many(["keep:x", "drop:y"]) == {"keep:x": "x", "drop:y": "y"}
    assert ("set", "keep:x") in front.calls and ("set", "drop:y") in front.calls
    assert "drop:y" not in memory.keys() and memory.get("keep:x") == "x"
    layered.clear("^drop:")
    assert sorted(memory.keys()) == ["keep:a", "keep:c", "keep:x"]
    assert plain.keys() == ["keep:x"]


def test_proxy_subclass_keeps_its_own_batch_methods() -> None:
    class Batched(ProxyCache):
        def get(self, key: str) -> Any:
            raise AssertionError("get_many is overridden: get must not be used")

        def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
            return {key: "batched" for key in keys}

    batched = Batched(MemoryCache())
    assert batched.get_many(["a"]) == {"a": "batched"}


def test_serialised_cache_keeps_its_batched_path() -> None:
    inner = RecordingCache()
    cache = SerialisedCache(inner, json.dumps, json.loads)
    cache.set_many({"a": [1], "b": [2]})
    assert cache.get_many(["a", "b"]) == {"a": [1], "b": [2]}
    cache.clear()
    assert inner.calls == ["set_many", "get_many", "clear"]


def test_selective_subclass_of_a_serialised_cache_is_honoured() -> None:
    """Overriding get below a class that has its own get_many still routes batches via get."""

    class SelectiveJson(SerialisedCache):
        def get(self, key: str) -> Any:
            if not key.startswith("keep:"):
                raise KeyError(key)
            return super().get(key)

        def set(self, key: str, value: Any) -> None:
            if key.startswith("keep:"):
                super().set(key, value)

    inner = MemoryCache()
    cache = SelectiveJson(inner, json.dumps, json.loads)
    cache.set_many({"keep:a": [1], "drop:b": [2]})
    assert inner.keys() == ["keep:a"]
    inner.set("drop:c", "[3]")
    assert cache.get_many(["keep:a", "drop:c"]) == {"keep:a": [1]}
    assert cache.values() == [[1]]


def test_plain_proxy_of_a_proxy_subclass_passes_through() -> None:
    """A subclass overriding only close (not get/set/remove) keeps the fast pass-through."""

    class Closing(ProxyCache):
        closed = False

        def close(self) -> None:
            self.closed = True

    inner = RecordingCache()
    proxy = Closing(inner)
    proxy.set_many({"a": 1})
    assert proxy.get_many(["a"]) == {"a": 1}
    proxy.clear()
    assert inner.calls == ["set_many", "get_many", "clear"]


def test_serialised_cache_encodes_and_decodes() -> None:
    inner = MemoryCache()
    cache = SerialisedCache(inner, json.dumps, json.loads)
    cache.set("shot", {"type": "Shot", "id": 1})
    assert inner.get("shot") == '{"type": "Shot", "id": 1}'
    assert cache.get("shot") == {"type": "Shot", "id": 1}
    cache.set_many({"a": [1], "b": [2]})
    assert inner.get("a") == "[1]"
    assert cache.get_many(["a", "b", "c"]) == {"a": [1], "b": [2]}
    assert sorted(cache.values(), key=str) == [[1], [2], {"type": "Shot", "id": 1}]


def test_serialised_cache_without_codecs_is_a_proxy() -> None:
    cache = SerialisedCache(MemoryCache())
    cache.set("a", 1)
    cache.set_many({"b": 2})
    assert cache.get("a") == 1
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}


def test_serialised_cache_undecodable_value_is_a_miss(caplog: pytest.LogCaptureFixture) -> None:
    inner = MemoryCache()
    cache = SerialisedCache(inner, json.dumps, json.loads)
    inner.set("corrupt", "{not json")
    inner.set("good", "1")
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        with pytest.raises(KeyError):
            cache.get("corrupt")
        assert cache.get_many(["corrupt", "good"]) == {"good": 1}
        assert cache.values() == [1]
    assert "could not decode" in caplog.text
    assert "{not json" not in caplog.text


def test_serialised_cache_encoding_errors_propagate() -> None:
    cache = SerialisedCache(MemoryCache(), json.dumps, json.loads)
    with pytest.raises(TypeError):
        cache.set("a", object())


# -- LayeredCache ----------------------------------------------------------------


def test_layered_needs_a_layer() -> None:
    with pytest.raises(ValueError):
        LayeredCache([])


def test_layered_caches_attribute() -> None:
    first, second = MemoryCache(), MemoryCache()
    layered = LayeredCache([first, second])
    assert layered.caches == [first, second]
    layered.caches = [second]
    assert layered.caches == [second]
    assert [entry["name"] for entry in layered.stats()] == ["MemoryCache"]


MUTATIONS: dict[str, Any] = {
    "append": lambda layers, extra: layers.append(extra),
    "insert": lambda layers, extra: layers.insert(0, extra),
    "extend": lambda layers, extra: layers.extend([extra]),
    "remove": lambda layers, extra: layers.remove(layers[0]),
    "pop": lambda layers, extra: layers.pop(),
    "setitem": lambda layers, extra: layers.__setitem__(0, extra),
    "setslice": lambda layers, extra: layers.__setitem__(slice(0, 1), [extra]),
    "delitem": lambda layers, extra: layers.__delitem__(0),
    "iadd": lambda layers, extra: layers.__iadd__([extra]),
    "clear": lambda layers, extra: layers.clear(),
    "sort": lambda layers, extra: layers.sort(key=id),
    "reverse": lambda layers, extra: layers.reverse(),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_layered_caches_refuse_in_place_changes(mutation: str) -> None:
    first, second, extra = MemoryCache(), MemoryCache(), MemoryCache()
    layered = LayeredCache([first, second])
    with pytest.raises(TypeError, match=re.escape("cache.caches = [")):
        MUTATIONS[mutation](layered.caches, extra)
    assert layered.caches == [first, second]
    assert layered.revision == 0


def test_layered_caches_augmented_assignment_is_refused() -> None:
    first, extra = MemoryCache(), MemoryCache()
    layered = LayeredCache([first])
    with pytest.raises(TypeError, match="assign a new list"):
        layered.caches += [extra]
    with pytest.raises(TypeError, match="assign a new list"):
        layered.caches[0] = extra
    with pytest.raises(TypeError, match="assign a new list"):
        del layered.caches[0]
    assert layered.caches == [first]
    assert layered.revision == 0


def test_layered_caches_read_like_a_list_and_assignment_bumps_revision() -> None:
    first, second, extra = MemoryCache(), MemoryCache(), MemoryCache()
    layered = LayeredCache([first, second])
    layers = layered.caches
    assert layered.revision == 0
    assert layers == [first, second] and [first, second] == layers
    assert layers == (first, second) and (first, second) == layers
    assert layers != [second, first] and (layers != [first, second]) is False
    assert layers != [first] and layers != "nope"
    assert layers[0] is first and layers[-1] is second and list(layers[1:]) == [second]
    assert len(layers) == 2 and list(layers) == [first, second] and second in layers
    assert layers.index(second) == 1
    assert hash(layers) == hash((first, second))
    layered.caches = [*layered.caches, extra]
    assert layered.revision == 1
    assert layered.caches == [first, second, extra]
    assert layers == [first, second]  # an old view does not change under anyone
    layered.set("k", "v")
    assert extra.get("k") == "v"  # the new layer is really attached
    layered.caches = (second,)
    assert layered.revision == 2
    with pytest.raises(ValueError):
        layered.caches = []
    assert layered.revision == 2 and layered.caches == [second]
    assert "MemoryCache" in repr(layered.caches)


def test_layered_get_writes_back_into_shallower_layers() -> None:
    top, middle, bottom = MemoryCache(), MemoryCache(), MemoryCache()
    layered = LayeredCache([top, middle, bottom])
    bottom.set("deep", "value")
    middle.set("mid", "other")
    assert layered.get("deep") == "value"
    assert top.get("deep") == "value"
    assert middle.get("deep") == "value"
    assert layered.get("mid") == "other"
    assert top.get("mid") == "other"
    with pytest.raises(KeyError):
        bottom.get("mid")
    with pytest.raises(KeyError):
        layered.get("nowhere")


def test_layered_get_many_asks_only_for_missing_keys() -> None:
    top, bottom = RecordingCache(), RecordingCache()
    layered = LayeredCache([top, bottom])
    top.set("a", 1)
    bottom.set("a", 100)
    bottom.set("b", 2)
    asked: list[list[str]] = []
    original = bottom.get_many

    def spy(keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        asked.append(keys)
        return original(keys)

    bottom.get_many = spy  # type: ignore[method-assign]
    assert layered.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert asked == [["b", "c"]]
    assert top.get("b") == 2  # written back
    assert "set_many" in top.calls
    assert list(layered.get_many(["b", "a"])) == ["b", "a"]  # request order kept


def test_layered_set_remove_keys_clear() -> None:
    top, bottom = MemoryCache(), MemoryCache()
    layered = LayeredCache([top, bottom])
    layered.set("a", 1)
    layered.set_many({"b": 2, "c": 3})
    assert top.get("a") == bottom.get("a") == 1
    bottom.set("only-bottom", 4)
    assert sorted(layered.keys()) == ["a", "b", "c", "only-bottom"]
    layered.remove("only-bottom")
    with pytest.raises(KeyError):
        layered.remove("only-bottom")
    layered.clear("^[ab]$")
    assert sorted(layered.keys()) == ["c"]
    assert top.keys() == ["c"] and bottom.keys() == ["c"]


def test_layered_clear_reaches_layers_that_cannot_list_keys() -> None:
    minimal = MinimalCache()
    layered = LayeredCache([MemoryCache(), minimal])
    layered.set("shot:1", 1)
    layered.set("asset:1", 2)
    layered.clear("^shot")
    assert minimal.store == {"asset:1": 2}
    layered.clear()
    assert minimal.store == {}
    with pytest.raises(NotImplementedError):
        LayeredCache([MinimalCache()]).clear()
    with pytest.raises(NotImplementedError):
        LayeredCache([MinimalCache()]).keys()


def test_layered_non_str_key_is_a_type_error_not_a_miss() -> None:
    layered = LayeredCache([MemoryCache(), MemoryCache()])
    for call in (
        lambda: layered.get(1),  # type: ignore[arg-type]
        lambda: layered.set(1, "v"),  # type: ignore[arg-type]
        lambda: layered.remove(1),  # type: ignore[arg-type]
        lambda: layered.get_many([1]),  # type: ignore[list-item]
        lambda: layered.set_many({1: "v"}),  # type: ignore[dict-item]
    ):
        with pytest.raises(TypeError, match="int"):
            call()


def test_layered_unstorable_value_is_a_type_error(tmp_path: Path) -> None:
    layered = LayeredCache([MemoryCache(), FileCache(tmp_path / "c")])
    with pytest.raises(TypeError, match="dict"):
        layered.set("a", {"not": "a str"})


def test_layered_degrades_when_a_layer_breaks(caplog: pytest.LogCaptureFixture) -> None:
    top, broken = MemoryCache(), BrokenCache()
    layered = LayeredCache([top, broken], warning_interval=0)
    layered.set("a", "secret-value-1")
    broken.broken = True
    with caplog.at_level(logging.WARNING, logger="sgcache_layers.cache"):
        assert layered.get("a") == "secret-value-1"  # from memory, the broken layer unused
        with pytest.raises(KeyError):
            layered.get("b")  # memory miss, broken layer fails: a miss
        layered.set("b", "secret-value-2")  # the broken layer is skipped
        assert layered.get("b") == "secret-value-2"
        layered.remove("b")  # memory had it
        with pytest.raises(KeyError):
            layered.remove("b")
        assert layered.get_many(["a", "c"]) == {"a": "secret-value-1"}
        layered.set_many({"c": "secret-value-3"})
        assert layered.keys() == ["a", "c"]
        layered.clear("^c$")
        layered.close()
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings
    for record in warnings:
        assert record.name == "sgcache_layers.cache"
        message = record.getMessage()
        assert "BrokenCache" in message
        assert "CacheBackendError" in message and "disk on fire" in message
        assert "secret-value" not in message
    stats = layered.stats()
    assert stats[0]["name"] == "MemoryCache"
    assert stats[1]["name"] == "BrokenCache"
    assert stats[1]["errors"] >= 6
    assert stats[0]["hits"] >= 2


@pytest.mark.parametrize("error", [OSError("no space"), RuntimeError("boom"), ValueError("x")])
def test_layered_treats_any_error_as_a_miss(error: Exception) -> None:
    broken, bottom = BrokenCache(), MemoryCache()
    layered = LayeredCache([broken, bottom])
    bottom.set("a", 1)
    broken.broken = True
    broken.error = error
    assert layered.get("a") == 1
    assert layered.stats()[0]["errors"] == 1
    assert layered.stats()[1]["hits"] == 1


def test_layered_every_layer_broken_is_a_miss() -> None:
    first, second = BrokenCache(), BrokenCache()
    first.broken = second.broken = True
    layered = LayeredCache([first, second])
    with pytest.raises(KeyError):
        layered.get("a")
    layered.set("a", 1)
    assert layered.get_many(["a"]) == {}


def test_layered_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    broken = BrokenCache()
    broken.broken = True
    layered = LayeredCache([MemoryCache(), broken], warning_interval=3600)
    with caplog.at_level(logging.DEBUG, logger="sgcache_layers.cache"):
        for _ in range(5):
            with pytest.raises(KeyError):
                layered.get("x")
    levels = [record.levelno for record in caplog.records]
    assert levels.count(logging.WARNING) == 1
    assert levels.count(logging.DEBUG) == 4
    assert layered.stats()[1]["errors"] == 5


def test_layered_stats_counts_hits_and_misses() -> None:
    top, bottom = MemoryCache(), MemoryCache()
    layered = LayeredCache([top, bottom])
    bottom.set("a", 1)
    layered.get("a")  # top miss, bottom hit, written back
    layered.get("a")  # top hit
    with pytest.raises(KeyError):
        layered.get("zzz")  # both miss
    assert layered.stats() == [
        {"index": 0, "name": "MemoryCache", "hits": 1, "misses": 2, "errors": 0},
        {"index": 1, "name": "MemoryCache", "hits": 1, "misses": 1, "errors": 0},
    ]
    layered.reset_stats()
    assert all(entry["hits"] == entry["misses"] == 0 for entry in layered.stats())


def test_layered_with_minimal_user_cache_underneath() -> None:
    minimal = MinimalCache()
    layered = LayeredCache([MemoryCache(max_entries=2), minimal])
    for index in range(5):
        layered.set(f"k{index}", index)
    assert minimal.store == {f"k{index}": index for index in range(5)}
    assert layered.get("k0") == 0  # evicted from memory, served by the user cache
    assert layered.get_many(["k1", "k2", "zz"]) == {"k1": 1, "k2": 2}
    assert sorted(layered.keys()) == ["k1", "k2"]  # only memory can list
