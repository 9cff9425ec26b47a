"""How a session is configured: ages and limits, the client's site, identity and options.

Everything here reads a ``shotgun_api3.Shotgun`` (or the environment) and the session's
arguments; nothing here stores or fetches.  The identity and options end up in every key
(:class:`~sgcache_layers.records.Namespace`), so two clients that could see different
answers never share them, and no secret ever does.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Optional, Union

__all__ = [
    "Seconds",
    "SessionConfigError",
    "cache_from_spec",
    "client_zone",
    "identity_of",
    "options_of",
    "seconds",
    "shotgun_from_environment",
    "site_of",
    "stale_limit",
]

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
    parts: list[tuple[str, str]]
    if script:
        parts = [("script", str(script))]
    elif login:
        parts = [("user", str(login))]
    elif "mockgun" in type(shotgun).__module__:
        parts = [("mockgun", "local")]  # Mockgun keeps no credentials; its data is local
    else:
        return None
    if sudo:
        parts.append(("sudo", str(sudo)))
    return tuple(parts)


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


def shotgun_from_environment() -> Any:
    """A ``shotgun_api3.Shotgun`` made from the environment (``SessionConfigError`` if not)."""
    names = ("SG_URL", "SG_SCRIPT", "SG_API_KEY")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise SessionConfigError(
            "no shotgun client given and the environment does not say how to make one: "
            f"set {', '.join(missing)}"
        )
    from shotgun_api3.shotgun import Shotgun

    return Shotgun(
        os.environ["SG_URL"], os.environ["SG_SCRIPT"], os.environ["SG_API_KEY"], connect=False
    )


def cache_from_spec(spec: Any, session: Any) -> Any:
    """The cache a ``Session(cache=...)`` string, list or ``True`` stands for.

    ``True`` is a private per-user directory; a string is a URL (``file:///path``,
    ``redis://host:6379/0``) or a plain path, and ``+`` stacks layers shallowest first
    (``"file:///tmp/c+redis://farm"``); a list stacks its items.  Each layer is serialised
    with the session's own codec.
    """
    raise SessionConfigError(
        f"cache={spec!r}: cache URLs and paths are not supported yet; pass a Cache or a "
        "cache_maker(session) callable"
    )
