"""Message catalogs: one gettext domain per area (`console`, `alerts`, ...), English as the
source language, read from the package's .po files at first use (no compile step to run).

    t = translations("alerts", "zh-CN")
    t.gettext("Pool %(name)s is exhausted") % {"name": ...}

A catalog lives in app/i18n/locales/<locale>/LC_MESSAGES/<domain>.po; extract and update them
with pybabel (`pybabel extract`, `pybabel update`).
"""

from __future__ import annotations

import io
from functools import cache
from gettext import NullTranslations
from importlib.resources import files
from typing import Literal, get_args

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LocaleName = Literal["zh-CN", "en"]
LOCALES: tuple[str, ...] = get_args(LocaleName)
SOURCE_LOCALE = "en"


def _dir_name(locale: str) -> str:
    return locale.replace("-", "_")


@cache
def translations(domain: str, locale: str) -> NullTranslations:
    """The domain's catalog for one of LOCALES; the source language (and an unknown locale)
    gets the messages as written."""
    if locale not in LOCALES or locale == SOURCE_LOCALE:
        return NullTranslations()
    po = files("app.i18n") / "locales" / _dir_name(locale) / "LC_MESSAGES" / f"{domain}.po"
    if not po.is_file():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=_dir_name(locale), domain=domain)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf, domain=domain)


def babel_locale(locale: str) -> Locale:
    """For numbers and dates in the reader's locale (babel.numbers, babel.dates)."""
    try:
        return Locale.parse(_dir_name(locale))
    except (ValueError, UnknownLocaleError):
        return Locale.parse("en")


def negotiate(accept_language: str | None, default: str = "en") -> str:
    """The best of LOCALES for an Accept-Language header (zh, zh-CN, zh-Hans... -> zh-CN)."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()))
    for q, _, tag in sorted(ranked):
        if q >= 0:
            continue
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default
