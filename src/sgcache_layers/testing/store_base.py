"""The storage and rendering core of the in-memory ShotGrid site (:class:`SiteBase`).

Mockgun keeps rows in ``_db[entity_type][id]`` and reads its schema from pickles; this base
keeps that storage and adds what every part of the site needs: field types and display
fields from the schema, the batch journal, links rendered as a site renders them (names,
links to retired rows dropped), the data source the filter engine reads
(:mod:`sgcache_layers.filters`), the candidate rows of a read and the event log.  Reads,
writes and schema changes are mixins over it (``store_reads``, ``store_writes``,
``store_schema``); :class:`~sgcache_layers.testing.store.SiteStore` puts them together.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import os
import pickle
import tempfile
import threading
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
)

from shotgun_api3.lib.mockgun.mockgun import Shotgun as _Mockgun
from shotgun_api3.lib.mockgun.schema import SchemaFactory
from shotgun_api3.shotgun import ShotgunError

from ..filters import (
    FilterError,
    compile_filters,
    display_field,
    normalise_filters,
    path_type,
    to_date,
    to_datetime,
    wire_value,
)

Row = Dict[str, Any]
Link = Dict[str, Any]
Schema = Dict[str, Dict[str, Any]]

UTC = _dt.timezone.utc
WIRE_DATETIME = "%Y-%m-%dT%H:%M:%SZ"

#: Reverse link fields a site keeps in step: ``(type, field) -> field on the linked row``.
#: A pair is used only when both fields exist in the schema and are links.
REVERSE_FIELDS: Dict[Tuple[str, str], str] = {
    ("Shot", "assets"): "shots",
    ("Asset", "shots"): "assets",
    ("Asset", "sequences"): "assets",
    ("Sequence", "assets"): "sequences",
    ("Shot", "sg_sequence"): "shots",
    ("Sequence", "shots"): "sg_sequence",
    ("Task", "entity"): "tasks",
    ("Shot", "tasks"): "entity",
    ("Asset", "tasks"): "entity",
    ("Sequence", "tasks"): "entity",
    ("Version", "playlists"): "versions",
    ("Playlist", "versions"): "playlists",
    ("Asset", "parents"): "assets",
    ("Asset", "assets"): "parents",
}

LINK_TYPES = ("entity", "multi_entity")
_SERVER_FIELDS = ("created_at", "updated_at", "created_by", "updated_by")
NOT_WRITABLE = ("pivot_column", "summary", "query", "calculated")
#: Shortest text ``text_search`` accepts.
TEXT_SEARCH_MIN = 3

_boot_lock = threading.Lock()


class SiteError(ShotgunError):
    """A request the site refuses; the server sends it back as a JSON-RPC fault."""

    def __init__(self, message: str, error_code: int = 104) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the event ``user`` link plus what real sites add to ``meta``."""

    user: Optional[Link] = None
    session_uuid: Optional[str] = None
    sudo_actual_user: Optional[Link] = None
    extra_meta: Mapping[str, Any] = field(default_factory=dict)


#: Stored values as JSON-ready ones (datetimes to UTC ``...Z`` strings, dates to text).
to_wire = wire_value


def parse_datetime(value: Any) -> Optional[_dt.datetime]:
    """Read a wire/Python datetime into an aware UTC datetime with whole seconds."""
    try:
        return to_datetime(value)
    except ValueError:
        raise SiteError(f"Invalid date_time value {value!r}") from None


def parse_date(value: Any) -> Optional[str]:
    """Read a date into ``YYYY-MM-DD`` text, or the fault a site answers."""
    try:
        return to_date(value)
    except ValueError:
        raise SiteError(f"Invalid date value {value!r}, expected YYYY-MM-DD") from None


@contextlib.contextmanager
def refusal(verb: str) -> Iterator[None]:
    """Turn the filter engine's :class:`FilterError` into the fault a site answers."""
    try:
        yield
    except FilterError as exc:
        raise SiteError(f"API {verb}() {exc}") from None


def from_wire(value: Any) -> Any:
    """Undo :func:`to_wire` for results handed to in-process callers."""
    if isinstance(value, str) and len(value) == 20 and value.endswith("Z"):
        try:
            return _dt.datetime.strptime(value, WIRE_DATETIME).replace(tzinfo=UTC)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    return value


