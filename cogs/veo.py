"""`/veo prompt`, `/veo status`, `/veo cancel` and the job buttons.

Thin by design: validate, call the store or the worker, render. The interaction is answered before any
Flow call: the worker picks the jobs up from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import statistics
import unicodedata
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.backends.base import GenerationRequest
from bot.backends.errors import NotSupported
from bot.errors import UserFacingError
from bot.messages import active_refusal_text, pause_text, quota_refusal_text
from bot.worker import PAUSE_KEY, month_of
from storage import ActiveLimitReached, Job, JobState, QuotaExceeded

if TYPE_CHECKING:
    from bot.app import VeoBot

log = logging.getLogger(__name__)

SEED_MAX = 2_147_483_647
FOREIGN_CLICK = "Only the person who asked for this video, or an admin, can use its buttons. Nothing was changed."
#: Characters that render as nothing; a prompt made only of them is empty.
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
ASPECTS = ("landscape", "portrait")
MODELS = ("fast", "quality")
MAX_COUNT = 4


def is_blank(text: str) -> bool:
    """True when nothing would render: spaces, controls, zero-width and bidi marks, blank 'letters'."""
    return all(c.isspace() or c in _BLANK_LETTERS or unicodedata.category(c) in _BLANK_CATEGORIES for c in text)


def check_options(aspect: str, model: str, seed: int | None, count: int) -> None:
    """discord.py does not enforce choices and ranges on what arrives: we do."""
    if (
        aspect not in ASPECTS
        or model not in MODELS
        or not 1 <= count <= MAX_COUNT
        or not (seed is None or 0 <= seed <= SEED_MAX)
    ):
        raise UserFacingError(
            "One of the options is not accepted: aspect is landscape or portrait, model is fast or quality, "
            f"seed is 0 to {SEED_MAX}, count is 1 to {MAX_COUNT}. Nothing was queued."
        )


def member_role_ids(user: discord.abc.User) -> frozenset[int]:
    """Role ids from the interaction's member payload (no role cache needed)."""
    return frozenset(int(r) for r in getattr(user, "_roles", ()))


def is_admin(bot: VeoBot, user: discord.abc.User) -> bool:
    return bot.settings.is_admin(user.id, member_role_ids(user))


def seeds_for(seed: int | None, count: int) -> list[int]:
    if seed is None:
        return [random.randint(1, 99_999) for _ in range(count)]
    return [(seed + i) % (SEED_MAX + 1) for i in range(count)]


def quota_refusal(err: QuotaExceeded | ActiveLimitReached) -> str:
    status = err.status
    if isinstance(err, ActiveLimitReached):
        return active_refusal_text(err.requested, active=status.active, max_active=status.max_active or 0)
    return quota_refusal_text(
        err.requested, remaining=status.remaining or 0, limit=status.limit or 0, resets_at=status.resets_at
    )


async def create_jobs(
    bot: VeoBot, interaction: discord.Interaction, *, prompt: str, aspect: str, model: str, seeds: list[int]
) -> tuple[list[Job], dict[int, int]]:
    """Queue jobs for the interaction's user (with their queue positions), or refuse and change nothing."""
    paused = await bot.store.kv_get(PAUSE_KEY)
    if paused:
        raise UserFacingError(f"The queue is on hold: {pause_text(paused)} Nothing was queued; try again later.")
    if interaction.channel_id is None:
        raise UserFacingError("Use this command in a server channel.")
    backend = bot.backend
    try:
        request = GenerationRequest(job_id=0, prompt=prompt, aspect=aspect, model=model, seed=seeds[0])  # type: ignore[arg-type]
        backend.validate(request)
    except NotSupported as refusal:
        raise UserFacingError(f"{refusal} Nothing was queued.") from None
    cost = backend.estimate(request)
    try:
        return await bot.store.create_jobs_with_positions(
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            prompt=prompt,
            aspect=aspect,
            model=model,
            seeds=seeds,
            daily_quota=bot.settings.veo_daily_quota,
            max_active=bot.settings.veo_max_active_per_user,
            unlimited=is_admin(bot, interaction.user),
            cost=cost.amount,
            cost_unit=cost.unit,
        )
    except (QuotaExceeded, ActiveLimitReached) as err:
        raise UserFacingError(quota_refusal(err)) from None


#: Answer no later than this after Discord created the interaction (it drops answers after 3 s): when the
#: store is slow (a burst of commands), defer first and finish with an edit.
ACK_DEADLINE = 1.5


async def queue_and_announce(
    bot: VeoBot, interaction: discord.Interaction, *, prompt: str, aspect: str, model: str, seeds: list[int]
) -> None:
    """Queue the jobs and answer with the live status message, within Discord's deadline whatever the load."""
    creating = asyncio.ensure_future(
        create_jobs(bot, interaction, prompt=prompt, aspect=aspect, model=model, seeds=seeds)
    )
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


