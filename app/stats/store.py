"""Reading what the scan's stats recorder wrote (app/allocator/recorders/stats.lua): totals,
hourly and daily series in the pool's timezone, visitors, and the current rate."""

from __future__ import annotations

import base64
import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.errors import InvalidInput
from app.stats.forecast import OpenGroup
from app.stats.models import By, ScanTotals, StatsPoint, StatsPublic, StatsSeries, Step
from app.store import keys
from app.store.group_reads import group_rows
from app.store.schema import GROUP, OUTCOME_FIELDS, suffix

AnyRedis = Any  # redis.asyncio.Redis or RedisCluster
_EPOCH = date(1970, 1, 1)
Counts = dict[str, int]
OPEN_CHUNK = 1000  # open groups read per round trip (open_groups)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def day_number(day: date) -> int:
    """The local day as the scan names it: days since 1970-01-01 in the pool's zone."""
    return (day - _EPOCH).days


def zone_offset_s(tz: str, at: datetime | None = None) -> int:
    offset = (at or datetime.now(UTC)).astimezone(ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


class Bucket:
    """One hour's counts, parsed from its hash."""

    __slots__ = ("channels", "groups", "pool")

    def __init__(self, raw: dict[Any, Any]) -> None:
        self.pool: Counts = {}
        self.groups: dict[str, Counts] = defaultdict(dict)
        self.channels: dict[str, Counts] = defaultdict(dict)
        for k, v in raw.items():
            field, n = _s(k), int(v)
            if field.startswith("g:"):
                gid, _, outcome = field[2:].rpartition(":")
                self.groups[gid][outcome] = n
                self.pool[outcome] = self.pool.get(outcome, 0) + n
            elif field.startswith("c:"):
                ch, _, outcome = field[2:].rpartition(":")
                self.channels[ch][outcome] = n
            else:
                self.pool[field] = n


def _point(start: datetime, counts: Iterable[Counts], visitors: int | None = None) -> StatsPoint:
    sums = dict.fromkeys(OUTCOME_FIELDS, 0)
    for c in counts:
        for outcome in OUTCOME_FIELDS:
            sums[outcome] += c.get(outcome, 0)
    return StatsPoint(start=start, scans=sum(sums.values()), visitors=visitors, **sums)


class StatsStore:
    def __init__(self, client: AnyRedis, retention_days: int = 35) -> None:
        self.r = client
        self.retention_days = retention_days

    async def totals(self, pool_id: str) -> ScanTotals:
        raw = {_s(k): int(v) for k, v in (await self.r.hgetall(keys.stats(pool_id))).items()}
        counts = {o: raw.get(o, 0) for o in OUTCOME_FIELDS}
        by_channel: Counts = defaultdict(int)
        for field, n in raw.items():
            if field.startswith("c:"):
                by_channel[field[2:]] += n
            elif field.startswith("n:"):  # before 0.2: channel allocations not in 'new'
                by_channel[field[2:]] += n
                counts["new"] += n
        return ScanTotals(scans=sum(counts.values()), by_channel=dict(by_channel), **counts)

    async def rates(self, pool_id: str, now_ms: int) -> tuple[float, float]:
        """New allocations per minute over the last 5 and 15 minutes (the current one partly)."""
        minute = now_ms // 60000
        values = await self.r.hmget(keys.prefix(pool_id) + suffix("rate"),
                                    [str(m) for m in range(minute - 14, minute + 1)])
        counts = [int(v or 0) for v in values]
        part = (now_ms % 60000) / 60000
        return sum(counts[-5:]) / (4 + part), sum(counts) / (14 + part)

    async def open_groups(self, pool_id: str, now_ms: int) -> list[OpenGroup]:
        """The pool's open groups (its open index, not every group: a pool of 100,000 codes
        is mostly full ones), as the forecast takes them. Read OPEN_CHUNK at a time, a round
        trip each, so that the scans this process serves go on between them."""
        gids = [_s(g) for g in await self.r.zrange(keys.prefix(pool_id) + suffix("open"), 0, -1)]
        fields = [GROUP.stored(f) for f in ("enabled", "count", "capacity", "expires_at",
                                            "weight", "position")]
        out: list[OpenGroup] = []
        async for gid, row in group_rows(self.r, pool_id, gids, fields, OPEN_CHUNK):
            enabled, count, capacity, expires_at, weight, position = row
            left = int(capacity or 0) - int(count or 0)
            expires = int(expires_at) if expires_at else None
            if _s(enabled) != "1" or left <= 0 or (expires is not None and expires <= now_ms):
                continue
            out.append(OpenGroup(gid, left, None if expires is None else (expires - now_ms) / 60000,
                                 weight=int(weight or 1), capacity=int(capacity or 0),
                                 position=int(position or 0)))
        return out

    async def _buckets(self, pool_id: str, starts: Sequence[int]) -> dict[int, Bucket]:
        p = keys.prefix(pool_id) + suffix("hour")
        async with self.r.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(p + str(start))
            raws = await pipe.execute()
        return {start: Bucket(raw) for start, raw in zip(starts, raws, strict=True)}

    async def _visitors(self, pool_id: str, keys_: Sequence[Sequence[str]]) -> list[int]:
        """PFCOUNT of each list of visitor keys (a union when several)."""
        if not keys_:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for ks in keys_:
                # not pipe.pfcount: redis-py's cluster pipeline refuses it (a multi-key command
                # could span slots); these keys share the pool's slot
                pipe.execute_command("PFCOUNT", *ks)
            return [int(n) for n in await pipe.execute()]

    def _uv_key(self, pool_id: str, day: date, channel: str | None = None) -> str:
        key = keys.prefix(pool_id) + suffix("visitors") + str(day_number(day))
        return key if channel is None else f"{key}:{channel}"

    async def today(self, pool_id: str, tz: str, now: datetime | None = None) -> StatsPoint:
        zone = ZoneInfo(tz)
        local = (now or datetime.now(UTC)).astimezone(zone)
        start, end = _day_bounds(local.date(), zone)
        hours = _hour_starts(start, end, zone)
        buckets = await self._buckets(pool_id, hours)
        (uv,) = await self._visitors(pool_id, [[self._uv_key(pool_id, local.date())]])
        return _point(start.astimezone(zone), (b.pool for b in buckets.values()), uv)

    def window(self, tz: str, step: Step, start: datetime | None,
               end: datetime | None) -> tuple[datetime, datetime]:
        """The range asked for, in whole hours or days of the zone, within what is kept."""
        zone = ZoneInfo(tz)
        now = datetime.now(UTC)
        if end is None:
            end = now
        if start is None:
            start = end - (timedelta(hours=24) if step == "hour" else timedelta(days=6))
        if start >= end:
            raise InvalidInput("from must be before to", {"from": str(start), "to": str(end)})
        if end - start > timedelta(days=self.retention_days + 1):
            raise InvalidInput(f"at most {self.retention_days + 1} days at a time "
                               "(statistics are kept for LIVECODE_STATS_RETENTION_DAYS)")
        if step == "day":
            first = start.astimezone(zone).date()
            last = (end - timedelta(microseconds=1)).astimezone(zone).date()
            return _day_bounds(first, zone)[0], _day_bounds(last, zone)[1]
        off = zone_offset_s(str(zone), start) % 3600
        s = int(start.timestamp())
        s -= (s + off) % 3600
        e = math.ceil(end.timestamp())
        e += -(e + off) % 3600
        return datetime.fromtimestamp(s, UTC), datetime.fromtimestamp(e, UTC)

    async def series(self, pool_id: str, tz: str, step: Step, by: By | None,
                     start: datetime | None = None, end: datetime | None = None,
                     group_names: dict[str, str] | None = None) -> StatsPublic:
        zone = ZoneInfo(tz)
        lo, hi = self.window(tz, step, start, end)
        hours = _hour_starts(lo, hi, zone)
        buckets = await self._buckets(pool_id, hours)
        if step == "hour":
            periods = [(datetime.fromtimestamp(h, UTC), [h]) for h in hours]
        else:
            periods = []
            day = lo.astimezone(zone).date()
            while True:
                d0, d1 = _day_bounds(day, zone)
                if d0 >= hi:
                    break
                periods.append((d0, [h for h in hours if d0.timestamp() <= h < d1.timestamp()]))
                day += timedelta(days=1)
        days = [p[0].astimezone(zone).date() for p in periods] if step == "day" else []

        async def uv(channel: str | None) -> tuple[list[int | None], int | None]:
            if step != "day":
                return [None] * len(periods), None
            per_day = [[self._uv_key(pool_id, d, channel)] for d in days]
            counts = await self._visitors(pool_id, [*per_day, [k[0] for k in per_day]])
            return list(counts[:-1]), counts[-1]

        def make(kind: str, key: str | None, counts_of: Any,
                 visitors: tuple[list[int | None], int | None]) -> StatsSeries:
            points = [_point(start.astimezone(zone), (counts_of(buckets[h]) for h in hs), v)
                      for (start, hs), v in zip(periods, visitors[0], strict=True)]
            total = _point(lo.astimezone(zone), (counts_of(buckets[h]) for h in hours),
                           visitors[1])
            name = (group_names or {}).get(key or "") if kind == "group" else None
            return StatsSeries(kind=kind, key=key, name=name,  # type: ignore[arg-type]
                               points=points, total=total)

        series = [make("pool", None, lambda b: b.pool, await uv(None))]
        if by == "group":
            found = {g for b in buckets.values() for g in b.groups}
            order = [g for g in (group_names or {}) if g in found]
            order += sorted(found - set(order))
            for gid in order:
                series.append(make("group", gid, lambda b, g=gid: b.groups.get(g, {}),
                                   ([None] * len(periods), None)))
        elif by == "channel":
            for ch in sorted({c for b in buckets.values() for c in b.channels}):
                series.append(make("channel", ch, lambda b, c=ch: b.channels.get(c, {}),
                                   await uv(ch)))
        return StatsPublic(pool_id=pool_id, timezone=tz, step=step, by=by,
                           start=lo.astimezone(zone), end=hi.astimezone(zone), series=series)


    # export and import (app/store/backup.py)

    async def dump(self, pool_id: str) -> dict[str, Any]:
        """Everything the stats recorder keeps for a pool, by name, for an export."""
        p = keys.prefix(pool_id)
        totals = {_s(k): int(v) for k, v in (await self.r.hgetall(keys.stats(pool_id))).items()}
        hours: list[dict[str, Any]] = []
        visitors: list[dict[str, Any]] = []
        async for raw in self.r.scan_iter(match=p + suffix("hour") + "*", count=1000):
            start = int(_s(raw)[len(p + suffix("hour")):])
            b = Bucket(await self.r.hgetall(raw))
            hours.append({"start": datetime.fromtimestamp(start, UTC).isoformat(),
                          "outcomes": {k: v for k, v in b.pool.items()},
                          "groups": dict(b.groups), "channels": dict(b.channels)})
        async for raw in self.r.scan_iter(match=p + suffix("visitors") + "*", count=1000):
            name = _s(raw)[len(p + suffix("visitors")):]
            day, _, channel = name.partition(":")
            value = await self.r.get(raw)
            if value is not None:
                visitors.append({
                    "day": (_EPOCH + timedelta(days=int(day))).isoformat(),
                    "channel": channel or None, "hll": base64.b64encode(value).decode()})
        channels = sorted(_s(c) for c in await self.r.hkeys(p + suffix("channels")))
        hours.sort(key=lambda h: str(h["start"]))
        visitors.sort(key=lambda v: (str(v["day"]), v["channel"] or ""))
        return {"totals": totals, "hours": hours, "visitors": visitors, "channels": channels}

    async def restore(self, pool_id: str, doc: dict[str, Any]) -> None:
        """Write back what `dump` gave (the pool exists, its statistics are empty): each
        bucket expires when it would have."""
        p = keys.prefix(pool_id)
        ttl = self.retention_days * 86400
        now = datetime.now(UTC).timestamp()
        async with self.r.pipeline(transaction=False) as pipe:
            if doc.get("totals"):
                pipe.hset(keys.stats(pool_id), mapping={k: int(v)
                                                        for k, v in doc["totals"].items()})
            for h in doc.get("hours", []):
                start = int(datetime.fromisoformat(h["start"]).timestamp())
                if start + 3600 + ttl <= now:
                    continue
                fields: dict[str, int] = {}
                outcomes = dict(h.get("outcomes", {}))
                for gid, counts in h.get("groups", {}).items():
                    for outcome, n in counts.items():
                        fields[f"g:{gid}:{outcome}"] = int(n)
                        outcomes[outcome] = outcomes.get(outcome, 0) - int(n)
                fields.update({k: int(v) for k, v in outcomes.items() if int(v)})
                for ch, counts in h.get("channels", {}).items():
                    fields.update({f"c:{ch}:{o}": int(n) for o, n in counts.items()})
                if fields:
                    key = p + suffix("hour") + str(start)
                    pipe.hset(key, mapping=fields)
                    pipe.expireat(key, start + 3600 + ttl)
            days: dict[str, int] = {}
            for v in doc.get("visitors", []):
                day = day_number(date.fromisoformat(v["day"]))
                end = (day + 1) * 86400 + ttl + 86400  # a day's end, give or take its zone
                if end <= now:
                    continue
                key = p + suffix("visitors") + str(day) + (f":{v['channel']}"
                                                           if v.get("channel") else "")
                pipe.set(key, base64.b64decode(v["hll"]))
                pipe.expireat(key, end)
                if v.get("channel"):
                    days[v["channel"]] = max(days.get(v["channel"], 0), day)
            channels = {c: days.get(c, 0) for c in doc.get("channels", [])}
            if channels:
                pipe.hset(p + suffix("channels"), mapping=channels)
            await pipe.execute()


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    nxt = day + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)


def _hour_starts(start: datetime, end: datetime, zone: ZoneInfo) -> list[int]:
    """The hourly buckets' starts in [start, end): whole hours of the zone's offset."""
    off = zone_offset_s(str(zone), start) % 3600
    s = int(start.timestamp())
    s -= (s + off) % 3600
    return list(range(s, int(end.timestamp()), 3600))


CSV_COLUMNS = ("series", "key", "start", "scans", "new", "sticky", "fallback", "paused",
               "limited", "visitors")


def _cell(text: str) -> str:
    """A spreadsheet reads a cell starting with = + - @ as a formula: quote it."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def to_csv(stats: StatsPublic) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in stats.series:
        for p in s.points:
            writer.writerow([s.kind, _cell(s.key or ""), p.start.isoformat(), p.scans, p.new,
                             p.sticky, p.fallback, p.paused, p.limited,
                             "" if p.visitors is None else p.visitors])
    return out.getvalue()
