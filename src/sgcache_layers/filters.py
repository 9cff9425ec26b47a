"""ShotGrid's filter, order and paging semantics over plain rows.

One engine answers ``find``-style questions the way a ShotGrid site does: the loopback test
server's store uses it for every read, and the same functions can answer a query offline
from a local snapshot of a project.  Nothing here talks to ShotGrid, imports
``shotgun_api3`` or knows about the session or the test tooling.

Rows and values
---------------
A row is a plain dict ``{"type": "Shot", "id": 12, field: value, ...}`` holding what the
API returns for each field:

* ``date_time``: a ``datetime.datetime``; aware ones in any zone, naive ones are taken as
  UTC (``"...Z"`` wire strings are accepted too).  Comparisons use whole seconds, as the
  wire does.
* ``date``: ``"YYYY-MM-DD"`` strings as the API returns them (``datetime.date`` accepted).
* ``entity``: a link dict with ``type`` and ``id`` (and usually ``name``), or None;
  ``multi_entity``: a list of links; ``tag_list``: a list of strings.
* everything else as the API returns it (str, int, float, bool, dict, None).

A field missing from a row reads as NULL, so a snapshot must hold every field a filter or
an order names (including those deep paths reach on linked rows).

Filter values follow the same rules; naive datetimes in filters are taken as UTC too (the
client would take them as local time: pass aware datetimes for exact parity).

The data source
---------------
Evaluation asks a :class:`DataSource` about what a row alone cannot say: the data type of
a field, the row a link points to (for deep paths such as
``entity.Shot.sg_sequence.Sequence.code``), a link's display name (``name_contains``,
ordering by a link), whether a link still counts (a site hides links to retired rows) and
the clock for relative dates.  :class:`Source` builds one from plain callables and
:class:`SchemaSource` from a ``schema_read()`` answer plus rows held in memory.

Semantics (as far as they could be confirmed; see the notes on each function)
------------------------------------------------------------------------------
* Strings compare case-insensitively (``is``, ``in``, ``contains``, ``starts_with``...).
* A negated relation (``is_not``, ``not_in``, ``not_contains``, ``not_between``,
  ``type_is_not``, ``name_not_contains``, ``not_in_last``...) is exactly "not the positive
  one", so NULL values pass ``is_not x`` and ``not_contains x``.
* ``is None`` matches NULL (an empty list for multi-entity and tag fields); comparisons
  (``less_than``, ``greater_than``, ``between``) never match NULL, nor a None bound.
* Multi-entity fields match when any link matches; deep paths fan out over multi-entity
  hops and match when any reached value matches (negations: when none does).  A deep path
  that reaches no row reads as NULL.
* ``password``, ``serializable``, ``summary``, ``url``, ``url_template`` and
  ``pivot_column`` fields cannot be filtered on; ``image`` fields only with
  ``is``/``is_not`` None; ``checkbox`` fields not with None.
* Order: NULLs last ascending and first descending (Postgres), strings case-insensitive,
  links by display name, ties by id ascending.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import json
import re
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Container,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    TypeVar,
)

__all__ = [
    "DISPLAY_FIELDS",
    "MAX_PAGE",
    "PRESETS",
    "DataSource",
    "FieldTypes",
    "FilterError",
    "Predicate",
    "SUMMARY_TYPES",
    "SchemaSource",
    "Source",
    "apply_filter_presets",
    "compile_filters",
    "compile_path",
    "display_candidates",
    "display_field",
    "filter_rows",
    "normalise_filters",
    "normalise_order",
    "page_rows",
    "path_type",
    "sort_rows",
    "summarize_rows",
    "to_date",
    "to_datetime",
    "validate_filter_presets",
    "wire_page",
    "wire_value",
]

Row = Mapping[str, Any]
Link = Mapping[str, Any]
Predicate = Callable[[Row], bool]
#: ``field_type(entity_type, field_name) -> data type or None`` for plain field names.
FieldTypes = Callable[[str, str], Optional[str]]
Getter = Callable[[Row], List[Any]]
R = TypeVar("R", bound=Mapping[str, Any])

UTC = _dt.timezone.utc
#: Most rows one ``read`` page holds on a site.
MAX_PAGE = 500

#: Display field of link ``name`` keys, where it is not ``code`` (see :func:`display_field`).
DISPLAY_FIELDS: Dict[str, str] = {
    "Project": "name",
    "HumanUser": "name",
    "ApiUser": "firstname",
    "Group": "code",
    "Department": "name",
    "Task": "content",
    "Note": "subject",
    "Reply": "content",
    "Attachment": "filename",
    "EventLogEntry": "description",
    "TimeLog": "description",
    "PermissionRuleSet": "display_name",
    "LocalStorage": "code",
    "PipelineConfiguration": "code",
}
_DISPLAY_FALLBACKS = ("code", "name", "title", "content", "subject", "description")

_LINK_KINDS = frozenset({"entity", "multi_entity", "addressing"})
_ONE_LINK = frozenset({"entity", "multi_entity"})  # ``contains`` is for addressing fields
_FAMILIES: Dict[str, Optional[str]] = {
    "text": "text",
    "entity_type": "text",
    "color": "text",
    "uuid": "text",
    "system_task_type": "text",
    "list": "enum",
    "status_list": "enum",
    "number": "number",
    "float": "number",
    "duration": "number",
    "percent": "number",
    "timecode": "number",
    "currency": "number",
    "date": "date",
    "date_time": "date_time",
    "checkbox": "checkbox",
    "entity": "link",
    "multi_entity": "link",
    "addressing": "link",
    "tag_list": "tags",
    "image": "null_only",
    "password": None,
    "serializable": None,
    "summary": None,
    "url": None,
    "url_template": None,
    "pivot_column": None,
}
_RELATIVE = ("in_last", "in_next")
_CALENDAR = ("in_calendar_day", "in_calendar_week", "in_calendar_month", "in_calendar_year")
_NAME_RELATIONS = ("name_contains", "name_is", "name_starts_with", "name_ends_with")
#: Positive relations each family of data types accepts (negations follow their positive).
_ALLOWED: Dict[str, frozenset[str]] = {
    "text": frozenset({"is", "in", "contains", "starts_with", "ends_with"}),
    "enum": frozenset({"is", "in"}),
    "number": frozenset({"is", "in", "less_than", "greater_than", "between"}),
    "date": frozenset({"is", "in", "less_than", "greater_than", "between", *_RELATIVE, *_CALENDAR}),
    "date_time": frozenset(
        {"is", "in", "less_than", "greater_than", "between", *_RELATIVE, *_CALENDAR}
    ),
    "checkbox": frozenset({"is"}),
    "link": frozenset({"is", "in", "type_is", "contains", *_NAME_RELATIONS}),
    "tags": frozenset({"is", "in", "name_contains"}),
    "null_only": frozenset({"is"}),
    "generic": frozenset({"is", "in", "less_than", "greater_than", "between"}),
}
_NEGATIONS = {
    "is_not": "is",
    "not_in": "in",
    "not_contains": "contains",
    "type_is_not": "type_is",
    "name_not_contains": "name_contains",
    "name_is_not": "name_is",
    "name_not_starts_with": "name_starts_with",
    "name_not_ends_with": "name_ends_with",
    "not_between": "between",
    "not_in_last": "in_last",
    "not_in_next": "in_next",
}
_POSITIVES = frozenset(r for allowed in _ALLOWED.values() for r in allowed)
_UNITS = ("HOUR", "DAY", "WEEK", "MONTH", "YEAR")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WIRE_DATETIME = "%Y-%m-%dT%H:%M:%SZ"
_DATETIME_FORMATS = (_WIRE_DATETIME, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


class FilterError(ValueError):
    """A filter, order, page or preset ShotGrid would refuse; the message says what."""


# ---------------------------------------------------------------------------------- sources


class DataSource(Protocol):
    """What evaluation needs to know beyond a row itself (see the module doc)."""

    def field_type(self, entity_type: str, field_name: str) -> Optional[str]:
        """ShotGrid data type of a plain (dot-free) field, or None if the type lacks it."""

    def resolve(self, link: Link) -> Optional[Row]:
        """The live row a link points to, or None (unknown or retired): deep paths."""

    def link_name(self, link: Link) -> Any:
        """Display name of a link's target: ``name_*`` relations and ordering by a link."""

    def link_visible(self, link: Link) -> bool:
        """Whether a link counts at all (a site drops links to retired rows)."""

    def now(self) -> _dt.datetime:
        """The clock of relative date relations (aware)."""


