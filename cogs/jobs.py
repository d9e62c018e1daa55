"""Background work owned by one cog: the job worker, the token refresher and media pruning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from discord.ext import commands, tasks

from bot.backends import errors as be
from bot.backends.flow import errors as fe

if TYPE_CHECKING:
    from bot.app import VeoBot

log = logging.getLogger(__name__)

#: Holds that mean "our credentials do not work": lifted as soon as a refresh proves they work again.
#: Not "verification": a working session says nothing about Flow's human check, which an admin clears.
FLOW_CREDENTIAL_HOLDS = frozenset({"cookies", "migrated", "flow_outage"})


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
        """A Flow credentials hold survives restarts; if the (maybe replaced) cookie file works now, lift it.

        If it cannot be told yet (Flow's sign-in service is down), the refresher lifts it on its first success.
        """
        if await self.bot.worker.paused() not in FLOW_CREDENTIAL_HOLDS or self.bot.credentials is None:
            return
        try:
            await self.bot.credentials.refresh(force=True)
        except fe.FlowError as err:
            log.warning("queue stays on hold: the cookies still do not work (%s)", type(err).__name__)
            return
        await self.bot.worker.resume()

    async def _credentials_failed(self, err: Exception) -> None:
        """The refresher gave up on a refresh: hold the queue with a reason that says what is really wrong."""
        match err:
            case be.AccountMigrated():
                reason = "migrated"
            case be.VerificationRequired():
                reason = "verification"
            case be.Unavailable() | be.RateLimited():
                # Flow's sign-in service is down and the token ran out: an outage, not dead cookies. Holding
                # keeps jobs queued instead of burning their submit attempts; it lifts by itself on recovery.
                log.warning("Flow's session endpoint is unreachable and the token expired (%s)", type(err).__name__)
                reason = "flow_outage"
            case _:
                reason = "cookies"
        await self.bot.worker.pause(reason)

    async def _credentials_recovered(self) -> None:
        """A refresh worked after a reported failure (or for the first time since start): lift a credentials hold."""
        held = await self.bot.worker.paused()
        if held in FLOW_CREDENTIAL_HOLDS:
            log.info("Flow credentials work again; lifting the %r hold", held)
            await self.bot.worker.resume()

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


#: A partial download untouched this long is a leftover of a kill: downloads write continuously and give up
#: after FLOW_HTTP_TIMEOUT without data, so no file being written now is anywhere near this old.
PART_GRACE = 3600.0


async def prune_media(bot: VeoBot) -> int:
    """Delete delivered media older than VEO_MEDIA_RETENTION_DAYS and stale partial downloads; returns how many."""
    older_than = bot.settings.veo_media_retention_days * 86400
    removed = 0
    for job in await bot.store.media_to_prune(older_than):
        if job.file_path:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(Path(job.file_path).unlink)
                removed += 1
            await bot.store.update_job(job.id, file_path=None)
    return removed + await asyncio.to_thread(prune_partials, bot.settings.media_dir, time.time() - PART_GRACE)


def prune_partials(media_dir: Path, before: float) -> int:
    """Delete `*.part` files in `media_dir` last modified before `before` (wall time, as mtimes are)."""
    removed = 0
    for path in media_dir.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):  # finished or discarded meanwhile
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
                removed += 1
    return removed


async def setup(bot: VeoBot) -> None:
    await bot.add_cog(Jobs(bot))
