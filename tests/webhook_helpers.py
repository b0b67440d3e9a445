"""Helpers for the webhook tests: settings with short timings, events, a store and deliverers
on the test's Redis, and waiting on a condition with a bounded timeout."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.asyncio as aredis

from app.events.model import EventPublic
from app.settings import Settings
from app.webhooks.deliverer import Deliverer
from app.webhooks.models import DeliveryPublic, WebhookCreate, WebhookPublic
from app.webhooks.store import DEFAULT_LIMITS, Limits, WebhookStore

T = TypeVar("T")

FAST = {
    "webhook_allow_private": True,
    "webhook_retry_base_s": 0.1,
    "webhook_retry_max_delay_s": 5.0,
    "webhook_timeout_s": 2.0,
    "webhook_connect_timeout_s": 1.0,
    "webhook_lease_s": 4.0,
    "webhook_max_age_s": 60.0,
}


def settings(redis_url: str, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, **{**FAST, **overrides})


def event(type_: str = "pool.low", **fields: Any) -> EventPublic:
    base: dict[str, Any] = {
        "id": "ev_" + secrets.token_hex(8), "type": type_, "at": datetime.now(UTC),
        "pool_id": "spring", "pool_name": "Spring campaign",
    }
    if type_ == "pool.low":
        base["data"] = {"reason": "rate", "remaining": 312, "capacity": 1000,
                        "percent_left": 31.2, "minutes_left": 47, "rate_per_min": 6.6}
    base.update(fields)
    return EventPublic.model_validate(base)


async def open_store(client: aredis.Redis, *, allow_private: bool = True,
                     limits: Limits = DEFAULT_LIMITS) -> WebhookStore:
    return await WebhookStore.open(client, allow_private=allow_private, limits=limits)


async def add(store: WebhookStore, url: str, **fields: Any) -> WebhookPublic:
    return await store.create(WebhookCreate.model_validate({"url": url, **fields}))


async def eventually(check: Callable[[], Awaitable[T | None]], within: float = 10.0,
                     what: str = "the condition") -> T:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        await asyncio.sleep(0.02)


async def delivery_in(store: WebhookStore, wid: str, status: str,
                      within: float = 10.0) -> DeliveryPublic:
    async def check() -> DeliveryPublic | None:
        found = await store.deliveries(wid, limit=1, status=status)
        return found[0] if found else None

    return await eventually(check, within, f"a {status} delivery of {wid}")


@contextlib.asynccontextmanager
async def running(deliverer: Deliverer) -> AsyncIterator[Deliverer]:
    """The deliverer's run_forever as a task for the block, then cancelled and closed."""
    task = asyncio.create_task(deliverer.run_forever())
    try:
        yield deliverer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await deliverer.aclose()
