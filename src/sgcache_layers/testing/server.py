"""A loopback ShotGrid server that the real ``shotgun_api3.Shotgun`` client talks to.

:class:`ShotgridServer` serves ShotGrid's ``/api3/json`` JSON-RPC protocol on 127.0.0.1
from a :class:`~sgcache_layers.testing.store.SiteStore` (a Mockgun with site-like
behaviour).  Tests get an honest network hop - keep-alive HTTP, JSON, datetimes as UTC
strings, paging at 500 rows, the client's own retries - plus knobs a real site does not
offer: added latency, injected faults (HTTP 5xx, dropped connections, slow answers), a
request log, extra identities, schema-change events and deliberate event-id gaps.

It refuses what a site refuses (people may not ``sudo_as_login``; ``password``,
``serializable`` and ``url`` fields cannot be filtered, ``image`` fields only with None;
bad ``additional_filter_presets``; ``text_search`` texts under three characters) and
models what a site offers beyond plain reads: ``text_search``, the ``LATEST`` filter
presets and per-project schema views (:meth:`ShotgridServer.set_project_field_override`).
Filters, order and paging are evaluated by :mod:`sgcache_layers.filters`.  Errors while
handling requests go to the ``sgcache_layers.testing.server`` logger (clients that hang
up at debug level); nothing is printed.

Typical use::

    with ShotgridServer(scale=0.05) as server:
        sg = server.client()
        shots = sg.find("Shot", [], ["code"])
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import random
import secrets
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from shotgun_api3.shotgun import Shotgun

from .data import Schema, demo_schema, ensure_required_entities, generate_production, load_schema
from .store import Actor, SiteError, SiteStore

LatencySpec = Union[None, float, Callable[[], float]]
SchemaSpec = Union[None, str, "os.PathLike[str]", Tuple[Schema, Schema]]

#: ``info()`` answer: a modern version so the client enables paging without counts etc.
SERVER_VERSION = (8, 0, 0)
MAX_PAGE = 500

#: Client method names that map to a different RPC method name.
METHOD_ALIASES = {"find": "read", "find_one": "read"}

#: Fault kinds understood by :meth:`ShotgridServer.inject_fault`.
FAULT_KINDS = ("500", "502", "503", "504", "drop", "drop_after", "slow", "error")

_ERR_AUTH = 102
_ERR_PERMISSION = 103
_ERR_GENERIC = 104

LOG = logging.getLogger(__name__)
#: What a client hanging up mid-request raises in the handler: routine, logged at debug.
_GONE = (ConnectionError, TimeoutError)


def lognormal_latency(
    median: float, sigma: float = 0.5, seed: int = 0, maximum: Optional[float] = None
) -> Callable[[], float]:
    """A latency callable drawing seconds from a lognormal around ``median`` (seeded)."""
    if median < 0 or sigma < 0:
        raise ValueError("median and sigma must be >= 0")
    rng = random.Random(seed)
    lock = threading.Lock()
    mu = math.log(median) if median > 0 else 0.0

    def draw() -> float:
        if median == 0:
            return 0.0
        with lock:
            value = rng.lognormvariate(mu, sigma)
        return min(value, maximum) if maximum is not None else value

    return draw


@dataclass(frozen=True)
class RequestRecord:
    """One JSON-RPC request as the server saw it.

    ``method`` is the RPC name on the wire (``find``/``find_one`` arrive as ``read``),
    ``params`` the decoded parameters without the auth dict, ``identity`` the script name or
    login, ``time`` the ``time.time()`` of arrival, ``duration`` seconds until the answer
    (including added latency), ``status`` the HTTP status (0 for a dropped connection) and
    ``fault`` the injected fault kind, if any.
    """

    number: int
    method: str
    entity_type: Optional[str]
    params: Any
    identity: Optional[str]
    time: float
    duration: float
    status: int
    fault: Optional[str] = None
    error: Optional[str] = None


@dataclass
class FaultRule:
    """An injected fault; see :meth:`ShotgridServer.inject_fault`."""

    kind: str
    method: Optional[str] = None
    entity_type: Optional[str] = None
    count: Optional[int] = 1
    skip: int = 0
    on_request: Optional[int] = None
    rate: Optional[float] = None
    delay: float = 1.0
    message: str = "Injected fault"
    fired: int = 0
    seen: int = 0
    _server: Optional[ShotgridServer] = field(default=None, repr=False, compare=False)

    @property
    def exhausted(self) -> bool:
        """True once the rule has fired ``count`` times."""
        return self.count is not None and self.fired >= self.count

    def remove(self) -> None:
        """Stop injecting this fault."""
        if self._server is not None:
            self._server.remove_fault(self)


@dataclass(frozen=True)
class ScriptIdentity:
    """A script user (name, key) and its ``ApiUser`` link; permissions are optional."""

    name: str
    key: str
    link: Dict[str, Any]
    read_only: bool = False
    hidden_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass
class _Outcome:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    drop: bool = False
    delay: float = 0.0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: Tuple[str, int], owner: ShotgridServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log what escaped a handler (``socketserver`` would print it to stderr)."""
        error = sys.exc_info()[1]
        if isinstance(error, _GONE):
            LOG.debug("client %s went away: %s", client_address, error)
        else:
            LOG.error("error handling a request from %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
            self.connections.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sgcache-layers-shotgrid/1.0"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the client is already gone; reading will notice
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def handle(self) -> None:
        """Serve keep-alive requests; a client hanging up is routine (debug log only)."""
        try:
            super().handle()
        except _GONE as exc:
            self.close_connection = True
            LOG.debug("client %s went away: %s", self.client_address, exc)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Never print: access and protocol errors go to the debug log (tests read the log)."""
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        reason = self.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Server: {self.server_version}\r\n"
            f"Date: {self.date_time_string()}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'close' if self.close_connection else 'keep-alive'}\r\n\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)  # one write: no Nagle/delayed-ACK stall

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(400, b"bad Content-Length", "text/plain")
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client hung up before sending the whole request
            self.close_connection = True
            LOG.debug("client %s went away mid-request", self.client_address)
            return
        if not self.path.rstrip("/").endswith("/json"):
            self._send(404, b"not found", "text/plain")
            return
        try:
            outcome = self.server.owner._handle(body)
        except Exception as exc:  # never kill the connection thread with a traceback
            LOG.error("error answering %s", self.client_address, exc_info=True)
            outcome = _Outcome(
                status=500, body=f"server error: {exc}".encode(), content_type="text/plain"
            )
        if outcome.delay > 0:
            time.sleep(outcome.delay)
        if outcome.drop:
            self._drop()
            return
        self._send(outcome.status, outcome.body, outcome.content_type)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        body = b"sgcache-layers ShotGrid test server: POST JSON-RPC to /api3/json\n"
        self._send(200, body, "text/plain; charset=utf-8")


class ShotgridServer:
    """A ShotGrid site on 127.0.0.1 for the real ``shotgun_api3`` client.

    :param schema: None for the demo schema, a directory holding ``schema.json`` and
        ``schema_entity.json``, or a ``(schema, schema_entity)`` pair.
    :param scale: if given, seed a production with :func:`generate_production` (no events).
    :param seed: seed of the production generator.
    :param port: TCP port; 0 picks a free one (kept across :meth:`stop`/:meth:`start`).
    :param host: address to bind; keep the default loopback address.
    :param script_name: name of the default script identity.
    :param api_key: key of the default script identity (random if None).
    :param latency: seconds added to every answer, or a callable returning seconds.
    :param fault_seed: seed of the random draws behind rate-based faults.
    :param clock: callable returning the site's "now" (UTC); the wall clock by default.

    Seeded data writes no event-log rows, so :attr:`last_event_id` is 0 on a fresh server
    and every event a test reads was caused by that test.
    """

    def __init__(
        self,
        schema: SchemaSpec = None,
        *,
        scale: Optional[float] = None,
        seed: int = 0,
        port: int = 0,
        host: str = "127.0.0.1",
        script_name: str = "sgcache_tests",
        api_key: Optional[str] = None,
        latency: LatencySpec = None,
        fault_seed: int = 0,
        clock: Optional[Callable[[], _dt.datetime]] = None,
    ) -> None:
        if schema is None:
            schema_pair = demo_schema()
        elif isinstance(schema, tuple):
            schema_pair = ensure_required_entities(*_copy_pair(schema))
        else:
            schema_pair = load_schema(schema)
        self.store = SiteStore(schema_pair[0], schema_pair[1], clock=clock)
        self.host = host
        self._port = port
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()  # guards the request log, faults and identities
        self._requests: List[RequestRecord] = []
        self._request_number = 0
        self._faults: List[FaultRule] = []
        self._rng = random.Random(fault_seed)
        self._scripts: Dict[str, ScriptIdentity] = {}
        self._passwords: Dict[str, str] = {}
        self._sessions: Dict[str, Actor] = {}
        self._session_names: Dict[str, str] = {}
        self.latency: LatencySpec = latency
        self.script_name = script_name
        self.api_key = api_key or secrets.token_hex(16)
        self.add_script(script_name, self.api_key)
        self.production: Dict[str, List[Dict[str, Any]]] = {}
        if scale is not None:
            self.production = generate_production(self, scale=scale, seed=seed)

    # ------------------------------------------------------------------ lifecycle

    @property
    def mockgun(self) -> SiteStore:
        """The Mockgun-derived store behind the server (same object as :attr:`store`)."""
        return self.store

    @property
    def port(self) -> int:
        """Bound port (the requested one before the first :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL to hand to ``shotgun_api3.Shotgun``."""
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._httpd is not None

    def start(self) -> ShotgridServer:
        """Listen (again) on the same port with the same data; returns self."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._port), self)
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"shotgrid-server-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections; data is kept."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> ShotgridServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(
        self,
        script_name: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        login: Optional[str] = None,
        password: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        connect: bool = True,
        **kwargs: Any,
    ) -> Shotgun:
        """A ready ``shotgun_api3.Shotgun`` for this server (default script unless told)."""
        if login is None and kwargs.get("session_token") is None:
            script_name = script_name or self.script_name
            if api_key is None:
                api_key = self._scripts[script_name].key if script_name in self._scripts else ""
        sg = Shotgun(
            self.url, script_name, api_key, login=login, password=password, connect=False, **kwargs
        )
        sg.config.timeout_secs = timeout
        if connect:
            _ = sg.server_caps  # calls info() once, as the client does when connect=True
        return sg

    def child_argv(self, source: str, *args: str) -> List[str]:
        """The command line of a child Python that runs *source* with this site's URL,
        script name and API key as ``sys.argv[1:4]`` and *args* after them: the real
        processes of the tests that claim process safety."""
        return [sys.executable, "-c", source, self.url, self.script_name, self.api_key, *args]

    # ------------------------------------------------------------------ identities

    def add_script(
        self,
        name: str,
        key: Optional[str] = None,
        *,
        read_only: bool = False,
        hidden_fields: Optional[Mapping[str, Iterable[str]]] = None,
    ) -> ScriptIdentity:
        """Register a script user (and its ``ApiUser`` row); returns the identity.

        ``read_only`` scripts get a permission fault on writes; ``hidden_fields`` maps entity
        types to fields this script cannot see (left out of its results).
        """
        key = key or secrets.token_hex(16)
        with self.store.lock:
            existing = self.store._db["ApiUser"]
            row_id = next((i for i, r in existing.items() if r.get("firstname") == name), None)
            if row_id is None:
                row_id = self.store.bulk_insert(
                    "ApiUser",
                    [{"firstname": name, "lastname": "1.0", "description": "test script"}],
                )[0]
        identity = ScriptIdentity(
            name=name,
            key=key,
            link={"type": "ApiUser", "id": row_id},
            read_only=read_only,
            hidden_fields={t: frozenset(f) for t, f in (hidden_fields or {}).items()},
        )
        with self._lock:
            self._scripts[name] = identity
        return identity

    def add_user(self, login: str, password: str, **fields: Any) -> Dict[str, Any]:
        """Let ``login``/``password`` authenticate, creating the HumanUser if needed."""
        with self.store.lock:
            user = self._find_user(login)
            if user is None:
                data = {"login": login, **fields}
                if "name" not in data and "name" in self.store.schema["HumanUser"]:
                    full = " ".join(str(fields.get(k) or "") for k in ("firstname", "lastname"))
                    data["name"] = full.strip() or login
                user = {"type": "HumanUser", "id": self.store.bulk_insert("HumanUser", [data])[0]}
        with self._lock:
            self._passwords[login] = password
        return user

    def _find_user(self, login: str) -> Optional[Dict[str, Any]]:
        for row_id, row in self.store._db["HumanUser"].items():
            if row.get("login") == login and not row["__retired"]:
                return {"type": "HumanUser", "id": row_id}
        return None

    def _authenticate(self, auth: Any) -> Tuple[Actor, str, Optional[ScriptIdentity]]:
        if not isinstance(auth, dict):
            raise SiteError("Authentication parameters are missing", _ERR_AUTH)
        script: Optional[ScriptIdentity] = None
        session_uuid = auth.get("session_uuid")
        if "script_name" in auth:
            with self._lock:
                script = self._scripts.get(auth.get("script_name") or "")
            if script is None or not secrets.compare_digest(
                script.key, str(auth.get("script_key"))
            ):
                raise SiteError(f"Can't authenticate script '{auth.get('script_name')}'", _ERR_AUTH)
            actor, name = Actor(user=dict(script.link), session_uuid=session_uuid), script.name
        elif "user_login" in auth:
            login = str(auth.get("user_login"))
            with self._lock:
                expected = self._passwords.get(login)
            with self.store.lock:
                user = self._find_user(login)
            if (
                expected is None
                or user is None
                or not secrets.compare_digest(expected, str(auth.get("user_password")))
            ):
                raise SiteError(f"Can't authenticate user '{login}'", _ERR_AUTH)
            actor, name = Actor(user=user, session_uuid=session_uuid), login
        elif "session_token" in auth:
            with self._lock:
                session = self._sessions.get(str(auth.get("session_token")))
                name = self._session_names.get(str(auth.get("session_token")), "")
            if session is None:
                raise SiteError("Session token is invalid or expired", _ERR_AUTH)
            actor = Actor(user=session.user, session_uuid=session_uuid)
        else:
            raise SiteError("No authentication parameters given", _ERR_AUTH)
        sudo = auth.get("sudo_as_login")
        if sudo:
            if not actor.user or actor.user.get("type") != "ApiUser":
                # A site lets scripts sudo; people (password or session token) may not.
                raise SiteError(
                    f"The user does not have permission to 'sudo': {sudo}", _ERR_PERMISSION
                )
            with self.store.lock:
                target = self._find_user(str(sudo))
            if target is None:
                raise SiteError(f"sudo_as_login: no user with login '{sudo}'", _ERR_AUTH)
            actor = Actor(user=target, session_uuid=session_uuid, sudo_actual_user=actor.user)
            name = f"{sudo} (as {name})"
        return actor, name, script

    # ------------------------------------------------------------------ knobs

    def inject_fault(
        self,
        kind: str,
        *,
        method: Optional[str] = None,
        entity_type: Optional[str] = None,
        count: Optional[int] = 1,
        skip: int = 0,
        on_request: Optional[int] = None,
        rate: Optional[float] = None,
        delay: float = 1.0,
        message: str = "Injected fault",
    ) -> FaultRule:
        """Make matching requests fail; returns the rule (``.fired``, ``.remove()``).

        ``kind``: ``"500"``/``"502"``/``"503"``/``"504"`` answer with that HTTP status;
        ``"drop"`` closes the connection before doing the work, ``"drop_after"`` does the work
        and then closes without answering; ``"slow"`` answers ``delay`` seconds late;
        ``"error"`` answers a JSON-RPC fault with ``message`` (the client raises ``Fault``).
        A request matches when ``method`` (RPC or client name: ``find`` means ``read``) and
        ``entity_type`` agree, it is request number ``on_request`` (if given; the
        :attr:`RequestRecord.number`, counted from start or :meth:`reset_requests`), the
        first ``skip`` matches have passed, and a seeded draw falls under ``rate`` (if
        given).  The rule fires ``count`` times (None: forever).

        Client behaviour to plan for: ``shotgun_api3`` resends after a 502/504 (3 attempts,
        0.75 s and 1.5 s apart) and httplib2 resends once after a dropped connection, so
        those need ``count >= 3`` / ``count >= 2`` to reach the caller; a 503 or 500 is
        raised at once as ``ProtocolError``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        rule = FaultRule(
            kind=kind,
            method=METHOD_ALIASES.get(method or "", method),
            entity_type=entity_type,
            count=count,
            skip=skip,
            on_request=on_request,
            rate=rate,
            delay=delay,
            message=message,
            _server=self,
        )
        with self._lock:
            self._faults.append(rule)
        return rule

    def remove_fault(self, rule: FaultRule) -> None:
        """Withdraw one injected fault."""
        with self._lock:
            if rule in self._faults:
                self._faults.remove(rule)

    def clear_faults(self) -> None:
        """Withdraw every injected fault."""
        with self._lock:
            self._faults.clear()

    def _pick_fault(
        self, number: int, method: str, entity_type: Optional[str]
    ) -> Optional[FaultRule]:
        with self._lock:
            for rule in self._faults:
                if rule.exhausted:
                    continue
                if rule.method is not None and rule.method != method:
                    continue
                if rule.entity_type is not None and rule.entity_type != entity_type:
                    continue
                if rule.on_request is not None and rule.on_request != number:
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.rate is not None and self._rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                return rule
        return None

    def set_latency(self, latency: LatencySpec) -> None:
        """Seconds (or a callable returning seconds) added to every answer; None for none."""
        self.latency = latency

    def _latency(self) -> float:
        spec = self.latency
        if spec is None:
            return 0.0
        value = spec() if callable(spec) else spec
        return max(0.0, float(value))

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> List[RequestRecord]:
        """Snapshot of the request log (oldest first)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Number of JSON-RPC requests since start or the last :meth:`reset_requests`."""
        with self._lock:
            return self._request_number

    def reset_requests(self) -> None:
        """Empty the request log and restart request numbering at 1."""
        with self._lock:
            self._requests.clear()
            self._request_number = 0

    def count_requests(
        self, method: Optional[str] = None, entity_type: Optional[str] = None
    ) -> int:
        """How many logged requests match (``find``/``find_one`` count as ``read``)."""
        method = METHOD_ALIASES.get(method or "", method)
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (entity_type is None or r.entity_type == entity_type)
        )

    # ------------------------------------------------------------------ events and schema

    @property
    def last_event_id(self) -> int:
        """Highest EventLogEntry id so far (0 on a freshly seeded site)."""
        with self.store.lock:
            return self.store.last_event_id

    def skip_event_ids(self, count: int) -> int:
        """Leave a gap of ``count`` ids before the next event; returns the last skipped id."""
        with self.store.lock:
            return self.store.skip_event_ids(count)

    def record_schema_change(self, entity_type: str, field_name: str, **kwargs: Any) -> int:
        """Log a ``Shotgun_DisplayColumn_*`` event without touching the schema (see store)."""
        with self.store.lock:
            return self.store.record_schema_change(entity_type, field_name, **kwargs)

    def add_field(self, entity_type: str, field_name: str, data_type: str, **kwargs: Any) -> str:
        """Add a field to the live schema and log ``Shotgun_DisplayColumn_New``."""
        with self.store.lock:
            return self.store.add_field(entity_type, field_name, data_type, **kwargs)

    def update_field(
        self, entity_type: str, field_name: str, properties: Mapping[str, Any]
    ) -> None:
        """Change field properties and log ``Shotgun_DisplayColumn_Change`` per property."""
        with self.store.lock:
            self.store.update_field(entity_type, field_name, properties)

    def set_project_field_override(
        self,
        project_id: int,
        entity_type: str,
        field_name: str,
        *,
        visible: Optional[bool] = None,
        display_name: Optional[str] = None,
    ) -> None:
        """Hide/show or rename a field in one project's schema view (site view unchanged).

        ``schema_read``/``schema_field_read`` with ``project_entity`` for that project then
        report ``visible`` False (or the other display name); no event is logged.
        """
        with self.store.lock:
            self.store.set_project_field_override(
                project_id, entity_type, field_name, visible=visible, display_name=display_name
            )

    def set_project_entity_override(
        self,
        project_id: int,
        entity_type: str,
        *,
        visible: Optional[bool] = None,
        display_name: Optional[str] = None,
    ) -> None:
        """Hide/show or rename an entity type in one project's ``schema_entity_read``."""
        with self.store.lock:
            self.store.set_project_entity_override(
                project_id, entity_type, visible=visible, display_name=display_name
            )

    def clear_project_overrides(self, project_id: Optional[int] = None) -> None:
        """Forget per-project schema overrides (of one project, or all)."""
        with self.store.lock:
            self.store.clear_project_overrides(project_id)

    def log_event(self, event_type: str, **kwargs: Any) -> int:
        """Write an arbitrary EventLogEntry row (see :meth:`SiteStore.log_event`)."""
        with self.store.lock:
            return self.store.log_event(event_type, **kwargs)

    # ------------------------------------------------------------------ dispatch

    def _handle(self, body: bytes) -> _Outcome:
        started = time.time()
        clock = time.perf_counter()
        try:
            payload = json.loads(body.decode("utf-8")) if body else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _Outcome(status=400, body=b"malformed JSON", content_type="text/plain")
        method = str(payload.get("method_name") or "") if isinstance(payload, dict) else ""
        raw_params = payload.get("params") if isinstance(payload, dict) else None
        params_list = raw_params if isinstance(raw_params, list) else []
        # The client puts its auth dict first (except for info) and the call's params second.
        rest = params_list[1:] if method != "info" else params_list
        auth = params_list[0] if method != "info" and params_list else None
        params = rest[0] if rest else None
        entity_type = params.get("type") if isinstance(params, dict) else None
        with self._lock:
            self._request_number += 1
            number = self._request_number
        rule = self._pick_fault(number, method, entity_type)
        outcome = _Outcome()
        identity: Optional[str] = None
        error: Optional[str] = None
        if rule is not None and rule.kind in ("500", "502", "503", "504"):
            outcome.status = int(rule.kind)
            outcome.content_type = "text/html"
            outcome.body = f"<html><body>{rule.kind} {rule.message}</body></html>".encode()
        elif rule is not None and rule.kind == "drop":
            outcome.drop = True
        elif rule is not None and rule.kind == "error":
            error = rule.message
            outcome.body = _encode(
                {"exception": True, "message": rule.message, "error_code": _ERR_GENERIC}
            )
        else:
            try:
                result, identity = self._dispatch(method, auth, params)
                outcome.body = _encode(result)
            except SiteError as exc:
                error = str(exc)
                outcome.body = _encode(
                    {"exception": True, "message": str(exc), "error_code": exc.error_code}
                )
            except Exception as exc:  # a bug or unexpected input: answer like a site would
                LOG.debug("request %d (%s) failed", number, method, exc_info=True)
                error = f"{type(exc).__name__}: {exc}"
                outcome.body = _encode(
                    {"exception": True, "message": error, "error_code": _ERR_GENERIC}
                )
            if rule is not None and rule.kind == "drop_after":
                outcome.drop = True
            if rule is not None and rule.kind == "slow":
                outcome.delay += rule.delay
        outcome.delay += self._latency()
        record = RequestRecord(
            number=number,
            method=method,
            entity_type=entity_type,
            params=params,
            identity=identity,
            time=started,
            duration=time.perf_counter() - clock + outcome.delay,
            status=0 if outcome.drop else outcome.status,
            fault=rule.kind if rule is not None else None,
            error=error,
        )
        with self._lock:
            self._requests.append(record)
        return outcome

    def _dispatch(self, method: str, auth: Any, params: Any) -> Tuple[Any, Optional[str]]:
        if method == "info":
            return self.info(), None
        actor, name, script = self._authenticate(auth)
        store = self.store
        writes = {
            "create",
            "update",
            "delete",
            "revive",
            "batch",
            "schema_field_create",
            "schema_field_update",
            "schema_field_delete",
        }
        if script is not None and script.read_only and method in writes:
            raise SiteError(f"Script '{script.name}' may not {method}", _ERR_PERMISSION)
        p: Dict[str, Any] = params if isinstance(params, dict) else {}
        with store.lock:
            if method == "read":
                hidden: Iterable[str] = ()
                if script is not None:
                    hidden = script.hidden_fields.get(str(p.get("type")), frozenset())
                return {"results": store.rpc_read(p, hidden)}, name
            if method == "create":
                return {"results": store.rpc_create(p, actor)}, name
            if method == "update":
                return {"results": store.rpc_update(p, actor)}, name
            if method == "delete":
                return {"results": store.rpc_delete(p, actor)}, name
            if method == "revive":
                return {"results": store.rpc_revive(p, actor)}, name
            if method == "batch":
                return {"results": store.rpc_batch(params, actor)}, name
            if method == "summarize":
                return {"results": store.rpc_summarize(p)}, name
            if method == "query_display_name_cache":
                return {"results": store.rpc_text_search(p)}, name
            if method == "schema_read":
                return {"results": store.rpc_schema_read(p)}, name
            if method == "schema_entity_read":
                return {"results": store.rpc_schema_entity_read(p)}, name
            if method == "schema_field_read":
                return {"results": store.rpc_schema_field_read(p)}, name
            if method == "schema_field_create":
                props = {x["property_name"]: x["value"] for x in p.get("properties") or []}
                display = props.pop("name", None) or p.get("display_name")
                field_name = "sg_" + "".join(
                    c if c.isalnum() else "_" for c in str(display).lower()
                )
                store.add_field(
                    str(p.get("type")),
                    field_name,
                    str(p.get("data_type")),
                    display_name=display,
                    properties=props,
                    actor=actor,
                )
                return {"results": field_name}, name
            if method == "schema_field_update":
                props = {x["property_name"]: x["value"] for x in p.get("properties") or []}
                project = store._schema_project(p)
                store.update_field(
                    str(p.get("type")), str(p.get("field_name")), props, actor, project
                )
                return {"results": True}, name
            if method == "schema_field_delete":
                store.delete_field(str(p.get("type")), str(p.get("field_name")), actor)
                return {"results": True}, name
        if method == "get_session_token":
            token = secrets.token_hex(16)
            with self._lock:
                self._sessions[token] = actor
                self._session_names[token] = name
            return {"results": {"session_id": token}}, name
        if method in ("update_project_last_accessed", "user_subscriptions_create"):
            return {"results": True}, name
        if method == "preferences_read":
            return {"results": {}}, name
        raise SiteError(f"Unknown method '{method}'", _ERR_GENERIC)

    def info(self) -> Dict[str, Any]:
        """What the ``info`` RPC answers."""
        major, minor, patch = SERVER_VERSION
        return {
            "version": [major, minor, patch],
            "full_version": [major, minor, patch, 0],
            "s3_uploads_enabled": False,
            "s3_direct_uploads_enabled": False,
            "user_authentication_method": "default",
            "api_max_entities_per_page": MAX_PAGE,
            "totango_site_id": None,
            "totango_site_name": None,
            "sgcache_layers_test_server": True,
        }

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ShotgridServer {self.url} {state}>"


def _encode(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), default=_json_default
    ).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, _dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _copy_pair(pair: Tuple[Schema, Schema]) -> Tuple[Schema, Schema]:
    return json.loads(json.dumps(pair[0])), json.loads(json.dumps(pair[1]))
