"""Throw-away ``redis-server`` processes for tests and benchmarks.

Each listens on free loopback ports, keeps nothing on disk (its working
directory is a temporary one removed on stop) and is stopped on exit::

    with RedisServer() as server:
        cache = RedisCache(server.url)

:class:`RedisClusterServer` runs a three-primary Redis Cluster and
:class:`RedisSentinelServer` a master watched by one Sentinel, so the cluster
and Sentinel code paths are tested against the real thing.  Talking to the
servers needs no client library: a few raw RESP commands are enough.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import IO, Any, Optional, Union

__all__ = [
    "RedisClusterServer",
    "RedisSentinelServer",
    "RedisServer",
    "RedisServerError",
    "redis_command",
]

#: Offset of a cluster node's bus port from its client port (Redis' own default).
_BUS_OFFSET = 10000
_SLOTS = 16384


class RedisServerError(RuntimeError):
    """A redis-server could not be started or answered with an error."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _free_cluster_port(host: str) -> int:
    """Return a free port whose cluster bus port (``port + 10000``) is free too."""
    for _attempt in range(200):
        port = _free_port(host)
        if port + _BUS_OFFSET <= 65535 and _port_is_free(host, port + _BUS_OFFSET):
            return port
    raise RedisServerError("found no free port pair for a cluster node")


# -- a minimal RESP client ---------------------------------------------------------


