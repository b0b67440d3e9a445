"""A client that goes away while its scan is answered: the answer is never started twice,
nothing is logged as a crash, and the scan is counted as `disconnected`."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from app import metrics
from app.main import create_app
from app.settings import Settings
from tests.helpers import counts, open_core, seed

MOBILE = b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148 Safari/604.1"


def scope(path: str, method: str = "GET", user_agent: bytes = MOBILE) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": b"",
            "headers": [(b"host", b"lc.test"), (b"user-agent", user_agent)],
            "client": ("127.0.0.1", 1)}


class ClosedAfterStart:
    """An ASGI send whose connection breaks once the response has started, as a transport
    does when the client resets it (uvicorn then raises from its write)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body":
            raise ConnectionResetError("client went away")


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


@pytest.mark.parametrize("path, user_agent", [
    ("/s/pool-a", MOBILE),  # a 302 to a group
    ("/s/no-such-pool", MOBILE),  # the 404 page
    ("/s/pool-a", b"Slackbot-LinkExpanding 1.0"),  # the bot page
])
async def test_a_broken_answer_is_never_started_twice(
    redis_url: str, caplog: pytest.LogCaptureFixture, path: str, user_agent: bytes
) -> None:
    async with open_core(redis_url) as core:
        await seed(core.store)
        app = create_app(Settings(redis_url=redis_url))
        async with LifespanManager(app):  # type: ignore[arg-type]
            metrics.scans.flush()
            before = metrics.SCANS.labels("disconnected")._value.get()
            send = ClosedAfterStart()
            with caplog.at_level(logging.INFO, logger="livecode"):
                await app(scope(path, user_agent=user_agent), receive, send)  # type: ignore[arg-type]
            starts = [m for m in send.messages if m["type"] == "http.response.start"]
            assert len(starts) == 1, send.messages
            assert starts[0]["status"] != 503
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            metrics.scans.flush()
            assert metrics.SCANS.labels("disconnected")._value.get() == before + 1
        if path == "/s/pool-a" and user_agent == MOBILE:
            assert sum((await counts(core.redis)).values()) == 1  # the allocation stands
