"""Turn call arguments into cache keys.

:class:`ObjectKeyMaker` gives the same ``str`` for the same structure in every
process, on every machine and Python version (no ``hash()``, no pickle), so
keys can be shared through a file or Redis cache.
"""

from __future__ import annotations

import abc
import datetime
import decimal
import enum
import hashlib
import inspect
import uuid
from collections.abc import Mapping
from typing import Any, Callable, Optional

__all__ = ["KeyMaker", "ObjectKeyMaker", "StringKeyMaker"]


class KeyMaker(abc.ABC):
    """Make a ``str`` key from items: each item's key joined by ``item_separator``."""

    def __init__(self, separator: str = "\x1f") -> None:
        self.item_separator = separator

    def key(self, *items: Any) -> str:
        """Return the key for *items*."""
        return self.item_separator.join([self._key(item) for item in items])

    @abc.abstractmethod
    def _key(self, item: Any) -> str:
        """Return the key of one *item*."""


class StringKeyMaker(KeyMaker):
    """Key items by ``str(item)`` (so ``1`` and ``"1"`` share a key: use for strings)."""

    def _key(self, item: Any) -> str:
        return str(item)


# Encoding.  Every item is written as a tag character and a self-delimiting
# body, so the concatenation of encodings can be read back one way only:
#
#   N T F             None, True, False
#   i<int>;           int               f<float.hex()>;   float
#   s<len>:<chars>    str               b<len>:<hex>      bytes
#   l<n>: t<n>:       list, tuple, followed by n encodings
#   d<n>:             dict, n (key, value) encodings sorted by key encoding
#   S<n>: Z<n>:       set, frozenset, n encodings sorted
#   D<iso>; A<iso>; H<iso>; E<d>,<s>,<us>;   datetime, date, time, timedelta
#   M<len>:<str>  U<hex>;                    Decimal, UUID
#   c<len>:<module>:<qualname>               function, class, builtin
#   m<enc><enc>                              bound method (function, self)
#   e<len>:<class>.<name>                    Enum member
#   o<len>:<class><enc>                      object keyed by its __cache_key__()


def _qualified_name(item: Any) -> str:
    module = getattr(item, "__module__", None) or ""
    name = getattr(item, "__qualname__", None) or getattr(item, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"cannot make a key from {type(item).__name__} objects")
    if "<" in name:  # lambdas and local functions: tell them apart by line
        code = getattr(item, "__code__", None)
        if code is not None:
            name = f"{name}@{code.co_firstlineno}"
    return f"{module}:{name}"


def _encoded(item: Any) -> str:
    """Return the encoding of *item* as one string."""
    parts: list[str] = []
    _encode(item, parts.append)
    return "".join(parts)


def _encode(item: Any, append: Callable[[str], None]) -> None:
    """Append the encoding of *item* in pieces (hot types first)."""
    kind = type(item)
    if kind is str:
        append(f"s{len(item)}:")
        append(item)
    elif kind is list or kind is tuple:
        append(f"{'l' if kind is list else 't'}{len(item)}:")
        for element in item:
            element_kind = type(element)
            if element_kind is str:
                append(f"s{len(element)}:")
                append(element)
            else:
                _encode(element, append)
    elif kind is dict:
        pairs = []
        for key, value in item.items():
            key_code = f"s{len(key)}:{key}" if type(key) is str else _encoded(key)
            if type(value) is str:
                pairs.append(f"{key_code}s{len(value)}:{value}")
            else:
                pairs.append(key_code + _encoded(value))
        pairs.sort()
        append(f"d{len(pairs)}:")
        append("".join(pairs))
    elif kind is int:
        append(f"i{item};")
    elif item is None:
        append("N")
    elif kind is bool:
        append("T" if item else "F")
    elif kind is float:
        append(f"f{item.hex()};")
    elif kind is bytes:
        append(f"b{len(item)}:{item.hex()}")
    elif kind is datetime.datetime:
        append(f"D{item.isoformat()};")
    elif kind is datetime.date:
        append(f"A{item.isoformat()};")
    else:
        _encode_other(item, append)


