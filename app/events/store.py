"""Where events are kept and how they are read.

- Each pool's own stream (`lc:{pool}:ev`, schema KEYS['events']): what its scans, its scheduler
  ticks and its admin changes cause, written by the scripts in the pool's slot.
- The system stream (`lc:{events}:sys`): events of no pool (API keys) and a deleted pool's
  last events, which the delete moves there before the pool's keys go.
- The feed (`lc:{events}:feed`): every event once, in the order the dispatcher
  (app/events/dispatcher.py) read them, for listing across pools and for following.

An event's id is `<source>:<stream id>`, source being the pool id, or `_sys` for the system
stream (not a valid pool id): unique, stable, and the webhooks' idempotency key.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Literal

from pydantic import BaseModel

from app.errors import InvalidInput
from app.events.model import EVENT_TYPES, EventPublic
from app.store import keys
from app.store.schema import MAX_EVENTS, suffix

AnyRedis = Any
SYSTEM = "_sys"
FEED_MAX = 100_000
Order = Literal["asc", "desc"]


class EventPage(BaseModel):
    items: list[EventPublic]
    next: str | None  # the cursor to pass as `after` for the next page; null: no more now


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def pool_stream(pool_id: str) -> str:
    return keys.prefix(pool_id) + suffix("events")


def event_id(source: str, stream_id: str) -> str:
    return f"{source}:{stream_id}"


def decode(source: str, stream_id: str, fields: dict[Any, Any],
           pool_names: dict[str, str] | None = None) -> EventPublic:
    """An entry of a pool's stream (or of the system stream, which names its pool)."""
    f = {_s(k): _s(v) for k, v in fields.items()}
    data = json.loads(f.get("data") or "{}")
    if isinstance(data, dict) and data.get("fields") == {}:
        data["fields"] = []  # Lua's cjson writes an empty list as {}
    pool_id = f.get("pool") or (None if source == SYSTEM else source)
    ms = int(stream_id.split("-", 1)[0])
    return EventPublic(
        id=f.get("id") or event_id(source, stream_id),
        type=f["type"],  # type: ignore[arg-type]
        at=datetime.fromtimestamp(ms / 1000, UTC),
        pool_id=pool_id,
        pool_name=f.get("pool_name") or (pool_names or {}).get(pool_id or ""),
        group_id=f.get("group") or None,
        actor=f.get("actor") or None,
        data=data if isinstance(data, dict) else {},
    )


def _cursor(value: str | None) -> str | None:
    """The API's cursors are opaque: a stream id, base64url'd."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("after: not a cursor from this API", {"after": value}) from None
    ms, _, seq = raw.partition("-")
    if not (ms.isdigit() and seq.isdigit()):
        raise InvalidInput("after: not a cursor from this API", {"after": value})
    return raw


def _make_cursor(stream_id: str) -> str:
    return base64.urlsafe_b64encode(stream_id.encode()).decode().rstrip("=")


def script(name: str) -> str:
    """One of this package's Lua scripts, after cursor.lua which they share."""
    package = files("app.events")
    return "".join((package / f).read_text(encoding="utf-8") for f in ("cursor.lua", name))


class EventStore:
    def __init__(self, client: AnyRedis) -> None:
        self.r = client
        self._move = client.register_script(script("move_to_system.lua"))

    async def append_system(self, type: str, *, actor: str = "", pool_id: str | None = None,
                            pool_name: str | None = None, data: dict[str, Any] | None = None,
                            group_id: str | None = None) -> str:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        fields = {"type": type, "actor": actor, "data": json.dumps(data or {}),
                  "group": group_id or "", "pool": pool_id or "", "pool_name": pool_name or ""}
        stream_id = _s(await self.r.xadd(keys.EVENTS_SYSTEM, fields,
                                         maxlen=MAX_EVENTS, approximate=True))
        return event_id(SYSTEM, stream_id)

    async def move_to_system(self, pool_id: str, pool_name: str) -> int:
        """A pool about to be deleted: its events the dispatcher has not taken yet, to the
        system stream, so that none is lost to the webhooks and the feed. The move and the
        pool's dispatcher cursor go in one step (both in the {events} slot): a dispatcher that
        read the same events before and appends them after finds them already taken, and what
        it took first is not moved."""
        after = await self.r.hget(keys.EVENTS_CURSORS, pool_id)  # only a shortcut: re-checked
        start = f"({_s(after)}" if after else "-"
        entries = await self.r.xrange(pool_stream(pool_id), start, "+")
        if not entries:
            return 0
        args: list[str] = [pool_id, pool_name, str(MAX_EVENTS)]
        for stream_id, fields in entries:
            f = {_s(k): _s(v) for k, v in fields.items()}
            args += [_s(stream_id), json.dumps(f)]
        return int(await self._move(keys=[keys.EVENTS_CURSORS, keys.EVENTS_SYSTEM], args=args))

    async def end_cursor(self, pool_id: str | None = None) -> str | None:
        """The cursor after the newest event: following from it shows only what comes next."""
        key = pool_stream(pool_id) if pool_id else keys.EVENTS_FEED
        last = await self.r.xrevrange(key, "+", "-", count=1)
        return _make_cursor(_s(last[0][0])) if last else None

    async def list(self, *, pool_id: str | None = None, types: Sequence[str] = (),
                   after: str | None = None, order: Order = "desc", limit: int = 50,
                   pool_names: dict[str, str] | None = None) -> EventPage:
        """One page of events, newest first (or oldest first), from the pool's own stream or,
        for every pool, the feed. `after` is the `next` of the page before."""
        for t in types:
            if t not in EVENT_TYPES:
                raise InvalidInput(f"type: unknown event type {t!r}",
                                   {"type": t, "allowed": list(EVENT_TYPES)})
        cursor = _cursor(after)
        key = pool_stream(pool_id) if pool_id else keys.EVENTS_FEED
        items: list[EventPublic] = []
        last: str | None = None
        batch = max(limit, 100)
        deadline = time.monotonic() + 2.0  # a rare type in a long stream: stop scanning
        while len(items) < limit and time.monotonic() < deadline:
            if order == "desc":
                hi = f"({cursor}" if cursor else "+"
                entries = await self.r.xrevrange(key, hi, "-", count=batch)
            else:
                lo = f"({cursor}" if cursor else "-"
                entries = await self.r.xrange(key, lo, "+", count=batch)
            if not entries:
                break
            for stream_id, fields in entries:
                sid = _s(stream_id)
                cursor = sid
                event = (decode(pool_id, sid, fields, pool_names) if pool_id
                         else EventPublic.model_validate_json(_s(fields[b"event"])))
                if not types or event.type in types:
                    items.append(event)
                    last = sid
                    if len(items) == limit:
                        break
            if len(entries) < batch:
                break
        more = last is not None and len(items) == limit
        if order == "asc":  # following: the cursor stays at the end even with no match
            return EventPage(items=items, next=_make_cursor(cursor) if cursor else after)
        return EventPage(items=items, next=_make_cursor(last) if more and last else None)
