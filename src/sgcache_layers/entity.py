"""The Entity: a ShotGrid entity dict that knows its owner.

An :class:`Entity` is a real ``dict`` (``{"type": ..., "id": ..., fields}``) so it passes
anywhere code written for ``shotgun_api3`` expects an entity.  Its owner (a
:class:`~sgcache_layers.session.Session`) keeps one instance per ``(type, id)``, merges
new data into it and links it to other instances.  Reading a missing field with
``entity["field"]`` asks the owner for it (auto-populate); ``entity.get(...)`` never does.

The entity talks to its owner only through :class:`EntityOwner`, a small protocol: any
object with those members can own entities.
"""

from __future__ import annotations

import pprint as _pprint
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

__all__ = ["NOT_SET", "Entity", "EntityOwner", "NotSetType", "RetiredEntityError", "deep_value"]


class NotSetType:
    """The type of :data:`NOT_SET`: a field the entity does not hold."""

    _instance: Optional[NotSetType] = None

    def __new__(cls) -> NotSetType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_SET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NOT_SET"


#: What ``entity["field"]`` gives for a missing field when auto-populate is off.
NOT_SET = NotSetType()


class RetiredEntityError(KeyError):
    """A field was asked of an entity that ShotGrid reports retired (or never had).

    A ``KeyError``, as reading a missing key of a dict is; raised alike by
    ``entity[field]``, ``entity.fetch(...)`` and ``session.fetch(...)``.
    """

    def __init__(self, entity: Entity, field: str) -> None:
        super().__init__(
            f"{entity.type} {entity.id} is retired or does not exist, so it has no field {field!r}"
        )
        self.entity = entity
        self.field = field

    def __str__(self) -> str:
        return str(self.args[0])


EntityKey = tuple[str, int]


class EntityOwner(Protocol):
    """What an :class:`Entity` needs from the object that owns it.

    ``populate_field`` is called by ``entity[name]`` for a field the entity lacks and
    returns its value (or :data:`NOT_SET`); ``assign_fields`` merges what is assigned with
    ``entity[name] = value``, ``setdefault`` or ``update``; ``index_backrefs`` builds the
    backref index the first time an entity's :attr:`Entity.backrefs` is read; the
    ``fetch*`` methods and
    ``filter_exists`` are the owner's public bulk methods; ``parent_fields`` names the field
    that points at each type's parent.
    """

    @property
    def parent_fields(self) -> Mapping[str, Optional[str]]: ...

    def populate_field(self, entity: Entity, name: str) -> Any: ...

    def assign_fields(self, entity: Entity, fields: Mapping[str, Any]) -> None: ...

    def index_backrefs(self) -> None: ...

    def fetch(
        self, entities: Iterable[Entity], fields: Iterable[str], force: bool = False
    ) -> Any: ...

    def fetch_core(self, entities: Iterable[Entity]) -> Any: ...

    def fetch_backrefs(self, entities: Iterable[Entity], entity_type: str, field: str) -> Any: ...

    def fetch_heirarchy(self, entities: Iterable[Entity]) -> list[Entity]: ...

    def filter_exists(
        self, entities: Iterable[Entity], check: bool = True, force: bool = False
    ) -> set[Entity]: ...


