"""How a session is configured: arguments, the environment, the client, cache specs.

Everything here reads a ``shotgun_api3.Shotgun``, the environment or the session's
arguments; nothing here stores or fetches.  The identity and options end up in every key
(:class:`~sgcache_layers.records.Namespace`), so two clients that could see different
answers never share them, and no secret ever does.

Precedence, for every setting the environment can give: an argument passed to
:class:`~sgcache_layers.session.Session` wins, then the environment variable, then the
built-in default (:data:`DEFAULTS`).  The variables (see :data:`SETTING_VARIABLES`):

``SGCACHE_LAYERS_CACHE``
    A cache spec, as ``cache=`` takes it (see :func:`parse_cache_spec`).
``SGCACHE_LAYERS_MODE``
    ``direct``, ``cached`` or ``offline``.
``SGCACHE_LAYERS_MAX_AGE``, ``SGCACHE_LAYERS_SCHEMA_MAX_AGE``
    Seconds, or a number with a unit: ``90s``, ``10m``, ``2h``, ``1d``.
``SGCACHE_LAYERS_STALE_IF_ERROR``
    ``true`` or ``false`` (also ``yes``/``no``, ``on``/``off``), or seconds as above.
``SGCACHE_LAYERS_SYNC_INTERVAL``
    Seconds as above, or ``never``.

An empty variable counts as unset.  Without a ``shotgun`` client the session makes one from
the environment, see :func:`client_from_environment`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import logging
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from .cache import Cache

__all__ = [
    "CLIENT_VARIABLES",
    "MODES",
    "Settings",
    "open_layers",
    "record_ttl",
    "DEFAULTS",
    "FROM_ENVIRONMENT",
    "SETTING_VARIABLES",
    "ClientSettings",
    "LayerSpec",
    "Seconds",
    "SessionConfigError",
    "cache_from_spec",
    "cache_maker_of",
    "client_from_environment",
    "client_zone",
    "default_cache_dir",
    "identity_of",
    "options_of",
    "parse_cache_spec",
    "parse_duration",
    "seconds",
    "setting",
    "shotgun_from_environment",
    "site_of",
    "stale_limit",
]

log = logging.getLogger("sgcache_layers.config")

Seconds = Union[int, float, _dt.timedelta]


class SessionConfigError(ValueError):
    """The session could not be configured (missing environment, bad argument)."""


def seconds(value: Any, name: str, allow_none: bool = False) -> Optional[float]:
    """Seconds from a number or a ``timedelta``, or a :class:`SessionConfigError`."""
    if value is None and allow_none:
        return None
    total = getattr(value, "total_seconds", None)
    if callable(total):
        value = total()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise SessionConfigError(f"{name} must be seconds >= 0 (or a timedelta), not {value!r}")
    return float(value)


def stale_limit(value: Any) -> Union[bool, float]:
    """``stale_if_error``: a bool, or the most seconds a stale answer may be old."""
    if isinstance(value, bool):
        return value
    limit = seconds(value, "stale_if_error")
    assert limit is not None
    return limit


def site_of(shotgun: Any) -> str:
    """The site URL, lower-cased, without credentials or a trailing slash."""
    config = getattr(shotgun, "config", None)
    scheme = getattr(config, "scheme", None)
    server = getattr(config, "server", None)
    url = f"{scheme}://{server}" if scheme and server else str(getattr(shotgun, "base_url", ""))
    url = url.lower().rstrip("/")
    scheme_part, sep, rest = url.partition("://")
    if sep:
        url = scheme_part + sep + rest.rpartition("@")[2]
    return url


def identity_of(shotgun: Any) -> Optional[tuple[tuple[str, str], ...]]:
    """The permission identity of a client: script or user, plus sudo (never a secret)."""
    config = getattr(shotgun, "config", None)
    script = getattr(config, "script_name", None)
    login = getattr(config, "user_login", None)
    sudo = getattr(config, "sudo_as_login", None)
    token = getattr(config, "session_token", None)
    parts: list[tuple[str, str]]
    if script:
        parts = [("script", str(script))]
    elif login:
        parts = [("user", str(login))]
    elif isinstance(token, str) and token:
        # A session token says nothing of whose it is, so the namespace is the token's
        # own: a one-way digest that can neither be turned back into the token nor used
        # in its place (pass identity="user=<login>" to share one user's sessions).
        parts = [("session", session_digest(token))]
    elif "mockgun" in type(shotgun).__module__:
        parts = [("mockgun", "local")]  # Mockgun keeps no credentials; its data is local
    else:
        return None
    if sudo:
        parts.append(("sudo", str(sudo)))
    return tuple(parts)


def session_digest(token: str) -> str:
    """A one-way, non-reusable name for a session token (never the token itself)."""
    material = b"sgcache-layers session namespace\x00" + token.encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()[:32]


def options_of(shotgun: Any) -> tuple[tuple[str, str], ...]:
    """Client options that change what answers look like."""
    config = getattr(shotgun, "config", None)
    utc = getattr(config, "convert_datetimes_to_utc", True)
    localized = getattr(config, "localized", False)
    return (("tz", "local" if utc else "utc"), ("l10n", "1" if localized else "0"))


def client_zone(shotgun: Any) -> Optional[_dt.tzinfo]:
    """The zone the client gives aware datetimes in (``None``: leave them as stored)."""
    config = getattr(shotgun, "config", None)
    if config is None or not getattr(config, "convert_datetimes_to_utc", False):
        return None
    try:
        from shotgun_api3.shotgun import SG_TIMEZONE
    except ImportError:  # pragma: no cover - a core dependency
        return None
    zone: Optional[_dt.tzinfo] = getattr(SG_TIMEZONE, "local", None)
    return zone


# ----------------------------------------------------------------------- the environment


class _FromEnvironment:
    """The default of the Session arguments the environment may set (see :func:`setting`)."""

    def __repr__(self) -> str:
        return "FROM_ENVIRONMENT"


#: Default of the ``Session`` arguments that an environment variable may set: "not given".
FROM_ENVIRONMENT: Any = _FromEnvironment()

#: The built-in default of each setting, used when neither an argument nor the environment
#: gives one.
DEFAULTS: dict[str, Any] = {
    "cache": None,
    "mode": "cached",
    "max_age": 600.0,
    "schema_max_age": 3600.0,
    "stale_if_error": True,
    "sync_interval": None,
}

#: The environment variable of each setting.
SETTING_VARIABLES: dict[str, str] = {name: "SGCACHE_LAYERS_" + name.upper() for name in DEFAULTS}

#: The session's modes.
MODES = _MODES = ("direct", "cached", "offline")
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")
_NEVER = ("never", "none", "off")
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "10m", "2h" or "1d" (else a SessionConfigError)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise SessionConfigError(
            f"expected seconds, or a number with a unit (90s, 10m, 2h, 1d), not {text!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def _env_mode(text: str) -> str:
    mode = text.lower()
    if mode not in _MODES:
        raise SessionConfigError(f"expected one of {', '.join(_MODES)}, not {text!r}")
    return mode


def _env_stale(text: str) -> Union[bool, float]:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return parse_duration(text)


def _env_interval(text: str) -> Optional[float]:
    return None if text.lower() in _NEVER else parse_duration(text)


class _EnvironmentSpec(str):
    """A cache spec read from ``SGCACHE_LAYERS_CACHE``, so errors can name the variable."""

    variable = SETTING_VARIABLES["cache"]


def _env_cache(text: str) -> str:
    parse_cache_spec(text)  # a bad spec is reported now, naming the variable
    return _EnvironmentSpec(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "cache": _env_cache,
    "mode": _env_mode,
    "max_age": parse_duration,
    "schema_max_age": parse_duration,
    "stale_if_error": _env_stale,
    "sync_interval": _env_interval,
}


def setting(name: str, given: Any) -> Any:
    """The value of the setting *name*: *given* if it was, else the environment, else the default.

    *given* is :data:`FROM_ENVIRONMENT` when the caller left the argument out.  A variable
    that is set but cannot be read raises a :class:`SessionConfigError` naming it.
    """
    if given is not FROM_ENVIRONMENT:
        return given
    variable = SETTING_VARIABLES[name]
    text = os.environ.get(variable, "").strip()
    if not text:
        return DEFAULTS[name]
    try:
        return _PARSERS[name](text)
    except SessionConfigError as error:
        raise SessionConfigError(f"{variable}: {error}") from None


# ------------------------------------------------------------------------------ the client

#: The variables a client is made from, family by family in the order they are tried: the
#: first family whose site variable is set is used.  Within a family the sign-ins are tried
#: in order: this package's own script key; Toolkit's user login first, then its script key
#: (as tk-core's and tk-toolchain's helpers do).
CLIENT_VARIABLES: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("SG_URL", (("script", "SG_SCRIPT", "SG_API_KEY"),)),
    (
        "SHOTGUN_HOST",
        (
            ("login", "SHOTGUN_USER_LOGIN", "SHOTGUN_USER_PASSWORD"),
            ("script", "SHOTGUN_SCRIPT_NAME", "SHOTGUN_SCRIPT_KEY"),
        ),
    ),
)


@dataclass(frozen=True)
class ClientSettings:
    """How to make a client: the site, the sign-in kind and the variables it came from."""

    url: str
    kind: str  # "script" or "login"
    name: str
    secret: str = field(repr=False)
    variables: tuple[str, ...]


def _either(pairs: Sequence[tuple[str, str, str]]) -> str:
    return ", or ".join(f"{name} and {secret}" for _kind, name, secret in pairs)


def client_from_environment(environ: Optional[Mapping[str, str]] = None) -> ClientSettings:
    """Which site and sign-in the environment gives (``SessionConfigError`` if none).

    See :data:`CLIENT_VARIABLES` for the names and their precedence.  Errors name the
    variables that are missing, never a value.
    """
    env = os.environ if environ is None else environ

    def value(name: str) -> str:
        return env.get(name, "").strip()

    for url_variable, pairs in CLIENT_VARIABLES:
        url = value(url_variable)
        if not url:
            continue
        for kind, name_variable, secret_variable in pairs:
            if value(name_variable) and value(secret_variable):
                return ClientSettings(
                    url,
                    kind,
                    value(name_variable),
                    value(secret_variable),
                    (url_variable, name_variable, secret_variable),
                )
        # The site is named but no sign-in is complete: say what is missing from the one
        # that is nearest to complete (the first one, when none is started).
        started = [p for p in pairs if value(p[1]) or value(p[2])] or list(pairs)
        nearest = started[0]
        missing = [name for name in nearest[1:] if not value(name)]
        others = [p for p in pairs if p is not nearest]
        alternative = f" (or {_either(others)})" if others else ""
        raise SessionConfigError(
            f"no shotgun client given, and {url_variable} names a site without a complete "
            f"sign-in: set {' and '.join(missing)}{alternative}"
        )
    ours, toolkit = CLIENT_VARIABLES
    raise SessionConfigError(
        "no shotgun client given and the environment does not say how to make one: "
        f"set {ours[0]} with {_either(ours[1])}, or Toolkit's {toolkit[0]} with "
        f"{_either(toolkit[1])}"
    )


def shotgun_from_environment() -> Any:
    """A ``shotgun_api3.Shotgun`` made from the environment (``SessionConfigError`` if not).

    It does not connect until its first call.
    """
    settings = client_from_environment()
    from shotgun_api3.shotgun import Shotgun

    if settings.kind == "login":
        return Shotgun(settings.url, login=settings.name, password=settings.secret, connect=False)
    return Shotgun(settings.url, settings.name, settings.secret, connect=False)


# ------------------------------------------------------------------------------ cache specs

#: Schemes of the layers a spec may name; a ``+`` followed by one of them starts a new layer.
_FILE_SCHEME = "file"
_REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_LAYER_START = re.compile(
    r"\+(?=(?:file:|(?:rediss?(?:\+sentinel|\+cluster)?|unix)://))", re.IGNORECASE
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
#: Query options of a Redis layer that are for ``RedisCache``, not for redis-py.
_REDIS_OWN = ("namespace", "ttl")
#: Query options redis-py takes besides its parsed ones (checked so that a typo fails now,
#: not as a ``TypeError`` on the first read).
_REDIS_AUTH = ("password", "username", "sentinel_username", "sentinel_password", "client_name")
#: Query options of a file layer.
_FILE_OPTIONS = ("size_limit", "timeout")
_KEYWORDS = ("memory", "user")


@dataclass(frozen=True)
class LayerSpec:
    """One persistent layer of a cache spec: a directory or a Redis URL, with options.

    *label* names it in errors and logs and never holds a credential.
    """

    kind: str  # "file" or "redis"
    target: str
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def open(self) -> Cache:
        """Make the backend (``CacheBackendError``/``OSError`` if it cannot be opened)."""
        if self.kind == "file":
            from .file import FileCache

            return FileCache(self.target, **self.options)
        from .redis import RedisCache

        return RedisCache(self.target, **self.options)


def default_cache_dir() -> str:
    """The private per-user cache directory (``cache=True``), from ``platformdirs``.

    ``~/.cache/sgcache_layers`` on Linux (or under ``$XDG_CACHE_HOME``),
    ``~/Library/Caches/sgcache_layers`` on macOS, ``%LOCALAPPDATA%\\sgcache_layers\\Cache``
    on Windows.  :class:`~sgcache_layers.file.FileCache` creates it with mode ``0700``.
    """
    import platformdirs

    return str(platformdirs.user_cache_dir("sgcache_layers", appauthor=False))


def _label(text: str) -> str:
    """*text* as errors may show it: no user, password or query (which may hold a password)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text.partition("?")[0]
    if scheme.lower() in _REDIS_SCHEMES:
        from .redis import strip_credentials

        return strip_credentials(text)
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def _query(query: str) -> list[tuple[str, str, str]]:
    """``(name, value, as written)`` of each ``&``-separated option of *query*."""
    out = []
    for item in query.split("&") if query else []:
        if not item:
            continue
        name, _, value = item.partition("=")
        out.append((urllib.parse.unquote_plus(name), urllib.parse.unquote_plus(value), item))
    return out


