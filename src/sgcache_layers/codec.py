"""JSON encoding of ShotGrid data that round-trips exactly.

ShotGrid answers hold datetimes (usually time-zone aware), dates, entity links
and nested lists and dicts.  Plain JSON loses the first two, so they travel as
small tagged objects: ``{"__sgcl__": "dt", "v": "2024-01-02T03:04:05+02:00"}``.
The tags are only ever produced and read here; nothing read from a cache is
ever executed or unpickled.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from typing import Any, Callable, Optional, Union

__all__ = [
    "TAG",
    "CodecError",
    "dumps",
    "loads",
    "make_decoder",
    "escape",
    "escape_key",
    "frame_plain",
    "pack_record",
    "unpack_record",
]

#: The key that marks a tagged value inside encoded JSON.
TAG = "__sgcl__"

# Optional accelerator (``pip install sgcache-layers[fast]``): orjson parses plain
# records about three times faster.  Whatever it refuses (NaN, Infinity, integers
# beyond 64 bits, lone surrogates) goes to the standard parser, so answers match.
_fast_loads: Optional[Callable[[Union[str, bytes]], Any]]
try:
    import orjson

    _fast_loads = orjson.loads
    _FAST_ERROR: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None
    _FAST_ERROR = ValueError

_DATETIME = _dt.datetime
_DATE = _dt.date


class CodecError(ValueError):
    """Raised when text cannot be decoded into ShotGrid data."""


def _default(value: Any) -> Any:
    """Turn values JSON cannot express into tagged objects."""
    cls = type(value)
    if cls is _DATETIME or isinstance(value, _DATETIME):
        return {TAG: "dt", "v": value.isoformat()}
    if cls is _DATE or isinstance(value, _DATE):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, (bytes, bytearray)):
        return {TAG: "b64", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return {TAG: "set", "v": sorted(value, key=repr)}
    raise TypeError(f"cannot encode a value of type {cls.__name__} as ShotGrid JSON")


_ENCODER = json.JSONEncoder(
    default=_default, separators=(",", ":"), ensure_ascii=False, check_circular=True
)

EntityHook = Callable[[dict[str, Any]], Any]


def escape_key(key: str) -> str:
    """A user dict key that starts with the tag gets a ``~`` so it is never read as a tag.

    Decoding strips one ``~`` from such keys; keys are escaped rather than their
    dicts wrapped because JSON objects are decoded innermost first.
    """
    return key + "~" if key.startswith(TAG) else key


def _unescape_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {(k[:-1] if k.startswith(TAG) and k.endswith("~") else k): v for k, v in obj.items()}


def escape(value: Any) -> Any:
    """A copy of *value* whose dict keys that start with the tag are escaped."""
    if isinstance(value, dict):
        return {escape_key(str(k)): escape(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape(v) for v in value]
    return value


def dumps(data: Any, *, escape: bool = False) -> str:
    """Return *data* as compact JSON text.

    *escape* walks the data first so that a user dict holding the tag key
    survives the round trip; records built by the session never need it.
    """
    if escape:
        data = globals()["escape"](data)
    return _ENCODER.encode(data)


def _make_hook(entity_hook: Optional[EntityHook]) -> Callable[[dict[str, Any]], Any]:
    fromiso_dt = _DATETIME.fromisoformat
    fromiso_d = _DATE.fromisoformat

    def hook(obj: dict[str, Any]) -> Any:
        if TAG not in obj:
            for key in obj:
                if key.startswith(TAG):
                    return _unescape_keys(obj)
            return obj
        tag = obj[TAG]
        if tag == "dt":
            return fromiso_dt(obj["v"])
        if tag == "date":
            return fromiso_d(obj["v"])
        if tag == "entity" and entity_hook is not None:
            return entity_hook(obj)
        if tag == "b64":
            return base64.b64decode(obj["v"])
        if tag == "set":
            return set(obj["v"])
        return obj

    return hook


def make_decoder(
    entity_hook: Optional[EntityHook] = None, fast: bool = False
) -> Callable[[Union[str, bytes]], Any]:
    """Return a ``decode(text)`` function (decoders built once, reused).

    With *fast*, text holding no tagged value is parsed by the C decoder alone,
    skipping the per-object Python hook.
    """
    hooked = json.JSONDecoder(object_hook=_make_hook(entity_hook)).decode
    plain = json.JSONDecoder().decode
    marker = f'"{TAG}'  # tags and escaped keys both start like this

    def loads(text: Union[str, bytes]) -> Any:
        try:
            if not isinstance(text, str):
                text = bytes(text).decode("utf-8")
            if fast and marker not in text:
                accelerated = _fast_loads
                if accelerated is not None:
                    try:
                        return accelerated(text)
                    except _FAST_ERROR:
                        pass  # the standard parser decides (and reads NaN and big ints)
                return plain(text)
            return hooked(text)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise CodecError(f"cannot decode cached ShotGrid JSON: {error}") from None

    return loads


# Frames that tell a packed session record (and a user list that merely starts
# like one) from any other value.  They avoid the tag so records stay on the fast path.
_RECORD_FRAME = "~sgcl-record"
_LIST_FRAME = "~sgcl-list"
_FRAMES = (_RECORD_FRAME, _LIST_FRAME)


def pack_record(record: dict[str, Any]) -> list[Any]:
    """Frame a session record so it decodes without a per-object hook.

    Top-level datetime and date values of its field dict ``"f"`` become ISO text
    whose names travel in side lists: ``[frame, record, datetime_names, date_names]``.
    Every container is escaped (see :func:`escape`) like any other data.
    """
    packed: dict[str, Any] = {}
    for key, value in record.items():
        if key != "f":
            cls = value.__class__
            packed[key] = escape(value) if cls is dict or cls is list or cls is tuple else value
    datetimes: list[str] = []
    dates: list[str] = []
    fields = record.get("f")
    if type(fields) is dict:
        out: dict[str, Any] = {}
        for name, value in fields.items():
            cls = value.__class__
            if cls is _DATETIME or (cls is not _DATE and isinstance(value, _DATETIME)):
                datetimes.append(name)
                value = value.isoformat()
            elif cls is _DATE:
                dates.append(name)
                value = value.isoformat()
            elif cls is dict or cls is list or cls is tuple:
                value = escape(value)
            out[escape_key(name)] = value
        packed["f"] = out
    elif "f" in record:
        packed["f"] = escape(fields)
    return [_RECORD_FRAME, packed, datetimes, dates]


def frame_plain(data: Any) -> Any:
    """Escape a value that would read as a frame (a list starting with a frame name)."""
    if type(data) is list and data and data[0] in _FRAMES:
        return [_LIST_FRAME, data]
    return data


def unpack_record(data: Any) -> Any:
    """Undo :func:`pack_record` and :func:`frame_plain`; anything else is returned as is."""
    if type(data) is not list or not data or data[0] not in _FRAMES:
        return data
    if data[0] == _LIST_FRAME and len(data) == 2:
        return data[1]
    if data[0] != _RECORD_FRAME or len(data) != 4 or type(data[1]) is not dict:
        raise CodecError("a framed record has the wrong shape")
    record: dict[str, Any] = data[1]
    fields = record.get("f")
    try:
        for name in data[2]:
            fields[name] = _DATETIME.fromisoformat(fields[name])  # type: ignore[index]
        for name in data[3]:
            fields[name] = _DATE.fromisoformat(fields[name])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as error:
        raise CodecError(f"a packed record has a bad date or time: {error}") from None
    return record


_PLAIN_LOADS = make_decoder(None)


def loads(text: Union[str, bytes], entity_hook: Optional[EntityHook] = None) -> Any:
    """Decode JSON text written by :func:`dumps`.

    Raises :class:`CodecError` (never anything else) when the text is not valid.
    """
    if entity_hook is None:
        return _PLAIN_LOADS(text)
    return make_decoder(entity_hook)(text)
