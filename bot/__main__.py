"""Entry point: `python -m bot` runs the bot; `python -m bot --help` lists the other commands (bot/cli.py).

Builds settings, logging, one HTTP session, the store and the Flow client, and injects them into the bot.
Configuration mistakes end with one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from bot.backends.flow.client import FlowClient
from bot.backends.flow.credentials import CookieFile, Credentials
from bot.backends.flow.redact import mask_email
from bot.logs import Redactor
from bot.settings import ConfigError, Settings
from storage import Store

log = logging.getLogger("bot")

EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 1


@dataclass
class Resources:
    settings: Settings
    http: aiohttp.ClientSession
    credentials: Credentials
    flow: FlowClient


def http_session(settings: Settings) -> aiohttp.ClientSession:
    """The one HTTP session: explicit timeouts, no overall cap so long downloads can stream."""
    timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15, sock_read=settings.flow_http_timeout)
    # Cookies go only where Credentials puts them (an explicit header); a jar could merge stale ones in.
    return aiohttp.ClientSession(timeout=timeout, raise_for_status=False, cookie_jar=aiohttp.DummyCookieJar())


@contextlib.asynccontextmanager
async def flow_resources(
    settings: Settings, redactor: Redactor, *, backoff: tuple[float, float] | None = None
) -> AsyncIterator[Resources]:
    """The Flow side of the bot. `backoff` (base, cap) overrides both clients' retry backoff (tests shorten it)."""
    tuning = {"backoff_base": backoff[0], "backoff_cap": backoff[1]} if backoff else {}
    async with http_session(settings) as http:
        credentials = Credentials(
            settings.flow_cookie_file,
            http,
            labs_base=settings.flow_labs_base,
            refresh_margin=settings.flow_token_refresh_margin,
            request_timeout=settings.flow_http_timeout,
            **tuning,
        )
        redactor.add_provider(credentials.secret_values)
        await credentials.load()
        flow = FlowClient(
            http,
            credentials,
            api_base=settings.flow_api_base,
            labs_base=settings.flow_labs_base,
            status_batch_size=settings.flow_status_batch_size,
            model_key_overrides=settings.flow_model_keys,
            **tuning,
        )
        yield Resources(settings, http, credentials, flow)


def point_discord_at(settings: Settings) -> None:
    """Use a Discord-compatible server when DISCORD_API_BASE is set (tests, self-hosted gateways)."""
    import discord
    import yarl

    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


async def run_bot(settings: Settings, redactor: Redactor) -> int:
    import discord

    from bot.app import VeoBot

    settings.ensure_data_dir()
    token = settings.discord_token.get_secret_value()
    redactor.add_provider(lambda: [token])
    # Validate before anything logs, so a configuration mistake is the only line printed.
    await CookieFile.load(settings.flow_cookie_file)
    store = await Store.open(settings.database_path)
    try:
        async with flow_resources(settings, redactor) as res:
            point_discord_at(settings)
            bot = VeoBot(
                settings=settings, http_session=res.http, store=store, credentials=res.credentials, flow=res.flow
            )
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
            try:
                async with bot:
                    await bot.start(token)
            except discord.LoginFailure:
                raise ConfigError("DISCORD_TOKEN was rejected by Discord; check the bot token") from None
            except discord.PrivilegedIntentsRequired:
                raise ConfigError("Discord refused the gateway intents; check the bot's settings") from None
    finally:
        await store.close()
    return 0


async def run_check(settings: Settings, redactor: Redactor) -> int:
    """Validate credentials end to end without Discord; print what an admin needs, never a secret."""
    async with flow_resources(settings, redactor) as res:
        session = await res.credentials.refresh(force=True)
        credits = await res.flow.credits()
        expires = datetime.fromtimestamp(session.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"account: {mask_email(session.email)}")
        print(f"tier: {credits.tier}")
        print(f"credits: {credits.credits}")
        print(f"token expires: {expires}")
        print("ok: credentials are usable")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line (bot/cli.py) and run the command."""
    from bot.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
