"""Writes of the in-memory ShotGrid site: values checked, reverse links, events, batches.

Every change writes the ``EventLogEntry`` rows a site writes (one ``Shotgun_<Type>_New`` per
create and one ``_Change`` per changed field, reverse sides included), and a ``batch``
either applies all of its requests or none (changes and events are rolled back).
"""

from __future__ import annotations

import copy
import datetime as _dt
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .store_base import (
    LINK_TYPES,
    NOT_WRITABLE,
    Actor,
    Link,
    Row,
    SiteBase,
    SiteError,
    field_property,
    parse_date,
    parse_datetime,
    to_wire,
)


class SiteWrites(SiteBase):
    """Creating, updating, retiring and reviving rows, and the write RPCs."""

    def _coerce(self, entity_type: str, name: str, value: Any) -> Any:
        definition = self._schema[entity_type].get(name)
        if definition is None:
            raise SiteError(f"{entity_type}.{name} doesn't exist")
        kind = definition["data_type"]["value"]
        if kind in NOT_WRITABLE:
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
            return parse_date(value)
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
            valid = field_property(definition, "valid_values", [])
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
        valid = field_property(definition, "valid_types", [])
        if valid and value["type"] not in valid:
            raise SiteError(f"{entity_type}.{name} cannot link to {value['type']} (valid: {valid})")
        table = self._db.get(value["type"])
        if table is None or value["id"] not in table:
            raise SiteError(
                f"{entity_type}.{name}: linked {value['type']} {value['id']!r} does not exist"
            )
        return {"type": value["type"], "id": value["id"]}

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
            if value and self.field_type(entity_type, key) in LINK_TYPES:
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
            if kind in LINK_TYPES:
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
                if value and self.field_type(entity_type, key) in LINK_TYPES:
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
