"""`/veo prompt`, `/veo status`, `/veo cancel` and the job buttons.

Thin by design: validate, call the store or the worker, render. The interaction is answered before any
Flow call: the worker picks the jobs up from the store.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.errors import UserFacingError
from bot.messages import failure_text, pause_text
from bot.worker import PAUSE_KEY
from storage import ActiveLimitReached, Job, JobState, QuotaExceeded

if TYPE_CHECKING:
    from bot.app import VeoBot

SEED_MAX = 2_147_483_647
#: Characters that render as nothing; a prompt made only of them is empty.
_INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060-\u2064\ufeff\u00ad]+")


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
        return (
            f"You already have {status.active} videos in progress (the limit is {status.max_active}). "
            "Wait for one to finish, or cancel one with `/veo cancel`."
        )
    when = f" <t:{int(status.resets_at)}:R>" if status.resets_at else " within 24 hours"
    return f"You have used your {status.limit} videos for the last 24 hours. The next one frees up{when}."


async def create_jobs(
    bot: VeoBot, interaction: discord.Interaction, *, prompt: str, aspect: str, model: str, seeds: list[int]
) -> list[Job]:
    """Queue jobs for the interaction's user, or raise a UserFacingError that changes nothing."""
    paused = await bot.store.kv_get(PAUSE_KEY)
    if paused:
        raise UserFacingError(f"The queue is on hold: {pause_text(paused)} Nothing was queued; try again later.")
    if interaction.channel_id is None:
        raise UserFacingError("Use this command in a server channel.")
    try:
        return await bot.store.create_jobs(
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
        )
    except (QuotaExceeded, ActiveLimitReached) as err:
        raise UserFacingError(quota_refusal(err)) from None


async def announce(bot: VeoBot, interaction: discord.Interaction, jobs: list[Job]) -> None:
    """Answer with the live status message and remember its id for later edits."""
    positions = await bot.store.queue_positions()
    response = await interaction.response.send_message(
        render.status_message(jobs, positions=positions),
        view=status_view(jobs),
        allowed_mentions=discord.AllowedMentions.none(),
    )
    message_id = response.message_id
    if message_id is None:
        message_id = (await interaction.original_response()).id
    for job in jobs:
        await bot.store.update_job(job.id, status_message_id=message_id)
    bot.worker.wake()


async def owned_job(bot: VeoBot, interaction: discord.Interaction, job_id: int) -> Job:
    """The job when the user owns it or is an admin; otherwise a refusal that reveals nothing."""
    job = await bot.store.get_job(job_id)
    if job is None or (job.user_id != interaction.user.id and not is_admin(bot, interaction.user)):
        raise UserFacingError(f"You have no job `#{job_id}`. See `/veo status` for yours.")
    return job


def job_details(job: Job, *, position: int | None = None) -> str:
    lines = [
        f"**Job #{job.id}** — {render.job_line(job, position=position)}",
        f"Model: {job.model} · aspect: {job.aspect} · seed: {job.seed}",
        f"Prompt: {render.safe_prompt(job.prompt, 1500)}",
        f"Created <t:{int(job.created_at)}:R>",
    ]
    if job.finished_at:
        lines.append(f"Finished <t:{int(job.finished_at)}:R>")
    if job.state in (JobState.FAILED, JobState.TIMED_OUT):
        lines.append(f"Why: {failure_text(job.error_kind, job.error_message)}")
    return "\n".join(lines)[:2000]


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
            job = await owned_job(bot, interaction, self.job_id)
            if self.action == "cancel":
                await interaction.response.send_message(await cancel_text(bot, interaction, job), ephemeral=True)
            elif self.action == "details":
                position = await bot.store.queue_position(job.id)
                await interaction.response.send_message(job_details(job, position=position), ephemeral=True)
            else:
                jobs = await create_jobs(
                    bot, interaction, prompt=job.prompt, aspect=job.aspect, model=job.model, seeds=seeds_for(None, 1)
                )
                await announce(bot, interaction, jobs)
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
        if job.state is JobState.CANCELLED:
            return f"Job `#{job.id}` is already cancelled."
        return f"Job `#{job.id}` is already {job.state.value.replace('_', ' ')}; it can no longer be cancelled."
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
        limit = self.bot.settings.veo_max_prompt
        prompt = text.strip()
        if not _INVISIBLE.sub("", prompt):
            raise UserFacingError(
                "Your prompt is empty. Describe the video you want, e.g. `/veo prompt text: a red fox running in snow`."
            )
        if len(prompt) > limit:
            raise UserFacingError(
                f"Your prompt is {len(prompt)} characters; the limit is {limit}. Shorten it and try again."
            )
        jobs = await create_jobs(
            self.bot, interaction, prompt=prompt, aspect=aspect, model=model, seeds=seeds_for(seed, count)
        )
        await announce(self.bot, interaction, jobs)

    @app_commands.command(name="status", description="Your jobs, the queue and your remaining quota")
    @app_commands.describe(job="One job's details (optional)")
    async def status(self, interaction: discord.Interaction, job: int | None = None) -> None:
        store = self.bot.store
        if job is not None:
            found = await owned_job(self.bot, interaction, job)
            position = await store.queue_position(found.id)
            await interaction.response.send_message(job_details(found, position=position), ephemeral=True)
            return
        settings = self.bot.settings
        user_id = interaction.user.id
        jobs = await store.user_jobs(user_id, limit=10)
        positions = await store.queue_positions()
        quota = await store.quota_status(
            user_id,
            daily_quota=settings.veo_daily_quota,
            max_active=settings.veo_max_active_per_user,
            unlimited=is_admin(self.bot, interaction.user),
        )
        paused = await store.kv_get(PAUSE_KEY)
        durations = await store.recent_durations(20)
        now = time.time()
        lines = ["**Your Veo jobs**"]
        if not jobs:
            lines.append("No jobs yet. Start one with `/veo prompt`.")
        for j in jobs:
            line = render.job_line(j, position=positions.get(j.id), now=now, pause=paused)
            if j.state is JobState.QUEUED:
                line += f" · waiting {render.duration(now - j.created_at)}"
            lines.append(line)
        lines.append("")
        lines.append(f"Queue: {len(positions)} waiting." + (f" On hold: {pause_text(paused)}" if paused else ""))
        if durations:
            lines.append(f"A video takes about {render.duration(statistics.median(durations))} once started.")
        lines.append(render.quota_line(quota))
        await interaction.response.send_message("\n".join(lines)[:2000], ephemeral=True)

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
    await bot.add_cog(Veo(bot))