def _file_layer(path: str, options: Optional[Mapping[str, Any]] = None) -> LayerSpec:
    full = os.path.abspath(os.path.expanduser(path))
    return LayerSpec("file", full, full, dict(options or {}))


def _file_url(text: str) -> LayerSpec:
    rest, _, query = text.partition("?")
    query = query.partition("#")[0]
    parts = urllib.parse.urlsplit(rest)
    if parts.netloc not in ("", "localhost"):
        raise SessionConfigError(
            f"cache layer {_label(text)}: a file URL names a local path (file:///PATH); "
            "for a path under your home directory write it plainly (~/.cache/...)"
        )
    path = urllib.parse.unquote(parts.path)
    if re.match(r"^/[A-Za-z]:", path):  # file:///C:/cache on Windows
        path = path[1:]
    if not path:
        raise SessionConfigError(f"cache layer {_label(text)}: the file URL has no path")
    options: dict[str, Any] = {}
    for name, value, _written in _query(query):
        if name == "size_limit":
            if not value.isdigit():
                raise SessionConfigError(
                    f"cache layer {_label(text)}: size_limit must be a number of bytes, "
                    f"not {value!r}"
                )
            options["size_limit"] = int(value)
        elif name == "timeout":
            options["timeout"] = _option_seconds(text, name, value)
        else:
            raise SessionConfigError(
                f"cache layer {_label(text)}: unknown option {name!r} "
                f"(a file layer takes {', '.join(_FILE_OPTIONS)})"
            )
    return _file_layer(path, options)


