"""Queueing jobs for an interaction: refusals, the store call, and the answer within Discord's deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import discord

from bot import render
from bot.errors import UserFacingError
from bot.messages import active_refusal_text, pause_text, quota_refusal_text
from bot.worker import PAUSE_KEY
from cogs.veo._options import JobSpec, discard, fetch_inputs, fresh_inputs
from storage import ActiveLimitReached, Job, QuotaExceeded

if TYPE_CHECKING:
    from bot.app import VeoBot

log = logging.getLogger(__name__)


def member_role_ids(user: discord.abc.User) -> frozenset[int]:
    """Role ids from the interaction's member payload (no role cache needed)."""
    return frozenset(int(r) for r in getattr(user, "_roles", ()))


def is_admin(bot: VeoBot, user: discord.abc.User) -> bool:
    return bot.settings.is_admin(user.id, member_role_ids(user))


def quota_refusal(err: QuotaExceeded | ActiveLimitReached) -> str:
    status = err.status
    if isinstance(err, ActiveLimitReached):
        return active_refusal_text(err.requested, active=status.active, max_active=status.max_active or 0)
    return quota_refusal_text(
        err.requested, remaining=status.remaining or 0, limit=status.limit or 0, resets_at=status.resets_at
    )


async def create_jobs(bot: VeoBot, interaction: discord.Interaction, spec: JobSpec) -> tuple[list[Job], dict[int, int]]:
    """Queue jobs for the interaction's user (with their queue positions), or refuse and change nothing.

    The spec was validated by the backend already; its attachments are downloaded here, after the cheap checks.
    """
    paused = await bot.store.kv_get(PAUSE_KEY)
    if paused:
        raise UserFacingError(f"The queue is on hold: {pause_text(paused)} Nothing was queued; try again later.")
    if interaction.channel_id is None:
        raise UserFacingError("Use this command in a server channel.")
    ready = await fetch_inputs(bot, spec) if spec.uploads else spec
    try:
        return await bot.store.create_jobs_with_positions(
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            prompt=ready.prompt,
            aspect=ready.aspect,
            model=ready.model,
            seeds=ready.seeds,
            daily_quota=bot.settings.veo_daily_quota,
            max_active=bot.settings.veo_max_active_per_user,
            unlimited=is_admin(bot, interaction.user),
            options=ready.options,
            cost=ready.cost.amount if ready.cost else 0.0,
            cost_unit=ready.cost.unit if ready.cost else "credits",
        )
    except BaseException as err:
        discard(fresh_inputs(spec, ready))
        if isinstance(err, QuotaExceeded | ActiveLimitReached):
            raise UserFacingError(quota_refusal(err)) from None
        raise


#: Answer no later than this after Discord created the interaction (it drops answers after 3 s): when the
#: store is slow (a burst of commands), defer first and finish with an edit.
ACK_DEADLINE = 1.5


async def queue_and_announce(bot: VeoBot, interaction: discord.Interaction, spec: JobSpec) -> None:
    """Queue the jobs and answer with the live status message, within Discord's deadline whatever the load
    (downloading attachments takes longer than that: the answer is then deferred)."""
    creating = asyncio.ensure_future(create_jobs(bot, interaction, spec))
    age = (discord.utils.utcnow() - interaction.created_at).total_seconds()
    done, _ = await asyncio.wait({creating}, timeout=max(0.0, ACK_DEADLINE - age))
    deferred = not done
    if deferred:
        # Private "thinking…": a refusal can still be private; a success is posted to the channel.
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as err:  # expired (10062): the user saw nothing
            with contextlib.suppress(UserFacingError):
                await withdraw(bot, interaction, (await creating)[0], err)
            return
    try:
        jobs, positions = await creating
    except UserFacingError as refusal:
        if not deferred:
            raise
        await interaction.edit_original_response(content=refusal.message)
        return
    from cogs.veo._views import status_view  # the views queue jobs too (Retry): import at use

    content = render.status_message(jobs, positions=positions)
    view = status_view(jobs)
    mentions = discord.AllowedMentions.none()
    if deferred:
        channel = bot.get_partial_messageable(interaction.channel_id or 0, guild_id=interaction.guild_id)
        try:
            message = await channel.send(content, view=view, allowed_mentions=mentions)
        except discord.HTTPException as err:  # no permission to send here (50013): results could not be either
            await withdraw(bot, interaction, jobs, err)
            raise UserFacingError(unpostable_text(err.status)) from None
        message_id = message.id
        await interaction.edit_original_response(content=f"Queued: {message.jump_url}")
    else:
        try:
            response = await interaction.response.send_message(content, view=view, allowed_mentions=mentions)
        except discord.HTTPException as err:  # expired (10062): the user saw nothing
            await withdraw(bot, interaction, jobs, err)
            return
        message_id = response.message_id or (await interaction.original_response()).id
    await bot.store.set_status_message([job.id for job in jobs], message_id)
    bot.worker.wake()


async def withdraw(bot: VeoBot, interaction: discord.Interaction, jobs: list[Job], err: discord.HTTPException) -> None:
    """Cancel jobs whose announcement Discord refused: no notice, quota returned, nothing left to retry into.

    Only on an answer from Discord (nothing was shown); a network error may hide an answer that landed.
    """
    log.warning(
        "withdrawing job(s) %s: their announcement was refused (%s, code %s)",
        ", ".join(f"#{j.id}" for j in jobs),
        err.status,
        err.code,
    )
    for job in jobs:
        for _ in range(3):  # the worker may move the job on between our read and the cancel
            fresh = await bot.store.get_job(job.id)
            if fresh is None or fresh.terminal or await bot.worker.cancel(fresh, actor_id=interaction.user.id):
                break


def unpostable_text(status: int) -> str:
    return (
        f"I could not post the status message in this channel (Discord answered {status}; the bot may lack "
        "permission to send messages here), so the videos could not be posted here either. Nothing was queued "
        "and nothing counts against your quota."
    )


async def owned_job(bot: VeoBot, interaction: discord.Interaction, job_id: int, *, refusal: str | None = None) -> Job:
    """The job when the user owns it or is an admin; otherwise a refusal that reveals nothing."""
    job = await bot.store.get_job(job_id)
    if job is None or (job.user_id != interaction.user.id and not is_admin(bot, interaction.user)):
        raise UserFacingError(refusal or f"You have no job `#{job_id}`. See `/veo status` for yours.")
    return job
