"""The request path: asking ShotGrid, once for many waiters, in parallel pages, and storing
answers without making the caller wait.

* :class:`Requests` sends every ShotGrid call and counts it;
* :func:`find_rows` answers a ``find`` as ``shotgun_api3`` would (same rows, same order),
  but once the first page tells how many rows there are, asks for the other pages at once;
* :class:`SingleFlight` lets many threads asking the same uncached question share one
  request;
* :class:`WriteBehind` writes records from a background thread, in batches, and is flushed
  by ``close()`` and at interpreter exit so a short tool still leaves its answers behind;
* :func:`is_unavailable` tells an outage (5xx, network) from the caller's own error, for
  ``stale_if_error``.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import logging
import math
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable, Optional

from .cache import Cache

__all__ = ["Requests", "SingleFlight", "WriteBehind", "find_rows", "is_unavailable"]

log = logging.getLogger("sgcache_layers.fetching")


def is_unavailable(error: BaseException) -> bool:
    """Whether *error* means ShotGrid could not answer (an HTTP 5xx, a network failure)."""
    errcode = getattr(error, "errcode", None)
    if isinstance(errcode, int):
        return errcode >= 500
    if isinstance(error, (OSError, http.client.HTTPException, TimeoutError)):
        return True
    module = type(error).__module__ or ""
    return "httplib2" in module or "socket" in module


class Requests:
    """Send calls to the client and count them by method in *counter*."""

    def __init__(self, client: Any, counter: Counter[str]) -> None:
        self.client = client
        self.counter = counter
        self.closed = False
        self._lock = threading.Lock()

    def count(self, method: str) -> None:
        """Count one request of *method* (for calls made another way)."""
        with self._lock:
            self.counter[method] += 1

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            raise RuntimeError("this session is closed")
        self.count(method)
        return getattr(self.client, method)(*args, **kwargs)


class _Flight:
    __slots__ = ("event", "result", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None


class SingleFlight:
    """Run one call per key at a time; threads asking for a key in flight wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def run(self, key: str, call: Callable[[], Any]) -> Any:
        """The result of ``call()``, shared with every thread that asks for *key* meanwhile."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.event.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = call()
            return flight.result
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.event.set()


# ---------------------------------------------------------------------------------- pages


def _prototype(client: Any) -> Any:
    return getattr(client, "prototype", client)


def _can_page(client: Any) -> bool:
    """Whether *client* is a ``shotgun_api3.Shotgun`` (or a pool of them) we can page."""
    proto = _prototype(client)
    try:
        from shotgun_api3.shotgun import Shotgun
    except ImportError:  # pragma: no cover - a core dependency
        return False
    return isinstance(proto, Shotgun) and hasattr(proto, "_call_rpc")


def _rpc(client: Any, method: str, params: Any) -> Any:
    """``_call_rpc`` on a pooled connection (or the client itself)."""
    call = getattr(client, "call", None)
    if call is not None and client is not _prototype(client):
        return call("_call_rpc", method, params)
    return client._call_rpc(method, params)


def _read_params(
    proto: Any,
    entity_type: str,
    filters: Any,
    fields: Optional[Sequence[str]],
    order: Optional[Sequence[Mapping[str, Any]]],
    filter_operator: Optional[str],
    retired_only: bool,
    include_archived_projects: bool,
    additional_filter_presets: Optional[list[dict[str, Any]]],
) -> Optional[dict[str, Any]]:
    """The ``read`` parameters ``Shotgun.find`` would send, or ``None`` to let it send them."""
    try:
        from shotgun_api3.shotgun import _translate_filters
    except ImportError:  # pragma: no cover - an older or newer client
        return None
    if not isinstance(filters, (list, tuple)):
        return None  # a filter group dict: the client checks and sends it itself
    caps = proto.server_caps
    if not include_archived_projects:
        caps.ensure_include_archived_projects()
    if additional_filter_presets:
        caps.ensure_support_for_additional_filter_presets()
    params: dict[str, Any] = {
        "type": entity_type,
        "return_fields": list(fields) if fields else ["id"],
        "filters": _translate_filters(filters, filter_operator),
        "return_only": "retired" if retired_only else "active",
        "paging": {"entities_per_page": proto.config.records_per_page, "current_page": 1},
    }
    if additional_filter_presets:
        params["additional_filter_presets"] = additional_filter_presets
    if not include_archived_projects:
        params["include_archived_projects"] = False
    if order:
        sorts = []
        for sort in order:
            name = sort.get("field_name", sort.get("column"))
            sorts.append({"field_name": name, "direction": sort.get("direction", "asc")})
        params["sorts"] = sorts
    ensure_images = getattr(caps, "ensure_return_image_urls_support", None)
    if ensure_images is not None and ensure_images():
        params["api_return_image_urls"] = True
    return params


def find_rows(
    client: Any,
    executor: Callable[[], Executor],
    entity_type: str,
    filters: Any,
    fields: Optional[Sequence[str]] = None,
    *,
    order: Optional[Sequence[Mapping[str, Any]]] = None,
    filter_operator: Optional[str] = None,
    limit: int = 0,
    retired_only: bool = False,
    page: int = 0,
    include_archived_projects: bool = True,
    additional_filter_presets: Optional[list[dict[str, Any]]] = None,
) -> list[dict[str, Any]]:
    """The rows ``client.find(...)`` returns, with pages 2..n asked for in parallel.

    The first page is asked for with the row count; the rest follow at once through
    *executor* (each on its own pooled connection) and are joined in ShotGrid's order.
    Anything this cannot do the client's way (no count, a filter group, a single page,
    a client that is not ``shotgun_api3``) is left to ``client.find`` itself.
    """
    kwargs: dict[str, Any] = {}
    if order:
        kwargs["order"] = [dict(o) for o in order]
    if filter_operator:
        kwargs["filter_operator"] = filter_operator
    if limit:
        kwargs["limit"] = limit
    if retired_only:
        kwargs["retired_only"] = True
    if page:
        kwargs["page"] = page
    if not include_archived_projects:
        kwargs["include_archived_projects"] = False
    if additional_filter_presets:
        kwargs["additional_filter_presets"] = additional_filter_presets
    plain_fields = list(fields) if fields else None

    def plain() -> list[dict[str, Any]]:
        return list(client.find(entity_type, filters, plain_fields, **kwargs))

    prepared = getattr(client, "ensure_prepared", None)
    if prepared is not None:
        prepared()  # the site's capabilities, before the page size asks for them
    if page or not _can_page(client):
        return plain()
    proto = _prototype(client)
    per_page = int(proto.config.records_per_page)
    if limit and limit <= per_page:
        return plain()
    params = _read_params(
        proto,
        entity_type,
        filters,
        fields,
        order,
        filter_operator,
        retired_only,
        include_archived_projects,
        additional_filter_presets,
    )
    if params is None:
        return plain()
    first = dict(params, return_paging_info=True)
    result = _rpc(client, "read", first)
    records: list[dict[str, Any]] = list(result.get("entities") or [])
    info = result.get("paging_info") or {}
    count = info.get("entity_count")
    if not isinstance(count, int):
        # No count: the rest page by page, as the client itself would.
        current = 1
        while info.get("has_next_page") and not (limit and len(records) >= limit):
            current += 1
            paged = dict(params, return_paging_info=True)
            paged["paging"] = {"entities_per_page": per_page, "current_page": current}
            result = _rpc(client, "read", paged)
            records.extend(result.get("entities") or [])
            info = result.get("paging_info") or {}
    else:
        wanted = min(count, limit) if limit else count
        pages = math.ceil(wanted / per_page) if wanted else 1
        if pages > 1 and len(records) >= per_page:

            def one_page(number: int) -> list[dict[str, Any]]:
                paged = dict(params, return_paging_info=False)
                paged["paging"] = {"entities_per_page": per_page, "current_page": number}
                answer = _rpc(client, "read", paged)
                return list(answer.get("entities") or [])

            pool = executor()
            for rows in pool.map(one_page, range(2, pages + 1)):
                records.extend(rows)
    if limit:
        records = records[:limit]
    return list(proto._parse_records(records))


# ---------------------------------------------------------------------------- write-behind

_WRITERS: weakref.WeakSet[WriteBehind] = weakref.WeakSet()
_EXIT_TIMEOUT = 30.0


Merge = Callable[[Any, Any], Any]
_Item = tuple[Cache, dict[str, Any], Optional[Merge]]


class WriteBehind:
    """Writes ``{key: value}`` batches to caches from one background thread.

    :meth:`put` returns at once; what is waiting for one target is written with one
    ``set_many`` (a later value for a key wins).  With a *merge* function, the values
    stored under those keys are read first and ``merge(new, stored)`` is written instead
    (``stored`` is ``None`` when absent): a record can keep what an earlier writer knew.
    A failing write is a logged warning.  :meth:`pending` lets the owner read its own
    writes before they land; :meth:`flush` waits for everything queued so far, and runs
    at interpreter exit for every writer still alive.
    """

    def __init__(self, name: str = "sgcache-layers-writer", ttl: Optional[float] = None) -> None:
        self.name = name
        #: Seconds the records written may be kept, where a layer can expire keys.
        self.ttl = ttl
        self._queue: queue.Queue[Optional[_Item]] = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._closed = False
        # What is queued and not yet written, per target: reads see their own writes.
        self._pending: dict[int, dict[str, tuple[Any, Optional[Merge]]]] = {}
        _WRITERS.add(self)

    def put(self, target: Cache, mapping: Mapping[str, Any], merge: Optional[Merge] = None) -> None:
        """Queue *mapping* to be written to *target* (written now if the writer is closed)."""
        if not mapping:
            return
        mapping = dict(mapping)
        if self._closed:
            _write(target, mapping, merge, self.ttl)
            return
        with self._lock:
            waiting = self._pending.setdefault(id(target), {})
            for key, value in mapping.items():
                waiting[key] = (value, merge)
        self._start()
        self._queue.put((target, mapping, merge))

    def remove(self, target: Cache, keys: Iterable[str]) -> None:
        """Queue the removal of *keys* from *target*, after everything queued before it
        (a fill lease goes once the record it guarded is written)."""
        mapping = dict.fromkeys(keys)
        if not mapping:
            return
        if self._closed:
            _write(target, mapping, _REMOVE)
            return
        self._start()
        self._queue.put((target, mapping, _REMOVE))

    def pending(self, target: Cache, key: str) -> Optional[tuple[Any, Optional[Merge]]]:
        """``(value, merge)`` queued for *key* in *target* and not yet written, or ``None``."""
        waiting = self._pending.get(id(target))
        return None if waiting is None else waiting.get(key)

    def _written(self, target: Cache, mapping: Mapping[str, Any]) -> None:
        with self._lock:
            waiting = self._pending.get(id(target))
            if waiting is None:
                return
            for key, value in mapping.items():
                queued = waiting.get(key)
                if queued is not None and queued[0] is value:
                    del waiting[key]
            if not waiting:
                del self._pending[id(target)]

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        targets: dict[int, Cache] = {}
        try:
            self._serve(targets)
        finally:
            # Let go of what this thread opened (a FileCache keeps one connection per
            # thread, and its journal until the last one closes).
            for target in targets.values():
                try:
                    target.close()
                except Exception as error:  # closing anyway
                    log.debug("closing a cache from the writer failed: %s", error)

    def _serve(self, targets: dict[int, Cache]) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            items = [item]
            stop = False
            while True:  # take whatever else is waiting: one write per target and kind
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    self._queue.task_done()
                    break
                items.append(more)
            batches: dict[tuple[int, int], _Item] = {}
            for target, mapping, merge in items:
                seen = batches.get((id(target), id(merge)))
                if seen is None:
                    batches[(id(target), id(merge))] = (target, dict(mapping), merge)
                else:
                    seen[1].update(mapping)
            # Writes first, then removals (of leases guarding what was just written).
            ordered = sorted(batches.values(), key=lambda item: item[2] is _REMOVE)
            for target, mapping, merge in ordered:
                targets[id(target)] = target
                _write(target, mapping, merge, self.ttl)
            for target, mapping, merge in items:
                if merge is not _REMOVE:
                    self._written(target, mapping)
            for _ in items:
                self._queue.task_done()
            if stop:
                return

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything queued so far is written; ``False`` on time-out."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._drain_here()
            return True
        done = self._queue.all_tasks_done  # the queue's own condition: no helper thread
        deadline = None if timeout is None else time.monotonic() + timeout
        with done:
            while self._queue.unfinished_tasks:
                if deadline is None:
                    done.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True

    def _drain_here(self) -> None:
        """Write what is queued in the calling thread (no writer thread, e.g. after fork)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _write(*item, self.ttl)
                if item[2] is not _REMOVE:
                    self._written(item[0], item[1])
            self._queue.task_done()

    def close(self) -> None:
        """Flush, stop the thread, and write synchronously from now on."""
        self.flush()
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=5)
        self._thread = None

    def _after_fork(self) -> None:
        self._thread = None
        self._lock = threading.Lock()
        self._queue = queue.Queue()
        self._pending = {}