def _encode_command(args: tuple[Union[str, bytes, int], ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: IO[bytes]) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise RedisServerError("the Redis server closed the connection")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode("utf-8", "replace")
    if kind == b"-":
        raise RedisServerError(body.decode("utf-8", "replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        length = int(body)
        if length < 0:
            return None
        data = stream.read(length + 2)
        return data[:-2]
    if kind == b"*":
        count = int(body)
        if count < 0:
            return None
        return [_read_reply(stream) for _ in range(count)]
    raise RedisServerError(f"unexpected Redis reply {line[:40]!r}")


def redis_command(host: str, port: int, *args: Union[str, bytes, int], timeout: float = 5.0) -> Any:
    """Send one command to ``host:port`` and return its decoded RESP2 reply.

    Error replies raise :class:`RedisServerError`; bulk strings come back as ``bytes``.
    """
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(_encode_command(args))
        with conn.makefile("rb") as stream:
            return _read_reply(stream)


# -- processes ---------------------------------------------------------------------


class _Process:
    """One redis-server process with its log file, in a directory of its own."""

    def __init__(self, args: list[str], directory: str, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.directory = directory
        self.log_path = os.path.join(directory, "redis.log")
        self._log: Optional[IO[bytes]] = open(self.log_path, "wb")  # noqa: SIM115 - closed in end()
        self._process: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            args,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ping(self, timeout: float = 0.5) -> bool:
        try:
            return bool(redis_command(self.host, self.port, "PING", timeout=timeout) == "PONG")
        except (OSError, RedisServerError):
            return False

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the process answers ``PING``; False if it died or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            if self.ping():
                return True
            time.sleep(0.02)
        return False

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                return log.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def end(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisServerError(f"{name} was not found on PATH")
    return path


def _server_args(executable: str, host: str, port: int, directory: str) -> list[str]:
    return [
        executable,
        "--port", str(port),
        "--bind", host,
        "--save", "",
        "--appendonly", "no",
        "--dir", directory,
        "--daemonize", "no",
    ]  # fmt: skip


class RedisServer:
    """Start and stop a private ``redis-server`` on ``127.0.0.1`` and a free port."""

    def __init__(
        self,
        executable: str = "redis-server",
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
    ) -> None:
        self.executable = executable
        self.host = host
        self.startup_timeout = startup_timeout
        self.port: Optional[int] = None
        self.directory: Optional[str] = None
        self._process: Optional[_Process] = None

    @staticmethod
    def available(executable: str = "redis-server") -> bool:
        """Whether the redis-server binary is on ``PATH``."""
        return shutil.which(executable) is not None

    @property
    def url(self) -> str:
        """``redis://HOST:PORT/0`` of the running server."""
        if self.port is None:
            raise RedisServerError("the Redis server is not running")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.alive

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers ``PING`` now."""
        if self.port is None:
            return False
        try:
            return bool(redis_command(self.host, self.port, "PING", timeout=timeout) == "PONG")
        except (OSError, RedisServerError):
            return False

    def start(self, port: Optional[int] = None) -> RedisServer:
        """Start the server and wait until it answers ``PING``.

        *port* makes it listen there, such as the port it had before :meth:`stop` (a Redis
        restarted with its data lost, at the address its clients know); by default, a free
        port.
        """
        if self.running:
            return self
        executable = _executable(self.executable)
        self.directory = tempfile.mkdtemp(prefix="sgcache-redis-")
        last_log = ""
        for _attempt in range(3):  # another process may take the free port first
            self.port = _free_port(self.host) if port is None else port
            args = _server_args(executable, self.host, self.port, self.directory)
            self._process = _Process(args, self.directory, self.host, self.port)
            if self._process.wait_ready(self.startup_timeout):
                return self
            last_log = self._process.log_tail()
            self._end_process()
        self._remove_directory()
        self.port = None
        raise RedisServerError(f"redis-server did not start: {last_log}")

    def flush(self) -> None:
        """Empty every database of the server."""
        if self.port is None:
            raise RedisServerError("the Redis server is not running")
        redis_command(self.host, self.port, "FLUSHALL")

    def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.end()

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def stop(self) -> None:
        """Stop the server and remove its directory (the url stays as it was)."""
        self._end_process()
        self._remove_directory()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer({self.host}:{self.port}, {state})"


class RedisClusterServer:
    """A private Redis Cluster of *size* primaries (no replicas) on loopback ports.

    The 16384 hash slots are split evenly with ``CLUSTER ADDSLOTS`` and the nodes
    joined with ``CLUSTER MEET`` (no ``redis-cli`` needed); :meth:`start`
    returns once every node reports ``cluster_state:ok``.
    """

    def __init__(
        self,
        size: int = 3,
        executable: str = "redis-server",
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.size = size
        self.executable = executable
        self.host = host
        self.startup_timeout = startup_timeout
        self.ports: list[int] = []
        self.directory: Optional[str] = None
        self._processes: list[_Process] = []

    available = staticmethod(RedisServer.available)

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node."""
        return [(self.host, port) for port in self.ports]

    @property
    def url(self) -> str:
        """``redis+cluster://HOST:PORT,HOST:PORT,...`` naming every node."""
        if not self.ports:
            raise RedisServerError("the Redis cluster is not running")
        return "redis+cluster://" + ",".join(f"{self.host}:{port}" for port in self.ports)

    @property
    def running(self) -> bool:
        """Whether every node process is alive."""
        return bool(self._processes) and all(process.alive for process in self._processes)

    def slot_ranges(self) -> list[tuple[int, int]]:
        """The inclusive ``(first, last)`` slot range each node serves, in node order."""
        ranges = []
        for index in range(self.size):
            first = index * _SLOTS // self.size
            last = (index + 1) * _SLOTS // self.size - 1
            ranges.append((first, last))
        return ranges

    def start(self) -> RedisClusterServer:
        """Start the nodes, join them into one cluster and wait until it is ready."""
        if self.running:
            return self
        executable = _executable(self.executable)
        self.directory = tempfile.mkdtemp(prefix="sgcache-redis-cluster-")
        try:
            for index in range(self.size):
                self._start_node(executable, index)
            self._form_cluster()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, executable: str, index: int) -> None:
        assert self.directory is not None
        directory = os.path.join(self.directory, f"node{index}")
        os.mkdir(directory)
        last_log = ""
        for _attempt in range(3):  # another process may take the free ports first
            port = _free_cluster_port(self.host)
            args = _server_args(executable, self.host, port, directory) + [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "15000",
            ]  # fmt: skip
            process = _Process(args, directory, self.host, port)
            if process.wait_ready(self.startup_timeout):
                self._processes.append(process)
                self.ports.append(port)
                return
            last_log = process.log_tail()
            process.end()
            stale = os.path.join(directory, "nodes.conf")
            if os.path.exists(stale):
                os.remove(stale)
        raise RedisServerError(f"cluster node {index} did not start: {last_log}")

    def _form_cluster(self) -> None:
        for index, ((first, last), port) in enumerate(zip(self.slot_ranges(), self.ports)):
            redis_command(self.host, port, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
            redis_command(self.host, port, "CLUSTER", "ADDSLOTS", *range(first, last + 1))
        for port in self.ports[1:]:
            redis_command(self.host, self.ports[0], "CLUSTER", "MEET", self.host, port)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if all(self._node_ready(port) for port in self.ports):
                return
            time.sleep(0.05)
        tails = "\n".join(process.log_tail()[-500:] for process in self._processes)
        raise RedisServerError(f"the Redis cluster did not reach cluster_state:ok: {tails}")

    def _node_ready(self, port: int) -> bool:
        info = self.cluster_info(port)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(self.size)
            and info.get("cluster_slots_ok") == str(_SLOTS)
        )

    def cluster_info(self, port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of the node on *port*, as a dict."""
        reply = redis_command(self.host, port, "CLUSTER", "INFO")
        text = reply.decode("utf-8") if isinstance(reply, bytes) else str(reply)
        info = {}
        for line in text.splitlines():
            name, _, value = line.partition(":")
            info[name.strip()] = value.strip()
        return info

    def stop_node(self, index: int) -> None:
        """Stop the process of node *index* only (to test a cluster with a node down)."""
        self._processes[index].end()

    def flush(self) -> None:
        """Empty every node."""
        for port in self.ports:
            redis_command(self.host, port, "FLUSHALL")

    def stop(self) -> None:
        """Stop every node and remove the directories (ports stay as they were)."""
        processes, self._processes = self._processes, []
        for process in processes:
            process.end()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisClusterServer({self.host}:{self.ports}, {state})"


class RedisSentinelServer:
    """A private master ``redis-server`` and one ``redis-server --sentinel`` watching it.

    The Sentinel knows the master as *service_name* (quorum 1); :attr:`url` is
    the ``redis+sentinel://`` URL that :class:`~sgcache_layers.redis.RedisCache` takes.
    """

    def __init__(
        self,
        service_name: str = "mymaster",
        executable: str = "redis-server",
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
    ) -> None:
        self.service_name = service_name
        self.executable = executable
        self.host = host
        self.startup_timeout = startup_timeout
        self.master = RedisServer(executable, host, startup_timeout)
        self.sentinel_port: Optional[int] = None
        self.directory: Optional[str] = None
        self._sentinel: Optional[_Process] = None

    available = staticmethod(RedisServer.available)

    @property
    def url(self) -> str:
        """``redis+sentinel://HOST:PORT/SERVICE/0`` of the Sentinel."""
        if self.sentinel_port is None:
            raise RedisServerError("the Redis Sentinel is not running")
        return f"redis+sentinel://{self.host}:{self.sentinel_port}/{self.service_name}/0"

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of the Sentinel, as ``redis.sentinel.Sentinel`` takes it."""
        if self.sentinel_port is None:
            raise RedisServerError("the Redis Sentinel is not running")
        return [(self.host, self.sentinel_port)]

    @property
    def running(self) -> bool:
        """Whether the master and the Sentinel are alive."""
        return self.master.running and self._sentinel is not None and self._sentinel.alive

    def start(self) -> RedisSentinelServer:
        """Start the master, then the Sentinel, and wait until it reports the master."""
        if self.running:
            return self
        executable = _executable(self.executable)
        try:
            self.master.start()
            self.directory = tempfile.mkdtemp(prefix="sgcache-redis-sentinel-")
            self._start_sentinel(executable)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, executable: str) -> None:
        assert self.directory is not None and self.master.port is not None
        config = os.path.join(self.directory, "sentinel.conf")
        last_log = ""
        for _attempt in range(3):  # another process may take the free port first
            port = _free_port(self.host)
            with open(config, "w", encoding="utf-8") as handle:
                handle.write(
                    f"port {port}\n"
                    f"bind {self.host}\n"
                    f'dir "{self.directory}"\n'
                    f"sentinel monitor {self.service_name} {self.host} {self.master.port} 1\n"
                    f"sentinel down-after-milliseconds {self.service_name} 5000\n"
                )
            process = _Process([executable, config, "--sentinel"], self.directory, self.host, port)
            if process.wait_ready(self.startup_timeout) and self._knows_master(port):
                self._sentinel = process
                self.sentinel_port = port
                return
            last_log = process.log_tail()
            process.end()
        raise RedisServerError(f"redis-server --sentinel did not start: {last_log}")

    def _knows_master(self, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        expected = [self.host.encode(), str(self.master.port).encode()]
        while time.monotonic() < deadline:
            try:
                reply = redis_command(
                    self.host, port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                )
            except (OSError, RedisServerError):
                reply = None
            if reply == expected:
                return True
            time.sleep(0.02)
        return False

    def flush(self) -> None:
        """Empty the master."""
        self.master.flush()

    def stop(self) -> None:
        """Stop the Sentinel and the master and remove their directories."""
        process, self._sentinel = self._sentinel, None
        if process is not None:
            process.end()
        self.master.stop()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> RedisSentinelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisSentinelServer({self.host}:{self.sentinel_port}, {state})"