def _option_seconds(text: str, name: str, value: str) -> float:
    try:
        return parse_duration(value)
    except SessionConfigError as error:
        raise SessionConfigError(f"cache layer {_label(text)}: {name}: {error}") from None


def _redis_options() -> Optional[frozenset[str]]:
    """The query options redis-py's URL parser knows (``None`` without redis-py)."""
    try:
        from redis.connection import URL_QUERY_ARGUMENT_PARSERS
    except ImportError:
        return None
    return frozenset(URL_QUERY_ARGUMENT_PARSERS)


def _redis_url(text: str) -> LayerSpec:
    base, _, rest = text.partition("?")
    query = rest.partition("#")[0]
    known = _redis_options()
    kept: list[str] = []
    options: dict[str, Any] = {}
    for name, value, written in _query(query):
        if name == "namespace":
            if not value:
                raise SessionConfigError(f"cache layer {_label(text)}: an empty namespace")
            options["namespace"] = value
        elif name == "ttl":
            ttl = _option_seconds(text, name, value)
            if ttl <= 0:
                raise SessionConfigError(f"cache layer {_label(text)}: ttl must be > 0")
            options["ttl"] = ttl
        elif known is None or name in known or name in _REDIS_AUTH or name.startswith("ssl_"):
            kept.append(written)
        else:
            raise SessionConfigError(
                f"cache layer {_label(text)}: unknown option {name!r} "
                f"(besides redis-py's own, a Redis layer takes {', '.join(_REDIS_OWN)})"
            )
    url = base + ("?" + "&".join(kept) if kept else "")
    return LayerSpec("redis", url, _label(url), options)


