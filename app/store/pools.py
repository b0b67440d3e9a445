"""Pools and groups in Redis: the one service layer under the admin API, the CLI and the demo.

Every change that touches a group's eligibility goes through a Lua script, so the indexes the
scan script reads never disagree with the groups they describe.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis.asyncio as aredis
from pydantic import ValidationError
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from app import audit, links
from app.allocator import scripts
from app.allocator.protocol import Call, Outcome, call_args, decode
from app.errors import Conflict, GroupNotFound, InvalidInput, PoolNotFound, validation_details
from app.events.store import EventStore
from app.qr import WECHAT_CODE_LIFETIME, is_wechat_group_url
from app.schemas import (
    Alerts,
    Fallback,
    GroupCreate,
    GroupPublic,
    GroupUpdate,
    PoolCreate,
    PoolPublic,
    PoolUpdate,
    from_ms,
    to_ms,
)
from app.settings import Settings
from app.stats.forecast import open_groups as forecast_groups
from app.stats.forecast import simulate
from app.stats.models import ForecastPublic, GroupForecast
from app.stats.store import StatsStore, zone_offset_s
from app.store import keys
from app.store.group_reads import group_rows
from app.store.schema import DEFAULT_STICKY_TTL_S, GROUP, POOL
from app.urls import check_target_url

AnyRedis = aredis.Redis | RedisCluster
T = TypeVar("T")


async def server_version(client: AnyRedis) -> str:
    if isinstance(client, RedisCluster):
        info = await client.execute_command("INFO", "server", target_nodes=RedisCluster.RANDOM)
    else:
        info = await client.info("server")
    return str(info["redis_version"])


def _s(v: Any) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


_CHUNK = 100  # groups validated, written or read between two turns of the event loop
_BACKGROUND: set[asyncio.Task[Any]] = set()


def _in_background(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """`work` as a task that runs to its end, whoever waits for it (or no one)."""
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


async def _shielded(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end even if the caller is cancelled (the caller still sees the
    cancellation)."""
    return await asyncio.shield(_in_background(work))


def _field(pairs: Sequence[str], name: str) -> str | None:
    """The value of `name` in a flat name/value list (as _group_fields makes)."""
    for i in range(0, len(pairs) - 1, 2):
        if pairs[i] == name:
            return pairs[i + 1]
    return None


def _check_list_urls(prepared: Sequence[tuple[str, list[str]]]) -> None:
    first: dict[str, tuple[int, str]] = {}
    for i, (gid, fields) in enumerate(prepared):
        url = _field(fields, "url")
        if url is None:
            continue
        if url in first:
            j, other = first[url]
            raise Conflict(f"the URL {url} is given twice, at {j} and {i} in the list",
                           {"group_id": other or None, "url": url, "index": [j, i]})
        first[url] = (i, gid)


def _url_taken(url: str, group_id: str) -> Conflict:
    return Conflict(f"group {group_id!r} already has the URL {url}",
                    {"group_id": group_id, "url": url})


