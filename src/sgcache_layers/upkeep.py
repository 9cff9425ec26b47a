"""Cache upkeep around writes: what a ``create``/``update``/``delete``/``revive``/``batch``
moves, and what the session knows afterwards.

Every write moves the generations it touches twice: *pending* tokens before its request
is sent (nothing cached against them is ever used, so an answer asked meanwhile cannot
outlive the write) and clean ones after it returns - in a ``finally``, so a lost answer
leaves misses too.  A process killed in between leaves pending tokens, which readers
replace once they expire.  Touched are the written type and the bucket of the written
entity, and the type and bucket of every entity linked in the written data, before and
after (a link also changes the other side's reverse fields and display names).

The written entity keeps what it held if nothing else changed it meanwhile (its
generations were current before the write and nobody moved them during it); otherwise only
what the write returned.  Either way it is confirmed against the new tokens, so the next
``get`` needs no request, and its own record is written for other processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional

from .answers import MOVED, Answers
from .entity import Entity
from .freshness import Freshness
from .identity import UNCONFIRMED, IdentityMap, is_link, link_types, links_in
from .query import QueryError, deep_types
from .records import bucket_name

__all__ = ["Writes"]

_time = time.time


def _names(entity_types: Iterable[str], entities: Iterable[tuple[str, int]]) -> set[str]:
    names = set(entity_types)
    for entity_type, entity_id in entities:
        names.add(entity_type)
        names.add(bucket_name(entity_type, entity_id))
    return names


class _Touch:
    """What one write request touches: generation names and the entities it changes."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.live: dict[tuple[str, int], bool] = {}

    def add(self, entity_type: str, entity_id: Optional[int], data: Any, old: Any) -> None:
        self.names.add(entity_type)
        if entity_id is not None:
            self.names.add(bucket_name(entity_type, entity_id))
        for value in (data, old):
            self.names |= _names(link_types(value), links_in(value))


