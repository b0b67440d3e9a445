"""Delivery: `enqueue` turns an event into deliveries; `Deliverer` sends them.

Any number of deliverers (app workers, instances) run at once. Each claims due deliveries with
a lease in one Lua call, so a delivery is attempted by one of them at a time; one killed
mid-delivery leaves its lease to expire and another retries it. Delivery is at least once, with
the event id as the idempotency key. A failed attempt is retried with exponential backoff and
jitter until the delivery is `webhook_max_age_s` old, then it is a dead letter. Everything is in
Redis: pending deliveries survive restarts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import weakref
from datetime import UTC, datetime

from app import metrics
from app.events.model import EventPublic
from app.settings import Settings
from app.store.pools import AnyRedis
from app.tasks import raise_if_cancelled
from app.webhooks.formats import event_message, render
from app.webhooks.models import Attempt
from app.webhooks.sender import Outcome, Sender
from app.webhooks.store import DEFAULT_LIMITS, Claimed, Limits, WebhookStore, parse_event

log = logging.getLogger("livecode.webhooks")

_stores: weakref.WeakKeyDictionary[AnyRedis, WebhookStore] = weakref.WeakKeyDictionary()


async def enqueue(redis: AnyRedis, event: EventPublic, language: str) -> list[str]:
    """One delivery per enabled webhook whose event types and pools match `event`, at most once
    per (webhook, event): enqueuing an event again (after a crash) creates nothing new.
    `language` (zh-CN or en) is the pool's, for the chat formats. Returns the new delivery ids.
    """
    store = _stores.get(redis)
    if store is None:
        store = _stores[redis] = await WebhookStore.open(redis)
    return await store.enqueue(event, language)


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The delay after the `attempts`-th failed attempt (1, 2, ...): base * 2^(attempts-1),
    capped, with "equal jitter" (between half and all of it), so delays still grow."""
    full = min(cap_s, base_s * 2.0 ** min(max(attempts - 1, 0), 60))
    return full / 2 + rng.uniform(0, full / 2)


class Deliverer:
    def __init__(
        self,
        store: WebhookStore,
        settings: Settings,
        *,
        concurrency: int = 16,
        poll_s: float = 1.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.store = store
        self.settings = settings
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.sender = Sender(settings, verify=verify)
        self.rng = random.Random()
        self.attempts = 0  # attempts this deliverer has made

    @classmethod
    async def open(
        cls, client: AnyRedis, settings: Settings, *, limits: Limits = DEFAULT_LIMITS,
        concurrency: int = 16, poll_s: float = 1.0, verify: ssl.SSLContext | bool = True,
    ) -> Deliverer:
        store = await WebhookStore.open(client, limits=limits)
        return cls(store, settings, concurrency=concurrency, poll_s=poll_s, verify=verify)

    async def aclose(self) -> None:
        await self.sender.aclose()

    async def run_once(self) -> int:
        """Claim the due deliveries (up to `concurrency`), send them at once, record each
        result. Returns how many were attempted."""
        claimed = await self.store.claim(
            lease_s=self.settings.webhook_lease_s, limit=self.concurrency,
            max_age_s=self.settings.webhook_max_age_s,
        )
        if claimed:
            await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    async def run_forever(self) -> None:
        """run_once until cancelled: at once again after a full batch, else when the next
        delivery is due (at most `poll_s` later). Redis errors are logged and waited out."""
        pause = self.poll_s
        while True:
            try:
                batch = await self.run_once()
                raise_if_cancelled()
                if batch >= self.concurrency:
                    continue
                due_in = await self.store.next_due_in()
                raise_if_cancelled()
                pause = self.poll_s
                await asyncio.sleep(self.poll_s if due_in is None else min(due_in, self.poll_s))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook deliverer: a round failed; retrying in %.1f s", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

    async def _deliver(self, c: Claimed) -> None:
        try:
            event = parse_event(c.event_json)
            if c.webhook is None or event is None:
                why = "the webhook is gone" if c.webhook is None else "the event cannot be read"
                await self._record(c, _failed(f"not sent: {why}"), final=True)
                return
            outgoing = render(c.webhook.format, c.webhook.url, c.webhook.secret,
                              event_message(event, c.language), now=time.time())
            outcome = await self.sender.send(outgoing)
            self.attempts += 1
            await self._record(c, outcome.attempt, outcome=outcome)
        except asyncio.CancelledError:
            raise  # the lease runs out and another deliverer takes it over
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", c.claim.delivery_id)

    async def _record(
        self, c: Claimed, attempt: Attempt, *, outcome: Outcome | None = None, final: bool = False
    ) -> None:
        s = self.settings
        delay = None
        if not final:
            delay = backoff_s(c.attempts + 1, s.webhook_retry_base_s, s.webhook_retry_max_delay_s,
                              self.rng)
            if outcome is not None and outcome.retry_after_s is not None:
                delay = max(delay, min(outcome.retry_after_s, s.webhook_retry_max_delay_s))
        metrics.webhook_attempt[attempt.ok].inc()
        result = await self.store.record_attempt(
            c.claim, attempt, delay_s=delay, max_age_s=s.webhook_max_age_s)
        level = logging.INFO if result in ("delivered", "retry") else logging.WARNING
        log.log(level, "webhook %s delivery %s: %s%s", c.claim.webhook_id, c.claim.delivery_id,
                result, f" ({attempt.error})" if attempt.error else "")


def _failed(error: str) -> Attempt:
    return Attempt(at=datetime.now(UTC), status=None, latency_ms=0, ok=False, error=error)
