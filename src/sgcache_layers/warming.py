"""Warming a project: fetch its rows once, then only what the event log says changed.

A first warm of a project reads the schema (or the one the session was given), the newest
event id, and then every row, live and retired, of each type: a project's types with
``["project", "is", P]``, the site's types (those without a ``project`` field: projects,
steps, users) whole, each in as few pages as the site allows (pages after the first are
asked for at once).  The event id is read *before* the rows, so nothing that changes while
they are read is missed: the next warm reads the events after it.

A later warm (*incremental*) makes one event-log request.  When it returns nothing, the
snapshot is re-stamped and that is all.  Otherwise only what the events name is read
again: the entities they name (new ones join if they are in the project), the rows that
link to an entity the snapshot does not hold but which changed (their link names may have
changed), the whole of every type whose rows may link to a revived entity (the links a
site hid come back), and everything after a schema change, too many events, or when the
request asks for other types or fields.  Event ids missing from the log are asked for
again later, like :class:`~sgcache_layers.freshness.EventLog` does.

Generations are read before anything is fetched, exactly as a cached answer's are, so a
change a sync sees later marks the snapshot stale in ``cached`` mode until warmed again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .events import EVENT_FIELDS, SCHEMA_TYPE, Changes, changes_from_events, missing_ids
from .fetching import find_rows
from .filters import display_candidates
from .freshness import token_time
from .snapshot import SITE_SCOPE, Snapshot, Table

if TYPE_CHECKING:
    from .offline import Snapshots

__all__ = [
    "DEFAULT_PROJECT_TYPES",
    "DEFAULT_SITE_TYPES",
    "SKIPPED_DATA_TYPES",
    "Warm",
    "WarmError",
]

#: Types a project warm fetches by default (those the site has).
DEFAULT_PROJECT_TYPES = ("Sequence", "Shot", "Asset", "Task", "Version", "PublishedFile", "Note")
#: Site-wide types a warm fetches by default; ``Project`` always.
DEFAULT_SITE_TYPES = ("Project", "Step", "HumanUser", "ApiUser")
#: Data types left out of the default fields: images and other signed URLs, passwords.
SKIPPED_DATA_TYPES = frozenset({"image", "url", "pivot_column", "password"})
_LINK_KINDS = ("entity", "multi_entity", "addressing")
_ID_BATCH = 500
#: How many types a warm reads at once.
_TYPES_AT_ONCE = 4
#: How far another host's clock may run behind ours when tokens are compared with a time.
_SKEW_NS = 5_000_000_000
#: The stamp of a type whose linked types moved while it was read (never fresh).
_STALE_STAMP = 1.0


def _subject(event: Mapping[str, Any]) -> Optional[tuple[str, Optional[int], str]]:
    """``(entity type, id or None, action)`` of the entity an event is about, or None."""
    event_type = str(event.get("event_type") or "")
    if not event_type.startswith("Shotgun_"):
        return None
    entity_type, _, action = event_type[len("Shotgun_") :].rpartition("_")
    entity, meta = event.get("entity"), event.get("meta")
    entity_id = entity.get("id") if isinstance(entity, Mapping) else None
    if entity_id is None and isinstance(meta, Mapping):
        entity_id = meta.get("entity_id")
    if isinstance(entity_id, bool) or not isinstance(entity_id, int):
        entity_id = None
    return entity_type, entity_id, action


def _linked(event: Mapping[str, Any]) -> set[tuple[str, int]]:
    """The entities a link change names: those added or removed (a multi-entity field),
    else the old and the new link."""
    meta = event.get("meta")
    found = Changes()
    if isinstance(meta, Mapping):
        names = ("added", "removed") if "added" in meta or "removed" in meta else ()
        for name in names or ("old_value", "new_value"):
            found.add_link(meta.get(name))
    return found.entities


class WarmError(ValueError):
    """A warm that cannot be made as asked (an unknown project, type or field)."""


@dataclass
class _Changes:
    """What an event-log read says to fetch, and where the log now stands."""

    full: set[str]
    changed: dict[str, set[int]]
    position: int
    holes: dict[int, float]
    removed: set[str]


@dataclass
class _Plan:
    """What to fetch of one type: its scope, fields and the generations it depends on."""

    entity_type: str
    scope: str
    fields: list[str]
    all_fields: bool
    deps: list[str]
    types: dict[str, str]


def _progress_bar(progress: Optional[bool], total: int) -> Any:
    """A tqdm bar on stderr when it is a terminal (or when *progress* says so)."""
    show = sys.stderr.isatty() if progress is None else progress
    if not show or total <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="warming", unit="type", file=sys.stderr, leave=False)


class Warm:
    """One warm of one project (see the module doc)."""

    def __init__(self, snapshots: Snapshots, progress: Optional[bool] = None) -> None:
        self.owner = snapshots
        self.session = snapshots.session
        self.progress = progress
        self.report: dict[str, Any] = {
            "full": [],
            "updated": {},
            "events": 0,
        }
        self._bar: Any = None

    # -- the run ---------------------------------------------------------------------

    def run(
        self,
        project: Any,
        entity_types: Optional[Sequence[str]] = None,
        fields: Optional[Mapping[str, Sequence[str]]] = None,
    ) -> dict[str, Any]:
        """Warm *project* (a name, an id or a link); returns a report of what was done."""
        session = self.session
        if session.mode == "offline":
            from .session import OfflineError

            raise OfflineError("warm() needs ShotGrid, but the session is offline")
        began = time.perf_counter()
        asked_before = session.stats.request_count
        if entity_types is not None and (
            isinstance(entity_types, str) or not all(isinstance(t, str) for t in entity_types)
        ):
            raise WarmError(f"entity_types must be a list of type names, not {entity_types!r}")
        site = self.owner.load(SITE_SCOPE)
        if site is None:
            # The first sync of a namespace flushes it: settle its event-log position first,
            # so that a later sync() continues from here instead of orphaning the snapshot.
            session.sync()
            site = self.owner.load(SITE_SCOPE)
        link = self._project(project, site)
        found = self.owner.load(str(link["id"]))
        current = found.copy() if found is not None else None
        site = site.copy() if site is not None else None
        request = {
            "types": sorted(entity_types) if entity_types is not None else None,
            "fields": {t: list(f) for t, f in sorted(fields.items())} if fields else None,
        }
        scope = str(link["id"])
        plans = self._plans(request, entity_types, fields, site, current, scope)
        site = site or Snapshot(SITE_SCOPE, None, 0, {}, {}, {})
        current = current or Snapshot(scope, link, 0, {}, {}, {})
        current.project = link
        current.request = request
        client = getattr(session.shotgun, "prototype", session.shotgun)
        per_page = int(getattr(getattr(client, "config", None), "records_per_page", 500))
        site.per_page = current.per_page = per_page
        scopes = {SITE_SCOPE: site, scope: current}
        self.report["project"] = link
        started = time.time()
        started_ns = time.time_ns()
        names = sorted({n for plan in plans.values() for n in plan.deps})
        gens = session._freshness.current(names)
        found_changes = self._changes(plans, scopes)
        full, changed = found_changes.full, found_changes.changed
        position, holes = found_changes.position, found_changes.holes
        late = sorted({n for plan in plans.values() for n in plan.deps} - set(gens))
        if late:  # a schema change brought new links
            gens.update(session._freshness.current(late))
        gone: dict[str, list[tuple[str, str]]] = {SITE_SCOPE: [], scope: []}
        for name in found_changes.removed:
            for snapshot in scopes.values():
                table = snapshot.tables.pop(name, None)
                snapshot.schema.pop(name, None)
                if table is not None:
                    gone[snapshot.scope] += [(name, c.rest) for c in table.chunks if c.rest]
        self._bar = _progress_bar(self.progress, len(full) + len(changed))
        try:
            # Types are read side by side (each on its own pooled connection), as pages are.
            with ThreadPoolExecutor(_TYPES_AT_ONCE, thread_name_prefix="sgcl-warm") as pool:
                whole = {
                    name: pool.submit(self._fetch_all, scopes[plans[name].scope], plans[name], link)
                    for name in sorted(full)
                }
                some = [
                    pool.submit(self._fetch_some, scopes[plans[name].scope], plans[name], link, ids)
                    for name, ids in sorted(changed.items())
                ]
                for name, fetched in whole.items():
                    gone[plans[name].scope] += fetched.result()
                for job in some:
                    job.result()
        finally:
            if self._bar is not None:
                self._bar.close()
        for plan in plans.values():
            snapshot = scopes[plan.scope]
            table = snapshot.tables[plan.entity_type]
            table.deps = list(plan.deps)
            table.stamp = started
            table.gens = {name: gens[name] for name in plan.deps}
            snapshot.schema[plan.entity_type] = plan.types
        self._late_links(scopes, started_ns)
        written = 0
        for snapshot in scopes.values():
            snapshot.position = position
            snapshot.holes = dict(holes)
            written += self.owner.save(snapshot, gone[snapshot.scope])
        self.report.update(
            position=position,
            rows={t: len(s.tables[t].live) for s in scopes.values() for t in sorted(s.tables)},
            retired={t: len(s.tables[t].retired) for s in scopes.values() for t in s.tables},
            records=written,
            requests=session.stats.request_count - asked_before,
            seconds=time.perf_counter() - began,
        )
        return self.report

    # -- what to warm ----------------------------------------------------------------

    def _project(self, project: Any, site: Optional[Snapshot]) -> dict[str, Any]:
        """``{"type": "Project", "id": ..., "name": ...}`` for a name, id or link."""
        if isinstance(project, Mapping):
            if project.get("type") != "Project" or not isinstance(project.get("id"), int):
                raise WarmError(f"not a Project link: {dict(project)!r}")
            project = project["id"]
        table = site.tables.get("Project") if site is not None else None
        if isinstance(project, bool) or not isinstance(project, (int, str)):
            raise WarmError(f"project must be a name, an id or a link, not {project!r}")
        if isinstance(project, int):
            row = table.live.get(project) if table is not None else None
            name = row.get("name") if row is not None else None
            if row is None:
                found = self.session._requests(
                    "find_one", "Project", [["id", "is", project]], ["name"]
                )
                if found is None:
                    raise WarmError(f"there is no project with id {project}")
                name = found.get("name")
            return {"type": "Project", "id": project, "name": name}
        if table is not None:
            named = [r for r in table.live.values() if r.get("name") == project]
            if len(named) == 1:
                return {"type": "Project", "id": named[0]["id"], "name": project}
        found = self.session._requests("find_one", "Project", [["name", "is", project]], ["name"])
        if found is None:
            raise WarmError(f"there is no project named {project!r}")
        return {"type": "Project", "id": int(found["id"]), "name": found.get("name")}

    def _schema(self) -> Mapping[str, Mapping[str, Any]]:
        """The site's field definitions: the schema given, else read now (not cached)."""
        given = self.owner.site_fields()
        if given is not None:
            return given
        with self.session.using_mode("direct"):
            schema = self.session.schema_read()
        if not isinstance(schema, Mapping):
            raise WarmError("the site did not answer schema_read()")
        return schema

    def _plans(
        self,
        request: Mapping[str, Any],
        entity_types: Optional[Sequence[str]],
        fields: Optional[Mapping[str, Sequence[str]]],
        site: Optional[Snapshot],
        current: Optional[Snapshot],
        scope: str,
    ) -> dict[str, _Plan]:
        """What to fetch of each type: every type warmed already, and those asked for.

        When the request is the one made last time, the snapshots say it all (no schema
        read); otherwise the schema (given, or read now) says what the asked types hold.
        """
        plans: dict[str, _Plan] = {}
        for snapshot in (s for s in (site, current) if s is not None):
            for name, table in snapshot.tables.items():
                plans[name] = _Plan(
                    name,
                    snapshot.scope,
                    list(table.fields),
                    table.all_fields,
                    list(table.deps),
                    dict(snapshot.schema.get(name, {})),
                )
        if site is not None and current is not None and current.request == request and plans:
            return plans
        schema = self._schema()
        if entity_types is None:
            wanted = [t for t in DEFAULT_SITE_TYPES + DEFAULT_PROJECT_TYPES if t in schema]
        else:
            unknown = [t for t in entity_types if t not in schema]
            if unknown:
                raise WarmError(f"the site has no entity type {', '.join(map(repr, unknown))}")
            wanted = ["Project"] + [t for t in entity_types if t != "Project"]
        for name in set(fields or {}) - set(wanted):
            raise WarmError(f"fields were given for {name!r}, which is not warmed")
        for name in wanted:
            plans[name] = self._plan(name, schema, (fields or {}).get(name), scope)
        return plans

    @staticmethod
    def _plan(
        entity_type: str,
        schema: Mapping[str, Mapping[str, Any]],
        given: Optional[Sequence[str]],
        scope: str,
    ) -> _Plan:
        """The plan of one type from the schema (*scope*: the project's, if it has one)."""
        definitions = schema[entity_type]
        types = {
            name: str(d.get("data_type", {}).get("value"))
            for name, d in definitions.items()
            if isinstance(d, Mapping)
        }
        project = types.get("project") == "entity" and entity_type != "Project"
        if given is None:
            names = [n for n, kind in types.items() if kind not in SKIPPED_DATA_TYPES]
        else:
            if isinstance(given, str):
                raise WarmError(f"the fields of {entity_type} must be a list, not {given!r}")
            missing = [n for n in given if n not in types]
            if missing:
                raise WarmError(f"{entity_type} has no field {', '.join(map(repr, missing))}")
            names = list(dict.fromkeys(given))
        names = [n for n in names if n not in ("id", "type")]
        if project and "project" not in names:
            names.append("project")
        deps = {entity_type, SCHEMA_TYPE}
        for name in names:
            if types.get(name) in _LINK_KINDS:
                properties = definitions[name].get("properties", {})
                valid = properties.get("valid_types", {}).get("value") or []
                deps.update(t for t in valid if isinstance(t, str))
        return _Plan(
            entity_type,
            scope if project else SITE_SCOPE,
            names,
            given is None,
            sorted(deps),
            types,
        )

    # -- what changed ----------------------------------------------------------------

    def _latest_event(self) -> int:
        latest = self.session._requests(
            "find_one",
            "EventLogEntry",
            [],
            ["id"],
            order=[{"field_name": "id", "direction": "desc"}],
        )
        return int(latest["id"]) if latest else 0

    def _changes(self, plans: dict[str, _Plan], scopes: Mapping[str, Snapshot]) -> _Changes:
        """What to fetch: whole types, some ids again, and where the event log stands."""
        known = {
            name
            for name, plan in plans.items()
            if name in scopes[plan.scope].tables
            and scopes[plan.scope].tables[name].fields == plan.fields
        }
        full = set(plans) - known
        changed: dict[str, set[int]] = {}
        if not known:
            return _Changes(full, changed, self._latest_event(), {}, set())
        warmed = [s for s in scopes.values() if s.tables]
        low = min(s.position for s in warmed)
        holes: dict[int, float] = {}
        now = time.time()
        backlog = self.session.event_backlog
        for snapshot in warmed:
            for event_id, seen in snapshot.holes.items():
                if now - seen < backlog:
                    holes[event_id] = min(seen, holes.get(event_id, seen))
        events = self._events(low, holes)
        self.report["events"] = len(events)
        if len(events) >= self.session.sync_limit:
            return _Changes(set(plans), {}, self._latest_event(), {}, set())
        fresh = [e for e in events if isinstance(e.get("id"), int) and e["id"] > low]
        for event in events:
            holes.pop(event.get("id"), None)  # type: ignore[arg-type]
        gap = missing_ids(low, fresh)
        if len(gap) <= 1000:
            holes.update(dict.fromkeys(gap, now))
        position = max([low] + [e["id"] for e in fresh])
        tables = {name: scopes[plans[name].scope].tables[name] for name in known}
        foreign: set[tuple[str, int]] = set()
        revived: set[str] = set()
        schema_moved = False
        for event in events:
            changes = changes_from_events([event])
            if SCHEMA_TYPE in changes.types:
                schema_moved = True
                continue
            own = _subject(event)
            if own is None or own[0] not in changes.types:
                continue
            entity_type, entity_id, action = own
            table = tables.get(entity_type)
            if entity_id is None:
                if table is not None:
                    full.add(entity_type)  # which one changed is not known
                continue
            if action == "Revival":
                revived.add(entity_type)
            project = event.get("project")
            in_scope = isinstance(project, Mapping) and str(project.get("id")) == (
                plans[entity_type].scope if table is not None else ""
            )
            if table is not None and (
                plans[entity_type].scope == SITE_SCOPE
                or table.row(entity_id) is not None
                or in_scope
            ):
                changed.setdefault(entity_type, set()).add(entity_id)
            elif action == "Retirement" or (
                action == "Change"
                and event.get("attribute_name") in display_candidates(entity_type)
            ):
                foreign.add((entity_type, entity_id))  # links to it may show or name it anew
            # The other side of a changed link: a reverse field of a row this holds.
            for other_type, other_id in _linked(event) - {(entity_type, entity_id)}:
                other = tables.get(other_type)
                if (
                    other is not None
                    and entity_type in other.deps
                    and other.row(other_id) is not None
                ):
                    changed.setdefault(other_type, set()).add(other_id)
        removed: set[str] = set()
        if schema_moved:
            removed = self._schema_again(plans)
            full -= removed
            full |= {
                name
                for name in known - removed
                if plans[name].fields != tables[name].fields or plans[name].all_fields
            }
        for name, table in tables.items():
            if any(t in revived for t in table.deps):
                full.add(name)
        if foreign:
            for name, table in tables.items():
                linking = self._linking(table, plans[name].types, foreign)
                if linking:
                    changed.setdefault(name, set()).update(linking)
        for name in full | removed:
            changed.pop(name, None)
        return _Changes(full, changed, position, holes, removed)

    def _schema_again(self, plans: dict[str, _Plan]) -> set[str]:
        """Re-plan every type after a schema change; returns the types the site lost."""
        schema = self._schema()
        gone = set()
        for name, plan in list(plans.items()):
            if name not in schema:
                gone.add(name)
                del plans[name]
                continue
            kept = None if plan.all_fields else [f for f in plan.fields if f in schema[name]]
            fresh = self._plan(name, schema, kept, plan.scope)
            fresh.scope = plan.scope
            plans[name] = fresh
        return gone

    @staticmethod
    def _linking(table: Table, types: Mapping[str, str], keys: set[tuple[str, int]]) -> set[int]:
        """Ids of the rows of *table* whose links name one of *keys*."""
        fields = [name for name in table.fields if types.get(name) in _LINK_KINDS]
        found: set[int] = set()
        for rows in (table.live, table.retired):
            for entity_id, row in rows.items():
                for name in fields:
                    value = row.get(name)
                    items = value if isinstance(value, list) else [value]
                    for item in items:
                        if isinstance(item, Mapping) and (item.get("type"), item.get("id")) in keys:
                            found.add(entity_id)
        return found

    def _events(self, after: int, holes: Mapping[int, float]) -> list[dict[str, Any]]:
        """Events after *after* (and the missing ids in *holes*), oldest first: one request."""
        filters: list[Any] = [["id", "greater_than", after]]
        extra: dict[str, Any] = {}
        if holes:
            filters.append(["id", "in", sorted(holes)])
            extra["filter_operator"] = "any"
        return list(
            self.session._requests(
                "find",
                "EventLogEntry",
                filters,
                EVENT_FIELDS,
                order=[{"field_name": "id", "direction": "asc"}],
                limit=self.session.sync_limit,
                **extra,
            )
        )

    # -- fetching --------------------------------------------------------------------

    def _scope_filters(self, plan: _Plan, link: Mapping[str, Any]) -> list[Any]:
        if plan.scope == SITE_SCOPE:
            return []
        return [["project", "is", {"type": "Project", "id": link["id"]}]]

    def _find_all(
        self, plan: _Plan, filters: list[Any], retired: bool = False
    ) -> list[dict[str, Any]]:
        session = self.session
        session._requests.count("find")
        return find_rows(
            session.shotgun,
            session._pages,
            plan.entity_type,
            filters,
            plan.fields,
            retired_only=retired,
        )

    def _tick(self, entity_type: str, rows: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{entity_type}: {rows} rows", refresh=False)
            self._bar.update(1)

    def _fetch_all(
        self, snapshot: Snapshot, plan: _Plan, link: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        """Read every row of a type in its scope; returns the chunks it no longer uses."""
        filters = self._scope_filters(plan, link)
        live = self._find_all(plan, filters)
        retired = self._find_all(plan, filters, retired=True)
        table = snapshot.tables.get(plan.entity_type)
        if table is None or table.fields != plan.fields:
            old = table
            table = snapshot.tables[plan.entity_type] = Table(
                plan.entity_type, list(plan.fields), list(plan.deps), 0.0, {}
            )
            table.all_fields = plan.all_fields
            gone = [(plan.entity_type, c.rest) for c in (old.chunks if old else []) if c.rest]
            table.replace(live, retired)
        else:
            gone = [(plan.entity_type, rest) for rest in table.replace(live, retired)]
        self.report["full"].append(plan.entity_type)
        self._tick(plan.entity_type, len(live))
        return gone

    def _fetch_some(
        self, snapshot: Snapshot, plan: _Plan, link: Mapping[str, Any], ids: Iterable[int]
    ) -> None:
        """Read some rows of a type again (live, then retired); those not found leave."""
        table = snapshot.tables[plan.entity_type]
        scope = self._scope_filters(plan, link)
        wanted = sorted(ids)
        count = 0
        for start in range(0, len(wanted), _ID_BATCH):
            batch = wanted[start : start + _ID_BATCH]
            filters = [["id", "in", batch]] + scope
            found = self.session._requests("find", plan.entity_type, filters, plan.fields)
            for row in found:
                table.put(row, retired=False)
            missing = sorted(set(batch) - {row["id"] for row in found})
            gone: list[dict[str, Any]] = []
            if missing:
                gone = self.session._requests(
                    "find",
                    plan.entity_type,
                    [["id", "in", missing]] + scope,
                    plan.fields,
                    retired_only=True,
                )
                for row in gone:
                    table.put(row, retired=True)
            for entity_id in set(missing) - {row["id"] for row in gone}:
                table.drop(entity_id)
            count += len(batch)
        self.report["updated"][plan.entity_type] = count
        self._tick(plan.entity_type, count)

    def _late_links(self, scopes: Mapping[str, Snapshot], started_ns: int) -> None:
        """Types linked from rows that the plan did not expect (fields with no valid types).

        Their tokens are read now; one made after the warm began means that type moved
        while it was read, and the tables linking it are never fresh until warmed again.
        """
        extra: dict[tuple[str, str], set[str]] = {}
        for snapshot in scopes.values():
            for name, table in snapshot.tables.items():
                kinds = snapshot.schema.get(name, {})
                fields = [f for f in table.fields if kinds.get(f) in _LINK_KINDS]
                seen: set[str] = set()
                for rows in (table.live, table.retired):
                    for row in rows.values():
                        for field_name in fields:
                            value = row.get(field_name)
                            for item in value if isinstance(value, list) else [value]:
                                if isinstance(item, Mapping) and isinstance(item.get("type"), str):
                                    seen.add(item["type"])
                new = seen - set(table.deps)
                if new:
                    extra[(snapshot.scope, name)] = new
        if not extra:
            return
        names = sorted({n for found in extra.values() for n in found})
        created: set[str] = set()
        tokens = self.session._freshness.current(names, created=created)
        limit = started_ns - _SKEW_NS
        for (scope, name), found in extra.items():
            table = scopes[scope].tables[name]
            table.deps = sorted(set(table.deps) | found)
            table.gens.update({n: tokens[n] for n in found})
            if any(n not in created and token_time(tokens[n]) > limit for n in found):
                table.stamp = _STALE_STAMP
