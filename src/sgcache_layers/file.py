"""A persistent cache in a directory, on :mod:`diskcache` (SQLite plus value files).

Safe for many threads and processes at once.  It stores ``str`` and ``bytes``
only and never unpickles anything it reads, so a cache directory someone else
could write to cannot run code in the tool that reads it.  Every ``str`` key and
value round-trips exactly, lone surrogates included, and a broken store (a
corrupt database, garbage in diskcache's ``Settings`` table, a full disk) only
ever surfaces as :class:`~sgcache_layers.cache.CacheBackendError`.

The database is only ever opened through SQLite: on POSIX, closing *any*
descriptor of a file drops every ``fcntl`` lock the process holds on it, so a
stray ``open``/``close`` of cache.db would silently release the locks of this
process's live SQLite connections and let another process checkpoint and
delete the WAL under them (a malformed database, acknowledged writes lost).
"""

from __future__ import annotations

import math
import mmap
import os
import re
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional, TypeVar

import diskcache
from diskcache.core import (
    DEFAULT_SETTINGS,
    ENOVAL,
    EVICTION_POLICY,
    METADATA,
    MODE_BINARY,
    MODE_RAW,
    MODE_TEXT,
    UNKNOWN,
)

from sgcache_layers.cache import (
    Cache,
    CacheBackendError,
    Pattern,
    _compile,
    check_key,
    key_type_error,
    logger,
)

__all__ = ["FileCache"]

_T = TypeVar("_T")
_MISSING: Any = object()
_UNREADABLE_KEY: Any = object()
_DBNAME = "cache.db"
_BATCH = 500
# This process's id, kept current across fork (diskcache opens new connections then).
_PID = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
#: Mode of a ``str`` value holding lone surrogates, stored as UTF-8 with
#: ``surrogatepass`` (in the row as a BLOB, or in a value file).  diskcache's own
#: modes are 0-4; this one is MODE_TEXT with a flag bit.
_MODE_TEXT_SURROGATEPASS = MODE_TEXT | 0x100


class _RefusedRecord(Exception):
    """A stored record this cache will not read (pickled, undecodable, or outside the cache)."""


class _CorruptStore(Exception):
    """diskcache's ``Settings`` table holds something diskcache must not act on."""


def _value_type_error(value: object) -> TypeError:
    return TypeError(f"FileCache stores str or bytes values, not {type(value).__name__}")


