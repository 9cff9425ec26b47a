"""Normalising ShotGrid calls so that calls meaning the same share one cache key.

``find("Shot", [["code", "is", "A"]])`` and
``find("Shot", {"filter_operator": "all", "filters": [["code", "is", "A"]]})`` ask
the same question; so do two calls whose ``fields`` differ only in order.  The
functions here reduce a call to a canonical, JSON-friendly form and list the
entity types whose changes could alter its answer.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from .keys import ObjectKeyMaker

__all__ = [
    "QueryError",
    "call_digest",
    "find_call",
    "summarize_call",
    "has_plain_repr",
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


_OBJECT_KEYS = ObjectKeyMaker()


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
    if (
        (fields.__class__ is list or fields.__class__ is tuple)
        and all(name.__class__ is str for name in fields)
        and "{" not in "".join(fields)
    ):
        # The usual case, plain names without braces, without a Python-level loop.
        plain = set(fields)
        plain.discard("type")
        plain.discard("id")
        return sorted(plain)
    out: set[str] = set()
    for name in fields:
        if not isinstance(name, str):
            raise QueryError(f"field names must be strings, got {type(name).__name__}")
        out.update(expand_braces(name))
    out.discard("type")
    out.discard("id")
    return sorted(out)


def _value_key(value: Any) -> Any:
    """A canonical, JSON-native form of one filter value (what decides ShotGrid's answer).

    Links count by type and id; values plain JSON cannot tell apart from others
    (datetimes, dates, non-finite floats, other objects) become small tagged dicts, and a
    user dict key starting with ``~`` is escaped so it never reads as a tag.
    """
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float:
        return value if math.isfinite(value) else {"~f": repr(value)}
    if isinstance(value, Mapping):
        link_id = value.get("id")
        if "type" in value and link_id.__class__ is int:
            # A link: only type and id matter to ShotGrid's filter.
            return {"type": value["type"], "id": link_id}
        return {
            ("~" + str(k) if str(k).startswith("~") else str(k)): _value_key(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_value_key(v) for v in value]
    if isinstance(value, _dt.datetime):
        return {"~t": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"~d": value.isoformat()}
    if isinstance(value, bool):  # subclasses of the plain types count as those types
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return _value_key(float(value))
    return {"~o": _OBJECT_KEYS.key(value)}


_PLAIN_LEAVES = (str, int, float, bool, type(None))


def has_plain_repr(value: Any, _depth: int = 0) -> bool:
    """Whether ``repr(value)`` tells this value apart from every other value a call can hold.

    True for the plain types (``str``, ``int``, ``float``, ``bool``, ``None``, lists, tuples,
    dicts of those, dates, datetimes with a fixed offset, and entities): two such values
    with the same ``repr`` normalise the same, so a normalised call can be remembered by
    the ``repr`` of its raw arguments.  Anything else (subclasses with their own ``repr``,
    objects) is never remembered that way.
    """
    cls = value.__class__
    if cls in _PLAIN_LEAVES:
        return True
    if _depth > 20:
        return False
    if cls is list or cls is tuple:
        return all(has_plain_repr(v, _depth + 1) for v in value)
    if cls is dict:
        return all(k.__class__ is str and has_plain_repr(v, _depth + 1) for k, v in value.items())
    if cls is _dt.datetime:
        return bool(value.tzinfo is None or value.tzinfo.__class__ is _dt.timezone)
    if cls is _dt.date:
        return True
    # An entity's repr shows its type and id, all a filter keeps of it.
    return bool(cls.__name__ == "Entity" and cls.__module__ == "sgcache_layers.entity")


def _sort_token(value: Any) -> str:
    return repr(value)


_RANGE_RELATIONS = frozenset(
    {
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
    }
)


def _condition(item: Sequence[Any]) -> dict[str, Any]:
    if len(item) < 2 or not isinstance(item[0], str) or not isinstance(item[1], str):
        raise QueryError(f"a filter must look like [field, relation, value...], got {list(item)!r}")
    path, relation = item[0], item[1]
    values = list(item[2:])
    if (
        len(values) == 1
        and isinstance(values[0], (list, tuple))
        and (relation in _UNORDERED or relation in _RANGE_RELATIONS)
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
        if item.__class__ is list and len(item) == 3:
            path, relation, value = item
            cls = value.__class__
            if (
                path.__class__ is str
                and relation.__class__ is str
                and (cls is str or cls is int or value is None)
                and relation not in _UNORDERED
            ):
                # [field, relation, plain value]: the usual condition, the short way.
                conditions.append({"path": path, "relation": relation, "values": [value]})
                continue
        if isinstance(item, Mapping):
            conditions.append(normalise_filters(item))
        elif isinstance(item, (list, tuple)):
            conditions.append(_condition(item))
        else:
            raise QueryError(f"a filter must be a list or a dict, got {type(item).__name__}")
    if len(conditions) > 1:
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


def deep_types(fields: Iterable[str]) -> list[str]:
    """Entity types the deep fields among *fields* read through."""
    return sorted({t for name in fields if "." in name for t in _path_types(name)})


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


def get_arguments(
    entity_type: Any, id_or_ids: Any, fields: Any, fetch: bool
) -> tuple[list[int], list[str], bool]:
    """Check ``Session.get``'s arguments: the ids, the field names and *fetch*.

    A bool in the place of *fields* is *fetch*, as in sgsession's older
    ``get(type, id, fetch)``.  Raises :class:`QueryError` or ``TypeError`` naming what
    was wrong.
    """
    if not isinstance(entity_type, str) or not entity_type:
        raise QueryError(f"entity_type must be a non-empty string, not {entity_type!r}")
    if isinstance(id_or_ids, bool) or not isinstance(id_or_ids, (int, list, tuple)):
        raise TypeError(f"get() takes an int id or a list of ids, not {type(id_or_ids).__name__}")
    if isinstance(fields, bool):
        fetch, fields = fields, None
    names = [fields] if isinstance(fields, str) else list(fields or ())
    if not all(isinstance(name, str) for name in names) or isinstance(fields, Mapping):
        raise TypeError(f"get() takes field names as fields, not {fields!r}")
    ids = [id_or_ids] if isinstance(id_or_ids, int) else list(id_or_ids)
    for entity_id in ids:
        if isinstance(entity_id, bool) or not isinstance(entity_id, int):
            raise TypeError(f"entity ids must be int, not {type(entity_id).__name__}")
    return ids, names, fetch


def find_call(
    entity_type: Any,
    filters: Any,
    fields: Any = None,
    order: Any = None,
    filter_operator: Any = None,
    limit: Any = 0,
    retired_only: Any = False,
    page: Any = 0,
    include_archived_projects: Any = True,
    additional_filter_presets: Any = None,
) -> dict[str, Any]:
    """A ``find`` call checked and normalised (``QueryError`` naming what is wrong).

    ``f`` holds the filters and ``fl`` the fields, as :func:`normalise_filters` and
    :func:`normalise_fields` give them; the rest tells the answers apart.
    """
    if not isinstance(entity_type, str) or not entity_type:
        raise QueryError(f"entity_type must be a non-empty string, not {entity_type!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise QueryError(f"limit must be an int >= 0, not {limit!r}")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise QueryError(f"page must be an int >= 0, not {page!r}")
    nfields = normalise_fields(fields)
    nfilters = normalise_filters(filters, filter_operator)
    call = {
        "m": "find",
        "t": entity_type,
        "f": nfilters,
        "fl": nfields,
        "o": normalise_order(order),
        "l": limit,
        "p": page,
        "r": bool(retired_only),
        "a": bool(include_archived_projects),
        "x": _value_key(additional_filter_presets or []),
    }
    return call


def summarize_call(
    entity_type: Any,
    filters: Any,
    summary_fields: Any,
    filter_operator: Any = None,
    grouping: Any = None,
    include_archived_projects: Any = True,
) -> tuple[dict[str, Any], list[str]]:
    """A ``summarize`` call checked and normalised, with the types its answer depends on."""
    if not isinstance(entity_type, str) or not entity_type:
        raise QueryError(f"entity_type must be a non-empty string, not {entity_type!r}")
    for name, items in (("summary_fields", summary_fields), ("grouping", grouping or [])):
        if not isinstance(items, (list, tuple)) or not all(
            isinstance(i, Mapping) and isinstance(i.get("field"), str) for i in items
        ):
            raise QueryError(
                f"{name} must be a list of {{'field': ..., 'type': ...}} dicts, not {items!r}"
            )
    nfilters = normalise_filters(filters, filter_operator)
    summaries = sorted([str(s["field"]), str(s.get("type"))] for s in summary_fields)
    groups = [
        [str(g["field"]), str(g.get("type")), str(g.get("direction", "asc"))]
        for g in (grouping or [])
    ]
    call = {
        "m": "summarize",
        "t": entity_type,
        "f": nfilters,
        "s": summaries,
        "g": groups,
        "a": bool(include_archived_projects),
    }
    paths = [s[0] for s in summaries] + [g[0] for g in groups]
    return call, dependent_types(entity_type, paths, nfilters)


try:
    import orjson

    def _canonical(call: Any) -> bytes:
        return orjson.dumps(call, option=orjson.OPT_SORT_KEYS)

except ImportError:  # pragma: no cover - depends on the environment

    def _canonical(call: Any) -> bytes:
        return json.dumps(call, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )


def call_digest(call: Any) -> str:
    """A stable digest of a normalised call (JSON-native, as this module's functions make).

    Text no two different calls share; keys differ between environments with and without
    the fast JSON writer, which only costs a miss.
    """
    try:
        text = _canonical(call)
    except (TypeError, ValueError):
        text = _OBJECT_KEYS.key(call).encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).hexdigest()[:40]


#: The argument names of ``Shotgun.find``, in order.
FIND_ARGS = (
    "entity_type",
    "filters",
    "fields",
    "order",
    "filter_operator",
    "limit",
    "retired_only",
    "page",
    "include_archived_projects",
    "additional_filter_presets",
)
#: The argument names of ``Shotgun.summarize``, in order.
SUMMARIZE_ARGS = (
    "entity_type",
    "filters",
    "summary_fields",
    "filter_operator",
    "grouping",
    "include_archived_projects",
)
