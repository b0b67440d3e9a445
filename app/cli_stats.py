"""`livecode stats` and `livecode events`: the statistics and events of the service layer, on
the command line."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from typing import get_args

import click
from pydantic import TypeAdapter, ValidationError

from app.cli_admin import Stores, echo_json, run
from app.events.model import EVENT_TYPES, EventPublic
from app.events.store import EventPage
from app.schemas import Time
from app.stats.models import By, StatsPublic, Step
from app.stats.service import pool_stats
from app.stats.store import to_csv

_TIME: TypeAdapter[datetime] = TypeAdapter(Time)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return _TIME.validate_python(value)
    except ValidationError:
        raise click.BadParameter("an RFC 3339 time, e.g. 2026-12-01T08:00:00+08:00",
                                 param_hint=name) from None


@click.command("stats")
@click.argument("pool_id")
@click.option("--step", type=click.Choice(get_args(Step)), default="hour", show_default=True)
@click.option("--by", type=click.Choice(get_args(By)), default=None,
              help="a series per group or per channel too")
@click.option("--from", "start", default=None, help="RFC 3339 (default: 24 h or 7 days ago)")
@click.option("--to", "end", default=None, help="RFC 3339 (default: now)")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, as the API's format=csv")
@click.option("--json", "as_json", is_flag=True)
def stats_cmd(pool_id: str, step: str, by: str | None, start: str | None, end: str | None,
              as_csv: bool, as_json: bool) -> None:
    """Scans of a pool per hour or day of its timezone, by outcome, with visitors per day."""
    lo, hi = _time(start, "--from"), _time(end, "--to")

    async def action(s: Stores) -> StatsPublic:
        return await pool_stats(s.pools, pool_id, step=step, by=by,  # type: ignore[arg-type]
                                start=lo, end=hi)

    stats = run(action)
    if as_csv:
        click.echo(to_csv(stats), nl=False)
        return
    if as_json:
        echo_json(stats.model_dump(mode="json"))
        return
    fmt = "%Y-%m-%d %H:%M" if step == "hour" else "%Y-%m-%d"
    click.echo(f"{stats.pool_id}  per {step}, {stats.timezone}")
    header = f"{'':16} {'scans':>7} {'new':>7} {'sticky':>7} {'fallback':>8} {'paused':>7} " \
             f"{'limited':>7} {'visitors':>8}"
    for series in stats.series:
        title = "pool" if series.kind == "pool" else f"{series.kind} {series.key}"
        if series.name:
            title += f" ({series.name})"
        click.echo(f"\n{title}\n{header}")
        for p in [*series.points, series.total]:
            label = "total" if p is series.total else p.start.strftime(fmt)
            visitors = "" if p.visitors is None else str(p.visitors)
            click.echo(f"{label:16} {p.scans:7} {p.new:7} {p.sticky:7} {p.fallback:8} "
                       f"{p.paused:7} {p.limited:7} {visitors:>8}")


@click.group()
def events() -> None:
    """What happened: groups filling, pools running low or out, codes expiring, admin changes."""


def _event_line(e: EventPublic) -> str:
    where = e.pool_id or "-"
    if e.group_id:
        where += f"/{e.group_id}"
    who = f"  by {e.actor}" if e.actor else ""
    data = " ".join(f"{k}={v}" for k, v in e.data.items()) if e.data else ""
    return f"{e.at.isoformat(timespec='seconds')}  {e.type:15} {where}{who}  {data}".rstrip()


_types = click.option("--type", "types", multiple=True, type=click.Choice(EVENT_TYPES),
                      help="only these types (repeat for several)")
_pool = click.option("--pool", "pool_id", default=None, help="only this pool's events")


@events.command("list")
@_pool
@_types
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--oldest-first", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def events_list(pool_id: str | None, types: tuple[str, ...], limit: int, oldest_first: bool,
                as_json: bool) -> None:
    """The latest events, newest first."""

    async def action(s: Stores) -> EventPage:
        if pool_id:
            await s.pools.get_pool(pool_id)
        return await s.pools.events.list(pool_id=pool_id, types=types, limit=limit,
                                         order="asc" if oldest_first else "desc")

    page = run(action)
    if as_json:
        echo_json(page.model_dump(mode="json"))
        return
    for e in page.items:
        click.echo(_event_line(e))


@events.command("tail")
@_pool
@_types
@click.option("--count", type=click.IntRange(1), default=None,
              help="stop after this many events (default: follow until interrupted)")
@click.option("--timeout", type=float, default=None, help="stop after this many seconds")
def events_tail(pool_id: str | None, types: tuple[str, ...], count: int | None,
                timeout: float | None) -> None:
    """Follow events as they happen (from now on)."""
    deadline = time.monotonic() + timeout if timeout else None

    async def action(s: Stores) -> int:
        if pool_id:
            await s.pools.get_pool(pool_id)
        store = s.pools.events
        cursor = await store.end_cursor(pool_id)
        shown = 0
        while deadline is None or time.monotonic() < deadline:
            page = await store.list(pool_id=pool_id, types=types, after=cursor or None,
                                    order="asc", limit=100)
            for e in page.items:
                click.echo(_event_line(e))
                shown += 1
                if count is not None and shown >= count:
                    return shown
            cursor = page.next or cursor
            await asyncio.sleep(0.5)
        return shown

    with contextlib.suppress(KeyboardInterrupt):
        run(action)


COMMANDS = [stats_cmd, events]
