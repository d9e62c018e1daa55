"""Posting results to Discord: the `Delivery` the worker hands finished jobs to.

Everything goes out with the bot token to the job's channel (interaction tokens die after 15 minutes).
Posts carry the job's stored nonce with `enforce_nonce`, so Discord itself drops a repeat after a crash.
Once the nonce window has passed, recovery recognises our post by its author (the bot) and the job's button
custom_ids, never by the visible marker (`veo job N`), which a quoted prompt can contain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot import render
from bot.logs import job_logger
from bot.worker import DeliveryFailed
from storage import Job, JobState, Store

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
STATUS_EDIT_INTERVAL = 10.0
#: How far before the recorded start of a post the marker search begins (clock skew, rounding).
SEARCH_SLACK = 60.0


def _custom_ids(components: Sequence[object]) -> set[str]:
    """Every custom_id in a message's components, action rows included."""
    found: set[str] = set()
    for component in components:
        if isinstance(cid := getattr(component, "custom_id", None), str):
            found.add(cid)
        found |= _custom_ids(getattr(component, "children", ()))
    return found


def only_user(user_id: int) -> discord.AllowedMentions:
    """Mentions that can ping exactly the requester and nobody else."""
    return discord.AllowedMentions(everyone=False, roles=False, replied_user=False, users=[discord.Object(user_id)])


