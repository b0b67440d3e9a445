"""API keys for the admin API: only a SHA-256 of each key is stored.

A key reads `lc_<key_id>_<secret>`: the id (8 hex chars) finds the record, the secret
(`secrets.token_urlsafe(32)`, 256 random bits) makes it unguessable. The full key is shown once,
by `create`; Redis holds its SHA-256, which `verify` compares in constant time.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel
from redis.commands.core import AsyncScript

from app import audit
from app.errors import InvalidInput, NotFound
from app.events.store import EventStore
from app.schemas import from_ms
from app.store import keys
from app.store.pools import AnyRedis

Scope = Literal["admin", "read"]
SCOPES: tuple[str, ...] = get_args(Scope)

KEY_PREFIX = "lc_"
SECRET_BYTES = 32  # token_urlsafe(32): 43 characters, 256 bits
MAX_KEY_LEN = 200  # longer input is refused before any work
MAX_NAME_LEN = 100
TOUCH_INTERVAL_MS = 60_000  # last_used is written at most once a minute per key
INITIAL_NAME = "initial"

_KEY_RE = re.compile(r"lc_([0-9a-f]{8})_([A-Za-z0-9_-]{32,128})")  # ASCII classes only

# KEYS: record, index. ARGV: only_if_empty, id, hash, name, scope, created.
_CREATE = """
if ARGV[1] == '1' and redis.call('scard', KEYS[2]) > 0 then return 'not_empty' end
if redis.call('exists', KEYS[1]) == 1 then return 'id_taken' end
redis.call('hset', KEYS[1], 'hash', ARGV[3], 'name', ARGV[4], 'scope', ARGV[5],
           'created', ARGV[6], 'last_used', '')
redis.call('sadd', KEYS[2], ARGV[2])
return 'ok'
"""

# KEYS: record. ARGV: now (ms), interval (ms). Never recreates a revoked record.
_TOUCH = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
local last = tonumber(redis.call('hget', KEYS[1], 'last_used'))
if last and tonumber(ARGV[1]) - last < tonumber(ARGV[2]) then return 0 end
redis.call('hset', KEYS[1], 'last_used', ARGV[1])
return 1
"""

_DUMMY_DIGEST = hashlib.sha256(b"livecode: no such key").hexdigest()


