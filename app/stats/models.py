"""Statistics and the forecast as the API, the CLI and the console show them: named outcomes,
groups and channels, never stored field names."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Step = Literal["hour", "day"]
By = Literal["group", "channel"]


class ScanTotals(BaseModel):
    """Scans of the pool since it was made, by outcome."""

    scans: int = Field(description="page views: every scan that reached the pool")
    new: int = Field(description="new allocations: a visitor placed in a group")
    sticky: int = Field(description="returning visitors sent to their group again")
    fallback: int = Field(description="scans that found no room")
    paused: int = Field(description="scans while the pool was paused or outside its schedule")
    limited: int = Field(description="scans refused by the per-client rate limit")
    by_channel: dict[str, int] = Field(
        default_factory=dict,
        description="new allocations per channel (?ch=); channels past the pool's first 64 "
        "count as '~other'")


class StatsPoint(BaseModel):
    start: datetime = Field(description="the hour or day it covers starts here, in the pool's "
                            "timezone")
    scans: int = 0
    new: int = 0
    sticky: int = 0
    fallback: int = 0
    paused: int = 0
    limited: int = 0
    visitors: int | None = Field(
        default=None, description="distinct visitors (UV), per day only; estimated within "
        "about 1% (HyperLogLog)")


class StatsSeries(BaseModel):
    kind: Literal["pool", "group", "channel"]
    key: str | None = Field(description="the group id or channel; null for the whole pool")
    name: str | None = Field(default=None, description="the group's name")
    points: list[StatsPoint]
    total: StatsPoint = Field(description="the sum over the range (visitors: distinct over "
                              "the whole range, day steps only)")


class StatsPublic(BaseModel):
    pool_id: str
    timezone: str
    step: Step
    by: By | None
    start: datetime
    end: datetime
    series: list[StatsSeries] = Field(description="the pool first, then one per group or "
                                      "channel")


class GroupForecast(BaseModel):
    group_id: str
    minutes_to_full: float | None = Field(
        description="at the current rate; null when it will not fill (no scans, or its code "
        "expires first)")
    expires_at: datetime | None


class ForecastPublic(BaseModel):
    """`at the current rate, this pool runs out in 47 minutes`."""

    rate_per_min_5m: float = Field(description="new allocations per minute, last 5 minutes")
    rate_per_min_15m: float = Field(description="new allocations per minute, last 15 minutes")
    room_left: int = Field(description="places left in groups that are enabled and have not "
                           "expired")
    room_expiring: int = Field(description="of those, places in groups whose code expires "
                               "before they would fill at the current rate")
    minutes_to_exhaustion: float | None = Field(
        description="at the 5-minute rate, counting room that expires: even with no scans, a "
        "pool whose every code expires runs out at the last expiry; null when it would not run "
        "out within a year (no scans lately and some group that never expires)")
    exhausts_at: datetime | None
    next_expiry: datetime | None = Field(description="the earliest expiry among the groups "
                                         "that take scans")
    next_expiry_group: str | None
    groups: list[GroupForecast]
