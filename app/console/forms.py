"""HTML forms to the service layer's models, and their errors back to the fields they belong to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from app import qr
from app.console.render import zone
from app.errors import LivecodeError
from app.schemas import Alerts, GroupCreate, PoolCreate, PoolPublic, PoolUpdate
from app.store.schema import DEFAULT_STICKY_TTL_S

FALLBACK_KINDS = ("none", "link", "message")
OTHER_ZONE = "other"
ALERT_FIELDS = ("low_minutes", "low_percent", "low_every_minutes", "expiring_hours")


@dataclass
class FormErrors:
    """Messages by field name; `general` for what belongs to no one field."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def parse_local_time(value: str, tz: str | None) -> datetime | None:
    """A datetime-local input, read in the pool's timezone (UTC until pools have one)."""
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=zone(tz))


def chosen_zone(form: Mapping[str, Any]) -> str:
    """The timezone select, or the typed name when it says "other"."""
    picked = _text(form, "timezone")
    return _text(form, "timezone_other") if picked == OTHER_ZONE else picked


def pool_values(form: Mapping[str, Any], tz: str | None) -> tuple[dict[str, Any], FormErrors]:
    """The pool fields of the create and edit forms, as the API's JSON would give them. The
    schedule is read in `tz`: the zone the form showed it in (a new pool's: the one chosen)."""
    errors = FormErrors()
    values: dict[str, Any] = {
        "name": _text(form, "name"),
        "strategy": _text(form, "strategy") or "fill",
        "mode": _text(form, "mode") or "redirect",
    }
    zone_name = chosen_zone(form)
    if zone_name:
        values["timezone"] = zone_name
    language = _text(form, "language")
    if language:
        values["language"] = language
    alerts: dict[str, str] = {}
    for name in ALERT_FIELDS:
        raw = _text(form, name)
        if not raw:
            continue
        if not raw.isdigit():
            errors.fields[name] = "whole"
        alerts[name] = raw
    if alerts:
        values["alerts"] = alerts
    for name in ("valid_from", "valid_until"):
        try:
            values[name] = parse_local_time(_text(form, name), tz)
        except ValueError:
            errors.fields[name] = "time"
    hours = _text(form, "sticky_hours")
    try:
        values["sticky_ttl_s"] = (
            round(float(hours) * 3600) if hours else DEFAULT_STICKY_TTL_S
        )
    except ValueError:
        errors.fields["sticky_hours"] = "number"
    kind = _text(form, "fallback_kind")
    fallback: dict[str, str | None] = {"url": None, "message": None, "contact_url": None}
    if kind == "link":
        fallback["url"] = _text(form, "fallback_url") or None
        if not fallback["url"]:
            errors.fields["fallback_url"] = "required"
    elif kind == "message":
        fallback["message"] = _text(form, "fallback_message") or None
        fallback["contact_url"] = _text(form, "fallback_contact_url") or None
    values["fallback"] = fallback
    return values, errors


def form_state(pool: PoolPublic | None, default_tz: str = "UTC",
               default_language: str = "zh-CN") -> dict[str, Any]:
    """What the pool form shows: the pool's values, or the defaults for a new one."""
    if pool is None:
        defaults = Alerts()
        return {"id": "", "name": "", "strategy": "fill", "mode": "redirect", "valid_from": "",
                "valid_until": "", "sticky_hours": DEFAULT_STICKY_TTL_S // 3600,
                "fallback_kind": "none", "fallback_url": "", "fallback_message": "",
                "fallback_contact_url": "", "timezone": default_tz,
                "language": default_language,
                **{name: getattr(defaults, name) for name in ALERT_FIELDS}}
    tz = pool.timezone
    fb = pool.fallback
    kind = "link" if fb.url else "message" if (fb.message or fb.contact_url) else "none"

    def local(v: datetime | None) -> str:
        return v.astimezone(zone(tz)).strftime("%Y-%m-%dT%H:%M") if v else ""

    hours = pool.sticky_ttl_s / 3600
    return {"id": pool.id, "name": pool.name, "strategy": pool.strategy, "mode": pool.mode,
            "valid_from": local(pool.valid_from), "valid_until": local(pool.valid_until),
            "sticky_hours": int(hours) if hours == int(hours) else round(hours, 3),
            "fallback_kind": kind, "fallback_url": fb.url or "",
            "fallback_message": fb.message or "", "fallback_contact_url": fb.contact_url or "",
            "timezone": pool.timezone, "language": pool.language,
            **{name: getattr(pool.alerts, name) for name in ALERT_FIELDS}}