class ApiKeyPublic(BaseModel):
    """What may be shown about a key: never its hash, never its secret."""

    id: str
    name: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None = None


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key(presented: object) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None; never raises."""
    if not isinstance(presented, str) or len(presented) > MAX_KEY_LEN:
        return None
    m = _KEY_RE.fullmatch(presented)
    return (m.group(1), m.group(2)) if m else None


def key_id_of(id_or_key: str) -> str:
    """The id of a key given by its id or in full (`lc_<id>_<secret>`, as `create` printed
    it): the id, so that no message ever repeats the secret."""
    parsed = parse_key(id_or_key.strip())
    return parsed[0] if parsed else id_or_key


class ApiKeyStore:
    def __init__(self, client: AnyRedis, *, clock: Callable[[], float] = time.time) -> None:
        self.r = client
        self.clock = clock
        self.events = EventStore(client)
        self._create: AsyncScript = client.register_script(_CREATE)
        self._touch: AsyncScript = client.register_script(_TOUCH)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def create(self, scope: Scope, name: str = "") -> tuple[ApiKeyPublic, str]:
        """A new key: its public record and the full key, which is never available again."""
        created = await self._insert(scope, name, only_if_empty=False)
        if created is None:  # cannot happen: only_if_empty=False always inserts
            raise RuntimeError("API key was not created")
        return created

    async def ensure_initial_admin(self) -> str | None:
        """The first admin key if no key exists at all (atomic, so racing processes create
        one between them); None if any key exists already."""
        created = await self._insert("admin", INITIAL_NAME, only_if_empty=True)
        return created[1] if created else None

    async def _insert(
        self, scope: str, name: str, *, only_if_empty: bool
    ) -> tuple[ApiKeyPublic, str] | None:
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", {"scope": scope})
        if len(name) > MAX_NAME_LEN:
            raise InvalidInput(f"name is longer than {MAX_NAME_LEN} characters")
        for _ in range(8):  # a key id collision is rare; a new id settles it
            key_id = secrets.token_hex(4)
            key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
            now = self._now_ms()
            result = _s(
                await self._create(
                    keys=[keys.apikey(key_id), keys.APIKEYS_INDEX],
                    args=["1" if only_if_empty else "0", key_id, _digest(key), name, scope, now],
                )
            )
            if result == "not_empty":
                return None
            if result == "ok":
                public = ApiKeyPublic(
                    id=key_id,
                    name=name,
                    scope=scope,  # type: ignore[arg-type]
                    created_at=from_ms(now),  # type: ignore[arg-type]
                )
                await self.events.append_system(
                    "key.created", actor=audit.actor.get(),
                    data={"key_id": key_id, "scope": scope, "name": name})
                return public, key
        raise RuntimeError("could not find a free API key id")

    async def verify(self, presented: str) -> ApiKeyPublic | None:
        """The key's record if `presented` is a live key, else None; never raises on input."""
        parsed = parse_key(presented)
        if parsed is None:
            return None
        key_id, _ = parsed
        raw = await self.r.hgetall(keys.apikey(key_id))
        fields = {_s(k): _s(v) for k, v in raw.items()}
        stored = fields.get("hash")
        good = hmac.compare_digest((stored or _DUMMY_DIGEST).encode(), _digest(presented).encode())
        if not good or stored is None:
            return None
        public = _public(key_id, fields)
        if public is None:
            return None
        now = self._now_ms()
        last = public.last_used_at
        if last is None or now - int(last.timestamp() * 1000) >= TOUCH_INTERVAL_MS:
            touched = await self._touch(keys=[keys.apikey(key_id)], args=[now, TOUCH_INTERVAL_MS])
            if int(touched):
                public.last_used_at = from_ms(now)
        return public

    async def get(self, key_id: str) -> ApiKeyPublic:
        """The key by its id or the full key."""
        key_id = key_id_of(key_id)
        public = None
        if keys.APIKEY_ID_RE.fullmatch(key_id):
            raw = await self.r.hgetall(keys.apikey(key_id))
            public = _public(key_id, {_s(k): _s(v) for k, v in raw.items()})
        if public is None:
            raise _not_found(key_id)
        return public

    async def list(self) -> builtins.list[ApiKeyPublic]:
        """Every key, oldest first."""
        ids = sorted(_s(i) for i in await self.r.smembers(keys.APIKEYS_INDEX))
        async with self.r.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(keys.apikey(key_id))
            raws = await pipe.execute()
        out = []
        for key_id, raw in zip(ids, raws, strict=True):
            public = _public(key_id, {_s(k): _s(v) for k, v in raw.items()})
            if public is not None:
                out.append(public)
        out.sort(key=lambda k: (k.created_at, k.id))
        return out

    async def revoke(self, key_id: str) -> None:
        """Delete the key (given by its id or in full) for good; NotFound for an unknown id."""
        key_id = key_id_of(key_id)
        removed = 0
        if keys.APIKEY_ID_RE.fullmatch(key_id):
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.delete(keys.apikey(key_id))
                pipe.srem(keys.APIKEYS_INDEX, key_id)
                removed = sum(int(n) for n in await pipe.execute())
        if not removed:
            raise _not_found(key_id)
        await self.events.append_system("key.revoked", actor=audit.actor.get(),
                                        data={"key_id": key_id})

    async def count(self) -> int:
        return int(await self.r.scard(keys.APIKEYS_INDEX))


def _not_found(key_id: str) -> NotFound:
    if keys.APIKEY_ID_RE.fullmatch(key_id):
        return NotFound(f"API key {key_id!r} not found", {"key_id": key_id})
    # what is neither an id nor a well-formed key may be a mistyped key: it is not repeated
    return NotFound("no such API key: give its id (8 hex digits, see `livecode keys list`) "
                    "or the full key", {"key_id": None})


def _public(key_id: str, fields: dict[str, str]) -> ApiKeyPublic | None:
    """The record, or None for a missing or damaged one (which then grants nothing)."""
    scope = fields.get("scope")
    created = fields.get("created")
    if scope not in SCOPES or not created:
        return None
    try:
        return ApiKeyPublic(
            id=key_id,
            name=fields.get("name", ""),
            scope=scope,  # type: ignore[arg-type]
            created_at=from_ms(created),  # type: ignore[arg-type]
            last_used_at=from_ms(fields.get("last_used") or None),
        )
    except ValueError:
        return None
