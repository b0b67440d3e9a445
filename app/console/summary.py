"""What is urgent about a pool: one place that turns a pool with its groups into the figures and
warnings the console shows, most urgent first.

The thresholds are the pool's own alert settings (`PoolPublic.alerts`, the ones its chat alerts
use): running low by time (the forecast's minutes to exhaustion), by room (percent left), and
codes expiring within so many hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from app.schemas import GroupPublic, PoolPublic

EXPIRY_WARNING = timedelta(hours=24)  # a group code expiring within this: warn (the default)

WarningKind = Literal[
    "exhausted", "no_groups", "low", "low_time", "expired", "expiring",
    "paused", "not_started", "ended",
]
Level = Literal["critical", "warning", "info"]

# the order in which the console lists warnings, and pools by their worst one
_RANK: dict[WarningKind, int] = {
    "exhausted": 0, "no_groups": 1, "expired": 2, "low_time": 3, "low": 4, "expiring": 5,
    "ended": 6, "paused": 7, "not_started": 8,
}
_LEVEL: dict[WarningKind, Level] = {
    "exhausted": "critical", "no_groups": "critical", "expired": "critical",
    "low_time": "warning", "low": "warning", "expiring": "warning",
    "ended": "info", "paused": "info", "not_started": "info",
}


@dataclass(frozen=True)
class Forecast:
    """The backend's estimate for a pool (`PoolPublic.forecast`): None fields mean 'no recent
    scans'."""

    rate_per_min: float | None = None
    minutes_left: float | None = None


@dataclass(frozen=True)
class Alert:
    kind: WarningKind
    group: GroupPublic | None = None  # for expired / expiring
    at: datetime | None = None  # when it expires / expired / runs out
    percent: int | None = None  # low: the threshold it fell under

    @property
    def level(self) -> Level:
        return _LEVEL[self.kind]

    @property
    def rank(self) -> int:
        return _RANK[self.kind]


@dataclass(frozen=True)
class PoolSummary:
    pool: PoolPublic
    groups_open: int  # enabled, not expired, with room
    groups_total: int
    capacity: int  # of the enabled, unexpired groups
    remaining: int
    scans: int  # new allocations so far
    fallbacks: int
    next_expiry: datetime | None  # the soonest expiry of a group still taking scans
    next_expiry_group: GroupPublic | None
    forecast: Forecast | None
    warnings: list[Alert] = field(default_factory=list)

    @property
    def percent_left(self) -> float | None:
        return self.remaining / self.capacity if self.capacity else None

    @property
    def level(self) -> Level | None:
        return self.warnings[0].level if self.warnings else None

    @property
    def urgency(self) -> tuple[int, float]:
        """Sort key: the worst warning first, then the soonest deadline, then least room."""
        if not self.warnings:
            return (len(_RANK), self.percent_left if self.percent_left is not None else 1.0)
        worst = self.warnings[0]
        when = worst.at.timestamp() if worst.at else 0.0
        return (worst.rank, when)


def _usable(g: GroupPublic) -> bool:
    return g.enabled and not g.expired


def summarize(pool: PoolPublic, now: datetime, forecast: Forecast | None = None) -> PoolSummary:
    """`pool` as read with its groups (`PoolStore.get_pool(..., with_groups=True)`)."""
    groups = pool.groups or []
    usable = [g for g in groups if _usable(g)]
    capacity = sum(g.capacity for g in usable)
    remaining = sum(g.remaining for g in usable)
    totals = pool.totals
    if forecast is None and pool.forecast is not None:
        forecast = Forecast(pool.forecast.rate_per_min_5m, pool.forecast.minutes_to_exhaustion)
    limits = pool.alerts
    warnings: list[Alert] = []

    if not usable:
        warnings.append(Alert("no_groups" if not groups else "exhausted"))
    elif remaining == 0:
        warnings.append(Alert("exhausted"))
    elif remaining * 100 < capacity * limits.low_percent:
        warnings.append(Alert("low", percent=limits.low_percent))
    if (
        remaining and forecast and forecast.minutes_left is not None
        and forecast.minutes_left < limits.low_minutes
    ):
        warnings.append(Alert("low_time", at=now + timedelta(minutes=forecast.minutes_left)))

    expiring_within = timedelta(hours=limits.expiring_hours)
    for g in groups:
        if not g.enabled or g.expires_at is None:
            continue
        if g.expired:
            warnings.append(Alert("expired", group=g, at=g.expires_at))
        elif g.expires_at - now <= expiring_within:
            warnings.append(Alert("expiring", group=g, at=g.expires_at))

    if pool.status == "paused":
        warnings.append(Alert("paused"))
    if pool.valid_from and now < pool.valid_from:
        warnings.append(Alert("not_started", at=pool.valid_from))
    if pool.valid_until and now >= pool.valid_until:
        warnings.append(Alert("ended", at=pool.valid_until))

    warnings.sort(key=lambda w: (w.rank, w.at.timestamp() if w.at else 0.0))
    soonest = min((g for g in usable if g.expires_at is not None and g.remaining),
                  key=lambda g: g.expires_at or now, default=None)
    return PoolSummary(
        pool=pool,
        groups_open=sum(1 for g in usable if g.remaining > 0),
        groups_total=len(groups),
        capacity=capacity,
        remaining=remaining,
        scans=totals.new if totals else 0,
        fallbacks=totals.fallback if totals else 0,
        next_expiry=soonest.expires_at if soonest else None,
        next_expiry_group=soonest,
        forecast=forecast,
        warnings=warnings,
    )


def most_urgent_first(summaries: list[PoolSummary]) -> list[PoolSummary]:
    return sorted(summaries, key=lambda s: (s.urgency, s.pool.id))


def group_state(g: GroupPublic, now: datetime, within: timedelta = EXPIRY_WARNING) -> Literal[
    "disabled", "expired", "full", "expiring", "open"
]:
    """One word for a group's row; `within`: the pool's warning time before a code expires."""
    if not g.enabled:
        return "disabled"
    if g.expired:
        return "expired"
    if g.remaining <= 0:
        return "full"
    if g.expires_at is not None and g.expires_at - now <= within:
        return "expiring"
    return "open"
