"""Entities and what hangs off them: ``get`` by id, fetching fields, important fields,
backrefs, hierarchies and whether entities still exist.

:class:`Graph` is the part of a session that works entity by entity rather than query by
query.  It reads entities' own records and asks ShotGrid through
:class:`~sgcache_layers.answers.Answers`, so the same freshness rule holds; what counts as
important and which field is a type's parent are the owner's (the session's class
attributes, which a subclass can change).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Optional

from .answers import Answers, Policy
from .entity import NOT_SET, Entity, RetiredEntityError
from .identity import IdentityMap, is_link, links_in
from .query import normalise_fields
from .records import bucket_name

#: How often a field that newer data keeps dropping is fetched again before giving up.
POPULATE_ATTEMPTS = 5

if TYPE_CHECKING:
    from .session import Session

__all__ = ["IMPORTANT_FIELDS", "IMPORTANT_FOR_ALL", "IMPORTANT_LINKS", "PARENT_FIELDS", "Graph"]

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
#: Link fields whose linked entities' important fields come along, by the types they may
#: link to: a Task brings ``entity.Shot.code``, ``step.Step.short_name`` and so on.
IMPORTANT_LINKS: dict[str, dict[str, tuple[str, ...]]] = {
    "Sequence": {"project": ("Project",)},
    "Shot": {"sg_sequence": ("Sequence",), "project": ("Project",)},
    "Asset": {"project": ("Project",)},
    "Task": {"entity": ("Shot", "Asset"), "step": ("Step",), "project": ("Project",)},
    "Version": {"entity": ("Shot", "Asset"), "sg_task": ("Task",), "project": ("Project",)},
    "PublishedFile": {"entity": ("Shot", "Asset"), "task": ("Task",), "project": ("Project",)},
    "Note": {"project": ("Project",)},
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

    def merge(self, data: Any, over: Optional[bool]) -> Any:
        """``Session.merge``: *data*'s top entities count as loaded now, against the
        generations of their types and buckets as they are now."""
        names: set[str] = set()
        for entity_type, entity_id in links_in(data):
            names.update((entity_type, bucket_name(entity_type, entity_id)))
        deps = self._answers.freshness.current(sorted(names)) if names else None
        return self._identity.merge(data, over, deps, time.time())

    # -- what is important -----------------------------------------------------------

    def own_fields(self, entity_type: str) -> list[str]:
        """The important fields of *entity_type* itself, with its parent field."""
        owner = self.owner
        names = dict.fromkeys(owner.important_fields_for_all)
        names.update(dict.fromkeys(owner.important_fields.get(entity_type, ())))
        parent = owner.parent_fields.get(entity_type)
        if parent:
            names[parent] = None
        return list(names)

    def important_names(self, entity_type: str) -> list[str]:
        """Own important fields plus those of the linked entities (sgsession's defaults).

        For each important link (``Task.entity`` to a Shot or an Asset) the linked type's
        important fields and links come along as deep fields: ``entity.Shot.code``,
        ``entity.Shot.sg_sequence``, ... - one level ahead, so a hierarchy needs one
        request per level it cannot see yet.
        """
        owner = self.owner
        names = dict.fromkeys(self.own_fields(entity_type))
        for field, link_types in owner.important_links.get(entity_type, {}).items():
            names[field] = None
            for link_type in link_types:
                remote = self.own_fields(link_type)
                remote += list(owner.important_links.get(link_type, {}))
                for name in remote:
                    names[f"{field}.{link_type}.{name}"] = None
        return list(names)

    def with_important(self, entity_type: str, fields: Optional[Sequence[str]]) -> list[str]:
        """*fields* plus :meth:`important_names` (the ``add_important`` option)."""
        names = dict.fromkeys(normalise_fields(list(fields or ())))
        names.update(dict.fromkeys(self.important_names(entity_type)))
        return list(names)

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

    # -- ownership -------------------------------------------------------------------

    def own(self, entities: Iterable[Any], method: str) -> list[Entity]:
        """*entities* as a list, each checked to be this session's own instance."""
        owner = self.owner
        out: list[Entity] = []
        for entity in entities:
            if isinstance(entity, Entity):
                if entity.session is owner:
                    out.append(entity)
                    continue
                raise ValueError(
                    f"{method}() was given {entity.type} {entity.id} of another session; "
                    "its fields would land in this session's own instance and not in it. "
                    "Use session.merge(entity) to get this session's instance"
                )
            if is_link(entity):
                raise ValueError(
                    f"{method}() was given a plain dict for {entity['type']} {entity['id']}, "
                    "not an entity of this session; fields fetched for it would not reach it. "
                    "Use session.merge(data) to get this session's instance"
                )
            raise TypeError(f"{method}() takes entities, not {type(entity).__name__}")
        return out

    # -- get -------------------------------------------------------------------------

    def get_many(
        self,
        entity_type: str,
        ids: list[int],
        fetch: bool,
        policy: Policy,
        fields: Sequence[str] = (),
    ) -> dict[int, Optional[Entity]]:
        """Entities by id (``None`` for absent ones): from memory, records, or ShotGrid.

        *fields* are fetched too when an entity lacks them (and *fetch* allows).
        """
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
            known: set[str] = set(fields)
            for entity_id in wanted:
                entity = self._identity.get(entity_type, entity_id)
                if entity is not None:
                    known.update(n for n in dict.keys(entity) if "." not in n)
            names = self.core_fields(entity_type, known)
            found.update(answers.fetch_ids(entity_type, wanted, names, policy))
        elif wanted and not fetch and not policy.offline:
            for entity_id in wanted:
                found[entity_id] = self._identity.entity(entity_type, entity_id)
        if fields and fetch and not policy.offline:
            lacking = [
                e for e in found.values() if e is not None and any(n not in e for n in fields)
            ]
            if lacking:
                self.fetch(lacking, fields)
        return found

    # -- fields ----------------------------------------------------------------------

    def populate_field(self, entity: Entity, name: str) -> Any:
        """The value of a field *entity* lacks, fetched when the owner auto-populates."""
        if not self.owner.auto_populate:
            return NOT_SET
        identity = self._identity
        for _attempt in range(POPULATE_ATTEMPTS):
            drops = identity.drops
            self.fetch([entity], [name])
            try:
                return dict.__getitem__(entity, name)
            except KeyError:
                pass
            if self.owner.mode == "offline":
                return NOT_SET
            if entity._exists is False:
                raise RetiredEntityError(entity, name)
            if identity.drops == drops:
                raise KeyError(
                    f"{entity.type} {entity.id} has no field {name!r} (ShotGrid did not return it)"
                )
            # Another thread merged a newer row meanwhile, which dropped the fetched
            # value as doubtful: ask again rather than report a field ShotGrid has.
        raise KeyError(
            f"{entity.type} {entity.id}: field {name!r} was fetched {POPULATE_ATTEMPTS} "
            "times and each time replaced by newer data before it could be read"
        )

    def fetch(
        self,
        entities: Iterable[Entity],
        fields: Iterable[str],
        force: bool = False,
        strict: bool = False,
    ) -> None:
        """Make sure *entities* hold *fields*, asking ShotGrid only for what is missing.

        *strict* raises :class:`~sgcache_layers.entity.RetiredEntityError` for an entity
        ShotGrid reports retired (the public ``fetch``); the session's own callers are lenient.
        """
        names = normalise_fields(list(fields))
        policy = self._policy()
        entities = list(entities)
        by_type: dict[str, list[Entity]] = {}
        for entity in entities:
            if force or any(n not in entity for n in names):
                by_type.setdefault(entity.type, []).append(entity)
        if by_type and names:
            answers = self._answers
            for entity_type, group in by_type.items():
                if (policy.reads or policy.offline) and not force:
                    answers.from_records(entity_type, [e.id for e in group], policy)
                    group = [e for e in group if any(n not in e for n in names)]
                if not group or policy.offline:
                    continue
                wanted = sorted(set(names) | {"updated_at"})
                answers.fetch_ids(entity_type, [e.id for e in group], wanted, policy)
        if strict:
            for entity in entities:
                if entity._exists is False:
                    missing = [n for n in names if n not in entity]
                    if missing:
                        raise RetiredEntityError(entity, missing[0])

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
        self._identity.index_backrefs()

    def fetch_heirarchy(self, entities: Iterable[Entity]) -> list[Entity]:
        """Every entity from *entities* up to their projects, with their important fields.

        One level at a time, one request per type that lacks something: each request also
        brings the important fields of the parents (deep fields one link ahead), so a level
        that the one below brought complete costs nothing.  Tasks on Shots and Assets need
        at most three requests for any number of tasks.  Backrefs are indexed at the end.
        """
        involved: dict[tuple[str, int], Entity] = {}
        level = list(dict.fromkeys(entities))
        parent_fields = self.owner.parent_fields
        while level:
            for entity in level:
                involved[entity.key] = entity
            by_type: dict[str, list[Entity]] = {}
            for entity in level:
                if entity._exists is not False:
                    by_type.setdefault(entity.type, []).append(entity)
            for entity_type, group in by_type.items():
                own = self.own_fields(entity_type)
                lacking = [e for e in group if any(n not in e for n in own)]
                if lacking:
                    self.fetch(lacking, self.important_names(entity_type))
            parents: dict[tuple[str, int], Entity] = {}
            for entity in level:
                field = parent_fields.get(entity.type)
                value = dict.get(entity, field) if field else None
                for parent in value if isinstance(value, list) else (value,):
                    if isinstance(parent, Entity) and parent.key not in involved:
                        parents[parent.key] = parent
            level = list(parents.values())
        self._identity.index_backrefs()
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
                rows = self._answers.requests("find", entity_type, [["id", "in", ids]], [])
                alive = {row["id"] for row in rows}
                for entity in group:
                    entity._exists = entity.id in alive
        return {e for e in entities if e._exists is not False}
