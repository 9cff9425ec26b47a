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
from typing import Any, Callable, Optional

__all__ = ["TAG", "CodecError", "dumps", "loads"]

#: The key that marks a tagged value inside encoded JSON.
TAG = "__sgcl__"

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


def _escape(value: Any) -> Any:
    """Wrap user dicts that happen to contain the tag key so decoding leaves them alone."""
    if isinstance(value, dict):
        escaped = {k: _escape(v) for k, v in value.items()}
        if TAG in value:
            return {TAG: "dict", "v": escaped}
        return escaped
    if isinstance(value, (list, tuple)):
        return [_escape(v) for v in value]
    return value


def dumps(data: Any, *, escape: bool = False) -> str:
    """Return *data* as compact JSON text.

    *escape* walks the data first so that a user dict holding the tag key
    survives the round trip; records built by the session never need it.
    """
    if escape:
        data = _escape(data)
    return _ENCODER.encode(data)


def _make_hook(entity_hook: Optional[EntityHook]) -> Callable[[dict[str, Any]], Any]:
    fromiso_dt = _DATETIME.fromisoformat
    fromiso_d = _DATE.fromisoformat

    def hook(obj: dict[str, Any]) -> Any:
        if TAG not in obj:
            return obj
        tag = obj[TAG]
        if tag == "dt":
            return fromiso_dt(obj["v"])
        if tag == "date":
            return fromiso_d(obj["v"])
        if tag == "entity" and entity_hook is not None:
            return entity_hook(obj)
        if tag == "dict":
            return obj["v"]
        if tag == "b64":
            return base64.b64decode(obj["v"])
        if tag == "set":
            return set(obj["v"])
        return obj

    return hook


_PLAIN_HOOK = _make_hook(None)


def loads(text: str | bytes, entity_hook: Optional[EntityHook] = None) -> Any:
    """Decode JSON text written by :func:`dumps`.

    Raises :class:`CodecError` (never anything else) when the text is not valid.
    """
    hook = _PLAIN_HOOK if entity_hook is None else _make_hook(entity_hook)
    try:
        return json.loads(text, object_hook=hook)
    except (ValueError, TypeError, KeyError) as error:
        raise CodecError(f"cannot decode cached ShotGrid JSON: {error}") from None
