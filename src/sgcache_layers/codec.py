"""Exact JSON for ShotGrid data: what goes in comes out, with the same types.

ShotGrid answers hold datetimes (aware or naive), dates, entity links and nested lists and
dicts; users memoise anything built from them.  Plain JSON would lose datetimes, dates,
tuples, bytes, sets and dicts with non-``str`` keys, so those travel as small tagged objects
(``{"__sgcl__": "dt", "v": "2024-01-02T03:04:05+02:00"}``).  A user dict key that starts with
the tag is escaped, so user data can never be read as a tag.  Text is pure ASCII (lone
surrogates and all), so any text store can keep it.  Nothing read is ever executed or
unpickled: decoding only builds plain values.

The fast record format of the session lives in :mod:`sgcache_layers.records`; this module
is the exact, general path it falls back on.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from typing import Any, Callable, Optional, Union

__all__ = [
    "TAG",
    "CodecError",
    "dumps",
    "escape",
    "escape_key",
    "fast_dumps",
    "fast_loads",
    "loads",
    "make_decoder",
]

#: The key that marks a tagged value inside encoded JSON.
TAG = "__sgcl__"

# Optional accelerator (``pip install sgcache-layers[fast]``).  The record format uses it
# for the data it can express exactly; everything else takes the standard library's path.
_fast_loads: Optional[Callable[[Union[str, bytes]], Any]]
_fast_dumps: Optional[Callable[..., bytes]]
try:
    import orjson

    _fast_loads = orjson.loads
    _fast_dumps = orjson.dumps
    FAST_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, orjson.JSONEncodeError)
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None
    _fast_dumps = None
    FAST_ERRORS = (ValueError,)

_DATETIME = _dt.datetime
_DATE = _dt.date


class CodecError(ValueError):
    """Text that cannot be decoded into ShotGrid data (or data that cannot be encoded)."""


def fast_loads() -> Optional[Callable[[Union[str, bytes]], Any]]:
    """The accelerated JSON parser, or ``None`` when it is not installed (or turned off)."""
    return _fast_loads


def fast_dumps() -> Optional[Callable[..., bytes]]:
    """The accelerated JSON writer, or ``None`` when it is not installed (or turned off)."""
    return _fast_dumps if _fast_loads is not None else None


def escape_key(key: str) -> str:
    """A user dict key that starts with the tag gets a ``~``, so it is never read as a tag."""
    return key + "~" if key.startswith(TAG) else key


def _unescape_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {(k[:-1] if k.startswith(TAG) and k.endswith("~") else k): v for k, v in obj.items()}


def escape(value: Any, special: Optional[Callable[[Any], Any]] = None) -> Any:
    """A copy of *value* ready for plain JSON: tags for what JSON cannot say, keys escaped.

    *special*, if given, is asked first about every value; anything but ``None`` it returns
    is used as the (already escaped) encoding of that value.
    """
    if special is not None:
        done = special(value)
        if done is not None:
            return done
    cls = value.__class__
    if cls is dict:
        if all(k.__class__ is str for k in value):
            return {escape_key(k): escape(v, special) for k, v in value.items()}
        return {
            TAG: "map",
            "v": [[escape(k, special), escape(v, special)] for k, v in value.items()],
        }
    if cls is list:
        return [escape(v, special) for v in value]
    if cls is tuple:
        return {TAG: "tuple", "v": [escape(v, special) for v in value]}
    if cls is float and not math.isfinite(value):
        return {TAG: "float", "v": repr(value)}
    if isinstance(value, dict):
        return escape(dict(value), special)
    if isinstance(value, (list, tuple)):
        return escape(list(value) if isinstance(value, list) else tuple(value), special)
    return value


def _default(value: Any) -> Any:
    """Tag the leaf values JSON cannot express."""
    if isinstance(value, _DATETIME):
        return {TAG: "dt", "v": value.isoformat()}
    if isinstance(value, _DATE):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, (bytes, bytearray)):
        return {TAG: "b64", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, frozenset):
        return {TAG: "frozenset", "v": [escape(v) for v in sorted(value, key=repr)]}
    if isinstance(value, set):
        return {TAG: "set", "v": [escape(v) for v in sorted(value, key=repr)]}
    raise TypeError(f"cannot encode a value of type {type(value).__name__} as ShotGrid JSON")


_ENCODER = json.JSONEncoder(
    default=_default, separators=(",", ":"), ensure_ascii=True, check_circular=True
)

EntityHook = Callable[[dict[str, Any]], Any]


def dumps(data: Any, *, escape: bool = True) -> str:
    """Return *data* as compact, pure-ASCII JSON text that :func:`loads` reads back exactly.

    *escape* (the default) prepares the data first (tags for tuples, non-finite floats and
    dicts with non-``str`` keys, escaped tag keys); pass ``False`` only for data known to
    hold none of those.  Raises ``TypeError`` for a value it cannot express.
    """
    if escape:
        data = globals()["escape"](data)
    try:
        return _ENCODER.encode(data)
    except ValueError as error:  # a circular reference
        raise CodecError(f"cannot encode this data as ShotGrid JSON: {error}") from None


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
        value = obj.get("v")
        if tag == "dt":
            return fromiso_dt(value)  # type: ignore[arg-type]
        if tag == "date":
            return fromiso_d(value)  # type: ignore[arg-type]
        if tag == "entity" and entity_hook is not None:
            return entity_hook(obj)
        if tag == "tuple":
            return tuple(value)  # type: ignore[arg-type]
        if tag == "map":
            return {_hashable(k): v for k, v in value}  # type: ignore[union-attr]
        if tag == "float":
            return float(value)  # type: ignore[arg-type]
        if tag == "b64":
            return base64.b64decode(value, validate=True)  # type: ignore[arg-type]
        if tag == "set":
            return set(value)  # type: ignore[arg-type]
        if tag == "frozenset":
            return frozenset(value)  # type: ignore[arg-type]
        return obj

    return hook


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict, set)):
        raise CodecError("a decoded mapping key is not hashable")
    return key


def make_decoder(entity_hook: Optional[EntityHook] = None) -> Callable[[Union[str, bytes]], Any]:
    """Return a ``decode(text)`` function for text written by :func:`dumps`."""
    hooked = json.JSONDecoder(object_hook=_make_hook(entity_hook)).decode

    def decode(text: Union[str, bytes]) -> Any:
        try:
            if not isinstance(text, str):
                text = bytes(text).decode("utf-8")
            return hooked(text)
        except CodecError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise CodecError(f"cannot decode cached ShotGrid JSON: {error}") from None

    return decode


_PLAIN_LOADS = make_decoder(None)


def loads(text: Union[str, bytes], entity_hook: Optional[EntityHook] = None) -> Any:
    """Decode JSON text written by :func:`dumps`.

    Raises :class:`CodecError` (never anything else) when the text is not valid.
    """
    if entity_hook is None:
        return _PLAIN_LOADS(text)
    return make_decoder(entity_hook)(text)
