"""A real HTTP receiver for the webhook tests: a ThreadingHTTPServer on 127.0.0.1 that records
every request and answers by a plan (fail the next N requests with a status, a platform error
code, a redirect, a hang past the client's timeout, or hold the request open until released)."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# what each platform answers on success (the shapes their documentation shows)
OK_BODIES = {
    "standard": b"",
    "wecom": b'{"errcode":0,"errmsg":"ok"}',
    "dingtalk": b'{"errcode":0,"errmsg":"ok"}',
    "feishu": b'{"code":0,"msg":"success","data":{}}',
    "slack": b"ok",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 refuses connections under concurrent deliverers


@dataclass
class Received:
    at: float  # time.monotonic() when the body was read
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Plan:
    kind: str  # "status", "errcode", "redirect", "hang", "hold"
    value: Any = None


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    ok_body: bytes = b""
    requests: list[Received] = field(default_factory=list)
    plans: deque[Plan] = field(default_factory=deque)
    released: threading.Event = field(default_factory=threading.Event)
    held: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def fail_next(self, n: int, kind: str, value: Any = None) -> None:
        with self.lock:
            self.plans.extend(Plan(kind, value) for _ in range(n))

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """The first n requests, once there are n (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.requests)} requests arrived, expected {n}"
                self.changed.wait(left)
            return list(self.requests[:n])

    async def arrived(self, n: int, within: float = 10.0) -> list[Received]:
        """wait_for without blocking the event loop (the deliverers under test run on it)."""
        return await asyncio.to_thread(self.wait_for, n, within)

    def _next_plan(self) -> Plan | None:
        with self.lock:
            return self.plans.popleft() if self.plans else None

    def _record(self, r: Received) -> None:
        with self.changed:
            self.requests.append(r)
            self.changed.notify_all()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            parts = urlsplit(self.path)
            plan = receiver._next_plan()
            receiver._record(Received(
                time.monotonic(), parts.path, parse_qs(parts.query), parts.query,
                {k.lower(): v for k, v in self.headers.items()}, body))
            if plan is None:
                self._send(200, receiver.ok_body)
            elif plan.kind == "status":
                self._send(int(plan.value), b"receiver says no")
            elif plan.kind == "retry-after":
                self._send(503, b"busy", {"retry-after": str(plan.value)})
            elif plan.kind == "errcode":
                self._send(200, json.dumps(plan.value).encode())
            elif plan.kind == "redirect":
                self._send(302, b"", {"location": str(plan.value)})
            elif plan.kind == "hang":
                time.sleep(float(plan.value))
                self._send(200, receiver.ok_body)
            elif plan.kind == "hold":
                receiver.held.release()
                receiver.released.wait(30)
                self._send(200, receiver.ok_body)

    return Handler


@contextmanager
def receiving(ok_body: bytes = b"", tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 (https with `tls`, a server context), for the block."""
    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(server, ok_body)
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
