"""Reads of the in-memory ShotGrid site: ``read``, ``text_search`` and ``summarize``.

Filters, order, paging, filter presets and summaries are the filter engine's
(:mod:`sgcache_layers.filters`); this mixin turns the wire parameters into its calls and
its rows into the records a site returns.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional

from ..filters import MAX_PAGE, apply_filter_presets, sort_rows, summarize_rows, wire_page
from .store_base import TEXT_SEARCH_MIN, Row, SiteBase, SiteError, refusal, to_wire


class SiteReads(SiteBase):
    """The read RPCs of the site."""

    def rpc_read(self, params: Mapping[str, Any], hidden: Iterable[str] = ()) -> Dict[str, Any]:
        """The ``read`` RPC: filters, presets, sorts, paging and return fields as a site does."""
        entity_type = self._require_type(params.get("type"))
        retired = params.get("return_only", "active") == "retired"
        include_archived = params.get("include_archived_projects", True) is not False
        rows = self._candidates(entity_type, params.get("filters"), retired, include_archived)
        with refusal("read"):
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

    # -- summarize

    def rpc_summarize(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """The ``summarize`` RPC: totals and (nested) groups, from the filter engine's core."""
        entity_type = self._require_type(params.get("type"), "summarize")
        include_archived = params.get("include_archived_projects", True) is not False
        rows = self._candidates(
            entity_type, params.get("filters"), False, include_archived, "summarize"
        )
        with refusal("summarize"):
            return summarize_rows(
                entity_type, rows, params.get("summaries"), params.get("grouping"), self
            )
