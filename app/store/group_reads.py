"""Reading many groups of a pool without holding the event loop: a pipeline of `chunk` groups
per round trip, so that the scans the same process serves go on between them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from app.store import keys


async def group_rows(r: Any, pool_id: str, gids: Sequence[str], fields: Sequence[str] | None,
                     chunk: int) -> AsyncIterator[tuple[str, Any]]:
    """Each group of `gids` with its `fields` (stored names; HMGET's list) or, for None, its
    whole hash (HGETALL's dict, empty for a group that is gone)."""
    for start in range(0, len(gids), chunk):
        part = gids[start : start + chunk]
        async with r.pipeline(transaction=False) as pipe:
            for gid in part:
                if fields is None:
                    pipe.hgetall(keys.group(pool_id, gid))
                else:
                    pipe.hmget(keys.group(pool_id, gid), list(fields))
            rows = await pipe.execute()
        for gid, row in zip(part, rows, strict=True):
            yield gid, row
