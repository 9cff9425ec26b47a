"""The ``sgcache-layers`` command: ``demo``, ``serve``, ``stats``, ``clear``, ``warm``, ``schema``,
``watch``.

Each subcommand is a subparser whose handler is a ``_cmd_<name>(args) -> int`` function in
this file.  Bad arguments give a one-line error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import stat
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NoReturn, Optional, Sequence

if TYPE_CHECKING:
    from .file import FileCache

PROG = "sgcache-layers"

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A bad command line; reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# ----------------------------------------------------------------------------------- serve


def _cmd_serve(args: argparse.Namespace) -> int:
    """Run the loopback ShotGrid server with the demo production until Ctrl-C."""
    from .testing.server import ShotgridServer

    server = ShotgridServer(
        scale=args.scale,
        seed=args.seed,
        port=args.port,
        script_name=args.script_name,
        api_key=args.api_key,
        latency=args.latency or None,
    )
    try:
        server.start()
    except OSError as exc:
        print(
            f"{PROG}: error: cannot listen on port {args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    counts = ", ".join(f"{len(v)} {k}" for k, v in server.production.items())
    print(f"ShotGrid test server listening (demo production: {counts or 'empty'})")
    print(f"URL: {server.url}")
    print(f"Script name: {server.script_name}")
    print(f"API key: {server.api_key}")
    if args.latency:
        print(f"Latency: {args.latency:.3f} s per request")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    print(f"Stopped after {server.request_count} requests.", flush=True)
    return 0


def _add_serve(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a loopback ShotGrid server with a demo production",
        description="Serve ShotGrid's JSON API on 127.0.0.1 from an in-memory demo site.",
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port (default: a free one)")
    parser.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.0,
        help="seconds added to every answer (default: 0)",
    )
    parser.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        help="production size; 1.0 is ~500 shots and ~5,000 tasks (default: 1.0)",
    )
    parser.add_argument("--seed", type=_int, default=0, help="production seed (default: 0)")
    parser.add_argument(
        "--script-name",
        default="sgcache_tests",
        help="script name clients use (default: sgcache_tests)",
    )
    parser.add_argument("--api-key", default=None, help="API key (default: a random one)")
    parser.set_defaults(handler=_cmd_serve)


# ------------------------------------------------------------------------------------ demo


def _cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo: plain shotgun_api3 vs a Session over a FileCache, cold and warm."""
    from .demo import DemoError, DemoSetupError, run_demo

    try:
        return run_demo(
            latency=args.latency,
            scale=args.scale,
            seed=args.seed,
            cache_dir=args.cache_dir,
            warm_runs=args.warm_runs,
            progress=args.progress,
            json_report=args.json,
        )
    except DemoSetupError as exc:
        return _fail(str(exc))
    except DemoError as exc:
        return _fail(str(exc), status=1)