class PoolStore:
    def __init__(
        self, client: AnyRedis, *, shebang: bool, settings: Settings | None = None
    ) -> None:
        self.r = client
        self.settings = settings or Settings()
        self.urls = self.settings.url_policy
        self.shebang = shebang
        self.statistics = StatsStore(client, self.settings.stats_retention_days)
        self.events = EventStore(client)
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(scripts.source(name, shebang=shebang))
            for name in scripts.NAMES
        }

    @classmethod
    async def open(cls, client: AnyRedis, settings: Settings | None = None) -> PoolStore:
        version = await server_version(client)
        return cls(client, shebang=scripts.supports_shebang(version), settings=settings)

    async def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> str:
        result = await self._scripts[name](keys=list(keys_), args=list(args))
        return str(_s(result[0] if isinstance(result, list) else result))

    # pools

    def _pool_fields(self, data: PoolCreate | PoolUpdate) -> list[str]:
        """The given fields as POOL name/value pairs for pool_put ('' removes a field)."""
        fields: dict[str, str] = {}
        given = data.model_fields_set
        for attr in ("name", "strategy", "status", "mode"):
            if attr in given and getattr(data, attr) is not None:
                fields[attr] = str(getattr(data, attr))
        for attr in ("valid_from", "valid_until"):
            if attr in given:
                value = getattr(data, attr)
                fields[attr] = str(to_ms(value)) if value is not None else ""
        if "sticky_ttl_s" in given and data.sticky_ttl_s is not None:
            fields["sticky_ttl"] = str(data.sticky_ttl_s)
        if "timezone" in given and data.timezone is not None:
            fields["timezone"] = data.timezone
            fields["tz_offset"] = str(zone_offset_s(data.timezone))
        if "language" in given and data.language is not None:
            fields["language"] = data.language
        if "alerts" in given and data.alerts is not None:
            a = data.alerts
            fields.update(low_minutes=str(a.low_minutes), low_percent=str(a.low_percent),
                          low_every=str(a.low_every_minutes),
                          expiring_hours=str(a.expiring_hours))
        if "fallback" in given and data.fallback is not None:
            fb = data.fallback
            fields["fallback_url"] = (
                check_target_url(fb.url, self.urls, "fallback.url") if fb.url else ""
            )
            fields["fallback_message"] = fb.message or ""
            fields["fallback_contact"] = (
                check_target_url(fb.contact_url, self.urls, "fallback.contact_url")
                if fb.contact_url else ""
            )
        return [x for kv in fields.items() for x in kv]

    async def _pool_put(self, pool_id: str, op: str, fields: Sequence[str]) -> str:
        return await self._run("pool_put", [keys.pool(pool_id)],
                               [keys.prefix(pool_id), op, audit.actor.get(), *fields])

    async def create_pool(self, data: PoolCreate) -> PoolPublic:
        # every field is written at create, so defaults are explicit in Redis
        data = data.model_copy(update={"timezone": data.timezone or self.settings.timezone,
                                       "language": data.language or self.settings.language})
        for name in PoolCreate.model_fields:
            if name != "id":
                data.model_fields_set.add(name)
        now = int(time.time() * 1000)
        fields = [*self._pool_fields(data), "created", str(now),
                  "draw_salt", secrets.token_hex(16), "room", "0", "capacity", "0",
                  "stats_ttl", str(self.settings.stats_retention_days * 86400)]
        result = await self._pool_put(data.id, "create", fields)
        if result == "exists":
            raise Conflict(f"pool {data.id!r} already exists", {"pool_id": data.id})
        if result == "deleting":
            raise Conflict(f"pool {data.id!r} is being deleted, try again", {"pool_id": data.id})
        await self.r.zadd(keys.POOLS_INDEX, {data.id: now}, nx=True)
        return await self.get_pool(data.id)

    async def update_pool(self, pool_id: str, data: PoolUpdate) -> PoolPublic:
        current = await self.get_pool(pool_id)
        vf = data.valid_from if "valid_from" in data.model_fields_set else current.valid_from
        vu = data.valid_until if "valid_until" in data.model_fields_set else current.valid_until
        if vf and vu and vf >= vu:
            raise InvalidInput("valid_from must be before valid_until")
        fields = self._pool_fields(data)
        result = "ok"
        if fields:
            result = await self._pool_put(pool_id, "update", fields)
        if result != "ok":
            raise PoolNotFound(pool_id)
        return await self.get_pool(pool_id)

    async def migrate(self) -> int:
        """Bring pools made by older versions up to the current data model (at start-up;
        idempotent): a draw salt, the open groups' room and capacity, statistics' retention
        and a timezone where they lack them. Returns how many pools changed."""
        ids = [str(_s(p)) for p in await self.r.zrange(keys.POOLS_INDEX, 0, -1)]
        tz = self.settings.timezone
        ttl = str(self.settings.stats_retention_days * 86400)
        offset = str(zone_offset_s(tz))
        changed = 0
        script = await self.pipelined_script("pool_migrate")
        for start in range(0, len(ids), 500):
            async with self.r.pipeline(transaction=False) as pipe:
                for pool_id in ids[start : start + 500]:
                    args = [keys.prefix(pool_id), secrets.token_hex(16), ttl, tz, offset]
                    await script(keys=[keys.pool(pool_id)], args=args,
                                 client=pipe)  # type: ignore[arg-type]
                changed += sum(1 for n in await pipe.execute() if int(n))
        return changed

    async def pipelined_script(self, name: str) -> AsyncScript:
        """One of the scripts, for calls in a pipeline. redis-py's cluster pipeline sends
        EVALSHA without loading the script first (its plain pipeline does), and a primary
        that never ran it answers NOSCRIPT: on a cluster it is loaded on every primary here."""
        script = self._scripts[name]
        if isinstance(self.r, RedisCluster):
            await self.r.script_load(script.script)
        return script

    async def set_status(self, pool_id: str, status: str) -> PoolPublic:
        return await self.update_pool(pool_id, PoolUpdate.model_validate({"status": status}))

    async def get_pool(self, pool_id: str, *, with_groups: bool = False) -> PoolPublic:
        raw = POOL.decode(await self.r.hgetall(keys.pool(pool_id)))
        if "status" not in raw:
            raise PoolNotFound(pool_id)
        pool = PoolPublic(
            id=pool_id,
            name=raw.get("name") or "",
            strategy=raw.get("strategy", "fill"),  # type: ignore[arg-type]
            status=raw["status"],  # type: ignore[arg-type]
            mode=raw.get("mode", "redirect"),  # type: ignore[arg-type]
            valid_from=from_ms(raw.get("valid_from")),
            valid_until=from_ms(raw.get("valid_until")),
            sticky_ttl_s=int(raw.get("sticky_ttl") or DEFAULT_STICKY_TTL_S),
            fallback=Fallback(
                url=raw.get("fallback_url") or None,
                message=raw.get("fallback_message") or None,
                contact_url=raw.get("fallback_contact") or None,
            ),
            created_at=from_ms(raw.get("created")),
            timezone=raw.get("timezone") or "UTC",
            language=raw.get("language") or self.settings.language,  # type: ignore[arg-type]
            alerts=Alerts(**{attr: int(raw[field]) for attr, field in _ALERT_FIELDS.items()
                             if raw.get(field)}),
            scan_url=links.scan_url(self.settings, pool_id),
        )
        if with_groups:
            pool.poster_warning = links.poster_warning(self.settings)
            groups = await self.list_groups(pool_id)
            pool.groups = groups
            usable = [g for g in groups if g.enabled and not g.expired]
            pool.total_capacity = sum(g.capacity for g in usable)
            pool.total_remaining = sum(g.remaining for g in usable)
            pool.totals = await self.statistics.totals(pool_id)
            pool.today = await self.statistics.today(pool_id, pool.timezone)
            pool.forecast = await self.forecast(pool, groups)
            pool.next_group = await self.next_group(pool_id)
        return pool

    async def list_pools(self, limit: int = 50, offset: int = 0) -> tuple[list[PoolPublic], int]:
        """Pools by creation time, and how many there are."""
        ids = await self.r.zrange(keys.POOLS_INDEX, offset, offset + limit - 1)
        pools = []
        for pid in ids:
            try:
                pools.append(await self.get_pool(str(_s(pid))))
            except PoolNotFound:  # deleted between the two reads
                continue
        return pools, int(await self.r.zcard(keys.POOLS_INDEX))

    async def delete_pool(self, pool_id: str) -> None:
        """The pool hash goes first: from then on scans see an unknown pool and write nothing,
        and no group can be added. Its events not yet dispatched move to the system stream,
        with pool.deleted; then every other key of the pool goes (groups, indexes, statistics,
        sticky records, events)."""
        name = await self.r.hget(keys.pool(pool_id), POOL.stored("name"))
        if await self._run("pool_delete", [keys.pool(pool_id)], [keys.prefix(pool_id)]) != "ok":
            raise PoolNotFound(pool_id)
        # The rest can take long (SCAN walks the whole keyspace for the pool's keys): it goes
        # on even when the request that started it is cut off by its deadline (app/deadline.py).
        await _shielded(self._purge_pool(pool_id, _s(name) or "", audit.actor.get()))

    async def _purge_pool(self, pool_id: str, pool_name: str, actor: str) -> None:
        await self.events.move_to_system(pool_id, pool_name)
        await self.events.append_system("pool.deleted", actor=actor, pool_id=pool_id,
                                        pool_name=pool_name)
        marker = keys.deleting(pool_id).encode()
        batch: list[Any] = []
        pattern = keys.prefix(pool_id) + "*"
        async for key in self.r.scan_iter(match=pattern, count=1000):
            if key != marker:
                batch.append(key)
            if len(batch) >= 500:
                await self.r.unlink(*batch)
                batch = []
        if batch:
            await self.r.unlink(*batch)
        await self.r.zrem(keys.POOLS_INDEX, pool_id)
        # its dispatcher cursor stays: a dispatcher may still append what it read before
        # the move, and the cursor is what makes it skip them; it drops the cursors of
        # pools that are gone itself (Dispatcher.run_once)
        await self.r.delete(keys.deleting(pool_id))

    async def next_group(self, pool_id: str) -> str | None:
        """The group the next new scan would get: the scan script run dry (it stops before its
        first write). For weighted pools this is one draw."""
        vid = secrets.token_urlsafe(16)[:22]  # the weighted draw comes from the visitor id
        ks, args = call_args(pool_id, vid, call=Call.PEEK)
        decision = decode(await self._scripts["scan"](keys=ks, args=args))
        if decision.outcome is not Outcome.PEEK:
            return None
        return decision.group_id or None

    async def visitor_group(self, pool_id: str, visitor_id: str) -> str | None:
        """The group a visitor is sticky to (the record holds the group's Fenwick slot)."""
        slot = await self.r.get(keys.sticky(pool_id, visitor_id))
        gid = await self.r.hget(keys.slots(pool_id), slot) if slot else None
        return _s(gid)

    async def forecast(self, pool: PoolPublic, groups: list[GroupPublic]) -> ForecastPublic:
        """When the pool runs out at the current rate (app/stats/forecast.py); each group's
        own time to full goes into `groups`."""
        now = datetime.now(UTC)
        rate5, rate15 = await self.statistics.rates(pool.id, int(now.timestamp() * 1000))
        usable = [g for g in groups if g.enabled and not g.expired]
        open_groups = [g for g in usable if g.remaining > 0]
        result = simulate(pool.strategy, forecast_groups(open_groups, now),
                          rate5 if pool.status == "active" else 0.0)
        for g in groups:
            g.minutes_to_full = _round(result.minutes_to_full.get(g.id))
        expiring = [g for g in open_groups if g.expires_at]
        soonest = min(expiring, key=lambda g: g.expires_at or now, default=None)
        minutes = _round(result.minutes_to_exhaustion)
        return ForecastPublic(
            rate_per_min_5m=round(rate5, 2), rate_per_min_15m=round(rate15, 2),
            room_left=sum(g.remaining for g in usable), room_expiring=result.room_expiring,
            minutes_to_exhaustion=minutes,
            exhausts_at=now + timedelta(minutes=minutes) if minutes is not None else None,
            next_expiry=soonest.expires_at if soonest else None,
            next_expiry_group=soonest.id if soonest else None,
            groups=[GroupForecast(group_id=g.id, minutes_to_full=g.minutes_to_full,
                                  expires_at=g.expires_at) for g in open_groups],
        )

    # groups

    def _group_fields(self, data: GroupCreate | GroupUpdate) -> list[str]:
        """The given fields as GROUP name/value pairs for group_put ('' removes a field)."""
        given = data.model_fields_set
        fields: dict[str, str] = {}
        if data.url is not None and ("url" in given or isinstance(data, GroupCreate)):
            fields["url"] = check_target_url(data.url, self.urls)
        if isinstance(data, GroupCreate):
            given = given | {"name", "capacity", "weight", "enabled"}
        for attr in ("name", "capacity", "weight"):
            if attr in given and getattr(data, attr) is not None:
                fields[attr] = str(getattr(data, attr))
        if "enabled" in given and data.enabled is not None:
            fields["enabled"] = "1" if data.enabled else "0"
        if "expires_at" in given:
            fields["expires_at"] = str(to_ms(data.expires_at)) if data.expires_at else ""
        if "mode" in given:
            fields["mode"] = data.mode or ""
        return [x for kv in fields.items() for x in kv]

    async def add_groups(self, pool_id: str, groups: Sequence[GroupCreate]) -> list[GroupPublic]:
        """All or nothing: everything is validated and checked before the first write, and if a
        concurrent change still makes one create fail, the groups created so far are removed.
        Groups without an id get the next free g<N>, chosen inside the script. A URL may be in
        a pool only once (as stored, after check_target_url): Conflict names the group that
        has it. Long lists are validated and read in chunks, giving the event loop (the scans)
        its turn in between."""
        await self.get_pool(pool_id)
        prepared = await self._prepare_groups(groups)
        chosen = [gid for gid, _ in prepared if gid]
        seen: set[str] = set()
        for gid in chosen:
            if gid in seen:
                raise InvalidInput(f"group id {gid!r} given twice", {"group_id": gid})
            seen.add(gid)
        existing = await self._existing(pool_id, chosen)
        if existing:
            raise Conflict(f"group {existing[0]!r} already exists", {"group_id": existing[0]})
        await self._check_new_urls(pool_id, prepared)
        created: list[str] = []
        try:
            for gid, fields in prepared:
                reply = await self._scripts["group_put"](
                    keys=[keys.pool(pool_id)],
                    args=[keys.prefix(pool_id), gid, "create", audit.actor.get(), *fields],
                )
                if isinstance(reply, list):
                    created.append(str(_s(reply[1])))
                elif _s(reply) == "exists":
                    raise Conflict(f"group {gid!r} already exists", {"group_id": gid})
                else:
                    raise PoolNotFound(pool_id)
            # a concurrent add or replace of the same URL is caught here, after both wrote
            await self._check_urls_unique(pool_id, created)
        except BaseException as exc:
            undo = self._remove_groups(pool_id, created)
            if isinstance(exc, asyncio.CancelledError):  # cut off: do not hold the answer
                _in_background(undo)
            else:
                await _shielded(undo)
            raise
        return await self._read_groups(pool_id, created)

    async def _prepare_groups(self, groups: Sequence[GroupCreate]) -> list[tuple[str, list[str]]]:
        prepared = []
        for start in range(0, len(groups), _CHUNK):
            if start:
                await asyncio.sleep(0)
            prepared += [(g.id or "", self._group_fields(g)) for g in groups[start:start + _CHUNK]]
        return prepared

    async def _remove_groups(self, pool_id: str, gids: Sequence[str]) -> None:
        for gid in gids:
            await self._run("group_delete", [keys.pool(pool_id)],
                            [keys.prefix(pool_id), gid, audit.actor.get()])

    async def _read_groups(self, pool_id: str, gids: Sequence[str]) -> list[GroupPublic]:
        out: list[GroupPublic] = []
        async for gid, raw in group_rows(self.r, pool_id, gids, None, _CHUNK):
            if not raw:
                raise GroupNotFound(gid)
            out.append(_group(gid, raw))
        return out

    # one URL per pool

    async def _urls(self, pool_id: str) -> dict[str, list[str]]:
        """Every stored group URL of the pool and the groups that have it (read in chunks)."""
        gids = [str(_s(g)) for g in await self.r.hvals(keys.slots(pool_id))]
        by_url: dict[str, list[str]] = {}
        async for gid, (url,) in group_rows(self.r, pool_id, gids, [GROUP.stored("url")], _CHUNK):
            if url:
                by_url.setdefault(str(_s(url)), []).append(gid)
        return by_url

    async def _check_new_urls(self, pool_id: str, prepared: Sequence[tuple[str, list[str]]],
                              ) -> None:
        """Conflict when a URL of `prepared` is already in the pool or given twice."""
        _check_list_urls(prepared)
        stored = await self._urls(pool_id)
        for _, fields in prepared:
            url = _field(fields, "url")
            if url is not None and url in stored:
                raise _url_taken(url, stored[url][0])

    async def _check_urls_unique(self, pool_id: str, gids: Sequence[str]) -> None:
        """Conflict when a group of `gids` shares its URL with any other group of the pool."""
        if not gids:
            return
        mine = set(gids)
        for url, holders in (await self._urls(pool_id)).items():
            if len(holders) > 1 and mine.intersection(holders):
                others = [g for g in holders if g not in mine] or holders[1:]
                raise _url_taken(url, others[0])

    async def _existing(self, pool_id: str, gids: Sequence[str]) -> list[str]:
        async with self.r.pipeline(transaction=False) as pipe:
            for gid in gids:
                pipe.exists(keys.group(pool_id, gid))
            found = await pipe.execute()
        return [gid for gid, n in zip(gids, found, strict=True) if n]

    async def update_group(self, pool_id: str, group_id: str, data: GroupUpdate) -> GroupPublic:
        if "url" in data.model_fields_set and data.url is not None:
            return await self._replace(pool_id, group_id, data)
        return await self._put(pool_id, group_id, self._group_fields(data))

    async def replace_code(self, pool_id: str, group_id: str, url: str,
                           expires_at: datetime | None = None) -> GroupPublic:
        """A group's new code (WeChat group codes expire every 7 days and are renewed): the
        group keeps its id, count and place. A new WeChat group code gets expires_at = now + 7
        days unless given, and `page` mode; a URL another group of the pool has is Conflict."""
        given: dict[str, Any] = {"url": url}
        if expires_at is not None:
            given["expires_at"] = expires_at
        try:
            data = GroupUpdate.model_validate(given)
        except ValidationError as exc:
            raise InvalidInput("invalid group fields", validation_details(exc.errors())) from None
        return await self.update_group(pool_id, group_id, data)

    async def _replace(self, pool_id: str, group_id: str, data: GroupUpdate) -> GroupPublic:
        """update_group with a URL: the one-URL-per-pool rule, and a renewed WeChat code's
        expiry. Checked before the write and again after it (a concurrent add or replace of the
        same URL); if that finds a clash, the group's previous fields are put back."""
        if not await self.r.exists(keys.pool(pool_id)):
            raise PoolNotFound(pool_id)
        before = await self.get_group(pool_id, group_id)
        assert data.url is not None
        url = check_target_url(data.url, self.urls)
        data = data.model_copy()
        if url != before.url and is_wechat_group_url(url):
            if "expires_at" not in data.model_fields_set:
                data.expires_at = datetime.now(UTC) + WECHAT_CODE_LIFETIME
                data.model_fields_set.add("expires_at")
            if "mode" not in data.model_fields_set:
                data.mode = "page"
                data.model_fields_set.add("mode")
        fields = self._group_fields(data)
        others = [g for g in (await self._urls(pool_id)).get(url, []) if g != group_id]
        if others:
            raise _url_taken(url, others[0])
        updated = await self._put(pool_id, group_id, fields)
        try:
            await self._check_urls_unique(pool_id, [group_id])
        except Conflict:
            previous = GroupUpdate.model_validate(
                {f: getattr(before, f) for f in data.model_fields_set})
            await _shielded(self._put(pool_id, group_id, self._group_fields(previous)))
            raise
        return updated

    async def reset_group(self, pool_id: str, group_id: str) -> GroupPublic:
        return await self.set_count(pool_id, group_id, 0)

    async def set_count(self, pool_id: str, group_id: str, count: int) -> GroupPublic:
        """Reset (0), or restore a count from an export."""
        return await self._put(pool_id, group_id, ["count", str(count)])

    def check_groups(self, groups: Sequence[GroupCreate]) -> None:
        """Validate groups as one add_groups would (a URL twice is Conflict), writing nothing."""
        _check_list_urls([(g.id or "", self._group_fields(g)) for g in groups])

    async def set_position(self, pool_id: str, group_id: str, position: int) -> GroupPublic:
        return await self._put(pool_id, group_id, ["position", str(position)])

    async def _put(self, pool_id: str, group_id: str, fields: list[str]) -> GroupPublic:
        if not keys.GROUP_ID_RE.match(group_id):
            raise GroupNotFound(group_id)
        result = await self._run(
            "group_put", [keys.pool(pool_id)],
            [keys.prefix(pool_id), group_id, "update", audit.actor.get(), *fields]
        )
        if result == "no_pool":
            raise PoolNotFound(pool_id)
        if result == "not_found":
            raise GroupNotFound(group_id)
        return await self.get_group(pool_id, group_id)

    async def reorder_groups(self, pool_id: str, group_ids: Sequence[str]) -> list[GroupPublic]:
        if len(set(group_ids)) != len(group_ids):
            raise InvalidInput("a group id is listed twice", {"group_ids": list(group_ids)})
        result = await self._run(
            "group_reorder", [keys.pool(pool_id)],
            [keys.prefix(pool_id), audit.actor.get(), *group_ids]
        )
        if result == "no_pool":
            raise PoolNotFound(pool_id)
        if result == "mismatch":
            raise InvalidInput("the list must name every group of the pool exactly once",
                               {"group_ids": list(group_ids)})
        return await self.list_groups(pool_id)

    async def delete_group(self, pool_id: str, group_id: str) -> None:
        if not keys.GROUP_ID_RE.match(group_id):
            raise GroupNotFound(group_id)
        result = await self._run(
            "group_delete", [keys.pool(pool_id)],
            [keys.prefix(pool_id), group_id, audit.actor.get()]
        )
        if result == "not_found":
            raise GroupNotFound(group_id)

    async def get_group(self, pool_id: str, group_id: str) -> GroupPublic:
        raw = {} if not keys.GROUP_ID_RE.match(group_id) else await self.r.hgetall(
            keys.group(pool_id, group_id)
        )
        if not raw:
            raise GroupNotFound(group_id)
        return _group(group_id, raw)

    async def list_groups(self, pool_id: str) -> list[GroupPublic]:
        """In the operator's order: by position, ties by id. PoolNotFound for no pool."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.exists(keys.pool(pool_id))
            pipe.hvals(keys.slots(pool_id))
            exists, slots = await pipe.execute()
        if not exists:
            raise PoolNotFound(pool_id)
        gids = [str(_s(g)) for g in slots]
        async with self.r.pipeline(transaction=False) as pipe:
            for gid in gids:
                pipe.hgetall(keys.group(pool_id, gid))
            raws = await pipe.execute()
        groups = [_group(gid, raw) for gid, raw in zip(gids, raws, strict=True) if raw]
        groups.sort(key=lambda g: (g.position, g.id))
        return groups


_ALERT_FIELDS = {"low_minutes": "low_minutes", "low_percent": "low_percent",
                 "low_every_minutes": "low_every", "expiring_hours": "expiring_hours"}


def _round(minutes: float | None) -> float | None:
    return None if minutes is None else round(minutes, 1)


def _group(gid: str, raw: dict[Any, Any]) -> GroupPublic:
    f = GROUP.decode(raw)
    count, cap = int(f.get("count", 0)), int(f.get("capacity", 0))
    expires = from_ms(f.get("expires_at"))
    return GroupPublic(
        id=gid,
        name=f.get("name", ""),
        url=f.get("url", ""),
        capacity=cap,
        count=count,
        remaining=max(cap - count, 0),
        fill_ratio=round(count / cap, 4) if cap else 1.0,
        expires_at=expires,
        expired=expires is not None and expires.timestamp() * 1000 <= time.time() * 1000,
        weight=int(f.get("weight", 1)),
        enabled=f.get("enabled") == "1",
        mode=f.get("mode") or None,  # type: ignore[arg-type]
        position=int(f.get("position", 0)),
    )
