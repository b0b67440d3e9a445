"""A history checker for fault tests, in the style of Jepsen: drive real HTTP scans, record
what every client saw, then check the record against what Redis holds.

Every scan is recorded as ok (with the group received), fallback, failed (a clean 503: the
service could not place the visitor; the script may or may not have run) or unknown (timeout,
connection error). Visitors carry their own valid visitor-id cookie from the first scan, so a
retry is the same visitor.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import redis

from app.store import keys

GROUP_URL = "https://chat.example.com/"
FALLBACK_URL = "https://example.com/full"


@dataclass
class Event:
    visitor: str
    outcome: str  # ok | fallback | failed | unknown | error
    group: str | None
    status: int
    at: float  # when the answer (or the failure) came, time.monotonic()
    latency: float


@dataclass
class History:
    events: list[Event] = field(default_factory=list)

    def add(self, visitor: str, outcome: str, group: str | None = None, status: int = 0,
            started: float | None = None) -> None:
        now = time.monotonic()
        self.events.append(
            Event(visitor, outcome, group, status, now, now - (started or now))
        )

    def outcomes(self) -> Counter[str]:
        return Counter(e.outcome for e in self.events)

    def check(self, r: redis.Redis, pool_id: str, capacities: dict[str, int]) -> dict[str, int]:
        """Raises AssertionError on any violation; returns the stored counts."""
        report = self.analyze(r, pool_id, capacities)
        assert not report.violations(), report.violations()
        return report.counts

    def analyze(self, r: redis.Redis, pool_id: str, capacities: dict[str, int]) -> Report:
        report = Report()
        report.errors = [e for e in self.events if e.outcome == "error"]
        acked: dict[str, str] = {}
        for e in self.events:
            if e.outcome != "ok":
                continue
            assert e.group is not None
            seen = acked.setdefault(e.visitor, e.group)
            if seen != e.group:
                report.twice.append(e.visitor)
        per_group = Counter(acked.values())
        report.over = {g: n - capacities[g] for g, n in per_group.items() if n > capacities[g]}
        for visitor, gid in acked.items():
            slot = r.get(keys.sticky(pool_id, visitor))  # the group's Fenwick slot
            if slot is None or r.hget(keys.prefix(pool_id) + "fwg", slot) != gid.encode():
                report.lost.append(visitor)
        counts = {g: int(r.hget(keys.group(pool_id, g), "c") or 0) for g in capacities}
        report.counts = counts
        maybe = {e.visitor for e in self.events if e.outcome in ("failed", "unknown")} - set(acked)
        report.below = {g: (c, per_group[g]) for g, c in counts.items() if c < per_group[g]}
        report.above_capacity = {g: c for g, c in counts.items() if c > capacities[g]}
        report.excess = max(0, sum(counts.values()) - len(acked) - len(maybe))
        report.acked = len(acked)
        return report


@dataclass
class Report:
    """What the checker found. Outside a failover every list and map must be empty."""

    errors: list[Event] = field(default_factory=list)  # 5xx other than 503
    twice: list[str] = field(default_factory=list)  # visitors acknowledged into two groups
    over: dict[str, int] = field(default_factory=dict)  # acknowledged visitors past capacity
    lost: list[str] = field(default_factory=list)  # acknowledged, not (or not so) in Redis
    below: dict[str, tuple[int, int]] = field(default_factory=dict)  # stored < acknowledged
    above_capacity: dict[str, int] = field(default_factory=dict)  # stored > capacity
    excess: int = 0  # stored beyond acknowledged + unknown
    counts: dict[str, int] = field(default_factory=dict)
    acked: int = 0

    def violations(self) -> dict[str, object]:
        found = {
            "5xx": self.errors[:3], "visitor in two groups": self.twice[:3],
            "acknowledged over capacity": self.over, "acknowledged but lost": self.lost[:3],
            "stored below acknowledged": self.below, "stored over capacity": self.above_capacity,
            "stored beyond acknowledged + unknown": self.excess,
        }
        return {k: v for k, v in found.items() if v}


def new_visitors(n: int) -> list[str]:
    return [secrets.token_urlsafe(16) for _ in range(n)]


def schedule(visitors: list[str], max_scans: int = 3, seed: int = 7) -> list[str]:
    """Each visitor scans 1..max_scans times, in a shuffled order."""
    rng = random.Random(seed)
    plan = [v for v in visitors for _ in range(rng.randint(1, max_scans))]
    rng.shuffle(plan)
    return plan


async def drive(
    host: str,
    port: int,
    path: str,
    plan: list[str],
    history: History,
    *,
    concurrency: int = 32,
    request_timeout: float = 2.0,
    pace: float = 0.0,
    duration: float | None = None,
) -> None:
    """Scan `path` once per entry of `plan` (a visitor id) or, with `duration`, cycle through
    the plan until that many seconds have passed; over keep-alive connections that are reopened
    after any failure. `pace` spaces each connection's requests."""
    end = time.monotonic() + duration if duration is not None else None
    position = iter(range(10**9))

    def next_visitor() -> str | None:
        i = next(position)
        if end is None:
            return plan[i] if i < len(plan) else None
        return plan[i % len(plan)] if time.monotonic() < end else None

    async def worker() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (visitor := next_visitor()) is not None:
            request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                       f"Cookie: lc_vid={visitor}\r\n\r\n").encode()
            started = time.monotonic()
            try:
                async with asyncio.timeout(request_timeout):
                    if conn is None:
                        conn = await asyncio.open_connection(host, port)
                    status, headers = await _exchange(*conn, request)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                history.add(visitor, "unknown", started=started)
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.01)
                continue
            location = headers.get("location", "")
            if status == 302 and location.startswith(GROUP_URL):
                outcome, group = "ok", location.removeprefix(GROUP_URL)
            elif status == 302 and location == FALLBACK_URL:
                outcome, group = "fallback", None
            else:
                outcome, group = ("failed" if status == 503 else "error"), None
            history.add(visitor, outcome, group, status, started)
            if pace:
                await asyncio.sleep(pace)
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str]]:
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers: dict[str, str] = defaultdict(str)
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length") or 0))
    return status, headers
