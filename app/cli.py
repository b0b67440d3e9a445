"""`livecode`: a thin command line over the same core as the service."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

import click
from pydantic import ValidationError

from app import __version__, cli_admin, cli_stats, cli_webhooks, links
from app.embedded import redis_for
from app.errors import Conflict, LivecodeError
from app.runtime import connect
from app.schemas import Fallback, GroupCreate, PoolCreate
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from app.store.pools import AnyRedis, PoolStore

DEMO_POOL = "demo"


async def seed_demo(client: AnyRedis, settings: Settings) -> str:
    store = await PoolStore.open(client, settings)
    try:
        await store.create_pool(
            PoolCreate(
                id=DEMO_POOL,
                name="livecode demo",
                fallback=Fallback(message="The demo groups are full. Reset them with the API."),
            )
        )
        await store.add_groups(
            DEMO_POOL,
            [
                GroupCreate(
                    id=f"group-{i}", name=f"Demo group {i}",
                    url=f"https://example.com/demo-group-{i}", capacity=5,
                )
                for i in (1, 2, 3)
            ],
        )
    except Conflict:
        pass
    return links.scan_url(settings, DEMO_POOL)


async def prepare(settings: Settings, *, initial_key: bool, demo: bool) -> None:
    """Before serving: the first admin key on a new embedded store, and the demo pool."""
    client, fast = await connect(settings)
    try:
        if initial_key:
            secret = await ApiKeyStore(client).ensure_initial_admin()
            if secret:
                click.echo(f"admin API key (shown once, store it now): {secret}")
        if demo:
            click.echo(f"demo live code: {await seed_demo(client, settings)}")
        warning = links.poster_warning(settings)
        if warning:
            click.echo(f"warning: {warning}", err=True)
    finally:
        await fast.close()
        await client.aclose()


class Livecode(click.Group):
    """Every command answers bad input with one line on stderr and exit 1, wherever in the
    command it is found: a value click refuses, a model that does not validate, a refusal of
    the service layer. (A missing argument or an unknown option stays a usage error, exit 2.)"""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.MissingParameter:
            raise
        except click.BadParameter as exc:
            raise cli_admin.CliError(f"invalid_input: {exc.format_message()}") from None
        except (LivecodeError, ValidationError) as exc:
            raise cli_admin.CliError(cli_admin.describe(exc)) from None


@click.group(cls=Livecode)
@click.version_option(__version__, prog_name="livecode")
def main() -> None:
    """livecode: one stable QR code, a pool of chat groups."""


@main.command()
@click.option("--host", default=None, help="bind address [LIVECODE_HOST, 127.0.0.1]")
@click.option("--port", type=int, default=None, help="port [LIVECODE_PORT, 8000]")
@click.option("--workers", type=int, default=None, help="worker processes [LIVECODE_WORKERS, 1]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="embedded Redis data [LIVECODE_DATA_DIR, ./livecode-data]")
@click.option("--demo", is_flag=True, help="seed a demo pool and print its scan URL")
def serve(host: str | None, port: int | None, workers: int | None, data_dir: Path | None,
          demo: bool) -> None:
    """Run the service (uvicorn, uvloop, httptools).

    Without LIVECODE_REDIS_URL it starts and owns a redis-server in the data directory
    (AOF everysec, noeviction) and stops it on exit.
    """
    import uvicorn

    overrides = {k: v for k, v in
                 {"host": host, "port": port, "workers": workers, "data_dir": data_dir}.items()
                 if v is not None}
    settings = cli_admin.load_settings(**overrides)
    # uvicorn re-raises the signal it caught once it has shut down; with the default SIGTERM
    # action that would end the process before the embedded redis-server is stopped.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    embedded = not (settings.redis_url or settings.redis_sentinels)
    with redis_for(settings) as (url, owned):
        if owned is not None:
            click.echo(f"embedded redis-server: {url} (data in {settings.data_dir})")
        if url:
            os.environ["LIVECODE_REDIS_URL"] = url
            settings = settings.model_copy(update={"redis_url": url})
        asyncio.run(prepare(settings, initial_key=embedded, demo=demo))
        common = dict(
            host=settings.host, port=settings.port, loop="uvloop",
            # httptools with a limit on request heads; h11 would apply the same option
            http="app.httplimits:HeadLimitedHttpToolsProtocol",
            h11_max_incomplete_event_size=settings.max_request_head_bytes,
            interface="asgi3",
            lifespan="on", access_log=False, log_level=settings.log_level,
            proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
            timeout_graceful_shutdown=5,
        )
        if settings.workers == 1:
            from app.main import create_app

            uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
            return
        metrics_dir = tempfile.mkdtemp(prefix="livecode-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            uvicorn.run("app.main:create_app_from_env", factory=True,
                        workers=settings.workers, **common)  # type: ignore[arg-type]
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@main.command()
def demo() -> None:
    """Seed the demo pool (3 groups of 5) into the configured (or embedded) Redis and print
    its scan URL; nothing changes if it exists already."""
    settings = cli_admin.load_settings()
    with redis_for(settings) as (url, _):
        settings = settings.model_copy(update={"redis_url": url or None})
        asyncio.run(prepare(settings, initial_key=False, demo=True))


for _command in [*cli_admin.COMMANDS, *cli_stats.COMMANDS, *cli_webhooks.COMMANDS]:
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()
