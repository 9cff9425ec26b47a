"""What a session stores under which key: the namespace, the key shapes, the record formats.

Every key starts with a namespace made of the format version, the site and the client's
permission identity and options (:class:`Namespace`); data keys also carry the namespace's
*epoch*, which :meth:`~sgcache_layers.session.Session.flush` replaces.  Records are plain
dicts (so any layer can hold them) with a version ``v``, a kind ``k``, the time ``t`` their
data was asked for and the generation tokens ``g`` it was checked against:

* ``q``: a ``find`` answer: the entity type ``T`` and the rows ``r`` as ShotGrid gave them,
  in order (one record per answer, read with one cache read and one decode).  Written by
  :func:`encode`, the links of its link columns ``l`` are numbers into one table ``L`` of
  ``[type, id, name]``, each link once (:func:`rows_of` gives the rows whole again);
* ``e``: one entity's fields ``f`` (``T``, ``i``), written by ``get``, ``fetch`` and writes;
* ``x``: a retired entity (``T``, ``i``);
* ``v``: any other answer ``d`` (``summarize``, schema reads);
* ``w``: the head of a warmed snapshot (:mod:`~sgcache_layers.snapshot`): its scope ``S``,
  project ``P``, event-log position ``e``, revision ``n``, types ``ty`` (fields, stamps,
  generations, chunks) and their field types ``sc``;
* ``c``: a chunk of a snapshot: rows ``r`` of one type ``T`` (retired ones if ``R``).

:func:`encode` turns a record into text that the fast JSON parser reads in one call, with
datetime and date columns named in the record instead of tagged value by value; data the
fast format cannot carry exactly (integers beyond 64 bits, NaN, lone surrogates, tuples,
nested datetimes) takes the exact, slower path of :mod:`sgcache_layers.codec`.
:func:`decode` reads both, and :func:`valid` turns anything malformed into ``None`` (a miss).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import sys
import time as _time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

from . import codec
from .codec import CodecError
from .entity import Entity
from .identity import IdentityMap, no_gc

__all__ = [
    "BUCKETS",
    "FORMAT_VERSION",
    "KINDS",
    "PREFIX",
    "ROW_KINDS",
    "Keys",
    "Namespace",
    "SessionCodec",
    "bucket_name",
    "decode",
    "encode",
    "is_record",
    "rows_of",
    "valid",
]

#: Version of the record format; part of every key and every record.
FORMAT_VERSION = 3
#: The first part of every key a session writes.
PREFIX = f"sgcl{FORMAT_VERSION}"
#: Record kinds (see the module docstring).
KINDS = frozenset({"q", "e", "x", "v", "w", "c"})
#: Kinds whose rows ``r`` hold the data (the rest keep fields ``f`` or a value ``d``).
ROW_KINDS = ("q", "c")
#: Entities of one type share this many generation buckets (``Shot#17``).
BUCKETS = 1024

_FAST_FRAME = "~" + PREFIX
_EXACT_FRAME = "~" + PREFIX + "x"
_FAST_HEAD = f'["{_FAST_FRAME}",'
_EXACT_HEAD = f'["{_EXACT_FRAME}",'
_VALUE_FRAME = "~sgclv"
_VALUE_HEAD = f'["{_VALUE_FRAME}",'
_INT_MIN = -(2**63)
_ABSENT = object()
_INT_END = 2**64
_DATETIME = _dt.datetime
_DATE = _dt.date
_Text = Union[str, bytes]
# The fast frame holds no tags: read without the tag hook, whichever parser reads it.
_PLAIN_LOADS = json.JSONDecoder().decode


def _escape(part: str) -> str:
    """Percent-escape a namespace part so no two identities can spell the same key."""
    return urllib.parse.quote(part, safe="")


@dataclass(frozen=True)
class Namespace:
    """Who asks, where and how: the part of every key that keeps answers apart.

    *identity* and *options* are ``(name, value)`` pairs (``("script", "tool")``,
    ``("sudo", "alice")``, ``("utc", "1")``).  Each value is percent-escaped, so
    ``script=tool;sudo=alice`` can only come from a script ``tool`` acting as ``alice``.
    """

    site: str
    identity: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, str], ...] = ()

    @property
    def base(self) -> str:
        """``sgcl3|<site>|<identity and options>``: the prefix of every data key."""
        parts = ";".join(f"{name}={_escape(value)}" for name, value in self.identity + self.options)
        return f"{PREFIX}|{_escape(self.site)}|{parts}"

    @property
    def shared(self) -> str:
        """``sgcl3|<site>|~site``: the prefix of what every identity of a site shares.

        Changes are facts about the site, whoever looks: the epoch, the generations, the
        event log position and the farm watcher's heartbeat live here, so one reader of the
        event log keeps every identity's answers true.  (It cannot be an identity's base:
        those always hold ``name=value`` pairs.)
        """
        return f"{PREFIX}|{_escape(self.site)}|~site"


class Keys:
    """The keys of one namespace: the site's shared bookkeeping (epoch, generations, event
    log position, watcher heartbeat) under *shared*, and data under *base*."""

    __slots__ = ("base", "shared", "epoch", "sync", "clock", "watch", "stats")

    def __init__(self, base: str, shared: Optional[str] = None) -> None:
        self.base = base
        self.shared = shared = base if shared is None else shared
        #: The epoch (replaced by a flush).
        self.epoch = shared + "|epoch"
        #: Where the event log was last read (``sync()``).
        self.sync = shared + "|sync"
        #: Replaced with every generation move, so one read tells whether any moved.
        self.clock = shared + "|clock"
        #: The farm watcher's heartbeat.
        self.watch = shared + "|watch"
        #: Farm-wide counters of this identity's sessions.
        self.stats = base + "|stats"

    def gen(self, epoch: str, name: str) -> str:
        """The key of generation *name* (an entity type, or a type's bucket ``Shot#17``)."""
        return f"{self.shared}|{epoch}|g|{name}"

    def data(self, epoch: str, kind: str, entity_type: str, rest: Union[str, int]) -> str:
        """A data key: ``<base>|<epoch>|<kind>|<type or method>|<id or digest>``."""
        return f"{self.base}|{epoch}|{kind}|{entity_type}|{rest}"

    @staticmethod
    def digest(text: str) -> str:
        """A short, stable digest of a call's canonical text."""
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def bucket_name(entity_type: str, entity_id: int) -> str:
    """The generation bucket that one entity's changes move."""
    return f"{entity_type}#{entity_id % BUCKETS}"


# ----------------------------------------------------------------------------- validity


def _is_token_map(value: Any) -> bool:
    return value.__class__ is dict and all(
        k.__class__ is str and v.__class__ is str for k, v in value.items()
    )


def _depends_on(gens: Mapping[str, str], entity_type: str) -> bool:
    """Whether *gens* hold the generation of *entity_type* or of one of its buckets."""
    if entity_type in gens:
        return True
    bucket = entity_type + "#"
    return any(name.startswith(bucket) for name in gens)


def _is_time(value: Any) -> bool:
    cls = value.__class__
    return (cls is float or cls is int) and math.isfinite(value)


def valid(value: Any, kinds: Iterable[str] = KINDS) -> Optional[dict[str, Any]]:
    """*value* if it is a well-formed record of one of *kinds*, else ``None`` (a miss).

    Checks the shape only: a record of another version, a damaged one or a foreign value
    is never an error, just not an answer.
    """
    if value.__class__ is not dict or value.get("v") != FORMAT_VERSION:
        return None
    kind = value.get("k")
    if (
        not isinstance(kind, str)
        or kind not in kinds
        or not _is_time(value.get("t"))
        or not _is_token_map(value.get("g"))
    ):
        return None
    if kind == "v":
        # Every answer depends on some generation (its type's, or the schema's).
        return value if "d" in value and value["g"] else None
    if kind == "w":
        return value if _is_head(value) else None
    entity_type = value.get("T")
    if entity_type.__class__ is not str:
        return None
    if kind != "c" and not _depends_on(value["g"], entity_type):
        return None  # an answer or entity always depends on its own type (or bucket)
    if kind in ROW_KINDS:
        if kind == "c" and value.get("R").__class__ is not bool:
            return None
        rows = value.get("r")
        if rows.__class__ is not list:
            return None
        for row in rows:
            if (
                row.__class__ is not dict
                or row.get("type") != entity_type
                or row.get("id").__class__ is not int
            ):
                return None
        if ("L" in value or "l" in value) and not _links_valid(value, rows):
            return None
        return value
    if value.get("i").__class__ is not int:
        return None
    if kind == "e":
        fields = value.get("f")
        return value if fields.__class__ is dict else None
    return value


def _links_valid(value: Mapping[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Whether a record's link table ``L`` and link columns ``l`` fit its rows."""
    table, columns = value.get("L"), value.get("l")
    if value.get("k") != "q" or table.__class__ is not list or columns.__class__ is not list:
        return False
    for entry in table:
        if (
            entry.__class__ is not list
            or len(entry) != 3
            or entry[0].__class__ is not str
            or entry[1].__class__ is not int
            or not (entry[2] is None or entry[2].__class__ is str)
        ):
            return False
    size = len(table)
    for name in columns:
        if name.__class__ is not str or name in ("type", "id"):
            return False
        for row in rows:
            ref = row.get(name)
            if ref is None:
                continue
            if ref.__class__ is int:
                if not 0 <= ref < size:
                    return False
            elif ref.__class__ is list:
                for item in ref:
                    if item.__class__ is not int or not 0 <= item < size:
                        return False
            else:
                return False
    return True


def rows_of(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a (valid) record as ShotGrid gave them, links whole."""
    rows: list[dict[str, Any]] = record["r"]
    table, columns = record.get("L"), record.get("l")
    if not columns or table is None:
        return rows
    links = [{"type": t, "id": i, "name": n} for t, i, n in table]
    out = []
    for row in rows:
        row = dict(row)
        for name in columns:
            ref = row.get(name)
            if ref.__class__ is int:
                row[name] = dict(links[ref])
            elif ref.__class__ is list:
                row[name] = [dict(links[i]) for i in ref]
        out.append(row)
    return out


def _is_link(value: Any) -> bool:
    """Whether *value* is ShotGrid's usual ``{type, id, name}`` link and nothing more."""
    if value.__class__ is not dict or len(value) != 3:
        return False
    link_id, name = value.get("id"), value.get("name", _ABSENT)
    return (
        value.get("type").__class__ is str
        and link_id.__class__ is int
        and _INT_MIN <= link_id < _INT_END
        and (name is None or name.__class__ is str)
    )


def _tabled(record: dict[str, Any]) -> dict[str, Any]:
    """*record* (an answer) with the links of its link columns as numbers into one table.

    A column is a link column when every value it holds is a usual link or a list of them;
    the record is kept as it is when it has none, or one entity shows two display names.
    """
    rows = record["r"]
    boxes = record.get("c")
    if record["k"] != "q" or "L" in record or not rows or boxes.__class__ is not list:
        return record
    if not all(name.__class__ is str and name not in ("type", "id") for name in boxes):
        return record
    index: dict[tuple[Any, Any], int] = {}
    table: list[list[Any]] = []
    names: list[Any] = []
    failed: set[str] = set()

    def number(link: Any) -> Optional[int]:
        # The link's number in the table (added when new); None when it is not a link.
        if link.__class__ is not dict or len(link) != 3:
            return None
        key = (link.get("type"), link.get("id"))
        found = index.get(key)
        name = link.get("name", _ABSENT)
        if found is not None:
            if name is _ABSENT or key[1].__class__ is not int:  # True == 1, 2.0 == 2
                return None
            if name != names[found]:
                raise _TwoNames
            return found
        if not _is_link(link):
            return None
        found = index[key] = len(table)
        table.append([key[0], key[1], name])
        names.append(name)
        return found

    out = []
    try:
        for row in rows:
            row = dict(row)
            for name in boxes:
                if name in failed:
                    continue
                value = row.get(name)
                if value is None:
                    continue
                if value.__class__ is list:
                    refs = [number(item) for item in value]
                    if None in refs:
                        failed.add(name)
                    else:
                        row[name] = refs
                    continue
                ref = number(value)
                if ref is None:
                    failed.add(name)
                else:
                    row[name] = ref
            out.append(row)
    except _TwoNames:
        return record
    columns = [name for name in boxes if name not in failed]
    if not columns:
        return record
    if failed:  # values numbered before their column proved not to be links: put back
        for mine, given in zip(out, rows):
            for name in failed:
                if name in given:
                    mine[name] = given[name]
    return {**record, "r": out, "L": table, "l": columns}


class _TwoNames(Exception):
    """One entity shows two display names in one answer: keep its links whole."""


def _is_head(value: Mapping[str, Any]) -> bool:
    """Whether a ``w`` record has the shape :mod:`~sgcache_layers.snapshot` reads."""
    types, schema = value.get("ty"), value.get("sc")
    if (
        value.get("S").__class__ is not str
        or value.get("e").__class__ is not int
        or value.get("n").__class__ is not str
        or value.get("h").__class__ is not dict
        or types.__class__ is not dict
        or schema.__class__ is not dict
        or not (value.get("P") is None or value.get("P").__class__ is dict)
    ):
        return False
    for info in types.values():
        if info.__class__ is not dict or not _is_time(info.get("t")):
            return False
        if not _is_token_map(info.get("g")):
            return False
        if any(info.get(k).__class__ is not list for k in ("f", "d", "c")):
            return False
        for chunk in info["c"]:
            if (
                chunk.__class__ is not list
                or len(chunk) != 3
                or chunk[0].__class__ is not str
                or chunk[1].__class__ is not bool
                or chunk[2].__class__ is not int
            ):
                return False
    return all(fields.__class__ is dict for fields in schema.values())


def is_record(value: Any) -> bool:
    """Whether *value* is shaped like a record of this format (so :func:`encode` takes it)."""
    return valid(value) is not None


# ------------------------------------------------------------------------------ encoding


def _plain(value: Any) -> bool:
    """Whether *value* is JSON the fast parser reads back exactly (no dates, no tuples)."""
    cls = value.__class__
    if cls is str or value is None or cls is bool:
        return True
    if cls is int:
        return bool(_INT_MIN <= value < _INT_END)
    if cls is dict:
        for key, item in value.items():
            if key.__class__ is not str or not _plain(item):
                return False
        return True
    if cls is list:
        return all(_plain(item) for item in value)
    if cls is float:
        return math.isfinite(value)
    return False


def _column_kinds(rows: Iterable[Mapping[str, Any]]) -> Optional[dict[str, str]]:
    """Per field name: ``"t"`` (datetime), ``"d"`` (date) or ``"s"`` (plain JSON).

    ``None`` when some value fits none of them, or one name holds two kinds: then the
    record takes the exact path.
    """
    kinds: dict[str, str] = {}
    get = kinds.get
    for row in rows:
        for name, value in row.items():
            if value is None:
                continue
            cls = value.__class__
            if cls is str or cls is bool:
                kind = "s"
            elif cls is int:
                if not _INT_MIN <= value < _INT_END:
                    return None
                kind = "s"
            elif cls is _DATETIME:
                if value.tzinfo is not None:
                    offset = value.utcoffset()
                    if offset is None or offset.seconds % 60 or offset.microseconds:
                        return None  # the fast writer keeps whole minutes of offset only
                kind = "t"
            elif cls is _DATE:
                kind = "d"
            elif cls is dict or cls is list:
                if not _plain(value):
                    return None
                kind = "s"
            elif cls is float:
                if not math.isfinite(value):
                    return None
                kind = "s"
            else:
                return None
            if name.__class__ is not str:
                return None
            seen = get(name)
            if seen is None:
                kinds[name] = kind
            elif seen != kind:
                return None
    return kinds


def _fast_text(record: dict[str, Any]) -> Optional[str]:
    """*record* in the fast frame, or ``None`` when it holds what that frame cannot carry."""
    dumps = codec.fast_dumps()
    kind = record["k"]
    if kind in ROW_KINDS:
        kinds = _column_kinds(record["r"])
        if kinds is not None and kind == "q":
            record = _tabled(record)
    elif kind == "e":
        kinds = _column_kinds([record["f"]])
    elif kind == "v":
        kinds = {} if _plain(record["d"]) else None
    else:
        kinds = {}
    if kinds is None:
        return None
    head = {key: value for key, value in record.items() if key not in ("r", "f", "d")}
    if not _plain(head):
        return None
    body = dict(record)
    datetimes = [name for name, kind in kinds.items() if kind == "t"]
    dates = [name for name, kind in kinds.items() if kind == "d"]
    if datetimes:
        body["~t"] = datetimes
    if dates:
        body["~d"] = dates
    if dumps is not None:
        try:
            return _FAST_HEAD + dumps(body).decode("utf-8") + "]"
        except (TypeError, ValueError) + codec.FAST_ERRORS:
            return None  # lone surrogates and the like: the exact path takes them
    if datetimes or dates:
        body = _stringify(body, kind, datetimes, dates)
    try:
        return _FAST_HEAD + codec.dumps(body, escape=False) + "]"
    except (TypeError, ValueError):
        return None


def _stringify(
    body: dict[str, Any], kind: str, datetimes: list[str], dates: list[str]
) -> dict[str, Any]:
    """A copy of *body* with its datetime and date columns as ISO text (no fast writer)."""
    names = datetimes + dates

    def convert(fields: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        for name in names:
            value = out.get(name)
            if value is not None:
                out[name] = value.isoformat()
        return out

    body = dict(body)
    if kind in ROW_KINDS:
        body["r"] = [convert(row) for row in body["r"]]
    else:
        body["f"] = convert(body["f"])
    return body


def encode(record: dict[str, Any]) -> str:
    """Text for *record* (which must be :func:`valid`); raises ``TypeError`` for bad data."""
    text = _fast_text(record)
    if text is not None:
        return text
    return _EXACT_HEAD + codec.dumps(record) + "]"


# ------------------------------------------------------------------------------ decoding


_SLOT = 900  # seconds: every real zone's changes fall on a quarter of an hour (UTC)
_EPOCH = _DATETIME(1970, 1, 1, tzinfo=_dt.timezone.utc)
_WALL_EPOCH = _DATETIME(1970, 1, 1)
# ``datetime.combine(d, d.time(), tz)`` is ``d.replace(tzinfo=tz)`` at a seventh of the cost
# (``replace`` parses keyword arguments in C, ~1.5 us a call here).
_COMBINE = _DATETIME.combine


def _is_summer(wall: _dt.datetime) -> Optional[bool]:
    """What ``shotgun_api3``'s local zone decides for a (standard) wall time: whether
    ``time.mktime`` reads it as summer time; ``None`` where the platform cannot tell."""
    try:
        stamp = _time.mktime(
            (
                wall.year,
                wall.month,
                wall.day,
                wall.hour,
                wall.minute,
                wall.second,
                wall.weekday(),
                0,
                -1,
            )
        )
        return _time.localtime(stamp).tm_isdst > 0
    except (OverflowError, ValueError, OSError):
        return None


class _Zone:
    """``value.astimezone(tz)``, the client's conversion of a time it received, made fast.

    For ``shotgun_api3``'s own local zone, the standard ``fromutc`` of its ``tzinfo`` is
    done directly (one ``mktime``, where the client's objects call it three times); for any
    other slow ``tzinfo`` the offset found is remembered per quarter of an hour (UTC), in
    which no real zone changes its offset.
    """

    def __init__(self, tz: _dt.tzinfo) -> None:
        self.tz = tz
        self.fixed = isinstance(tz, _dt.timezone)
        self._offsets: dict[int, _dt.timedelta] = {}
        self._local: Optional[tuple[_dt.timedelta, _dt.timedelta]] = None
        #: Whether the local zone keeps summer time, per day of standard wall time.
        self._summer: dict[int, bool] = {}
        self._changing: set[int] = set()  # days on which the clocks change
        cls = type(tz)
        if cls.__name__ == "LocalTimezone" and cls.__module__.startswith("shotgun_api3"):
            zone = getattr(sys.modules.get(cls.__module__), "SgTimezone", None)
            standard = getattr(zone, "STDOFFSET", None)
            difference = getattr(zone, "DSTDIFF", None)
            if isinstance(standard, _dt.timedelta) and isinstance(difference, _dt.timedelta):
                self._local = (standard, difference)

    def _summer_of_day(
        self, day: int, wall: _dt.datetime, standard: _dt.timedelta
    ) -> Optional[bool]:
        """Summer time at *wall* (standard wall time), remembered for its whole day when no
        change of clock falls within two hours of it.

        The day is told by ``time.localtime`` at its ends, which leaves ``mktime``'s own
        guess alone: on the days of a change every time is worked out the client's way,
        one ``mktime`` each, so even the hour that happens twice comes out as the client's.
        """
        if day not in self._changing:
            start = day * 86400 - standard.total_seconds()
            try:
                first = _time.localtime(start - 7200).tm_isdst > 0
                last = _time.localtime(start + 86400 + 7200).tm_isdst > 0
            except (OverflowError, ValueError, OSError):
                return _is_summer(wall)
            if first == last:
                self._summer[day] = first
                return first
            self._changing.add(day)
        return _is_summer(wall)

    def convert(self, value: _dt.datetime) -> _dt.datetime:
        if self.fixed:
            return value.astimezone(self.tz)
        if self._local is not None:
            standard, difference = self._local
            offset = value.utcoffset()
            if offset is not None:
                wall = _COMBINE(value, value.time()) - offset + standard  # naive
                day = (wall - _WALL_EPOCH).days
                summer = self._summer.get(day)
                if summer is None:
                    summer = self._summer_of_day(day, wall, standard)
                    if summer is None:
                        return value.astimezone(self.tz)
                if summer:
                    wall = wall + difference
                return _COMBINE(wall, wall.time(), self.tz)
        slot = int((value - _EPOCH).total_seconds()) // _SLOT
        found = self._offsets.get(slot)
        if found is None:
            exact = value.astimezone(self.tz)
            found = exact.utcoffset()
            if found is None:
                return exact
            self._offsets[slot] = found
            return exact
        moved = value + found - value.utcoffset()  # type: ignore[operator]
        return _COMBINE(moved, moved.time(), self.tz)


_ZONES: dict[int, tuple[_dt.tzinfo, _Zone]] = {}


def _zone(tz: _dt.tzinfo) -> _Zone:
    found = _ZONES.get(id(tz))
    if found is None or found[0] is not tz:
        found = _ZONES[id(tz)] = (tz, _Zone(tz))
    return found[1]


def _restore(
    rows: Iterable[dict[str, Any]],
    datetimes: Any,
    dates: Any,
    tz: Optional[_dt.tzinfo],
) -> None:
    """Turn the named ISO-text columns of *rows* back into datetimes and dates, in place."""
    if datetimes.__class__ is not list or dates.__class__ is not list:
        raise CodecError("a record names its date columns wrongly")
    fromiso = _DATETIME.fromisoformat
    convert = _zone(tz).convert if tz is not None else None
    # Datetimes are immutable: rows that share a text (things made or changed together)
    # share one value, converted once.
    made: dict[str, _dt.datetime] = {}
    remembered = made.get
    for name in datetimes:
        for row in rows:
            text = row.get(name)
            if text is not None:
                value = remembered(text)
                if value is None:
                    value = fromiso(text)
                    if convert is not None and value.tzinfo is not None:
                        value = convert(value)
                    made[text] = value
                row[name] = value
    fromiso_date = _DATE.fromisoformat
    for name in dates:
        for row in rows:
            value = row.get(name)
            if value is not None:
                row[name] = fromiso_date(value)


def decode(text: _Text, tz: Optional[_dt.tzinfo] = None) -> dict[str, Any]:
    """The record in *text* (written by :func:`encode`); :class:`CodecError` otherwise.

    *tz*, when given, is the time zone aware datetimes are converted to on the way out
    (the client's own conversion), so a cached answer matches what the client returns.
    """
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except (UnicodeDecodeError, TypeError) as error:
            raise CodecError(f"a cached record is not text: {error}") from None
    assert isinstance(text, str)
    if text.startswith(_FAST_HEAD):
        with no_gc(len(text) // 100):
            return _decode_fast(text, tz)
    if text.startswith(_EXACT_HEAD):
        data = codec.loads(text)
        if data.__class__ is not list or len(data) != 2 or data[1].__class__ is not dict:
            raise CodecError("a cached record has the wrong frame")
        record = data[1]
        if tz is not None:
            _to_zone(record, tz)
        return record
    raise CodecError("not a record of this format")


def _decode_fast(text: str, tz: Optional[_dt.tzinfo]) -> dict[str, Any]:
    loads = codec.fast_loads()
    try:
        data = loads(text) if loads is not None else _PLAIN_LOADS(text)
    except codec.FAST_ERRORS:
        try:  # text from a writer without the fast parser (e.g. escaped surrogates)
            data = _PLAIN_LOADS(text)
        except ValueError as error:
            raise CodecError(f"cannot decode a cached record: {error}") from None
    except ValueError as error:
        raise CodecError(f"cannot decode a cached record: {error}") from None
    if data.__class__ is not list or len(data) != 2 or data[1].__class__ is not dict:
        raise CodecError("a cached record has the wrong frame")
    record: dict[str, Any] = data[1]
    datetimes = record.pop("~t", [])
    dates = record.pop("~d", [])
    if datetimes or dates:
        kind = record.get("k")
        rows = record.get("r") if kind in ROW_KINDS else [record.get("f")]
        if rows.__class__ is not list or not all(r.__class__ is dict for r in rows):
            raise CodecError("a cached record has dated columns but no rows")
        try:
            _restore(rows, datetimes, dates, tz)
        except (TypeError, ValueError, AttributeError) as error:
            raise CodecError(f"a cached record has a bad date or time: {error}") from None
    return record


def _to_zone(record: dict[str, Any], tz: _dt.tzinfo) -> None:
    """Convert the top-level aware datetimes of an exact record's rows or fields to *tz*."""
    kind = record.get("k")
    rows = record.get("r") if kind in ROW_KINDS else [record.get("f")] if kind == "e" else []
    if rows.__class__ is not list:
        return
    for row in rows:
        if row.__class__ is not dict:
            continue
        for name, value in row.items():
            if value.__class__ is _DATETIME and value.tzinfo is not None:
                row[name] = value.astimezone(tz)


class SessionCodec:
    """``Session.encode``/``decode``: records in their own format, anything else as exact
    tagged JSON in which entities are references carrying their fields (merged into the
    identity map when decoded)."""

    def __init__(self, identity: IdentityMap, tz: Optional[_dt.tzinfo] = None) -> None:
        self.identity = identity
        self.tz = tz
        self._decode_value = codec.make_decoder(self._entity_from)

    def encode(self, data: Any) -> str:
        """Text for *data* (a record, or any value built from ShotGrid data)."""
        if is_record(data):
            return encode(data)
        body = codec.escape(data, self._reference)
        return _VALUE_HEAD + codec.dumps(body, escape=False) + "]"

    def decode(self, text: _Text) -> Any:
        """What :meth:`encode` wrote (``CodecError`` for anything else)."""
        if is_text_record(text):
            return decode(text, self.tz)
        value = self._decode_value(text)
        if value.__class__ is not list or len(value) != 2 or value[0] != _VALUE_FRAME:
            raise CodecError("not a value written by Session.encode")
        return value[1]

    def _reference(self, data: Any, top: bool = True) -> Any:
        """The tagged reference an entity is encoded as (``None`` for anything else)."""
        if not isinstance(data, Entity):
            return None
        ref: dict[str, Any] = {codec.TAG: "entity", "type": data.type, "id": data.id}
        if top:

            def inner(value: Any) -> Any:
                return self._reference(value, top=False)

            ref["fields"] = {
                codec.escape_key(name): codec.escape(value, inner)
                for name, value in dict.items(data)
                if name not in ("type", "id")
            }
        else:
            name = dict.get(data, "name")
            if name is not None:
                ref["fields"] = {"name": codec.escape(name)}
        return ref

    def _entity_from(self, obj: dict[str, Any]) -> Any:
        entity_type, entity_id = obj.get("type"), obj.get("id")
        if not isinstance(entity_type, str) or not isinstance(entity_id, int):
            return obj
        entity = self.identity.entity(entity_type, entity_id)
        fields = obj.get("fields")
        if isinstance(fields, dict):
            self.identity.merge_fields(entity, fields, over=None)
        return entity


def is_text_record(text: Any) -> bool:
    """Whether *text* is in one of this format's record frames (cheap prefix test)."""
    if text.__class__ is bytes:
        return text.startswith(_FAST_HEAD.encode()) or text.startswith(_EXACT_HEAD.encode())
    return text.__class__ is str and (text.startswith(_FAST_HEAD) or text.startswith(_EXACT_HEAD))