def _parse_layer(text: str) -> LayerSpec:
    if text.lower() == "user":
        return _file_layer(default_cache_dir())
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) == 1:  # a path (C:\\... is a drive, not a scheme)
        return _file_layer(text)
    scheme = match.group(1).lower()
    if scheme == _FILE_SCHEME:
        return _file_url(text)
    if scheme in _REDIS_SCHEMES:
        return _redis_url(text)
    raise SessionConfigError(
        f"cache layer {_label(text)}: unknown scheme {scheme!r}; a layer is a path, "
        f"file:///PATH or a {', '.join(s + '://' for s in _REDIS_SCHEMES)} URL"
    )


def _parse_text(text: str) -> list[LayerSpec]:
    text = text.strip()
    if not text:
        raise SessionConfigError(
            "an empty cache spec: give a path, a URL, 'user' (the per-user directory) or "
            "'memory' (memory only)"
        )
    if text.lower() == "memory":
        return []
    layers = []
    for part in _LAYER_START.split(text):
        if part.strip().lower() == "memory":
            raise SessionConfigError(
                "'memory' stands alone: the session always puts memory first, before the "
                "layers a spec names"
            )
        if not part.strip():
            raise SessionConfigError("an empty layer in a '+' stack")
        layers.append(_parse_layer(part.strip()))
    return layers


