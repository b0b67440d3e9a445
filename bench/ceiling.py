"""The ceiling: a bare ASGI app that only answers 302, with the same headers as a scan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

_START = {
    "type": "http.response.start",
    "status": 302,
    "headers": [
        (b"location", b"https://chat.example.com/g1"),
        (b"cache-control", b"no-store"),
        (b"content-length", b"0"),
    ],
}
_BODY = {"type": "http.response.body", "body": b""}


Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_START)
    await send(_BODY)