class _SafeDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache serialisation limited to ``str``/``bytes``, with pickle refused both ways.

    Keys and values are stored natively (never pickled); a record whose mode
    says pickle is refused instead of loaded; value files are created private
    and must lie inside the cache directory.
    """

    file_mode = 0o600
    dir_mode = 0o700

    def put(self, key: Any) -> tuple[Any, bool]:
        """Return the database form of *key*, always raw.

        A ``str`` is stored as TEXT; one SQLite cannot take (it holds lone
        surrogates) as a BLOB of its ``surrogatepass`` UTF-8.  FileCache keys
        are always ``str``, so a BLOB key can only mean the latter.
        """
        if type(key) is str:
            if key.isascii():
                return key, True
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                return key.encode("utf-8", "surrogatepass"), True
            return key, True
        raise key_type_error(key)

    def get(self, key: Any, raw: bool) -> Any:
        """Return a stored key as ``str``; a pickled (non-raw) or foreign key is never loaded."""
        if not raw:
            return _UNREADABLE_KEY
        if type(key) is str:
            return key
        if type(key) is bytes:
            return _surrogate_key(key)
        return _UNREADABLE_KEY

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, Any, Any]:
        """Return ``(size, mode, filename, db_value)`` for a ``str`` or ``bytes`` value."""
        value_type = type(value)
        if read:
            raise TypeError("FileCache does not store file objects")
        if value_type is str:
            small = len(value) < self.min_file_size
            if small and value.isascii():
                return 0, MODE_RAW, None, value
            try:
                data = value.encode("utf-8")
                mode = MODE_TEXT
            except UnicodeEncodeError:
                data = value.encode("utf-8", "surrogatepass")
                mode = _MODE_TEXT_SURROGATEPASS
            if small:
                if mode == MODE_TEXT:
                    return 0, MODE_RAW, None, value
                return 0, mode, None, data
        elif value_type is bytes:
            if len(value) < self.min_file_size:
                return 0, MODE_RAW, None, sqlite3.Binary(value)
            data = value
            mode = MODE_BINARY
        else:
            raise _value_type_error(value)
        filename, full_path = self.filename(key, value)
        self._write_private(full_path, data)
        return len(data), mode, filename, None

    def _write_private(self, full_path: str, data: bytes) -> None:
        """Write *data* to a new file readable by its owner only."""
        directory = os.path.dirname(full_path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for attempt in range(10):
            _make_dirs(directory, self.dir_mode)
            try:
                fd = os.open(full_path, flags, self.file_mode)
            except FileNotFoundError:
                # Another process removed the emptied directory meanwhile.
                if attempt == 9:
                    raise
                continue
            with os.fdopen(fd, "wb") as writer:
                writer.write(data)
            return

    def _inside(self, filename: Any) -> str:
        """Return the full path of *filename*, refusing one outside the cache directory."""
        if type(filename) is not str or os.path.isabs(filename):
            raise _RefusedRecord("value file path is not relative")
        normal = os.path.normpath(filename)
        if normal == os.pardir or normal.startswith(os.pardir + os.sep):
            raise _RefusedRecord("value file path leaves the cache directory")
        return os.path.join(self._directory, normal)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        """Return a stored ``str``/``bytes`` value; refuse pickles and anything else."""
        if mode == MODE_RAW:
            value_type = type(value)
            if value_type is str or value_type is bytes:
                return value
            raise _RefusedRecord(f"stored value is a {value_type.__name__}, not str or bytes")
        if read:
            raise _RefusedRecord("file handles are not served")
        if mode == _MODE_TEXT_SURROGATEPASS and filename is None:
            if type(value) is not bytes:
                raise _RefusedRecord("stored text is not a BLOB")
            return _decode(value, "surrogatepass")
        if mode in (MODE_BINARY, MODE_TEXT, _MODE_TEXT_SURROGATEPASS):
            with open(self._inside(filename), "rb") as reader:
                data = reader.read()
            if mode == MODE_BINARY:
                return data
            return _decode(data, "strict" if mode == MODE_TEXT else "surrogatepass")
        raise _RefusedRecord(f"stored value has mode {mode!r} (pickled?), which is never loaded")

    def remove(self, file_path: Any) -> None:
        """Remove a value file, but only one inside the cache directory."""
        try:
            self._inside(file_path)
        except _RefusedRecord:
            return
        super().remove(file_path)


def _decode(data: bytes, errors: str) -> str:
    """Decode stored UTF-8 text, refusing bytes that are not what this cache wrote."""
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise _RefusedRecord(f"stored text is not valid UTF-8: {exc}") from None


def _surrogate_key(blob: bytes) -> Any:
    """Return the ``str`` a BLOB key stands for, or ``_UNREADABLE_KEY`` if not one of ours.

    Only text that strict UTF-8 cannot encode is stored as a BLOB, so a BLOB
    that decodes strictly (or not even with ``surrogatepass``) was not written
    by FileCache and is left alone rather than aliased to a TEXT key.
    """
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return _UNREADABLE_KEY
    try:
        return blob.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return _UNREADABLE_KEY


# -- diskcache settings ----------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_JOURNAL_MODES = frozenset({"delete", "truncate", "persist", "memory", "wal", "off"})
_AUTO_VACUUM = {"none": 0, "full": 1, "incremental": 2}
_SYNCHRONOUS = {"off": 0, "normal": 1, "full": 2, "extra": 3}
_FLAGS = frozenset({"statistics", "tag_index"})
_COUNTS = frozenset({"cull_limit", "sqlite_mmap_size", "disk_min_file_size"})
_INTEGERS = frozenset({"sqlite_cache_size", "disk_pickle_protocol", *METADATA})
_KNOWN = frozenset({*DEFAULT_SETTINGS, *METADATA})


def _setting_problem(key: object, value: object) -> Optional[str]:
    """Say what is wrong with the diskcache setting *key* = *value*, or None if it is sound.

    diskcache turns every ``Settings`` row into an attribute, a PRAGMA or a
    Disk attribute, so only known names with values of the right kind pass.
    Other ``sqlite_*`` names pass with an int or a bare word (they become
    ``PRAGMA name = value``).
    """
    if type(key) is not str:
        return f"a setting named {key!r}"
    if key not in _KNOWN:
        if key.startswith("sqlite_") and _TOKEN.match(key[7:]):
            if isinstance(value, int) or (type(value) is str and _TOKEN.match(value)):
                return None
            return f"sqlite setting {key} = {value!r} is not an int or a word"
        return f"unknown setting {key!r}"
    if key in _FLAGS:
        ok = isinstance(value, int) and value in (0, 1)
    elif key in _COUNTS:
        ok = isinstance(value, int) and value >= 0
    elif key in _INTEGERS:
        ok = isinstance(value, int)
    elif key == "size_limit":
        ok = isinstance(value, (int, float)) and not math.isnan(value) and value >= 0
    elif key == "eviction_policy":
        ok = type(value) is str and value in EVICTION_POLICY
    elif key == "sqlite_journal_mode":
        ok = type(value) is str and value.lower() in _JOURNAL_MODES
    elif key in ("sqlite_auto_vacuum", "sqlite_synchronous"):
        names = _AUTO_VACUUM if key == "sqlite_auto_vacuum" else _SYNCHRONOUS
        if type(value) is str:
            ok = value.lower() in names
        else:
            ok = isinstance(value, int) and value in names.values()
    else:  # pragma: no cover - every known name is handled above
        ok = True
    return None if ok else f"setting {key} = {value!r} is out of range"


def _check_setting(key: object, value: object, error: type[Exception]) -> None:
    """Raise *error* if the diskcache setting *key* = *value* is unsound."""
    problem = _setting_problem(key, value)
    if problem is not None:
        raise error(problem)


# -- the WAL index: a change check without a query ------------------------------------

#: The WAL-index header (two copies of 48 bytes) at the start of ``cache.db-shm``.
_WAL_HEADER = 96
#: This process's maps of ``-shm`` files, by (device, inode).  A map is closed only once its
#: file is deleted: closing any descriptor of a file drops every POSIX lock this process's
#: SQLite connections hold on it (the bug of a second FileCache opened beside writers).
_SHM_MAPS: dict[tuple[int, int], tuple[int, mmap.mmap]] = {}
#: Descriptors opened in a race for a file already mapped: held open for the same reason.
_SHM_HELD: list[tuple[int, Optional[mmap.mmap]]] = []
_SHM_LOCK = threading.Lock()


def _new_shm_lock() -> None:
    """In a forked child: a lock another thread held at the fork would stay held."""
    global _SHM_LOCK
    _SHM_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_shm_lock)


def _shm_map(path: str) -> Optional[mmap.mmap]:
    """A read-only map of the ``-shm`` file at *path*, shared per file (``None``: none)."""
    with _SHM_LOCK:
        for key, (fd, old) in list(_SHM_MAPS.items()):
            try:
                gone = os.fstat(fd).st_nlink == 0
            except OSError:
                gone = True
            if gone:  # deleted: no SQLite connection anywhere holds a lock on it
                del _SHM_MAPS[key]
                old.close()
                os.close(fd)
        try:
            seen = os.stat(path)
        except OSError:
            return None
        found = _SHM_MAPS.get((seen.st_dev, seen.st_ino))
        if found is not None:
            return found[1]
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        opened = os.fstat(fd)
        try:
            if opened.st_size < _WAL_HEADER:
                raise ValueError("no WAL index yet")
            mapped = mmap.mmap(fd, _WAL_HEADER, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            mapped = None
        key = (opened.st_dev, opened.st_ino)
        if key in _SHM_MAPS or mapped is None:
            # Closing either descriptor (ours, or the one a map holds) could drop the
            # connections' locks: both stay open.
            _SHM_HELD.append((fd, mapped))
            return _SHM_MAPS[key][1] if key in _SHM_MAPS else None
        _SHM_MAPS[key] = (fd, mapped)
        return mapped


class _SafeCache(diskcache.Cache):  # type: ignore[misc]
    """diskcache's Cache, checking each setting before it acts on it.

    diskcache applies whatever its ``Settings`` table says: garbage there made
    opening raise ``KeyError``/``ValueError`` and later writes ``TypeError``.
    Here a bad row raises :class:`_CorruptStore` before it is used.
    """

    #: Bumped whenever a connection is closed (a WAL-index map must then be made again).
    closes = 0

    def close(self) -> None:
        """Close this thread's connection."""
        self.closes += 1
        super().close()

    @property
    def _con(self) -> sqlite3.Connection:
        """This thread's connection; one whose settings could not be applied is dropped."""
        try:
            return super()._con  # type: ignore[no-any-return]
        except BaseException:
            self.close()
            raise

    def reset(self, key: str, value: Any = ENOVAL, update: bool = True) -> Any:
        """Apply (or, without *value*, reload) one setting, refusing an unsound one."""
        if value is not ENOVAL:
            _check_setting(key, value, _CorruptStore)
            return super().reset(key, value, update)
        try:
            value = super().reset(key)
        except ValueError:  # diskcache unpacks exactly one row
            raise _CorruptStore(f"the setting {key!r} is missing") from None
        _check_setting(key, value, _CorruptStore)
        return value


