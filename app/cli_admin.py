"""Operator commands: keys, pools, groups, qr, export, import.

They run the same service layer as the API against the same Redis as `serve`:
LIVECODE_REDIS_URL, or the embedded server of the data directory in the current folder, whether
`serve` is running or not. Bad input and failures are one line on stderr (`Error: <code>:
<what>`) and exit 1; when a pool is not found, or there are none, the line says which Redis or
data directory was asked, so that running from the wrong folder is obvious.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
import redis.asyncio as aredis
from pydantic import ValidationError

from app import audit, links, qr
from app.embedded import redis_for
from app.errors import InvalidInput, LivecodeError, PoolNotFound
from app.runtime import connect
from app.schemas import (
    GroupCreate,
    GroupPublic,
    GroupUpdate,
    Mode,
    PoolCreate,
    PoolPublic,
    PoolUpdate,
    Strategy,
)
from app.settings import Settings
from app.store import backup
from app.store.apikeys import SCOPES, ApiKeyStore, key_id_of
from app.store.pools import PoolStore
from app.store.schema import DEFAULT_CAPACITY

T = TypeVar("T")
STRATEGIES = click.Choice(get_args(Strategy))
MODES = click.Choice(get_args(Mode))
NEVER = "never"  # --expires-at / --valid-from / --valid-until: remove the time


@dataclass
class Stores:
    pools: PoolStore
    keys: ApiKeyStore
    settings: Settings
    where: str  # the Redis URL (without its password) or the data directory


class CliError(click.ClickException):
    """One line on stderr, exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def load_settings(**overrides: Any) -> Settings:
    """Settings from LIVECODE_* (and the command's options), or one line naming what is bad."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        def name(field: str) -> str:
            return f"--{field.replace('_', '-')}" if field in given else f"LIVECODE_{field.upper()}"

        parts = [f"{name(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}"
                 for e in exc.errors()]
        raise CliError(f"invalid_input: {'; '.join(parts)}") from None


def redacted(url: str) -> str:
    """A Redis URL without its password (in the user info or a `password=` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rpartition("@")[2]
        netloc = f"{user}@{host}" if user else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def store_location(settings: Settings, url: str, embedded: bool) -> str:
    if embedded:
        return f"the embedded Redis of data directory {settings.data_dir.resolve()}"
    return redacted(url) if url else f"the sentinels {settings.redis_sentinels}"


def describe(exc: LivecodeError | ValidationError) -> str:
    """`<code>: <what>` in words: validation errors as `field: problem`, never a JSON dump."""
    if isinstance(exc, ValidationError):
        return f"invalid_input: {_fields(exc.errors())}"
    text = f"{exc.code}: {exc.message}"
    if isinstance(exc.details, list) and exc.details and isinstance(exc.details[0], dict):
        text += f": {_fields(exc.details)}"
    return text


def _fields(errors: Sequence[Any]) -> str:
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query")]
        parts.append(f"{'.'.join(loc)}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts)


def run(action: Callable[[Stores], Awaitable[T]]) -> T:
    """Open the store, run one action, turn every failure into one clear line and exit 1."""
    settings = load_settings()
    where = ""

    async def go(url: str) -> T:
        audit.actor.set("cli")
        client, fast = await connect(settings.model_copy(update={"redis_url": url or None}), 5)
        try:
            pools = await PoolStore.open(client, settings)
            return await action(Stores(pools, ApiKeyStore(client), settings, where))
        finally:
            await fast.close()
            await client.aclose()

    try:
        with redis_for(settings) as (url, _):
            embedded = not (settings.redis_url or settings.redis_sentinels)
            where = store_location(settings, url, embedded)
            return asyncio.run(go(url))
    except PoolNotFound as exc:
        raise CliError(f"{describe(exc)} (in {where})") from None
    except (LivecodeError, ValidationError) as exc:
        raise CliError(describe(exc)) from None
    except (aredis.RedisError, OSError, RuntimeError) as exc:
        raise CliError(f"store_unavailable: {exc}" + (f" ({where})" if where else "")) from None


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
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    async def action(s: Stores) -> list[Any]:
        found = await s.keys.list()
        if not found:
            click.echo(f"no API keys in {s.where}", err=True)
        return found

    found = run(action)
    if as_json:
        echo_json([k.model_dump(mode="json") for k in found])
        return
    for k in found:
        used = k.last_used_at.isoformat() if k.last_used_at else "never"
        created = k.created_at.isoformat()
        click.echo(f"{k.id}  {k.scope:5}  created {created}  used {used}  {k.name}")


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke a key, given by its id or in full (as `keys create` printed it)."""
    run(lambda s: s.keys.revoke(key))
    click.echo(f"revoked {key_id_of(key)}")


# pools


@click.group()
def pools() -> None:
    """Pools (live codes)."""


@pools.command("list")
@click.option("--json", "as_json", is_flag=True)
def pools_list(as_json: bool) -> None:
    async def action(s: Stores) -> list[PoolPublic]:
        found = (await s.pools.list_pools(limit=1_000_000))[0]
        if not found:
            click.echo(f"no pools in {s.where}", err=True)
        return found

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
    pool = PoolCreate.model_validate(fields)
    echo_json(dump(run(lambda s: s.pools.create_pool(pool))))


@pools.command("update")
@click.argument("pool_id")
@click.option("--name", default=None)
@click.option("--strategy", type=STRATEGIES, default=None)
@click.option("--mode", type=MODES, default=None)
@click.option("--fallback-url", default=None, help="redirect here when every group is full")
@click.option("--fallback-message", default=None, help="or show this message")
@click.option("--fallback-contact", default=None, help="and this contact URL as a QR code")
@click.option("--sticky-ttl", type=int, default=None, help="seconds a visitor keeps their group")
@click.option("--valid-from", default=None, help=f"ISO 8601 time, or '{NEVER}'")
@click.option("--valid-until", default=None, help=f"ISO 8601 time, or '{NEVER}'")
def pools_update(pool_id: str, name: str | None, strategy: str | None, mode: str | None,
                 fallback_url: str | None, fallback_message: str | None,
                 fallback_contact: str | None, sticky_ttl: int | None, valid_from: str | None,
                 valid_until: str | None) -> None:
    """Change a pool, as PATCH /pools/{id} does. The --fallback-* options replace the
    fallback as a whole: give every part that should stay."""
    fields: dict[str, Any] = {"name": name, "strategy": strategy, "mode": mode,
                              "sticky_ttl_s": sticky_ttl}
    fields = {k: v for k, v in fields.items() if v is not None}
    for key, value in (("valid_from", valid_from), ("valid_until", valid_until)):
        if value is not None:
            fields[key] = None if value == NEVER else value
    if any(v is not None for v in (fallback_url, fallback_message, fallback_contact)):
        fields["fallback"] = {"url": fallback_url, "message": fallback_message,
                              "contact_url": fallback_contact}
    if not fields:
        raise CliError("invalid_input: nothing to change (see livecode pools update --help)")
    change = PoolUpdate.model_validate(fields)
    echo_json(dump(run(lambda s: s.pools.update_pool(pool_id, change))))


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
    group = qr.group_from_image(data, _group_fields(id=group_id, **options))
    echo_json(dump(run(lambda s: s.pools.add_groups(pool_id, [group]))[0]))


@groups.command("list")
@click.argument("pool_id")
@click.option("--json", "as_json", is_flag=True)
def groups_list(pool_id: str, as_json: bool) -> None:
    echo_groups(run(lambda s: s.pools.list_groups(pool_id)), as_json)


def echo_groups(found: list[GroupPublic], as_json: bool) -> None:
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


@groups.command("update")
@click.argument("pool_id")
@click.argument("group_id")
@click.option("--name", default=None)
@click.option("--url", default=None, help="a new invite link: the group's code is replaced")
@click.option("--capacity", type=int, default=None)
@click.option("--expires-at", default=None, help=f"ISO 8601 time, or '{NEVER}'")
@click.option("--weight", type=int, default=None)
@click.option("--mode", type=click.Choice([*get_args(Mode), "pool"]), default=None,
              help="'pool': the pool's mode")
@click.option("--enable/--disable", "enabled", default=None)
def groups_update(pool_id: str, group_id: str, name: str | None, url: str | None,
                  capacity: int | None, expires_at: str | None, weight: int | None,
                  mode: str | None, enabled: bool | None) -> None:
    """Change a group, as PATCH /pools/{id}/groups/{gid} does; counts are kept."""
    fields: dict[str, Any] = {"name": name, "url": url, "capacity": capacity, "weight": weight,
                              "enabled": enabled}
    fields = {k: v for k, v in fields.items() if v is not None}
    if expires_at is not None:
        fields["expires_at"] = None if expires_at == NEVER else expires_at
    if mode is not None:
        fields["mode"] = None if mode == "pool" else mode
    if not fields:
        raise CliError("invalid_input: nothing to change (see livecode groups update --help)")
    change = GroupUpdate.model_validate(fields)
    echo_json(dump(run(lambda s: s.pools.update_group(pool_id, group_id, change))))


@groups.command("replace")
@click.argument("pool_id")
@click.argument("group_id")
@click.argument("url", required=False)
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="the new QR code's image (PNG, JPEG or WebP)")
@click.option("--expires-at", default=None,
              help="ISO 8601 time (default for a new WeChat group code: 7 days from now)")
def groups_replace(pool_id: str, group_id: str, url: str | None, image: Path | None,
                   expires_at: str | None) -> None:
    """Give a group a new code (URL, or --image): it keeps its id, count and place."""
    if (url is None) == (image is None):
        raise CliError("invalid_input: give the new URL or --image FILE, not both")
    when = GroupUpdate.model_validate({"expires_at": expires_at}).expires_at
    new_url = qr.decode_qr_image(image.read_bytes()) if image is not None else str(url)
    echo_json(dump(run(lambda s: s.pools.replace_code(pool_id, group_id, new_url, when))))


@groups.command("reset")
@click.argument("pool_id")
@click.argument("group_id")
@click.option("--json", "as_json", is_flag=True)
def groups_reset(pool_id: str, group_id: str, as_json: bool) -> None:
    """Count back to 0: the group takes new scans again."""
    group = run(lambda s: s.pools.reset_group(pool_id, group_id))
    if as_json:
        echo_json(dump(group))
    else:
        click.echo(f"{group.id} reset: {group.count}/{group.capacity}")


@groups.command("delete")
@click.argument("pool_id")
@click.argument("group_id")
@click.option("--yes", is_flag=True, help="do not ask")
def groups_delete(pool_id: str, group_id: str, yes: bool) -> None:
    """Remove a group; its count is lost."""
    if not yes:
        click.confirm(f"delete group {group_id} of pool {pool_id}?", abort=True)
    run(lambda s: s.pools.delete_group(pool_id, group_id))
    click.echo(f"{group_id} deleted")


@groups.command("reorder")
@click.argument("pool_id")
@click.argument("group_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
def groups_reorder(pool_id: str, group_ids: tuple[str, ...], as_json: bool) -> None:
    """The new order: every group of the pool, once."""
    echo_groups(run(lambda s: s.pools.reorder_groups(pool_id, list(group_ids))), as_json)


# qr, export, import


@click.command("qr")
@click.argument("pool_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="poster.png, .svg, .pdf or .eps: the suffix is the format")
@click.option("--scale", type=int, default=10)
@click.option("--border", type=int, default=4)
@click.option("--error", type=click.Choice(["l", "m", "q", "h"]), default="m")
@click.option("--channel", default=None,
              help="encode /s/POOL?ch=CHANNEL: this poster's scans are counted apart")
def qr_cmd(pool_id: str, output: Path, scale: int, border: int, error: str,
           channel: str | None) -> None:
    """Draw the poster QR of a pool's scan URL (LIVECODE_PUBLIC_URL)."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in qr.POSTER_FORMATS:
        raise click.ClickException(
            f"unsupported output format {output.suffix or '(none)'!r}: use "
            + ", ".join(f".{f}" for f in qr.POSTER_FORMATS))
    ch = links.check_channel(channel) if channel is not None else ""

    async def action(s: Stores) -> str:
        await s.pools.get_pool(pool_id)
        return links.scan_url(s.settings, pool_id, ch)

    url = run(action)
    warning = links.poster_warning(load_settings())
    if warning:
        click.echo(f"warning: {warning}", err=True)
    try:
        output.write_bytes(qr.poster_qr(url, fmt, scale=scale, border=border, error=error))
    except InvalidInput as exc:
        raise CliError(describe(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"{output}: {url}")


@click.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="file (default: stdout)")
def export_cmd(output: Path | None) -> None:
    """Every pool with its groups and counts, as JSON (API keys are not exported)."""

    async def action(s: Stores) -> dict[str, Any]:
        doc = await backup.export_all(s.pools)
        if not doc["pools"]:
            click.echo(f"no pools in {s.where}", err=True)
        return doc

    text = json.dumps(run(action), indent=2, ensure_ascii=False, default=str)
    if output is None:
        click.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}", err=True)


@click.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--replace", is_flag=True, help="replace pools that already exist")
def import_cmd(source: Any, replace: bool) -> None:
    """Load an export: pools, groups (in order) and counts. Everything is checked first; an
    existing pool is an error unless --replace."""
    try:
        plan = backup.parse_export(json.load(source))
    except InvalidInput as exc:
        raise CliError(f"invalid export: {describe(exc)}") from None
    except ValueError as exc:  # not JSON
        raise CliError(f"invalid export: {exc}") from None
    n = run(lambda s: backup.apply_import(s.pools, plan, replace=replace))
    click.echo(f"imported {n} pool(s)", err=True)


COMMANDS = [keys, pools, groups, qr_cmd, export_cmd, import_cmd]
