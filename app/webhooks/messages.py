"""The one-line chat message of each event type, in the pool's language (gettext domain
`alerts`: English msgids here, the Chinese in app/i18n/locales/zh_CN/LC_MESSAGES/alerts.po).

    [livecode] Spring campaign: full in about 47 minutes at the current rate, 312 places left
    [livecode] 春季活动: 预计 47 分钟后满员, 剩余 312 个名额

The "[livecode]" prefix is the same in every language, so a DingTalk robot's keyword security
can use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_decimal

from app.events.model import EventPublic
from app.i18n import babel_locale, translations

DOMAIN = "alerts"
PREFIX = "[livecode] "
# expiry times: Chinese operators read Beijing time, everyone else UTC; the zone is always named
_ZONES = {"zh-CN": ("Asia/Shanghai", "UTC+8")}
_ADMIN_TYPES = frozenset({
    "pool.created", "pool.updated", "pool.deleted", "pool.paused", "pool.resumed",
    "group.created", "group.updated", "group.deleted", "key.created", "key.revoked",
})

log = logging.getLogger("livecode.webhooks")


class _Text:
    """The catalog of one language, with number, duration and time formatting."""

    def __init__(self, language: str) -> None:
        t = translations(DOMAIN, language)
        self._ = t.gettext
        self.n_ = t.ngettext
        self.language = language
        self.locale = babel_locale(language)

    def num(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "?"
        return str(format_decimal(value, format="#,##0.#", locale=self.locale))

    def places(self, value: Any) -> str:
        n = value if isinstance(value, int) and not isinstance(value, bool) else 0
        return self.n_("%(num)s place", "%(num)s places", n) % {"num": self.num(value)}

    def duration(self, minutes: float) -> str:
        if minutes < 90:
            m = max(1, round(minutes))
            return self.n_("%(num)s minute", "%(num)s minutes", m) % {"num": self.num(m)}
        h = round(minutes / 60)
        return self.n_("%(num)s hour", "%(num)s hours", h) % {"num": self.num(h)}

    def time(self, value: Any) -> str:
        try:
            at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
        zone, label = _ZONES.get(self.language, ("UTC", "UTC"))
        when = format_datetime(at, "yyyy-MM-dd HH:mm", tzinfo=ZoneInfo(zone), locale=self.locale)
        return f"{when} {label}"


def _fields(data: dict[str, Any]) -> str:
    fields = data.get("fields")
    return ", ".join(str(f) for f in fields) if isinstance(fields, list) else ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _group_full(t: _Text, e: EventPublic, v: dict[str, str]) -> str:
    return t._("%(pool)s: group %(group)s is full (%(count)s/%(capacity)s)") % {
        **v, "count": t.num(e.data.get("count")), "capacity": t.num(e.data.get("capacity"))}


def _pool_low(t: _Text, e: EventPublic, v: dict[str, str]) -> str:
    places = t.places(e.data.get("remaining"))
    minutes = _number(e.data.get("minutes_left"))
    if e.data.get("reason") == "rate" and minutes is not None:
        return t._("%(pool)s: full in about %(duration)s at the current rate, %(places)s left") % {
            **v, "duration": t.duration(minutes), "places": places}
    percent = _number(e.data.get("percent_left"))
    if percent is None:
        return t._("%(pool)s: only %(places)s left") % {**v, "places": places}
    return t._("%(pool)s: only %(places)s left (%(percent)s%%)") % {
        **v, "places": places, "percent": t.num(round(percent, 1))}


def _group_expiring(t: _Text, e: EventPublic, v: dict[str, str]) -> str:
    hours = _number(e.data.get("hours_left"))
    at = t.time(e.data.get("expires_at"))
    if hours is None:
        return t._("%(pool)s: the code of group %(group)s expires soon (%(at)s)") % {**v, "at": at}
    return t._("%(pool)s: the code of group %(group)s expires in about %(duration)s (%(at)s)") % {
        **v, "duration": t.duration(hours * 60), "at": at}


def _with_fields(with_: str, without: str) -> Callable[[_Text, EventPublic, dict[str, str]], str]:
    def render(t: _Text, e: EventPublic, v: dict[str, str]) -> str:
        fields = _fields(e.data)
        return t._(with_) % {**v, "fields": fields} if fields else t._(without) % v
    return render


def _key(with_id: str, without: str) -> Callable[[_Text, EventPublic, dict[str, str]], str]:
    def render(t: _Text, e: EventPublic, v: dict[str, str]) -> str:
        key = e.data.get("key_id")
        return t._(with_id) % {"key": key} if isinstance(key, str) and key else t._(without)
    return render


def _simple(msgid: str) -> Callable[[_Text, EventPublic, dict[str, str]], str]:
    def render(t: _Text, e: EventPublic, v: dict[str, str]) -> str:
        return t._(msgid) % {**v, "places": t.places(e.data.get("remaining"))}
    return render


def _mark(msgid: str) -> str:
    """Marks a msgid for extraction where it is not in a call of `_` (pybabel -k _mark)."""
    return msgid


_RENDER: dict[str, Callable[[_Text, EventPublic, dict[str, str]], str]] = {
    "group.full": _group_full,
    "pool.low": _pool_low,
    "pool.exhausted": _simple(_mark("%(pool)s: every group is full, new scans get the fallback")),
    "pool.recovered": _simple(_mark("%(pool)s: room again, %(places)s left")),
    "group.expiring": _group_expiring,
    "group.expired": _simple(
        _mark("%(pool)s: the code of group %(group)s has expired, scans skip it")),
    "pool.created": _simple(_mark("%(pool)s: pool created")),
    "pool.updated": _with_fields(_mark("%(pool)s: pool settings changed (%(fields)s)"),
                                 _mark("%(pool)s: pool settings changed")),
    "pool.deleted": _simple(_mark("%(pool)s: pool deleted")),
    "pool.paused": _simple(_mark("%(pool)s: paused, scans get a notice page")),
    "pool.resumed": _simple(_mark("%(pool)s: resumed, scans are allocated again")),
    "group.created": _simple(_mark("%(pool)s: group %(group)s added")),
    "group.updated": _with_fields(_mark("%(pool)s: group %(group)s changed (%(fields)s)"),
                                  _mark("%(pool)s: group %(group)s changed")),
    "group.deleted": _simple(_mark("%(pool)s: group %(group)s removed")),
    "key.created": _key(_mark("API key %(key)s created"), _mark("An API key was created")),
    "key.revoked": _key(_mark("API key %(key)s revoked"), _mark("An API key was revoked")),
}


def event_text(event: EventPublic, language: str) -> str:
    """The event as one line for a chat, in `language` (zh-CN or en)."""
    t = _Text(language)
    values = {"pool": event.pool_name or event.pool_id or "-", "group": event.group_id or "-"}
    try:
        line = _RENDER[event.type](t, event, values)
    except (KeyError, ValueError, TypeError):  # a data field of an unexpected shape
        log.warning("no message for event %s of type %s", event.id, event.type, exc_info=True)
        line = f"{values['pool']}: {event.type}"
    if event.actor and event.type in _ADMIN_TYPES:
        line += t._(" (by %(actor)s)") % {"actor": event.actor}
    return PREFIX + line


def test_text(name: str, language: str) -> str:
    t = _Text(language)
    return PREFIX + t._("Test message: webhook %(name)s works") % {"name": name}
