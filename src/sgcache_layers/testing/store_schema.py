"""The schema of the in-memory ShotGrid site: schema reads, per-project views, changes.

Schema reads answer in ``schema_read`` format, for the site or for one project (whose
overrides hide or rename fields and types); adding, changing and deleting fields logs the
``Shotgun_DisplayColumn_*`` events a site logs.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Mapping, Optional

from .store_base import Actor, Schema, SiteBase, SiteError, to_wire


class SiteSchema(SiteBase):
    """Schema reads and changes."""

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