def _add_demo(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    from .demo import DEFAULT_LATENCY, DEFAULT_SCALE, DEFAULT_SEED, WARM_RUNS

    parser = subparsers.add_parser(
        "demo",
        help="time a pipeline tool's reads: plain shotgun_api3 vs cached, cold and warm",
        description="Serve a demo ShotGrid site on 127.0.0.1 with realistic latency and run "
        "the same reads with plain shotgun_api3, with a Session over an empty FileCache, and "
        "again in new processes that find the cache warm.  It passes (exit status 0) when the "
        "warm runs make no request and every run gets the same answers, and fails (1) "
        "otherwise; times and speed-ups are reported as measured, not judged.",
    )
    parser.add_argument(
        "--latency",
        type=_non_negative_float,
        default=DEFAULT_LATENCY,
        metavar="SECONDS",
        help=f"median seconds added to every answer (default: {DEFAULT_LATENCY:g})",
    )
    parser.add_argument(
        "--scale",
        type=_positive_float,
        default=DEFAULT_SCALE,
        help=f"production size; 1.0 is ~500 shots and ~5,000 tasks (default: {DEFAULT_SCALE:g})",
    )
    parser.add_argument(
        "--seed", type=_int, default=DEFAULT_SEED, help=f"production seed (default: {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="cache directory, kept afterwards (default: a temporary one, removed at the end)",
    )
    parser.add_argument(
        "--warm-runs",
        type=_positive_int,
        default=WARM_RUNS,
        metavar="N",
        help=f"new processes that make the warm run, one after the other (default: {WARM_RUNS})",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw progress bars on stderr (default: only when stderr is a terminal)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as one JSON object, for scripts"
    )
    parser.set_defaults(handler=_cmd_demo)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


# ------------------------------------------------------------------------ cache directories

#: ``sgcl<version>|<site>|<identity>|<rest>``: every key a Session writes.
_SESSION_KEY = re.compile(r"^(sgcl\d+)\|([^|]*)\|([^|]*)\|(.*)$", re.DOTALL)
#: Record kinds of data keys (``<epoch>|<kind>|<type or method>|<id or digest>``).
_DATA_KINDS = {
    "e": "entity",
    "x": "retired",
    "q": "query",
    "v": "value",
    "s": "schema",
    "w": "warm",
    "c": "snapshot",
}
_BOOKKEEPING = {"epoch", "sync", "clock", "watch", "stats"}
_KIND_ORDER = (
    "query",
    "entity",
    "retired",
    "value",
    "schema",
    "warm",
    "snapshot",
    "generation",
    "bookkeeping",
)


class _CacheDirError(Exception):
    """A missing, foreign or corrupt cache directory; one line and exit status 2."""


def _fail(message: str, status: int = 2) -> int:
    """Print *message* as one error line on stderr and return *status*."""
    line = " ".join(str(message).split())
    print(f"{PROG}: error: {line}", file=sys.stderr)
    return status


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"bad regular expression {text!r}: {exc}") from None


def _open_cache_dir(path: str) -> FileCache:
    """Open an existing cache directory; never create one."""
    from .cache import CacheBackendError
    from .file import FileCache

    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise _CacheDirError(f"cache directory {path} {what}")
    if not os.path.isfile(os.path.join(path, "cache.db")):
        raise _CacheDirError(f"{path} is not a cache directory (it has no cache.db)")
    try:
        return FileCache(path)
    except (CacheBackendError, OSError) as exc:
        raise _CacheDirError(str(exc)) from None