def field_property(field_def: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A property of a field definition (``valid_types``...), *default* when unset."""
    value = field_def.get("properties", {}).get(name, {}).get("value", default)
    return default if value is None else value


class SiteBase(_Mockgun):
    """Storage, schema helpers, link rendering, the data source and the event log."""

    def __init__(
        self,
        schema: Schema,
        schema_entity: Schema,
        *,
        clock: Optional[Callable[[], _dt.datetime]] = None,
        base_url: str = "http://127.0.0.1",
    ) -> None:
        self.lock = threading.RLock()
        self._booting = True
        self.clock: Callable[[], _dt.datetime] = clock or (lambda: _dt.datetime.now(UTC))
        with tempfile.TemporaryDirectory(prefix="sgcache-schema-") as folder:
            schema_path = os.path.join(folder, "schema.pickle")
            entity_path = os.path.join(folder, "schema_entity.pickle")
            with open(schema_path, "wb") as fh:
                pickle.dump(schema, fh, protocol=2)
            with open(entity_path, "wb") as fh:
                pickle.dump(schema_entity, fh, protocol=2)
            with _boot_lock:  # Mockgun keeps schema paths (and a schema cache) on the class
                type(self).set_schema_paths(schema_path, entity_path)  # type: ignore[no-untyped-call]
                super().__init__(base_url, connect=False)  # type: ignore[no-untyped-call]
                # The unpickled dicts are ours alone once the factory forgets them.
                SchemaFactory._schema_cache = SchemaFactory._schema_cache_path = None
                SchemaFactory._schema_entity_cache = SchemaFactory._schema_entity_cache_path = None
        self._schema: Schema = self._schema
        self._schema_entity: Schema = self._schema_entity
        self._db = {entity_type: {} for entity_type in self._schema}
        self._next_ids: Dict[str, int] = {}
        self._event_seq = 0
        self._column_ids: Dict[Tuple[str, str], int] = {}
        self._templates: Dict[str, Row] = {}
        self._journal: Optional[List[Callable[[], None]]] = None
        self._project_fields: Dict[int, Dict[Tuple[str, str], Dict[str, Any]]] = {}
        self._project_entities: Dict[int, Dict[str, Dict[str, Any]]] = {}
        self._booting = False

    # ------------------------------------------------------------------ schema helpers

    @property
    def schema(self) -> Schema:
        """The live schema (``schema_read`` format); treat as read-only."""
        return self._schema

    def field_type(self, entity_type: str, field_name: str) -> Optional[str]:
        """Data type of a field (a deep path's last field), or None if unknown."""
        if "." in field_name:
            return path_type(entity_type, field_name, self)
        if field_name == "id":
            return "number"
        if field_name == "type":
            return "entity_type"
        fields = self._schema.get(entity_type)
        if not fields or field_name not in fields:
            return None
        return fields[field_name]["data_type"]["value"]  # type: ignore[no-any-return]

    def display_field(self, entity_type: str) -> Optional[str]:
        """Field whose value is a link's ``name`` for this entity type."""
        return display_field(entity_type, self._schema.get(entity_type, {}))

    def _reverse_field(self, entity_type: str, field_name: str, target_type: str) -> Optional[str]:
        rev = REVERSE_FIELDS.get((entity_type, field_name))
        if rev is None:
            return None
        if self.field_type(target_type, rev) not in LINK_TYPES:
            return None
        return rev

    def _template(self, entity_type: str) -> Row:
        template = self._templates.get(entity_type)
        if template is None:
            template = {"type": entity_type, "__retired": False}
            for name, definition in self._schema[entity_type].items():
                kind = definition["data_type"]["value"]
                if kind == "multi_entity":
                    template[name] = None  # replaced by a fresh list per row
                else:
                    template[name] = copy.deepcopy(field_property(definition, "default_value"))
            self._templates[entity_type] = template
        return template

    def _new_row(self, entity_type: str) -> Row:
        row = dict(self._template(entity_type))
        for name, definition in self._schema[entity_type].items():
            if definition["data_type"]["value"] == "multi_entity":
                row[name] = []
        return row

    def _require_type(self, entity_type: Any, verb: str = "read") -> str:
        if not isinstance(entity_type, str) or entity_type not in self._schema:
            raise SiteError(f"API {verb}() invalid entity type {entity_type!r}")
        return entity_type

    def _get_row(self, entity_type: str, entity_id: Any) -> Row:
        row = self._db[entity_type].get(entity_id)
        if row is None:
            raise SiteError(f"Entity {entity_type} {entity_id!r} does not exist")
        return row  # type: ignore[no-any-return]

    def now(self) -> _dt.datetime:
        """The site clock, UTC with whole seconds (the wire has no finer resolution)."""
        return parse_datetime(self.clock()) or _dt.datetime.now(UTC).replace(microsecond=0)

    # ------------------------------------------------------------------ journal (batch)

    def _undo(self, action: Callable[[], None]) -> None:
        if self._journal is not None:
            self._journal.append(action)

    def _set(self, row: Row, field_name: str, value: Any) -> None:
        if self._journal is not None:
            had, old = field_name in row, row.get(field_name)
            if had:
                self._undo(lambda: row.__setitem__(field_name, old))
            else:
                self._undo(lambda: row.pop(field_name, None))
        row[field_name] = value

    # ------------------------------------------------------------------ link rendering

    def _visible(self, link: Any) -> bool:
        if not isinstance(link, dict):
            return False
        table = self._db.get(link.get("type"))
        if table is None:
            return True  # e.g. DisplayColumn links on schema events
        row = table.get(link.get("id"))
        return row is not None and not row["__retired"]

    def link_name(self, link: Mapping[str, Any]) -> Any:
        """Current display name of a linked row (None if unknown)."""
        table = self._db.get(link.get("type"))
        if table is None:
            return link.get("name")
        row = table.get(link.get("id"))
        if row is None:
            return None
        display = self.display_field(row["type"])
        return row.get(display) if display else None

    def render_link(self, link: Any) -> Optional[Link]:
        """A stored link as a site returns it, or None if it points at a retired row."""
        if not self._visible(link):
            return None
        return {"type": link["type"], "id": link["id"], "name": self.link_name(link)}

    def _render_value(self, kind: Optional[str], value: Any) -> Any:
        if kind == "entity":
            return self.render_link(value) if value else None
        if kind == "multi_entity":
            return [r for r in (self.render_link(v) for v in value or []) if r is not None]
        return to_wire(copy.deepcopy(value))

    def render_field(self, entity_type: str, row: Row, field_name: str) -> Any:
        """Value of ``field_name`` (plain or deep-linked) as a site returns it."""
        if field_name == "type":
            return row["type"]
        parts = field_name.split(".")
        if len(parts) >= 3:
            link = row.get(parts[0])
            if not isinstance(link, dict) or link.get("type") != parts[1]:
                return None  # unset, multi-entity or another type: sites return None
            if not self._visible(link):
                return None
            target = self._db.get(parts[1], {}).get(link["id"])
            if target is None:
                return None
            return self.render_field(parts[1], target, ".".join(parts[2:]))
        if field_name not in row:
            return None
        return self._render_value(self.field_type(entity_type, field_name), row[field_name])

    # ------------------------------------------------------------------ data source

    def resolve(self, link: Mapping[str, Any]) -> Optional[Row]:
        """The live row behind a link, or None (unknown or retired): deep paths follow it."""
        row = self._db.get(link.get("type"), {}).get(link.get("id"))
        if row is None or row["__retired"]:
            return None
        return row  # type: ignore[no-any-return]

    def link_visible(self, link: Mapping[str, Any]) -> bool:
        """Whether a stored link still counts (links to retired rows vanish on a site)."""
        return self._visible(link)

    # ------------------------------------------------------------------ candidates

    def _candidates(
        self,
        entity_type: str,
        filters: Any,
        retired: bool,
        include_archived: bool,
        verb: str = "read",
    ) -> List[Row]:
        table = self._db[entity_type]
        with refusal(verb):
            tree = normalise_filters(filters)
            predicate = compile_filters(entity_type, tree, self) if tree["conditions"] else None
        ids = self._id_shortcut(tree)
        rows: Iterable[Row] = table.values()
        if ids is not None:
            rows = [table[i] for i in ids if i in table]
        archived: set[int] = set()
        if not include_archived and "Project" in self._db:
            archived = {pid for pid, p in self._db["Project"].items() if p.get("archived")}
        result = []
        for row in rows:
            if row["__retired"] != retired:
                continue
            if archived:
                project = row.get("project") if entity_type != "Project" else row
                if isinstance(project, dict) and project.get("id") in archived:
                    continue
            if predicate is None or predicate(row):
                result.append(row)
        return result

    @staticmethod
    def _id_shortcut(filters: Mapping[str, Any]) -> Optional[List[Any]]:
        """Ids named by a top-level ``id is``/``id in`` condition, to skip a full scan."""
        if filters.get("logical_operator", "and") != "and":
            return None
        for cond in filters.get("conditions") or []:
            if isinstance(cond, dict) and cond.get("path") == "id":
                values = cond.get("values") or []
                if cond.get("relation") == "is" and len(values) == 1 and isinstance(values[0], int):
                    return [values[0]]
                if cond.get("relation") == "in" and all(isinstance(v, int) for v in values):
                    return sorted(set(values))
        return None

    # ------------------------------------------------------------------ records

    def _record(
        self, entity_type: str, row: Row, fields: Iterable[str], hidden: Iterable[str] = ()
    ) -> Row:
        """A returned record: fields the type lacks are left out, as a site does."""
        record: Row = {"type": entity_type, "id": row["id"]}
        for name in fields:
            if name in ("type", "id") or name in hidden or name.split(".")[0] in hidden:
                continue
            if self.field_type(entity_type, name) is None:
                continue
            record[name] = self.render_field(entity_type, row, name)
        return record

    # ------------------------------------------------------------------ ids and events

    def _next_id(self, entity_type: str) -> int:
        if entity_type == "EventLogEntry":
            self._event_seq += 1
            return self._event_seq
        current = self._next_ids.get(entity_type)
        if current is None:
            current = max(self._db[entity_type], default=0)
        self._next_ids[entity_type] = current + 1
        return current + 1

    def _insert(self, entity_type: str, row: Row) -> None:
        table = self._db[entity_type]
        table[row["id"]] = row
        self._undo(lambda: table.pop(row["id"], None))

    def _link(self, entity_type: str, row: Row) -> Link:
        return {"type": entity_type, "id": row["id"]}

    def _project_of(self, entity_type: str, row: Row) -> Optional[Link]:
        if entity_type == "Project":
            return self._link(entity_type, row)
        project = row.get("project")
        return {"type": project["type"], "id": project["id"]} if isinstance(project, dict) else None

    def log_event(
        self,
        event_type: str,
        *,
        entity: Optional[Link] = None,
        project: Optional[Link] = None,
        actor: Optional[Actor] = None,
        attribute_name: Optional[str] = None,
        meta: Optional[Dict[str, Any]] = None,
        description: Optional[str] = None,
    ) -> int:
        """Write one ``EventLogEntry`` row and return its id."""
        actor = actor or Actor()
        row = self._new_row("EventLogEntry")
        row["id"] = self._next_id("EventLogEntry")
        meta = dict(meta or {})
        if actor.sudo_actual_user is not None:
            meta.setdefault("sudo_actual_user", dict(actor.sudo_actual_user))
        meta.update(actor.extra_meta)
        values: Dict[str, Any] = {
            "event_type": event_type,
            "entity": dict(entity) if entity else None,
            "project": dict(project) if project else None,
            "user": dict(actor.user) if actor.user else None,
            "attribute_name": attribute_name,
            "meta": to_wire(meta),
            "description": description,
            "session_uuid": actor.session_uuid,
            "created_at": self.now(),
        }
        for key, value in values.items():
            if key in row or key in self._schema["EventLogEntry"]:
                row[key] = value
        self._insert("EventLogEntry", row)
        return row["id"]  # type: ignore[no-any-return]

    @property
    def last_event_id(self) -> int:
        """Highest EventLogEntry id handed out so far (0 if none)."""
        return max(self._event_seq, max(self._db.get("EventLogEntry", {}), default=0))

    def skip_event_ids(self, count: int) -> int:
        """Burn ``count`` event ids so the next event leaves a gap; returns the last burnt id."""
        if count < 0:
            raise ValueError("count must be >= 0")
        self._event_seq = self.last_event_id + count
        return self._event_seq

    def _actor_name(self, actor: Actor) -> str:
        if actor.user:
            kind = "Script" if actor.user.get("type") == "ApiUser" else "User"
            return f"{kind} {self.link_name(actor.user)}"
        return "The site"

    def _log_change(
        self,
        entity_type: str,
        row: Row,
        name: str,
        old: Any,
        new: Any,
        actor: Actor,
        *,
        in_create: bool = False,
        original: Optional[int] = None,
    ) -> int:
        kind = self.field_type(entity_type, name)
        meta: Dict[str, Any] = {
            "type": "attribute_change",
            "attribute_name": name,
            "entity_type": entity_type,
            "entity_id": row["id"],
            "field_data_type": kind,
            "old_value": self._meta_value(kind, old),
            "new_value": self._meta_value(kind, new),
        }
        if kind == "multi_entity":
            old_keys = {(x["type"], x["id"]) for x in old or []}
            new_keys = {(x["type"], x["id"]) for x in new or []}
            meta["added"] = [
                self._meta_link(x) for x in new or [] if (x["type"], x["id"]) not in old_keys
            ]
            meta["removed"] = [
                self._meta_link(x) for x in old or [] if (x["type"], x["id"]) not in new_keys
            ]
        if in_create:
            meta["in_create"] = True
        if original is not None:
            meta["original_event_log_entry_id"] = original
        label = self._schema[entity_type][name].get("name", {}).get("value", name)
        return self.log_event(
            f"Shotgun_{entity_type}_Change",
            entity=self._link(entity_type, row),
            project=self._project_of(entity_type, row),
            actor=actor,
            attribute_name=name,
            meta=meta,
            description=f'{self._actor_name(actor)} changed "{label}" on {entity_type} '
            f"{self.link_name(self._link(entity_type, row))}",
        )

    def _meta_link(self, link: Mapping[str, Any]) -> Link:
        return {
            "type": link["type"],
            "id": link["id"],
            "name": self.link_name(link),
            "valid": "valid",
        }

    def _meta_value(self, kind: Optional[str], value: Any) -> Any:
        if kind == "entity":
            return self._meta_link(value) if value else None
        if kind == "multi_entity":
            return [self._meta_link(v) for v in value or []]
        return to_wire(copy.deepcopy(value))