def _remove(old: Any, stored: Any) -> Any:  # pragma: no cover - a marker, never called
    raise AssertionError("a removal is not a merge")


#: The *merge* of a queued removal.
_REMOVE: Merge = _remove


def _write(
    target: Cache,
    mapping: dict[str, Any],
    merge: Optional[Merge] = None,
    ttl: Optional[float] = None,
) -> None:
    try:
        if merge is _REMOVE:
            for key in mapping:
                with contextlib.suppress(KeyError):
                    target.remove(key)
            return
        if merge is not None:
            stored = target.get_many(list(mapping))
            mapping = {key: merge(value, stored.get(key)) for key, value in mapping.items()}
        if ttl is None:
            target.set_many(mapping)
        else:
            target.set_many_expiring(mapping, ttl)
    except Exception as error:  # a broken layer must not break the tool
        log.warning(
            "writing %d cached records failed: %s: %s", len(mapping), type(error).__name__, error
        )


@atexit.register
def _flush_at_exit() -> None:
    for writer in list(_WRITERS):
        try:
            if not writer.flush(timeout=_EXIT_TIMEOUT):
                log.warning("cached records were still being written at exit")
        except Exception as error:  # pragma: no cover - exiting anyway
            log.warning("flushing cached records at exit failed: %s", error)


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def make_executor(workers: int = 8) -> Callable[[], Executor]:
    """A lazily made thread pool for page requests: ``(get, shutdown)`` in one callable."""
    lock = threading.Lock()
    box: list[Optional[ThreadPoolExecutor]] = [None]

    def get() -> Executor:
        pool = box[0]
        if pool is None:
            with lock:
                pool = box[0]
                if pool is None:
                    pool = box[0] = ThreadPoolExecutor(workers, thread_name_prefix="sgcl-page")
        return pool

    def shutdown() -> None:
        pool, box[0] = box[0], None
        if pool is not None:
            pool.shutdown(wait=False)

    get.shutdown = shutdown  # type: ignore[attr-defined]
    return get