def _disk_bytes(path: str) -> int:
    """Bytes of every regular file under *path* (the database, its journals, value files)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"  # pragma: no cover - the loop always returns


def _stored_value(cache: FileCache, key: str) -> Any:
    """A value a Session stored as text (``None`` if absent or not readable)."""
    from .cache import CacheBackendError
    from .codec import CodecError, loads

    try:
        raw = cache.get(key)
    except (KeyError, CacheBackendError):
        return None
    try:
        value = loads(raw)
    except CodecError:
        return None
    if isinstance(value, list) and len(value) == 2 and value[0] == "~sgclv":
        return value[1]
    return value


def _rows_of(cache: FileCache, key: str) -> int:
    """How many rows the ``find`` answer stored under *key* holds (0 if unreadable)."""
    from .cache import CacheBackendError
    from .records import decode, valid

    try:
        record = valid(decode(cache.get(key)), ("q",))
    except (KeyError, CacheBackendError, ValueError):
        return 0
    return len(record["r"]) if record is not None else 0


def cache_stats(cache: FileCache) -> Dict[str, Any]:
    """Entries by namespace and by record kind and entity type, as a JSON-able dict.

    Each namespace also counts the rows its current ``find`` answers hold, per type.
    """
    from urllib.parse import unquote

    from .records import PREFIX

    keys = cache.keys()
    namespaces: Dict[str, Dict[str, Any]] = {}
    sites: Dict[str, Dict[str, Any]] = {}
    other = 0
    for key in keys:
        match = _SESSION_KEY.match(key)
        if match is None:
            other += 1
            continue
        version, site, identity, rest = match.groups()
        if identity == "~site":
            # What every identity of the site shares: epoch, generations, event log.
            shared = sites.setdefault(
                f"{version}|{site}",
                {"format": version, "site": unquote(site), "entries": 0, "generations": 0},
            )
            shared["entries"] += 1
            if "|g|" in rest:
                shared["generations"] += 1
            continue
        base = f"{version}|{site}|{identity}"
        space = namespaces.get(base)
        if space is None:
            epoch = _stored_value(cache, f"{version}|{site}|~site|epoch")
            space = namespaces[base] = {
                "format": version,
                "site": unquote(site),
                "identity": ";".join(
                    part.split("=", 1)[0] + "=" + unquote(part.split("=", 1)[-1])
                    for part in identity.split(";")
                ),
                "entries": 0,
                "records": {},
                "rows": {},
                "old_epoch_entries": 0,
                "warm": [],
                "_epoch": epoch if isinstance(epoch, str) else None,
            }
        space["entries"] += 1
        parts = rest.split("|")
        if rest in _BOOKKEEPING:
            kind, name = "bookkeeping", rest
        elif parts[0] == "stats":  # one process's counters (see ``stats --redis``)
            kind, name = "counters", "processes"
        elif len(parts) == 3 and parts[1] == "g":
            kind, name = "generation", parts[2]
            if space["_epoch"] is not None and parts[0] != space["_epoch"]:
                space["old_epoch_entries"] += 1
        elif len(parts) >= 4 and parts[1] in _DATA_KINDS:
            kind, name = _DATA_KINDS[parts[1]], parts[2]
            if space["_epoch"] is not None and parts[0] != space["_epoch"]:
                space["old_epoch_entries"] += 1
            elif kind == "query" and version == PREFIX:
                space["rows"][name] = space["rows"].get(name, 0) + _rows_of(cache, key)
            elif kind == "warm" and version == PREFIX:
                warm = _warm_of(cache, key)
                if warm is not None:
                    space["warm"].append(warm)
        else:
            kind, name = "other", rest
        counts = space["records"].setdefault(kind, {})
        counts[name] = counts.get(name, 0) + 1
    spaces = []
    for base in sorted(namespaces):
        space = namespaces[base]
        space.pop("_epoch")
        records = space["records"]
        ordered = sorted(records, key=lambda k: (_KIND_ORDER + (k,)).index(k))
        space["records"] = {k: dict(sorted(records[k].items())) for k in ordered}
        space["rows"] = dict(sorted(space["rows"].items()))
        space["warm"].sort(key=lambda w: (w["scope"] != "project", str(w["project"])))
        spaces.append(space)
    return {
        "cache_dir": cache.path,
        "entries": len(keys),
        "bytes": _disk_bytes(cache.path),
        "namespaces": spaces,
        "sites": [sites[name] for name in sorted(sites)],
        "other_entries": other,
    }


def _print_stats(stats: Dict[str, Any]) -> None:
    print(f"Cache directory: {stats['cache_dir']}")
    print(f"Entries: {stats['entries']}")
    size = stats["bytes"]
    print(f"Size on disk: {_human_bytes(size)} ({size} bytes)")
    for space in stats["namespaces"]:
        print("")
        print(
            f"Namespace {space['site']} | {space['identity']} ({space['format']}): "
            f"{space['entries']} entries"
        )
        for kind, counts in space["records"].items():
            if kind == "generation":
                print(f"  generations: {sum(counts.values())}")
            elif kind == "bookkeeping":
                print(f"  bookkeeping: {', '.join(sorted(counts))}")
            elif kind == "counters":
                print(f"  counters: {sum(counts.values())} processes")
            else:
                for name, count in counts.items():
                    rows = space["rows"].get(name) if kind == "query" else None
                    extra = f" ({rows} rows)" if rows is not None else ""
                    print(f"  {kind} {name}: {count}{extra}")
        if space["old_epoch_entries"]:
            print(f"  (of which {space['old_epoch_entries']} under an old epoch, unreachable)")
        for warm in space["warm"]:
            _print_warm(warm)
    for shared in stats["sites"]:
        print("")
        print(
            f"Site {shared['site']} ({shared['format']}), shared by every identity: "
            f"{shared['entries']} entries, generations: {shared['generations']}"
        )
    if stats["other_entries"]:
        print("")
        print(f"Other entries (not written by a Session): {stats['other_entries']}")


def _when(stamp: float) -> str:
    """A record time as UTC text (``2024-05-01 12:00:00 UTC``)."""
    import datetime as dt

    moment = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _warm_of(cache: FileCache, key: str) -> Optional[Dict[str, Any]]:
    """What a snapshot head says is warm: its scope, types, rows, times and event position."""
    from .cache import CacheBackendError
    from .records import decode, valid

    try:
        head = valid(decode(cache.get(key)), ("w",))
    except (KeyError, CacheBackendError, ValueError):
        return None
    if head is None:
        return None
    types = {}
    for name, info in sorted(head["ty"].items()):
        types[name] = {
            "rows": sum(count for _, retired, count in info["c"] if not retired),
            "retired": sum(count for _, retired, count in info["c"] if retired),
            "fields": len(info["f"]),
            "warmed_at": _when(info["t"]),
        }
    return {
        "scope": "site" if head["P"] is None else "project",
        "project": head["P"],
        "event_id": head["e"],
        "warmed_at": _when(head["t"]),
        "types": types,
    }


def _print_warm(warm: Dict[str, Any]) -> None:
    project = warm["project"]
    what = "site" if project is None else f"project {project.get('name')} (id {project['id']})"
    print(f"  warm {what}: event log at {warm['event_id']}, warmed {warm['warmed_at']}")
    for name, info in warm["types"].items():
        print(
            f"    {name}: {info['rows']} rows, {info['retired']} retired, "
            f"{info['fields']} fields, warmed {info['warmed_at']}"
        )


# ----------------------------------------------------------------------------------- stats


def _cmd_stats(args: argparse.Namespace) -> int:
    """Print what a cache directory holds, by namespace, record kind and entity type."""
    from .cache import CacheBackendError

    if args.redis is not None:
        return _farm_stats(args)
    try:
        cache = _open_cache_dir(args.cache_dir)
        try:
            stats = cache_stats(cache)
        finally:
            cache.close()
    except (_CacheDirError, CacheBackendError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_stats(stats)
    return 0


def _add_stats(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="show what a cache directory holds, or the farm's numbers in a Redis",
        description="Count the entries of a FileCache directory by namespace (site and "
        "identity), record kind and entity type, and its size on disk; say what is warm "
        "(types, rows, when, and the event-log position).  With --redis: the hits, misses, "
        "requests made and saved of every process sharing that Redis, per site and "
        "identity, and the age of the watcher's heartbeat.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cache-dir", metavar="DIR", help="the cache directory")
    where.add_argument(
        "--redis",
        metavar="URL",
        help="the farm's numbers instead: hits, misses, requests made and saved, summed over "
        "every process that shares this Redis (as the sessions' cache spec names it, with "
        "the same ?namespace=), and the age of the watcher's heartbeat",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=_cmd_stats)


def _farm_stats(args: argparse.Namespace) -> int:
    """``stats --redis URL``: the summed counter records and heartbeats (no credentials)."""
    from .cache import CacheBackendError
    from .config import SessionConfigError, parse_cache_spec
    from .stats import farm_stats

    try:
        layers = parse_cache_spec(args.redis)
        if len(layers) != 1 or layers[0].kind != "redis":
            raise SessionConfigError("--redis takes one Redis URL (redis://HOST:PORT/DB)")
        cache = layers[0].open()
    except (SessionConfigError, ImportError, TypeError, ValueError, CacheBackendError) as exc:
        return _fail(str(exc))
    try:
        stats = farm_stats(cache)
    except CacheBackendError as exc:
        return _fail(str(exc), status=1)
    finally:
        cache.close()
    stats = {"redis": layers[0].label, "namespace": getattr(cache, "namespace", None), **stats}
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_farm(stats)
    return 0


def _age(seconds: float) -> str:
    """An age in seconds as people read it (``4.2 s``, ``3 min``, ``2.5 h``)."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print_farm(stats: Dict[str, Any]) -> None:
    print(f"Redis: {stats['redis']} (namespace {stats['namespace']})")
    if not stats["sites"]:
        print("No counters and no watcher heartbeat here yet.")
    for site in stats["sites"]:
        print("")
        print(f"Site {site['site']} ({site['format']})")
        beat = site["watcher"]
        if beat is None:
            print("  watcher: no heartbeat (no watcher has run against this Redis)")
        elif beat["age"] is None:
            print("  watcher: heartbeat without a successful sync yet")
        else:
            state = ", stopped" if beat["stopped"] else ""
            where = f"host {beat.get('host')}, pid {beat.get('pid')}"
            every = beat.get("interval")
            every_text = f", every {every:g} s" if isinstance(every, (int, float)) else ""
            print(f"  watcher: heartbeat {_age(beat['age'])} old ({where}{every_text}{state})")
            if beat.get("error"):
                print(f"    last error: {beat['error']}")
        for space in site["namespaces"]:
            processes, sessions = space["processes"], space["sessions"]
            print(
                f"  {space['identity']}: {processes} process{'es' if processes != 1 else ''} "
                f"({sessions} session{'s' if sessions != 1 else ''}, {space['open']} open)"
            )
            print(
                f"    hits {space['hits']}, misses {space['misses']}, requests made "
                f"{space['requests']}, requests saved {space['saved']}"
            )


