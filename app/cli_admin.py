"""Operator commands: keys, pools, groups, qr, export, import.

They run the same service layer as the API against the same Redis as `serve`:
LIVECODE_REDIS_URL, or the embedded server of the data directory in the current folder, whether
`serve` is running or not. Errors go to stderr with a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

import click
import redis.asyncio as aredis
from pydantic import ValidationError

from app import audit, links, qr
from app.embedded import redis_for
from app.errors import InvalidInput, LivecodeError, validation_details
from app.runtime import connect
from app.schemas import (
    GroupCreate,
    GroupPublic,
    GroupUpdate,
    Mode,
    PoolCreate,
    PoolPublic,
    Strategy,
)
from app.settings import Settings
from app.store import backup
from app.store.apikeys import SCOPES, ApiKeyStore
from app.store.pools import PoolStore
from app.store.schema import DEFAULT_CAPACITY

T = TypeVar("T")
STRATEGIES = click.Choice(get_args(Strategy))
MODES = click.Choice(get_args(Mode))


@dataclass
class Stores:
    pools: PoolStore
    keys: ApiKeyStore
    settings: Settings


def run(action: Callable[[Stores], Awaitable[T]]) -> T:
    """Open the store, run one action, turn every failure into a clear message and exit 1."""
    settings = Settings()

    async def go(url: str) -> T:
        audit.actor.set("cli")
        client, fast = await connect(settings.model_copy(update={"redis_url": url or None}), 5)
        try:
            pools = await PoolStore.open(client, settings)
            return await action(Stores(pools, ApiKeyStore(client), settings))
        finally:
            await fast.close()
            await client.aclose()

    try:
        with redis_for(settings) as (url, _):
            return asyncio.run(go(url))
    except LivecodeError as exc:
        detail = f" {json.dumps(exc.details, default=str)}" if exc.details else ""
        raise click.ClickException(f"{exc.code}: {exc.message}{detail}") from None
    except ValidationError as exc:
        details = json.dumps(validation_details(exc.errors()), default=str)
        raise click.ClickException(f"invalid_input: {details}") from None
    except (aredis.RedisError, OSError, RuntimeError) as exc:
        raise click.ClickException(f"store unavailable: {exc}") from None


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def dump(model: PoolPublic | GroupPublic) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


# keys


@click.group()
def keys() -> None:
    """API keys for the admin API (only their SHA-256 is stored)."""


@keys.command("create")
@click.option("--scope", type=click.Choice(SCOPES), required=True)
@click.option("--name", default="")
def keys_create(scope: str, name: str) -> None:
    """Create a key and print it once."""
    public, secret = run(lambda s: s.keys.create(scope, name))  # type: ignore[arg-type]
    click.echo(secret)
    click.echo(f"id {public.id}, scope {public.scope}: store it now, it is not shown again",
               err=True)


@keys.command("list")
def keys_list() -> None:
    for k in run(lambda s: s.keys.list()):
        used = k.last_used_at.isoformat() if k.last_used_at else "never"
        created = k.created_at.isoformat()
        click.echo(f"{k.id}  {k.scope:5}  created {created}  used {used}  {k.name}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    run(lambda s: s.keys.revoke(key_id))
    click.echo(f"revoked {key_id}")


# pools


@click.group()
def pools() -> None:
    """Pools (live codes)."""


@pools.command("list")
@click.option("--json", "as_json", is_flag=True)
def pools_list(as_json: bool) -> None:
    async def action(s: Stores) -> list[PoolPublic]:
        return (await s.pools.list_pools(limit=1_000_000))[0]

    found = run(action)
    if as_json:
        echo_json([dump(p) for p in found])
        return
    for p in found:
        click.echo(f"{p.id}  {p.status:6}  {p.strategy:12}  {p.name}")


@pools.command("create")
@click.argument("pool_id")
@click.option("--name", default="")
@click.option("--strategy", type=STRATEGIES, default="fill")
@click.option("--mode", type=MODES, default="redirect")
@click.option("--fallback-url", default=None, help="redirect here when every group is full")
@click.option("--fallback-message", default=None, help="or show this message")
@click.option("--fallback-contact", default=None, help="and this contact URL as a QR code")
@click.option("--sticky-ttl", type=int, default=None, help="seconds a visitor keeps their group")
def pools_create(pool_id: str, name: str, strategy: str, mode: str, fallback_url: str | None,
                 fallback_message: str | None, fallback_contact: str | None,
                 sticky_ttl: int | None) -> None:
    fields: dict[str, Any] = {"id": pool_id, "name": name, "strategy": strategy, "mode": mode,
                              "fallback": {"url": fallback_url, "message": fallback_message,
                                           "contact_url": fallback_contact}}
    if sticky_ttl is not None:
        fields["sticky_ttl_s"] = sticky_ttl
    echo_json(dump(run(lambda s: s.pools.create_pool(PoolCreate.model_validate(fields)))))


@pools.command("show")
@click.argument("pool_id")
def pools_show(pool_id: str) -> None:
    """The pool with its groups' counts and the group the next scan would get."""
    echo_json(dump(run(lambda s: s.pools.get_pool(pool_id, with_groups=True))))


@pools.command("pause")
@click.argument("pool_id")
def pools_pause(pool_id: str) -> None:
    run(lambda s: s.pools.set_status(pool_id, "paused"))
    click.echo(f"{pool_id} paused")


