"""Normalising ShotGrid calls so that calls meaning the same share one cache key.

``find("Shot", [["code", "is", "A"]])`` and
``find("Shot", {"filter_operator": "all", "filters": [["code", "is", "A"]]})`` ask
the same question; so do two calls whose ``fields`` differ only in order.  The
functions here reduce a call to a canonical, JSON-friendly form and list the
entity types whose changes could alter its answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

__all__ = [
    "QueryError",
    "dependent_types",
    "expand_braces",
    "normalise_fields",
    "normalise_filters",
    "normalise_order",
]

_BRACES = re.compile(r"\{([^{}]*)\}")

_LOGICAL = {"all": "and", "and": "and", "any": "or", "or": "or"}
# Relations whose values are a set: their order does not change the answer.
_UNORDERED = {"in", "not_in", "type_is", "type_is_not"}


class QueryError(ValueError):
    """A find/summarize argument that is not a valid ShotGrid filter, field or order."""


def expand_braces(field: str) -> list[str]:
    """Expand ``"entity.{Asset,Shot}.code"`` into one field name per choice."""
    match = _BRACES.search(field)
    if match is None:
        return [field]
    head, tail = field[: match.start()], field[match.end() :]
    out: list[str] = []
    for choice in match.group(1).split(","):
        out.extend(expand_braces(head + choice.strip() + tail))
    return out


def normalise_fields(fields: Optional[Iterable[str]]) -> list[str]:
    """Sorted, unique field names with braces expanded (``type``/``id`` left out)."""
    if fields is None:
        return []
    if isinstance(fields, str):
        raise QueryError(f"fields must be a list of field names, not the string {fields!r}")
    out: set[str] = set()
    for name in fields:
        if not isinstance(name, str):
            raise QueryError(f"field names must be strings, got {type(name).__name__}")
        out.update(expand_braces(name))
    out.discard("type")
    out.discard("id")
    return sorted(out)


def _value_key(value: Any) -> Any:
    """A JSON-friendly canonical form of one filter value."""
    if isinstance(value, Mapping):
        if "type" in value and "id" in value and isinstance(value.get("id"), int):
            # A link: only type and id matter to ShotGrid's filter.
            return {"type": value["type"], "id": value["id"]}
        return {str(k): _value_key(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_value_key(v) for v in value]
    return value


def _sort_token(value: Any) -> str:
    return repr(value)


def _condition(item: Sequence[Any]) -> dict[str, Any]:
    if len(item) < 2 or not isinstance(item[0], str) or not isinstance(item[1], str):
        raise QueryError(f"a filter must look like [field, relation, value...], got {list(item)!r}")
    path, relation = item[0], item[1]
    values = list(item[2:])
    if (
        len(values) == 1
        and isinstance(values[0], (list, tuple))
        and relation in _UNORDERED
        or (
            len(values) == 1
            and isinstance(values[0], (list, tuple))
            and relation
            in (
                "between",
                "not_between",
                "in_last",
                "not_in_last",
                "in_next",
                "not_in_next",
                "in_calendar_day",
                "in_calendar_week",
                "in_calendar_month",
                "in_calendar_year",
            )
        )
    ):
        values = list(values[0])
    keyed = [_value_key(v) for v in values]
    if relation in _UNORDERED:
        keyed = sorted(keyed, key=_sort_token)
    return {"path": path, "relation": relation, "values": keyed}


def normalise_filters(filters: Any, filter_operator: Optional[str] = None) -> dict[str, Any]:
    """Reduce list or dict filters to ``{"op": "and"|"or", "conditions": [...]}``.

    Conditions of one group are sorted, since their order never changes an answer.
    """
    if filters is None:
        filters = []
    if isinstance(filters, Mapping):
        if "filters" not in filters:
            raise QueryError(
                "a filter group must have 'filter_operator' and 'filters' keys, "
                f"got keys {sorted(filters)!r}"
            )
        op = filters.get("filter_operator", filters.get("logical_operator", "all"))
        return normalise_filters(filters["filters"], op)
    if not isinstance(filters, (list, tuple)):
        raise QueryError(
            f"filters must be a list or a filter group dict, not {type(filters).__name__}"
        )
    operator = _LOGICAL.get(filter_operator or "all")
    if operator is None:
        raise QueryError(f"filter_operator must be 'all' or 'any', not {filter_operator!r}")
    conditions: list[dict[str, Any]] = []
    for item in filters:
        if isinstance(item, Mapping):
            conditions.append(normalise_filters(item))
        elif isinstance(item, (list, tuple)):
            conditions.append(_condition(item))
        else:
            raise QueryError(f"a filter must be a list or a dict, got {type(item).__name__}")
    conditions.sort(key=_sort_token)
    return {"op": operator, "conditions": conditions}


def normalise_order(order: Optional[Sequence[Mapping[str, Any]]]) -> list[list[str]]:
    """``[{"field_name": f, "direction": d}]`` -> ``[[f, d]]`` with ``asc`` made explicit."""
    if not order:
        return []
    out: list[list[str]] = []
    for item in order:
        if not isinstance(item, Mapping) or "field_name" not in item:
            raise QueryError(
                f"an order item must be {{'field_name': ..., 'direction': ...}}, got {item!r}"
            )
        direction = str(item.get("direction", "asc")).lower()
        if direction not in ("asc", "desc"):
            raise QueryError(f"order direction must be 'asc' or 'desc', not {direction!r}")
        out.append([str(item["field_name"]), direction])
    return out


def _path_types(path: str) -> list[str]:
    """Entity types a deep path crosses: ``"entity.Shot.sg_sequence.Sequence.code"``."""
    parts = path.split(".")
    return [parts[i] for i in range(1, len(parts) - 1, 2)]


def _filter_paths(node: Mapping[str, Any]) -> Iterable[str]:
    for condition in node.get("conditions", ()):
        if "conditions" in condition:
            yield from _filter_paths(condition)
        else:
            yield condition["path"]


def dependent_types(
    entity_type: str,
    fields: Iterable[str] = (),
    filters: Optional[Mapping[str, Any]] = None,
    extra: Iterable[str] = (),
) -> list[str]:
    """Every entity type whose changes could alter the answer to a call."""
    types = {entity_type}
    types.update(extra)
    for name in fields:
        types.update(_path_types(name))
    if filters is not None:
        for path in _filter_paths(filters):
            types.update(_path_types(path))
    return sorted(types)
