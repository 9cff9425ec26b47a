"""A throw-away ``redis-server`` for tests and benchmarks.

It listens on a free loopback port, keeps nothing on disk (its working
directory is a temporary one removed on stop) and is stopped on exit::

    with RedisServer() as server:
        cache = RedisCache(server.url)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import IO, Optional

__all__ = ["RedisServer", "RedisServerError"]


class RedisServerError(RuntimeError):
    """The redis-server could not be started."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


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
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

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
        return self._process is not None and self._process.poll() is None

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers ``PING`` now."""
        if self.port is None:
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``."""
        if self.running:
            return self
        executable = shutil.which(self.executable)
        if executable is None:
            raise RedisServerError(f"{self.executable} was not found on PATH")
        self.directory = tempfile.mkdtemp(prefix="sgcache-redis-")
        last_log = ""
        for _attempt in range(3):
            self.port = _free_port(self.host)
            log_path = os.path.join(self.directory, "redis.log")
            self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
            self._process = subprocess.Popen(
                [
                    executable,
                    "--port", str(self.port),
                    "--bind", self.host,
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self.directory,
                    "--daemonize", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline and self._process.poll() is None:
                if self.ping():
                    return self
                time.sleep(0.02)
            self._end_process()
            with open(log_path, "rb") as log:
                last_log = log.read()[-2000:].decode("utf-8", "replace")
        self._remove_directory()
        self.port = None
        raise RedisServerError(f"redis-server did not start: {last_log}")

    def _end_process(self) -> None:
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