# ----------------------------------------------------------------------------------- clear


def _cmd_clear(args: argparse.Namespace) -> int:
    """Remove every entry of a cache directory, or those whose key matches --pattern.

    With --dry-run nothing is removed: the counts say what would be.
    """
    from .cache import CacheBackendError

    pattern: Optional[re.Pattern[str]] = args.pattern
    try:
        cache = _open_cache_dir(args.cache_dir)
        try:
            keys = cache.keys()
            matched = sum(1 for key in keys if pattern is None or pattern.search(key) is not None)
            if args.dry_run:
                removed, left = 0, len(keys)
            else:
                cache.clear(pattern)
                removed, left = matched, len(cache.keys())
        finally:
            cache.close()
    except (_CacheDirError, CacheBackendError) as exc:
        return _fail(str(exc))
    if args.json:
        report = {
            "cache_dir": os.path.abspath(args.cache_dir),
            "pattern": None if pattern is None else pattern.pattern,
            "dry_run": bool(args.dry_run),
            "matched": matched,
            "removed": removed,
            "left": left,
        }
        print(json.dumps(report, indent=2))
        return 0
    which = "" if pattern is None else f" matching {pattern.pattern!r}"
    if args.dry_run:
        print(
            f"Would remove {matched} entries{which} from {args.cache_dir} "
            f"({len(keys) - matched} would be left); nothing was removed (--dry-run)."
        )
    else:
        print(f"Removed {removed} entries{which} from {args.cache_dir} ({left} left).")
    return 0


