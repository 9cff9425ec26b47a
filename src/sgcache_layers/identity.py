"""The identity map: one :class:`~sgcache_layers.entity.Entity` per ``(type, id)``, and how
new data merges into it.

Merge rules (the same at every depth, sgsession's):

* ``over=True`` lets new values win, ``over=False`` keeps what is there and only fills
  gaps, ``over=None`` (the default) lets the side with the newer ``updated_at`` win (the
  new side when either lacks one);
* a link dict becomes the linked entity's instance, and the fields it carries (a display
  ``name``, anything a deep query or a nested dict brought) merge into that instance under
  the same rule; cyclic data merges into entities that reference each other;
* a deep field (``entity.Shot.code``) is kept on the entity and also merged into the
  linked entity (as ``code``);
* lists keep their order and tuples stay tuples;
* a row from a request that started before this session's own write of a field returned
  never replaces that field (the session writes it, the row may predate it).

Freshness travels with the data: each entity remembers the generations and time its fields
were confirmed against (``_deps``, ``_t``).  When a newer answer brings an entity whose
remembered generations have moved since, the fields that answer did not bring are dropped:
they may no longer be true.  Thread safe: every change happens under one lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import itertools
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Callable, Optional

from .entity import Entity, EntityOwner

__all__ = [
    "UNCONFIRMED",
    "IdentityMap",
    "container_fields",
    "is_link",
    "link_types",
    "links_in",
    "copy_value",
    "newer",
    "no_gc",
    "ANY_SIZE",
    "outbound",
]

_MISSING: Any = object()
_ABSENT: Any = object()  # another "no value", never equal to _MISSING
_LINK_KEYS = ("type", "id", "name")
_CONTAINERS = (dict, list, tuple, Entity)

StillCurrent = Callable[[Mapping[str, str]], bool]

#: The generations of an entity whose fields are of unknown freshness (never current).
UNCONFIRMED: Mapping[str, str] = {"~unconfirmed": "~"}


def is_link(value: Any) -> bool:
    """Whether *value* is a mapping shaped like a ShotGrid link (``type`` and an int ``id``)."""
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("type"), str)
        and isinstance(value.get("id"), int)
        and not isinstance(value.get("id"), bool)
    )


def link_types(data: Any) -> set[str]:
    """Entity types linked anywhere inside *data* (a field dict or value)."""
    return {entity_type for entity_type, _ in links_in(data)}


def links_in(data: Any) -> set[tuple[str, int]]:
    """``(type, id)`` of every entity linked anywhere inside *data* (cycles are fine)."""
    found: set[tuple[str, int]] = set()
    seen: set[int] = set()
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, Entity):
            found.add(value.key)
            continue
        if isinstance(value, Mapping):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if is_link(value):
                found.add((value["type"], value["id"]))
            stack.extend(v for k, v in value.items() if k != "type" and k != "id")
        elif isinstance(value, (list, tuple)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            stack.extend(value)
    return found


#: A size for :func:`no_gc` that always pauses the collector (the size is not known yet).
ANY_SIZE = 1 << 62


@contextlib.contextmanager
def no_gc(size: int) -> Iterator[None]:
    """Hold the cyclic garbage collector off while thousands of objects are built.

    Decoding a record and building an answer allocate many objects and none of them is
    garbage; letting the collector scan the growing heap again and again would cost more
    than the work itself.  *size* is how many objects (rows, bytes/100) are coming.
    """
    if size < 200 or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def container_fields(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the fields whose value is a dict, list or tuple in any of *rows*."""
    found: dict[str, None] = {}
    for row in rows:
        for name, value in row.items():
            cls = value.__class__
            if (cls is dict or cls is list or cls is tuple or cls is Entity) and name not in found:
                found[name] = None
    return list(found)


def _deep_column(name: str) -> tuple[str, str, str, str]:
    """``("entity.Shot.code")`` -> ``(name, "entity", "Shot", "code")`` (rest may be deep)."""
    parts = name.split(".", 2)
    if len(parts) != 3:
        return (name, "", "", "")
    return (name, parts[0], parts[1], parts[2])