def parse_cache_spec(spec: Any) -> list[LayerSpec]:
    """The persistent layers a ``cache=`` spec names, shallowest first (none: memory only).

    * ``True`` or ``"user"``: the private per-user directory (:func:`default_cache_dir`);
    * a path (``"~/.cache/sg"``, ``"/var/tmp/sg"``) or ``"file:///PATH"``, with the options
      ``?size_limit=BYTES`` and ``?timeout=SECONDS``: a
      :class:`~sgcache_layers.file.FileCache`;
    * ``"redis://HOST:PORT/DB"``, ``"rediss://..."``, ``"unix:///PATH"``,
      ``"redis+sentinel://..."`` or ``"redis+cluster://..."``: a
      :class:`~sgcache_layers.redis.RedisCache`; ``?namespace=NAME`` and ``?ttl=SECONDS``
      are its own options, any other query option goes to redis-py;
    * ``"memory"``: no persistent layer;
    * layers joined by ``+`` stack, shallowest first (``"user+redis://farm:6379/0"``): a
      ``+`` starts a new layer when a URL follows it, so a path with a ``+`` in it stays
      one path (write a later layer as ``file:///PATH``);
    * a list or tuple of the above stacks its items.

    Raises :class:`SessionConfigError` naming the layer that is wrong (never a password).
    """
    if spec is True:
        layers = [_file_layer(default_cache_dir())]
    elif isinstance(spec, str):
        layers = _parse_text(spec)
    elif isinstance(spec, (list, tuple)):
        layers = []
        for item in spec:
            if not isinstance(item, str):
                raise SessionConfigError(
                    f"the items of a cache list are paths or URLs, not {type(item).__name__}"
                )
            if item.strip().lower() == "memory":
                raise SessionConfigError("'memory' stands alone, not in a list of layers")
            layers.extend(_parse_text(item))
    else:
        raise SessionConfigError(
            f"a cache spec is True, a path or URL, or a list of them, not {type(spec).__name__}"
        )
    seen: dict[tuple[str, str, Any], LayerSpec] = {}
    for layer in layers:
        identity = (layer.kind, layer.target, layer.options.get("namespace"))
        if identity in seen:
            raise SessionConfigError(f"the cache spec names {layer.label} twice")
        seen[identity] = layer
    return layers


def _close_all(caches: Sequence[Cache]) -> None:
    for cache in caches:
        try:
            cache.close()
        except Exception:  # closing must not hide the error being reported
            log.debug("closing %r failed", cache, exc_info=True)


