"""Export and import: every pool with its groups, in order, and their counts, as one JSON
document (API keys are not exported). The rules live here; `livecode export` and `livecode
import` only read and write the file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from app.errors import InvalidInput, validation_details
from app.schemas import GroupCreate, PoolCreate
from app.store.pools import PoolStore

EXPORT_VERSION = 1
_POOL_FIELDS = frozenset(PoolCreate.model_fields)
_GROUP_FIELDS = frozenset(GroupCreate.model_fields)


@dataclass
class PoolImport:
    pool: PoolCreate
    groups: list[tuple[GroupCreate, int]]  # each group with its count


async def export_all(store: PoolStore) -> dict[str, Any]:
    found, _ = await store.list_pools(limit=1_000_000)
    pools = []
    for p in found:
        pool = p.model_dump(mode="json", exclude_none=True)
        pool["groups"] = [g.model_dump(mode="json", exclude_none=True)
                          for g in await store.list_groups(p.id)]
        pools.append(pool)
    return {"version": EXPORT_VERSION, "exported_at": datetime.now(UTC).isoformat(),
            "pools": pools}


def parse_export(doc: Any) -> list[PoolImport]:
    """An export read back, every pool and group validated; InvalidInput names what is wrong."""
    if not isinstance(doc, dict) or doc.get("version") != EXPORT_VERSION:
        raise InvalidInput(f"not a livecode export (version {EXPORT_VERSION})")
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
            plan.append(PoolImport(pool, groups))
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
    return len(plan)
