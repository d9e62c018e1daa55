"""Entry point: `python -m bot` runs the bot; `python -m bot --help` lists the other commands (bot/cli.py).

Builds settings, logging, one HTTP session, the store and the backends, and injects them into the bot.
Configuration mistakes end with one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from bot.backends.base import Backend
from bot.backends.flow import errors as fe
from bot.backends.flow.backend import FlowBackend
from bot.backends.flow.client import FlowClient
from bot.backends.flow.credentials import CookieFile, Credentials
from bot.backends.flow.redact import mask_email
from bot.logs import Redactor
from bot.settings import ConfigError, Settings
from bot.worker import PROJECT_KEY
from storage import Store

if TYPE_CHECKING:
    from bot.app import VeoBot
    from bot.http.server import HttpServer

log = logging.getLogger("bot")

EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 1


@dataclass
class Resources:
    settings: Settings
    http: aiohttp.ClientSession
    #: Every backend whose configuration is present, by name; `settings.backend_name` takes new jobs.
    backends: dict[str, Backend] = field(default_factory=dict)
    credentials: Credentials | None = None
    flow: FlowClient | None = None


def http_session(settings: Settings) -> aiohttp.ClientSession:
    """The one HTTP session: explicit timeouts, no overall cap so long downloads can stream."""
    timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15, sock_read=settings.flow_http_timeout)
    # Cookies go only where Credentials puts them (an explicit header); a jar could merge stale ones in.
    return aiohttp.ClientSession(timeout=timeout, raise_for_status=False, cookie_jar=aiohttp.DummyCookieJar())


@contextlib.asynccontextmanager
async def backend_resources(
    settings: Settings,
    redactor: Redactor,
    *,
    store: Store | None = None,
    backoff: tuple[float, float] | None = None,
) -> AsyncIterator[Resources]:
    """Every configured backend: the chosen one must work; the other is built too when its configuration is
    present, so jobs it took before a switch of VEO_BACKEND still finish. `backoff` (base, cap) shortens the Flow
    clients' retry backoff (tests); `store` remembers the Flow project."""
    async with http_session(settings) as http:
        res = Resources(settings, http)
        wanted = settings.backend_name
        if wanted == "flow" or settings.flow_cookie_file.exists():
            try:
                await _add_flow(res, redactor, store, backoff)
            except fe.CredentialsError:
                if wanted == "flow":
                    raise
                log.warning("Flow credentials unusable; Flow jobs from before cannot be finished")
        if settings.google_cloud_project:
            res.backends["vertex"] = vertex_backend(settings, redactor)
        if wanted not in res.backends:  # only Vertex AI can be missing here: Flow raised above
            raise ConfigError(
                "VEO_BACKEND=vertex needs GOOGLE_CLOUD_PROJECT (a Google Cloud project with the Vertex AI API enabled)"
            )
        try:
            yield res
        finally:
            for backend in res.backends.values():
                close = getattr(backend, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await close()


async def _add_flow(
    res: Resources, redactor: Redactor, store: Store | None, backoff: tuple[float, float] | None
) -> None:
    settings = res.settings
    tuning = {"backoff_base": backoff[0], "backoff_cap": backoff[1]} if backoff else {}
    credentials = Credentials(
        settings.flow_cookie_file,
        res.http,
        labs_base=settings.flow_labs_base,
        refresh_margin=settings.flow_token_refresh_margin,
        request_timeout=settings.flow_http_timeout,
        **tuning,
    )
    redactor.add_provider(credentials.secret_values)
    await credentials.load()
    flow = FlowClient(
        res.http,
        credentials,
        api_base=settings.flow_api_base,
        labs_base=settings.flow_labs_base,
        status_batch_size=settings.flow_status_batch_size,
        model_key_overrides=settings.flow_model_keys,
        **tuning,
    )

    async def load_project() -> str | None:
        return await store.kv_get(PROJECT_KEY) if store is not None else None

    async def save_project(project: str) -> None:
        if store is not None:
            await store.kv_set(PROJECT_KEY, project)

    res.credentials, res.flow = credentials, flow
    res.backends["flow"] = FlowBackend(
        flow,
        credentials,
        max_concurrent=settings.flow_max_concurrent,
        project_id=settings.flow_project_id,
        load_project=load_project,
        save_project=save_project,
    )


def _gcloud_adc_file() -> Path:
    """Where `gcloud auth application-default login` leaves credentials (the only ADC source we rely on:
    probing a metadata server from an arbitrary host is not something a start-up check should do)."""
    config = os.environ.get("CLOUDSDK_CONFIG") or str(Path.home() / ".config" / "gcloud")
    return Path(config) / "application_default_credentials.json"


def vertex_backend(settings: Settings, redactor: Redactor) -> Backend:
    """Veo on Vertex AI from the settings; a missing or unreadable service-account file is a ConfigError."""
    from bot.backends.vertex import CredentialsFileError, VertexBackend, load_service_account

    api_key = settings.google_api_key.get_secret_value() if settings.google_api_key else None
    if api_key:
        redactor.add_provider(lambda: [api_key])
    credentials = None
    if not api_key and settings.google_application_credentials is not None:
        try:
            credentials = load_service_account(settings.google_application_credentials)
        except CredentialsFileError as err:
            raise ConfigError(str(err)) from None
    elif not api_key and not _gcloud_adc_file().exists():
        raise ConfigError(
            "GOOGLE_API_KEY or GOOGLE_APPLICATION_CREDENTIALS is required for the Vertex AI backend "
            "(an API key, or a service-account key file with the Vertex AI User role)"
        )
    # Veo takes 30 s to minutes: the first look comes after six poll intervals (30 s by default), then every two,
    # growing to six. Tests speed all of it up through VEO_POLL_INTERVAL.
    interval = settings.veo_poll_interval
    try:
        return VertexBackend(
            project=settings.google_cloud_project or "",
            location=settings.google_cloud_location,
            api_key=api_key,
            credentials=credentials,
            base_url=settings.vertex_api_base,
            models=settings.vertex_models,
            max_concurrent=settings.vertex_max_concurrent,
            http_timeout=settings.vertex_http_timeout,
            first_poll_after=6 * interval,
            poll_interval=2 * interval,
            max_poll_interval=6 * interval,
        )
    except ValueError as err:
        raise ConfigError(f"VERTEX_MODELS: {err}") from None


def point_discord_at(settings: Settings) -> None:
    """Use a Discord-compatible server when DISCORD_API_BASE is set (tests, self-hosted gateways)."""
    import discord
    import yarl

    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


async def start_http(settings: Settings, store: Store, bot: VeoBot) -> HttpServer | None:
    """The HTTP API in the bot's own event loop (one process, one store, one worker) when VEO_HTTP_PORT is set."""
    if settings.veo_http_port is None:
        return None
    from bot.http.app import create_app
    from bot.http.server import HttpServer

    app = create_app(
        store=store,
        worker=bot.worker,
        settings=settings,
        backend=bot.backend,
        metrics=bot.metrics,
        discord_connected=lambda: bot.is_ready() and not bot.is_closed(),
    )
    server = HttpServer(app, settings.veo_http_host, settings.veo_http_port)
    await server.start()
    log.info("HTTP API listening on %s:%s", settings.veo_http_host, settings.veo_http_port)
    return server


async def run_bot(settings: Settings, redactor: Redactor) -> int:
    import discord

    from bot.app import VeoBot

    settings.ensure_data_dir()
    if settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN is required but not set (environment or .env)")
    token = settings.discord_token.get_secret_value()
    redactor.add_provider(lambda: [token])
    # Validate before anything logs, so a configuration mistake is the only line printed.
    if settings.backend_name == "flow":
        await CookieFile.load(settings.flow_cookie_file)
    store = await Store.open(settings.database_path)
    try:
        async with backend_resources(settings, redactor, store=store) as res:
            point_discord_at(settings)
            bot = VeoBot(settings=settings, http_session=res.http, store=store, resources=res)
            loop = asyncio.get_running_loop()
            stopping = asyncio.Event()

            def stop() -> None:
                if not stopping.is_set():
                    log.info("signal received; shutting down")
                    stopping.set()
                    asyncio.ensure_future(bot.close())  # noqa: RUF006 - awaited through bot.start returning

            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop)
            server = await start_http(settings, store, bot)
            try:
                async with bot:
                    await bot.start(token)
            except discord.LoginFailure:
                raise ConfigError("DISCORD_TOKEN was rejected by Discord; check the bot token") from None
            except discord.PrivilegedIntentsRequired:
                raise ConfigError("Discord refused the gateway intents; check the bot's settings") from None
            finally:
                if server is not None:
                    await server.stop()
    finally:
        await store.close()
    return 0


async def run_check(settings: Settings, redactor: Redactor) -> int:
    """Validate the configured backend end to end without Discord; print what an admin needs, never a secret."""
    async with backend_resources(settings, redactor) as res:
        print(f"backend: {settings.backend_name}")
        if settings.backend_name == "flow":
            assert res.credentials is not None and res.flow is not None
            session = await res.credentials.refresh(force=True)
            credits = await res.flow.credits()
            expires = datetime.fromtimestamp(session.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            print(f"account: {mask_email(session.email)}")
            print(f"tier: {credits.tier}")
            print(f"credits: {credits.credits}")
            print(f"token expires: {expires}")
        else:
            backend = res.backends["vertex"]
            await backend.check()
            for key, value in backend.describe().items():  # type: ignore[attr-defined]
                print(f"{key}: {value}")
        print("ok: credentials are usable")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line (bot/cli.py) and run the command."""
    from bot.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