class DiscordDelivery:
    """Implements the worker's Delivery with discord.py."""

    def __init__(
        self,
        client: discord.Client,
        store: Store,
        settings: Settings,
        *,
        views: Callable[[Job], discord.ui.View | None] = lambda job: None,
        status_views: Callable[[list[Job]], discord.ui.View | None] = lambda jobs: None,
        links: Callable[[Job], str | None] = lambda job: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.views = views
        self.status_views = status_views
        self.links = links
        #: Wall time, for what users read ("waiting 3 min") and for comparing with stored times.
        self.clock = clock
        #: Edit throttles run on a monotonic clock: a wall-clock step must not stall status updates.
        self.monotonic: Callable[[], float] = time.monotonic
        self._last_edit: dict[int, float] = {}
        self._dirty: dict[int, Job] = {}
        self._forced: set[int] = set()
        self._editors: dict[int, asyncio.Task[None]] = {}
        self._kicks: dict[int, asyncio.Event] = {}
        self._next_round: dict[int, asyncio.Future[None]] = {}

    # --- results -------------------------------------------------------------------------------------

    def upload_limit(self, job: Job) -> int:
        guild = self.client.get_guild(job.guild_id) if job.guild_id else None
        return max(guild.filesize_limit, DEFAULT_UPLOAD_LIMIT) if guild else DEFAULT_UPLOAD_LIMIT

    def result_link(self, job: Job) -> str | None:
        return self.links(job)

    async def post_video(self, job: Job, path: Path) -> int:
        size = job.file_size or (await asyncio.to_thread(path.stat)).st_size
        limit = self.upload_limit(job)
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        view = self.views(job)
        extra = {"view": view} if view is not None else {}
        if size <= limit:
            try:
                message = await self._send(
                    channel,
                    content=render.result_message(job),
                    file=discord.File(path, filename=f"veo-{job.id}.mp4"),
                    nonce=job.delivery_nonce,
                    allowed_mentions=only_user(job.user_id),
                    **extra,
                )
                return message.id
            except DeliveryFailed as err:
                if err.status != 413:
                    raise
                job_logger(log, job.id).info("Discord refused the upload as too large; posting a link")
        message = await self._send(
            channel,
            content=render.too_big_message(job, size, limit, self.result_link(job)),
            nonce=job.delivery_nonce,
            allowed_mentions=only_user(job.user_id),
            **extra,
        )
        return message.id

    async def post_failure(self, job: Job, text: str) -> int:
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        view = self.views(job)
        extra = {"view": view} if view is not None else {}
        message = await self._send(
            channel,
            content=render.failure_message(job, text),
            nonce=job.notice_nonce,
            allowed_mentions=only_user(job.user_id),
            **extra,
        )
        return message.id

    async def _send(self, channel: discord.PartialMessageable, **kwargs: object) -> discord.Message:
        try:
            return await channel.send(**kwargs)  # type: ignore[arg-type]
        except discord.HTTPException as err:
            # discord.py already retried 429s and 5xx; what is left is final for this attempt.
            permanent = err.status in (400, 401, 403, 404)
            raise DeliveryFailed(
                f"Discord answered {err.status} (code {err.code})", permanent=permanent, status=err.status
            ) from err
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise DeliveryFailed(f"network error: {type(err).__name__}", permanent=False) from err

    def _own_ids(self, job: Job) -> frozenset[str]:
        """The custom_ids of the buttons our result or notice post of this job carries."""
        view = self.views(job)
        if view is None:
            return frozenset()
        return frozenset(cid for item in view.children if isinstance(cid := getattr(item, "custom_id", None), str))

    async def find_posted(self, job: Job) -> int | None:
        """Our post of this job since its posting began, if any; DeliveryFailed when history cannot be read.

        The search is complete, not "recent": every message after the post began (less a minute of clock skew),
        however many others were posted since. Not knowing must not read as "not posted" (a second post).

        A post is ours by what no user can write: authored by the bot and carrying this job's result buttons
        (custom_ids `veo:retry:N` / `veo:details:N`). The visible marker is no proof: prompts are quoted in the
        bot's own messages (status messages, other results), so `veo job N` can be anyone's text. The stored
        nonce is no proof either: Discord echoes it on create, but history does not reliably return it.
        """
        me = self.client.user
        if me is None:
            raise DeliveryFailed("history unreadable: not logged in yet", permanent=False)
        ids = self._own_ids(job)
        # Without buttons (a delivery built with no views) only the marker line is left: our own line, which a
        # quoted prompt cannot produce (render quotes a prompt on one `> ` line, markdown escaped).
        line = re.compile(rf"^-# {re.escape(render.marker(job))}$", re.MULTILINE)
        started = job.delivering_at if job.state is JobState.DELIVERING else job.notice_at
        since = (started if started is not None else job.created_at) - SEARCH_SLACK
        after = discord.Object(discord.utils.time_snowflake(datetime.fromtimestamp(max(since, 0), UTC)))
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            async for message in channel.history(limit=None, after=after, oldest_first=True):
                if message.author.id != me.id:
                    continue
                if (ids & _custom_ids(message.components)) if ids else line.search(message.content):
                    return message.id
        except discord.HTTPException as err:
            raise DeliveryFailed(f"history unreadable: Discord answered {err.status}", permanent=False) from err
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise DeliveryFailed(f"history unreadable: {type(err).__name__}", permanent=False) from err
        return None

    # --- live status -----------------------------------------------------------------------------------

    async def job_changed(self, job: Job, *, force: bool = False) -> None:
        """Edit the job's status message: at most once per STATUS_EDIT_INTERVAL, unless forced.

        One editor task per status message does the edits (reading the job fresh), so changes made meanwhile
        coalesce and a rate-limited edit never holds up the caller; only a forced change waits for its edit.
        """
        mid = job.status_message_id
        if not mid:
            return
        self._dirty[mid] = job
        done = self._next_round.get(mid)
        if done is None:
            done = self._next_round[mid] = asyncio.get_running_loop().create_future()
        if force:
            self._forced.add(mid)
        if mid in self._editors:
            self._kicks[mid].set()
        else:
            self._kicks[mid] = asyncio.Event()
            self._editors[mid] = asyncio.create_task(self._editor(mid), name=f"veo-status-{mid}")
        if force:
            await asyncio.shield(done)

    async def _editor(self, mid: int) -> None:
        kick = self._kicks[mid]
        try:
            while mid in self._dirty:
                wait = (
                    0.0
                    if mid in self._forced
                    else self._last_edit.get(mid, float("-inf")) + STATUS_EDIT_INTERVAL - self.monotonic()
                )
                if wait > 0:
                    kick.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(kick.wait(), wait)
                    continue
                job = self._dirty.pop(mid)
                done = self._next_round.pop(mid, None)
                self._forced.discard(mid)
                self._last_edit[mid] = self.monotonic()
                try:
                    finished = await self._edit_status(await self.store.get_job(job.id) or job)
                except Exception:
                    log.exception("status message %s: edit failed", mid)
                    finished = False
                finally:
                    if done is not None and not done.done():
                        done.set_result(None)
                if finished and mid not in self._dirty:
                    self._last_edit.pop(mid, None)
        finally:
            self._editors.pop(mid, None)
            self._kicks.pop(mid, None)
            self._dirty.pop(mid, None)
            self._forced.discard(mid)
            waiting = self._next_round.pop(mid, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

    async def _edit_status(self, job: Job) -> bool:
        """Edit the status message now; True when every job it shows is finished (no further edits expected)."""
        mid = job.status_message_id
        assert mid is not None
        jobs = await self.store.group_jobs(job) if job.group_id else [job]
        positions = await self.store.queue_positions()
        pause = await self.store.kv_get("queue_paused")
        content = render.status_message(jobs, positions=positions, now=self.clock(), pause=pause)
        message = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id).get_partial_message(mid)
        try:
            await message.edit(
                content=content, view=self.status_views(jobs), allowed_mentions=discord.AllowedMentions.none()
            )
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as err:
            job_logger(log, job.id).warning("status edit failed: %s", type(err).__name__)
        return all(j.terminal for j in jobs)

    async def idle(self) -> None:
        """Wait until every scheduled status edit is done (tests, shutdown)."""
        while self._editors:
            await asyncio.gather(*list(self._editors.values()), return_exceptions=True)

    async def close(self) -> None:
        editors = list(self._editors.values())
        for task in editors:
            task.cancel()
        await asyncio.gather(*editors, return_exceptions=True)

    # --- admins ------------------------------------------------------------------------------------------

    async def alert_admins(self, text: str) -> None:
        """Tell the admins once: the admin channel when configured, else a DM to each admin user."""
        content = f"**Veo bot:** {text}"
        none = discord.AllowedMentions.none()
        if self.settings.veo_admin_channel_id:
            await self.client.get_partial_messageable(self.settings.veo_admin_channel_id).send(
                content, allowed_mentions=none
            )
            return
        for user_id in sorted(self.settings.veo_admin_user_ids):
            try:
                dm = await self.client.create_dm(discord.Object(user_id))  # type: ignore[arg-type]
                await dm.send(content, allowed_mentions=none)
            except discord.HTTPException as err:
                log.warning("could not DM admin %s: %s", user_id, err.status)
