"""The tabs of a pool's pages; the templates draw whatever this lists."""

from __future__ import annotations

from dataclasses import dataclass


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


@dataclass(frozen=True)
class Tab:
    key: str
    label: str  # an English msgid of the `console` catalog
    href: str


_POOL_TABS = (
    ("groups", N_("Groups"), ""),
    ("stats", N_("Statistics"), "/stats"),
    ("events", N_("Events"), "/events"),
    ("poster", N_("Poster"), "/poster"),
    ("settings", N_("Settings"), "/edit"),
)


def pool_tabs(pool_id: str) -> list[Tab]:
    return [Tab(key, label, f"/console/pools/{pool_id}{suffix}")
            for key, label, suffix in _POOL_TABS]
