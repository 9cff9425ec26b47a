"""Answers through the layers: look up, check, build, ask, store.

:class:`Answers` is the read path every session read takes.  A ``find`` answer is one record
(all its rows) read with one cache read and one decode; once built, its entities stay in the
memory layer as an :class:`Answer`, so asking again in the same process costs a key, one
generation check and a list copy.  An entity's own record (``get``, ``fetch``,
auto-populate) is read the same way.  Every use of a cached answer goes through
:meth:`~sgcache_layers.freshness.Freshness.usable`, the one freshness rule.

A miss asks ShotGrid once for all threads (:class:`~sgcache_layers.fetching.SingleFlight`),
after reading the generations the answer will be checked against, and stores the record from
a background writer.  When ShotGrid is down, ``stale_if_error`` serves the newest stored
answer of any age, with a warning.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from . import records
from .cache import Cache
from .entity import Entity
from .fetching import Requests, SingleFlight, WriteBehind, is_unavailable
from .freshness import Freshness, Layout, is_introduced, token_time
from .identity import ANY_SIZE, UNCONFIRMED, IdentityMap, container_fields, no_gc
from .leases import FillLeases
from .query import deep_types
from .records import FORMAT_VERSION, Keys, bucket_name

__all__ = ["MOVED", "Answer", "Answers", "Policy", "plain"]

log = logging.getLogger("sgcache_layers.session")

_time = time.time
#: How far another host's clock may run behind ours when tokens are compared with a time.
_SKEW_NS = 5_000_000_000
# What was known before a request: when it was sent, the tokens read, the clock then.
_Before = tuple[int, Mapping[str, str], Optional[str]]
_NOTHING_BEFORE: _Before = (0, {}, None)
#: A generation name no token ever matches: the answer may not be used again.
MOVED = _MOVED = "~moved"
#: Ids asked for in one ``find`` by id (ShotGrid pages the answer; pages are one request).
IDS_PER_REQUEST = 5000
#: The mode of a stale_if_error fallback: any generations, no older than a limit.
_STALE = "stale"


@dataclass(frozen=True)
class Policy:
    """How one read may use the cache (the session's mode and knobs at call time)."""

    mode: str = "cached"
    max_age: float = 600.0
    stale_if_error: Union[bool, float] = True
    bypass: bool = False

    @property
    def reads(self) -> bool:
        """Whether the cache may answer."""
        return self.mode != "direct" and not self.bypass

    @property
    def writes(self) -> bool:
        """Whether answers are stored."""
        return not self.bypass and self.mode != "offline"

    @property
    def offline(self) -> bool:
        """Whether ShotGrid may not be asked."""
        return self.mode == "offline"

    @staticmethod
    def of(mode: str, max_age: float, stale_if_error: Union[bool, float], bypass: bool) -> Policy:
        """The policy for these knobs, made once (policies are immutable and shared)."""
        memo = (mode, max_age, stale_if_error, bypass)
        policy = _POLICIES.get(memo)
        if policy is None:
            if len(_POLICIES) > 256:
                _POLICIES.clear()
            policy = _POLICIES[memo] = Policy(*memo)
        return policy


_POLICIES: dict[tuple[Any, ...], Policy] = {}


class Answer:
    """A built answer kept in the memory layer: when it was asked, what it was checked
    against, and the entities (or value) it gave."""

    __slots__ = ("t", "gens", "entities", "value", "size")

    def __init__(
        self,
        stamp: float,
        gens: Mapping[str, str],
        entities: Optional[list[Entity]] = None,
        value: Any = None,
        size: int = 0,
    ) -> None:
        self.t = stamp
        self.gens = gens
        self.entities = entities
        self.value = value
        self.size = size

    def __sgcache_sizeof__(self) -> int:
        """An estimate of the bytes this answer keeps alive (for byte-bounded memory)."""
        return self.size or 200 + 150 * len(self.entities or ())


def plain(value: Any) -> Any:
    """A field value as ShotGrid would send it: entities become ``{type, id[, name]}``."""
    cls = value.__class__
    if cls is Entity:
        link = {"type": value._key[0], "id": value._key[1]}
        name = dict.get(value, "name")
        if name is not None:
            link["name"] = name
        return link
    if cls is list or cls is tuple:
        return [plain(v) for v in value]
    if cls is dict:
        return {k: plain(v) for k, v in value.items()}
    return value


def _linked_types(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Entity types linked from the values of *rows* (their display names are answers too)."""
    found: set[str] = set()
    for row in rows:
        for value in row.values():
            cls = value.__class__
            if cls is dict:
                link_type = value.get("type")
                if link_type.__class__ is str and value.get("id").__class__ is int:
                    found.add(link_type)
                elif value:
                    found |= _linked_types([value])
            elif cls is list:
                for item in value:
                    if item.__class__ is dict:
                        link_type = item.get("type")
                        if link_type.__class__ is str:
                            found.add(link_type)
    return found


class Answers:
    """The read path of one session (see the module docstring)."""

    def __init__(
        self,
        *,
        keys: Keys,
        layout: Layout,
        freshness: Freshness,
        identity: IdentityMap,
        requests: Requests,
        writer: WriteBehind,
        stats: Any,
        tz: Any = None,
    ) -> None:
        self.keys = keys
        self.layout = layout
        self.freshness = freshness
        self.identity = identity
        self.requests = requests
        self.writer = writer
        self.stats = stats
        self.tz = tz
        self.flights = SingleFlight()
        # Leases live in the deepest shared layer; with memory alone there is no one to
        # share a fill with.
        self.leases = FillLeases(
            lambda: layout.authorities if layout.store is not None else [], writer
        )
        self._keep_richer = self._richer  # one object: the writer batches by it
        self._keys_memo: dict[str, tuple[str, str]] = {}

    # -- layers ----------------------------------------------------------------------

    def data_key(self, kind: str, name: str, rest: Union[str, int]) -> str:
        """A data key under the current epoch."""
        return self.keys.data(self.freshness.epoch, kind, name, rest)

    def _current_key(self, key: str) -> str:
        """*key* under the current epoch (another process may have flushed meanwhile)."""
        head = f"{self.keys.base}|"
        if key.startswith(head):
            epoch, _, rest = key[len(head) :].partition("|")
            if epoch != self.freshness.epoch:
                return f"{head}{self.freshness.epoch}|{rest}"
        return key

    def _agreed_key(self, key: str) -> str:
        """*key* under the epoch the authority holds now, so that every process waiting
        for one fill agrees on its lease and its record (a flush by another process, such
        as the first sync of a farm, may have come since this one last looked)."""
        self.freshness.refresh()
        return self._current_key(key)

    def _memory_get(self, key: str) -> Optional[Answer]:
        memory = self.layout.memory
        if memory is None:
            return None
        try:
            found = memory.get(key)
        except KeyError:
            return None
        except Exception as error:  # a broken memory layer: carry on without it
            log.warning("the memory layer failed: %s", error)
            return None
        return found if found.__class__ is Answer else None

    def _memory_set(self, key: str, answer: Answer) -> None:
        memory = self.layout.memory
        if memory is None:
            return
        try:
            memory.set(key, answer)
        except Exception as error:
            log.warning("the memory layer failed: %s", error)

    def _store(self) -> Optional[Cache]:
        self.layout.refresh()
        return self.layout.store

    def _store_get(self, key: str, kinds: Iterable[str]) -> Optional[dict[str, Any]]:
        store = self._store()
        if store is None:
            return None
        return self._store_get_many([key], kinds).get(key)

    def _store_get_many(self, keys: list[str], kinds: Iterable[str]) -> dict[str, dict[str, Any]]:
        store = self._store()
        if store is None or not keys:
            return {}
        queued = {key: self.writer.pending(store, key) for key in keys}
        waiting = {key: item for key, item in queued.items() if item is not None}
        # What this session queued and did not write yet is read back first, merged with
        # what is stored when the write will merge too.
        wanted = [key for key in keys if key not in waiting or waiting[key][1] is not None]
        try:
            if len(wanted) == 1:
                try:
                    found = {wanted[0]: store.get(wanted[0])}
                except KeyError:
                    found = {}
            else:
                found = store.get_many(wanted) if wanted else {}
        except Exception as error:
            log.warning("cache read failed: %s", error)
            found = {}
        for key, (value, merge) in waiting.items():
            found[key] = value if merge is None else merge(value, found.get(key))
        out = {}
        for key, value in found.items():
            record = records.valid(value, kinds)
            if record is not None:
                out[key] = record
        return out

    def put(
        self, mapping: Mapping[str, Any], merge: Optional[Callable[[Any, Any], Any]] = None
    ) -> None:
        """Store records in the layers below memory (from the background writer)."""
        store = self._store()
        if store is not None and mapping:
            self.writer.put(store, mapping, merge)

    def _richer(self, new: dict[str, Any], stored: Any) -> dict[str, Any]:
        """An entity record that also keeps what a still-current stored record knows.

        A session that knows fewer fields of an entity must not make the cache poorer.
        """
        old = records.valid(stored, ("e",))
        if old is None or old["T"] != new.get("T") or old["i"] != new.get("i"):
            return new
        if new.get("k") != "e" or not self.still_current(old["g"]):
            return new
        return {
            **new,
            "t": min(new["t"], old["t"]),
            "g": {**old["g"], **new["g"]},
            "f": {**old["f"], **new["f"]},
        }

    # -- the checks ------------------------------------------------------------------

    def usable(self, stamp: float, gens: Mapping[str, str], policy: Policy) -> bool:
        """The freshness rule for *policy* (offline: any age, any generation; a stale
        fallback: any generation, no older than its limit)."""
        if policy.offline:
            return True
        if policy.mode == _STALE:
            return stamp + policy.max_age > _time()
        if gens is UNCONFIRMED or _MOVED in gens:
            return False
        return self.freshness.usable(stamp, gens, policy.max_age)

    def still_current(self, gens: Mapping[str, str]) -> bool:
        """Whether *gens* have not moved (no new read of the clock; for merges)."""
        if gens is UNCONFIRMED or _MOVED in gens:
            return False
        return self.freshness.unchanged(gens, refresh=False)

    def _gens_for(self, deps: Iterable[str]) -> tuple[dict[str, str], _Before]:
        """Current tokens of *deps*, read before a request, and what else was known then.

        Every type this process has met is read along (in the same read), so that types an
        answer turns out to link to can be checked against their tokens from before it.
        """
        deps = list(deps)
        asked = time.time_ns()
        names = list(dict.fromkeys(deps + self.freshness.seen_types()))
        tokens = self.freshness.current(names)
        return {name: tokens[name] for name in deps}, (asked, tokens, self.freshness.clock_seen)

    def _complete(self, gens: dict[str, str], before: _Before, extra: Iterable[str]) -> None:
        """Add generations an answer turned out to depend on (the types its rows link to).

        They are read after the request.  A token that differs from the one read before
        the request, or (for a type not met before) one made after the request was sent,
        less a margin for other hosts' clocks, means that type moved meanwhile: the answer
        is marked never to be used again.  Except a first token another process introduced
        meanwhile while no generation at all moved (the clock is the one read before): no
        change can have come between, and a farm whose processes start together keeps
        its answers.
        """
        extra = [name for name in extra if name not in gens]
        if not extra:
            return
        asked, known, clock = before
        created: set[str] = set()
        tokens = self.freshness.current(extra, created=created)
        gens.update(tokens)
        limit = asked - _SKEW_NS
        quiet = clock is not None and self.freshness.clock_seen == clock
        for name, token in tokens.items():
            if name in known:
                moved = known[name] != token
            elif name in created or token_time(token) <= limit:
                moved = False
            else:
                moved = not (quiet and is_introduced(token))
            if moved:
                gens[_MOVED] = "~"
                return

    # -- find ------------------------------------------------------------------------

    def find_cached(
        self, key_rest: str, entity_type: str, policy: Policy
    ) -> Optional[list[Entity]]:
        """The short way for an answer this process already built and may still use."""
        memory = self.layout.memory
        if memory is None or policy.mode != "cached" or policy.bypass:
            return None
        freshness = self.freshness
        epoch = freshness.epoch
        memo = self._keys_memo
        key = memo.get(key_rest)
        if key is None or key[0] != epoch:
            if len(memo) > 4096:
                memo.clear()
            key = memo[key_rest] = (epoch, self.data_key("q", entity_type, key_rest))
        try:
            answer = memory.get(key[1])
        except Exception:  # absent, or a broken memory layer: the long way says which
            return None
        if answer.__class__ is not Answer:
            return None
        entities = answer.entities
        gens = answer.gens
        if entities is None or answer.t + policy.max_age <= _time() or _MOVED in gens:
            return None
        if not freshness.unchanged(gens) or freshness.epoch != epoch:
            return None
        self.stats.hits["query"] += 1
        return list(entities)

    def find(
        self,
        key_rest: str,
        entity_type: str,
        deps: Callable[[], Sequence[str]],
        ask: Callable[[], list[dict[str, Any]]],
        policy: Policy,
        local: Optional[Callable[[Policy], Optional[list[Entity]]]] = None,
    ) -> list[Entity]:
        """A ``find`` answer: from memory, from a record, or from ShotGrid (once).

        *deps* gives the types the answer depends on (asked only on a miss).  *local*,
        when given, may answer a miss without ShotGrid (from a warmed snapshot): it
        returns the entities, or ``None`` when it cannot answer this call.
        """
        hint: list[str] = []
        if policy.reads or policy.offline:
            for _ in range(2):
                epoch = self.freshness.epoch
                key = self.data_key("q", entity_type, key_rest)
                found = self._cached_find(key, entity_type, policy, hint)
                if found is not None:
                    self.stats.hits["query"] += 1
                    return found
                if self.freshness.epoch == epoch:
                    break
            self.stats.misses["query"] += 1
        if local is not None and not policy.bypass:
            answered = local(policy)
            if answered is not None:
                return answered
        if policy.offline:
            return []
        key = self.data_key("q", entity_type, key_rest)
        # The types an earlier answer turned out to depend on are read before asking too.
        wanted = list(dict.fromkeys(list(deps()) + [n for n in hint if n != _MOVED]))

        def fill() -> Answer:
            return self._ask_find(key, entity_type, wanted, ask, policy)

        def check() -> Optional[Answer]:
            # Another process's fill, once its record is there.
            entities = self._cached_find(key, entity_type, policy)
            if entities is None:
                return None
            return self._memory_get(key) or Answer(_time(), {}, entities)

        def leased() -> Answer:
            nonlocal key
            key = self._agreed_key(key)
            return self.leases.run(key, fill, check)

        try:
            answer = (
                self.flights.run(key, leased if policy.reads else fill) if policy.writes else fill()
            )
        except Exception as error:
            stale = self._stale(
                error, policy, lambda limit: self._cached_find(key, entity_type, limit)
            )
            if stale is None:
                raise
            return stale  # type: ignore[no-any-return]
        assert answer.entities is not None
        return list(answer.entities)

    def _cached_find(
        self,
        key: str,
        entity_type: str,
        policy: Optional[Policy],
        hint: Optional[list[str]] = None,
    ) -> Optional[list[Entity]]:
        """The entities of a usable cached answer (``policy=None``: any age, for fallbacks).

        *hint* receives the generation names of an answer found but not usable.
        """
        answer = self._memory_get(key)
        any_age = policy is None or policy.offline
        if policy is not None and policy.mode == _STALE:
            any_age = False
        if answer is not None and answer.entities is not None:
            if any_age or self.usable(answer.t, answer.gens, policy):  # type: ignore[arg-type]
                return list(answer.entities)
            if hint is not None:
                hint.extend(answer.gens)
        # One pause of the collector from reading the record to dropping its rows: it then
        # runs once, over the entities that stay, not over the decoded rows as well.
        with no_gc(ANY_SIZE):
            record = self._store_get(key, ("q",))
            if record is None or record["T"] != entity_type:
                return None
            if hint is not None:
                hint.extend(record["g"])
            if not any_age and not self.usable(record["t"], record["g"], policy):  # type: ignore[arg-type]
                return None
            boxes = record.get("c")
            if boxes.__class__ is not list or not all(b.__class__ is str for b in boxes):
                boxes = None
            links = (record["L"], record["l"]) if "l" in record else None
            entities = self.identity.merge_rows(
                entity_type, record["r"], record["g"], record["t"], containers=boxes, links=links
            )
            answer = Answer(record["t"], record["g"], entities)
            del record
        self._memory_set(key, answer)
        return list(entities)

    def _ask_find(
        self,
        key: str,
        entity_type: str,
        deps: Sequence[str],
        ask: Callable[[], list[dict[str, Any]]],
        policy: Policy,
    ) -> Answer:
        if policy.bypass:
            gens: dict[str, str] = dict(UNCONFIRMED)
            before = _NOTHING_BEFORE
        else:
            gens, before = self._gens_for(deps)
            key = self._current_key(key)
        number = self.identity.begin()
        try:
            stamp = _time()
            rows = ask()
            if not policy.bypass:
                self._complete(gens, before, _linked_types(rows))
            deps_map: Mapping[str, str] = UNCONFIRMED if policy.bypass else gens
            boxes = container_fields(rows)
            entities = self.identity.merge_rows(
                entity_type, rows, deps_map, stamp, number=number, containers=boxes
            )
        finally:
            self.identity.end(number)
        answer = Answer(stamp, gens, entities)
        if policy.writes:
            self._memory_set(key, answer)
            record = {
                "v": FORMAT_VERSION,
                "k": "q",
                "t": stamp,
                "g": gens,
                "T": entity_type,
                "r": rows,
                "c": boxes,
            }
            self.put({key: record})
        return answer

    # -- other values ----------------------------------------------------------------

    def value(
        self,
        kind: str,
        name: str,
        key_rest: str,
        deps: Sequence[str],
        ask: Callable[[], Any],
        policy: Policy,
        copy: Callable[[Any], Any],
        local: Optional[Callable[[Policy], Optional[tuple[Any]]]] = None,
    ) -> Any:
        """A ``summarize`` or schema answer, cached whole like a ``find``.

        *local* may answer a miss without ShotGrid: ``(value,)``, or ``None``.
        """
        key = self.data_key(kind, name, key_rest)
        if policy.reads or policy.offline:
            found = self._cached_value(key, policy)
            if found is not None:
                self.stats.hits["query"] += 1
                return copy(found[0])
            self.stats.misses["query"] += 1
        if local is not None and not policy.bypass:
            answered = local(policy)
            if answered is not None:
                return copy(answered[0])
        if policy.offline:
            return None
        key = self.data_key(kind, name, key_rest)

        def fill() -> Answer:
            nonlocal key
            gens, _ = ({}, 0) if policy.bypass else self._gens_for(deps)
            key = self._current_key(key)
            stamp = _time()
            result = ask()
            answer = Answer(stamp, gens, value=result)
            if policy.writes:
                self._memory_set(key, answer)
                record = {"v": FORMAT_VERSION, "k": "v", "t": stamp, "g": gens, "d": result}
                self.put({key: record})
            return answer

        def check() -> Optional[Answer]:
            found = self._cached_value(key, policy)
            return None if found is None else Answer(_time(), {}, value=found[0])

        def leased() -> Answer:
            nonlocal key
            key = self._agreed_key(key)
            return self.leases.run(key, fill, check)

        try:
            answer = (
                self.flights.run(key, leased if policy.reads else fill) if policy.writes else fill()
            )
        except Exception as error:
            stale = self._stale(error, policy, lambda limit: self._cached_value(key, limit))
            if stale is None:
                raise
            return copy(stale[0])
        return copy(answer.value)

    def _cached_value(self, key: str, policy: Optional[Policy]) -> Optional[tuple[Any]]:
        any_age = policy is None or (policy.offline and policy.mode != _STALE)
        answer = self._memory_get(key)
        if (
            answer is not None
            and answer.entities is None
            and (any_age or self.usable(answer.t, answer.gens, policy))  # type: ignore[arg-type]
        ):
            return (answer.value,)
        record = self._store_get(key, ("v",))
        if record is None:
            return None
        if not any_age and not self.usable(record["t"], record["g"], policy):  # type: ignore[arg-type]
            return None
        self._memory_set(key, Answer(record["t"], record["g"], value=record["d"]))
        return (record["d"],)

    # -- stale_if_error --------------------------------------------------------------

    def _stale(
        self, error: Exception, policy: Policy, cached: Callable[[Policy], Any]
    ) -> Optional[Any]:
        """A stored answer whatever its generations, when *error* is an outage and *policy*
        allows it: of any age (``stale_if_error=True``) or no older than that many seconds."""
        allowed = policy.stale_if_error
        if policy.mode != "cached" or policy.bypass or not allowed or not is_unavailable(error):
            return None
        limit = math.inf if allowed is True else float(allowed)
        found = cached(Policy(mode=_STALE, max_age=limit))
        if found is None:
            return None
        self.stats.stale_served += 1
        log.warning(
            "ShotGrid unavailable (%s: %s); serving a stale cached answer",
            type(error).__name__,
            error,
        )
        return found

    # -- entities --------------------------------------------------------------------

    def entity_key(self, entity_type: str, entity_id: int) -> str:
        """The key of one entity's own record."""
        return self.data_key("e", entity_type, entity_id)

    def live(self, entity: Optional[Entity], policy: Policy) -> bool:
        """Whether an entity in memory may answer a ``get`` (loaded, confirmed, fresh)."""
        if entity is None or entity._deps is None:
            return False
        if policy.offline:
            return entity._t > 0 or entity._exists is False
        if entity._t <= 0 and entity._exists is not False:
            return False
        stamp = entity._t if entity._t > 0 else _time()
        return self.usable(stamp, entity._deps, policy)

    def from_records(
        self, entity_type: str, ids: list[int], policy: Policy
    ) -> dict[int, Optional[Entity]]:
        """Entities (or ``None`` for retired ones) whose own records are usable."""
        if not ids:
            return {}
        keys = {self.entity_key(entity_type, i): i for i in ids}
        found = self._store_get_many(list(keys), ("e", "x"))
        out: dict[int, Optional[Entity]] = {}
        for key, record in found.items():
            entity_id = keys[key]
            if record["T"] != entity_type or record["i"] != entity_id:
                continue
            if not self.usable(record["t"], record["g"], policy):
                continue
            if record["k"] == "x":
                out[entity_id] = None
                known = self.identity.get(entity_type, entity_id)
                if known is not None:
                    known._exists = False
                continue
            rows = [dict(record["f"], type=entity_type, id=entity_id)]
            (entity,) = self.identity.merge_rows(entity_type, rows, record["g"], record["t"])
            out[entity_id] = entity
        self.stats.hits["cache"] += len(out)
        self.stats.misses["cache"] += len(ids) - len(out)
        return out

    def fetch_ids(
        self,
        entity_type: str,
        ids: list[int],
        fields: list[str],
        policy: Policy,
        store: bool = True,
    ) -> dict[int, Optional[Entity]]:
        """Ask ShotGrid for *fields* of *ids* (one request, paged, for up to
        :data:`IDS_PER_REQUEST` ids); merge and store the records."""
        out: dict[int, Optional[Entity]] = {}
        for start in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[start : start + IDS_PER_REQUEST]
            # Its own buckets, and the types its deep fields read through.
            deps = [bucket_name(entity_type, i) for i in chunk] + deep_types(fields)
            if policy.bypass:
                gens: dict[str, str] = dict(UNCONFIRMED)
                before = _NOTHING_BEFORE
            else:
                gens, before = self._gens_for(deps)
            filters = [["id", "in", chunk]] if len(chunk) > 1 else [["id", "is", chunk[0]]]
            number = self.identity.begin()
            try:
                stamp = _time()
                try:
                    rows = self.requests("find", entity_type, filters, fields)
                except Exception as error:
                    stale = self._stale(
                        error,
                        policy,
                        lambda limit, ids=chunk: self._stale_records(entity_type, ids, limit),  # type: ignore[misc]
                    )
                    if stale is None:
                        raise
                    out.update(stale)
                    continue
                if not policy.bypass:
                    self._complete(gens, before, _linked_types(rows))
                deps_map: Mapping[str, str] = UNCONFIRMED if policy.bypass else gens
                entities = self.identity.merge_rows(
                    entity_type, rows, deps_map, stamp, over=True, number=number
                )
            finally:
                self.identity.end(number)
            for entity in entities:
                out[entity.id] = entity
            gone = [i for i in chunk if i not in out]
            for entity_id in gone:
                out[entity_id] = None
                known = self.identity.get(entity_type, entity_id)
                if known is not None:
                    known._exists = False
                    known._deps = gens
            if store and policy.writes:
                self.store_entities(entities)
                self.store_retired(entity_type, gone, gens, stamp)
        return out

    def _stale_records(
        self, entity_type: str, ids: list[int], policy: Policy
    ) -> Optional[dict[int, Any]]:
        """Stored records of every one of *ids* usable under *policy* (else ``None``)."""
        found = self.from_records(entity_type, ids, policy)
        return found if len(found) == len(set(ids)) else None

    def store_entities(self, entities: Iterable[Entity]) -> None:
        """Write each confirmed entity's own record (what it holds, as of when it was asked)."""
        mapping: dict[str, Any] = {}
        with self.identity.lock:
            for entity in entities:
                deps = entity._deps
                if deps is None or deps is UNCONFIRMED or _MOVED in deps or entity._t <= 0:
                    continue
                if entity._local:
                    continue  # what a user merged is this session's, not the cache's
                fields = {
                    name: plain(value)
                    for name, value in dict.items(entity)
                    if name != "type" and name != "id"
                }
                entity._stored = deps
                entity_type, entity_id = entity._key
                mapping[self.entity_key(entity_type, entity_id)] = {
                    "v": FORMAT_VERSION,
                    "k": "e",
                    "t": entity._t,
                    "g": dict(deps),
                    "T": entity_type,
                    "i": entity_id,
                    "f": fields,
                }
        self.put(mapping, self._keep_richer)

    def store_retired(
        self, entity_type: str, ids: Iterable[int], gens: Mapping[str, str], stamp: float
    ) -> None:
        """Write retired markers for *ids* (checked against *gens*)."""
        if gens is UNCONFIRMED or _MOVED in gens:
            return
        mapping = {
            self.entity_key(entity_type, i): {
                "v": FORMAT_VERSION,
                "k": "x",
                "t": stamp,
                "g": dict(gens),
                "T": entity_type,
                "i": i,
            }
            for i in ids
        }
        self.put(mapping)

    def discard(self, keys: Iterable[str]) -> None:
        """Remove records (best effort) from every layer."""
        store = self._store()
        for key in keys:
            for layer in ([store] if store is not None else []) + (
                [self.layout.memory] if self.layout.memory is not None else []
            ):
                try:
                    layer.remove(key)
                except Exception:  # absent, or a broken layer: nothing to undo
                    continue


_ANY_AGE = Policy(mode="offline")