@pools.command("resume")
@click.argument("pool_id")
def pools_resume(pool_id: str) -> None:
    run(lambda s: s.pools.set_status(pool_id, "active"))
    click.echo(f"{pool_id} active")


@pools.command("delete")
@click.argument("pool_id")
@click.option("--yes", is_flag=True, help="do not ask")
def pools_delete(pool_id: str, yes: bool) -> None:
    """Delete the pool, its groups, counts and visitors."""
    if not yes:
        click.confirm(f"delete pool {pool_id} and everything in it?", abort=True)
    run(lambda s: s.pools.delete_pool(pool_id))
    click.echo(f"{pool_id} deleted")


# groups


@click.group()
def groups() -> None:
    """Groups (invite links) of a pool."""


def _group_fields(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


_group_options = [
    click.option("--id", "group_id", default=None),
    click.option("--name", default=None),
    click.option("--capacity", type=int, default=None, help=f"default {DEFAULT_CAPACITY}"),
    click.option("--expires-at", default=None, help="ISO 8601 time"),
    click.option("--weight", type=int, default=None),
    click.option("--mode", type=MODES, default=None),
]


def group_options(fn: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_group_options):
        fn = option(fn)
    return fn


@groups.command("add")
@click.argument("pool_id")
@click.argument("url")
@group_options
def groups_add(pool_id: str, url: str, group_id: str | None, **options: Any) -> None:
    group = GroupCreate.model_validate(_group_fields(id=group_id, url=url, **options))
    created = run(lambda s: s.pools.add_groups(pool_id, [group]))
    echo_json(dump(created[0]))


@groups.command("upload")
@click.argument("pool_id")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@group_options
def groups_upload(pool_id: str, image: Path, group_id: str | None, **options: Any) -> None:
    """A group from the image of its QR code (PNG, JPEG or WebP)."""
    data = image.read_bytes()

    async def action(s: Stores) -> list[GroupPublic]:
        group = qr.group_from_image(data, _group_fields(id=group_id, **options))
        return await s.pools.add_groups(pool_id, [group])

    echo_json(dump(run(action)[0]))


@groups.command("list")
@click.argument("pool_id")
@click.option("--json", "as_json", is_flag=True)
def groups_list(pool_id: str, as_json: bool) -> None:
    found = run(lambda s: s.pools.list_groups(pool_id))
    if as_json:
        echo_json([dump(g) for g in found])
        return
    for g in found:
        state = "off" if not g.enabled else ("expired" if g.expired else "on")
        click.echo(f"{g.id}  {g.count}/{g.capacity}  {state:7}  {g.url}")


def _set_enabled(pool_id: str, group_id: str, enabled: bool) -> None:
    group = run(lambda s: s.pools.update_group(pool_id, group_id, GroupUpdate(enabled=enabled)))
    click.echo(f"{group.id} {'enabled' if group.enabled else 'disabled'}")


@groups.command("disable")
@click.argument("pool_id")
@click.argument("group_id")
def groups_disable(pool_id: str, group_id: str) -> None:
    _set_enabled(pool_id, group_id, False)


@groups.command("enable")
@click.argument("pool_id")
@click.argument("group_id")
def groups_enable(pool_id: str, group_id: str) -> None:
    _set_enabled(pool_id, group_id, True)


# qr, export, import


@click.command("qr")
@click.argument("pool_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="poster.png, .svg, .pdf or .eps: the suffix is the format")
@click.option("--scale", type=int, default=10)
@click.option("--border", type=int, default=4)
@click.option("--error", type=click.Choice(["l", "m", "q", "h"]), default="m")
def qr_cmd(pool_id: str, output: Path, scale: int, border: int, error: str) -> None:
    """Draw the poster QR of a pool's scan URL (LIVECODE_PUBLIC_URL)."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in qr.POSTER_FORMATS:
        raise click.ClickException(
            f"unsupported output format {output.suffix or '(none)'!r}: use "
            + ", ".join(f".{f}" for f in qr.POSTER_FORMATS))

    async def action(s: Stores) -> str:
        await s.pools.get_pool(pool_id)
        return links.scan_url(s.settings, pool_id)

    url = run(action)
    warning = links.poster_warning(Settings())
    if warning:
        click.echo(f"warning: {warning}", err=True)
    try:
        output.write_bytes(qr.poster_qr(url, fmt, scale=scale, border=border, error=error))
    except InvalidInput as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{output}: {url}")


@click.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="file (default: stdout)")
def export_cmd(output: Path | None) -> None:
    """Every pool with its groups and counts, as JSON (API keys are not exported)."""
    text = json.dumps(run(lambda s: backup.export_all(s.pools)), indent=2, ensure_ascii=False,
                      default=str)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@click.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--replace", is_flag=True, help="replace pools that already exist")
def import_cmd(source: Any, replace: bool) -> None:
    """Load an export: pools, groups (in order) and counts. Everything is checked first; an
    existing pool is an error unless --replace."""
    try:
        plan = backup.parse_export(json.load(source))
    except ValueError as exc:  # not JSON
        raise click.ClickException(f"invalid export: {exc}") from None
    except InvalidInput as exc:
        detail = f" {json.dumps(exc.details, default=str)}" if exc.details else ""
        raise click.ClickException(f"invalid export: {exc.message}{detail}") from None
    n = run(lambda s: backup.apply_import(s.pools, plan, replace=replace))
    click.echo(f"imported {n} pool(s)", err=True)


COMMANDS = [keys, pools, groups, qr_cmd, export_cmd, import_cmd]
