"""When does a pool run out? A simulation of its open groups at the current rate of new
allocations, event by event (a group fills, or its code expires), in O(n log n).

How the rate spreads over the groups follows the strategy: `fill` gives it all to the first
open group in order; the others share it, `round_robin` equally, `weighted` by weight,
`least_filled` by capacity (which keeps the fill ratios level). Room in a group whose code
expires before it fills is lost: that is what the forecast counts and the naive
room / rate does not.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.schemas import GroupPublic

HORIZON_MIN = 366 * 24 * 60.0  # a year: beyond it, "never" is the honest answer


@dataclass
class OpenGroup:
    id: str
    remaining: int
    expires_in_min: float | None  # None: never
    weight: int = 1
    capacity: int = 1
    position: int = 0


@dataclass
class Result:
    minutes_to_exhaustion: float | None
    room_expiring: int
    minutes_to_full: dict[str, float | None] = field(default_factory=dict)


def open_groups(groups: Iterable[GroupPublic], now: datetime) -> list[OpenGroup]:
    """The groups that take scans (enabled, unexpired, with room), as the simulation's."""
    return [OpenGroup(g.id, g.remaining,
                      (g.expires_at - now).total_seconds() / 60 if g.expires_at else None,
                      weight=g.weight, capacity=g.capacity, position=g.position)
            for g in groups if g.enabled and not g.expired and g.remaining > 0]


def simulate(strategy: str, groups: list[OpenGroup], rate_per_min: float) -> Result:
    live = [g for g in groups if g.remaining > 0 and (g.expires_in_min is None
                                                       or g.expires_in_min > 0)]
    full_at: dict[str, float | None] = {g.id: None for g in groups}
    if not live:
        return Result(0.0, 0, full_at)
    if strategy == "fill":
        return _in_order(live, rate_per_min, full_at)
    share = {
        "weighted": lambda g: float(max(g.weight, 1)),
        "least_filled": lambda g: float(max(g.capacity, 1)),
    }.get(strategy, lambda g: 1.0)
    return _shared(live, rate_per_min, share, full_at)


def _in_order(live: list[OpenGroup], rate: float,
              full_at: dict[str, float | None]) -> Result:
    """`fill`: the whole rate goes to the first open group in the operator's order."""
    order = sorted(live, key=lambda g: (g.position, g.id))
    left = {g.id: float(g.remaining) for g in order}
    expiries = [(g.expires_in_min, g.id) for g in order if g.expires_in_min is not None]
    heapq.heapify(expiries)
    gone: set[str] = set()
    lost, t, i = 0.0, 0.0, 0
    while True:
        while i < len(order) and order[i].id in gone:
            i += 1
        if i == len(order):
            return Result(t, round(lost), full_at)
        active = order[i].id
        while expiries and expiries[0][1] in gone:
            heapq.heappop(expiries)
        fills = t + left[active] / rate if rate > 0 else math.inf
        expires = expiries[0][0] if expiries else math.inf
        event = min(fills, expires)
        if event > HORIZON_MIN:
            return Result(None, round(lost), full_at)
        if rate > 0:
            left[active] -= rate * (event - t)
        t = event
        if fills <= expires:
            full_at[active] = t
            gone.add(active)
        else:
            _, gid = heapq.heappop(expiries)
            lost += max(left[gid], 0.0)
            gone.add(gid)


def _shared(live: list[OpenGroup], rate: float, share: object,
            full_at: dict[str, float | None]) -> Result:
    """The rate split among the open groups by share: each group gets rate * s / S. With U
    the allocations per unit of share so far, group g fills when U reaches remaining / s."""
    shares = {g.id: share(g) for g in live}  # type: ignore[operator]
    total = sum(shares.values())
    fill_heap = [(g.remaining / shares[g.id], g.id) for g in live]
    heapq.heapify(fill_heap)
    exp_heap = [(g.expires_in_min, g.id) for g in live if g.expires_in_min is not None]
    heapq.heapify(exp_heap)
    remaining = {g.id: float(g.remaining) for g in live}
    gone: set[str] = set()
    units, t, lost = 0.0, 0.0, 0.0
    while len(gone) < len(live):
        while fill_heap and fill_heap[0][1] in gone:
            heapq.heappop(fill_heap)
        while exp_heap and exp_heap[0][1] in gone:
            heapq.heappop(exp_heap)
        per_unit = rate / total if total > 0 else 0.0  # units per minute
        fills = t + (fill_heap[0][0] - units) / per_unit if per_unit > 0 and fill_heap \
            else math.inf
        expires = exp_heap[0][0] if exp_heap else math.inf
        if min(fills, expires) > HORIZON_MIN:
            return Result(None, round(lost), full_at)
        if fills <= expires:
            threshold, gid = heapq.heappop(fill_heap)
            units, t = threshold, fills
            full_at[gid] = t
        else:
            _, gid = heapq.heappop(exp_heap)
            units += per_unit * (expires - t)
            t = expires
            given = units * shares[gid]
            lost += max(remaining[gid] - given, 0.0)
        gone.add(gid)
        total -= shares[gid]
    return Result(t, round(lost), full_at)