def _add_clear(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "clear",
        help="remove cached entries from a cache directory",
        description="Remove all entries of a FileCache directory, or only those whose key "
        "matches a regular expression (re.search).",
    )
    parser.add_argument("--cache-dir", metavar="DIR", required=True, help="the cache directory")
    parser.add_argument(
        "--pattern",
        type=_regex,
        default=None,
        metavar="REGEX",
        help="remove only keys where this regular expression matches (re.search)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be removed, remove nothing"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=_cmd_clear)


# ------------------------------------------------------------------------------------ warm


def _warm_cache(spec: Optional[str]) -> Any:
    """The ``cache=`` of a warm: ``--cache``, else ``SGCACHE_LAYERS_CACHE``, else the user's."""
    from .config import SETTING_VARIABLES

    if spec:
        return spec
    return os.environ.get(SETTING_VARIABLES["cache"]) or True


def _cmd_warm(args: argparse.Namespace) -> int:
    """Fetch a project's entities into the cache, so reads of it can be answered offline."""
    from .config import SessionConfigError
    from .session import Session
    from .warming import WarmError

    types = [t for item in args.types or [] for t in item.split(",") if t] or None
    try:
        session = Session(cache=_warm_cache(args.cache), schema=args.schema)
    except SessionConfigError as exc:
        return _fail(str(exc))
    try:
        if not session.cache.caches[1:]:
            return _fail("the cache could not be opened: nothing would be kept")
        try:
            report = session.warm(args.project, types, progress=args.progress)
        except WarmError:
            if not args.project.isdigit():
                raise
            report = session.warm(int(args.project), types, progress=args.progress)
    except WarmError as exc:
        return _fail(str(exc))
    except Exception as exc:  # ShotGrid refused or could not be reached
        return _fail(f"warming failed: {type(exc).__name__}: {exc}", status=1)
    finally:
        session.close()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    project = report["project"]
    full, updated = report["full"], report["updated"]
    print(
        f"Warmed project {project['name']} (id {project['id']}): "
        f"{len(full)} types read whole, {sum(updated.values())} rows read again; "
        f"event log at {report['position']}."
    )
    for name, rows in report["rows"].items():
        print(f"  {name}: {rows} rows, {report['retired'][name]} retired")
    print(
        f"{report['requests']} requests in {report['seconds']:.1f} s; "
        f"{report['records']} records written."
    )
    return 0