def _no_row(link: Link) -> Optional[Row]:
    return None


def _name_key(link: Link) -> Any:
    return link.get("name")


def _always(link: Link) -> bool:
    return True


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Source:
    """A :class:`DataSource` made of callables; only ``field_type`` is required.

    Defaults: no link resolves (deep paths reach nothing), a link's name is its ``name``
    key, every link counts, and the clock is the wall clock in UTC.
    """

    field_type: FieldTypes
    resolve: Callable[[Link], Optional[Row]] = _no_row
    link_name: Callable[[Link], Any] = _name_key
    link_visible: Callable[[Link], bool] = _always
    now: Callable[[], _dt.datetime] = _utc_now


class SchemaSource:
    """A :class:`DataSource` over a ``schema_read()`` answer and rows kept in memory.

    ``tables`` maps entity types to ``{id: row}``; links resolve to those rows (a link whose
    row is absent still counts: a snapshot need not hold every linked row) and take their
    display names from them, falling back to the link's own ``name`` key.
    """

    def __init__(
        self,
        schema: Mapping[str, Mapping[str, Any]],
        tables: Optional[Mapping[str, Mapping[Any, Row]]] = None,
        clock: Optional[Callable[[], _dt.datetime]] = None,
    ) -> None:
        self.schema = schema
        self.tables: Mapping[str, Mapping[Any, Row]] = tables if tables is not None else {}
        self._clock = clock or _utc_now
        self._types: Dict[Tuple[str, str], Optional[str]] = {}

    def field_type(self, entity_type: str, field_name: str) -> Optional[str]:
        """Data type from the schema (memoised)."""
        key = (entity_type, field_name)
        if key not in self._types:
            definition = self.schema.get(entity_type, {}).get(field_name)
            kind = None
            if isinstance(definition, Mapping):
                kind = definition.get("data_type", {}).get("value")
            self._types[key] = kind
        return self._types[key]

    def resolve(self, link: Link) -> Optional[Row]:
        """The row behind a link, if the tables hold it."""
        table = self.tables.get(str(link.get("type")))
        return None if table is None else table.get(link.get("id"))

    def link_name(self, link: Link) -> Any:
        """The target's display field, else the link's ``name`` key."""
        row = self.resolve(link)
        if row is None:
            return link.get("name")
        name = display_field(str(link.get("type")), self.schema.get(str(link.get("type")), {}))
        return row.get(name) if name else link.get("name")

    def link_visible(self, link: Link) -> bool:
        """Every link counts: a snapshot keeps live rows only."""
        return True

    def now(self) -> _dt.datetime:
        """The clock given, else the wall clock (UTC)."""
        return self._clock()


def display_candidates(entity_type: str) -> Tuple[str, ...]:
    """The fields a link to *entity_type* may take its ``name`` from, most likely first."""
    preferred = DISPLAY_FIELDS.get(entity_type)
    return ((preferred,) if preferred else ()) + _DISPLAY_FALLBACKS


def display_field(entity_type: str, fields: Container[str]) -> Optional[str]:
    """The field a link's ``name`` shows for this type (``code`` for most), or None."""
    preferred = DISPLAY_FIELDS.get(entity_type)
    if preferred and preferred in fields:
        return preferred
    for candidate in _DISPLAY_FALLBACKS:
        if candidate in fields:
            return candidate
    return None


# ---------------------------------------------------------------------------------- values


def to_datetime(value: Any) -> Optional[_dt.datetime]:
    """An aware UTC datetime with whole seconds from a datetime, date or string.

    Naive datetimes are taken as UTC; raises ValueError for anything else.
    """
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        elif value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        moment: _dt.datetime = value
        return moment.replace(microsecond=0) if moment.microsecond else moment
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        for fmt in _DATETIME_FORMATS:
            try:
                return _dt.datetime.strptime(text, fmt).replace(tzinfo=UTC)
            except ValueError:
                continue
        try:
            parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"invalid date_time value {value!r}") from None
        return to_datetime(parsed)
    raise ValueError(f"invalid date_time value {value!r}")


