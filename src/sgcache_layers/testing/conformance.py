"""The contract every :class:`~sgcache_layers.cache.Cache` keeps, as pytest tests.

Subclass :class:`CacheConformance` in a test module and say how to make the
cache under test, either with :meth:`~CacheConformance.make_cache` (a fresh
temporary directory is ``self.tmp_path``) or by overriding the ``cache``
fixture when the cache needs other fixtures::

    from sgcache_layers.cache import MemoryCache
    from sgcache_layers.testing.conformance import CacheConformance

    class TestMemoryCache(CacheConformance):
        def make_cache(self):
            return MemoryCache()

Class flags adapt the suite to what a backend promises: ``supports_bytes``,
``enforces_str_keys``, ``round_trips_surrogates`` and ``large_value_size``.

:class:`SelectiveProxy` is ftrack's selective-cache pattern (a
:class:`~sgcache_layers.cache.ProxyCache` subclass overriding ``get``/``set``/
``remove`` to store only some keys); the suite checks it over every backend,
and test modules can run the whole suite over one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from sgcache_layers.cache import Cache, CacheBackendError, ProxyCache, check_key

__all__ = ["CacheConformance", "SelectiveProxy"]

UNICODE_KEY = "ショット/镜头:ü é ß 🎬"
UNICODE_VALUE = "Ωμέγα — ✓ 日本語 😀 \u00e9\u0301 \t\n\r"
NON_STR_KEYS: tuple[Any, ...] = (1, 1.5, b"bytes", None, ("a",))


class SelectiveProxy(ProxyCache):
    """A ProxyCache that stores only the keys *admit* accepts, noting every call it sees.

    Overrides only ``get``, ``set`` and ``remove``, as ftrack documents for a
    selective cache: batch calls (``set_many``, ``get_many``, ``values``,
    ``clear``) must reach these, or the rule is bypassed.  ``calls`` lists
    ``(method, key)`` in order.
    """

    def __init__(self, proxied: Cache, admit: Callable[[str], bool]) -> None:
        super().__init__(proxied)
        self.admit = admit
        self.calls: list[tuple[str, str]] = []

    def get(self, key: str) -> Any:
        """Return the proxied value of an admitted key; any other key is a miss."""
        key = check_key(key)
        self.calls.append(("get", key))
        if not self.admit(key):
            raise KeyError(key)
        return self.proxied.get(key)

    def set(self, key: str, value: Any) -> None:
        """Store *value* if *key* is admitted; otherwise drop it."""
        key = check_key(key)
        self.calls.append(("set", key))
        if self.admit(key):
            self.proxied.set(key, value)

    def remove(self, key: str) -> None:
        """Remove an admitted key; any other key is not stored here (``KeyError``)."""
        key = check_key(key)
        self.calls.append(("remove", key))
        if not self.admit(key):
            raise KeyError(key)
        self.proxied.remove(key)


def _kept(key: str) -> bool:
    return key.startswith("keep:")


class CacheConformance:
    """Mixin of pytest tests covering the whole :class:`Cache` contract.

    Values used are ``str`` (and ``bytes`` when ``supports_bytes``), which every
    backend stores.  ``keys()``-based tests skip when the backend raises
    ``NotImplementedError`` for ``keys()``.
    """

    #: Whether ``bytes`` values come back as ``bytes`` (False for a JSON-serialised cache).
    supports_bytes: bool = True
    #: Whether non-``str`` keys raise ``TypeError`` (a user cache may not check).
    enforces_str_keys: bool = True
    #: Whether ``str`` with lone surrogates round-trips (else it must be refused clearly).
    round_trips_surrogates: bool = True
    #: Size of the "large value" tests, in characters / bytes.
    large_value_size: int = 1024 * 1024

    tmp_path: Path

    def make_cache(self) -> Cache:
        """Return a new, empty cache to test (override this or the ``cache`` fixture)."""
        raise NotImplementedError("subclass CacheConformance and define make_cache()")

    @pytest.fixture(autouse=True)
    def _conformance_tmp_path(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    @pytest.fixture
    def cache(self, _conformance_tmp_path: None) -> Iterator[Cache]:
        """The cache under test, closed afterwards."""
        cache = self.make_cache()
        try:
            yield cache
        finally:
            cache.close()

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _keys_or_skip(cache: Cache) -> list[str]:
        try:
            return list(cache.keys())
        except NotImplementedError:
            pytest.skip(f"{type(cache).__name__} cannot list its keys")

    @staticmethod
    def _clear_or_skip(cache: Cache, pattern: Any = None) -> None:
        try:
            cache.clear(pattern)
        except NotImplementedError:
            pytest.skip(f"{type(cache).__name__} cannot list its keys, so cannot clear")

    # -- get / set / remove --------------------------------------------------

    def test_get_missing_raises_key_error(self, cache: Cache) -> None:
        with pytest.raises(KeyError):
            cache.get("missing")

    def test_set_then_get(self, cache: Cache) -> None:
        cache.set("shot:1", "value one")
        assert cache.get("shot:1") == "value one"

    def test_overwrite(self, cache: Cache) -> None:
        cache.set("key", "first")
        cache.set("key", "second")
        assert cache.get("key") == "second"

    def test_keys_are_independent(self, cache: Cache) -> None:
        cache.set("a", "1")
        cache.set("b", "2")
        assert cache.get("a") == "1"
        assert cache.get("b") == "2"

    def test_remove(self, cache: Cache) -> None:
        cache.set("key", "value")
        cache.remove("key")
        with pytest.raises(KeyError):
            cache.get("key")

    def test_remove_missing_raises_key_error(self, cache: Cache) -> None:
        with pytest.raises(KeyError):
            cache.remove("missing")

    def test_remove_twice_raises_key_error(self, cache: Cache) -> None:
        cache.set("key", "value")
        cache.remove("key")
        with pytest.raises(KeyError):
            cache.remove("key")

    def test_set_after_remove(self, cache: Cache) -> None:
        cache.set("key", "one")
        cache.remove("key")
        cache.set("key", "two")
        assert cache.get("key") == "two"

    # -- odd keys and values -------------------------------------------------

    def test_unicode_key_and_value(self, cache: Cache) -> None:
        cache.set(UNICODE_KEY, UNICODE_VALUE)
        assert cache.get(UNICODE_KEY) == UNICODE_VALUE

    def test_empty_string_value(self, cache: Cache) -> None:
        cache.set("empty", "")
        assert cache.get("empty") == ""

    def test_empty_string_key(self, cache: Cache) -> None:
        cache.set("", "value")
        assert cache.get("") == "value"

    def test_glob_and_regex_characters_in_keys(self, cache: Cache) -> None:
        odd = ["a*b", "a?c", "[x]", "back\\slash", "dot.star.*", "colon:colon"]
        for index, key in enumerate(odd):
            cache.set(key, str(index))
        for index, key in enumerate(odd):
            assert cache.get(key) == str(index)

    def test_value_with_nul_and_control_characters(self, cache: Cache) -> None:
        value = "a\x00b\x01c\x7f"
        cache.set("control", value)
        assert cache.get("control") == value

    def test_large_str_value(self, cache: Cache) -> None:
        value = ("0123456789abcdef" * (self.large_value_size // 16 + 1))[: self.large_value_size]
        cache.set("large", value)
        assert cache.get("large") == value

    def test_bytes_value_keeps_its_type(self, cache: Cache) -> None:
        if not self.supports_bytes:
            pytest.skip("this cache does not keep bytes values")
        cache.set("bytes", b"\x00\xffraw")
        cache.set("text", "raw")
        assert cache.get("bytes") == b"\x00\xffraw"
        assert type(cache.get("bytes")) is bytes
        assert type(cache.get("text")) is str

    def test_large_bytes_value(self, cache: Cache) -> None:
        if not self.supports_bytes:
            pytest.skip("this cache does not keep bytes values")
        value = bytes(range(256)) * (self.large_value_size // 256)
        cache.set("large-bytes", value)
        assert cache.get("large-bytes") == value

    def test_lone_surrogates_round_trip(self, cache: Cache) -> None:
        """Any ``str`` is a key or value: lone surrogates come back exactly (or are refused)."""
        # Lone surrogates only: a high+low pair would come back merged from JSON.
        items = {"\ud800": "a\udfffb", "shot:\udc80:1": "\ude00\ud83d", "plain": "\udbff" * 3}
        if not self.round_trips_surrogates:
            with pytest.raises((TypeError, ValueError, CacheBackendError)):
                cache.set("\ud800", "v")
            return
        for key, value in items.items():
            cache.set(key, value)
            assert cache.get(key) == value
        assert cache.get_many([*items, "\ud801"]) == items
        cache.set_many({"many:\udfff": "\ud800x"})
        assert cache.get("many:\udfff") == "\ud800x"
        try:
            keys = cache.keys()
        except NotImplementedError:
            return
        assert sorted(keys) == sorted([*items, "many:\udfff"])
        cache.clear("\udc80|\udfff$")
        assert sorted(self._keys_or_skip(cache)) == ["plain", "\ud800"]
        cache.remove("\ud800")
        assert self._keys_or_skip(cache) == ["plain"]

    @pytest.mark.parametrize("key", NON_STR_KEYS, ids=lambda key: type(key).__name__)
    def test_non_str_key_raises_type_error(self, cache: Cache, key: Any) -> None:
        if not self.enforces_str_keys:
            pytest.skip("this cache does not check key types")
        name = type(key).__name__
        with pytest.raises(TypeError, match=re.escape(name)):
            cache.set(key, "value")
        with pytest.raises(TypeError, match=re.escape(name)):
            cache.get(key)
        with pytest.raises(TypeError, match=re.escape(name)):
            cache.remove(key)

    # -- keys / values / clear -----------------------------------------------

    def test_keys(self, cache: Cache) -> None:
        assert self._keys_or_skip(cache) == []
        for key in ("a", "b", UNICODE_KEY, "a*b"):
            cache.set(key, "v")
        assert sorted(self._keys_or_skip(cache)) == sorted(["a", "b", UNICODE_KEY, "a*b"])
        cache.remove("a")
        assert sorted(self._keys_or_skip(cache)) == sorted(["b", UNICODE_KEY, "a*b"])

    def test_values(self, cache: Cache) -> None:
        self._keys_or_skip(cache)
        cache.set("a", "one")
        cache.set("b", "two")
        cache.set("a", "three")
        assert sorted(cache.values()) == ["three", "two"]

    def test_clear_all(self, cache: Cache) -> None:
        for key in ("a", "b", "c"):
            cache.set(key, "v")
        self._clear_or_skip(cache)
        for key in ("a", "b", "c"):
            with pytest.raises(KeyError):
                cache.get(key)
        assert self._keys_or_skip(cache) == []

    def test_clear_pattern_uses_search(self, cache: Cache) -> None:
        for key in ("shot:1", "shot:2", "asset:1", "task:shot:3"):
            cache.set(key, "v")
        self._clear_or_skip(cache, "^shot:")
        with pytest.raises(KeyError):
            cache.get("shot:1")
        with pytest.raises(KeyError):
            cache.get("shot:2")
        assert cache.get("asset:1") == "v"
        assert cache.get("task:shot:3") == "v"
        self._clear_or_skip(cache, "1$")
        with pytest.raises(KeyError):
            cache.get("asset:1")
        assert cache.get("task:shot:3") == "v"

    def test_clear_compiled_pattern(self, cache: Cache) -> None:
        cache.set("Shot", "v")
        cache.set("shot", "v")
        self._clear_or_skip(cache, re.compile("^SHOT$", re.IGNORECASE))
        assert self._keys_or_skip(cache) == []

    def test_clear_pattern_matching_nothing(self, cache: Cache) -> None:
        cache.set("keep", "v")
        self._clear_or_skip(cache, "^nothing$")
        assert cache.get("keep") == "v"

    def test_clear_on_empty_cache(self, cache: Cache) -> None:
        self._clear_or_skip(cache)
        self._clear_or_skip(cache, "x")

    # -- get_many / set_many -------------------------------------------------

    def test_get_many_leaves_out_absent_keys(self, cache: Cache) -> None:
        cache.set("a", "1")
        cache.set("c", "3")
        assert cache.get_many(["a", "b", "c", "d"]) == {"a": "1", "c": "3"}

    def test_get_many_empty(self, cache: Cache) -> None:
        assert cache.get_many([]) == {}
        assert cache.get_many(["absent"]) == {}

    def test_get_many_accepts_any_iterable(self, cache: Cache) -> None:
        cache.set("a", "1")
        assert cache.get_many(key for key in ("a", "b")) == {"a": "1"}

    def test_get_many_with_duplicate_keys(self, cache: Cache) -> None:
        cache.set("a", "1")
        assert cache.get_many(["a", "a", "b"]) == {"a": "1"}

    def test_set_many(self, cache: Cache) -> None:
        cache.set("b", "old")
        cache.set_many({"a": "1", "b": "2", UNICODE_KEY: UNICODE_VALUE})
        assert cache.get("a") == "1"
        assert cache.get("b") == "2"
        assert cache.get(UNICODE_KEY) == UNICODE_VALUE
        assert cache.get_many(["a", "b", "z"]) == {"a": "1", "b": "2"}

    def test_set_many_empty(self, cache: Cache) -> None:
        cache.set_many({})

    def test_set_many_expiring_stores_like_set_many(self, cache: Cache) -> None:
        # An expiry is a hint: within it (or without one) the values are there.
        cache.set("b", "old")
        cache.set_many_expiring({"a": "1", "b": "2", UNICODE_KEY: UNICODE_VALUE}, 3600.0)
        assert cache.get_many(["a", "b", UNICODE_KEY]) == {
            "a": "1",
            "b": "2",
            UNICODE_KEY: UNICODE_VALUE,
        }
        cache.set_many_expiring({"c": "3"}, None)
        assert cache.get("c") == "3"
        cache.set_many_expiring({}, 10.0)

    def test_many_keys(self, cache: Cache) -> None:
        data = {f"entity:{index}": f"value {index}" for index in range(300)}
        cache.set_many(data)
        assert cache.get_many(list(data)) == data
        assert cache.get("entity:123") == "value 123"

    # -- a selective proxy over this cache ------------------------------------

    def test_selective_proxy_sees_every_batch_call(self, cache: Cache) -> None:
        proxy = SelectiveProxy(cache, _kept)
        proxy.set_many({"keep:a": "1", "skip:b": "2", "keep:c": "3"})
        assert [call for call in proxy.calls if call[0] == "set"] == [
            ("set", "keep:a"),
            ("set", "skip:b"),
            ("set", "keep:c"),
        ]
        assert cache.get("keep:a") == "1"
        with pytest.raises(KeyError):
            cache.get("skip:b")
        cache.set("skip:direct", "4")  # stored behind the proxy's back: it must not serve it
        assert proxy.get_many(["keep:a", "skip:b", "skip:direct", "keep:c"]) == {
            "keep:a": "1",
            "keep:c": "3",
        }
        assert ("get", "skip:direct") in proxy.calls
        try:
            cache.keys()
        except NotImplementedError:
            return
        assert sorted(proxy.values()) == ["1", "3"]
        proxy.clear("^(keep|skip):")
        assert ("remove", "skip:direct") in proxy.calls
        assert self._keys_or_skip(cache) == ["skip:direct"]
        proxy.clear()
        assert cache.get("skip:direct") == "4"

    # -- lifecycle -----------------------------------------------------------

    def test_add_stores_only_when_absent(self, cache: Cache) -> None:
        assert cache.add("added", "first") is True
        assert cache.get("added") == "first"
        assert cache.add("added", "second") is False
        assert cache.get("added") == "first"
        cache.remove("added")
        assert cache.add("added", "third") is True
        assert cache.get("added") == "third"

    def test_close_is_idempotent(self, cache: Cache) -> None:
        cache.set("a", "1")
        cache.close()
        cache.close()

    def test_is_a_cache(self, cache: Cache) -> None:
        assert isinstance(cache, Cache)
