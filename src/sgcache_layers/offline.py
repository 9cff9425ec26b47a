"""Working without ShotGrid: warm a project once, then answer new reads of it locally.

:class:`Snapshots` is the session's offline part.  It is consulted when a read finds no
usable cached answer: in ``offline`` mode always, and in ``cached`` mode when the session
was made with ``snapshots=True`` (for warmed types whose snapshot is fresh by the one
freshness rule).  It answers with ShotGrid's own filter semantics
(:mod:`sgcache_layers.filters`), or returns ``None`` when the call touches anything it does
not hold - never a wrong answer.

What a snapshot can answer
--------------------------
A warm (:mod:`~sgcache_layers.warming`) keeps every row, live and retired, of its types in
one scope (:mod:`~sgcache_layers.snapshot`): a project's sequences, shots, tasks... and the
site's projects, steps and users.  A read of a project type is answered when its filters
say, at the top level, ``["project", "is", P]`` (or ``in`` one project) for a warmed
project P; a read of a site type always.  Every field it filters, orders, summarises or
returns (deep paths too) must be warmed; a deep path that reaches a row the snapshot does
not hold (a link to another project, or to a type that was not warmed) gives up on the
whole read.  A field the schema does not know is left out of the rows, as a site does.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from . import records
from .answers import Policy
from .config import SessionConfigError
from .entity import Entity
from .filters import (
    MAX_PAGE,
    FilterError,
    apply_filter_presets,
    compile_filters,
    display_field,
    normalise_filters,
    normalise_order,
    page_rows,
    sort_rows,
    summarize_rows,
    validate_filter_presets,
)
from .identity import copy_value, outbound
from .schema_files import SchemaFile, load_schema
from .snapshot import HEAD_NAME, SITE_SCOPE, Snapshot, Table

if TYPE_CHECKING:
    from .cache import Cache
    from .session import Session

__all__ = ["SnapshotMiss", "SnapshotSource", "Snapshots"]

log = logging.getLogger("sgcache_layers.offline")

Row = Mapping[str, Any]
_UTC = _dt.timezone.utc
_LINKS = ("entity", "multi_entity")
#: Fields each filter preset reads (``additional_filter_presets``).
_PRESET_FIELDS: dict[str, list[str]] = {
    "ENTITIES_CREATED_AT": ["entity", "created_at"],
    "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT": [
        "entity",
        "created_at",
        "sg_task.Task.step.Step.list_order",
    ],
    "VERSION_NUMBER": ["entity", "created_at", "version_number"],
    "REVISION_NUMBER": ["revision_number"],
}


class SnapshotMiss(Exception):
    """A read needs something the snapshot does not hold (the read is not answered)."""


class SnapshotSource:
    """The filter engine's data source over snapshot tables (see :class:`DataSource`).

    Links resolve to the rows the tables hold; a link to a retired row reaches nothing and
    does not count (as on a site); a link to a row the tables do not hold raises
    :class:`SnapshotMiss`, because what it would reach is unknown.
    """

    def __init__(self, schema: Mapping[str, Mapping[str, str]], tables: Mapping[str, Table]):
        self.schema = schema
        self.tables = tables
        self._display: dict[str, Optional[str]] = {}

    def field_type(self, entity_type: str, field_name: str) -> Optional[str]:
        """Data type of a plain field, from the schema."""
        return self.schema.get(entity_type, {}).get(field_name)

    def resolve(self, link: Mapping[str, Any]) -> Optional[Row]:
        """The live row behind a link, ``None`` for a retired one; SnapshotMiss if unknown."""
        table = self.tables.get(str(link.get("type")))
        if table is None:
            raise SnapshotMiss(f"{link.get('type')} is not warmed")
        entity_id = link.get("id")
        row = table.live.get(entity_id)  # type: ignore[arg-type]
        if row is not None:
            return row
        if entity_id in table.retired:
            return None
        raise SnapshotMiss(f"{link.get('type')} {entity_id} is not in the snapshot")

    def display(self, entity_type: str) -> Optional[str]:
        """The warmed field a link to *entity_type* takes its name from, if any."""
        if entity_type not in self._display:
            table = self.tables.get(entity_type)
            name = display_field(entity_type, self.schema.get(entity_type, {}))
            self._display[entity_type] = (
                name if table is not None and name in table.fields else None
            )
        return self._display[entity_type]

    def link_name(self, link: Mapping[str, Any]) -> Any:
        """The target's display value when the snapshot holds it, else the link's name."""
        entity_type = str(link.get("type"))
        table = self.tables.get(entity_type)
        if table is not None:
            row = table.row(link.get("id"))  # type: ignore[arg-type]
            name = self.display(entity_type)
            if row is not None and name is not None:
                return row.get(name)
        return link.get("name")

    def link_visible(self, link: Mapping[str, Any]) -> bool:
        """A link counts unless the snapshot knows its target is retired."""
        table = self.tables.get(link.get("type"))  # type: ignore[arg-type]
        return table is None or not table.retired or link.get("id") not in table.retired

    def now(self) -> _dt.datetime:
        """The wall clock (UTC), for relative date filters."""
        return _dt.datetime.now(_UTC).replace(microsecond=0)


def _filter_paths(node: Mapping[str, Any]) -> list[str]:
    """Every field path a normalised filter tree names."""
    if "conditions" in node:
        return [path for child in node["conditions"] for path in _filter_paths(child)]
    return [node["path"]]


def _project_of(node: Mapping[str, Any]) -> Optional[int]:
    """The one project a filter tree restricts its rows to, at the top level, if any."""
    if node.get("logical_operator") != "and":
        return None
    found: set[int] = set()
    for condition in node["conditions"]:
        if "conditions" in condition:
            inner = _project_of(condition)
            if inner is not None:
                found.add(inner)
            continue
        if condition["path"] != "project" or condition["relation"] not in ("is", "in"):
            continue
        values = condition["values"]
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = list(values[0])
        ids: set[int] = {
            v["id"]
            for v in values
            if isinstance(v, Mapping)
            and v.get("type") == "Project"
            and isinstance(v.get("id"), int)
        }
        if len(ids) == 1 and len(values) >= 1 and all(isinstance(v, Mapping) for v in values):
            found.add(ids.pop())
    return found.pop() if len(found) == 1 else None


def _is_scope(condition: Mapping[str, Any], project_id: int) -> bool:
    """Whether a condition is ``["project", "is" or "in", that one project]``."""
    if "conditions" in condition or condition["path"] != "project":
        return False
    if condition["relation"] not in ("is", "in"):
        return False
    values = condition["values"]
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        values = list(values[0])
    return bool(values) and all(
        isinstance(v, Mapping) and v.get("type") == "Project" and v.get("id") == project_id
        for v in values
    )


class _View:
    """The tables one read may use (its scope's and the site's), with their schema."""

    def __init__(self, snapshots: Sequence[Snapshot], given: Mapping[str, Mapping[str, str]]):
        self.tables: dict[str, Table] = {}
        # The schema a warmed type was read with describes its rows; the one the session
        # was given describes the other types.
        schema: dict[str, Mapping[str, str]] = dict(given)
        for snapshot in reversed(snapshots):
            self.tables.update(snapshot.tables)
            schema.update(snapshot.schema)
        self.schema = schema
        self.source = SnapshotSource(schema, self.tables)
        #: Rows per page of the site, as the warm found it.
        self.per_page = snapshots[0].per_page if snapshots else MAX_PAGE
        first = snapshots[0] if snapshots else None
        #: The project of the read's scope, and the types held for it alone.
        self.project_id = first.project["id"] if first is not None and first.project else None
        self.scoped = set(first.tables) if self.project_id is not None and first else set()

    def scope_free(self, entity_type: str, tree: Mapping[str, Any]) -> Mapping[str, Any]:
        """*tree* less its top-level ``project is P`` conditions when every row holds P.

        A project's tables hold exactly its rows, so those conditions keep every row (as
        long as the project is live: a site hides links to a retired one).
        """
        project_id = self.project_id
        projects = self.tables.get("Project")
        if (
            project_id is None
            or entity_type not in self.scoped
            or tree.get("logical_operator") != "and"
            or projects is None
            or project_id not in projects.live
        ):
            return tree
        kept = [c for c in tree["conditions"] if not _is_scope(c, project_id)]
        return {"logical_operator": "and", "conditions": kept}

    def table(self, entity_type: str) -> Table:
        table = self.tables.get(entity_type)
        if table is None:
            raise SnapshotMiss(f"{entity_type} is not warmed")
        return table

    def check(self, entity_type: str, path: str, output: bool = False) -> Optional[set[str]]:
        """The warmed types *path* reads; ``None`` if it names no field (outputs only).

        Raises SnapshotMiss when a field it names exists but was not warmed, when a type
        along it is unknown, or (filters and order) when a site would refuse it.
        """
        parts = path.split(".")
        if len(parts) % 2 == 0:
            if output:
                return None
            raise SnapshotMiss(f"{path!r} is not a field path")
        current = entity_type
        involved: set[str] = set()
        for index in range(0, len(parts), 2):
            name = parts[index]
            fields = self.schema.get(current)
            if fields is None:
                raise SnapshotMiss(f"the schema of {current} is not known")
            plain = name in ("id", "type")
            if not plain and name not in fields:
                if output:
                    return None
                raise SnapshotMiss(f"{current}.{name} doesn't exist")
            table = self.tables.get(current)
            if table is not None:
                involved.add(current)
                if not plain and name not in table.fields:
                    raise SnapshotMiss(f"{current}.{name} is not warmed")
            if index + 1 < len(parts):
                if fields.get(name) not in ("entity", "multi_entity", "addressing"):
                    if output:
                        return None
                    raise SnapshotMiss(f"{current}.{name} is not a link")
                current = parts[index + 1]
        return involved

    def value(self, entity_type: str, row: Row, name: str) -> Any:
        """A field of *row* (plain or deep) as a site returns it."""
        head, _, rest = name.partition(".")
        if rest:
            link_type, _, tail = rest.partition(".")
            link = row.get(head)
            if not isinstance(link, Mapping) or link.get("type") != link_type:
                return None  # unset, multi-entity or another type: sites return None
            if not self.source.link_visible(link):
                return None
            target = self.source.resolve(link)
            return None if target is None else self.value(link_type, target, tail)
        kind = self.source.field_type(entity_type, name)
        value = row.get(name)
        if kind == "entity":
            return self._link(value) if isinstance(value, Mapping) else None
        if kind == "multi_entity":
            links = (self._link(v) for v in value or () if isinstance(v, Mapping))
            return [link for link in links if link is not None]
        return copy_value(value)

    def _link(self, link: Mapping[str, Any]) -> Optional[dict[str, Any]]:
        if not self.source.link_visible(link):
            return None
        return {"type": link["type"], "id": link["id"], "name": self.source.link_name(link)}

    def without_archived(self, entity_type: str, rows: list[Row]) -> list[Row]:
        """*rows* less those of archived projects (``include_archived_projects=False``)."""
        projects = self.table("Project")
        if "archived" not in projects.fields:
            raise SnapshotMiss("Project.archived is not warmed")
        archived = {
            i
            for table in (projects.live, projects.retired)
            for i, r in table.items()
            if r.get("archived")
        }
        if not archived:
            return rows
        if entity_type == "Project":
            return [r for r in rows if r["id"] not in archived]
        if "project" not in self.schema.get(entity_type, {}):
            return rows
        self.check(entity_type, "project")
        kept = []
        for row in rows:
            project = row.get("project")
            if not (isinstance(project, Mapping) and project.get("id") in archived):
                kept.append(row)
        return kept


class Snapshots:
    """Warmed projects of one session, and the reads they can answer."""

    def __init__(self, session: Session, schema: Any = None, in_cached_mode: bool = False) -> None:
        self.session = session
        #: The schema the session was given (a :class:`~sgcache_layers.schema_files.SchemaFile`).
        self.schema: Optional[SchemaFile] = None if schema is None else self._schema_of(schema)
        #: Whether a cached-mode miss may be answered from a fresh snapshot too.
        self.in_cached_mode = in_cached_mode
        #: Reads answered (``"answered"``) and given up on (``"missed"``) by snapshots.
        self.counts: Counter[str] = Counter()
        self._given = self.schema.field_types() if self.schema is not None else {}
        self._held: dict[str, Snapshot] = {}
        self._views: dict[tuple[str, ...], _View] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _schema_of(schema: Any) -> SchemaFile:
        if isinstance(schema, SchemaFile):
            return schema
        try:
            return load_schema(schema)
        except SessionConfigError as error:
            raise SessionConfigError(f"schema: {error}") from None

    def answers(self, policy: Policy) -> bool:
        """Whether snapshots may answer a read made under *policy*."""
        return policy.offline or (self.in_cached_mode and policy.mode == "cached")

    # -- warming ---------------------------------------------------------------------

    def warm(
        self,
        project: Any,
        entity_types: Optional[Sequence[str]] = None,
        fields: Optional[Mapping[str, Sequence[str]]] = None,
        *,
        progress: Optional[bool] = None,
    ) -> dict[str, Any]:
        """Fetch a project's entities and keep them as a snapshot; returns a report."""
        from .warming import Warm

        return Warm(self, progress).run(project, entity_types, fields)

    # -- storage ---------------------------------------------------------------------

    def _store(self) -> Optional[Cache]:
        layout = self.session._layout
        layout.refresh()
        return layout.store

    def head_key(self, scope: str) -> str:
        """The key of a scope's head record (under the current epoch)."""
        return self.session._answers.data_key("w", HEAD_NAME, scope)

    def chunk_key(self, entity_type: str, rest: str) -> str:
        """The key of one chunk record."""
        return self.session._answers.data_key("c", entity_type, rest)

    def load(self, scope: str) -> Optional[Snapshot]:
        """The current snapshot of *scope* (``"site"`` or a project id), if one is stored."""
        epoch = self.session._freshness.epoch
        with self._lock:
            held = self._held.get(scope)
        if held is not None and held.epoch != epoch:
            held = None
        store = self._store()
        if store is None:
            return held
        key = self.head_key(scope)
        try:
            head = records.valid(store.get_many([key]).get(key), ("w",))
        except Exception as error:  # a broken layer: no snapshot rather than an error
            log.warning("reading a snapshot failed: %s", error)
            return None
        if head is None or head["S"] != scope:
            return None
        if held is not None and held.revision == head["n"]:
            return held
        wanted = {self.chunk_key(t, rest): (t, rest) for t, rest in Snapshot.chunk_rests(head)}
        try:
            found = store.get_many(list(wanted)) if wanted else {}
        except Exception as error:
            log.warning("reading a snapshot failed: %s", error)
            return None
        chunks = {}
        for key, name in wanted.items():
            record = records.valid(found.get(key), ("c",))
            if record is not None:
                chunks[name] = record
        try:
            snapshot = Snapshot.from_records(head, chunks, epoch)
        except (KeyError, TypeError, ValueError, AttributeError):
            snapshot = None
        if snapshot is not None:
            with self._lock:
                self._held[scope] = snapshot
        return snapshot

    def save(self, snapshot: Snapshot, gone: Iterable[tuple[str, str]] = ()) -> int:
        """Write a snapshot's changed chunks, then its head; returns the records written.

        Chunks go first and under new keys, so the old head stays whole until the new one
        replaces it; chunks no longer named are removed afterwards.
        """
        chunks, old = snapshot.chunk_records()
        snapshot.epoch = self.session._freshness.epoch
        head = snapshot.head()
        store = self._store()
        if store is not None:
            mapping = {self.chunk_key(t, rest): r for (t, rest), r in chunks.items()}
            keys = list(mapping)
            for start in range(0, len(keys), 16):
                store.set_many({key: mapping[key] for key in keys[start : start + 16]})
            store.set_many({self.head_key(snapshot.scope): head})
            for entity_type, rest in list(gone) + old:
                try:
                    store.remove(self.chunk_key(entity_type, rest))
                except Exception:  # absent, or a broken layer: it is orphaned either way
                    continue
        with self._lock:
            self._held[snapshot.scope] = snapshot
            self._views.clear()
        return len(chunks) + 1

    # -- answering -------------------------------------------------------------------

    def _view(self, entity_type: str, tree: Mapping[str, Any]) -> _View:
        site = self.load(SITE_SCOPE)
        scopes: list[Snapshot] = []
        if site is not None and entity_type in site.tables:
            scopes = [site]
        else:
            project = _project_of(tree)
            snapshot = self.load(str(project)) if project is not None else None
            if snapshot is None or entity_type not in snapshot.tables:
                raise SnapshotMiss(f"{entity_type} is not warmed for this read's project")
            scopes = [snapshot] + ([site] if site is not None else [])
        signature = tuple(f"{s.scope}:{s.revision}:{s.epoch}" for s in scopes)
        with self._lock:
            view = self._views.get(signature)
            if view is None:
                if len(self._views) > 16:
                    self._views.clear()
                view = self._views[signature] = _View(scopes, self._given)
        return view

    def _confirmed(
        self, view: _View, involved: Iterable[str], policy: Policy
    ) -> tuple[float, dict[str, str]]:
        """The stamp and generations an answer from these tables has; SnapshotMiss if stale."""
        gens: dict[str, str] = {}
        stamps = []
        for name in involved:
            table = view.table(name)
            gens.update(table.gens)
            stamps.append(table.stamp)
        stamp = min(stamps) if stamps else 0.0
        if not self.session._answers.usable(stamp, gens, policy):
            raise SnapshotMiss("the snapshot is not fresh")
        return stamp, gens

    def _client(self) -> Any:
        shotgun = self.session.shotgun
        return getattr(shotgun, "prototype", shotgun)

    def _outbound(self, data: Any) -> Any:
        """*data* as the client would send it (links plain, datetimes as UTC text)."""
        data = outbound(data)
        transform = getattr(self._client(), "_transform_outbound", None)
        return transform(data) if callable(transform) else data

    def _inbound(self, data: Any) -> Any:
        """Wire data as the client would give it back (UTC text as datetimes)."""
        transform = getattr(self._client(), "_transform_inbound", None)
        return transform(data) if callable(transform) else data

    def _rows(
        self, view: _View, entity_type: str, tree: Mapping[str, Any], retired: bool, archived: bool
    ) -> list[Row]:
        rows: list[Row] = list(view.table(entity_type).rows(retired))
        if not archived:
            rows = view.without_archived(entity_type, rows)
        compile_filters(entity_type, tree, view.source)  # refused as a site would refuse it
        tree = view.scope_free(entity_type, tree)
        if tree["conditions"]:
            predicate = compile_filters(entity_type, tree, view.source)
            rows = [row for row in rows if predicate(row)]
        return rows

    def _answer(self, kind: str, call: Mapping[str, Any], answer: Any) -> Any:
        try:
            found = answer(call)
        except (SnapshotMiss, FilterError) as error:
            log.debug("%s of %s not answered offline: %s", kind, call.get("entity_type"), error)
            self.counts["missed"] += 1
            return None
        self.counts["answered"] += 1
        return found

    def find(self, policy: Policy, call: Mapping[str, Any]) -> Optional[list[Entity]]:
        """A ``find`` answered from snapshots (*call* holds ``find``'s arguments by name)."""

        def answer(call: Mapping[str, Any]) -> list[Entity]:
            return self._find(policy, call)

        found: Optional[list[Entity]] = self._answer("find", call, answer)
        return found

    def _find(self, policy: Policy, call: Mapping[str, Any]) -> list[Entity]:
        entity_type = call["entity_type"]
        tree = normalise_filters(self._outbound(call.get("filters")), call.get("filter_operator"))
        view = self._view(entity_type, tree)
        order = call.get("order")
        presets = call.get("additional_filter_presets")
        paths = _filter_paths(tree) + [name for name, _ in normalise_order(order)]
        for preset in validate_filter_presets(entity_type, presets):
            paths += _PRESET_FIELDS.get(str(preset.get("latest_by")), [])
        involved = {entity_type}
        for path in paths:
            involved |= view.check(entity_type, path) or set()
        names = []
        for name in list(call.get("fields") or []):
            if name in ("type", "id") or name in names:
                continue
            reads = view.check(entity_type, name, output=True)
            if reads is not None:
                names.append(name)
                involved |= reads
        archived = call.get("include_archived_projects", True) is not False
        if not archived:
            involved.add("Project")
        stamp, gens = self._confirmed(view, involved, policy)
        rows = self._rows(view, entity_type, tree, bool(call.get("retired_only")), archived)
        if presets:
            grouped = any(p.get("latest_by") != "REVISION_NUMBER" for p in presets)
            if grouped and any(row.get("entity") is None for row in rows):
                # A site groups LATEST by the stored link, even one to a retired entity
                # that it shows as empty: the snapshot cannot tell such rows apart.
                raise SnapshotMiss("LATEST over rows without an entity link")
            rows = apply_filter_presets(entity_type, rows, presets, view.source)
        rows = sort_rows(entity_type, rows, order, view.source)
        config = getattr(self._client(), "config", None)
        per_page = getattr(config, "_records_per_page", None) or view.per_page
        rows = page_rows(rows, call.get("limit") or 0, call.get("page") or 0, int(per_page))
        out = []
        for row in rows:
            record: dict[str, Any] = {"type": entity_type, "id": row["id"]}
            for name in names:
                record[name] = view.value(entity_type, row, name)
            out.append(record)
        return self.session._identity.merge_rows(entity_type, out, gens, stamp)

    def summarize(self, policy: Policy, call: Mapping[str, Any]) -> Optional[tuple[Any]]:
        """A ``summarize`` answered from snapshots, as ``(value,)``."""

        def answer(call: Mapping[str, Any]) -> tuple[Any]:
            return (self._summarize(policy, call),)

        found: Optional[tuple[Any]] = self._answer("summarize", call, answer)
        return found

    def _summarize(self, policy: Policy, call: Mapping[str, Any]) -> Any:
        entity_type = call["entity_type"]
        tree = normalise_filters(self._outbound(call.get("filters")), call.get("filter_operator"))
        view = self._view(entity_type, tree)
        summaries = self._outbound(list(call.get("summary_fields") or []))
        grouping = self._outbound(list(call.get("grouping") or []))
        paths = _filter_paths(tree) + [
            str(spec.get("field", "")) for spec in summaries + grouping if isinstance(spec, Mapping)
        ]
        involved = {entity_type}
        for path in paths:
            involved |= view.check(entity_type, path) or set()
        archived = call.get("include_archived_projects", True) is not False
        if not archived:
            involved.add("Project")
        self._confirmed(view, involved, policy)
        rows = self._rows(view, entity_type, tree, False, archived)
        return self._inbound(summarize_rows(entity_type, rows, summaries, grouping, view.source))

    def schema_call(
        self, policy: Policy, method: str, args: Sequence[Any], project: Any
    ) -> Optional[tuple[Any]]:
        """A schema read answered from the schema the session was given, as ``(value,)``.

        Site-wide reads only (a project's view may hide or rename fields), and never in
        ``direct`` mode, which always asks ShotGrid.
        """
        if self.schema is None or project is not None or policy.mode == "direct":
            return None
        return self.schema.answer(method, tuple(args))

    # -- what is warm ----------------------------------------------------------------

    def site_fields(self) -> Optional[Mapping[str, Mapping[str, Any]]]:
        """The field definitions of the schema the session was given, if any."""
        return self.schema.fields if self.schema is not None and self.schema.fields else None