def to_date(value: Any) -> Optional[str]:
    """A ``YYYY-MM-DD`` string from a date, datetime or such a string; ValueError else."""
    if value is None:
        return None
    if isinstance(value, str) and _DATE_RE.match(value):
        return value
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    raise ValueError(f"invalid date value {value!r}, expected YYYY-MM-DD")


def _row_datetime(value: Any) -> Optional[_dt.datetime]:
    """Row side of a date_time comparison: lenient (unparseable values read as NULL)."""
    if value is None:
        return None
    if type(value) is _dt.datetime and value.tzinfo is UTC and not value.microsecond:
        return value
    try:
        return to_datetime(value)
    except ValueError:
        return None


def _row_date(value: Any) -> Optional[str]:
    if value is None or type(value) is str:
        return value
    try:
        return to_date(value)
    except ValueError:
        return None


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, with plain dicts (nearly every value) checked first:
    the ``typing`` alias makes the general check slow, and it runs per row and link."""
    return value.__class__ is dict or isinstance(value, Mapping)


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_link(value: Any) -> bool:
    return _is_mapping(value) and "type" in value and "id" in value


def _link_key(link: Any) -> Optional[Tuple[Any, Any]]:
    if _is_mapping(link):
        return (link.get("type"), link.get("id"))
    return None


def _shift(moment: _dt.datetime, amount: int, unit: str) -> _dt.datetime:
    """``moment`` moved by ``amount`` units; months and years move on the calendar."""
    if unit == "HOUR":
        return moment + _dt.timedelta(hours=amount)
    if unit == "DAY":
        return moment + _dt.timedelta(days=amount)
    if unit == "WEEK":
        return moment + _dt.timedelta(weeks=amount)
    months = amount * (12 if unit == "YEAR" else 1)
    year, month = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


# ---------------------------------------------------------------------------------- forms


def _logical(operator: Any) -> str:
    if operator in ("all", "and"):
        return "and"
    if operator in ("any", "or"):
        return "or"
    raise FilterError(f"invalid filter_operator {operator!r}: expected 'all' or 'any'")


def _normalise_node(node: Any) -> Dict[str, Any]:
    if isinstance(node, (list, tuple)):
        if len(node) < 2 or not isinstance(node[0], str) or not isinstance(node[1], str):
            raise FilterError(f"invalid filter {node!r}: expected [field, relation, values...]")
        values = list(node[2:])
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = list(values[0])
        return {"path": node[0], "relation": node[1], "values": values}
    if isinstance(node, Mapping):
        if "filters" in node and "filter_operator" in node:
            filters = node["filters"]
            if not isinstance(filters, (list, tuple)):
                raise FilterError(f"invalid filters {filters!r}: expected a list")
            return {
                "logical_operator": _logical(node["filter_operator"]),
                "conditions": [_normalise_node(f) for f in filters],
            }
        if "conditions" in node:
            conditions = node["conditions"] or []
            if not isinstance(conditions, (list, tuple)):
                raise FilterError(f"invalid conditions {conditions!r}: expected a list")
            return {
                "logical_operator": _logical(node.get("logical_operator", "and")),
                "conditions": [_normalise_node(c) for c in conditions],
            }
        if "path" in node and "relation" in node:
            path, relation = node["path"], node["relation"]
            if not isinstance(path, str) or not isinstance(relation, str):
                raise FilterError(f"invalid filter condition {dict(node)!r}")
            values = node.get("values", [])
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            return {"path": path, "relation": relation, "values": values}
    raise FilterError(f"invalid filter {node!r}")


def normalise_filters(filters: Any, filter_operator: Optional[str] = None) -> Dict[str, Any]:
    """Any accepted filter form as the wire form the client sends.

    Accepted: None or ``[]`` (everything), the user-facing list
    ``[["code", "is", "x"], {"filter_operator": "any", "filters": [...]}]`` (combined with
    ``filter_operator``, "all" by default), and the wire form
    ``{"logical_operator": "and", "conditions": [{"path", "relation", "values"}]}``.
    Values are collapsed as the client does: ``["id", "in", [1, 2]]`` and
    ``["id", "in", 1, 2]`` both become ``values: [1, 2]``.
    """
    if filters is None:
        return {"logical_operator": _logical(filter_operator or "all"), "conditions": []}
    if isinstance(filters, (list, tuple)):
        return {
            "logical_operator": _logical(filter_operator or "all"),
            "conditions": [_normalise_node(f) for f in filters],
        }
    if isinstance(filters, Mapping):
        if filter_operator:
            raise FilterError("filter_operator only goes with a list of filters")
        node = _normalise_node(filters)
        if "conditions" not in node:
            node = {"logical_operator": "and", "conditions": [node]}
        return node
    raise FilterError(f"invalid filters {filters!r}: expected a list or a dict")


# ---------------------------------------------------------------------------------- paths


def _plain_type(source: DataSource, entity_type: str, name: str) -> Optional[str]:
    if name == "type":
        return "entity_type"
    kind = source.field_type(entity_type, name)
    if kind is None and name == "id":
        return "number"
    return kind


def _parse_path(
    entity_type: str, path: str, source: DataSource
) -> Tuple[str, List[Tuple[str, str]], str]:
    """(data type, [(link field, target type)...], final field); FilterError if invalid."""
    parts = path.split(".")
    if len(parts) == 1:
        kind = _plain_type(source, entity_type, path)
        if kind is None:
            raise FilterError(f"{entity_type}.{path} doesn't exist")
        return kind, [], path
    if len(parts) % 2 == 0 or any(not p for p in parts):
        raise FilterError(f"invalid deep field {path!r}: expected link.Type.field")
    hops: List[Tuple[str, str]] = []
    current = entity_type
    for index in range(0, len(parts) - 1, 2):
        hop, target = parts[index], parts[index + 1]
        kind = _plain_type(source, current, hop)
        if kind is None:
            raise FilterError(f"{current}.{hop} doesn't exist")
        if kind not in _LINK_KINDS:
            raise FilterError(f"{current}.{hop} is a {kind} field, not a link: can't follow it")
        hops.append((hop, target))
        current = target
    final = parts[-1]
    kind = _plain_type(source, current, final)
    if kind is None:
        raise FilterError(f"{current}.{final} doesn't exist (in {entity_type}.{path})")
    return kind, hops, final


def path_type(entity_type: str, path: str, source: DataSource) -> Optional[str]:
    """Data type a (deep) field path ends in, or None if any hop or field is wrong."""
    try:
        return _parse_path(entity_type, path, source)[0]
    except FilterError:
        return None


def compile_path(entity_type: str, path: str, source: DataSource) -> Tuple[str, Getter]:
    """``(data type, getter)``: the getter lists the stored values ``path`` reaches.

    A plain field gives one value (None if unset); a deep path follows links of the named
    type (``resolve``), fans out over multi-entity hops and gives ``[]`` when it reaches no
    row.  Raises FilterError if the path is wrong.
    """
    kind, hops, final = _parse_path(entity_type, path, source)
    if not hops:
        return kind, lambda row: [row.get(final)]
    resolve = source.resolve

    def getter(row: Row) -> List[Any]:
        current: List[Row] = [row]
        for hop, target in hops:
            reached: List[Row] = []
            for item in current:
                value = item.get(hop)
                if not value:
                    continue
                for link in value if isinstance(value, list) else (value,):
                    if _is_mapping(link) and link.get("type") == target:
                        found = resolve(link)
                        if found is not None:
                            reached.append(found)
            if not reached:
                return []
            current = reached
        return [item.get(final) for item in current]

    return kind, getter


# ---------------------------------------------------------------------------------- compile

Test = Callable[[Any], bool]


def _flat(values: List[Any]) -> List[Any]:
    """``in`` values: ``[a, b]`` or one nested list ``[[a, b]]``."""
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        return list(values[0])
    return values


class _Compiler:
    """Turns one normalised filter tree into closures; the clock is read once."""

    def __init__(self, entity_type: str, source: DataSource) -> None:
        self.entity_type = entity_type
        self.source = source
        self._now: Optional[_dt.datetime] = None

    def now(self) -> _dt.datetime:
        if self._now is None:
            moment = to_datetime(self.source.now())
            assert moment is not None
            self._now = moment
        return self._now

    def node(self, node: Mapping[str, Any]) -> Optional[Predicate]:
        """A predicate, or None for "matches everything" (an empty group)."""
        if "conditions" in node:
            parts = [p for p in (self.node(c) for c in node["conditions"]) if p is not None]
            if not parts:
                return None
            return _all(parts) if node["logical_operator"] == "and" else _any(parts)
        return self.condition(node["path"], node["relation"], node["values"])

    def condition(self, path: str, relation: str, values: List[Any]) -> Predicate:
        label = f"{self.entity_type}.{path}"
        if path.startswith("$FROM$"):
            raise FilterError(f"{path!r}: $FROM$ (reverse) filters are not supported")
        positive = _NEGATIONS.get(relation, relation)
        negate = relation in _NEGATIONS
        if positive not in _POSITIVES:
            raise FilterError(f"unknown filter relation {relation!r} on {label}")
        kind, getter = compile_path(self.entity_type, path, self.source)
        family = _FAMILIES.get(kind, "generic")
        if family is None:
            raise FilterError(f"{label}: filtering on {kind} fields is not supported")
        if positive not in _ALLOWED[family] or (positive == "contains" and kind in _ONE_LINK):
            raise FilterError(f"{label}: relation {relation!r} is not valid on {kind} fields")
        test = self.relation(family, kind, positive, values, label)
        if "." not in path:
            return _plain(path, test, negate)
        return _deep(getter, test, negate)

    # -- relations by family

    def relation(
        self, family: str, kind: str, relation: str, values: List[Any], label: str
    ) -> Test:
        if family == "link":
            return self.link(kind, relation, values, label)
        if family == "tags":
            return self.tags(relation, values, label)
        if family == "checkbox":
            first = values[0] if values else None
            if len(values) != 1 or not isinstance(first, bool):
                raise FilterError(f"{label}: checkbox filters need true or false, got {values!r}")
            return lambda v: bool(v) is first
        if family == "null_only":
            if values not in ([], [None]):
                raise FilterError(f"{label}: {kind} fields can only be filtered with None")
            return _is_null
        if family in ("date", "date_time"):
            return self.dates(family, relation, values, label)
        if family == "number":
            for value in _flat(values):
                if value is not None and not _is_number(value):
                    raise FilterError(f"{label}: expected a number, got {value!r}")
            return _compare(relation, values, label, lambda v: v)
        if family in ("text", "enum"):
            return self.text(relation, values, label)
        return _compare(relation, values, label, lambda v: v)

    def text(self, relation: str, values: List[Any], label: str) -> Test:
        for value in _flat(values):
            if isinstance(value, (Mapping, list, tuple)):
                raise FilterError(f"{label}: expected text, got {value!r}")
        if relation in ("is", "in"):
            return _compare(relation, values, label, _fold)
        first = values[0] if values else None
        if first is not None and not isinstance(first, str):
            raise FilterError(f"{label}: {relation} needs a string, got {first!r}")
        needle = (first or "").lower()
        if relation == "contains":
            return lambda v: needle in (v.lower() if isinstance(v, str) else "")
        if relation == "starts_with":
            return lambda v: (v.lower() if isinstance(v, str) else "").startswith(needle)
        return lambda v: (v.lower() if isinstance(v, str) else "").endswith(needle)

    def dates(self, family: str, relation: str, values: List[Any], label: str) -> Test:
        row_key: Callable[[Any], Any] = _row_date if family == "date" else _row_datetime
        if relation in _RELATIVE:
            return self.relative(family, relation, values, label, row_key)
        if relation in _CALENDAR:
            return self.calendar(family, relation, values, label)
        convert: Callable[[Any], Any] = to_date if family == "date" else to_datetime
        try:
            if relation == "in" or relation == "between":
                wanted = [convert(v) for v in _flat(values)]
            else:
                wanted = [convert(v) for v in values]
        except ValueError as exc:
            raise FilterError(f"{label}: {exc}") from None
        return _compare(relation, wanted, label, row_key)

    def relative(
        self,
        family: str,
        relation: str,
        values: List[Any],
        label: str,
        row_key: Callable[[Any], Any],
    ) -> Test:
        pair = _flat(values)
        if len(pair) != 2 or not isinstance(pair[0], int) or isinstance(pair[0], bool):
            raise FilterError(f"{label}: {relation} needs [count, unit], got {values!r}")
        amount, unit = pair[0], str(pair[1]).upper()
        if unit not in _UNITS:
            raise FilterError(f"{label}: {relation} unit must be one of {_UNITS}, got {pair[1]!r}")
        now = self.now()
        if relation == "in_last":
            low, high = _shift(now, -amount, unit), now
        else:
            low, high = now, _shift(now, amount, unit)
        if family == "date":
            low_day, high_day = low.date().isoformat(), high.date().isoformat()

            def in_days(v: Any) -> bool:
                day = row_key(v)
                return day is not None and low_day <= day <= high_day

            return in_days

        def in_range(v: Any) -> bool:
            moment = row_key(v)
            return moment is not None and low <= moment <= high

        return in_range

    def calendar(self, family: str, relation: str, values: List[Any], label: str) -> Test:
        offset = values[0] if values else 0
        if len(values) > 1 or not isinstance(offset, int) or isinstance(offset, bool):
            raise FilterError(f"{label}: {relation} needs one whole-number offset, got {values!r}")
        unit = relation[len("in_calendar_") :]
        today = self.now().date()
        if unit == "day":
            first = today + _dt.timedelta(days=offset)
            last = first
        elif unit == "week":
            monday = today - _dt.timedelta(days=today.weekday()) + _dt.timedelta(weeks=offset)
            first, last = monday, monday + _dt.timedelta(days=6)
        elif unit == "month":
            year, month = divmod(today.month - 1 + offset, 12)
            year += today.year
            first = _dt.date(year, month + 1, 1)
            last = _dt.date(year, month + 1, calendar.monthrange(year, month + 1)[1])
        else:
            first, last = _dt.date(today.year + offset, 1, 1), _dt.date(today.year + offset, 12, 31)
        low, high = first.isoformat(), last.isoformat()
        if family == "date":

            def on_days(v: Any) -> bool:
                day = _row_date(v)
                return day is not None and low <= day <= high

            return on_days

        def on_moments(v: Any) -> bool:
            moment = _row_datetime(v)
            return moment is not None and low <= moment.date().isoformat() <= high

        return on_moments

    def link(self, kind: str, relation: str, values: List[Any], label: str) -> Test:
        visible = self.source.link_visible

        def links_of(v: Any) -> List[Link]:
            if not v:
                return []
            items = v if isinstance(v, list) else (v,)
            return [x for x in items if _is_mapping(x) and visible(x)]

        first = values[0] if values else None
        if relation in ("is", "contains"):
            if first is None:
                return lambda v: not links_of(v)
            if not _is_link(first):
                raise FilterError(f"{label}: expected a link with type and id, got {first!r}")
            want = (first.get("type"), first.get("id"))
            want_type, want_id = want

            def is_link(v: Any) -> bool:
                if v.__class__ is dict:  # one link, the usual case: no list made
                    return v.get("id") == want_id and v.get("type") == want_type and visible(v)
                return any(_link_key(x) == want for x in links_of(v))

            return is_link
        if relation == "in":
            pool = _flat(values)
            for item in pool:
                if item is not None and not _is_link(item):
                    raise FilterError(f"{label}: expected links with type and id, got {item!r}")
            wanted = {_link_key(x) for x in pool if x is not None}
            empty_too = any(x is None for x in pool)

            def in_links(v: Any) -> bool:
                found = links_of(v)
                if not found:
                    return empty_too
                return any(_link_key(x) in wanted for x in found)

            return in_links
        if relation == "type_is":
            if first is None:
                return lambda v: not links_of(v)
            if not isinstance(first, str):
                raise FilterError(f"{label}: type_is needs an entity type, got {first!r}")
            return lambda v: any(x.get("type") == first for x in links_of(v))
        if not isinstance(first, str):
            raise FilterError(f"{label}: {relation} needs a string, got {first!r}")
        needle = first.lower()
        name_of = self.source.link_name
        match: Callable[[str], bool]
        if relation == "name_contains":
            match = lambda name: needle in name  # noqa: E731 - tiny dispatch
        elif relation == "name_is":
            match = lambda name: name == needle  # noqa: E731
        elif relation == "name_starts_with":
            match = lambda name: name.startswith(needle)  # noqa: E731
        else:
            match = lambda name: name.endswith(needle)  # noqa: E731
        return lambda v: any(match(str(name_of(x) or "").lower()) for x in links_of(v))

    def tags(self, relation: str, values: List[Any], label: str) -> Test:
        def tags_of(v: Any) -> List[str]:
            return [t.lower() for t in v if isinstance(t, str)] if isinstance(v, list) else []

        first = values[0] if values else None
        if relation == "is":
            if first is None:
                return lambda v: not tags_of(v)
            if not isinstance(first, str):
                raise FilterError(f"{label}: expected a tag name, got {first!r}")
            want = first.lower()
            return lambda v: want in tags_of(v)
        if relation == "in":
            wanted = {str(x).lower() for x in _flat(values)}
            return lambda v: any(t in wanted for t in tags_of(v))
        if not isinstance(first, str):
            raise FilterError(f"{label}: {relation} needs a string, got {first!r}")
        needle = first.lower()
        return lambda v: any(needle in t for t in tags_of(v))


def _is_null(value: Any) -> bool:
    return value is None or value == [] or value == ""


def _compare(relation: str, values: List[Any], label: str, key: Callable[[Any], Any]) -> Test:
    """``is``/``in``/``less_than``/``greater_than``/``between`` on ``key(value)``."""
    if relation == "is":
        if len(values) > 1:
            raise FilterError(f"{label}: 'is' takes one value, got {values!r}")
        want = key(values[0]) if values else None
        if want is None:
            return lambda v: v is None
        return lambda v: v is not None and key(v) == want
    if relation == "in":
        pool = [key(v) for v in _flat(values)]
        try:
            wanted = set(pool)
        except TypeError:
            raise FilterError(
                f"{label}: 'in' values must be plain values, got {values!r}"
            ) from None
        return lambda v: key(v) in wanted if v is not None else None in wanted
    if relation == "between":
        pair = _flat(values)
        if len(pair) != 2:
            raise FilterError(f"{label}: 'between' needs two values, got {values!r}")
        low, high = key(pair[0]), key(pair[1])
        if low is None or high is None:
            return lambda v: False

        def between(v: Any) -> bool:
            k = key(v) if v is not None else None
            return k is not None and _safe_le(low, k) and _safe_le(k, high)

        return between
    if len(values) != 1:
        raise FilterError(f"{label}: {relation!r} takes one value, got {values!r}")
    bound = key(values[0])
    if bound is None:
        return lambda v: False
    if relation == "less_than":
        return lambda v: v is not None and _safe_lt(key(v), bound)
    return lambda v: v is not None and _safe_lt(bound, key(v))


def _safe_lt(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and bool(a < b)
    except TypeError:
        return False


def _safe_le(a: Any, b: Any) -> bool:
    try:
        return bool(a <= b)
    except TypeError:
        return False


def _plain(name: str, test: Test, negate: bool) -> Predicate:
    if negate:
        return lambda row: not test(row.get(name))
    return lambda row: test(row.get(name))


def _deep(getter: Getter, test: Test, negate: bool) -> Predicate:
    def deep(row: Row) -> bool:
        reached = getter(row)
        found = any(test(v) for v in reached) if reached else test(None)
        return not found if negate else found

    return deep


def _all(parts: List[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]

    def every(row: Row) -> bool:
        return all(part(row) for part in parts)

    return every


def _any(parts: List[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]

    def some(row: Row) -> bool:
        return any(part(row) for part in parts)

    return some


def _everything(row: Row) -> bool:
    return True


def compile_filters(
    entity_type: str,
    filters: Any,
    source: DataSource,
    filter_operator: Optional[str] = None,
) -> Predicate:
    """A predicate telling whether a row of ``entity_type`` matches ``filters``.

    ``filters`` is in any form :func:`normalise_filters` accepts.  Everything is checked
    and parsed here, once: unknown fields or relations, relations a data type does not
    take, unfilterable data types and bad values raise :class:`FilterError`.  The
    predicate itself only runs closures, so compile once per query and call it per row.
    """
    tree = normalise_filters(filters, filter_operator)
    predicate = _Compiler(entity_type, source).node(tree)
    return predicate if predicate is not None else _everything


def filter_rows(
    entity_type: str,
    rows: Iterable[R],
    filters: Any,
    source: DataSource,
    filter_operator: Optional[str] = None,
) -> List[R]:
    """The rows matching ``filters`` (see :func:`compile_filters`), in their order."""
    predicate = compile_filters(entity_type, filters, source, filter_operator)
    return [row for row in rows if predicate(row)]


# ---------------------------------------------------------------------------------- order


def normalise_order(order: Any) -> List[Tuple[str, bool]]:
    """``[(field path, descending)]`` from the client's ``order``/``sorts`` lists.

    Takes ``{"field_name": ..., "direction": "asc"|"desc"}`` (or the older ``column``).
    """
    if order is None:
        return []
    if not isinstance(order, (list, tuple)):
        raise FilterError(f"invalid order {order!r}: expected a list of dicts")
    result: List[Tuple[str, bool]] = []
    for spec in order:
        if not isinstance(spec, Mapping):
            raise FilterError(f"invalid order entry {spec!r}: expected a dict")
        name = spec.get("field_name") or spec.get("column")
        if not isinstance(name, str) or not name:
            raise FilterError(f"invalid order entry {dict(spec)!r}: no field_name")
        direction = str(spec.get("direction") or "asc").lower()
        if direction not in ("asc", "desc"):
            raise FilterError(f"invalid order direction {spec.get('direction')!r} for {name}")
        result.append((name, direction == "desc"))
    return result


def _sort_value(kind: str, source: DataSource) -> Callable[[Any], Any]:
    if kind == "entity":
        visible, name_of = source.link_visible, source.link_name

        def link_value(v: Any) -> Any:
            if not _is_mapping(v) or not visible(v):
                return None
            return _fold(name_of(v))

        return link_value
    if kind in ("multi_entity", "addressing", "tag_list", "serializable", "url", "image"):
        return lambda v: None
    if kind == "date":
        return _row_date
    if kind == "date_time":
        return _row_datetime

    def plain_value(v: Any) -> Any:
        if isinstance(v, str):
            return v.lower()
        if isinstance(v, (Mapping, list)):
            return json.dumps(v, sort_keys=True, default=str)
        return v

    return plain_value


def sort_rows(entity_type: str, rows: Iterable[R], order: Any, source: DataSource) -> List[R]:
    """Rows in a site's order: by ``order`` (see :func:`normalise_order`), then by id.

    NULLs sort last ascending and first descending, strings ignore case, entity links sort
    by their display name and multi-entity fields do not order.  Each key is computed
    once per row.
    """
    specs = normalise_order(order)
    ordered = sorted(rows, key=lambda r: r.get("id") or 0)
    for name, descending in reversed(specs):
        kind, getter = compile_path(entity_type, name, source)
        value_of = _sort_value(kind, source)

        def key(
            row: Row, getter: Getter = getter, value_of: Callable[[Any], Any] = value_of
        ) -> Any:
            reached = getter(row)
            value = value_of(reached[0]) if reached else None
            return (1, 0) if value is None else (0, value)

        ordered.sort(key=key, reverse=descending)
    return ordered


# ---------------------------------------------------------------------------------- paging


def _whole(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FilterError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def wire_page(
    rows: Sequence[R], entities_per_page: Any = MAX_PAGE, current_page: Any = 1
) -> Tuple[List[R], bool]:
    """One ``read`` RPC page and whether another follows (per page capped at 500)."""
    per_page = max(1, min(int(entities_per_page or MAX_PAGE), MAX_PAGE))
    page = max(1, int(current_page or 1))
    start = (page - 1) * per_page
    return list(rows[start : start + per_page]), start + per_page < len(rows)


def page_rows(
    rows: Sequence[R], limit: int = 0, page: int = 0, per_page: int = MAX_PAGE
) -> List[R]:
    """What ``Shotgun.find(limit=, page=)`` returns from the whole ordered answer.

    As the client does it: a ``limit`` up to ``per_page`` makes it the page size (page 1
    unless told); a ``page`` without such a limit is that page of ``per_page`` rows (the
    limit is then ignored); otherwise every row, cut at ``limit``.
    """
    limit = _whole(limit, "limit")
    page = _whole(page, "page")
    per_page = _whole(per_page, "per_page", 1)
    if limit and limit <= per_page:
        return wire_page(rows, limit, page or 1)[0]
    if page:
        return list(rows[(page - 1) * per_page : page * per_page])
    return list(rows[:limit]) if limit else list(rows)


# ---------------------------------------------------------------------------------- presets

#: ``(entity type, preset name) -> allowed latest_by values`` of the documented presets.
PRESETS: Dict[Tuple[str, str], frozenset[str]] = {
    ("Version", "LATEST"): frozenset(
        {"ENTITIES_CREATED_AT", "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT"}
    ),
    ("PublishedFile", "LATEST"): frozenset({"ENTITIES_CREATED_AT", "VERSION_NUMBER"}),
    ("Cut", "LATEST"): frozenset({"REVISION_NUMBER"}),
}


def validate_filter_presets(entity_type: str, presets: Any) -> List[Dict[str, Any]]:
    """The ``additional_filter_presets`` of a read, checked; FilterError names what is wrong.

    Known: ``LATEST`` on Version (``ENTITIES_CREATED_AT``,
    ``BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT``), PublishedFile
    (``ENTITIES_CREATED_AT``, ``VERSION_NUMBER``) and Cut (``REVISION_NUMBER``); at most
    one ``LATEST``.  ``CUT_SHOT_VERSIONS`` is documented but not modelled here.
    """
    if presets is None:
        return []
    if not isinstance(presets, (list, tuple)):
        raise FilterError(f"additional_filter_presets must be a list of dicts, got {presets!r}")
    checked: List[Dict[str, Any]] = []
    for preset in presets:
        if not isinstance(preset, Mapping):
            raise FilterError(f"additional_filter_presets entries must be dicts, got {preset!r}")
        name = preset.get("preset_name")
        if not name:
            raise FilterError(
                f"additional_filter_presets entry {dict(preset)!r} has no preset_name"
            )
        if name == "CUT_SHOT_VERSIONS" and entity_type == "Version":
            raise FilterError("additional filter preset CUT_SHOT_VERSIONS is not supported here")
        allowed = PRESETS.get((entity_type, str(name)))
        if allowed is None:
            raise FilterError(f"unknown additional filter preset {name!r} for {entity_type}")
        latest_by = preset.get("latest_by")
        if latest_by not in allowed:
            raise FilterError(
                f"additional filter preset {name} on {entity_type}: latest_by must be one of "
                f"{sorted(allowed)}, got {latest_by!r}"
            )
        checked.append(dict(preset))
    if sum(1 for p in checked if p["preset_name"] == "LATEST") > 1:
        raise FilterError("only one LATEST additional filter preset may be given")
    return checked


def _optional_path(entity_type: str, path: str, source: DataSource) -> Getter:
    try:
        return compile_path(entity_type, path, source)[1]
    except FilterError:
        return lambda row: []


def apply_filter_presets(
    entity_type: str, rows: Sequence[R], presets: Any, source: DataSource
) -> List[R]:
    """Rows (already filtered) that the presets keep, in their order.

    ``LATEST`` keeps, per ``entity`` link (rows without one form one group), the row with
    the newest ``created_at`` (``ENTITIES_CREATED_AT``), the highest
    ``sg_task.Task.step.Step.list_order`` then newest (``BY_PIPELINE_STEP_NUMBER_...``) or
    the highest ``version_number`` then newest (``VERSION_NUMBER``); Cut
    ``REVISION_NUMBER`` keeps the cuts with the highest ``revision_number``.  Ties go to
    the highest id.
    """
    checked = validate_filter_presets(entity_type, presets)
    kept = list(rows)
    for preset in checked:
        latest_by = preset["latest_by"]
        if latest_by == "REVISION_NUMBER":
            numbers: List[float] = [
                r["revision_number"] for r in kept if _is_number(r.get("revision_number"))
            ]
            top = max(numbers) if numbers else None
            kept = [r for r in kept if r.get("revision_number") == top]
            continue
        rank: Callable[[Row], Any]
        if latest_by == "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT":
            order_of = _optional_path(entity_type, "sg_task.Task.step.Step.list_order", source)

            def rank(row: Row, order_of: Getter = order_of) -> Any:
                found = [v for v in order_of(row) if _is_number(v)]
                return (bool(found), max(found) if found else 0)

        elif latest_by == "VERSION_NUMBER":

            def rank(row: Row) -> Any:
                number = row.get("version_number")
                return (_is_number(number), number if _is_number(number) else 0)

        else:

            def rank(row: Row) -> Any:
                return ()

        best: Dict[Any, Tuple[Any, R]] = {}
        for row in kept:
            created = _row_datetime(row.get("created_at"))
            score = (
                rank(row),
                created is not None,
                created or _dt.datetime.min,
                row.get("id") or 0,
            )
            group = _link_key(row.get("entity"))
            if group not in best or best[group][0] < score:
                best[group] = (score, row)
        winners = {id(row) for _, row in best.values()}
        kept = [r for r in kept if id(r) in winners]
    return kept


# ---------------------------------------------------------------------------------- summaries

#: The ``type`` values a ``summary_fields`` entry may take.
SUMMARY_TYPES = frozenset(
    {
        "record_count",
        "count",
        "sum",
        "average",
        "maximum",
        "minimum",
        "latest",
        "earliest",
        "checked",
        "unchecked",
        "percentage",
    }
)
_DATE_GROUPS = ("day", "week", "month", "quarter", "year")
_NUMBER_GROUPS = {
    "tens": 10,
    "hundreds": 100,
    "thousands": 1000,
    "tensofthousands": 10000,
    "hundredsofthousands": 100000,
    "millions": 1000000,
}


def wire_value(value: Any) -> Any:
    """*value* as it travels on the wire: datetimes as UTC ``...Z`` text, dates as text.

    Naive datetimes are taken as UTC; dicts, lists and tuples are converted all through.
    """
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime(_WIRE_DATETIME)
    if isinstance(value, _dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, dict):
        return {k: wire_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_value(v) for v in value]
    return value


def _summary_field(entity_type: str, spec: Any, source: DataSource) -> str:
    """The field a summary or grouping entry names; FilterError if it is not a field."""
    name = spec.get("field", "") if isinstance(spec, Mapping) else ""
    if not isinstance(name, str) or path_type(entity_type, name, source) is None:
        raise FilterError(f"{entity_type}.{name} doesn't exist")
    return name


def _summary(kind: str, spec: Mapping[str, Any], rows: Sequence[Row], values: List[Any]) -> Any:
    """One summary of *values* (the first value each row reaches), in wire form."""
    present = [v for v in values if v not in (None, "", [])]
    if kind == "record_count":
        return len(rows)
    if kind == "count":
        return len(present)
    if kind == "sum":
        return sum(v for v in present if isinstance(v, (int, float)))
    if kind == "average":
        numbers = [v for v in present if isinstance(v, (int, float))]
        return sum(numbers) / len(numbers) if numbers else 0
    if kind in ("maximum", "latest"):
        return wire_value(max(present)) if present else None
    if kind in ("minimum", "earliest"):
        return wire_value(min(present)) if present else None
    if kind == "checked":
        return sum(1 for v in values if v is True)
    if kind == "unchecked":
        return sum(1 for v in values if not v)
    want = spec.get("value")
    return round(100.0 * sum(1 for v in values if v == want) / len(values)) if values else 0


def _summaries(
    entity_type: str, rows: Sequence[Row], specs: Sequence[Mapping[str, Any]], source: DataSource
) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for spec in specs:
        name, kind = str(spec.get("field", "")), spec.get("type", "")
        if kind not in SUMMARY_TYPES:
            raise FilterError(f"Summary type {kind!r} is not supported")
        getter = compile_path(entity_type, name, source)[1]
        values = [v for row in rows for v in getter(row)[:1]]
        out[name] = _summary(str(kind), spec, rows, values)
    return out


def _group_key(
    entity_type: str, row: Row, spec: Mapping[str, Any], source: DataSource
) -> Tuple[Any, str, Any]:
    """``(sort key, group_name, group_value)`` of one row for one grouping entry."""
    name, how = str(spec.get("field", "")), spec.get("type", "exact")
    kind, getter = compile_path(entity_type, name, source)
    values = getter(row)
    value = values[0] if values else None
    if kind == "entity":
        if not _is_mapping(value) or not value or not source.link_visible(value):
            return ((1, ""), "", None)
        if how == "entitytype":
            return ((0, value["type"]), value["type"], value["type"])
        link = {
            "type": value["type"],
            "id": value["id"],
            "name": source.link_name(value),
            "valid": "valid",
        }
        label = str(link["name"] or "")
        return ((0, label.lower()), label, link)
    if value is None or value == "":
        return ((1, ""), "", None)
    if (
        isinstance(value, (_dt.datetime, str))
        and kind in ("date", "date_time")
        and how in _DATE_GROUPS
    ):
        moment = _row_datetime(value)
        if moment is None:
            raise FilterError(f"Invalid date_time value {value!r}")
        label = {
            "day": moment.strftime("%Y-%m-%d"),
            "week": moment.strftime("%G-W%V"),
            "month": moment.strftime("%Y-%m"),
            "quarter": f"{moment.year}-Q{(moment.month - 1) // 3 + 1}",
            "year": moment.strftime("%Y"),
        }[str(how)]
        return ((0, label), label, label)
    if _is_number(value) and how in _NUMBER_GROUPS:
        size = _NUMBER_GROUPS[str(how)]
        low = int(value // size) * size
        return ((0, low), f"{low} - {low + size - 1}", low)
    if how == "firstletter" and isinstance(value, str):
        letter = value[:1].upper()
        return ((0, letter), letter, letter)
    wire = wire_value(value)
    label = str(wire)
    sort_value = value.lower() if isinstance(value, str) else value
    if isinstance(sort_value, (dict, list)):
        sort_value = label
    return ((0, sort_value), label, wire)


def _groups(
    entity_type: str,
    rows: Sequence[Row],
    specs: Sequence[Mapping[str, Any]],
    grouping: Sequence[Mapping[str, Any]],
    source: DataSource,
) -> List[Dict[str, Any]]:
    if not grouping:
        return []
    spec, rest = grouping[0], grouping[1:]
    _summary_field(entity_type, spec, source)
    buckets: Dict[str, Tuple[Any, Tuple[str, Any], List[Row]]] = {}
    for row in rows:
        sort_key, label, value = _group_key(entity_type, row, spec, source)
        ident = json.dumps([label, value], sort_keys=True, default=str)
        if ident not in buckets:
            buckets[ident] = (sort_key, (label, value), [])
        buckets[ident][2].append(row)
    ordered = sorted(
        buckets.values(),
        key=lambda bucket: bucket[0],
        reverse=str(spec.get("direction", "asc")).lower() == "desc",
    )
    groups = []
    for _, (label, value), members in ordered:
        group: Dict[str, Any] = {
            "group_name": label,
            "group_value": value,
            "summaries": _summaries(entity_type, members, specs, source),
        }
        if rest:
            group["groups"] = _groups(entity_type, members, specs, rest, source)
        groups.append(group)
    return groups


def summarize_rows(
    entity_type: str,
    rows: Sequence[Row],
    summary_fields: Any,
    grouping: Any,
    source: DataSource,
) -> Dict[str, Any]:
    """What the ``summarize`` RPC answers for *rows* (already filtered), in wire form.

    ``{"summaries": {field: value}, "groups": [...]}``: totals over every row, and one group
    per distinct value of the first ``grouping`` entry (nested for the next ones), each with
    ``group_name``, ``group_value`` and its own summaries.  Summaries take the first value
    each row reaches (deep paths too); links group by display name (``group_value`` is the
    link with ``valid``), dates by day/week/month/quarter/year, numbers by tens and up,
    text by ``firstletter``; empty values form one group named ``""``.  Unknown fields
    and summary types raise :class:`FilterError`.  Pass rows in id order: sums of floats
    depend on the order they are added in, and a site adds them in id order.
    """
    specs: List[Mapping[str, Any]] = [s for s in summary_fields or [] if isinstance(s, Mapping)]
    if len(specs) != len(summary_fields or []):
        raise FilterError(f"summary_fields must be a list of dicts, got {summary_fields!r}")
    for spec in specs:
        _summary_field(entity_type, spec, source)
    groups: List[Mapping[str, Any]] = [g for g in grouping or [] if isinstance(g, Mapping)]
    if len(groups) != len(grouping or []):
        raise FilterError(f"grouping must be a list of dicts, got {grouping!r}")
    return {
        "summaries": _summaries(entity_type, rows, specs, source),
        "groups": _groups(entity_type, rows, specs, groups, source),
    }
