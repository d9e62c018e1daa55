"""Background work owned by one cog: the job worker, the token refresher and media pruning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from discord.ext import commands, tasks

from bot.backends.flow import errors as fe

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
            self._refresher = self.bot.spawn(self.bot.credentials.run(on_error=self._credentials_failed), "veo-refresh")
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
        """A hold for dead cookies survives restarts; if the (maybe replaced) cookie file works now, lift it."""
        if await self.bot.worker.paused() != "cookies" or self.bot.credentials is None:
            return
        try:
            await self.bot.credentials.refresh(force=True)
        except fe.FlowError as err:
            log.warning("queue stays on hold: the cookies still do not work (%s)", type(err).__name__)
            return
        await self.bot.worker.resume()

    async def _credentials_failed(self, err: Exception) -> None:
        reason = "verification" if isinstance(err, fe.VerificationRequired) else "cookies"
        await self.bot.worker.pause(reason)

    @tasks.loop(hours=1)
    async def prune_media(self) -> None:
        """Delete delivered media files older than VEO_MEDIA_RETENTION_DAYS."""
        try:
            removed = await prune_media(self.bot)
        except Exception:
            log.exception("media pruning failed; retrying next hour")
            return
        if removed:
            log.info("pruned %d delivered media file(s)", removed)


async def prune_media(bot: VeoBot) -> int:
    """Delete delivered media files older than VEO_MEDIA_RETENTION_DAYS; returns how many."""
    older_than = bot.settings.veo_media_retention_days * 86400
    removed = 0
    for job in await bot.store.media_to_prune(older_than):
        if job.file_path:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(Path(job.file_path).unlink)
                removed += 1
            await bot.store.update_job(job.id, file_path=None)
    return removed


async def setup(bot: VeoBot) -> None:
    await bot.add_cog(Jobs(bot))
