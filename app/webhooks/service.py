"""What the app and the CLI hold: the store, a sender for test deliveries, and (in the app) the
background deliverer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import InvalidInput
from app.events.model import LANGUAGES, EventPublic
from app.settings import Settings
from app.store.pools import AnyRedis
from app.webhooks.deliverer import Deliverer
from app.webhooks.formats import render, test_message
from app.webhooks.models import Attempt
from app.webhooks.sender import Sender
from app.webhooks.store import WebhookStore


async def open_store(client: AnyRedis, settings: Settings) -> WebhookStore:
    return await WebhookStore.open(
        client, allow_private=settings.webhook_allow_private,
        allow_http=settings.allow_http_targets,
    )


async def send_test(store: WebhookStore, sender: Sender, webhook_id: str,
                    language: str = "en") -> Attempt:
    """Deliver a test message to the webhook now: once, no retries, nothing stored (a disabled
    webhook too: testing it before turning it on is the point)."""
    if language not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}",
                           {"language": language})
    webhook = await store.record(webhook_id)
    message = test_message(webhook.id, webhook.name, language)
    outgoing = render(webhook.format, webhook.url, webhook.secret, message, now=time.time())
    return (await sender.send(outgoing)).attempt


@dataclass
class Webhooks:
    """The app's webhooks: opened by the lifespan after the runtime, closed before it."""

    store: WebhookStore
    sender: Sender
    deliverer: Deliverer | None
    task: asyncio.Task[None] | None

    @classmethod
    def start(cls, client: AnyRedis, settings: Settings, *, shebang: bool) -> Webhooks:
        """The store and sender, and the deliverer as a task of the running loop (unless
        LIVECODE_WEBHOOK_DELIVER is off)."""
        store = WebhookStore(
            client, shebang=shebang, allow_private=settings.webhook_allow_private,
            allow_http=settings.allow_http_targets,
        )
        deliverer = task = None
        if settings.webhook_deliver:
            deliverer = Deliverer(store, settings)
            task = asyncio.create_task(deliverer.run_forever(), name="webhook-deliverer")
        return cls(store, Sender(settings), deliverer, task)

    async def enqueue_all(self, events: Sequence[tuple[EventPublic, str]]) -> None:
        """The event dispatcher's sink (app/events/scheduler.py): every new event with its
        pool's language, once per matching webhook however often it comes."""
        for event, language in events:
            await self.store.enqueue(event, language)

    async def test(self, webhook_id: str, language: str = "en") -> Attempt:
        return await send_test(self.store, self.sender, webhook_id, language)

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()  # in-flight deliveries keep their leases: another process retries
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.task, 10)
        if self.deliverer is not None:
            await self.deliverer.aclose()
        await self.sender.aclose()