class Entity(dict):  # type: ignore[type-arg]
    """A ShotGrid entity: a ``dict`` of ``type``, ``id`` and fields, tied to its owner.

    The private slots hold the owner's bookkeeping: ``_deps`` and ``_t`` (the generations
    and time the entity's fields were confirmed against), ``_exists`` (``False`` once known
    retired), ``_backrefs``, ``_stored`` (the generations its own record was last
    written with) and ``_local`` (it holds data a user merged).
    """

    # The hot slots are set for every entity; the rarely used ones are class defaults,
    # so a warm start that builds thousands of entities sets only what it must.
    __slots__ = ("session", "_key", "_deps", "_t", "_exists", "__dict__", "__weakref__")

    _backrefs: Optional[dict[tuple[str, str], set[Entity]]] = None
    _stored: Optional[Mapping[str, str]] = None
    #: Holds data a user merged: this session may serve it, no cache layer gets it.
    _local = False

    if TYPE_CHECKING:
        session: EntityOwner

    def __init__(self, session: EntityOwner, type_: str, id_: int) -> None:
        setitem = dict.__setitem__
        setitem(self, "type", type_)
        setitem(self, "id", id_)
        self._key = (type_, id_)
        self.session = session
        self._deps: Optional[Mapping[str, str]] = None
        self._t = 0.0
        self._exists: Optional[bool] = None

    @property
    def backrefs(self) -> dict[tuple[str, str], set[Entity]]:
        """Entities that link to this one: ``{(their type, their field): {entity, ...}}``."""
        self.session.index_backrefs()
        refs = self._backrefs
        if refs is None:
            refs = self._backrefs = {}
        return refs

    # -- identity ----------------------------------------------------------
    @property
    def type(self) -> str:
        """The entity type, e.g. ``"Shot"``."""
        return self._key[0]

    @property
    def id(self) -> int:
        """The entity id."""
        return self._key[1]

    @property
    def key(self) -> EntityKey:
        """``(type, id)``: what makes this entity unique in its session."""
        return self._key

    @property
    def minimal(self) -> dict[str, Any]:
        """A plain ``{"type", "id"}`` dict, as ShotGrid expects a link."""
        return {"type": self._key[0], "id": self._key[1]}

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Entity):
            return self is other or self._key == other._key
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    # -- field access --------------------------------------------------------
    def __getitem__(self, field: str) -> Any:
        if field.__class__ is str and "." in field:
            value = deep_value(self, field)
            if value is not _MISSING:
                return value
            return self.session.populate_field(self, field)
        try:
            return dict.__getitem__(self, field)
        except KeyError:
            return self.session.populate_field(self, field)

    def get(self, fields: Any, default: Any = None) -> Any:
        """Field value(s) this entity holds, never asking ShotGrid.

        A deep name (``"step.Step.code"``) resolves through the linked entity.  One name
        gives one value; a list or tuple of names gives a tuple.
        """
        if fields.__class__ is str:
            if "." in fields:
                value = deep_value(self, fields)
                return default if value is _MISSING else value
            return dict.get(self, fields, default)
        if isinstance(fields, (list, tuple)):
            return tuple(self.get(name, default) for name in fields)
        return dict.get(self, fields, default)

    def __contains__(self, field: object) -> bool:
        if isinstance(field, str) and "." in field:
            return deep_value(self, field) is not _MISSING
        return dict.__contains__(self, field)

    def __setitem__(self, field: str, value: Any) -> None:
        self.session.assign_fields(self, {field: value})

    def setdefault(self, field: str, default: Any = None) -> Any:
        """The field's value; when it is missing, *default* is merged in first."""
        value = dict.get(self, field, _MISSING)
        if value is _MISSING:
            self.session.assign_fields(self, {field: default})
            value = dict.get(self, field)
        return value

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Merge fields (a mapping, pairs or keywords) into this entity.

        Links become the session's entities and the fields a nested link carries merge
        into that entity, as :meth:`Session.merge <sgcache_layers.session.Session.merge>`
        does with ``over=True``.
        """
        self.session.assign_fields(self, dict(*args, **kwargs))

    def fetch(
        self,
        fields: Union[str, Iterable[str]],
        default: Any = None,
        force: bool = False,
    ) -> Any:
        """Return field value(s), asking ShotGrid for any this entity lacks.

        One field name gives one value; a list of names gives a tuple.  Raises
        :class:`RetiredEntityError` when ShotGrid reports the entity retired.
        """
        names = [fields] if isinstance(fields, str) else list(fields)
        self.session.fetch([self], names, force=force)
        values = tuple(self.get(name, default) for name in names)
        return values[0] if isinstance(fields, str) else values

    def fetch_core(self) -> None:
        """Make sure the session's important fields for this type are here."""
        self.session.fetch_core([self])

    def fetch_backrefs(self, entity_type: str, field: str) -> set[Entity]:
        """Find the entities of *entity_type* whose *field* links here."""
        self.session.fetch_backrefs([self], entity_type, field)
        return set(self.backrefs.get((entity_type, field), ()))

    def fetch_heirarchy(self) -> list[Entity]:
        """Fetch every entity above this one, up to the project."""
        return self.session.fetch_heirarchy([self])

    fetch_hierarchy = fetch_heirarchy

    def exists(self, check: bool = True, force: bool = False) -> Optional[bool]:
        """Whether the entity exists (is not retired); ``None`` when unknown."""
        if force or (check and self._exists is None):
            self.session.filter_exists([self], check=True, force=force)
        return self._exists

    def parent(self, fetch: bool = True) -> Optional[Entity]:
        """The entity above this one (Task -> Shot -> Sequence -> Project)."""
        field = self.session.parent_fields.get(self.type)
        if field is None:
            return None
        if fetch and not dict.__contains__(self, field):
            self.session.fetch([self], [field])
        value = dict.get(self, field)
        if isinstance(value, list):
            value = value[0] if value else None
        return value if isinstance(value, Entity) else None

    def project(self, fetch: bool = True) -> Optional[Entity]:
        """The project this entity belongs to (itself for a Project)."""
        if self.type == "Project":
            return self
        if fetch and not dict.__contains__(self, "project"):
            self.session.fetch([self], ["project"])
        value = dict.get(self, "project")
        if isinstance(value, Entity):
            return value
        parent = self.parent(fetch=fetch)
        return parent.project(fetch=fetch) if parent is not None else None

    # -- conversion ---------------------------------------------------------
    def as_dict(self, _seen: Optional[set[EntityKey]] = None) -> dict[str, Any]:
        """This entity and its links as plain dicts.

        The first reference to an entity holds all its fields, every later one the minimal
        ``{"type", "id"}``: the form to serialise and to :meth:`merge` back into a session.
        """
        seen = set() if _seen is None else _seen
        seen.add(self.key)
        return {name: _plain(value, seen) for name, value in dict.items(self)}

    def pprint(self, backrefs: bool = False, depth: int = 0) -> None:
        """Print this entity with its links (and backrefs if asked)."""
        print(self._pformat(backrefs, depth, set()))

    def _pformat(self, backrefs: bool, depth: int, seen: set[EntityKey]) -> str:
        pad = "  " * depth
        head = f"{self.type}:{self.id}"
        if self.key in seen:
            return head + " ..."
        seen.add(self.key)
        lines = [head + " {"]
        for name in sorted(k for k in dict.keys(self) if k not in ("type", "id")):
            value = dict.__getitem__(self, name)
            if isinstance(value, Entity):
                text = value._pformat(backrefs, depth + 1, seen)
            elif isinstance(value, list) and any(isinstance(v, Entity) for v in value):
                parts = [
                    v._pformat(backrefs, depth + 2, seen) if isinstance(v, Entity) else repr(v)
                    for v in value
                ]
                text = "[\n" + ",\n".join(f"{pad}    {p}" for p in parts) + f"\n{pad}  ]"
            else:
                text = _pprint.pformat(value)
            lines.append(f"{pad}  {name} = {text}")
        if backrefs:
            for (btype, bfield), refs in sorted((self._backrefs or {}).items()):
                names = ", ".join(f"{r.type}:{r.id}" for r in sorted(refs, key=lambda e: e.id))
                lines.append(f"{pad}  <- {btype}.{bfield}: {names}")
        lines.append(pad + "}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = []
        for name, value in dict.items(self):
            parts.append(f"{name!r}: {_short_repr(value)}")
        return "{" + ", ".join(parts) + "}"

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return self.as_dict()

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self.as_dict(),))