def submitted_state(form: Mapping[str, Any]) -> dict[str, Any]:
    """The form as the user filled it, to show it again with its errors."""
    names = ("id", "name", "strategy", "mode", "valid_from", "valid_until", "sticky_hours",
             "fallback_kind", "fallback_url", "fallback_message", "fallback_contact_url",
             "language", *ALERT_FIELDS)
    return {n: _text(form, n) for n in names} | {"timezone": chosen_zone(form)}


# field names of the models -> the form's inputs
_FIELD_OF = {"sticky_ttl_s": "sticky_hours", "fallback.url": "fallback_url",
             "fallback.message": "fallback_message", "fallback.contact_url": "fallback_contact_url",
             "url": "url", "capacity": "capacity", "expires_at": "expires_at",
             "timezone": "timezone_other", "language": "language",
             **{f"alerts.{name}": name for name in ALERT_FIELDS}}


def add_validation(errors: FormErrors, exc: ValidationError) -> None:
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        name = _FIELD_OF.get(loc, loc)
        kind = e.get("type", "")
        if name == "timezone_other":
            code = "zone"
        elif kind == "string_pattern_mismatch":
            code = "pattern"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            code = "range"
        elif kind == "string_too_long":
            code = "long"
        elif not name:
            code = "general"
        else:
            code = "invalid"
        if name and name != "general" and code != "general":
            errors.fields.setdefault(name, code)
        else:
            errors.general.append(str(e.get("msg", "")))


def add_store_error(errors: FormErrors, exc: LivecodeError) -> None:
    """The service layer's refusal (a bad URL, a taken id) on the field it names."""
    details = exc.details if isinstance(exc.details, dict) else {}
    name = _FIELD_OF.get(str(details.get("field", "")), "")
    if exc.code == "conflict" and "pool_id" in details:
        errors.fields["id"] = "taken"
    elif exc.code == "conflict" and "group_id" in details:
        errors.fields["group_id"] = "taken"
    elif name:
        errors.fields[name] = "url"
        errors.general.append(exc.message)
    else:
        errors.general.append(exc.message)


def build_pool_create(pool_id: str, values: dict[str, Any]) -> PoolCreate:
    return PoolCreate.model_validate({"id": pool_id, **values})


def build_pool_update(values: dict[str, Any]) -> PoolUpdate:
    return PoolUpdate.model_validate(values)


def group_values(
    form: Mapping[str, Any], tz: str | None, *, now: datetime
) -> tuple[GroupCreate | None, FormErrors]:
    """The add-a-group-by-link form. A WeChat group link gets what an uploaded WeChat code gets
    (7 days to live, page mode) unless the form says otherwise."""
    errors = FormErrors()
    url = _text(form, "url")
    values: dict[str, Any] = {"url": url, "name": _text(form, "name")}
    capacity = _text(form, "capacity")
    if capacity:
        values["capacity"] = capacity
    try:
        expires = parse_local_time(_text(form, "expires_at"), tz)
    except ValueError:
        errors.fields["expires_at"] = "time"
        expires = None
    mode = _text(form, "group_mode")
    if mode in ("redirect", "page"):
        values["mode"] = mode
    if qr.is_wechat_group_url(url):
        expires = expires or now + qr.WECHAT_CODE_LIFETIME
        values.setdefault("mode", "page")
    if expires is not None:
        values["expires_at"] = expires
    if errors:
        return None, errors
    try:
        return GroupCreate.model_validate(values), errors
    except ValidationError as exc:
        add_validation(errors, exc)
        return None, errors


def upload_fields(form: Mapping[str, Any], filename: str) -> dict[str, Any]:
    """The fields an uploaded screenshot's group gets: the form's capacity, its file's name."""
    fields: dict[str, Any] = {}
    capacity = _text(form, "capacity")
    if capacity:
        fields["capacity"] = capacity
    stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0].strip()
    if stem:
        fields["name"] = stem[:100]
    return fields


def field_message(code: str, _: Callable[[str], str]) -> str:
    return {
        "pattern": _("Use 3 to 64 lowercase letters, digits and hyphens; "
                     "start and end with a letter or digit."),
        "range": _("This number is out of range."),
        "long": _("This is too long."),
        "time": _("Enter a date and time."),
        "number": _("Enter a number."),
        "whole": _("Enter a whole number."),
        "zone": _("Enter a timezone name from the list, e.g. Asia/Shanghai."),
        "required": _("This is required."),
        "taken": _("This ID is taken: choose another."),
        "url": _("Enter a full https:// link."),
        "invalid": _("This value is not valid."),
    }.get(code, _("This value is not valid."))

