"""A limit on request heads for uvicorn's httptools protocol, which has none of its own.

httptools joins a header value's pieces with `bytes +=` as they arrive, so a 10 MB header was
held whole (and copied as it grew) before the app saw it; freed, those buffers stayed in the
worker (glibc keeps them). This protocol counts the bytes of each request head as they are
received and answers 431 with `Connection: close` once they pass the limit, before the rest is
read: a connection holds at most the limit plus one socket read (uvloop reads up to 256 KiB) of
head. The limit is uvicorn's own `h11_max_incomplete_event_size` option, the same bound its h11
protocol puts on a head, so both implementations refuse the same requests.

`livecode serve` passes it as `http="app.httplimits:HeadLimitedHttpToolsProtocol"`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

DEFAULT_MAX_HEAD_BYTES = 64 * 1024


class _HeadTooLarge(Exception):
    pass


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._head_bytes = 0  # received since the current head began (whole reads)
        self._in_body = False
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head:
                self._past_limit(data)
                return
        super().data_received(data)

    def _past_limit(self, data: bytes) -> None:
        """A read that takes the head's count past the limit. It may still end the head within
        the limit and go on with the body: the parser decides (on_headers_complete checks the
        head's exact size), and only a head still incomplete after it is refused."""
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn's own data_received
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._refused:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if not self._in_body and self._head_bytes > self.max_head:
            self._refuse()

    def on_headers_complete(self) -> None:
        if self._head_bytes > self.max_head and self._head_size() > self.max_head:
            self._refuse()
            raise _HeadTooLarge  # stops the parser: nothing of this request reaches the app
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._head_bytes = 0
        super().on_message_complete()

    def _head_size(self) -> int:
        """The request line and headers as received (without the method and line ends)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse(self) -> None:
        self._refused = True
        body = json.dumps({"error": {
            "code": "request_header_fields_too_large",
            "message": f"request line and headers larger than {self.max_head} bytes",
            "details": {"max_bytes": self.max_head},
        }}).encode()
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