def _add_warm(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "warm",
        help="fetch a project's entities so that reads of it work offline",
        description="Fetch a project's entities (by default its sequences, shots, assets, "
        "tasks, versions, published files and notes, and the site's projects, steps and "
        "users) with every field but images, into the cache.  Run it again to fetch only "
        "what the event log says changed.  The site comes from SG_URL, SG_SCRIPT and "
        "SG_API_KEY (or Toolkit's variables).",
    )
    parser.add_argument(
        "--project",
        required=True,
        help="the project's name (or its id, if no project has that name)",
    )
    parser.add_argument(
        "--types",
        nargs="+",
        metavar="TYPE",
        help="entity types to warm instead of the default ones (Project is always warmed)",
    )
    parser.add_argument(
        "--cache",
        metavar="DIR|URL",
        default=None,
        help="where to keep it: a directory, file:// or redis:// URL, or layers joined by + "
        "(default: SGCACHE_LAYERS_CACHE, else your own cache directory)",
    )
    parser.add_argument(
        "--schema",
        metavar="FILE",
        default=None,
        help="a schema JSON to use instead of reading the site's (see 'schema export')",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: only when stderr is a terminal)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_cmd_warm)


# ---------------------------------------------------------------------------------- schema


def _cmd_schema(args: argparse.Namespace) -> int:
    """Write a live site's schema to a JSON file (shotgrid_orm's combined form)."""
    from .config import SessionConfigError, shotgun_from_environment
    from .schema_files import export_schema

    try:
        shotgun = shotgun_from_environment()
    except SessionConfigError as exc:
        return _fail(str(exc))
    try:
        schema = export_schema(shotgun, args.out)
    except OSError as exc:
        return _fail(f"cannot write {args.out}: {exc.strerror or exc}")
    except Exception as exc:  # ShotGrid refused or could not be reached
        return _fail(f"reading the schema failed: {type(exc).__name__}: {exc}", status=1)
    finally:
        close = getattr(shotgun, "close", None)
        if close is not None:
            close()
    fields = sum(len(f) for f in schema.fields.values())
    print(f"Wrote {len(schema.fields)} entity types and {fields} fields to {args.out}.")
    return 0


def _add_schema(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="export a site's schema for working without it",
        description="Schema files: Session(schema=FILE) answers schema reads from one, and "
        "offline answers take field types from it.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    export = actions.add_parser(
        "export",
        help="write the site's schema to a JSON file",
        description="Read the site's schema_read() and schema_entity_read() (two requests) and "
        "write them as one JSON file: each entity type's definition with its 'fields'.  The "
        "site comes from SG_URL, SG_SCRIPT and SG_API_KEY (or Toolkit's variables).",
    )
    export.add_argument("--out", metavar="FILE", required=True, help="the file to write")
    export.set_defaults(handler=_cmd_schema)


