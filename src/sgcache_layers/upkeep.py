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

from .answers import Answers
from .entity import Entity
from .freshness import Freshness
from .identity import UNCONFIRMED, IdentityMap, link_types, links_in
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
            if keep and entity._deps is not None and entity._deps is not UNCONFIRMED:
                deps: Mapping[str, str] = {**entity._deps, **clean}
            else:
                keep = False
                deps = dict(clean)
                for name in [n for n in dict.keys(entity) if n not in result]:
                    if name not in ("type", "id"):
                        dict.__delitem__(entity, name)
            entity._deps = deps
            identity.merge_fields(entity, result, over=True, deps=deps)
            entity._deps = deps
            entity._exists = True
            if not keep or entity._t <= 0:
                entity._t = _time()
            identity.mark_written(entity, [n for n in result if n not in ("type", "id")])

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
        if created:
            buckets = [bucket_name(e.type, e.id) for e in created]
            new, _ = self.freshness.move(buckets)
            for entity in created:
                name = bucket_name(entity.type, entity.id)
                entity._deps = {**(entity._deps or {}), name: new[name]}
        self.answers.store_entities(stored + created)
        return out
