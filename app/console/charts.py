"""A pool's statistics as the console shows them: which range and view the operator picked, and
the series of `pool_stats` turned into the columns of one chart and its table (the same numbers
in both; the chart's JSON is what console.js draws with uPlot)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from app.stats.models import By, StatsPoint, StatsPublic, StatsSeries, Step

RangeName = Literal["24h", "7d", "30d"]
ViewName = Literal["outcomes", "groups", "channels"]
RANGES: dict[str, tuple[Step, int]] = {"24h": ("hour", 24), "7d": ("day", 7), "30d": ("day", 30)}
VIEWS: dict[str, By | None] = {"outcomes": None, "groups": "group", "channels": "channel"}
MAX_LINES = 10  # groups or channels drawn one by one; the rest are summed as "others"


def pick(range_: str, view: str) -> tuple[RangeName, ViewName]:
    """The operator's choice from the query string; anything else is the default."""
    r = range_ if range_ in RANGES else "24h"
    v = view if view in VIEWS else "outcomes"
    return r, v  # type: ignore[return-value]


def window(range_: RangeName, now: datetime, retention_days: int) -> tuple[Step, datetime]:
    """The step and the start of the range (its end is now). Days are whole days of the pool's
    zone (`pool_stats` widens the start to its day); at most what statistics keep."""
    step, n = RANGES[range_]
    if step == "hour":
        return step, now - timedelta(hours=n)
    n = min(n, retention_days + 1)
    return step, now - timedelta(days=n - 1)


@dataclass
class Column:
    key: str  # stable name for tests and the CSS palette: "scans", "g:g1", "c:poster-a"...
    label: str
    values: list[int | None]
    total: int | None
    chart: bool = True  # drawn as a line (else only in the table)


@dataclass
class Chart:
    step: Step
    tz: str
    starts: list[datetime]
    time_label: str
    columns: list[Column] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """What console.js draws: x as Unix seconds, one series per charted column."""
        return {
            "step": self.step,
            "tz": self.tz,
            "time_label": self.time_label,
            "x": [int(s.timestamp()) for s in self.starts],
            "series": [{"key": c.key, "label": c.label, "values": c.values}
                       for c in self.columns if c.chart],
        }


def _values(series: StatsSeries, attr: str) -> list[int | None]:
    return [getattr(p, attr) for p in series.points]


def _column(key: str, label: str, series: StatsSeries, attr: str, chart: bool = True) -> Column:
    total: int | None = getattr(series.total, attr)
    return Column(key, label, _values(series, attr), total, chart)


def _summed(key: str, label: str, many: list[StatsSeries], attr: str, n: int) -> Column:
    values = [sum(getattr(s.points[i], attr) or 0 for s in many) for i in range(n)]
    return Column(key, label, list(values), sum(getattr(s.total, attr) or 0 for s in many))


def build(stats: StatsPublic, view: ViewName, _: Callable[[str], str]) -> Chart:
    """The columns of the view, in the reader's language (`_` is their gettext)."""
    pool = stats.series[0]
    starts = [p.start for p in pool.points]
    chart = Chart(stats.step, stats.timezone, starts,
                  _("Hour") if stats.step == "hour" else _("Day"))
    cols = chart.columns
    daily = stats.step == "day"
    if view == "outcomes":
        cols.append(_column("scans", _("Scans (PV)"), pool, "scans"))
        if daily:
            cols.append(_column("visitors", _("Visitors (UV)"), pool, "visitors"))
        cols.append(_column("new", _("Placed in a group"), pool, "new"))
        cols.append(_column("sticky", _("Returning"), pool, "sticky"))
        cols.append(_column("fallback", _("Sent to fallback"), pool, "fallback"))
        for attr, label in (("paused", _("While paused")), ("limited", _("Rate-limited"))):
            if getattr(pool.total, attr):
                cols.append(_column(attr, label, pool, attr))
        return chart
    parts = sorted(stats.series[1:], key=lambda s: -(s.total.scans or 0))
    shown, rest = parts[:MAX_LINES], parts[MAX_LINES:]
    if view == "groups":
        for s in sorted(shown, key=lambda s: stats.series.index(s)):
            label = s.name or s.key or "?"
            cols.append(_column(f"g:{s.key}", label, s, "new"))
        if rest:
            cols.append(_summed("g:~others", _("Other groups"), rest, "new", len(starts)))
        return chart
    # channels: page views per channel, and (daily) their visitors in the table
    for s in sorted(shown, key=lambda s: s.key or ""):
        cols.append(_column(f"c:{s.key}", s.key or "?", s, "scans"))
        if daily:
            cols.append(_column(f"cv:{s.key}", _("%(channel)s visitors") % {"channel": s.key},
                                s, "visitors", chart=False))
    if rest:
        cols.append(_summed("c:~others", _("Other channels"), rest, "scans", len(starts)))
    direct = [_unlabelled(pool.points[i], [s.points[i] for s in parts])
              for i in range(len(starts))]
    if any(direct):
        cols.append(Column("c:", _("No channel"), list(direct), sum(direct)))
    return chart


def _unlabelled(pool: StatsPoint, channels: list[StatsPoint]) -> int:
    """Scans of the pool that came without a channel (the poster's own link)."""
    return max(pool.scans - sum(c.scans for c in channels), 0)