def _make_dirs(path: str, mode: int) -> None:
    """Create *path* and its missing parents, each with *mode*."""
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue
        os.chmod(directory, mode)


def _prepare_directory(path: str, mode: int) -> None:
    """Create the cache directory private, or tighten one of ours that is too open."""
    _make_dirs(path, mode)
    current = os.stat(path).st_mode & 0o777
    if current & ~mode == 0:
        return
    # Only tighten a directory that is empty or already a cache: never chmod
    # a shared folder (say /tmp) that was passed by mistake.
    entries = os.listdir(path)
    if not entries or _DBNAME in entries:
        try:
            os.chmod(path, current & mode)
            return
        except OSError:
            pass
    logger.warning(
        "file cache directory %s is open to other users (mode %o); its data may be readable",
        path,
        current,
    )


def _chmod_quietly(path: str, mode: int) -> None:
    try:
        if os.stat(path).st_mode & 0o777 & ~mode:
            os.chmod(path, mode)
    except OSError:
        pass


class FileCache(Cache):
    """Persistent ``str`` -> ``str``/``bytes`` cache in the directory *path*.

    Values come back exactly as stored (``str`` as ``str``, ``bytes`` as
    ``bytes``, lone surrogates included); other values raise ``TypeError``
    (wrap in a :class:`~sgcache_layers.cache.SerialisedCache` to store
    structures).  A record that is pickled (planted by another writer, or left
    by plain diskcache) or otherwise unreadable is never loaded: it reads as a
    miss with a logged warning.

    The directory and its parents are created with *permissions* (default
    ``0o700``) and files with the same bits less execute.  SQLite waits up to
    *timeout* seconds for a lock and a timed-out operation is tried *retries*
    more times.  Any failure of the store, while opening or later (a corrupt
    database, garbage in its settings, a full disk), raises
    :class:`~sgcache_layers.cache.CacheBackendError` naming the path.

    *size_limit* (bytes), *eviction_policy* and any other diskcache setting in
    *settings* pass through to :class:`diskcache.Cache`; an unknown name is a
    ``TypeError`` and a bad value a ``ValueError``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 60.0,
        retries: int = 2,
        size_limit: Optional[int] = None,
        eviction_policy: Optional[str] = None,
        permissions: int = 0o700,
        **settings: Any,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.retries = retries
        self._writes = 0
        #: ``((closes, pid), map)`` of the WAL index this cache reads its change token from.
        self._shm: Optional[tuple[Any, Optional[mmap.mmap]]] = None
        self.permissions = permissions & 0o777
        file_mode = self.permissions & 0o666
        if size_limit is not None:
            settings["size_limit"] = size_limit
        if eviction_policy is not None:
            settings["eviction_policy"] = eviction_policy
        for name, value in settings.items():
            if name in METADATA or (name not in _KNOWN and not name.startswith("sqlite_")):
                raise TypeError(f"FileCache got an unknown diskcache setting {name!r}")
            _check_setting(name, value, ValueError)
        database = os.path.join(self.path, _DBNAME)
        try:
            _prepare_directory(self.path, self.permissions)
            if not os.path.exists(database):
                # Let SQLite create the file and make it private before anything
                # is in it: SQLite gives its -wal and -shm the database's mode.
                sqlite3.connect(database).close()
                _chmod_quietly(database, file_mode)
            self._cache = _SafeCache(self.path, timeout=timeout, disk=_SafeDisk, **settings)
            disk = self._cache.disk
            disk.file_mode = file_mode
            disk.dir_mode = self.permissions
            self._native_get_many = (
                hasattr(self._cache, "_sql")
                and not self._cache.statistics
                and EVICTION_POLICY[self._cache.eviction_policy]["get"] is None
            )
        except Exception as exc:
            raise CacheBackendError(
                f"cannot open the file cache at {self.path}: {type(exc).__name__}: {exc}"
            ) from exc
        for suffix in ("", "-wal", "-shm"):
            _chmod_quietly(database + suffix, file_mode)

    # -- plumbing ------------------------------------------------------------

    def _run(self, operation: str, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call *function*, retrying on a lock time-out; any store failure is a CacheBackendError.

        Callers check keys and values before, so whatever else goes wrong in
        diskcache or SQLite (including ``TypeError``/``ValueError`` from a
        garbled database) is the store's fault, never the caller's.
        """
        attempt = 0
        while True:
            try:
                return function(*args, **kwargs)
            except diskcache.Timeout as exc:
                attempt += 1
                if attempt > self.retries:
                    raise CacheBackendError(
                        f"the file cache at {self.path} stayed locked during {operation}"
                    ) from exc
            except _RefusedRecord:
                raise
            except Exception as exc:
                raise CacheBackendError(
                    f"the file cache at {self.path} failed during {operation}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

    def _refused(self, key: str, exc: _RefusedRecord) -> None:
        logger.warning(
            "file cache at %s: refusing to load the record for key %r, treating it as a miss: %s",
            self.path,
            key,
            exc,
        )

    # -- Cache API -----------------------------------------------------------

    def get(self, key: str) -> Any:
        """Return the ``str``/``bytes`` stored for *key*; ``KeyError`` if absent or refused."""
        if type(key) is not str:
            key = check_key(key)
        try:
            value = self._cache.get(key, _MISSING)
        except Exception:
            try:
                value = self._run("get", self._cache.get, key, _MISSING)
            except _RefusedRecord as exc:
                self._refused(key, exc)
                raise KeyError(key) from None
        if value is _MISSING:
            raise KeyError(key)
        return value

    def set(self, key: str, value: Any) -> None:
        """Store the ``str`` or ``bytes`` *value* for *key*."""
        if type(key) is not str:
            key = check_key(key)
        value_type = type(value)
        if value_type is not str and value_type is not bytes:
            raise _value_type_error(value)
        self._writes += 1
        try:
            self._cache.set(key, value)
        except Exception:
            self._run("set", self._cache.set, key, value)

    def remove(self, key: str) -> None:
        """Remove *key*; ``KeyError`` if absent."""
        if type(key) is not str:
            key = check_key(key)
        self._writes += 1
        if not self._run("remove", self._cache.delete, key):
            raise KeyError(key)

    def keys(self) -> list[str]:
        """Return the stored keys (in key order)."""

        def collect() -> list[str]:
            return [key for key in self._cache.iterkeys() if type(key) is str]

        return self._run("keys", collect)

    def clear(self, pattern: Pattern = None) -> None:
        """Remove the keys matching the regular expression *pattern*, or all."""
        regex = _compile(pattern)
        self._writes += 1
        if regex is None:
            self._run("clear", self._cache.clear)
            return
        search = regex.search
        doomed = [key for key in self.keys() if search(key) is not None]
        for start in range(0, len(doomed), _BATCH):
            self._run("clear", self._delete_batch, doomed[start : start + _BATCH])

    def _delete_batch(self, keys: list[str]) -> None:
        cache = self._cache
        with cache.transact():
            for key in keys:
                cache.delete(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the stored values for *keys* (one query per 500 keys when possible)."""
        wanted = list(dict.fromkeys(check_key(key) for key in keys))
        if not wanted:
            return {}
        if not self._native_get_many:
            return Cache.get_many(self, wanted)
        found: dict[str, Any] = {}
        for start in range(0, len(wanted), _BATCH):
            self._run("get_many", self._select_many, wanted[start : start + _BATCH], found)
        if len(found) < 2:
            return found
        return {key: found[key] for key in wanted if key in found}

    def _select_many(self, keys: list[str], found: dict[str, Any]) -> None:
        """Read *keys* with one SELECT into *found* (diskcache's read path, batched)."""
        put = self._cache.disk.put
        by_db_key: dict[Any, str] = {put(key)[0]: key for key in keys}
        placeholders = ",".join("?" * len(by_db_key))
        query = (
            "SELECT key, mode, filename, value FROM Cache"
            f" WHERE raw = 1 AND key IN ({placeholders})"
            " AND (expire_time IS NULL OR expire_time > ?)"
        )
        rows = self._cache._sql(query, (*by_db_key, time.time())).fetchall()
        fetch = self._cache.disk.fetch
        for db_key, mode, filename, value in rows:
            key = by_db_key.get(db_key) if type(db_key) in (str, bytes) else None
            if key is None:
                continue
            try:
                found[key] = fetch(mode, filename, value, False)
            except _RefusedRecord as exc:
                self._refused(key, exc)
            except OSError:
                continue  # value file removed by another process since the SELECT

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store every item of *mapping* in one transaction."""
        items = []
        for key, value in mapping.items():
            value_type = type(value)
            if value_type is not str and value_type is not bytes:
                raise _value_type_error(value)
            items.append((check_key(key), value))
        if items:
            self._writes += 1
            self._run("set_many", self._set_batch, items)

    def _set_batch(self, items: list[tuple[str, Any]]) -> None:
        cache = self._cache
        with cache.transact():
            for key, value in items:
                cache.set(key, value)

    def add(self, key: str, value: Any) -> bool:
        """Store the ``str``/``bytes`` *value* if *key* is absent, atomically (one
        transaction, so of processes adding one key exactly one stores it)."""
        if type(key) is not str:
            key = check_key(key)
        value_type = type(value)
        if value_type is not str and value_type is not bytes:
            raise _value_type_error(value)
        self._writes += 1
        return bool(self._run("add", self._cache.add, key, value))

    def change_token(self) -> Optional[tuple[Any, int]]:
        """A token that changes with any write to the database, and this cache's own count.

        In WAL mode (diskcache's default) it is the WAL-index header in the ``-shm`` file,
        which SQLite rewrites at every commit of any connection in any process: read from a
        shared map, with no query.  A header caught mid-update (its two copies differ), or
        any other journal mode, falls back to SQLite's ``data_version``.
        """
        cache = self._cache
        local = cache._local
        try:
            con = local.con if local.pid == _PID[0] else None
        except AttributeError:  # no connection in this thread yet
            con = None
        try:
            if con is None:
                con = cache._con
            mapped = self._shm
            if mapped is None or mapped[0] != (cache.closes, _PID[0]):
                mapped = self._map_wal_index(con)
            if mapped[1] is not None:
                head = mapped[1][:_WAL_HEADER]
                if head[:48] == head[48:]:
                    return (head[:48], self._writes)
            row = con.execute("PRAGMA data_version").fetchone()
        except Exception:  # a broken database: nothing to vouch for
            return None
        return (row[0], self._writes)

    def _map_wal_index(self, con: sqlite3.Connection) -> tuple[Any, Optional[mmap.mmap]]:
        """Map the ``-shm`` file the open connection *con* uses (after a read, so that it
        holds the file: no other process can delete it while this one is open)."""
        state = (self._cache.closes, _PID[0])
        mapped: Optional[mmap.mmap] = None
        mode = con.execute("PRAGMA journal_mode").fetchone()
        if mode and str(mode[0]).lower() == "wal":
            con.execute("SELECT 1 FROM Settings LIMIT 1").fetchall()
            mapped = _shm_map(os.path.join(self.path, _DBNAME + "-shm"))
        self._shm = found = (state, mapped)
        return found

    def close(self) -> None:
        """Close this thread's database connection (it reopens on next use)."""
        try:
            self._cache.close()
        except Exception as exc:
            logger.debug("closing the file cache at %s: %s", self.path, exc)

    def __len__(self) -> int:
        return int(self._run("len", len, self._cache))

    def __repr__(self) -> str:
        return f"FileCache({self.path!r})"
