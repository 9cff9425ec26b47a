"""In-memory ShotGrid site: a Mockgun subclass that answers like a real site.

Mockgun keeps rows in ``_db[entity_type][id]`` and reads its schema from pickles; this
class keeps that storage (so anything written for Mockgun still works) but replaces the
query and write paths, because Mockgun differs from a real site in ways a cache notices:
``in`` filters on links, ``limit``/``page``, link ``name`` keys, server-set
``created_at``/``updated_at``/``created_by``/``updated_by``, reverse links, event-log rows
and results that share objects with the store.  Filters, order, paging and filter presets
are evaluated by :mod:`sgcache_layers.filters`, the engine offline answers use too; the
store is its data source (field types, link resolution, display names, the clock).

The ``rpc_*`` methods take and return what travels on the wire (JSON-ready values, UTC
datetime strings); the Shotgun-like methods (``find``, ``create``...) wrap them for
in-process use.  Callers must hold :attr:`lock` around calls made from several threads;
the Shotgun-like methods take it themselves.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
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
    Sequence,
    Tuple,
)

from shotgun_api3.lib.mockgun.mockgun import Shotgun as _Mockgun
from shotgun_api3.lib.mockgun.schema import SchemaFactory
from shotgun_api3.shotgun import ShotgunError

from ..filters import (
    MAX_PAGE,
    FilterError,
    apply_filter_presets,
    compile_filters,
    compile_path,
    display_field,
    normalise_filters,
    path_type,
    sort_rows,
    to_date,
    to_datetime,
    wire_page,
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

_LINK_TYPES = ("entity", "multi_entity")
_SERVER_FIELDS = ("created_at", "updated_at", "created_by", "updated_by")
_NOT_WRITABLE = ("pivot_column", "summary", "query", "calculated")
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


def to_wire(value: Any) -> Any:
    """Turn stored values into JSON-ready ones (datetimes to UTC ``...Z`` strings, dates)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime(WIRE_DATETIME)
    if isinstance(value, _dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    return value


def parse_datetime(value: Any) -> Optional[_dt.datetime]:
    """Read a wire/Python datetime into an aware UTC datetime with whole seconds."""
    try:
        return to_datetime(value)
    except ValueError:
        raise SiteError(f"Invalid date_time value {value!r}") from None


def _parse_date(value: Any) -> Optional[str]:
    try:
        return to_date(value)
    except ValueError:
        raise SiteError(f"Invalid date value {value!r}, expected YYYY-MM-DD") from None


@contextlib.contextmanager
def _refusal(verb: str) -> Iterator[None]:
    """Turn the filter engine's :class:`FilterError` into the fault a site answers."""
    try:
        yield
    except FilterError as exc:
        raise SiteError(f"API {verb}() {exc}") from None


def _from_wire(value: Any) -> Any:
    """Undo :func:`to_wire` for results handed to in-process callers."""
    if isinstance(value, str) and len(value) == 20 and value.endswith("Z"):
        try:
            return _dt.datetime.strptime(value, WIRE_DATETIME).replace(tzinfo=UTC)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_wire(v) for v in value]
    return value


def _prop(field_def: Mapping[str, Any], name: str, default: Any = None) -> Any:
    value = field_def.get("properties", {}).get(name, {}).get("value", default)
    return default if value is None else value


