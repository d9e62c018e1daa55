"""Background work owned by one cog: the job worker, the token refresher and media pruning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from discord.ext import commands, tasks

from bot import upkeep

if TYPE_CHECKING:
    from bot.app import VeoBot

log = logging.getLogger(__name__)


class Jobs(commands.Cog):
    """Starts the worker once the gateway is ready; stops it (and the refresher) on unload."""

    def __init__(self, bot: VeoBot) -> None:
        self.bot = bot
        self._starter: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self._starter = self.bot.spawn(self._start_when_ready(), "veo-worker-start")
        if self.bot.credentials is not None:
            refresher = self.bot.credentials.run(
                on_error=self._credentials_failed, on_recovered=self._credentials_recovered
            )
            self._refresher = self.bot.spawn(refresher, "veo-refresh")
        self.prune_media.start()

    async def cog_unload(self) -> None:
        self.prune_media.cancel()
        for task in (self._starter, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.bot.worker.stop()
        await self.bot.delivery.close()

    async def _start_when_ready(self) -> None:
        await self.bot.wait_until_ready()
        await self._lift_stale_cookie_hold()
        self.bot.worker.start()

    async def _lift_stale_cookie_hold(self) -> None:
        await upkeep.lift_stale_hold(self.bot.worker, self.bot.credentials)

    async def _credentials_failed(self, err: Exception) -> None:
        await upkeep.credentials_failed(self.bot.worker, err)

    async def _credentials_recovered(self) -> None:
        await upkeep.credentials_recovered(self.bot.worker)

    @tasks.loop(hours=1)
    async def prune_media(self) -> None:
        """Delete delivered media files older than VEO_MEDIA_RETENTION_DAYS, and stale partial downloads."""
        try:
            removed = await prune_media(self.bot)
        except Exception:
            log.exception("media pruning failed; retrying next hour")
            return
        if removed:
            log.info("pruned %d media file(s)", removed)


async def prune_media(bot: VeoBot) -> int:
    """Delete delivered media older than VEO_MEDIA_RETENTION_DAYS and stale partial downloads; returns how many."""
    settings = bot.settings
    return await upkeep.prune_media(bot.store, settings.media_dir, settings.veo_media_retention_days)


async def setup(bot: VeoBot) -> None:
    await bot.add_cog(Jobs(bot))
