"""How Python calls scan.lua and reads its reply: the one place that knows the layout of both.

Call (KEYS and ARGV):
    KEYS[1]      the pool hash; KEYS[1 + i] scan i's sticky key (prefix + 'v:' + visitor id)
    ARGV[1]      the pool's key prefix `lc:{pool}:`
    ARGV[2]      the visitor id ('' = none), ARGV[3] the channel ('' = none)
    ARGV[4]      what kind of call (`Call`)
    ARGV[5..6]   single calls only: new allocations allowed per client per minute (absent or 0:
                 no limit), and the client (its address)
    batch:       scan i >= 2 has its visitor id in ARGV[2i + 1] and its channel in ARGV[2i + 2]

Reply: a list per scan (a list of them for a batch), its first element the `Outcome`:
    unknown
    paused | not_started | ended, pool name
    new | sticky, group id, group URL, mode (redirect|page), pool name
    fallback, pool name, fallback URL, fallback message, fallback contact URL
    limited, seconds until the client's window ends
    peek, the group id the next new visitor would get ('' = none)   (Call.PEEK only)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from app.store import keys
from app.store.fastredis import RedisReplyError, Script, bulk, reply_error


class Call(StrEnum):
    KNOWN = "known"  # a visitor with a cookie: their sticky record is looked up first
    NEW = "new"  # a visitor id just made: there is no sticky record to look up
    BATCH = "batch"  # several new visitors of one pool, each with its own sticky key
    PEEK = "peek"  # a dry run: stop before the first write, reply the group picked


class Outcome(StrEnum):
    NEW = "new"
    STICKY = "sticky"
    FALLBACK = "fallback"
    PAUSED = "paused"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    UNKNOWN = "unknown"
    LIMITED = "limited"
    PEEK = "peek"


def lua_constants() -> list[tuple[str, dict[str, str]]]:
    """The tables the scripts read these as: CALL.batch, OUTCOME.fallback, ..."""
    return [("CALL", {c.name.lower(): c.value for c in Call}),
            ("OUTCOME", {o.name.lower(): o.value for o in Outcome})]


@dataclass(slots=True)
class Decision:
    outcome: Outcome
    group_id: str = ""
    url: str = ""
    mode: str = "redirect"
    pool_name: str = ""
    fallback_url: str = ""
    fallback_message: str = ""
    fallback_contact: str = ""
    retry_after: int = 0


_PLACED = (b"new", b"sticky")
_REDIRECT = b"redirect"


def redirect_location(reply: Any) -> bytes | None:
    """The hot path's shortcut: the Location of a scan that is a plain redirect to a group,
    else None (then `decode`)."""
    if type(reply) is list and reply[0] in _PLACED and reply[3] == _REDIRECT:
        return reply[2]  # type: ignore[no-any-return]
    return None


def decode(reply: Any) -> Decision:
    """One scan's reply as a Decision; an error reply raises RedisReplyError."""
    if type(reply) is not list:
        if isinstance(reply, RedisReplyError):
            raise reply
        raise reply_error(reply)
    r = [x.decode() for x in reply]
    outcome = Outcome(r[0])
    if outcome in (Outcome.NEW, Outcome.STICKY):
        return Decision(outcome, group_id=r[1], url=r[2], mode=r[3], pool_name=r[4])
    if outcome is Outcome.FALLBACK:
        return Decision(outcome, pool_name=r[1], fallback_url=r[2], fallback_message=r[3],
                        fallback_contact=r[4])
    if outcome is Outcome.LIMITED:
        return Decision(outcome, retry_after=int(r[1]))
    if outcome is Outcome.PEEK:
        return Decision(outcome, group_id=r[1])
    if outcome is Outcome.UNKNOWN:
        return Decision(outcome)
    return Decision(outcome, pool_name=r[1])


def call_args(
    pool_id: str, visitor_id: str, channel: str = "", call: Call = Call.KNOWN,
    rate_limit: int = 0, client: str = "",
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of a single call, for clients that pack their own commands."""
    p = keys.prefix(pool_id)
    args: list[str | int] = [p, visitor_id, channel, call.value]
    if rate_limit:
        args += [rate_limit, client or "-"]
    return [p + "pool", p + "v:" + visitor_id], args


class ScanCommands:
    """scan.lua's call (FCALL or EVALSHA) for the common calls (no rate limit), packed by hand:
    hiredis.pack_command takes ~1.6 us for one, this ~0.5 (bench/NOTES.md). Everything but the
    visitor ids and channels is built once per pool; visitor ids are always 22 characters
    (VISITOR_ID_RE)."""

    def __init__(self, script: Script) -> None:
        self.head = script.head
        self.parts = lru_cache(maxsize=4096)(self._parts)

    def _parts(self, pool_id: str) -> tuple[bytes, bytes, bytes, bytes]:
        p = keys.prefix(pool_id).encode()
        pool_key, prefix = bulk(p + b"pool"), bulk(p)
        sticky = b"$%d\r\n" % (len(p) + 24) + p + b"v:"  # + visitor id + CRLF
        before = b"*9\r\n" + self.head + bulk(b"2") + pool_key + sticky
        return before, pool_key, sticky, prefix

    def __call__(self, pool_id: str, visitor_id: str, fresh: bool) -> bytes:
        """One scan without a channel."""
        before, _, _, prefix = self.parts(pool_id)
        v = visitor_id.encode()
        return before + v + b"\r\n" + prefix + b"$22\r\n" + v + (_FRESH if fresh else _KNOWN)

    def batch(self, pool_id: str, items: list[tuple[bytes, bytes]]) -> bytes:
        """New visitors' scans of one pool, (visitor id, channel) each: one scan alone, or
        the batch form, whose reply is a list of theirs."""
        before, pool_key, sticky, prefix = self.parts(pool_id)
        (v1, ch1), n = items[0], len(items)
        if n == 1:
            return before + v1 + b"\r\n" + prefix + b"$22\r\n" + v1 + b"\r\n" + bulk(ch1) + _NEW
        return b"".join((
            b"*%d\r\n" % (3 * n + 6), self.head, bulk(b"%d" % (n + 1)),
            pool_key, *[sticky + v + b"\r\n" for v, _ in items],
            prefix, b"$22\r\n", v1, b"\r\n", bulk(ch1), _BATCH,
            *[b"$22\r\n" + v + b"\r\n" + bulk(ch) for v, ch in items[1:]],
        ))


_NEW, _BATCH = bulk(Call.NEW.value.encode()), bulk(Call.BATCH.value.encode())
_FRESH = b"\r\n" + bulk(b"") + _NEW  # ARGV[3] channel, ARGV[4] call
_KNOWN = b"\r\n" + bulk(b"") + bulk(Call.KNOWN.value.encode())