def cache_from_spec(spec: Any, session: Any) -> Optional[Cache]:
    """The cache a ``Session(cache=...)`` string, list or ``True`` stands for.

    See :func:`parse_cache_spec` for the forms.  Each layer is a
    :class:`~sgcache_layers.cache.SerialisedCache` with the session's own codec; several
    layers stack in a :class:`~sgcache_layers.cache.LayeredCache`.  A layer that cannot be
    opened (a directory that cannot be made, say) is left out with a warning, so the tool
    runs on the others; ``None`` when no layer is left.
    """
    from .cache import CacheBackendError, LayeredCache, SerialisedCache

    origin = getattr(spec, "variable", None) or "cache"
    try:
        layers = parse_cache_spec(spec)
    except SessionConfigError as error:
        raise SessionConfigError(f"{origin}: {error}") from None
    opened: list[Cache] = []
    for layer in layers:
        try:
            backend = layer.open()
        except (CacheBackendError, OSError) as error:
            log.warning(
                "cache layer %s could not be opened; carrying on without it: %s", layer.label, error
            )
            continue
        except (ImportError, TypeError, ValueError) as error:  # no redis-py, a malformed URL
            _close_all(opened)
            message = str(error)
            if layer.label not in message:
                message = f"cache layer {layer.label}: {message}"
            raise SessionConfigError(f"{origin}: {message}") from None
        opened.append(SerialisedCache(backend, encode=session.encode, decode=session.decode))
    if not opened:
        return None
    return opened[0] if len(opened) == 1 else LayeredCache(opened)


def cache_maker_of(cache: Any) -> Any:
    """*cache* as ``Session`` takes it: a spec becomes a ``cache_maker(session)``.

    ``True``, a string, a list or a tuple stand for :func:`cache_from_spec`; anything else
    (``None``, a cache, a callable) is returned as it is.
    """
    if cache is True or isinstance(cache, (str, list, tuple)):
        return functools.partial(cache_from_spec, cache)
    return cache


def open_layers(cache: Any, session: Any) -> list[Cache]:
    """The layers a session puts under its memory layer, from its ``cache`` argument.

    A spec (path, URL, list, ``True``) or a ``cache_maker(session)`` is called now; a
    persistent layer that cannot be opened is left out with a warning, so a broken disk or
    an unreachable Redis never stops the tool.
    """
    from .cache import Cache, CacheBackendError

    extra: Any = cache_maker_of(cache)
    if callable(extra) and not isinstance(extra, Cache):
        try:
            extra = extra(session)
        except (CacheBackendError, OSError) as error:
            logging.getLogger("sgcache_layers.session").warning(
                "the session's cache could not be opened; using memory only: %s", error
            )
            extra = None
    if extra is None:
        return []
    if not isinstance(extra, Cache):
        raise SessionConfigError(
            f"cache must be a Cache or a callable returning one, not {type(extra).__name__}"
        )
    return [extra]


#: How long records are kept for ``stale_if_error=True`` (stale answers of any age): a
#: week, so that a shared store with a memory limit can drop what is older.
KEEP_STALE_SECONDS = 7 * 24 * 3600.0


def record_ttl(max_age: float, schema_max_age: float, stale_if_error: Union[bool, float]) -> float:
    """Seconds a stored record may still be of use: the longest age any read of the
    session would accept it at (``max_age``, ``schema_max_age``, or a stale fallback's)."""
    longest = max(max_age, schema_max_age)
    if stale_if_error is True:
        longest = max(longest, KEEP_STALE_SECONDS)
    elif stale_if_error:
        longest = max(longest, float(stale_if_error))
    return max(longest, 1.0)


@dataclass(frozen=True)
class Settings:
    """A session's settings, from its arguments, else the environment, else the defaults."""

    mode: str
    max_age: float
    schema_max_age: float
    stale_if_error: Union[bool, float]
    sync_interval: Optional[float]
    sync_limit: int
    event_backlog: float

    @classmethod
    def resolve(
        cls,
        mode: Any,
        max_age: Any,
        schema_max_age: Any,
        stale_if_error: Any,
        sync_interval: Any,
        sync_limit: Any,
        event_backlog: Any,
    ) -> Settings:
        """Check every setting; :class:`SessionConfigError` names the first bad one."""
        mode = setting("mode", mode)
        if mode not in MODES:
            raise SessionConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if isinstance(sync_limit, bool) or not isinstance(sync_limit, int) or sync_limit < 1:
            raise SessionConfigError(f"sync_limit must be an int >= 1, not {sync_limit!r}")
        return cls(
            mode=mode,
            max_age=seconds(setting("max_age", max_age), "max_age") or 0.0,
            schema_max_age=seconds(setting("schema_max_age", schema_max_age), "schema_max_age")
            or 0.0,
            stale_if_error=stale_limit(setting("stale_if_error", stale_if_error)),
            sync_interval=seconds(
                setting("sync_interval", sync_interval), "sync_interval", allow_none=True
            ),
            sync_limit=sync_limit,
            event_backlog=seconds(event_backlog, "event_backlog") or 0.0,
        )
