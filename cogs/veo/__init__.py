"""`/veo prompt`, `/veo status`, `/veo cancel` and the job buttons.

Thin by design: validate, call the store or the worker, render. The interaction is answered before any
backend call: the worker picks the jobs up from the store. Split into private modules: option checks
(`_checks`), queueing (`_queue`), buttons and views (`_views`).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.errors import UserFacingError
from bot.worker import PAUSE_KEY
from cogs.veo._checks import SEED_MAX, check_options, is_blank, seeds_for
from cogs.veo._queue import is_admin, owned_job, queue_and_announce
from cogs.veo._views import JobButton, cancel_text, result_view, status_view

if TYPE_CHECKING:
    from bot.app import VeoBot

__all__ = ["JobButton", "Veo", "is_admin", "result_view", "setup", "status_view"]


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
        text = render.overview(
            view.jobs,
            positions=view.positions,
            queued=view.queued,
            quota=view.quota,
            typical=statistics.median(view.durations) if view.durations else None,
            concurrency=settings.flow_max_concurrent,
            pause=paused,
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
    await bot.add_cog(Veo(bot))
