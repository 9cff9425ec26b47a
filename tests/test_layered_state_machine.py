"""A three-layer LayeredCache behaves like one dict under random operations."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from typing import Optional

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sgcache_layers.cache import LayeredCache, LRUMemoryCache, MemoryCache, SerialisedCache
from sgcache_layers.file import FileCache

KEYS = st.sampled_from(["shot:1", "shot:2", "shot:3", "asset:1", "asset:2", "task:shot:1", "ü"])
VALUES = st.text(max_size=20)
PATTERNS = st.sampled_from(["^shot:", "1$", "asset", "^ü$", "nothing", ":"])


class LayeredLikeADict(RuleBasedStateMachine):
    """Model: a dict.  System: bounded memory over JSON-in-memory over a FileCache."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="sgcache-state-")
        self.top = self.make_top()
        self.middle = SerialisedCache(MemoryCache(), json.dumps, json.loads)
        self.bottom = FileCache(self.directory)
        self.cache = LayeredCache([self.top, self.middle, self.bottom])
        self.model: dict[str, str] = {}

    def make_top(self) -> LRUMemoryCache:
        """The memory layer: small, so it evicts all the time."""
        return LRUMemoryCache(max_entries=2)

    def top_within_bounds(self) -> bool:
        return len(self.top.keys()) <= 2

    def teardown(self) -> None:
        self.cache.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(key=KEYS, value=VALUES)
    def set(self, key: str, value: str) -> None:
        self.cache.set(key, value)
        self.model[key] = value

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=4))
    def set_many(self, items: dict[str, str]) -> None:
        self.cache.set_many(items)
        self.model.update(items)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        if key in self.model:
            assert self.cache.get(key) == self.model[key]
        else:
            with pytest.raises(KeyError):
                self.cache.get(key)

    @rule(keys=st.lists(KEYS, max_size=5))
    def get_many(self, keys: list[str]) -> None:
        expected = {key: self.model[key] for key in keys if key in self.model}
        assert self.cache.get_many(keys) == expected

    @rule(key=KEYS)
    def remove(self, key: str) -> None:
        if key in self.model:
            self.cache.remove(key)
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                self.cache.remove(key)

    @rule(pattern=st.none() | PATTERNS)
    def clear(self, pattern: Optional[str]) -> None:
        self.cache.clear(pattern)
        if pattern is None:
            self.model.clear()
        else:
            for key in [key for key in self.model if re.search(pattern, key)]:
                del self.model[key]

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def evict_from_the_top(self, data: st.DataObject) -> None:
        """Drop an entry from the memory layer only: the deeper layers still answer."""
        key = data.draw(st.sampled_from(sorted(self.model)))
        try:
            self.top.remove(key)
        except KeyError:
            pass

    @rule()
    def close_and_reopen_connections(self) -> None:
        self.bottom.close()

    @invariant()
    def keys_match(self) -> None:
        assert sorted(self.cache.keys()) == sorted(self.model)

    @invariant()
    def deepest_layer_holds_everything(self) -> None:
        assert sorted(self.bottom.keys()) == sorted(self.model)
        assert self.top_within_bounds()


LayeredLikeADict.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
TestLayeredLikeADict = LayeredLikeADict.TestCase


class ByteBoundedLayeredLikeADict(LayeredLikeADict):
    """The same, with a memory layer bounded to 24 characters: values up to 20 come and go."""

    def make_top(self) -> LRUMemoryCache:
        return LRUMemoryCache(max_bytes=24)

    def top_within_bounds(self) -> bool:
        values = self.top.values()
        return self.top.current_bytes == sum(map(len, values)) <= 24


ByteBoundedLayeredLikeADict.TestCase.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None
)
TestByteBoundedLayeredLikeADict = ByteBoundedLayeredLikeADict.TestCase