# ----------------------------------------------------------------------------------- watch


def _cmd_watch(args: argparse.Namespace) -> int:
    """Follow the site's event log for every session sharing a Redis, with a heartbeat.

    Log lines (never a credential) go to stderr: what the watcher reads in the loop, only
    warnings and errors with ``--once`` (so cron mails only trouble).
    """
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("sgcache_layers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if args.once else logging.INFO)
    try:
        return _watch(args)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _watch(args: argparse.Namespace) -> int:
    from .config import SessionConfigError
    from .watcher import Watcher, window_of

    try:
        watcher = Watcher(args.redis, interval=args.interval)
    except SessionConfigError as exc:
        return _fail(str(exc))
    try:
        if args.once:
            try:
                count = watcher.sync_once()
            except Exception as exc:  # ShotGrid or Redis failed; the heartbeat says so
                return _fail(f"syncing failed: {watcher.describe(exc)}", status=1)
            print(
                f"Read {count} events from {watcher.site}; the event log is at "
                f"{watcher.position}; heartbeat in {watcher.label}, trusted for "
                f"{window_of({'interval': watcher.interval}) or 0:g} s."
            )
            return 0
        signals = (signal.SIGTERM, signal.SIGINT)
        caught: List[int] = []

        def on_signal(signum: int, frame: Optional[FrameType]) -> None:
            if caught:  # a second signal: stop now, without waiting for the sync
                raise KeyboardInterrupt
            caught.append(signum)
            watcher.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in signals}
        try:
            print(
                f"Watching the event log of {watcher.site} every {watcher.interval:g} s; "
                f"heartbeat in {watcher.label} (host {watcher.host}, pid {watcher.pid}).  "
                "Stop with Ctrl-C or SIGTERM.",
                flush=True,
            )
            watcher.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        print(
            f"Stopped after {watcher.syncs} syncs ({watcher.events} events read, "
            f"{watcher.failures} failed).",
            flush=True,
        )
        return 0
    finally:
        watcher.close()


def _add_watch(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    from .watcher import DEFAULT_INTERVAL

    parser = subparsers.add_parser(
        "watch",
        help="read the event log once for the whole farm, keeping a heartbeat in Redis",
        description="Follow the site's EventLogEntry rows and move the generations they "
        "touch in the Redis the sessions share, with sync()'s gap and backlog handling, and "
        "keep a heartbeat there: while it is fresh, sessions over that Redis make no "
        "event-log request of their own.  The site comes from SG_URL, SG_SCRIPT and "
        "SG_API_KEY (or Toolkit's variables).  Runs until SIGTERM or Ctrl-C.",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        required=True,
        help="the Redis the sessions share, as their cache spec names it (with the same "
        "?namespace=)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="sync once and exit (for cron: give --interval the cron period)",
    )
    parser.add_argument(
        "--interval",
        type=_positive_float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between syncs; the heartbeat is trusted for two of them, and at least "
        f"one plus 5 s (default: {DEFAULT_INTERVAL:g})",
    )
    parser.set_defaults(handler=_cmd_watch)


# ---------------------------------------------------------------------------------- wiring

SUBCOMMANDS: Dict[str, Callable[[argparse._SubParsersAction[_Parser]], None]] = {
    "serve": _add_serve,
    "demo": _add_demo,
    "stats": _add_stats,
    "clear": _add_clear,
    "warm": _add_warm,
    "schema": _add_schema,
    "watch": _add_watch,
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per entry of :data:`SUBCOMMANDS`)."""
    from . import __version__

    parser = _Parser(prog=PROG, description="Layered caching for ShotGrid tools.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for add in SUBCOMMANDS.values():
        add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``sgcache-layers``; returns the exit status."""
    parser = build_parser()
    arguments: List[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(arguments)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``... | head``): stop quietly, like other tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