_MISSING: Any = object()


def _raw(mapping: Mapping[str, Any], key: str) -> Any:
    # An entity's own value, never resolved or fetched.
    if isinstance(mapping, dict):
        return dict.get(mapping, key, _MISSING)
    return mapping.get(key, _MISSING)


def deep_value(entity: Mapping[str, Any], path: str) -> Any:
    """The value of a deep field (``"entity.Shot.sg_sequence.Sequence.code"``) as known
    locally, or a private marker when it is not known.

    Through the link first: the linked entity's field is kept current by every merge and
    write, while the entity's own copy (from a query that asked for the deep field) is
    as of that query, and is the fallback.  As ShotGrid does, a deep field through an
    empty link, or through a link to another type, is ``None``.
    """
    parts = path.split(".", 2)
    if len(parts) == 3 and all(parts):
        head, link_type, rest = parts
        link = _raw(entity, head)
        if link is None:
            return None
        if isinstance(link, Mapping):
            kind = link.get("type")
            if kind == link_type:
                value = deep_value(link, rest) if "." in rest else _raw(link, rest)
                if value is not _MISSING:
                    return value
            elif isinstance(kind, str):
                return None
    return _raw(entity, path)


def _short_repr(value: Any) -> str:
    if isinstance(value, Entity):
        name = dict.get(value, "name", dict.get(value, "code"))
        extra = "" if name is None else f", 'name': {name!r}"
        return f"{{'type': {value.type!r}, 'id': {value.id!r}{extra}}}"
    if isinstance(value, list):
        return "[" + ", ".join(_short_repr(v) for v in value) + "]"
    return repr(value)


def _plain(value: Any, seen: set[EntityKey]) -> Any:
    if isinstance(value, Entity):
        if value.key in seen:
            return value.minimal
        return value.as_dict(seen)
    if isinstance(value, Mapping):
        return {k: _plain(v, seen) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, seen) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v, seen) for v in value)
    return value
