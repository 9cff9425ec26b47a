"""Entities and what hangs off them: ``get`` by id, fetching fields, important fields,
backrefs, hierarchies and whether entities still exist.

:class:`Graph` is the part of a session that works entity by entity rather than query by
query.  It reads entities' own records and asks ShotGrid through
:class:`~sgcache_layers.answers.Answers`, so the same freshness rule holds; what counts as
important and which field is a type's parent are the owner's (the session's class
attributes, which a subclass can change).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

from .answers import Answers, Policy
from .entity import NOT_SET, Entity
from .identity import IdentityMap
from .query import normalise_fields

if TYPE_CHECKING:
    from .session import Session

__all__ = ["IMPORTANT_FIELDS", "IMPORTANT_FOR_ALL", "PARENT_FIELDS", "Graph"]

#: Fields fetched for every entity ``get`` or ``fetch_core`` loads (sgsession's).
IMPORTANT_FOR_ALL: tuple[str, ...] = ("updated_at",)
#: Extra fields fetched per type by ``get`` and ``fetch_core``.
IMPORTANT_FIELDS: dict[str, tuple[str, ...]] = {
    "Project": ("name",),
    "Sequence": ("code", "project"),
    "Shot": ("code", "sg_sequence", "sg_status_list", "project"),
    "Asset": ("code", "sg_asset_type", "sg_status_list", "project"),
    "Step": ("code", "short_name", "entity_type"),
    "Task": ("content", "step", "entity", "sg_status_list", "project"),
    "Version": ("code", "entity", "sg_task", "sg_status_list", "project"),
    "PublishedFile": ("code", "entity", "task", "version_number", "project"),
    "HumanUser": ("login", "name"),
    "ApiUser": ("firstname",),
}
#: The field that points at each type's parent, for ``fetch_heirarchy``.
PARENT_FIELDS: dict[str, Optional[str]] = {
    "Project": None,
    "Sequence": "project",
    "Shot": "sg_sequence",
    "Asset": "project",
    "Task": "entity",
    "Version": "entity",
    "PublishedFile": "entity",
    "Note": "project",
}


class Graph:
    """The entity-by-entity half of a session (see the module docstring)."""

    def __init__(self, owner: Session, identity: IdentityMap, answers: Answers) -> None:
        self.owner = owner
        self._identity = identity
        self._answers = answers

    def _policy(self) -> Policy:
        return self.owner._policy()

    def get_many(
        self, entity_type: str, ids: list[int], fetch: bool, policy: Policy
    ) -> dict[int, Optional[Entity]]:
        """Entities by id (``None`` for absent ones): from memory, records, or ShotGrid."""
        answers = self._answers
        found: dict[int, Optional[Entity]] = {}
        if policy.reads or policy.offline:
            unstored: list[Entity] = []
            for entity_id in ids:
                entity = self._identity.get(entity_type, entity_id)
                if answers.live(entity, policy):
                    assert entity is not None
                    found[entity_id] = None if entity._exists is False else entity
                    if entity._stored is not entity._deps and entity._exists:
                        unstored.append(entity)
            if unstored and policy.writes:
                # Known from an answer: leave its own record for other processes' gets.
                answers.store_entities(unstored)
            wanted = [i for i in ids if i not in found]
            found.update(answers.from_records(entity_type, wanted, policy))
        wanted = [i for i in ids if i not in found]
        if wanted and not policy.offline and fetch:
            known: set[str] = set()
            for entity_id in wanted:
                entity = self._identity.get(entity_type, entity_id)
                if entity is not None:
                    known.update(n for n in dict.keys(entity) if "." not in n)
            fields = self.core_fields(entity_type, known)
            found.update(answers.fetch_ids(entity_type, wanted, fields, policy))
        elif wanted and not fetch and not policy.offline:
            for entity_id in wanted:
                found[entity_id] = self._identity.entity(entity_type, entity_id)
        return found

    def core_fields(self, entity_type: str, known: Iterable[str] = ()) -> list[str]:
        """Important fields of a type plus the fields an entity already holds.

        ``name`` is left out unless important: on most types it only arrived as a link's
        display name and is not a field ShotGrid could return.
        """
        owner = self.owner
        names = set(owner.important_fields_for_all)
        names.update(owner.important_fields.get(entity_type, ()))
        names.update(n for n in known if n not in ("type", "id", "name"))
        return sorted(names)

    def populate_field(self, entity: Entity, name: str) -> Any:
        """The value of a field *entity* lacks, fetched when the owner auto-populates."""
        if not self.owner.auto_populate:
            return NOT_SET
        self.fetch([entity], [name])
        try:
            return dict.__getitem__(entity, name)
        except KeyError:
            if self.owner.mode == "offline":
                return NOT_SET
            if entity._exists is False:
                raise KeyError(
                    f"{entity.type} {entity.id} is retired or does not exist, so it has no "
                    f"field {name!r}"
                ) from None
            raise KeyError(
                f"{entity.type} {entity.id} has no field {name!r} (ShotGrid did not return it)"
            ) from None

    def fetch(self, entities: Iterable[Entity], fields: Iterable[str], force: bool = False) -> None:
        """Make sure *entities* hold *fields*, asking ShotGrid only for what is missing."""
        names = normalise_fields(list(fields))
        policy = self._policy()
        by_type: dict[str, list[Entity]] = {}
        for entity in entities:
            if force or any(not dict.__contains__(entity, n) for n in names):
                by_type.setdefault(entity.type, []).append(entity)
        if not by_type or not names:
            return
        answers = self._answers
        for entity_type, group in by_type.items():
            if (policy.reads or policy.offline) and not force:
                answers.from_records(entity_type, [e.id for e in group], policy)
                group = [e for e in group if any(not dict.__contains__(e, n) for n in names)]
            if not group or policy.offline:
                continue
            wanted = sorted(set(names) | {"updated_at"})
            answers.fetch_ids(entity_type, [e.id for e in group], wanted, policy)

    def fetch_core(self, entities: Iterable[Entity]) -> None:
        """Fetch the important fields of *entities* and of the entities they link to."""
        entities = list(entities)
        by_type: dict[str, list[Entity]] = {}
        for entity in entities:
            by_type.setdefault(entity.type, []).append(entity)
        linked: list[Entity] = []
        for entity_type, group in by_type.items():
            names = self.core_fields(entity_type)
            self.fetch(group, names)
            for entity in group:
                for name in names:
                    value = dict.get(entity, name)
                    if isinstance(value, Entity):
                        linked.append(value)
        second: dict[str, list[Entity]] = {}
        for entity in linked:
            second.setdefault(entity.type, []).append(entity)
        for entity_type, group in second.items():
            self.fetch(group, self.core_fields(entity_type))

    def fetch_backrefs(self, entities: Iterable[Entity], entity_type: str, field_name: str) -> None:
        """Find every *entity_type* whose *field_name* links to one of *entities*."""
        links = [e.minimal for e in entities]
        if links:
            self.owner.find(entity_type, [[field_name, "in", links]], [field_name])

    def fetch_heirarchy(self, entities: Iterable[Entity]) -> list[Entity]:
        """Fetch parents up to the project; return every entity involved."""
        involved: dict[tuple[str, int], Entity] = {}
        current = list(entities)
        while current:
            for entity in current:
                involved[entity.key] = entity
            by_field: dict[tuple[str, str], list[Entity]] = {}
            for entity in current:
                parent_field = self.owner.parent_fields.get(entity.type)
                if parent_field:
                    by_field.setdefault((entity.type, parent_field), []).append(entity)
            for (_, parent_field), group in by_field.items():
                self.fetch(group, [parent_field])
            parents = [e.parent(fetch=False) for e in current]
            current = list(
                {p.key: p for p in parents if p is not None and p.key not in involved}.values()
            )
        return list(involved.values())

    def filter_exists(
        self, entities: Iterable[Entity], check: bool = True, force: bool = False
    ) -> set[Entity]:
        """The entities that exist (are not retired), or whose state is unknown."""
        entities = list(entities)
        if check and self.owner.mode != "offline":
            by_type: dict[str, list[Entity]] = {}
            for entity in entities:
                if force or entity._exists is None:
                    by_type.setdefault(entity.type, []).append(entity)
            for entity_type, group in by_type.items():
                ids = [e.id for e in group]
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    rows = self._answers.requests("find", entity_type, [["id", "in", chunk]], [])
                    alive = {row["id"] for row in rows}
                    for entity in group:
                        if entity.id in chunk:
                            entity._exists = entity.id in alive
        return {e for e in entities if e._exists is not False}
