"""Jinja2 with autoescaping and the `console` message catalog: one environment per language,
with Babel filters for numbers, percentages, dates and countdowns in the reader's locale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import dates, numbers
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from app import __version__
from app.i18n import LOCALES, babel_locale, translations

ASSETS = "/console/static"


def zone(name: str | None) -> tzinfo:
    """A pool's timezone (an IANA name); UTC for none or an unknown one."""
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return UTC


@cache
def environment(locale: str) -> Environment:
    env = Environment(
        loader=PackageLoader("app.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n", "jinja2.ext.do"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # package files: no os.stat of every template on every render
    )
    catalog = translations("console", locale)
    env.install_gettext_translations(catalog, newstyle=True)  # type: ignore[attr-defined]
    from app.console.forms import field_message  # forms needs zone() from here
    loc = babel_locale(locale)

    def num(value: float | int | None) -> str:
        return "–" if value is None else numbers.format_decimal(value, locale=loc)

    def pct(value: float | None) -> str:
        return "–" if value is None else numbers.format_percent(value, locale=loc)

    def when(value: datetime | None, tz: str | None = None) -> str:
        if value is None:
            return "–"
        shown = dates.format_datetime(value, "medium", tzinfo=zone(tz), locale=loc)
        return f"{shown} {tz or 'UTC'}"

    def when_short(value: datetime | None, tz: str | None = None) -> str:
        """Month, day and time in the pool's zone, without the year or the zone's name."""
        if value is None:
            return "–"
        z = zone(tz)
        day = dates.format_skeleton("MMMd", value, tzinfo=z, locale=loc)
        return f"{day} {dates.format_time(value, 'short', tzinfo=z, locale=loc)}"

    def day(value: datetime | None, tz: str | None = None) -> str:
        """Weekday, month and day in the pool's zone."""
        return "–" if value is None else dates.format_skeleton("MMMEd", value, tzinfo=zone(tz),
                                                               locale=loc)

    def clock(value: datetime | None, tz: str | None = None) -> str:
        return "–" if value is None else dates.format_time(value, "short", tzinfo=zone(tz),
                                                           locale=loc)

    def duration(minutes: float | None, form: str = "short") -> str:
        """A span of minutes in words: "47 min", "3 hr", "2 days" (the largest unit)."""
        if minutes is None:
            return "–"
        return dates.format_timedelta(timedelta(minutes=max(minutes, 1.0)), threshold=1.5,
                                      granularity="minute", format=form,  # type: ignore[arg-type]
                                      locale=loc)

    def rate(value: float | None) -> str:
        return "–" if value is None else numbers.format_decimal(value, "#,##0.#", locale=loc)

    def countdown(value: datetime | None, now: datetime) -> str:
        if value is None:
            return "–"
        return dates.format_timedelta(
            value - now, threshold=1.5, add_direction=True, format="short", locale=loc
        )

    def local_input(value: datetime | None, tz: str | None = None) -> str:
        """The value of a datetime-local input, in the pool's timezone."""
        return value.astimezone(zone(tz)).strftime("%Y-%m-%dT%H:%M") if value else ""

    env.filters.update(num=num, pct=pct, when=when, countdown=countdown, local_input=local_input,
                       when_short=when_short, clock=clock, day=day, duration=duration, rate=rate)
    env.globals.update(
        assets=ASSETS, locale=locale, locales=LOCALES, html_lang=locale,
        version=__version__, Markup=Markup,
        field_message=lambda code: field_message(code, catalog.gettext),
    )
    return env


def render(template: str, locale: str, **context: Any) -> str:
    return environment(locale).get_template(template).render(**context)
