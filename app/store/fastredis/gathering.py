"""Gathered calls: calls of one script for one key (a pool), queued before the same write, go
out as one EVALSHA that the caller's packer makes; each caller gets its element of the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from app.store.fastredis.resp import Script

# Packs one EVALSHA for a gathering's key and items; for one item, that call alone, whose reply
# is that item's own. For more, the reply must be a list with one element per item, in order.
Packer = Callable[[Any, list[Any]], bytes]


class Gathering:
    """Calls gathered into one EVALSHA, queued like one call: it answers to `done`,
    `set_result` and `set_exception` as a future does, for all of its calls. It gives up at
    the earliest of their deadlines."""

    __slots__ = ("deadline", "futs", "items", "key", "pack", "script")

    def __init__(self, script: Script, pack: Packer, key: Any, deadline: float) -> None:
        self.script, self.pack, self.key, self.deadline = script, pack, key, deadline
        self.items: list[Any] = []
        self.futs: list[asyncio.Future[Any]] = []

    @property
    def calls(self) -> int:
        return len(self.futs)

    def add(self, item: Any, fut: asyncio.Future[Any], deadline: float) -> None:
        self.items.append(item)
        self.futs.append(fut)
        if deadline < self.deadline:
            self.deadline = deadline

    def done(self) -> bool:
        return all(f.done() for f in self.futs)

    def set_result(self, reply: Any) -> None:
        futs = self.futs
        if len(futs) == 1:
            if not futs[0].done():
                futs[0].set_result(reply)
            return
        ok = type(reply) is list and len(reply) == len(futs)
        for i, fut in enumerate(futs):
            if not fut.done():
                # an error reply (or a malformed one) is every call's answer
                fut.set_result(reply[i] if ok else reply)

    def set_exception(self, exc: BaseException) -> None:
        for fut in self.futs:
            if not fut.done():
                fut.set_exception(exc)
