"""Webhook delivery end to end: a real Redis, real HTTP receivers on 127.0.0.1, real deliverers
(in this process, in other processes, and one killed with SIGKILL mid-delivery)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
import redis.asyncio as aredis
from standardwebhooks import Webhook, WebhookVerificationError

from app.store import keys
from app.webhooks.deliverer import Deliverer, backoff_s, enqueue
from app.webhooks.store import Limits, WebhookStore
from tests.webhook_helpers import (
    add,
    delivery_in,
    event,
    eventually,
    open_store,
    running,
    settings,
)
from tests.webhook_receiver import OK_BODIES, Receiver, receiving

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def store(client: aredis.Redis) -> WebhookStore:
    return await open_store(client)


async def deliverer(redis_url: str, client: aredis.Redis, **overrides: object) -> Deliverer:
    return await Deliverer.open(client, settings(redis_url, **overrides), poll_s=0.05)


async def test_standard_delivery_is_signed_as_the_spec_says(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    hook = await add(store, rx.url("/std"), name="ops")
    assert hook.secret and hook.secret.startswith("whsec_")
    ev = event()
    assert await enqueue(client, ev, "en")
    d = await deliverer(redis_url, client)
    assert await d.run_once() == 1
    await d.aclose()
    (req,) = rx.wait_for(1)
    # verified by the standardwebhooks package, not by our code
    payload = Webhook(hook.secret).verify(req.body, req.headers)
    assert req.headers["webhook-id"] == ev.id
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 30
    assert req.headers["webhook-signature"].startswith("v1,")
    assert req.headers["content-type"].startswith("application/json")
    assert payload == {"type": "pool.low", "timestamp": ev.at.isoformat().replace("+00:00", "Z"),
                       "data": ev.model_dump(mode="json")}
    with pytest.raises(WebhookVerificationError):  # the check is real: a changed body fails
        Webhook(hook.secret).verify(req.body.replace(b"312", b"313"), req.headers)
    delivered = (await store.deliveries(hook.id))[0]
    assert delivered.status == "delivered" and delivered.attempts_total == 1
    assert delivered.attempts[0].status == 200 and delivered.attempts[0].ok


async def test_enqueue_is_idempotent_per_webhook_and_event(
    client: aredis.Redis, rx: Receiver
) -> None:
    store = await open_store(client, limits=Limits(delivered_kept=1))
    a = await add(store, rx.url("/a"))
    b = await add(store, rx.url("/b"), format="slack")
    ev = event()
    first = await enqueue(client, ev, "en")
    assert len(first) == 2
    assert await enqueue(client, ev, "en") == []
    assert await store.enqueue(ev, "zh-CN") == []
    for hook in (a, b):
        assert len(await store.deliveries(hook.id)) == 1
    assert await client.zcard(keys.WEBHOOKS_DUE) == 2
    # still a no-op once the delivery is delivered and trimmed away (delivered_kept=1)
    other = event()
    assert len(await enqueue(client, other, "en")) == 2
    d = Deliverer(store, settings("redis://unused"), poll_s=0.05)
    await d.run_once()
    await d.aclose()
    assert rx.count() == 4
    trimmed = [x.event.id for x in await store.deliveries(a.id)]
    assert trimmed == [other.id] or trimmed == [ev.id]
    assert await enqueue(client, ev, "en") == []
    assert await enqueue(client, other, "en") == []
    # another webhook, added later, gets the old event once
    c = await add(store, rx.url("/c"))
    again = await enqueue(client, ev, "en")
    assert [x.webhook_id for x in [await store.delivery(c.id, again[0])]] == [c.id]
    assert await enqueue(client, ev, "en") == []


async def test_webhooks_get_the_events_and_pools_they_asked_for(
    client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    every = await add(store, rx.url())
    low_only = await add(store, rx.url(), events=["pool.low", "group.full"])
    spring_only = await add(store, rx.url(), pools=["spring"])
    autumn_only = await add(store, rx.url(), pools=["autumn", "winter"])
    off = await add(store, rx.url(), enabled=False)
    sent: dict[str, set[str]] = {}
    cases = [event("pool.low"), event("pool.exhausted"), event("pool.low", pool_id="autumn"),
             event("key.created", pool_id=None, pool_name=None)]
    for ev in cases:
        created = await enqueue(client, ev, "en")
        sent[ev.type + ":" + str(ev.pool_id)] = {
            (await _owner(store, did, [every, low_only, spring_only, autumn_only, off]))
            for did in created}
    assert sent == {
        "pool.low:spring": {every.id, low_only.id, spring_only.id},
        "pool.exhausted:spring": {every.id, spring_only.id},
        "pool.low:autumn": {every.id, low_only.id, autumn_only.id},
        "key.created:None": {every.id},
    }


async def _owner(store: WebhookStore, did: str, hooks: list) -> str:  # type: ignore[type-arg]
    for h in hooks:
        try:
            await store.delivery(h.id, did)
            return str(h.id)
        except Exception:
            continue
    raise AssertionError(did)


async def test_failures_are_retried_with_growing_delays(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    hook = await add(store, rx.url())
    rx.fail_next(4, "status", 500)
    await enqueue(client, event(), "en")
    async with running(await deliverer(redis_url, client, webhook_retry_base_s=0.1)):
        requests = await rx.arrived(5, within=20)
        done = await delivery_in(store, hook.id, "delivered")
    gaps = [b.at - a.at for a, b in pairwise(requests)]
    # equal jitter: the n-th delay lies in [d/2, d] with d = 0.1 * 2^(n-1): 0.05-0.1 ... 0.4-0.8
    for n, gap in enumerate(gaps, start=1):
        full = 0.1 * 2 ** (n - 1)
        assert full / 2 - 0.02 <= gap <= full + 0.5, (n, gaps)
    assert gaps[3] > 2 * gaps[0], gaps
    assert done.attempts_total == 5
    assert [a.status for a in done.attempts] == [200, 500, 500, 500, 500]  # newest first
    assert all(a.error == "HTTP 500: receiver says no" for a in done.attempts[1:])


def test_backoff_grows_and_is_capped() -> None:
    import random

    rng = random.Random(7)
    for n in range(1, 30):
        d = backoff_s(n, 5.0, 3600.0, rng)
        full = min(3600.0, 5.0 * 2 ** (n - 1))
        assert full / 2 <= d <= full


async def test_dead_letter_after_max_age_then_redelivered(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    hook = await add(store, rx.url(), format="wecom")
    rx.ok_body = OK_BODIES["wecom"]
    rx.fail_next(1000, "errcode", {"errcode": 93000, "errmsg": "invalid webhook url"})
    ev = event()
    (did,) = await enqueue(client, ev, "zh-CN")
    async with running(await deliverer(redis_url, client, webhook_max_age_s=1.0,
                                       webhook_retry_base_s=0.1)):
        dead = await delivery_in(store, hook.id, "dead", within=15)
    started = (await store.delivery(hook.id, did)).created_at
    assert dead.id == did
    assert dead.finished_at is not None
    assert 1.0 <= (dead.finished_at - started).total_seconds() < 3.0
    assert dead.attempts_total >= 3
    assert dead.last_error == "errcode 93000: invalid webhook url"
    assert [d.id for d in await store.dead_letters()] == [did]
    assert (await store.get(hook.id)).pending == 0
    assert await client.zscore(keys.WEBHOOKS_DUE, did) is None
    count = rx.count()
    await asyncio.sleep(0.3)  # a dead letter is not retried by anyone
    assert rx.count() == count
    # the receiver works again: redelivery puts it back in the queue, and it is delivered
    rx.plans.clear()
    again = await store.redeliver(hook.id, did)
    assert again.status == "pending" and (await store.get(hook.id)).pending == 1
    assert await store.dead_letters() == []
    async with running(await deliverer(redis_url, client)):
        done = await delivery_in(store, hook.id, "delivered")
    assert done.id == did and done.attempts_total == dead.attempts_total + 1
    assert json.loads(rx.requests[-1].body)["text"]["content"].startswith("[livecode] ")


async def test_a_redirect_is_a_failure_and_not_followed(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    with receiving() as elsewhere:
        hook = await add(store, rx.url())
        rx.fail_next(1, "redirect", elsewhere.url())
        await enqueue(client, event(), "en")
        async with running(await deliverer(redis_url, client)):
            done = await delivery_in(store, hook.id, "delivered")
        assert elsewhere.count() == 0
    assert rx.count() == 2
    failed = done.attempts[1]
    assert failed.status == 302 and not failed.ok
    assert failed.error is not None and "not followed" in failed.error


async def test_a_timeout_is_a_failure(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    hook = await add(store, rx.url())
    rx.fail_next(1, "hang", 2.0)
    await enqueue(client, event(), "en")
    d = await deliverer(redis_url, client, webhook_timeout_s=0.5)
    start = time.monotonic()
    assert await d.run_once() == 1
    assert time.monotonic() - start < 1.5
    (pending,) = await store.deliveries(hook.id)
    assert pending.status == "pending"
    assert pending.attempts[0].status is None
    assert pending.attempts[0].error and "timed out" in pending.attempts[0].error
    async with running(d):
        await delivery_in(store, hook.id, "delivered")


async def test_retry_after_is_respected(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    hook = await add(store, rx.url())
    rx.fail_next(1, "retry-after", 1)
    await enqueue(client, event(), "en")
    async with running(await deliverer(redis_url, client, webhook_retry_base_s=0.05)):
        first, second = await rx.arrived(2)
        await delivery_in(store, hook.id, "delivered")
    assert second.at - first.at >= 0.95


@pytest.mark.parametrize("url_host", ["localhost", "127.0.0.1"])
async def test_private_targets_are_refused_at_delivery_time(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver, url_host: str
) -> None:
    """Added while LIVECODE_WEBHOOK_ALLOW_PRIVATE was on (the store allows it), delivered with
    it off: the connection is refused after resolution, and nothing is sent."""
    hook = await add(store, rx.url(host=url_host))
    await enqueue(client, event(), "en")
    d = await deliverer(redis_url, client, webhook_allow_private=False)
    assert await d.run_once() == 1
    await d.aclose()
    (pending,) = await store.deliveries(hook.id)
    attempt = pending.attempts[0]
    assert attempt.status is None and not attempt.ok
    which = "localhost resolves to 127.0.0.1, which" if url_host == "localhost" else "127.0.0.1"
    assert attempt.error == (f"refused: {which} is a loopback address; set "
                             "LIVECODE_WEBHOOK_ALLOW_PRIVATE=true to allow it")
    assert rx.count() == 0


async def test_two_deliverers_deliver_each_event_exactly_once(
    redis_url: str, rx: Receiver
) -> None:
    setup = aredis.Redis.from_url(redis_url)
    store = await open_store(setup)
    hook = await add(store, rx.url())
    events = [event() for _ in range(300)]
    for ev in events:
        await enqueue(setup, ev, "en")
    clients = [aredis.Redis.from_url(redis_url) for _ in range(2)]
    # a generous timeout: an attempt timed out after the receiver got it would be sent again
    # (at least once), which is not what this test counts
    ds = [await Deliverer.open(c, settings(redis_url, webhook_timeout_s=20, webhook_lease_s=60),
                               poll_s=0.01, concurrency=8)
          for c in clients]
    async with running(ds[0]), running(ds[1]):
        await rx.arrived(len(events), within=60)

        async def all_delivered() -> bool:
            return (await store.get(hook.id)).pending == 0

        await eventually(all_delivered, 10)
        await asyncio.sleep(0.3)  # anything sent twice would arrive now
    assert all(d.attempts > 0 for d in ds), [d.attempts for d in ds]  # both took part
    assert sum(d.attempts for d in ds) == len(events)
    seen = Counter(r.headers["webhook-id"] for r in rx.requests)
    assert rx.count() == len(events)
    assert set(seen) == {ev.id for ev in events}
    assert set(seen.values()) == {1}
    assert len(await store.deliveries(hook.id, limit=200, status="delivered")) == 200
    for c in [setup, *clients]:
        await c.aclose()


WORKER = """
import asyncio, sys
import redis.asyncio as aredis
from app.webhooks.deliverer import Deliverer
from tests.webhook_helpers import settings

