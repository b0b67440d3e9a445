"""The timezones the settings offer: a short list of the usual ones, each with its name in the
reader's language and its offset now, and every IANA name for "other"."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from functools import cache

from babel import dates

from app.i18n import babel_locale

COMMON = (
    "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Singapore", "Asia/Kuala_Lumpur",
    "Asia/Bangkok", "Asia/Jakarta", "Asia/Tokyo", "Asia/Seoul", "Asia/Kolkata", "Asia/Dubai",
    "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Moscow", "America/New_York",
    "America/Chicago", "America/Los_Angeles", "America/Sao_Paulo", "Australia/Sydney", "UTC",
)


def _offset(name: str) -> str:
    delta = datetime.now(UTC).astimezone(zoneinfo.ZoneInfo(name)).utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@cache
def _place(name: str, locale: str) -> str:
    return dates.get_timezone_location(zoneinfo.ZoneInfo(name), locale=babel_locale(locale))


def zone_choices(locale: str) -> list[tuple[str, str]]:
    """(IANA name, "China (Shanghai) Time (UTC+08:00) · Asia/Shanghai") of the short list: what
    a narrow select shows first is the place and the offset."""
    return [(name, "UTC" if name == "UTC" else
             f"{_place(name, locale)} ({_offset(name)}) · {name}") for name in COMMON]


@cache
def all_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones() | {"UTC"})