class Writes:
    """The write half of a session: requests with their upkeep (see the module docstring)."""

    def __init__(
        self,
        *,
        freshness: Freshness,
        identity: IdentityMap,
        answers: Answers,
        request: Callable[..., Any],
        outbound: Callable[[Any], Any],
    ) -> None:
        self.freshness = freshness
        self.identity = identity
        self.answers = answers
        self.request = request
        self.outbound = outbound

    # -- the protocol ----------------------------------------------------------------

    def _live(self, entity: Optional[Entity]) -> bool:
        if entity is None or entity._deps is None or entity._deps is UNCONFIRMED:
            return False
        return self.answers.still_current(entity._deps)

    def _around(
        self, touch: _Touch, send: Callable[[], Any]
    ) -> tuple[Any, dict[str, str], set[str]]:
        """Send a write between a pending and a clean move of what it touches."""
        self.freshness.refresh()
        for key in list(touch.live):
            touch.live[key] = self._live(self.identity.get(*key))
        pending, _ = self.freshness.move(touch.names, pending=True)
        try:
            result = send()
        finally:
            clean, overtaken = self.freshness.move(touch.names, expect=pending)
        return result, clean, overtaken

    def _settle(
        self,
        entity: Entity,
        result: Mapping[str, Any],
        clean: Mapping[str, str],
        keep: bool,
        drop: Iterable[str] = (),
    ) -> None:
        """Merge a write's result into *entity* and confirm it against the clean tokens."""
        identity = self.identity
        with identity.lock:
            for name in drop:
                dict.pop(entity, name, None)
            old: Mapping[str, str] = {}
            if keep and entity._deps is not None and entity._deps is not UNCONFIRMED:
                old = entity._deps
            else:
                keep = False
                entity._local = False
                for name in [n for n in dict.keys(entity) if n not in result]:
                    if name not in ("type", "id"):
                        dict.__delitem__(entity, name)
            entity._deps = deps = dict(clean)
            identity.merge_fields(entity, result, over=True, deps=deps)
            entity._deps = self._confirmed(entity, clean, old)
            entity._exists = True
            if not keep or entity._t <= 0:
                entity._t = _time()
            identity.mark_written(entity, [n for n in result if n not in ("type", "id")])

    # -- arguments -------------------------------------------------------------------

    @staticmethod
    def targets(value: Any, entity_id: Any, method: str) -> list[tuple[str, int]]:
        """The ``(type, id)`` a write is about: ``(type, id)``, an entity, or a list of them."""
        if isinstance(value, str):
            if isinstance(entity_id, bool) or not isinstance(entity_id, int):
                raise TypeError(
                    f"{method}({value!r}, ...) needs an int entity id, not {entity_id!r}"
                )
            return [(value, entity_id)]
        if entity_id is not None:
            raise TypeError(f"{method}() takes (type, id) or an entity, not both")
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        out: list[tuple[str, int]] = []
        for item in items:
            if not is_link(item):
                raise TypeError(
                    f"{method}() takes an entity type and id, an entity or a list of "
                    f"entities, not {item!r:.80}"
                )
            out.append((item["type"], item["id"]))
        return out

    def update_arguments(
        self, value: Any, entity_id: Any, data: Any, fields: Mapping[str, Any]
    ) -> tuple[list[tuple[str, int]], dict[str, Any], bool]:
        """What an ``update`` call writes: its targets, the data, and whether it is a batch.

        ``update(type, id, data)``, ``update(entity, data)``, ``update(entity, **fields)``
        and ``update([entity, ...], **fields)`` (a batch).
        """
        if not isinstance(value, str) and isinstance(entity_id, Mapping):
            if data is not None:
                raise TypeError("update(entity, data) takes the data once")
            entity_id, data = None, entity_id
        if data is not None and not isinstance(data, Mapping):
            raise TypeError(f"update() takes its data as a dict, not {type(data).__name__}")
        values = {**(data or {}), **fields}
        if not values:
            raise QueryError("update() needs at least one field to write")
        targets = self.targets(value, entity_id, "update")
        return targets, values, isinstance(value, (list, tuple))

    def update_many(
        self,
        targets: Sequence[tuple[str, int]],
        data: Mapping[str, Any],
        multi_entity_update_modes: Optional[Mapping[str, str]],
    ) -> list[Any]:
        """The same fields written to many entities: one ``batch``, its entities returned."""
        requests: list[dict[str, Any]] = []
        for entity_type, entity_id in targets:
            request: dict[str, Any] = {
                "request_type": "update",
                "entity_type": entity_type,
                "entity_id": entity_id,
                "data": dict(data),
            }
            if multi_entity_update_modes:
                request["multi_entity_update_modes"] = dict(multi_entity_update_modes)
            requests.append(request)
        return self.batch(requests) if requests else []

    @staticmethod
    def _confirmed(
        entity: Entity, clean: Mapping[str, str], old: Mapping[str, str]
    ) -> dict[str, str]:
        """What a written entity is confirmed against: its own bucket, and the types its
        links and deep fields show - not its whole type, so that writing one shot leaves
        the other shots in memory confirmed.

        A token comes from the write's clean move, else from what the entity was
        confirmed against before; a name with neither (a link only the result brought)
        leaves the entity unconfirmed, to be asked again.
        """
        fields = dict.items(entity)
        names = {bucket_name(*entity._key)}
        names |= link_types({k: v for k, v in fields if k != "type" and k != "id"})
        names.update(deep_types(dict.keys(entity)))
        deps = {**old, **{n: clean[n] for n in names if n in clean}}
        if any(n not in deps for n in names):
            deps[MOVED] = "~"
        return deps

    # -- writes ----------------------------------------------------------------------

    def create(
        self, entity_type: str, data: Mapping[str, Any], return_fields: Optional[Sequence[str]]
    ) -> Entity:
        """``Shotgun.create`` with upkeep."""
        touch = _Touch()
        touch.add(entity_type, None, data, None)
        args: list[Any] = [entity_type, self.outbound(data)]
        if return_fields:
            args.append(list(return_fields))
        result, clean, _ = self._around(touch, lambda: self.request("create", *args))
        entity = self.identity.entity(result["type"], result["id"])
        # The new entity's bucket: no answer about it can predate it, but a "no such
        # entity" can; move it too.
        new, _ = self.freshness.move([bucket_name(entity.type, entity.id)])
        self._settle(entity, result, {**clean, **new}, keep=False)
        self.answers.store_entities([entity])
        return entity

    def update(
        self,
        entity_type: str,
        entity_id: int,
        data: Mapping[str, Any],
        multi_entity_update_modes: Optional[Mapping[str, str]],
    ) -> Entity:
        """``Shotgun.update`` with upkeep."""
        entity = self.identity.get(entity_type, entity_id)
        touch = _Touch()
        old = {k: dict.get(entity, k) for k in data} if entity is not None else None
        touch.add(entity_type, entity_id, data, old)
        touch.live[(entity_type, entity_id)] = False
        kwargs: dict[str, Any] = {}
        if multi_entity_update_modes:
            kwargs["multi_entity_update_modes"] = dict(multi_entity_update_modes)
        result, clean, overtaken = self._around(
            touch,
            lambda: self.request("update", entity_type, entity_id, self.outbound(data), **kwargs),
        )
        if isinstance(result, list):  # Mockgun answers with a list
            result = result[0] if result else {"type": entity_type, "id": entity_id}
        keep = touch.live[(entity_type, entity_id)] and not overtaken
        entity = self.identity.entity(entity_type, entity_id)
        drop = [n for n in dict.keys(entity) if "." in n and n.split(".", 1)[0] in data]
        if multi_entity_update_modes:
            drop += [n for n in multi_entity_update_modes if n not in result]
        self._settle(entity, result, clean, keep, drop)
        self.answers.store_entities([entity])
        return entity

    def delete(self, entity_type: str, entity_id: int) -> bool:
        """``Shotgun.delete`` (retire) with upkeep."""
        entity = self.identity.get(entity_type, entity_id)
        touch = _Touch()
        touch.add(entity_type, entity_id, dict(entity) if entity is not None else None, None)
        result, clean, _ = self._around(
            touch, lambda: self.request("delete", entity_type, entity_id)
        )
        self._retired(entity_type, entity_id, clean)
        return bool(result)

    def _retired(self, entity_type: str, entity_id: int, clean: Mapping[str, str]) -> None:
        entity = self.identity.entity(entity_type, entity_id)
        gens = {name: clean[name] for name in (entity_type, bucket_name(entity_type, entity_id))}
        with self.identity.lock:
            entity._exists = False
            entity._deps = gens
            entity._t = _time()
        self.answers.store_retired(entity_type, [entity_id], gens, _time())

    def revive(self, entity_type: str, entity_id: int) -> bool:
        """``Shotgun.revive`` with upkeep; the entity's fields are asked for again."""
        touch = _Touch()
        touch.add(entity_type, entity_id, None, None)
        result, _, _ = self._around(touch, lambda: self.request("revive", entity_type, entity_id))
        entity = self.identity.get(entity_type, entity_id)
        if entity is not None:
            with self.identity.lock:
                entity._exists = True
                entity._deps = UNCONFIRMED
                entity._t = 0.0
        self.answers.discard([self.answers.entity_key(entity_type, entity_id)])
        return bool(result)

    def batch(self, requests: Sequence[Mapping[str, Any]]) -> list[Any]:
        """``Shotgun.batch`` with the upkeep of each request it holds."""
        touch = _Touch()
        for item in requests:
            kind = item.get("request_type")
            entity_type = str(item.get("entity_type"))
            entity_id = item.get("entity_id")
            entity_id = entity_id if isinstance(entity_id, int) else None
            entity = self.identity.get(entity_type, entity_id) if entity_id is not None else None
            data = item.get("data") or {}
            old: Any = None
            if entity is not None:
                old = dict(entity) if kind == "delete" else {k: dict.get(entity, k) for k in data}
            touch.add(entity_type, entity_id, data, old)
            if kind == "update" and entity_id is not None:
                touch.live[(entity_type, entity_id)] = False
        outbound = [self.outbound(dict(r)) for r in requests]
        results, clean, overtaken = self._around(touch, lambda: self.request("batch", outbound))
        # New entities' buckets move too (see create), before they are confirmed.
        buckets = [
            bucket_name(result["type"], result["id"])
            for item, result in zip(requests, results)
            if item.get("request_type") == "create" and isinstance(result, Mapping)
        ]
        if buckets:
            new, _ = self.freshness.move(buckets)
            clean = {**clean, **new}
        out: list[Any] = []
        stored: list[Entity] = []
        created: list[Entity] = []
        for item, result in zip(requests, results):
            kind = item.get("request_type")
            entity_type = str(item.get("entity_type"))
            if kind in ("create", "update") and isinstance(result, Mapping):
                entity = self.identity.entity(result["type"], result["id"])
                key = (entity.type, entity.id)
                keep = kind == "update" and touch.live.get(key, False) and not overtaken
                data = item.get("data") or {}
                drop = [n for n in dict.keys(entity) if "." in n and n.split(".", 1)[0] in data]
                self._settle(entity, result, clean, keep, drop)
                (created if kind == "create" else stored).append(entity)
                out.append(entity)
            elif kind == "delete":
                entity_id = item.get("entity_id")
                if isinstance(entity_id, int):
                    self._retired(entity_type, entity_id, clean)
                out.append(result)
            else:
                out.append(result)
        self.answers.store_entities(stored + created)
        return out