def new_seed(old: int) -> int:
    """A random seed that differs from the one being retried."""
    while (seed := seeds_for(None, 1)[0]) == old:
        pass
    return seed


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"veo:(?P<action>cancel|retry|details):(?P<job>\d+)"
):
    """Per-job buttons that survive restarts: all state is in the custom_id and the store."""

    LABELS: dict[str, tuple[str, discord.ButtonStyle]] = {
        "cancel": ("Cancel", discord.ButtonStyle.danger),
        "retry": ("Retry (new seed)", discord.ButtonStyle.primary),
        "details": ("Details", discord.ButtonStyle.secondary),
    }

    def __init__(self, action: str, job_id: int, *, label_suffix: str = "") -> None:
        label, style = self.LABELS[action]
        super().__init__(
            discord.ui.Button(label=f"{label}{label_suffix}", style=style, custom_id=f"veo:{action}:{job_id}")
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: VeoBot = interaction.client  # type: ignore[assignment]
        try:
            job = await owned_job(bot, interaction, self.job_id, refusal=FOREIGN_CLICK)
            if self.action == "cancel":
                await interaction.response.send_message(await cancel_text(bot, interaction, job), ephemeral=True)
            elif self.action == "details":
                position = await bot.store.queue_position(job.id)
                await interaction.response.send_message(render.details(job, position=position), ephemeral=True)
            else:
                await queue_and_announce(
                    bot, interaction, prompt=job.prompt, aspect=job.aspect, model=job.model, seeds=[new_seed(job.seed)]
                )
        except Exception as err:
            from cogs.errors import report

            await report(interaction, err)


def status_view(jobs: list[Job]) -> discord.ui.View | None:
    """Cancel buttons for the jobs that can still be cancelled."""
    live = [j for j in jobs if j.state in (JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING)]
    if not live:
        return None
    view = discord.ui.View(timeout=None)
    for job in live[:5]:
        view.add_item(JobButton("cancel", job.id, label_suffix=f" #{job.id}" if len(jobs) > 1 else ""))
    return view


def result_view(job: Job) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("retry", job.id))
    view.add_item(JobButton("details", job.id))
    return view


async def cancel_text(bot: VeoBot, interaction: discord.Interaction, job: Job) -> str:
    was = job.state
    cancelled = await bot.worker.cancel(job, actor_id=interaction.user.id)
    if cancelled is None:
        fresh = await bot.store.get_job(job.id) or job
        if fresh.state is JobState.CANCELLED:
            return f"Job `#{job.id}` is already cancelled."
        return (
            f"Too late: job `#{job.id}` is already {fresh.state.value.replace('_', ' ')}, "
            "so it can no longer be cancelled."
        )
    if was is JobState.QUEUED:
        return f"Cancelled job `#{job.id}`. It does not count against your quota."
    return (
        f"Cancelled job `#{job.id}`. Flow has no cancel call, so it may still finish there, "
        "but it will not be posted and does not count against your quota."
    )


class Veo(commands.GroupCog, group_name="veo", group_description="Generate videos with Veo through Google Flow"):
    def __init__(self, bot: VeoBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="prompt", description="Generate a video from a text prompt")
    @app_commands.describe(
        text="What the video should show",
        aspect="Landscape (16:9) or portrait (9:16)",
        model="fast (cheaper) or quality",
        seed="A seed to reproduce a result (random when empty)",
        count="How many videos (1-4)",
    )
    async def prompt(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, 6000],
        aspect: Literal["landscape", "portrait"] = "landscape",
        model: Literal["fast", "quality"] = "fast",
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        count: app_commands.Range[int, 1, 4] = 1,
    ) -> None:
        check_options(aspect, model, seed, count)
        limit = self.bot.settings.veo_max_prompt
        prompt = text.strip()
        if is_blank(prompt):
            raise UserFacingError(
                "Your prompt is empty. Describe the video you want, e.g. `/veo prompt text: a red fox running in snow`."
            )
        if len(prompt) > limit:
            raise UserFacingError(
                f"Your prompt is {len(prompt)} characters; the limit is {limit}. Shorten it and try again."
            )
        await queue_and_announce(
            self.bot, interaction, prompt=prompt, aspect=aspect, model=model, seeds=seeds_for(seed, count)
        )

    @app_commands.command(name="status", description="Your jobs, the queue and your remaining quota")
    @app_commands.describe(job="One job's details (optional)")
    async def status(self, interaction: discord.Interaction, job: int | None = None) -> None:
        store = self.bot.store
        if job is not None:
            found = await owned_job(self.bot, interaction, job)
            position = await store.queue_position(found.id)
            await interaction.response.send_message(render.details(found, position=position), ephemeral=True)
            return
        settings = self.bot.settings
        view = await store.user_overview(
            interaction.user.id,
            daily_quota=settings.veo_daily_quota,
            max_active=settings.veo_max_active_per_user,
            unlimited=is_admin(self.bot, interaction.user),
        )
        paused = await store.kv_get(PAUSE_KEY)
        spend = None
        if self.bot.backend.name == "vertex":
            spend = await store.spend("usd", month_of(self.bot.worker.wall())[1], user_id=interaction.user.id)
        text = render.overview(
            view.jobs,
            positions=view.positions,
            queued=view.queued,
            quota=view.quota,
            typical=statistics.median(view.durations) if view.durations else None,
            concurrency=self.bot.backend.max_concurrent,
            pause=paused,
            spend=spend,
        )
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one of your jobs")
    @app_commands.describe(job="The job id (see /veo status)")
    async def cancel(self, interaction: discord.Interaction, job: int) -> None:
        found = await owned_job(self.bot, interaction, job)
        await interaction.response.send_message(await cancel_text(self.bot, interaction, found), ephemeral=True)

    @status.autocomplete("job")
    @cancel.autocomplete("job")
    async def _job_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        jobs = await self.bot.store.recent_user_jobs(interaction.user.id, current.strip(), 25)
        return [
            app_commands.Choice(name=f"#{j.id} {j.state.value} — {j.prompt[:70]}"[:100], value=j.id) for j in jobs[:25]
        ]


async def setup(bot: VeoBot) -> None:
    bot.add_dynamic_items(JobButton)
    bot.delivery.views = result_view
    bot.delivery.status_views = status_view
    await bot.add_cog(Veo(bot))
