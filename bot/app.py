"""The bot core: resources are injected, async set-up happens in `setup_hook`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord.ext import commands

from bot.delivery import DiscordDelivery
from bot.http.delivery import ApiDelivery, RoutingDelivery
from bot.http.metrics import ApiMetrics
from bot.worker import Worker
from cogs import EXTENSIONS

if TYPE_CHECKING:
    from bot.__main__ import Resources
    from bot.backends.base import Backend
    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from bot.settings import Settings
    from storage import Job, Store

log = logging.getLogger(__name__)

COMMANDS_HASH_KEY = "commands_hash"


class VeoBot(commands.Bot):
    """Holds the shared resources; features live in cogs."""

    def __init__(
        self,
        *,
        settings: Settings,
        http_session: aiohttp.ClientSession,
        store: Store,
        resources: Resources,
    ) -> None:
        # We never join voice: skip discord.py's start-up warnings about voice libraries.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            # A team bot sits in a few guilds: don't wait discord.py's default 2 s for more GUILD_CREATEs.
            guild_ready_timeout=0.5,
        )
        self.settings = settings
        self.http_session = http_session
        self.store = store
        self.backends: dict[str, Backend] = resources.backends
        #: The Flow side, when Flow is configured (credentials reload, credits).
        self.credentials: Credentials | None = resources.credentials
        self.flow: FlowClient | None = resources.flow
        # The result and status views come from the veo cog when it loads: the core never imports a cog.
        self.delivery = DiscordDelivery(self, store, settings, links=self._web_link)
        #: Counters for /metrics; API jobs are "delivered" by the HTTP API's content route.
        self.metrics = ApiMetrics()
        self.worker = Worker.from_settings(
            settings, store, self.backends, RoutingDelivery(self.delivery, ApiDelivery(self.metrics))
        )
        self._background: set[asyncio.Task[None]] = set()

    @property
    def backend(self) -> Backend:
        """The backend new jobs go to."""
        return self.worker.backend

    def _web_link(self, job: Job) -> str | None:
        backend = self.backends.get(job.backend or "")
        return backend.web_link(job.backend_ref) if backend is not None and job.backend_ref else None

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self.sync_commands()

    def spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        """Start a background task that is kept referenced and whose failure is logged."""
        task = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    async def sync_commands(self) -> None:
        """Guild sync when DISCORD_GUILD_ID is set (instant); global sync only when the command set changed."""
        if self.settings.discord_guild_id:
            guild = discord.Object(self.settings.discord_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), self.settings.discord_guild_id)
            return
        payload = json.dumps([c.to_dict(self.tree) for c in self.tree.get_commands()], sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()
        if await self.store.kv_get(COMMANDS_HASH_KEY) == digest:
            log.info("command set unchanged; not syncing")
            return
        synced = await self.tree.sync()
        await self.store.kv_set(COMMANDS_HASH_KEY, digest)
        log.info("synced %d global commands", len(synced))

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) in %d guild(s)", self.user, getattr(self.user, "id", "?"), len(self.guilds))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await super().close()
