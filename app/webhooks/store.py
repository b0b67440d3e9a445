"""Webhooks and their deliveries in Redis: the one service layer under the API, the CLI and the
deliverer. Every key shares the hash tag {webhooks} (app/store/keys.py); every change that
touches more than one key is one Lua script (app/webhooks/*.lua)."""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from pydantic import ValidationError
from redis.commands.core import AsyncScript

from app.allocator.scripts import supports_shebang
from app.errors import Conflict, InvalidInput, NotFound
from app.events.model import LANGUAGES, EventPublic
from app.schemas import from_ms
from app.store import keys
from app.store.pools import AnyRedis, server_version
from app.urls import UrlPolicy, check_target_url
from app.webhooks import netguard, scripts
from app.webhooks.formats import RATE_PER_MIN, new_standard_secret, standard_secret_bytes
from app.webhooks.models import (
    Attempt,
    DeliveryPublic,
    WebhookCreate,
    WebhookPublic,
    WebhookUpdate,
)

log = logging.getLogger("livecode.webhooks")

RESOLVE_TIMEOUT_S = 5.0
_ALL = "*"


@dataclass(frozen=True)
class Limits:
    """What bounds the webhooks' memory in Redis."""

    max_webhooks: int = 100
    max_pending: int = 1_000  # per webhook; past it a new delivery is dead-lettered at once
    delivered_kept: int = 1_000  # per webhook, the newest
    dead_letters: int = 10_000  # all webhooks, the newest
    attempts_kept: int = 20  # per delivery, the newest
    seen_ttl_s: int = 7 * 24 * 3600  # how long enqueuing the same event again is a no-op


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class WebhookRecord:
    """A webhook as stored, secret included: for the deliverer, never for display."""

    id: str
    name: str
    url: str
    format: str
    events: list[str] | None
    pools: list[str] | None
    enabled: bool
    secret: str | None
    created_ms: int
    updated_ms: int
    pending: int
    rate_per_min: int

    def matches(self, event: EventPublic) -> bool:
        if not self.enabled:
            return False
        if self.events is not None and event.type not in self.events:
            return False
        return self.pools is None or event.pool_id in self.pools

    def public(self, *, secret: str | None = None) -> WebhookPublic:
        return WebhookPublic(
            id=self.id, name=self.name, url=mask_url(self.url, self.format),
            format=self.format,  # type: ignore[arg-type]
            events=self.events,  # type: ignore[arg-type]
            pools=self.pools, enabled=self.enabled, has_secret=bool(self.secret),
            pending=max(self.pending, 0), rate_per_min=self.rate_per_min,
            created_at=from_ms(self.created_ms),  # type: ignore[arg-type]
            updated_at=from_ms(self.updated_ms),  # type: ignore[arg-type]
            secret=secret,
        )


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    token: str
    webhook_id: str


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what sending it needs."""

    claim: Claim
    webhook: WebhookRecord | None
    event_json: str
    language: str
    attempts: int  # attempts since it was (re)queued: the backoff's exponent


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _int(v: str | None, default: int = 0) -> int:
    try:
        return int(v) if v else default
    except ValueError:
        return default


def _mask(value: str) -> str:
    return "****" + value[-4:] if len(value) >= 16 else "****"


def mask_url(url: str, fmt: str) -> str:
    """The URL with its secret parts masked: every query value (WeCom's key, DingTalk's
    access_token, tokens of generic endpoints) and, for Slack and Feishu, whose secret is the
    URL's last path segment, that segment."""
    parts = urlsplit(url)
    query = "&".join(
        f"{quote(k, safe='')}={_mask(v)}" for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    path = parts.path
    if fmt in ("slack", "feishu") and "/" in path.rstrip("/"):
        head, _, last = path.rstrip("/").rpartition("/")
        path = f"{head}/{_mask(last)}"
    return urlunsplit(parts._replace(path=path, query=query, fragment=""))


def delivery_id(webhook_id: str, event_id: str) -> str:
    """One id per (webhook, event): enqueuing an event again finds the delivery it made."""
    digest = hashlib.sha256(f"{webhook_id}\n{event_id}".encode()).hexdigest()
    return "dl_" + digest[:24]


def _record(webhook_id: str, f: dict[str, str]) -> WebhookRecord | None:
    if "url" not in f or "format" not in f:
        return None
    events = None if f.get("events", _ALL) == _ALL else json.loads(f["events"])
    pools = None if f.get("pools", _ALL) == _ALL else json.loads(f["pools"])
    return WebhookRecord(
        id=webhook_id, name=f.get("name", ""), url=f["url"], format=f["format"],
        events=events, pools=pools, enabled=f.get("en") == "1", secret=f.get("secret") or None,
        created_ms=_int(f.get("created")), updated_ms=_int(f.get("updated")),
        pending=_int(f.get("np")), rate_per_min=_int(f.get("rpm")),
    )


def _delivery(did: str, f: dict[str, str], attempts: Sequence[Any]) -> DeliveryPublic | None:
    if "st" not in f:
        return None
    try:
        event = EventPublic.model_validate_json(f["event"])
        status = f["st"]
        return DeliveryPublic(
            id=did, webhook_id=f["wid"],
            status=status,  # type: ignore[arg-type]
            event=event, language=f.get("lang", "en"),
            created_at=from_ms(f["created"]),  # type: ignore[arg-type]
            next_attempt_at=from_ms(f.get("next")) if status == "pending" else None,
            finished_at=from_ms(f.get("done")) if status != "pending" else None,
            attempts_total=_int(f.get("n")),
            last_error=f.get("last_err") or None,
            attempts=[Attempt.model_validate_json(a) for a in attempts],
        )
    except (KeyError, ValueError) as exc:  # ValidationError is a ValueError
        log.warning("unreadable delivery %s: %s", did, exc)
        return None


class WebhookStore:
    def __init__(
        self,
        client: AnyRedis,
        *,
        shebang: bool,
        allow_private: bool = False,
        allow_http: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.r = client
        self.allow_private = allow_private
        self.urls = UrlPolicy(allow_http=allow_http or allow_private)
        self.limits = limits
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(scripts.source(name, shebang=shebang))
            for name in scripts.NAMES
        }

    @classmethod
    async def open(
        cls,
        client: AnyRedis,
        *,
        allow_private: bool = False,
        allow_http: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> WebhookStore:
        shebang = supports_shebang(await server_version(client))
        return cls(client, shebang=shebang, allow_private=allow_private, allow_http=allow_http,
                   limits=limits)

    async def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=list(keys_), args=[keys.WEBHOOKS_PREFIX, *args])

    # webhooks

    async def check_url(self, url: str) -> str:
        """The URL as stored, or InvalidInput: http(s) only (http when allowed), and a host
        whose every address is public (unless LIVECODE_WEBHOOK_ALLOW_PRIVATE)."""
        stored = check_target_url(url, self.urls)
        if self.allow_private:
            return stored
        host = urlsplit(stored).hostname or ""
        try:
            addresses = await netguard.resolve(host, 443, RESOLVE_TIMEOUT_S)
        except (OSError, TimeoutError):
            raise InvalidInput(f"url: the host {host!r} does not resolve",
                               {"field": "url"}) from None
        why = netguard.first_blocked(host, addresses)
        if why:
            raise InvalidInput(f"url: {why}", {"field": "url"})
        return stored

    @staticmethod
    def check_secret(fmt: str, secret: str | None) -> None:
        if secret is None:
            return
        if fmt == "standard" and standard_secret_bytes(secret) is None:
            raise InvalidInput(
                "secret: a standard webhook's secret is whsec_ and the base64 of 24 to 64 "
                "random bytes; omit it to have one generated", {"field": "secret"})
        if fmt in ("wecom", "slack"):
            raise InvalidInput(
                f"secret: {fmt} webhooks have no secret (the key is part of the URL)",
                {"field": "secret"})

    async def create(self, data: WebhookCreate) -> WebhookPublic:
        """The new webhook; a standard one's generated secret is in this response only."""
        url = await self.check_url(data.url)
        self.check_secret(data.format, data.secret)
        generated = None
        secret = data.secret
        if data.format == "standard" and secret is None:
            secret = generated = new_standard_secret()
        fields = {
            "url": url, "format": data.format, "rpm": str(RATE_PER_MIN[data.format]),
            "name": data.name,
            "en": "1" if data.enabled else "0",
            "events": _ALL if data.events is None else json.dumps(data.events),
            "pools": _ALL if data.pools is None else json.dumps(data.pools),
        }
        if secret:
            fields["secret"] = secret
        for _ in range(8):  # a 48-bit id collides rarely; a new id settles it
            wid = "wh_" + secrets.token_hex(6)
            result = await self._put("create", wid, fields, [])
            if result == "full":
                raise Conflict(f"there are {self.limits.max_webhooks} webhooks already",
                               {"max_webhooks": self.limits.max_webhooks})
            if result == "ok":
                return (await self.record(wid)).public(secret=generated)
        raise RuntimeError("could not find a free webhook id")

    async def _put(self, mode: str, wid: str, fields: dict[str, str], delete: list[str]) -> str:
        flat = [x for kv in fields.items() for x in kv]
        return _s(await self._run(
            "put_webhook", [keys.WEBHOOKS_INDEX, keys.webhook(wid)],
            [mode, wid, self.limits.max_webhooks, len(fields), *flat, *delete],
        ))

    def _not_found(self, wid: str) -> NotFound:
        return NotFound(f"webhook {wid!r} not found", {"webhook_id": wid})

    async def record(self, wid: str) -> WebhookRecord:
        record = None
        if keys.WEBHOOK_ID_RE.fullmatch(wid):
            record = _record(wid, _hash(await self.r.hgetall(keys.webhook(wid))))
        if record is None:
            raise self._not_found(wid)
        return record

    async def get(self, wid: str) -> WebhookPublic:
        return (await self.record(wid)).public()

    async def records(self) -> builtins.list[WebhookRecord]:
        """Every webhook, oldest first."""
        ids = [_s(i) for i in await self.r.zrange(keys.WEBHOOKS_INDEX, 0, -1)]
        async with self.r.pipeline(transaction=False) as pipe:
            for wid in ids:
                pipe.hgetall(keys.webhook(wid))
            raws = await pipe.execute()
        found = (_record(wid, _hash(raw)) for wid, raw in zip(ids, raws, strict=True))
        return [r for r in found if r is not None]

    async def list(self) -> builtins.list[WebhookPublic]:
        return [r.public() for r in await self.records()]

    async def update(self, wid: str, data: WebhookUpdate) -> WebhookPublic:
        """Change the given fields. A new format drops the old secret (it belonged to the old
        platform); a standard webhook always has one: turning a webhook into a standard one, or
        giving `secret: null` to a standard one, generates a new secret, shown in this response
        only."""
        current = await self.record(wid)
        given = data.model_fields_set
        fields: dict[str, str] = {}
        if "url" in given and data.url is not None:
            fields["url"] = await self.check_url(data.url)
        fmt = data.format if "format" in given and data.format is not None else current.format
        fields["format"] = fmt
        fields["rpm"] = str(RATE_PER_MIN[fmt])
        if "secret" in given:
            secret = data.secret
        else:
            secret = current.secret if fmt == current.format else None
        self.check_secret(fmt, secret)
        generated = None
        if fmt == "standard" and secret is None:
            secret = generated = new_standard_secret()
        if "name" in given and data.name is not None:
            fields["name"] = data.name
        if "enabled" in given and data.enabled is not None:
            fields["en"] = "1" if data.enabled else "0"
        if "events" in given:
            fields["events"] = _ALL if data.events is None else json.dumps(data.events)
        if "pools" in given:
            fields["pools"] = _ALL if data.pools is None else json.dumps(data.pools)
        delete = []
        if secret:
            fields["secret"] = secret
        else:
            delete.append("secret")
        if await self._put("update", wid, fields, delete) == "missing":
            raise self._not_found(wid)
        return (await self.record(wid)).public(secret=generated)

    async def delete(self, wid: str) -> None:
        """The webhook and every delivery of it (pending ones are not sent)."""
        removed = 0
        if keys.WEBHOOK_ID_RE.fullmatch(wid):
            removed = int(await self._run("delete_webhook", [keys.WEBHOOKS_INDEX], [wid]))
        if not removed:
            raise self._not_found(wid)

    # deliveries

    async def enqueue(self, event: EventPublic, language: str) -> builtins.list[str]:
        """One delivery per enabled webhook whose filters match, once per (webhook, event):
        enqueuing the same event again creates nothing. Returns the new deliveries' ids."""
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
        matching = [w.id for w in await self.records() if w.matches(event)]
        if not matching:
            return []
        pairs = [x for wid in matching for x in (wid, delivery_id(wid, event.id))]
        created = await self._run(
            "enqueue", [keys.WEBHOOKS_DUE],
            [event.id, event.model_dump_json(), language, self.limits.seen_ttl_s,
             self.limits.max_pending, self.limits.dead_letters, *pairs],
        )
        return [_s(d) for d in created]

    async def _deliveries(self, ids: Sequence[str]) -> builtins.list[DeliveryPublic]:
        async with self.r.pipeline(transaction=False) as pipe:
            for did in ids:
                pipe.hgetall(keys.delivery(did))
                pipe.lrange(keys.delivery_attempts(did), 0, -1)
            raws = await pipe.execute()
        out = []
        for i, did in enumerate(ids):
            found = _delivery(did, _hash(raws[2 * i]), [_s(a) for a in raws[2 * i + 1]])
            if found is not None:
                out.append(found)
        return out

    async def deliveries(
        self, wid: str, *, limit: int = 50, status: str | None = None
    ) -> builtins.list[DeliveryPublic]:
        """The webhook's deliveries, newest first, optionally of one status."""
        await self.record(wid)
        chosen: builtins.list[str] = []
        start, page = 0, max(limit, 100)
        while len(chosen) < limit:
            ids = [_s(i) for i in await self.r.zrevrange(
                keys.webhook_history(wid), start, start + page - 1)]
            if not ids:
                break
            start += page
            if status is None:
                chosen.extend(ids)
                continue
            async with self.r.pipeline(transaction=False) as pipe:
                for did in ids:
                    pipe.hget(keys.delivery(did), "st")
                states = await pipe.execute()
            chosen.extend(d for d, st in zip(ids, states, strict=True)
                          if st is not None and _s(st) == status)
        return await self._deliveries(chosen[:limit])

    async def delivery(self, wid: str, did: str) -> DeliveryPublic:
        found = None
        if keys.WEBHOOK_ID_RE.fullmatch(wid) and keys.DELIVERY_ID_RE.fullmatch(did):
            got = await self._deliveries([did])
            found = got[0] if got and got[0].webhook_id == wid else None
        if found is None:
            raise NotFound(f"delivery {did!r} of webhook {wid!r} not found",
                           {"webhook_id": wid, "delivery_id": did})
        return found

    async def redeliver(self, wid: str, did: str) -> DeliveryPublic:
        """Back in the queue, due now, with a fresh maximum age (a dead letter, a delivered one,
        or a pending one made due now)."""
        await self.delivery(wid, did)
        if _s(await self._run("redeliver", [keys.WEBHOOKS_DUE], [wid, did])) != "ok":
            await self.delivery(wid, did)  # gone since: raises NotFound
        return await self.delivery(wid, did)

    async def dead_letters(self, *, limit: int = 50) -> builtins.list[DeliveryPublic]:
        """Every webhook's dead letters, newest first."""
        ids = [_s(i) for i in await self.r.zrevrange(keys.WEBHOOKS_DEAD, 0, limit - 1)]
        return await self._deliveries(ids)

    # the deliverer's side

    async def claim(
        self, *, lease_s: float, limit: int, max_age_s: float
    ) -> builtins.list[Claimed]:
        flat = await self._run(
            "claim", [keys.WEBHOOKS_DUE],
            [int(lease_s * 1000), limit, int(max_age_s * 1000), self.limits.dead_letters],
        )
        claims = [Claim(_s(flat[i]), _s(flat[i + 1]), _s(flat[i + 2]))
                  for i in range(0, len(flat), 3)]
        if not claims:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for c in claims:
                pipe.hgetall(keys.delivery(c.delivery_id))
                pipe.hgetall(keys.webhook(c.webhook_id))
            raws = await pipe.execute()
        out = []
        for i, c in enumerate(claims):
            d = _hash(raws[2 * i])
            out.append(Claimed(
                claim=c, webhook=_record(c.webhook_id, _hash(raws[2 * i + 1])),
                event_json=d.get("event", ""), language=d.get("lang", "en"),
                attempts=max(_int(d.get("n")) - _int(d.get("n0")), 0),
            ))
        return out

    async def record_attempt(
        self, claim: Claim, attempt: Attempt, *, delay_s: float | None, max_age_s: float
    ) -> str:
        """Record an attempt's result; `delay_s` None: no retry, dead-letter it now. Returns
        'delivered', 'retry', 'dead', 'late', 'stale' or 'gone' (see record.lua)."""
        delay_ms = -1 if delay_s is None else int(delay_s * 1000)
        return _s(await self._run(
            "record", [keys.WEBHOOKS_DUE],
            [claim.delivery_id, claim.token, "1" if attempt.ok else "0",
             attempt.model_dump_json(), "" if attempt.status is None else attempt.status,
             attempt.error or "", delay_ms, int(max_age_s * 1000), self.limits.attempts_kept,
             self.limits.delivered_kept, self.limits.dead_letters],
        ))

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest pending delivery is due (by Redis's clock), or None."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.WEBHOOKS_DUE, 0, 0, withscores=True)
            pipe.time()
            head, (sec, usec) = await pipe.execute()
        if not head:
            return None
        now_ms = int(sec) * 1000 + int(usec) // 1000
        return max(0.0, (float(head[0][1]) - now_ms) / 1000)


def parse_event(event_json: str) -> EventPublic | None:
    try:
        return EventPublic.model_validate_json(event_json)
    except ValidationError:
        return None