def _encode_other(item: Any, append: Callable[[str], None]) -> None:
    """Encode the less common types (and subclasses of the common ones)."""
    if isinstance(item, (set, frozenset)):
        members = sorted(_encoded(member) for member in item)
        append(f"{'Z' if isinstance(item, frozenset) else 'S'}{len(members)}:")
        append("".join(members))
    elif isinstance(item, enum.Enum):
        name = f"{_qualified_name(type(item))}.{item.name}"
        append(f"e{len(name)}:{name}")
    elif isinstance(item, bool):
        append("T" if item else "F")
    elif isinstance(item, str):
        _encode(str(item), append)
    elif isinstance(item, int):
        _encode(int(item), append)
    elif isinstance(item, float):
        _encode(float(item), append)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        _encode(bytes(item), append)
    elif isinstance(item, list):
        _encode(list(item), append)
    elif isinstance(item, tuple):
        _encode(tuple(item), append)
    elif isinstance(item, Mapping):
        _encode(dict(item), append)
    elif isinstance(item, datetime.datetime):
        append(f"D{item.isoformat()};")
    elif isinstance(item, datetime.date):
        append(f"A{item.isoformat()};")
    elif isinstance(item, datetime.time):
        append(f"H{item.isoformat()};")
    elif isinstance(item, datetime.timedelta):
        append(f"E{item.days},{item.seconds},{item.microseconds};")
    elif isinstance(item, decimal.Decimal):
        text = str(item)
        append(f"M{len(text)}:{text}")
    elif isinstance(item, uuid.UUID):
        append(f"U{item.hex};")
    elif inspect.ismethod(item):
        append("m")
        _encode(item.__func__, append)
        _encode(item.__self__, append)
    elif (
        inspect.isfunction(item)
        or inspect.isclass(item)
        or inspect.isbuiltin(item)
        or inspect.ismethoddescriptor(item)
    ):
        name = _qualified_name(item)
        append(f"c{len(name)}:{name}")
    elif callable(getattr(item, "__cache_key__", None)):
        name = _qualified_name(type(item))
        append(f"o{len(name)}:{name}")
        _encode(item.__cache_key__(), append)
    else:
        raise TypeError(
            f"ObjectKeyMaker cannot make a key from {type(item).__qualname__} objects "
            "(give the class a __cache_key__() method returning keyable data)"
        )


class ObjectKeyMaker(KeyMaker):
    """Key nested data by a canonical, type-tagged encoding.

    Stable across processes and Python versions; dict and set order do not
    matter; ``1``, ``1.0``, ``True``, ``"1"``, ``(1,)`` and ``[1]`` all differ.
    Supports None, bool, int, float, str, bytes, list, tuple, dict, set,
    frozenset, date/time types (by isoformat, with offset), Decimal, UUID,
    Enum members, functions and classes (by module and qualified name),
    bound methods, and objects with a ``__cache_key__()`` method; anything
    else raises ``TypeError`` naming the type.  Keys longer than *max_length*
    (if set) are replaced by ``"sha256:" + hexdigest``.
    """

    def __init__(self, max_length: Optional[int] = None) -> None:
        super().__init__(separator="")
        self.max_length = max_length

    def key(self, *items: Any) -> str:
        """Return the key for *items* (a tuple-like sequence of encodings)."""
        parts: list[str] = []
        append = parts.append
        for item in items:
            if type(item) is str:
                append(f"s{len(item)}:")
                append(item)
            else:
                _encode(item, append)
        key = "".join(parts)
        if self.max_length is not None and len(key) > self.max_length:
            digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
            return f"sha256:{digest}"
        return key

    def _key(self, item: Any) -> str:
        return _encoded(item)
