"""Pools and groups as the API and the store see them: XCreate / XUpdate / XPublic."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from app.i18n import LocaleName
from app.stats.models import ForecastPublic, ScanTotals, StatsPoint
from app.store.schema import (
    ALERT_DEFAULTS,
    DEFAULT_CAPACITY,
    DEFAULT_STICKY_TTL_S,
    DEFAULT_WEIGHT,
)

Strategy = Literal["fill", "round_robin", "weighted", "least_filled"]
Mode = Literal["redirect", "page"]
Status = Literal["active", "paused"]

PoolId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")]
GroupId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
Name = Annotated[str, StringConstraints(max_length=200)]
UrlStr = Annotated[str, StringConstraints(min_length=1, max_length=2048)]

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    """A time without a zone is UTC; stored as epoch ms, so it must lie in 1970..9000."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not _EARLIEST <= value < _LATEST:
        raise ValueError("must lie between 1970 and 9000")
    return value.astimezone(UTC)


def _no_number(value: Any) -> Any:
    """The schema says an RFC 3339 string: pydantic alone would also take a number (or, in a
    query string, digits), as Unix seconds or milliseconds by its size, which a typo can turn
    into the wrong year."""
    if isinstance(value, int | float) or (isinstance(value, str)
                                          and not _DATE_START.match(value.strip())):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-12-01T00:00:00Z")
    return value


_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")


Time = Annotated[datetime, BeforeValidator(_no_number), AfterValidator(_utc)]


def _no_bool(value: Any) -> Any:
    """JSON's true and false are not numbers: pydantic alone would take them as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


def _boolean_not_number(value: Any) -> Any:
    """JSON's numbers are not booleans: pydantic alone would take 1 and 0. Text stays allowed
    ("true", "false"): upload forms send their fields as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be true or false, not a number")
    return value


# What a client sends: a number is never a boolean, nor a boolean a number.
Int = Annotated[int, BeforeValidator(_no_bool)]
Bool = Annotated[bool, BeforeValidator(_boolean_not_number)]


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _zone(value: str) -> str:
    if value not in _zones():
        raise ValueError("must be an IANA time zone name, e.g. Asia/Shanghai or UTC")
    return value


TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_zone)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error of the API: 401, 403, 404, 409, 413, 422, 503."""

    error: ErrorDetail


class Fallback(_Model):
    """What a scan gets when no group has room: a redirect, or a page with a message."""

    url: UrlStr | None = None
    message: Annotated[str, StringConstraints(max_length=1000)] | None = None
    contact_url: UrlStr | None = Field(default=None, description="shown as a QR code on the page")


class Alerts(_Model):
    """When the pool's alerts fire (events, webhooks); absent values keep the defaults."""

    low_minutes: Int = Field(default=ALERT_DEFAULTS["low_minutes"], ge=1, le=7 * 24 * 60,
                             description="pool.low when it runs out within this many minutes "
                             "at the current rate")
    low_percent: Int = Field(default=ALERT_DEFAULTS["low_percent"], ge=0, le=100,
                             description="or when less than this percent of its capacity is "
                             "left")
    low_every_minutes: Int = Field(default=ALERT_DEFAULTS["low_every"], ge=1, le=24 * 60,
                                   description="at most one pool.low per this many minutes")
    expiring_hours: Int = Field(default=ALERT_DEFAULTS["expiring_hours"], ge=1, le=7 * 24,
                                description="group.expiring this many hours before a code "
                                "expires")


class PoolCreate(_Model):
    id: PoolId
    name: Name = ""
    strategy: Strategy = "fill"
    status: Status = "active"
    mode: Mode = "redirect"
    valid_from: Time | None = None
    valid_until: Time | None = None
    sticky_ttl_s: Int = Field(default=DEFAULT_STICKY_TTL_S, ge=60, le=366 * 24 * 3600)
    fallback: Fallback = Field(default_factory=Fallback)
    timezone: TimeZone | None = Field(default=None, description="IANA name: the days its "
                                      "statistics count in (default: LIVECODE_TIMEZONE)")
    language: LocaleName | None = Field(default=None, description="of its chat alerts "
                                        "(default: LIVECODE_LANGUAGE)")
    alerts: Alerts = Field(default_factory=Alerts)

    @model_validator(mode="after")
    def _schedule(self) -> PoolCreate:
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError("valid_from must be before valid_until")
        return self


class PoolUpdate(_Model):
    name: Name | None = None
    strategy: Strategy | None = None
    status: Status | None = None
    mode: Mode | None = None
    valid_from: Time | None = None
    valid_until: Time | None = None
    sticky_ttl_s: Int | None = Field(default=None, ge=60, le=366 * 24 * 3600)
    fallback: Fallback | None = None
    timezone: TimeZone | None = None
    language: LocaleName | None = None
    alerts: Alerts | None = None


class GroupCreate(_Model):
    id: GroupId | None = None
    name: Name = ""
    url: UrlStr
    capacity: Int = Field(default=DEFAULT_CAPACITY, ge=1, le=100_000)
    expires_at: Time | None = None
    weight: Int = Field(default=DEFAULT_WEIGHT, ge=1, le=10_000)
    enabled: Bool = True
    mode: Mode | None = Field(default=None, description="null: the pool's mode")


class GroupUpdate(_Model):
    name: Name | None = None
    url: UrlStr | None = None
    capacity: Int | None = Field(default=None, ge=1, le=100_000)
    expires_at: Time | None = None
    weight: Int | None = Field(default=None, ge=1, le=10_000)
    enabled: Bool | None = None
    mode: Mode | None = None


class GroupOrder(_Model):
    group_ids: list[str] = Field(min_length=1, description="every group of the pool, once")


class GroupPublic(_Model):
    id: str
    name: str
    url: str
    capacity: int
    count: int
    remaining: int
    fill_ratio: float
    expires_at: datetime | None
    expired: bool
    weight: int
    enabled: bool
    mode: Mode | None
    position: int
    minutes_to_full: float | None = Field(
        default=None, description="at the pool's current rate (see the pool's forecast)")


class PoolPublic(_Model):
    id: str
    name: str
    strategy: Strategy
    status: Status
    mode: Mode
    valid_from: datetime | None
    valid_until: datetime | None
    sticky_ttl_s: int
    fallback: Fallback
    created_at: datetime | None
    timezone: str
    language: LocaleName
    alerts: Alerts
    scan_url: str = Field(description="what its posters encode: LIVECODE_PUBLIC_URL + /s/{id}")
    poster_warning: str | None = Field(
        default=None, description="set when phones cannot reach scan_url (a loopback address)")
    groups: list[GroupPublic] | None = None
    total_capacity: int | None = None
    total_remaining: int | None = None
    totals: ScanTotals | None = Field(default=None, description="scans since it was made")
    today: StatsPoint | None = Field(default=None, description="scans of the current day in "
                                     "its timezone, with distinct visitors")
    forecast: ForecastPublic | None = None
    next_group: str | None = Field(
        default=None, description="the group the next new scan would get (weighted: one draw)"
    )


class PoolList(_Model):
    items: list[PoolPublic]
    total: int
    limit: int
    offset: int


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def from_ms(ms: str | bytes | int | None) -> datetime | None:
    if ms is None or ms == "" or ms == b"":
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
