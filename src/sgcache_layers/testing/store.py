"""In-memory ShotGrid site: a Mockgun subclass that answers like a real site.

Mockgun keeps rows in ``_db[entity_type][id]`` and reads its schema from pickles; this class
keeps that storage (so anything written for Mockgun still works) but replaces the query and
write paths, because Mockgun differs from a real site in ways a cache notices: ``in``
filters on links, ``limit``/``page``, link ``name`` keys, server-set
``created_at``/``updated_at``/``created_by``/``updated_by``, reverse links, event-log rows
and results that share objects with the store.  Filters, order, paging, filter presets and
summaries are evaluated by :mod:`sgcache_layers.filters`, the engine offline answers use
too; the store is its data source (field types, link resolution, display names, the clock).

:class:`SiteStore` is made of focused parts: the storage, rendering and event-log core
(:mod:`~sgcache_layers.testing.store_base`), reads
(:mod:`~sgcache_layers.testing.store_reads`), writes
(:mod:`~sgcache_layers.testing.store_writes`) and the schema
(:mod:`~sgcache_layers.testing.store_schema`).  The ``rpc_*`` methods take and return what
travels on the wire (JSON-ready values, UTC datetime strings); the Shotgun-like methods
defined here (``find``, ``create``...) wrap them for in-process use.  Callers must hold
:attr:`~SiteStore.lock` around calls made from several threads; the Shotgun-like methods
take it themselves.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

from ..filters import normalise_filters
from .store_base import (
    REVERSE_FIELDS,
    TEXT_SEARCH_MIN,
    UTC,
    WIRE_DATETIME,
    Actor,
    Link,
    Row,
    Schema,
    SiteBase,
    SiteError,
    from_wire,
    parse_datetime,
    refusal,
    to_wire,
)
from .store_reads import SiteReads
from .store_schema import SiteSchema
from .store_writes import SiteWrites

__all__ = [
    "REVERSE_FIELDS",
    "TEXT_SEARCH_MIN",
    "UTC",
    "WIRE_DATETIME",
    "Actor",
    "Link",
    "Row",
    "Schema",
    "SiteBase",
    "SiteError",
    "SiteStore",
    "parse_datetime",
    "to_wire",
]


class SiteStore(SiteReads, SiteWrites, SiteSchema):
    """A Mockgun whose reads and writes behave like a ShotGrid site (see module doc)."""

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        wire_args = [json.loads(json.dumps(to_wire(a))) for a in args]
        with self.lock:
            result = method(*wire_args)
        return from_wire(result)

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
        with refusal("read"):
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
        with refusal("summarize"):
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
        with refusal("text_search"):
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