async def main(url):
    client = aredis.Redis.from_url(url)
    d = await Deliverer.open(client, settings(url, webhook_lease_s=3.0), poll_s=0.05)
    await d.run_forever()

asyncio.run(main(sys.argv[1]))
"""


async def test_kill_9_mid_delivery_loses_nothing(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    hook = await add(store, rx.url())
    rx.fail_next(1, "hold")  # the first request is held open until released
    ev = event()
    (did,) = await enqueue(client, ev, "en")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, redis_url, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert await asyncio.to_thread(rx.held.acquire, True, 30), "the worker sent nothing"
        claimed_until = await client.zscore(keys.WEBHOOKS_DUE, did)
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    rx.released.set()
    assert claimed_until is not None
    # another deliverer: nothing until the dead process's lease runs out, then it delivers
    async with running(await deliverer(str(redis_url), client)):
        done = await delivery_in(store, hook.id, "delivered", within=15)
    first, second = rx.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == ev.id
    assert second.at - first.at >= 2.5  # the 3 s lease (less the time to the first request)
    assert done.id == did and done.attempts_total == 1  # the killed attempt left no record
    assert (await store.get(hook.id)).pending == 0


async def test_cancel_stops_the_deliverer_even_inside_a_redis_call(
    redis_url: str, client: aredis.Redis, store: WebhookStore
) -> None:
    """Python 3.11's wait_for, around every redis-py command, can swallow a cancellation; the
    deliverer must stop all the same (the app's shutdown cancels it)."""
    d = Deliverer(store, settings(redis_url), poll_s=0.0005)  # nearly all its time in Redis
    rng = random.Random(1)
    for _ in range(200):
        task = asyncio.create_task(d.run_forever())
        await asyncio.sleep(rng.uniform(0, 0.004))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the deliverer went on after cancel()"
        assert task.cancelled()
    await d.aclose()


async def test_only_the_current_claim_reschedules_a_failure(
    client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    """A deliverer whose lease ran out (it was slow) and whose delivery was claimed again must
    not reschedule it on failure; a success still counts, whoever reports it."""
    from datetime import UTC, datetime

    from app.webhooks.models import Attempt

    hook = await add(store, rx.url())
    (did,) = await store.enqueue(event(), "en")
    (old,) = await store.claim(lease_s=0.2, limit=5, max_age_s=60)
    await asyncio.sleep(0.3)
    (new,) = await store.claim(lease_s=30, limit=5, max_age_s=60)
    assert new.claim.delivery_id == old.claim.delivery_id == did
    assert new.claim.token != old.claim.token
    lease_end = await client.zscore(keys.WEBHOOKS_DUE, did)
    failed = Attempt(at=datetime.now(UTC), status=500, latency_ms=3, ok=False, error="HTTP 500")
    assert await store.record_attempt(old.claim, failed, delay_s=0.0, max_age_s=60) == "stale"
    assert await client.zscore(keys.WEBHOOKS_DUE, did) == lease_end  # still the new claim's
    assert await store.record_attempt(new.claim, failed, delay_s=5.0, max_age_s=60) == "retry"
    ok = failed.model_copy(update={"status": 200, "ok": True, "error": None})
    assert await store.record_attempt(old.claim, ok, delay_s=None, max_age_s=60) == "delivered"
    assert await store.record_attempt(new.claim, failed, delay_s=1.0, max_age_s=60) == "late"
    done = await store.delivery(hook.id, did)
    assert done.status == "delivered" and done.attempts_total == 4
    assert done.last_error is None  # the late failure does not overwrite the outcome


async def test_chat_robots_get_at_most_their_rate_a_minute(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    rx.ok_body = OK_BODIES["wecom"]
    wecom = await add(store, rx.url("/wecom"), format="wecom")
    standard = await add(store, rx.url("/std"))
    assert wecom.rate_per_min == 20 and standard.rate_per_min == 0
    for _ in range(25):
        await enqueue(client, event(), "zh-CN")
    d = Deliverer(store, settings(redis_url), concurrency=64, poll_s=0.05)
    assert await d.run_once() == 45  # one claim, so one minute: 20 for WeCom, 25 standard
    await d.aclose()
    paths = Counter(r.path for r in rx.requests)
    assert paths == {"/wecom": 20, "/std": 25}
    waiting = await client.zrange(keys.WEBHOOKS_DUE, 0, -1, withscores=True)
    assert len(waiting) == 5
    (minute_end,) = {score for _, score in waiting}
    assert minute_end % 60_000 == 0
    assert await client.get(keys.webhook_rate(wecom.id, int(minute_end) // 60_000 - 1)) == b"20"
    assert all(x.attempts_total == 0 for x in await store.deliveries(wecom.id, status="pending"))


async def test_memory_stays_bounded(
    redis_url: str, client: aredis.Redis, rx: Receiver
) -> None:
    limits = Limits(delivered_kept=3, attempts_kept=2, dead_letters=2, max_pending=4)
    store = await open_store(client, limits=limits)
    hook = await add(store, rx.url())
    # past max_pending, new deliveries are dead letters at once (and dead letters are capped)
    created = [(await store.enqueue(event(), "en"))[0] for _ in range(7)]
    assert (await store.get(hook.id)).pending == 4
    dead = await store.dead_letters()
    # 3 were dead-lettered, the newest 2 are kept (within one ms the order is by id)
    kept = {d.id for d in dead}
    assert len(kept) == 2 and kept < set(created[4:])
    assert all(d.last_error == "not sent: more than 4 deliveries were pending" for d in dead)
    (dropped,) = set(created[4:]) - kept
    assert await client.exists(keys.delivery(dropped), keys.delivery_attempts(dropped)) == 0
    # delivered ones are trimmed to the newest 3
    d = Deliverer(store, settings(redis_url, webhook_retry_base_s=0.01), poll_s=0.01)
    async with running(d):
        await eventually(lambda: _pending_is(store, hook.id, 0), 15, "all delivered")
    assert len(await store.deliveries(hook.id, status="delivered")) == 3
    history = await client.zcard(keys.webhook_history(hook.id))
    assert history == 3 + 2  # delivered kept + dead letters kept
    all_keys = {k.decode() for k in await client.keys("lc:{webhooks}:d:*")}
    assert len(all_keys) == 5
    # attempts are trimmed to the newest 2, and counted all the same
    rx.fail_next(3, "status", 500)
    (did,) = await store.enqueue(event(), "en")
    async with running(Deliverer(store, settings(redis_url, webhook_retry_base_s=0.01),
                                 poll_s=0.01)):
        await eventually(lambda: _pending_is(store, hook.id, 0), 15, "delivered")
    tried = await store.delivery(hook.id, did)
    assert tried.attempts_total == 4 and [a.status for a in tried.attempts] == [200, 500]
    assert await client.llen(keys.delivery_attempts(did)) == 2


async def _pending_is(store: WebhookStore, wid: str, n: int) -> bool:
    return (await store.get(wid)).pending == n


async def test_delete_removes_the_webhook_and_its_deliveries(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    keep = await add(store, rx.url())
    gone = await add(store, rx.url())
    for _ in range(3):
        await enqueue(client, event(), "en")
    await store.delete(gone.id)
    left = {k.decode() for k in await client.keys("lc:{webhooks}:*")}
    assert not any(gone.id in k for k in left), left
    assert len([k for k in left if k.startswith("lc:{webhooks}:d:")]) == 3  # keep's only
    assert await client.zcard(keys.WEBHOOKS_DUE) == 3
    d = Deliverer(store, settings(redis_url), poll_s=0.05)
    await d.run_once()
    await d.aclose()
    assert {r.path for r in rx.requests} == {"/hook"} and rx.count() == 3
    assert (await store.get(keep.id)).pending == 0


async def test_a_disabled_webhook_holds_its_deliveries(
    redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver
) -> None:
    from app.webhooks.models import WebhookUpdate

    hook = await add(store, rx.url())
    await enqueue(client, event(), "en")
    await store.update(hook.id, WebhookUpdate(enabled=False))
    assert await enqueue(client, event(), "en") == []  # a disabled webhook gets no new ones
    d = Deliverer(store, settings(redis_url), poll_s=0.05)
    assert await d.run_once() == 0
    assert rx.count() == 0
    await store.update(hook.id, WebhookUpdate(enabled=True))
    await client.zadd(keys.WEBHOOKS_DUE, {(await store.deliveries(hook.id))[0].id: 0})
    assert await d.run_once() == 1
    await d.aclose()
    assert rx.count() == 1