def outbound(data: Any) -> Any:
    """A copy of *data* as ShotGrid takes it: entities become plain ``{type, id}`` links."""
    if isinstance(data, Entity):
        return data.minimal
    if isinstance(data, Mapping):
        return {k: outbound(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [outbound(v) for v in data]
    return data


def copy_value(value: Any) -> Any:
    """A copy deep enough that callers cannot alter a cached answer."""
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    return value


def newer(new: Any, old: Any) -> bool:
    """Whether data stamped *new* should win over data stamped *old* (``updated_at``)."""
    if new is None or old is None:
        return True
    try:
        return not new < old
    except TypeError:  # naive against aware, or not times at all: cannot tell, take new
        if isinstance(new, _dt.datetime) and isinstance(old, _dt.datetime):
            try:
                return not new.timestamp() < old.timestamp()
            except (OverflowError, ValueError, OSError):
                return True
        return True


class IdentityMap:
    """One entity per ``(type, id)`` for *owner*, with the merge rules of this module.

    *still_current* tells whether generations an entity was confirmed against have not
    moved (the owner's freshness rule, without reading storage again).

    With *weak*, the map holds its entities weakly (a ``WeakValueDictionary`` per type):
    an entity that no answer in the memory layer, no other entity and no user code holds
    is collected, so a long-running process whose memory layer is bounded does not grow
    without bound.  Nothing is lost that a read cannot bring back; only what this session
    alone knew of such an entity (data given to ``merge``) goes with it.  Without it (the
    default) the map keeps every entity in plain dicts, the fastest look-up there is.
    """

    def __init__(self, owner: EntityOwner, still_current: StillCurrent, weak: bool = False) -> None:
        self.owner = owner
        self.still_current = still_current
        self.lock = threading.RLock()
        self.weak = weak
        #: Makes the map of one type's entities by id.
        self._ids: Callable[..., MutableMapping[int, Entity]] = (
            weakref.WeakValueDictionary if weak else dict
        )
        self._by_type: dict[str, MutableMapping[int, Entity]] = {}
        self.backrefs_on = False
        # Fields this session wrote: (type, id) -> {field: request number at return}.
        self._marks: dict[tuple[str, int], dict[str, int]] = {}
        self._numbers = itertools.count(1)
        self._active: Counter[int] = Counter()
        #: Counts merges that dropped fields (moved generations made them doubtful, or a
        #: link moved under deep values): a reader that fetched a field and finds it gone
        #: again tells "dropped meanwhile" from "ShotGrid did not return it" by it.
        self.drops = 0

    # -- the map -----------------------------------------------------------------------

    def get(self, entity_type: str, entity_id: int) -> Optional[Entity]:
        """The entity if this map holds it (never creates one)."""
        by_id = self._by_type.get(entity_type)
        return by_id.get(entity_id) if by_id is not None else None

    def entity(self, entity_type: str, entity_id: int) -> Entity:
        """The one entity for ``(entity_type, entity_id)``, made if new."""
        by_id = self._by_type.get(entity_type)
        if by_id is not None:
            found = by_id.get(entity_id)
            if found is not None:
                return found
        with self.lock:
            by_id = self._by_type.get(entity_type)
            if by_id is None:
                by_id = self._by_type[entity_type] = self._ids()
            found = by_id.get(entity_id)
            if found is None:
                found = by_id[entity_id] = Entity(self.owner, entity_type, entity_id)
            return found

    def entities(self) -> list[Entity]:
        """A snapshot of every entity held."""
        with self.lock:
            return [e for by_id in self._by_type.values() for e in by_id.values()]

    def __len__(self) -> int:
        return sum(len(by_id) for by_id in list(self._by_type.values()))

    def clear(self) -> None:
        """Forget every entity (they stay usable as plain dicts by whoever holds them)."""
        with self.lock:
            self._by_type = {}
            self._marks.clear()
            self.backrefs_on = False

    def invalidate(self, keys: Optional[Iterable[tuple[str, int]]] = None) -> None:
        """Make entities (all, or those of *keys*) unconfirmed: their next ``get`` re-reads."""
        with self.lock:
            if keys is None:
                for by_id in self._by_type.values():
                    for entity in by_id.values():
                        if entity._deps is not None:
                            entity._deps = UNCONFIRMED
                return
            for entity_type, entity_id in keys:
                found = self.get(entity_type, entity_id)
                if found is not None and found._deps is not None:
                    found._deps = UNCONFIRMED

    # -- requests and writes ---------------------------------------------------------

    def begin(self) -> int:
        """Number a read request before it is sent (see :meth:`mark_written`)."""
        number = next(self._numbers)
        with self.lock:
            self._active[number] += 1
        return number

    def end(self, number: int) -> None:
        """The read numbered *number* is merged; forget marks no read in flight can need."""
        with self.lock:
            self._active[number] -= 1
            if self._active[number] <= 0:
                del self._active[number]
            if self._marks and len(self._marks) > 64:
                oldest = min(self._active, default=next(self._numbers))
                for key in [k for k, m in self._marks.items() if max(m.values()) < oldest]:
                    del self._marks[key]

    def mark_written(self, entity: Entity, names: Iterable[str]) -> None:
        """*entity*'s *names* were just written: rows of reads already in flight lose to them."""
        number = next(self._numbers)
        with self.lock:
            if not self._active:
                return  # no read in flight could carry an older value
            marks = self._marks.setdefault(entity._key, {})
            for name in names:
                marks[name] = number

    # -- merging ---------------------------------------------------------------------

    def merge(
        self,
        data: Any,
        over: Optional[bool] = None,
        deps: Optional[Mapping[str, str]] = None,
        stamp: float = 0.0,
    ) -> Any:
        """A copy of *data* with every entity-like dict replaced by its merged entity.

        *deps* are the generations the data was confirmed against (``None``: unknown, so
        the entities it touches are no longer confirmed).  With a *stamp*, the entities
        *data* holds at its top (not those only linked from them) count as loaded at that
        time: ``get`` serves them while fresh.  Such user-given data is marked local and
        never written to shared layers.
        """
        with self.lock:
            job = _Merge(self, UNCONFIRMED if deps is None else deps, over, 0)
            if stamp:
                job.top = []
            result = job.any(data)
            for entity in job.top or ():
                if entity._deps is not UNCONFIRMED:
                    entity._t = stamp
                    entity._exists = True
                    entity._local = True
            return result

    def assign(self, entity: Entity, fields: Mapping[str, Any]) -> None:
        """Merge fields a user assigned (``entity[name] = value``, ``update``, ...).

        The new values win, links become entities and what a nested link carries merges
        into its entity.  The entity is no longer confirmed: the next ``get`` asks
        ShotGrid, and nothing assigned is ever written to a cache layer.
        """
        for name in ("type", "id"):
            if name in fields and fields[name] != entity._key[name == "id"]:
                raise ValueError(
                    f"the {name} of {entity.type} {entity.id} cannot change "
                    f"(assigned {fields[name]!r})"
                )
        with self.lock:
            if entity._deps is not None:
                entity._deps = UNCONFIRMED
            job = _Merge(self, UNCONFIRMED, True, 0)
            job.fields(entity, fields, True)

    def take(self, other: IdentityMap) -> None:
        """Hold the entities of *other* (a session re-attached to a client), unconfirmed."""
        with self.lock, other.lock:
            held = other._by_type
            if other.weak != self.weak:
                held = {name: self._ids(by_id) for name, by_id in held.items()}
            self._by_type = held
            self.backrefs_on = other.backrefs_on
            other._by_type = {}
        self.invalidate()

    def merge_rows(
        self,
        entity_type: str,
        rows: Sequence[Mapping[str, Any]],
        deps: Mapping[str, str],
        stamp: float,
        over: Optional[bool] = None,
        number: int = 0,
        containers: Optional[Iterable[str]] = None,
        links: Optional[tuple[Sequence[Sequence[Any]], Sequence[str]]] = None,
    ) -> list[Entity]:
        """Merge rows of one type: an answer confirmed against *deps*, asked at *stamp*.

        Returns the entities in row order.  *number* is the request's (:meth:`begin`).
        *containers* names the fields whose values may be links, lists or dicts (found by
        looking when not given): entities new to the map are filled the short way.
        *links* is a stored answer's link table and link columns, whose values are numbers
        into the table (a link ``[type, id, name]``) or lists of them.
        """
        out: list[Entity] = []
        append = out.append
        if not rows:
            return out
        if containers is None:
            containers = container_fields(rows)
        boxes = list(containers)
        plain = deps is not UNCONFIRMED
        table: Sequence[Sequence[Any]] = ()
        link_boxes: list[str] = []
        if links is not None and links[1]:
            table, link_boxes = links[0], list(links[1])
            boxes += [name for name in link_boxes if name not in boxes]

            def whole(row: Mapping[str, Any]) -> dict[str, Any]:
                # The row with its links as ShotGrid gave them, for the general path.
                found = dict(row)
                for name in link_boxes:
                    ref = found.get(name)
                    if ref.__class__ is int:
                        found[name] = dict(zip(_LINK_KEYS, table[ref]))
                    elif ref.__class__ is list:
                        found[name] = [dict(zip(_LINK_KEYS, table[i])) for i in ref]
                return found

            if not plain:
                rows = [whole(row) for row in rows]
                link_boxes = []
        others = [name for name in boxes if name not in link_boxes]
        names = [entry[2] for entry in table]
        resolved: list[Optional[Entity]] = [None] * len(table)
        first = rows[0]
        deep = [_deep_column(name) for name in first if "." in name]
        deep_names = {name for name in first if "." in name}
        new = Entity.__new__
        update = dict.update
        setitem = dict.__setitem__
        owner = self.owner
        with self.lock, no_gc(len(rows)):
            job = _Merge(self, deps, over, number)
            convert = job.convert
            by_type = self._by_type
            by_id = by_type.get(entity_type)
            if by_id is None:
                by_id = by_type[entity_type] = self._ids()
            backrefs = self.backrefs_on

            getname = dict.get
            # Links met in this answer: (type, id) -> entity.  A hit still compares the
            # display name with the entity's own (the general path may have set another).
            seen: dict[tuple[Any, Any], Entity] = {}
            seen_get = seen.get

            def link(value: Any) -> Any:
                # The usual {type, id, name} link, the short way; anything else the long way.
                if value.__class__ is dict and len(value) == 3 and plain:
                    link_id = getname(value, "id")
                    link_type = getname(value, "type")
                    name = getname(value, "name", _MISSING)
                    if (
                        link_id.__class__ is int
                        and link_type.__class__ is str
                        and name is not _MISSING
                    ):
                        known = seen_get((link_type, link_id))
                        if known is not None:
                            if getname(known, "name", _MISSING) != name:
                                setitem(known, "name", name)
                            return known
                        targets = by_type.get(link_type)
                        target = targets.get(link_id) if targets is not None else None
                        if target is None:
                            target = self.entity(link_type, link_id)
                        if getname(target, "name", _MISSING) != name:
                            setitem(target, "name", name)
                        seen[(link_type, link_id)] = target
                        return target
                return convert(value, None)

            def take(ref: int) -> Entity:
                # The entity of the table's link *ref*, showing the answer's display name.
                target = resolved[ref]
                if target is None:
                    link_type, link_id, _name = table[ref]
                    targets = by_type.get(link_type)
                    target = targets.get(link_id) if targets is not None else None
                    if target is None:
                        target = self.entity(link_type, link_id)
                    resolved[ref] = target
                own, name = getname(target, "name", _MISSING), names[ref]
                if own is not name and own != name:
                    setitem(target, "name", name)
                return target

            # Deep columns of the usual kind ("step.Step.code": a plain value one link away)
            # are set on the linked entity here; the rest go the general way.
            simple = [
                column
                for column in deep
                if column[1] and "." not in column[3] and column[1] in boxes
            ]
            general = [column for column in deep if column not in simple]
            getitem = dict.__getitem__
            contains = dict.__contains__
            touch = job._touch

            for row in rows:
                entity_id = row["id"]
                entity = by_id.get(entity_id)
                if entity is not None:
                    if link_boxes:
                        row = whole(row)
                    job.adopt(entity, row)
                    job.fields(entity, row, over)
                    if entity._t == 0.0 or entity._t > stamp:
                        entity._t = stamp
                    entity._exists = True
                    append(entity)
                    continue
                entity = by_id[entity_id] = new(Entity)
                entity._key = (entity_type, entity_id)
                entity.session = owner
                entity._deps = deps
                entity._t = stamp
                entity._exists = True
                update(entity, row)
                for name in link_boxes:
                    ref = row.get(name)
                    if ref is None:
                        continue
                    if ref.__class__ is int:
                        setitem(entity, name, take(ref))
                    else:
                        setitem(entity, name, [take(one) for one in ref])
                for name in others:
                    value = row.get(name)
                    if value is None:
                        continue
                    if value.__class__ is list:
                        setitem(entity, name, [link(item) for item in value])
                    else:
                        setitem(entity, name, link(value))
                for name, head, link_type, rest in simple:
                    if not contains(entity, name):
                        continue
                    target = getname(entity, head)
                    if target.__class__ is not Entity or target._key[0] != link_type:
                        continue
                    value = getitem(entity, name)
                    if value.__class__ in _CONTAINERS:
                        job.spread_columns(entity, entity, [(name, head, link_type, rest)], {name})
                        continue
                    if not plain:
                        touch(target)
                    setitem(target, rest, value)
                if general:
                    job.spread_columns(entity, entity, general, deep_names)
                if backrefs:
                    for name, value in dict.items(entity):
                        if name != "type" and name != "id" and "." not in name:
                            self._add_backrefs(entity, name, value)
                append(entity)
        return out

    def merge_fields(
        self,
        entity: Entity,
        fields: Mapping[str, Any],
        over: Optional[bool],
        deps: Optional[Mapping[str, str]] = None,
        number: int = 0,
    ) -> None:
        """Merge raw field values into *entity* (confirmed against *deps*, if known)."""
        with self.lock:
            job = _Merge(self, UNCONFIRMED if deps is None else deps, over, number)
            job.adopt(entity, fields)
            job.fields(entity, fields, over)

    # -- writes ----------------------------------------------------------------------

    def drop_deep_through(self, entity: Entity, heads: Iterable[str]) -> None:
        """Forget deep values read through links in *heads* (they were just changed)."""
        heads = set(heads)
        with self.lock:
            self.drops += 1
            for name in list(dict.keys(entity)):
                if "." in name and name.split(".", 1)[0] in heads:
                    dict.pop(entity, name, None)

    # -- backrefs --------------------------------------------------------------------

    def index_backrefs(self) -> None:
        """Build the backref index on first use; merges keep it up to date afterwards.

        A tool that never looks at backrefs (most of them) never pays for them.
        """
        with self.lock:
            if self.backrefs_on:
                return
            for entity in self.entities():
                for name, value in list(dict.items(entity)):
                    if "." not in name and name != "type" and name != "id":
                        self._add_backrefs(entity, name, value)
            self.backrefs_on = True

    @staticmethod
    def _add_backrefs(entity: Entity, field_name: str, value: Any) -> None:
        """Record on each entity *value* links to that *entity* links to it by *field_name*."""
        key = (entity._key[0], field_name)
        for item in value if value.__class__ is list else (value,):
            if item.__class__ is Entity:
                backrefs = item._backrefs
                if backrefs is None:
                    backrefs = item._backrefs = {}
                refs = backrefs.get(key)
                if refs is None:
                    refs = backrefs[key] = set()
                refs.add(entity)

    def _unlink(self, entity: Entity, field_name: str) -> None:
        """Remove the backrefs *entity*'s current *field_name* value put on other entities."""
        if not self.backrefs_on:
            return
        value = dict.get(entity, field_name)
        key = (entity._key[0], field_name)
        for item in value if value.__class__ is list else (value,):
            if item.__class__ is Entity and item._backrefs is not None:
                refs = item._backrefs.get(key)
                if refs is not None:
                    refs.discard(entity)


class _Merge:
    """One merge under the map's lock: the rules of the module, with per-merge memos."""

    __slots__ = ("map", "deps", "over", "number", "seen", "top", "_current", "_unions", "_marks")

    def __init__(
        self,
        identity: IdentityMap,
        deps: Mapping[str, str],
        over: Optional[bool],
        number: int,
    ) -> None:
        self.map = identity
        self.deps = deps
        self.over = over
        self.number = number
        #: ids of the field mappings being merged (a mapping met again inside itself is
        #: a cycle: its entity is linked, not merged again).
        self.seen: set[int] = set()
        #: Entities met at the top of the data (collected when not None).
        self.top: Optional[list[Entity]] = None
        # Keyed by id() but holding the object too, so an id is never reused meanwhile.
        self._current: dict[int, tuple[Mapping[str, str], bool]] = {}
        self._unions: dict[int, tuple[Mapping[str, str], Mapping[str, str]]] = {}
        self._marks = identity._marks

    # -- freshness -------------------------------------------------------------------

    def _still_current(self, deps: Mapping[str, str]) -> bool:
        memo = self._current.get(id(deps))
        if memo is not None and memo[0] is deps:
            return memo[1]
        ok = deps is not UNCONFIRMED and self.map.still_current(deps)
        self._current[id(deps)] = (deps, ok)
        return ok

    def adopt(self, entity: Entity, incoming: Mapping[str, Any]) -> None:
        """Before a row merges: make the entity's generations cover both sides.

        When what the entity held was confirmed against generations that have moved since,
        the fields the row does not bring may be out of date, and are dropped.
        """
        old = entity._deps
        deps = self.deps
        if old is deps:
            return
        if old is None:
            entity._deps = deps
            return
        ok = deps is not UNCONFIRMED and self._still_current(old)
        if deps is UNCONFIRMED:
            entity._deps = UNCONFIRMED
            if old is UNCONFIRMED or self._still_current(old):
                return  # what it held stays; it is just no longer confirmed
        elif ok:
            memo = self._unions.get(id(old))
            if memo is None or memo[0] is not old:
                memo = self._unions[id(old)] = (old, {**old, **deps})
            entity._deps = memo[1]
            return
        else:
            entity._deps = deps
        protected = self._marks.get(entity._key, ())
        doubtful = [
            n
            for n in dict.keys(entity)
            if n not in incoming and n != "type" and n != "id" and n not in protected
        ]
        if doubtful:
            self.map.drops += 1
            for name in doubtful:
                self.map._unlink(entity, name)
                dict.__delitem__(entity, name)
        entity._t = 0.0
        if entity._local:
            entity._local = False  # what a user merged is gone with the rest

    def _touch(self, target: Entity) -> None:
        """A link or deep value brings data into *target*: unknown data unconfirms it.

        Fresh values (from an answer checked against current generations) can be set
        into any entity without changing what it was confirmed against.
        """
        if self.deps is UNCONFIRMED and target._deps is not None:
            target._deps = UNCONFIRMED

    # -- fields ----------------------------------------------------------------------

    def fields(self, entity: Entity, fields: Mapping[str, Any], over: Optional[bool]) -> None:
        """Merge raw *fields* into *entity* (already adopted)."""
        if over is None:
            over = newer(fields.get("updated_at"), dict.get(entity, "updated_at"))
        marks = self._marks
        protected = marks.get(entity._key) if marks else None
        number = self.number
        contains = dict.__contains__
        setitem = dict.__setitem__
        identity = self.map
        convert = self.convert
        deep: Optional[list[str]] = None
        linked_heads: Optional[set[str]] = None
        changed_heads: Optional[set[str]] = None
        seen = self.seen
        seen.add(id(fields))
        for name, value in fields.items():
            if name == "type" or name == "id":
                continue
            if protected is not None and protected.get(name, 0) > number > 0:
                continue
            present = contains(entity, name)
            cls = value.__class__
            if present and not over:
                if cls is dict or cls is list or cls is tuple or cls is Entity:
                    convert(value, self.over)  # keep the value; what nested links bring merges
                continue
            if cls is dict or cls is list or cls is tuple or cls is Entity:
                value = convert(value, self.over)
                cls = value.__class__
            previous = dict.get(entity, name) if present else None
            if present and identity.backrefs_on:
                identity._unlink(entity, name)
            setitem(entity, name, value)
            if "." in name:
                if deep is None:
                    deep = []
                deep.append(name)
                continue
            if previous.__class__ is Entity and previous is not value:
                # The link points elsewhere now: deep values read through it are wrong.
                if changed_heads is None:
                    changed_heads = set()
                changed_heads.add(name)
            if cls is Entity or cls is list:
                if identity.backrefs_on:
                    identity._add_backrefs(entity, name, value)
                if cls is Entity and previous is not value:
                    if linked_heads is None:
                        linked_heads = set()
                    linked_heads.add(name)
        if changed_heads is not None:
            for name in list(dict.keys(entity)):
                if "." in name and name not in fields and name.split(".", 1)[0] in changed_heads:
                    identity.drops += 1
                    dict.__delitem__(entity, name)
        if deep:
            self.spread_columns(entity, entity, [_deep_column(n) for n in deep], set(deep), over)
        if linked_heads is not None:
            # A link that arrives now also receives deep values held from before (a query
            # that asked for them without the link), where it lacks them.
            held = [
                n
                for n in dict.keys(entity)
                if "." in n and n not in fields and n.split(".", 1)[0] in linked_heads
            ]
            if held:
                self.spread_columns(
                    entity, entity, [_deep_column(n) for n in held], set(held), False
                )
        seen.discard(id(fields))

    def spread_columns(
        self,
        entity: Entity,
        values: Mapping[str, Any],
        columns: list[tuple[str, str, str, str]],
        names: set[str],
        over: bool = True,
    ) -> None:
        """Merge deep values (``entity.Shot.code``) into the linked entities as ``code``."""
        for name, head, link_type, rest in columns:
            if not head or name not in values:
                continue
            target = dict.get(entity, head)
            if target.__class__ is not Entity or target._key[0] != link_type:
                continue
            value: Any = dict.__getitem__(values, name)  # type: ignore[index]
            self._touch(target)
            if "." not in rest and value.__class__ not in _CONTAINERS:
                if over or not dict.__contains__(target, rest):
                    dict.__setitem__(target, rest, value)
            else:
                self.fields(target, {rest: value}, over)

    def convert(self, value: Any, over: Optional[bool]) -> Any:
        """A copy of a raw value with links turned into entities (never shares containers)."""
        cls = value.__class__
        identity = self.map
        if cls is Entity:
            if value.session is identity.owner:
                return value
            value = dict(value)
            cls = dict
        if cls is dict:
            link_id = value.get("id")
            link_type = value.get("type")
            if link_id.__class__ is int and link_type.__class__ is str:
                by_id = identity._by_type.get(link_type)
                target = by_id.get(link_id) if by_id is not None else None
                if target is None:
                    target = identity.entity(link_type, link_id)
                else:
                    self._touch(target)
                size = len(value)
                if size == 3 and "name" in value:
                    # The usual link {type, id, name}: the display name is always current.
                    if over is not False or not dict.__contains__(target, "name"):
                        name = value["name"]
                        if dict.get(target, "name", _MISSING) != name:
                            dict.__setitem__(target, "name", name)
                elif size > 2 and id(value) not in self.seen:
                    self.fields(target, value, over)
                return target
            return {k: self.convert(v, over) for k, v in value.items()}
        if cls is list:
            return [self.convert(v, over) for v in value]
        if cls is tuple:
            return tuple(self.convert(v, over) for v in value)
        if isinstance(value, Mapping):
            return self.convert(dict(value), over)
        if isinstance(value, list):
            return self.convert(list(value), over)
        return value

    def any(self, data: Any) -> Any:
        """The user-facing merge of any structure (see :meth:`IdentityMap.merge`)."""
        if isinstance(data, Entity) and data.session is self.map.owner:
            return data
        if is_link(data):
            entity = self.map.entity(data["type"], data["id"])
            if id(data) not in self.seen:
                self.adopt(entity, data)
                self.fields(entity, data, self.over)
                if self.top is not None:
                    self.top.append(entity)
            return entity
        if isinstance(data, Mapping):
            return {k: self.any(v) for k, v in data.items()}
        if isinstance(data, tuple):
            return tuple(self.any(v) for v in data)
        if isinstance(data, list):
            return [self.any(v) for v in data]
        return data
