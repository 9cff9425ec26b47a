"""Reading ShotGrid's event log to learn what changed.

Every change on a site writes ``EventLogEntry`` rows whose ``event_type`` is
``Shotgun_<EntityType>_<Action>`` (``New``, ``Change``, ``Retirement``,
``Revival``).  :func:`changes_from_events` turns a page of such rows into the
entity types and entities whose cached data can no longer be trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVENT_FIELDS",
    "SCHEMA_TYPE",
    "Changes",
    "changes_from_events",
    "has_gap",
    "missing_ids",
]

#: Fields a sync asks for on each ``EventLogEntry``.
EVENT_FIELDS = ["event_type", "entity", "meta", "attribute_name", "project"]

#: The pseudo entity type whose generation guards cached schema reads.
SCHEMA_TYPE = "__schema__"

# The "entity types" of events that mean the schema changed: a field
# (``Shotgun_DisplayColumn_New``/``_Change``/``_Retirement``) or a type.  Exact
# names: ``Shotgun_CustomEntity01_Change`` is data, not schema.
_SCHEMA_EVENT_TYPES = {"DisplayColumn", "EntityType", "Schema", "SchemaField"}

# Entity actions ShotGrid logs for data changes.
_DATA_ACTIONS = {"New", "Change", "Retirement", "Revival"}


@dataclass
class Changes:
    """What a run of events touched."""

    types: set[str] = field(default_factory=set)
    entities: set[tuple[str, int]] = field(default_factory=set)
    last_id: int = 0

    def add_link(self, value: Any) -> None:
        """Record the entity (or entities) a link value names."""
        if isinstance(value, Mapping):
            etype, eid = value.get("type"), value.get("id")
            if isinstance(etype, str) and isinstance(eid, int):
                self.types.add(etype)
                self.entities.add((etype, eid))
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.add_link(item)


def _event_target(event_type: str) -> tuple[str, str] | None:
    """``"Shotgun_Shot_Change"`` -> ``("Shot", "Change")``; ``None`` if not a data event."""
    if not event_type.startswith("Shotgun_"):
        return None
    body = event_type[len("Shotgun_") :]
    entity_type, _, action = body.rpartition("_")
    if not entity_type or action not in _DATA_ACTIONS:
        return None
    return entity_type, action


def changes_from_events(events: Iterable[Mapping[str, Any]]) -> Changes:
    """Collect the types and entities a list of ``EventLogEntry`` rows changed."""
    changes = Changes()
    for event in events:
        event_id = event.get("id")
        if isinstance(event_id, int) and event_id > changes.last_id:
            changes.last_id = event_id
        event_type = str(event.get("event_type") or "")
        target = _event_target(event_type)
        if target is None:
            continue
        entity_type, _action = target
        if entity_type in _SCHEMA_EVENT_TYPES:
            changes.types.add(SCHEMA_TYPE)
            continue
        changes.types.add(entity_type)
        meta = event.get("meta")
        entity = event.get("entity")
        entity_id = None
        if isinstance(entity, Mapping):
            entity_id = entity.get("id")
        if entity_id is None and isinstance(meta, Mapping):
            entity_id = meta.get("entity_id")
        if isinstance(entity_id, int):
            changes.entities.add((entity_type, entity_id))
        if isinstance(meta, Mapping):
            # A changed link also changes what the other side's reverse fields hold.
            for key in ("old_value", "new_value", "added", "removed"):
                changes.add_link(meta.get(key))
    return changes


def missing_ids(last_id: int, events: Iterable[Mapping[str, Any]]) -> list[int]:
    """Ids after *last_id*, up to the highest event id seen, that no event carries.

    An id can be missing for good (an event this identity may not see, a rolled
    back transaction) or only for now (a transaction that has not committed yet).
    """
    seen = {e.get("id") for e in events}
    top = max((i for i in seen if isinstance(i, int)), default=last_id)
    return [i for i in range(last_id + 1, top + 1) if i not in seen]


def has_gap(last_id: int, events: Iterable[Mapping[str, Any]]) -> bool:
    """Whether event ids after *last_id* skip a number (events we could not see)."""
    expected = last_id + 1
    for event in events:
        event_id = event.get("id")
        if not isinstance(event_id, int):
            continue
        if event_id != expected:
            return True
        expected += 1
    return False