class SiteStore(_Mockgun):
    """A Mockgun whose reads and writes behave like a ShotGrid site (see module doc)."""

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
        if self.field_type(target_type, rev) not in _LINK_TYPES:
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
                    template[name] = copy.deepcopy(_prop(definition, "default_value"))
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

    # ------------------------------------------------------------------ reads

    def _candidates(
        self,
        entity_type: str,
        filters: Any,
        retired: bool,
        include_archived: bool,
        verb: str = "read",
    ) -> List[Row]:
        table = self._db[entity_type]
        with _refusal(verb):
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

    def rpc_read(self, params: Mapping[str, Any], hidden: Iterable[str] = ()) -> Dict[str, Any]:
        """The ``read`` RPC: filters, presets, sorts, paging and return fields as a site does."""
        entity_type = self._require_type(params.get("type"))
        retired = params.get("return_only", "active") == "retired"
        include_archived = params.get("include_archived_projects", True) is not False
        rows = self._candidates(entity_type, params.get("filters"), retired, include_archived)
        with _refusal("read"):
            presets = params.get("additional_filter_presets")
            if presets is not None:
                rows = apply_filter_presets(entity_type, rows, presets, self)
            rows = sort_rows(entity_type, rows, params.get("sorts"), self)
            paging = params.get("paging") or {}
            chunk, has_next = wire_page(
                rows, paging.get("entities_per_page"), paging.get("current_page")
            )
        per_page = max(1, min(int(paging.get("entities_per_page") or MAX_PAGE), MAX_PAGE))
        fields = list(params.get("return_fields") or ["id"])
        hidden_set = set(hidden)
        entities = [self._record(entity_type, row, fields, hidden_set) for row in chunk]
        total = len(rows)
        paging_info = {
            "has_next_page": has_next,
            "current_page": max(1, int(paging.get("current_page") or 1)),
            "entities_per_page": per_page,
        }
        if params.get("return_paging_info"):
            paging_info["entity_count"] = total
            paging_info["page_count"] = (total + per_page - 1) // per_page
        return {"entities": entities, "paging_info": paging_info}

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

    # -- text search

    def rpc_text_search(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``query_display_name_cache`` RPC behind ``Shotgun.text_search``.

        Every term of the text (lower-cased, split on spaces) must appear in the display
        field of a match; each type's filters, the project ids and ``max_results`` narrow
        it.  Matches come type by type in the order asked, then by name.
        """
        text = params.get("text")
        if not isinstance(text, str) or len(text.strip()) < TEXT_SEARCH_MIN:
            raise SiteError(
                f"text_search: the search text must be at least {TEXT_SEARCH_MIN} characters "
                f"long, got {text!r}"
            )
        terms = text.lower().split()
        entity_types = params.get("entity_types")
        if not isinstance(entity_types, dict):
            raise SiteError("text_search: entity_types must map entity types to filters")
        project_ids = params.get("project_ids") or []
        if not isinstance(project_ids, list) or not all(isinstance(i, int) for i in project_ids):
            raise SiteError(f"text_search: project_ids must be a list of ids, got {project_ids!r}")
        limit = params.get("max_results")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise SiteError(f"text_search: max_results must be a whole number, got {limit!r}")
        matches: List[Dict[str, Any]] = []
        for entity_type, filters in entity_types.items():
            self._require_type(entity_type, "text_search")
            display = self.display_field(entity_type)
            if display is None:
                continue
            found = []
            for row in self._candidates(entity_type, filters, False, True, "text_search"):
                name = row.get(display)
                if not isinstance(name, str) or not all(t in name.lower() for t in terms):
                    continue
                project = row.get("project") if entity_type != "Project" else row
                project_id = project.get("id") if isinstance(project, dict) else None
                if project_ids and project_id not in project_ids:
                    continue
                found.append((name.lower(), row["id"], self._match(entity_type, row, project_id)))
            matches.extend(match for _, _, match in sorted(found, key=lambda f: f[:2]))
        return {"matches": matches[:limit] if limit else matches, "terms": terms}

    def _match(self, entity_type: str, row: Row, project_id: Optional[int]) -> Dict[str, Any]:
        link = row.get("entity")
        links = ["", ""]
        if isinstance(link, dict) and self._visible(link):
            links = [link["type"], str(self.link_name(link) or "")]
        return {
            "id": row["id"],
            "type": entity_type,
            "name": self.link_name({"type": entity_type, "id": row["id"]}),
            "project_id": project_id,
            "image": to_wire(row.get("image")),
            "links": links,
            "status": row.get("sg_status_list"),
        }

    # ------------------------------------------------------------------ writes

    def _coerce(self, entity_type: str, name: str, value: Any) -> Any:
        definition = self._schema[entity_type].get(name)
        if definition is None:
            raise SiteError(f"{entity_type}.{name} doesn't exist")
        kind = definition["data_type"]["value"]
        if kind in _NOT_WRITABLE:
            raise SiteError(f"{entity_type}.{name} is a {kind} field and cannot be set")
        if kind == "entity":
            if value is None:
                return None
            return self._coerce_link(entity_type, name, definition, value)
        if kind == "multi_entity":
            out: List[Link] = []
            seen = set()
            for item in value or []:
                link = self._coerce_link(entity_type, name, definition, item)
                if (link["type"], link["id"]) not in seen:
                    seen.add((link["type"], link["id"]))
                    out.append(link)
            if value is not None and not isinstance(value, list):
                raise SiteError(f"{entity_type}.{name} is multi_entity; expected a list")
            return out
        if value is None:
            return None
        if kind == "date_time":
            return parse_datetime(value)
        if kind == "date":
            return _parse_date(value)
        if kind in ("number", "duration", "percent", "timecode"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SiteError(f"{entity_type}.{name} expects a number, got {value!r}")
            if isinstance(value, float) and not value.is_integer():
                raise SiteError(f"{entity_type}.{name} expects an integer, got {value!r}")
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SiteError(f"{entity_type}.{name} expects a float, got {value!r}")
            return float(value)
        if kind == "checkbox":
            if not isinstance(value, bool):
                raise SiteError(f"{entity_type}.{name} expects true/false, got {value!r}")
            return value
        if kind in ("list", "status_list"):
            if not isinstance(value, str):
                raise SiteError(f"{entity_type}.{name} expects a string, got {value!r}")
            valid = _prop(definition, "valid_values", [])
            if valid and value not in valid:
                raise SiteError(f"{entity_type}.{name}: {value!r} is not one of {valid}")
            return value
        if kind in ("text", "color", "uuid", "entity_type", "password", "image"):
            if not isinstance(value, str):
                raise SiteError(f"{entity_type}.{name} expects a string, got {value!r}")
            return value
        return copy.deepcopy(value)

    def _coerce_link(
        self, entity_type: str, name: str, definition: Mapping[str, Any], value: Any
    ) -> Link:
        if not isinstance(value, dict) or "type" not in value or "id" not in value:
            raise SiteError(
                f"{entity_type}.{name} expects a link with 'type' and 'id', got {value!r}"
            )
        valid = _prop(definition, "valid_types", [])
        if valid and value["type"] not in valid:
            raise SiteError(f"{entity_type}.{name} cannot link to {value['type']} (valid: {valid})")
        table = self._db.get(value["type"])
        if table is None or value["id"] not in table:
            raise SiteError(
                f"{entity_type}.{name}: linked {value['type']} {value['id']!r} does not exist"
            )
        return {"type": value["type"], "id": value["id"]}

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

    # -- events

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

    # -- reverse links

    def _rows_of(self, links: Iterable[Link]) -> Iterable[Row]:
        for link in links:
            row = self._db.get(link["type"], {}).get(link["id"])
            if row is not None:
                yield row

    def _sync_reverse(
        self,
        entity_type: str,
        row: Row,
        name: str,
        old: Any,
        new: Any,
        actor: Optional[Actor],
        original: Optional[int],
    ) -> None:
        """Keep the other side of a linked pair in step (and log it unless seeding)."""
        old_links = old if isinstance(old, list) else [old] if old else []
        new_links = new if isinstance(new, list) else [new] if new else []
        old_keys = {(x["type"], x["id"]) for x in old_links}
        new_keys = {(x["type"], x["id"]) for x in new_links}
        me = self._link(entity_type, row)
        for link in old_links:
            if (link["type"], link["id"]) in new_keys:
                continue
            for other in self._rows_of([link]):
                rev = self._reverse_field(entity_type, name, other["type"])
                if rev is not None:
                    self._reverse_remove(other, rev, me, actor, original)
        for link in new_links:
            if (link["type"], link["id"]) in old_keys:
                continue
            for other in self._rows_of([link]):
                rev = self._reverse_field(entity_type, name, other["type"])
                if rev is not None:
                    self._reverse_add(other, rev, me, name, actor, original)

    def _write_raw(
        self, row: Row, name: str, value: Any, actor: Optional[Actor], original: Optional[int]
    ) -> None:
        old = row.get(name)
        self._set(row, name, value)
        if actor is not None and row["type"] != "EventLogEntry":
            self._log_change(row["type"], row, name, old, value, actor, original=original)

    def _reverse_remove(
        self, other: Row, rev: str, me: Link, actor: Optional[Actor], original: Optional[int]
    ) -> None:
        current = other.get(rev)
        if isinstance(current, list):
            kept = [x for x in current if (x["type"], x["id"]) != (me["type"], me["id"])]
            if len(kept) != len(current):
                self._write_raw(other, rev, kept, actor, original)
        elif isinstance(current, dict) and (current["type"], current["id"]) == (
            me["type"],
            me["id"],
        ):
            self._write_raw(other, rev, None, actor, original)

    def _reverse_add(
        self,
        other: Row,
        rev: str,
        me: Link,
        name: str,
        actor: Optional[Actor],
        original: Optional[int],
    ) -> None:
        current = other.get(rev)
        if self.field_type(other["type"], rev) == "multi_entity":
            current = current or []
            if all((x["type"], x["id"]) != (me["type"], me["id"]) for x in current):
                self._write_raw(other, rev, [*current, dict(me)], actor, original)
            return
        # The other side is a single link: it moves away from its previous owner.
        if isinstance(current, dict) and (current["type"], current["id"]) == (me["type"], me["id"]):
            return
        if isinstance(current, dict):
            for previous in self._rows_of([current]):
                held = previous.get(name)
                if isinstance(held, list):
                    kept = [x for x in held if (x["type"], x["id"]) != (other["type"], other["id"])]
                    if len(kept) != len(held):
                        self._write_raw(previous, name, kept, actor, original)
        self._write_raw(other, rev, dict(me), actor, original)

    # -- create / update / delete / revive

    def _actor_link(self, actor: Actor) -> Optional[Link]:
        return dict(actor.user) if actor.user else None

    def create_row(
        self,
        entity_type: str,
        data: Mapping[str, Any],
        actor: Optional[Actor] = None,
        *,
        log: bool = True,
    ) -> Row:
        """Create one entity (validating ``data``) and write its events; returns the row."""
        self._require_type(entity_type, "create")
        actor = actor or Actor()
        for bad in ("id", "type"):
            if bad in data:
                raise SiteError(f"Can't set {bad} on create")
        values = {name: self._coerce(entity_type, name, value) for name, value in data.items()}
        if (
            entity_type == "HumanUser"
            and "name" in self._schema["HumanUser"]
            and not values.get("name")
        ):
            full = " ".join(str(values.get(k) or "") for k in ("firstname", "lastname")).strip()
            values["name"] = full or values.get("login")
        row = self._new_row(entity_type)
        row["id"] = self._next_id(entity_type)
        now = self.now()
        fields = self._schema[entity_type]
        stamps = {
            "created_at": now,
            "updated_at": now,
            "created_by": self._actor_link(actor),
            "updated_by": self._actor_link(actor),
        }
        for key, value in stamps.items():
            if key in fields and key not in values:
                row[key] = value
        row.update(values)
        self._insert(entity_type, row)
        event_log = log and entity_type != "EventLogEntry"
        new_id = None
        if event_log:
            new_id = self.log_event(
                f"Shotgun_{entity_type}_New",
                entity=self._link(entity_type, row),
                project=self._project_of(entity_type, row),
                actor=actor,
                meta={"type": "new_entity", "entity_type": entity_type, "entity_id": row["id"]},
                description=f"{self._actor_name(actor)} created new {entity_type} "
                f"{self.link_name(self._link(entity_type, row))}",
            )
        for key, value in values.items():
            if value and self.field_type(entity_type, key) in _LINK_TYPES:
                self._sync_reverse(
                    entity_type, row, key, None, value, actor if event_log else None, new_id
                )
        if event_log:
            for key, value in values.items():
                if value not in (None, [], ""):
                    self._log_change(entity_type, row, key, None, value, actor, in_create=True)
        return row

    def update_row(
        self,
        entity_type: str,
        entity_id: Any,
        data: Mapping[str, Any],
        actor: Optional[Actor] = None,
        modes: Optional[Mapping[str, str]] = None,
    ) -> Row:
        """Update fields (multi-entity modes set/add/remove) and log one event per change."""
        self._require_type(entity_type, "update")
        actor = actor or Actor()
        row = self._get_row(entity_type, entity_id)
        if row["__retired"]:
            raise SiteError(f"Cannot update retired {entity_type} {entity_id}")
        for bad in ("id", "type"):
            if bad in data:
                raise SiteError(f"Can't set {bad} on update")
        modes = modes or {}
        changed = False
        for name, raw in data.items():
            value = self._coerce(entity_type, name, raw)
            kind = self.field_type(entity_type, name)
            old = row.get(name)
            if kind == "multi_entity":
                mode = modes.get(name, "set")
                current = list(old or [])
                keys = {(x["type"], x["id"]) for x in value}
                if mode == "add":
                    have = {(x["type"], x["id"]) for x in current}
                    value = current + [x for x in value if (x["type"], x["id"]) not in have]
                elif mode == "remove":
                    value = [x for x in current if (x["type"], x["id"]) not in keys]
                elif mode != "set":
                    raise SiteError(f"Invalid multi_entity_update_mode {mode!r}")
                if [(x["type"], x["id"]) for x in value] == [(x["type"], x["id"]) for x in current]:
                    continue
            elif old == value:
                continue
            self._set(row, name, value)
            changed = True
            event_id = None
            if entity_type != "EventLogEntry":
                event_id = self._log_change(entity_type, row, name, old, value, actor)
            if kind in _LINK_TYPES:
                self._sync_reverse(
                    entity_type,
                    row,
                    name,
                    old,
                    value,
                    actor if entity_type != "EventLogEntry" else None,
                    event_id,
                )
        if changed:
            fields = self._schema[entity_type]
            if "updated_at" in fields and "updated_at" not in data:
                previous = row.get("updated_at")
                stamp = self.now()
                if isinstance(previous, _dt.datetime) and stamp <= previous:
                    stamp = previous + _dt.timedelta(seconds=1)  # updated_at always moves
                self._set(row, "updated_at", stamp)
            if "updated_by" in fields and "updated_by" not in data:
                self._set(row, "updated_by", self._actor_link(actor))
        return row

    def retire_row(self, entity_type: str, entity_id: Any, actor: Optional[Actor] = None) -> bool:
        """Retire (delete) an entity; False if it already was retired."""
        self._require_type(entity_type, "delete")
        actor = actor or Actor()
        row = self._get_row(entity_type, entity_id)
        if row["__retired"]:
            return False
        name = self.link_name(self._link(entity_type, row))
        self._set(row, "__retired", True)
        self._log_lifecycle(
            entity_type,
            row,
            name,
            actor,
            "Retirement",
            "retired",
            {"retirement_date": to_wire(self.now())},
        )
        return True

    def revive_row(self, entity_type: str, entity_id: Any, actor: Optional[Actor] = None) -> bool:
        """Bring a retired entity back; False if it was not retired."""
        self._require_type(entity_type, "revive")
        actor = actor or Actor()
        row = self._get_row(entity_type, entity_id)
        if not row["__retired"]:
            return False
        self._set(row, "__retired", False)
        name = self.link_name(self._link(entity_type, row))
        self._log_lifecycle(entity_type, row, name, actor, "Revival", "revived", {})
        return True

    def _log_lifecycle(
        self,
        entity_type: str,
        row: Row,
        name: str,
        actor: Actor,
        action: str,
        verb: str,
        extra_meta: Dict[str, Any],
    ) -> None:
        """Log ``Shotgun_<Type>_Retirement``/``_Revival`` as a site does (not for events)."""
        if entity_type == "EventLogEntry":
            return
        self.log_event(
            f"Shotgun_{entity_type}_{action}",
            entity=self._link(entity_type, row),
            project=self._project_of(entity_type, row),
            actor=actor,
            meta={
                "type": f"entity_{action.lower()}",
                "entity_type": entity_type,
                "entity_id": row["id"],
                "class_name": entity_type,
                "display_name": name,
                **extra_meta,
            },
            description=f"{self._actor_name(actor)} {verb} {entity_type} {name}",
        )

    def bulk_insert(
        self,
        entity_type: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        user: Optional[Link] = None,
    ) -> List[int]:
        """Seed rows fast: validated and reverse-linked, but no event-log rows."""
        self._require_type(entity_type, "create")
        ids = []
        fields = self._schema[entity_type]
        for data in rows:
            values = {name: self._coerce(entity_type, name, value) for name, value in data.items()}
            row = self._new_row(entity_type)
            row["id"] = self._next_id(entity_type)
            stamp = values.get("created_at") or self.now()
            for key, value in (
                ("created_at", stamp),
                ("updated_at", stamp),
                ("created_by", user),
                ("updated_by", user),
            ):
                if key in fields:
                    row[key] = value
            self._db[entity_type][row["id"]] = row
            row.update(values)
            for key, value in values.items():
                if value and self.field_type(entity_type, key) in _LINK_TYPES:
                    self._sync_reverse(entity_type, row, key, None, value, None, None)
            ids.append(row["id"])
        return ids

    # ------------------------------------------------------------------ wire-level RPCs

    @staticmethod
    def _fields_to_dict(fields: Any) -> Tuple[Dict[str, Any], Dict[str, str]]:
        data: Dict[str, Any] = {}
        modes: Dict[str, str] = {}
        for item in fields or []:
            if not isinstance(item, dict) or "field_name" not in item:
                raise SiteError(f"Invalid field entry {item!r}")
            data[item["field_name"]] = item.get("value")
            if "multi_entity_update_mode" in item:
                modes[item["field_name"]] = item["multi_entity_update_mode"]
        return data, modes

    def rpc_create(self, params: Mapping[str, Any], actor: Optional[Actor] = None) -> Row:
        """The ``create`` RPC; returns the data fields plus ``return_fields``."""
        entity_type = self._require_type(params.get("type"), "create")
        data, _ = self._fields_to_dict(params.get("fields"))
        row = self.create_row(entity_type, data, actor)
        names = list(dict.fromkeys([*data, *(params.get("return_fields") or ["id"])]))
        return self._record(entity_type, row, names)

    def rpc_update(self, params: Mapping[str, Any], actor: Optional[Actor] = None) -> Row:
        """The ``update`` RPC; returns type, id and the updated fields."""
        entity_type = self._require_type(params.get("type"), "update")
        data, modes = self._fields_to_dict(params.get("fields"))
        if "multi_entity_update_mode" in params:
            for name in data:
                if self.field_type(entity_type, name) == "multi_entity":
                    modes.setdefault(name, params["multi_entity_update_mode"])
        row = self.update_row(entity_type, params.get("id"), data, actor, modes)
        return self._record(entity_type, row, list(data))

    def rpc_delete(self, params: Mapping[str, Any], actor: Optional[Actor] = None) -> bool:
        """The ``delete`` RPC (retire)."""
        entity_type = self._require_type(params.get("type"), "delete")
        return self.retire_row(entity_type, params.get("id"), actor)

    def rpc_revive(self, params: Mapping[str, Any], actor: Optional[Actor] = None) -> bool:
        """The ``revive`` RPC."""
        entity_type = self._require_type(params.get("type"), "revive")
        return self.revive_row(entity_type, params.get("id"), actor)

    def rpc_batch(self, requests: Any, actor: Optional[Actor] = None) -> List[Any]:
        """The ``batch`` RPC: all requests or none (changes and events are rolled back)."""
        if not isinstance(requests, list):
            raise SiteError("batch expects a list of requests")
        outer = self._journal
        self._journal = []
        results: List[Any] = []
        try:
            for request in requests:
                kind = request.get("request_type") if isinstance(request, dict) else None
                if kind == "create":
                    results.append(self.rpc_create(request, actor))
                elif kind == "update":
                    results.append(self.rpc_update(request, actor))
                elif kind == "delete":
                    results.append(self.rpc_delete(request, actor))
                else:
                    raise SiteError(f"Invalid batch request_type {kind!r}")
        except Exception:
            for undo in reversed(self._journal):
                undo()
            self._journal = outer
            raise
        if outer is not None:
            outer.extend(self._journal)
        self._journal = outer
        return results

    # -- summarize

    def rpc_summarize(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``summarize`` RPC: totals and (nested) groups."""
        entity_type = self._require_type(params.get("type"), "summarize")
        include_archived = params.get("include_archived_projects", True) is not False
        rows = self._candidates(
            entity_type, params.get("filters"), False, include_archived, "summarize"
        )
        summaries = list(params.get("summaries") or [])
        for spec in summaries:
            if self.field_type(entity_type, spec.get("field", "")) is None:
                raise SiteError(f"API summarize() {entity_type}.{spec.get('field')} doesn't exist")
        grouping = list(params.get("grouping") or [])
        return {
            "summaries": self._summaries(entity_type, rows, summaries),
            "groups": self._groups(entity_type, rows, summaries, grouping),
        }

    def _summaries(
        self, entity_type: str, rows: List[Row], specs: List[Dict[str, Any]]
    ) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for spec in specs:
            name, kind = spec.get("field", ""), spec.get("type", "")
            with _refusal("summarize"):
                getter = compile_path(entity_type, name, self)[1]
            values = [v for row in rows for v in getter(row)[:1]]
            present = [v for v in values if v not in (None, "", [])]
            result: Any
            if kind == "record_count":
                result = len(rows)
            elif kind == "count":
                result = len(present)
            elif kind == "sum":
                result = sum(v for v in present if isinstance(v, (int, float)))
            elif kind == "average":
                nums = [v for v in present if isinstance(v, (int, float))]
                result = sum(nums) / len(nums) if nums else 0
            elif kind in ("maximum", "latest"):
                result = to_wire(max(present)) if present else None
            elif kind in ("minimum", "earliest"):
                result = to_wire(min(present)) if present else None
            elif kind == "checked":
                result = sum(1 for v in values if v is True)
            elif kind == "unchecked":
                result = sum(1 for v in values if not v)
            elif kind == "percentage":
                want = spec.get("value")
                result = (
                    round(100.0 * sum(1 for v in values if v == want) / len(values))
                    if values
                    else 0
                )
            else:
                raise SiteError(f"Summary type {kind!r} is not supported")
            out[name] = result
        return out

    def _group_key(
        self, entity_type: str, row: Row, spec: Mapping[str, Any]
    ) -> Tuple[Any, str, Any]:
        """(sort key, group_name, group_value) of one row for one grouping spec."""
        name, how = spec.get("field", ""), spec.get("type", "exact")
        with _refusal("summarize"):
            kind, getter = compile_path(entity_type, name, self)
        values = getter(row)
        value = values[0] if values else None
        if kind == "entity":
            if not value or not self._visible(value):
                return ((1, ""), "", None)
            if how == "entitytype":
                return ((0, value["type"]), value["type"], value["type"])
            link = self.render_link(value)
            assert link is not None
            link["valid"] = "valid"
            label = str(link["name"] or "")
            return ((0, label.lower()), label, link)
        if value is None or value == "":
            return ((1, ""), "", None)
        if (
            isinstance(value, (_dt.datetime, str))
            and kind in ("date", "date_time")
            and how in ("day", "week", "month", "quarter", "year")
        ):
            moment = value if isinstance(value, _dt.datetime) else parse_datetime(value)
            assert moment is not None
            label = {
                "day": moment.strftime("%Y-%m-%d"),
                "week": moment.strftime("%G-W%V"),
                "month": moment.strftime("%Y-%m"),
                "quarter": f"{moment.year}-Q{(moment.month - 1) // 3 + 1}",
                "year": moment.strftime("%Y"),
            }[how]
            return ((0, label), label, label)
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and how
            in (
                "tens",
                "hundreds",
                "thousands",
                "tensofthousands",
                "hundredsofthousands",
                "millions",
            )
        ):
            size = {
                "tens": 10,
                "hundreds": 100,
                "thousands": 1000,
                "tensofthousands": 10000,
                "hundredsofthousands": 100000,
                "millions": 1000000,
            }[how]
            low = int(value // size) * size
            return ((0, low), f"{low} - {low + size - 1}", low)
        if how == "firstletter" and isinstance(value, str):
            letter = value[:1].upper()
            return ((0, letter), letter, letter)
        wire = to_wire(value)
        label = str(wire)
        sort_value = value.lower() if isinstance(value, str) else value
        if isinstance(sort_value, (dict, list)):
            sort_value = label
        return ((0, sort_value), label, wire)

    def _groups(
        self,
        entity_type: str,
        rows: List[Row],
        specs: List[Dict[str, Any]],
        grouping: List[Dict[str, Any]],
    ) -> List[Dict[str, Any]]:
        if not grouping:
            return []
        spec, rest = grouping[0], grouping[1:]
        if self.field_type(entity_type, spec.get("field", "")) is None:
            raise SiteError(f"API summarize() {entity_type}.{spec.get('field')} doesn't exist")
        buckets: Dict[str, Tuple[Any, Any, List[Row]]] = {}
        for row in rows:
            sort_key, label, value = self._group_key(entity_type, row, spec)
            ident = json.dumps([label, value], sort_keys=True, default=str)
            if ident not in buckets:
                buckets[ident] = (sort_key, (label, value), [])
            buckets[ident][2].append(row)
        ordered = sorted(
            buckets.values(),
            key=lambda b: b[0],
            reverse=str(spec.get("direction", "asc")).lower() == "desc",
        )
        groups = []
        for _, (label, value), members in ordered:
            group: Dict[str, Any] = {
                "group_name": label,
                "group_value": value,
                "summaries": self._summaries(entity_type, members, specs),
            }
            if rest:
                group["groups"] = self._groups(entity_type, members, specs, rest)
            groups.append(group)
        return groups

    # -- schema

    def _schema_project(self, params: Any) -> Optional[int]:
        """Id of the project a schema read asks about (``project`` param), or None."""
        project = params.get("project") if isinstance(params, Mapping) else None
        if project is None:
            return None
        if not isinstance(project, Mapping) or project.get("type") != "Project":
            raise SiteError(f"Invalid project {project!r}: expected a Project link")
        row = self.resolve(project)
        if row is None:
            raise SiteError(f"Project {project.get('id')!r} does not exist")
        return row["id"]  # type: ignore[no-any-return]

    def _field_view(
        self, entity_type: str, name: str, definition: Mapping[str, Any], project: Optional[int]
    ) -> Dict[str, Any]:
        """A field definition as a schema read shows it: for the site or for one project.

        The site view reports every field visible; a project view applies that project's
        overrides.  ``visible`` is editable on custom (``sg_``) fields only.
        """
        view = copy.deepcopy(dict(definition))
        visible = True
        override = (
            self._project_fields.get(project, {}).get((entity_type, name)) if project else None
        )
        if override:
            visible = override.get("visible", True)
            if override.get("display_name") is not None:
                view["name"] = {**view.get("name", {}), "value": override["display_name"]}
        view["visible"] = {"editable": name.startswith("sg_"), "value": visible}
        return view

    def _fields_view(self, entity_type: str, project: Optional[int]) -> Dict[str, Any]:
        return {
            name: self._field_view(entity_type, name, definition, project)
            for name, definition in self._schema[entity_type].items()
        }

    def rpc_schema_read(self, params: Any = None) -> Schema:
        """The ``schema_read`` RPC: the site view, or one project's with ``project``."""
        project = self._schema_project(params)
        return {
            entity_type: self._fields_view(entity_type, project) for entity_type in self._schema
        }

    def rpc_schema_entity_read(self, params: Any = None) -> Schema:
        """The ``schema_entity_read`` RPC: the site view, or one project's with ``project``."""
        project = self._schema_project(params)
        result: Schema = {}
        for entity_type, definition in self._schema_entity.items():
            view = copy.deepcopy(definition)
            visible = True
            override = self._project_entities.get(project, {}).get(entity_type) if project else None
            if override:
                visible = override.get("visible", True)
                if override.get("display_name") is not None:
                    view["name"] = {**view.get("name", {}), "value": override["display_name"]}
            view["visible"] = {"editable": False, "value": visible}
            result[entity_type] = view
        return result

    def rpc_schema_field_read(self, params: Mapping[str, Any]) -> Schema:
        """The ``schema_field_read`` RPC: one field, or all fields of a type (per project)."""
        entity_type = self._require_type(params.get("type"), "schema_field_read")
        project = self._schema_project(params)
        fields = self._schema[entity_type]
        name = params.get("field_name")
        if name:
            if name not in fields:
                raise SiteError(f"{entity_type}.{name} doesn't exist")
            return {name: self._field_view(entity_type, name, fields[name], project)}
        return self._fields_view(entity_type, project)

    def set_project_field_override(
        self,
        project_id: int,
        entity_type: str,
        field_name: str,
        *,
        visible: Optional[bool] = None,
        display_name: Optional[str] = None,
    ) -> None:
        """Make a field hidden/shown or renamed in one project's schema view.

        None leaves that part as it was; schema reads without a project are unchanged.
        """
        self._require_type(entity_type, "schema_field_update")
        if field_name not in self._schema[entity_type]:
            raise SiteError(f"{entity_type}.{field_name} doesn't exist")
        self._schema_project({"project": {"type": "Project", "id": project_id}})
        slot = self._project_fields.setdefault(project_id, {}).setdefault(
            (entity_type, field_name), {}
        )
        if visible is not None:
            slot["visible"] = bool(visible)
        if display_name is not None:
            slot["display_name"] = str(display_name)

    def set_project_entity_override(
        self,
        project_id: int,
        entity_type: str,
        *,
        visible: Optional[bool] = None,
        display_name: Optional[str] = None,
    ) -> None:
        """Make an entity type hidden/shown or renamed in one project's schema view."""
        self._require_type(entity_type, "schema_entity_read")
        self._schema_project({"project": {"type": "Project", "id": project_id}})
        slot = self._project_entities.setdefault(project_id, {}).setdefault(entity_type, {})
        if visible is not None:
            slot["visible"] = bool(visible)
        if display_name is not None:
            slot["display_name"] = str(display_name)

    def clear_project_overrides(self, project_id: Optional[int] = None) -> None:
        """Forget the per-project schema overrides of one project (or of all)."""
        if project_id is None:
            self._project_fields.clear()
            self._project_entities.clear()
        else:
            self._project_fields.pop(project_id, None)
            self._project_entities.pop(project_id, None)

    def column_id(self, entity_type: str, field_name: str) -> int:
        """Stable id of the ``DisplayColumn`` behind a field (used by schema events)."""
        key = (entity_type, field_name)
        if key not in self._column_ids:
            self._column_ids[key] = len(self._column_ids) + 1
        return self._column_ids[key]

    def record_schema_change(
        self,
        entity_type: str,
        field_name: str,
        *,
        kind: str = "change",
        attribute_name: str = "human_name",
        old_value: Any = None,
        new_value: Any = None,
        actor: Optional[Actor] = None,
    ) -> int:
        """Log a ``Shotgun_DisplayColumn_<New|Change|Retirement>`` event; returns its id."""
        suffix = {
            "new": "New",
            "change": "Change",
            "retirement": "Retirement",
            "delete": "Retirement",
        }
        if kind not in suffix:
            raise ValueError(f"kind must be one of {sorted(suffix)}")
        column = {
            "type": "DisplayColumn",
            "id": self.column_id(entity_type, field_name),
            "name": field_name,
        }
        meta: Dict[str, Any]
        if kind == "change":
            meta = {
                "type": "attribute_change",
                "attribute_name": attribute_name,
                "entity_type": "DisplayColumn",
                "entity_id": column["id"],
                "field_data_type": "text",
                "old_value": to_wire(old_value),
                "new_value": to_wire(new_value),
            }
        else:
            meta = {
                "type": "new_entity" if kind == "new" else "entity_retirement",
                "entity_type": "DisplayColumn",
                "entity_id": column["id"],
            }
        meta["connection_entity_type"] = entity_type
        meta["field_name"] = field_name
        return self.log_event(
            f"Shotgun_DisplayColumn_{suffix[kind]}",
            entity=column,
            actor=actor,
            attribute_name=attribute_name if kind == "change" else None,
            meta=meta,
            description=f"Schema: {kind} of field {entity_type}.{field_name}",
        )

    def add_field(
        self,
        entity_type: str,
        field_name: str,
        data_type: str,
        *,
        display_name: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        actor: Optional[Actor] = None,
    ) -> str:
        """Add a field to the schema (every row gets its default) and log the schema event."""
        self._require_type(entity_type, "schema_field_create")
        if field_name in self._schema[entity_type]:
            raise SiteError(f"{entity_type}.{field_name} already exists")
        props: Dict[str, Any] = {
            "default_value": {"editable": False, "value": None},
            "summary_default": {"editable": True, "value": "none"},
        }
        for key, value in (properties or {}).items():
            props[key] = {"editable": True, "value": value}
        self._schema[entity_type][field_name] = {
            "data_type": {"editable": False, "value": data_type},
            "description": {"editable": True, "value": ""},
            "editable": {"editable": False, "value": True},
            "entity_type": {"editable": False, "value": entity_type},
            "mandatory": {"editable": False, "value": False},
            "name": {"editable": True, "value": display_name or field_name},
            "properties": props,
            "unique": {"editable": False, "value": False},
        }
        self._templates.pop(entity_type, None)
        default = [] if data_type == "multi_entity" else props["default_value"]["value"]
        for row in self._db[entity_type].values():
            row[field_name] = copy.deepcopy(default)
        self.record_schema_change(entity_type, field_name, kind="new", actor=actor)
        return field_name

    def update_field(
        self,
        entity_type: str,
        field_name: str,
        properties: Mapping[str, Any],
        actor: Optional[Actor] = None,
        project_id: Optional[int] = None,
    ) -> None:
        """Change field properties (``name``, ``description`` or property keys); logs events.

        With ``project_id``, ``visible`` changes that project's view only (as the API's
        ``project_entity`` does) and logs nothing; other properties change the site.
        """
        self._require_type(entity_type, "schema_field_update")
        definition = self._schema[entity_type].get(field_name)
        if definition is None:
            raise SiteError(f"{entity_type}.{field_name} doesn't exist")
        properties = dict(properties)
        if project_id is not None and "visible" in properties:
            visible = properties.pop("visible")
            if not isinstance(visible, bool):
                raise SiteError(f"visible must be true or false, got {visible!r}")
            self.set_project_field_override(project_id, entity_type, field_name, visible=visible)
        for key, value in properties.items():
            if key in ("name", "description"):
                old = definition[key]["value"]
                definition[key]["value"] = value
            else:
                slot = definition["properties"].setdefault(key, {"editable": True, "value": None})
                old = slot["value"]
                slot["value"] = value
            attribute = "human_name" if key == "name" else key
            self.record_schema_change(
                entity_type,
                field_name,
                attribute_name=attribute,
                old_value=old,
                new_value=value,
                actor=actor,
            )
        self._templates.pop(entity_type, None)

    def delete_field(
        self, entity_type: str, field_name: str, actor: Optional[Actor] = None
    ) -> None:
        """Remove a field from the schema and the rows; logs the schema event."""
        self._require_type(entity_type, "schema_field_delete")
        if field_name not in self._schema[entity_type]:
            raise SiteError(f"{entity_type}.{field_name} doesn't exist")
        del self._schema[entity_type][field_name]
        self._templates.pop(entity_type, None)
        for row in self._db[entity_type].values():
            row.pop(field_name, None)
        self.record_schema_change(entity_type, field_name, kind="retirement", actor=actor)

    # ------------------------------------------------------------------ Shotgun-like API

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        wire_args = [json.loads(json.dumps(to_wire(a))) for a in args]
        with self.lock:
            result = method(*wire_args)
        return _from_wire(result)

    def find(
        self,
        entity_type: str,
        filters: Any,
        fields: Optional[List[str]] = None,
        order: Optional[List[Dict[str, Any]]] = None,
        filter_operator: Optional[str] = None,
        limit: int = 0,
        retired_only: bool = False,
        page: int = 0,
        include_archived_projects: bool = True,
        additional_filter_presets: Any = None,
    ) -> List[Row]:
        """In-process ``find`` with the same answers the HTTP server gives (deep copies)."""
        if self._booting:
            return []
        with _refusal("read"):
            filters = normalise_filters(filters, filter_operator)
        params: Dict[str, Any] = {
            "type": entity_type,
            "filters": filters,
            "return_fields": fields or ["id"],
            "return_only": "retired" if retired_only else "active",
            "include_archived_projects": include_archived_projects,
            "additional_filter_presets": additional_filter_presets or None,
            "sorts": [
                {
                    "field_name": o.get("field_name") or o.get("column"),
                    "direction": o.get("direction", "asc"),
                }
                for o in order or []
            ],
        }
        records: List[Row] = []
        per_page = min(limit, 500) if limit else 500
        current = page or 1
        while True:
            params["paging"] = {"entities_per_page": per_page, "current_page": current}
            result = self._call(self.rpc_read, params)
            records.extend(result["entities"])
            if (
                page
                or not result["paging_info"]["has_next_page"]
                or (limit and len(records) >= limit)
            ):
                break
            current += 1
        return records[:limit] if limit else records

    def find_one(
        self,
        entity_type: str,
        filters: Any,
        fields: Optional[List[str]] = None,
        order: Optional[List[Dict[str, Any]]] = None,
        filter_operator: Optional[str] = None,
        retired_only: bool = False,
        include_archived_projects: bool = True,
        additional_filter_presets: Any = None,
    ) -> Optional[Row]:
        """In-process ``find_one``."""
        found = self.find(
            entity_type,
            filters,
            fields,
            order,
            filter_operator,
            1,
            retired_only,
            include_archived_projects=include_archived_projects,
            additional_filter_presets=additional_filter_presets,
        )
        return found[0] if found else None

    def create(
        self, entity_type: str, data: Dict[str, Any], return_fields: Optional[List[str]] = None
    ) -> Row:
        """In-process ``create`` (writes events as an anonymous actor)."""
        if self._booting:
            return {}  # Mockgun's constructor seeds an event row; a site starts empty.
        params = {
            "type": entity_type,
            "return_fields": return_fields or ["id"],
            "fields": [{"field_name": k, "value": v} for k, v in data.items()],
        }
        return self._call(self.rpc_create, params)  # type: ignore[no-any-return]

    def update(
        self,
        entity_type: str,
        entity_id: int,
        data: Dict[str, Any],
        multi_entity_update_modes: Optional[Dict[str, str]] = None,
    ) -> Row:
        """In-process ``update``; returns a dict like the real client (not Mockgun's list)."""
        fields = []
        for key, value in data.items():
            item: Dict[str, Any] = {"field_name": key, "value": value}
            if multi_entity_update_modes and key in multi_entity_update_modes:
                item["multi_entity_update_mode"] = multi_entity_update_modes[key]
            fields.append(item)
        return self._call(self.rpc_update, {"type": entity_type, "id": entity_id, "fields": fields})  # type: ignore[no-any-return]

    def delete(self, entity_type: str, entity_id: int) -> bool:
        """In-process ``delete``."""
        return bool(self._call(self.rpc_delete, {"type": entity_type, "id": entity_id}))

    def revive(self, entity_type: str, entity_id: int) -> bool:
        """In-process ``revive``."""
        return bool(self._call(self.rpc_revive, {"type": entity_type, "id": entity_id}))

    def batch(self, requests: List[Dict[str, Any]]) -> List[Any]:
        """In-process ``batch`` (client-style request dicts)."""
        calls = []
        for req in requests:
            call: Dict[str, Any] = {"request_type": req["request_type"], "type": req["entity_type"]}
            if "entity_id" in req:
                call["id"] = req["entity_id"]
            if "data" in req:
                modes = req.get("multi_entity_update_modes") or {}
                call["fields"] = [
                    {
                        "field_name": k,
                        "value": v,
                        **({"multi_entity_update_mode": modes[k]} if k in modes else {}),
                    }
                    for k, v in req["data"].items()
                ]
            if req["request_type"] == "create":
                call["return_fields"] = req.get("return_fields") or ["id"]
            calls.append(call)
        return self._call(self.rpc_batch, calls)  # type: ignore[no-any-return]

    def summarize(
        self,
        entity_type: str,
        filters: Any,
        summary_fields: List[Dict[str, str]],
        filter_operator: Optional[str] = None,
        grouping: Optional[List[Dict[str, Any]]] = None,
        include_archived_projects: bool = True,
    ) -> Dict[str, Any]:
        """In-process ``summarize``."""
        with _refusal("summarize"):
            filters = normalise_filters(filters, filter_operator)
        params: Dict[str, Any] = {
            "type": entity_type,
            "summaries": summary_fields,
            "filters": filters,
            "include_archived_projects": include_archived_projects,
        }
        if grouping is not None:
            params["grouping"] = grouping
        return self._call(self.rpc_summarize, params)  # type: ignore[no-any-return]

    def schema_read(self, project_entity: Any = None) -> Schema:
        """In-process ``schema_read`` (a copy; one project's view with ``project_entity``)."""
        with self.lock:
            return self.rpc_schema_read({"project": project_entity})

    def schema_entity_read(self, project_entity: Any = None) -> Schema:
        """In-process ``schema_entity_read`` (a copy)."""
        with self.lock:
            return self.rpc_schema_entity_read({"project": project_entity})

    def schema_field_read(
        self, entity_type: str, field_name: Optional[str] = None, project_entity: Any = None
    ) -> Schema:
        """In-process ``schema_field_read`` (a copy)."""
        with self.lock:
            return self.rpc_schema_field_read(
                {"type": entity_type, "field_name": field_name, "project": project_entity}
            )

    def text_search(
        self,
        text: str,
        entity_types: Dict[str, Any],
        project_ids: Optional[List[int]] = None,
        limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """In-process ``text_search`` (see :meth:`rpc_text_search`)."""
        with _refusal("text_search"):
            types = {t: normalise_filters(f) for t, f in entity_types.items()}
        params = {
            "text": text,
            "entity_types": types,
            "project_ids": project_ids or [],
            "max_results": limit,
        }
        return self._call(self.rpc_text_search, params)  # type: ignore[no-any-return]

    def count(self, entity_type: str, retired: bool = False) -> int:
        """Number of live (or retired) rows of a type, without building records."""
        with self.lock:
            return sum(1 for row in self._db[entity_type].values() if row["__retired"] == retired)
