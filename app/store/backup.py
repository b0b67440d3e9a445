"""Export and import: every pool with its groups, in order, their counts and the pool's
statistics (totals, hourly buckets, daily visitors), as one JSON document (API keys, events and
webhooks are not exported). The rules live here; `livecode export` and `livecode import` only
read and write the file."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from app.errors import InvalidInput, validation_details
from app.schemas import GroupCreate, PoolCreate
from app.store.keys import CHANNEL_RE, GROUP_ID_RE
from app.store.pools import PoolStore
from app.store.schema import OTHER_CHANNEL, OUTCOME_FIELDS

EXPORT_VERSION = 2
READS = (1, 2)  # version 1: no statistics
_POOL_FIELDS = frozenset(PoolCreate.model_fields)
_GROUP_FIELDS = frozenset(GroupCreate.model_fields)


@dataclass
class PoolImport:
    pool: PoolCreate
    groups: list[tuple[GroupCreate, int]]  # each group with its count
    statistics: dict[str, Any] | None = None


async def export_all(store: PoolStore) -> dict[str, Any]:
    found, _ = await store.list_pools(limit=1_000_000)
    pools = []
    for p in found:
        pool = p.model_dump(mode="json", exclude_none=True)
        pool["groups"] = [g.model_dump(mode="json", exclude_none=True)
                          for g in await store.list_groups(p.id)]
        pool["statistics"] = await store.statistics.dump(p.id)
        pools.append(pool)
    return {"version": EXPORT_VERSION, "exported_at": datetime.now(UTC).isoformat(),
            "pools": pools}


def parse_export(doc: Any) -> list[PoolImport]:
    """An export read back, every pool and group validated; InvalidInput names what is wrong."""
    if not isinstance(doc, dict) or doc.get("version") not in READS:
        raise InvalidInput(f"not a livecode export (version {' or '.join(map(str, READS))})")
    pools = doc.get("pools")
    if not isinstance(pools, list):
        raise InvalidInput("the export has no list of pools")
    plan = []
    try:
        for raw in pools:
            if not isinstance(raw, dict):
                raise InvalidInput("a pool is not an object")
            pool = PoolCreate.model_validate({k: v for k, v in raw.items() if k in _POOL_FIELDS})
            groups = []
            for g in raw.get("groups") or []:
                if not isinstance(g, dict):
                    raise InvalidInput(f"pool {pool.id!r}: a group is not an object")
                group = GroupCreate.model_validate(
                    {k: v for k, v in g.items() if k in _GROUP_FIELDS})
                count = g.get("count", 0)
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise InvalidInput(f"pool {pool.id!r}: a group's count is not a number >= 0")
                groups.append((group, count))
            statistics = raw.get("statistics")
            if statistics is not None and not _statistics_ok(statistics):
                raise InvalidInput(f"pool {pool.id!r}: its statistics are not an export's")
            plan.append(PoolImport(pool, groups, statistics))
    except ValidationError as exc:
        raise InvalidInput("invalid export", validation_details(exc.errors())) from None
    return plan


async def apply_import(store: PoolStore, plan: list[PoolImport], *, replace: bool) -> int:
    """Create the pools of `plan` with their groups and counts. Everything is checked before
    the first write; an existing pool is an error unless `replace`, which deletes it first."""
    existing = {p.id for p in (await store.list_pools(limit=1_000_000))[0]}
    clash = [p.pool.id for p in plan if p.pool.id in existing]
    if clash and not replace:
        raise InvalidInput(f"pools already exist: {', '.join(clash)} (use --replace)",
                           {"pool_ids": clash})
    for p in plan:  # URL checks (and one URL per pool) for everything before any write
        store.check_groups([g for g, _ in p.groups])
    for p in plan:
        if p.pool.id in existing:
            await store.delete_pool(p.pool.id)
        await store.create_pool(p.pool)
        created = await store.add_groups(p.pool.id, [g for g, _ in p.groups])
        for made, (_, count) in zip(created, p.groups, strict=True):
            if count:
                await store.set_count(p.pool.id, made.id, count)
        if p.statistics:
            await store.statistics.restore(p.pool.id, p.statistics)
    return len(plan)


def _statistics_ok(doc: Any) -> bool:
    """The shape `StatsStore.dump` writes, with names that can be keys and fields (group ids,
    channels, outcomes), checked before anything is written."""
    def channel(c: Any) -> bool:
        return isinstance(c, str) and (c == OTHER_CHANNEL or CHANNEL_RE.match(c) is not None)

    def counts(d: Any) -> bool:
        return isinstance(d, dict) and all(
            o in OUTCOME_FIELDS and isinstance(n, int) and n >= 0 for o, n in d.items())

    try:
        if not isinstance(doc, dict):
            return False
        for k, v in (doc.get("totals") or {}).items():
            name = k[2:] if k.startswith(("c:", "n:")) else None
            if not isinstance(v, int) or not (k in OUTCOME_FIELDS or channel(name)):
                return False
        for h in doc.get("hours") or []:
            datetime.fromisoformat(h["start"])
            if not counts(h.get("outcomes") or {}):
                return False
            if not all(GROUP_ID_RE.match(g) and counts(c)
                       for g, c in (h.get("groups") or {}).items()):
                return False
            if not all(channel(ch) and counts(c) for ch, c in (h.get("channels") or {}).items()):
                return False
        for v in doc.get("visitors") or []:
            date.fromisoformat(v["day"])
            if v.get("channel") is not None and not channel(v["channel"]):
                return False
            if not base64.b64decode(v["hll"], validate=True).startswith(b"HYLL"):
                return False
        return all(channel(c) for c in doc.get("channels") or [])
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
