"""Schemas without a site: read a schema JSON, answer schema reads from it, write one.

A session given ``schema=`` (a path, JSON text or a dict) answers ``schema_read``,
``schema_entity_read`` and ``schema_field_read`` from it, and offline answers learn field
types from it.  Three shapes are read, per entity type, so one file may even mix them:

* the ``schema_read()`` answer: ``{type: {field: field definition}}``;
* the ``schema_entity_read()`` answer: ``{type: {"name": ..., "visible": ...}}``;
* shotgrid_orm's combined file: ``{type: {<schema_entity_read keys>, "fields": {field:
  field definition}}}``, which is what :func:`export_schema` writes.

A path may also be a directory holding ``schema.json`` and ``schema_entity.json`` (the
loopback server's layout).  A field definition is recognised by its ``data_type``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .config import SessionConfigError

__all__ = ["SchemaFile", "export_schema", "load_schema"]

Definitions = dict[str, dict[str, Any]]
SchemaSpec = Union[str, "os.PathLike[str]", Mapping[str, Any]]


def _is_field(value: Any) -> bool:
    """Whether *value* is one field's definition (it has a ``data_type`` value)."""
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("data_type"), Mapping)
        and "value" in value["data_type"]
    )


@dataclass(frozen=True)
class SchemaFile:
    """A site's schema as read from a file: field definitions and entity definitions."""

    #: ``schema_read()`` format: ``{type: {field: definition}}``.
    fields: Definitions = field(default_factory=dict)
    #: ``schema_entity_read()`` format: ``{type: definition}`` (empty if the file had none).
    entities: Definitions = field(default_factory=dict)

    def field_types(self) -> dict[str, dict[str, str]]:
        """``{type: {field: data type}}``: what offline evaluation needs to know."""
        return {
            entity_type: {
                name: str(definition["data_type"]["value"])
                for name, definition in fields.items()
                if _is_field(definition)
            }
            for entity_type, fields in self.fields.items()
        }

    def combined(self) -> Definitions:
        """shotgrid_orm's combined form: each type's entity definition plus ``fields``."""
        out: Definitions = {}
        for entity_type in list(self.entities) + [t for t in self.fields if t not in self.entities]:
            entry = dict(self.entities.get(entity_type, {}))
            entry["fields"] = dict(self.fields.get(entity_type, {}))
            out[entity_type] = entry
        return out

    def answer(self, method: str, args: tuple[Any, ...]) -> Optional[tuple[Any]]:
        """A schema read answered from the file as ``(value,)``, or ``None`` if it cannot."""
        if method == "schema_read":
            return (self.fields,) if self.fields else None
        if method == "schema_entity_read":
            return (self.entities,) if self.entities else None
        if method == "schema_field_read":
            entity_type = args[0] if args else None
            name = args[1] if len(args) > 1 else None
            fields = self.fields.get(entity_type) if isinstance(entity_type, str) else None
            if fields is None:
                return None
            if name is None:
                return (fields,)
            return ({name: fields[name]},) if name in fields else None
        return None


def parse_schema(data: Mapping[str, Any]) -> SchemaFile:
    """A :class:`SchemaFile` from decoded JSON in any of the shapes the module doc names."""
    if not isinstance(data, Mapping):
        raise SessionConfigError(f"a schema must be a JSON object, not {type(data).__name__}")
    fields: Definitions = {}
    entities: Definitions = {}
    for entity_type, entry in data.items():
        if not isinstance(entity_type, str) or not isinstance(entry, Mapping):
            raise SessionConfigError(f"schema entry {entity_type!r} is not an object")
        nested = entry.get("fields")
        if isinstance(nested, Mapping) and not _is_field(nested):
            entities[entity_type] = {k: v for k, v in entry.items() if k != "fields"}
            fields[entity_type] = dict(nested)
        elif all(_is_field(v) for v in entry.values()):
            fields[entity_type] = dict(entry)
        elif not any(_is_field(v) for v in entry.values()):
            entities[entity_type] = dict(entry)
        else:
            raise SessionConfigError(
                f"schema entry {entity_type!r} mixes field definitions with other keys"
            )
    for entity_type, definitions in fields.items():
        for name, definition in definitions.items():
            if not _is_field(definition):
                raise SessionConfigError(
                    f"schema field {entity_type}.{name} has no data_type; is this a schema?"
                )
    return SchemaFile(fields, entities)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise SessionConfigError(f"cannot read the schema {path}: {error}") from None
    except ValueError as error:
        raise SessionConfigError(f"the schema {path} is not JSON: {error}") from None


def load_schema(source: SchemaSpec) -> SchemaFile:
    """Read a schema from a dict, JSON text, a JSON file or a ``schema.json`` directory."""
    if isinstance(source, Mapping):
        return parse_schema(source)
    if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        try:
            return parse_schema(json.loads(source))
        except ValueError as error:
            if isinstance(error, SessionConfigError):
                raise
            raise SessionConfigError(f"the schema text is not JSON: {error}") from None
    if not isinstance(source, (str, os.PathLike)):
        raise SessionConfigError(
            f"schema must be a path, JSON text or a dict, not {type(source).__name__}"
        )
    path = os.fspath(source)
    if os.path.isdir(path):
        parts = parse_schema(_read_json(os.path.join(path, "schema.json")))
        entity_file = os.path.join(path, "schema_entity.json")
        if os.path.exists(entity_file):
            extra = parse_schema(_read_json(entity_file))
            return SchemaFile(parts.fields, {**parts.entities, **extra.entities})
        return parts
    return parse_schema(_read_json(path))


def export_schema(shotgun: Any, path: Union[str, os.PathLike[str]]) -> SchemaFile:
    """Read a live site's schema (two requests) and write it to *path* as one combined file.

    The file is written next to its final name and moved into place, so a reader never
    sees half of it.
    """
    schema = SchemaFile(dict(shotgun.schema_read()), dict(shotgun.schema_entity_read()))
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    handle, temporary = tempfile.mkstemp(prefix=".schema-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(schema.combined(), out, indent=1, sort_keys=True)
            out.write("\n")
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return schema
