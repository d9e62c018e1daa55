"""`/veo prompt`, `/veo status`, `/veo cancel` and the job buttons.

Thin by design: validate, call the store or the worker, render. The interaction is answered before any
backend call: the worker picks the jobs up from the store. Split into private modules: option checks
(`_checks`), queueing (`_queue`), buttons and views (`_views`).
"""

from __future__ import annotations

import functools
import re
import statistics
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.errors import UserFacingError
from bot.images import MAX_IMAGE_BYTES, ImageRefused
from bot.worker import PAUSE_KEY, month_of
from cogs.errors import report
from cogs.veo._checks import SEED_MAX, check_negative, check_options, check_prompt, seeds_for
from cogs.veo._creative import (
    AnimateDownloads,
    animate_form,
    animate_spec,
    check_inputs_kept,
    edited_spec,
    form_values,
    message_image,
)
from cogs.veo._options import WHAT, JobSpec, discard, validated
from cogs.veo._queue import is_admin, owned_job, queue_and_announce
from cogs.veo._views import FOREIGN_CLICK, JobButton, cancel_text, result_view, result_view_for, status_view
from storage import JobOptions

if TYPE_CHECKING:
    from bot.app import VeoBot

__all__ = ["JobButton", "Veo", "is_admin", "result_view", "setup", "status_view"]

ANIMATE_MENU = "Animate with Veo"
FORM_ID = re.compile(r"veo:(?P<kind>edit|animate):(?P<key>\w+)")


class Veo(commands.GroupCog, group_name="veo", group_description="Generate videos with Veo"):
    def __init__(self, bot: VeoBot) -> None:
        self.bot = bot
        self.animations = AnimateDownloads(bot)
        self.animate_menu = app_commands.ContextMenu(name=ANIMATE_MENU, callback=self.animate)
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.animate_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.animate_menu.name, type=self.animate_menu.type)
        self.animations.close()

    @app_commands.command(name="prompt", description="Generate a video from a prompt, optionally from images")
    @app_commands.describe(
        text="What the video should show",
        aspect="Landscape (16:9) or portrait (9:16)",
        model="fast, quality or lite (cheapest)",
        seed="A seed to reproduce a result (random when empty)",
        count="How many videos (1-4)",
        image="First frame: the video starts from this picture",
        last_frame="Last frame: the video ends on this picture (needs image)",
        reference1="A subject to keep (person, object, style)",
        reference2="Another subject reference",
        reference3="Another subject reference",
        negative="What to avoid (up to 500 characters)",
        duration="Length in seconds",
        resolution="720p, 1080p or 4k",
        audio="Generate sound (default on)",
    )
    async def prompt(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, 6000],
        aspect: Literal["landscape", "portrait"] = "landscape",
        model: Literal["fast", "quality", "lite"] = "fast",
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        count: app_commands.Range[int, 1, 4] = 1,
        image: discord.Attachment | None = None,
        last_frame: discord.Attachment | None = None,
        reference1: discord.Attachment | None = None,
        reference2: discord.Attachment | None = None,
        reference3: discord.Attachment | None = None,
        negative: app_commands.Range[str, 1, 6000] | None = None,
        duration: Literal[4, 6, 8] = 8,
        resolution: Literal["720p", "1080p", "4k"] = "720p",
        audio: bool = True,
    ) -> None:
        check_options(aspect, model, seed, count, duration, resolution)
        attachments = {
            "image": image,
            "last_frame": last_frame,
            "reference1": reference1,
            "reference2": reference2,
            "reference3": reference3,
        }
        uploads = {role: a for role, a in attachments.items() if a is not None}
        for role, attachment in uploads.items():
            if attachment.size > MAX_IMAGE_BYTES:  # Discord's word, checked again while downloading
                raise UserFacingError(ImageRefused("too_large", WHAT[role]).message)
        spec = JobSpec(
            prompt=check_prompt(text, self.bot.settings.veo_max_prompt),
            aspect=aspect,
            model=model,
            seeds=seeds_for(seed, count),
            options=JobOptions(
                duration=duration, resolution=resolution, audio=audio, negative_prompt=check_negative(negative)
            ),
            uploads={role: a.url for role, a in uploads.items()},
        )
        await queue_and_announce(self.bot, interaction, validated(self.bot, spec))

    async def animate(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Message menu: open a form for the prompt while the message's picture downloads."""
        attachment = message_image(message)
        if attachment is None:
            raise UserFacingError("That message has no picture; use Animate with Veo on a message with an image.")
        if attachment.size > MAX_IMAGE_BYTES:
            raise UserFacingError(ImageRefused("too_large", "The picture in that message").message)
        # The backend's table decides first: a backend without image-to-video refuses before any download.
        validated(self.bot, JobSpec(prompt="-", aspect="landscape", model="fast", seeds=[1], uploads={"image": "-"}))
        token = self.animations.start(attachment.url)
        await interaction.response.send_modal(animate_form(token, self.bot.settings.veo_max_prompt))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Answer our forms' submits, whether or not the bot restarted since the form was opened."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        match = FORM_ID.fullmatch(str((interaction.data or {}).get("custom_id", "")))
        if match is None:
            return
        try:
            values = form_values(interaction)
            limit = self.bot.settings.veo_max_prompt
            if match["kind"] == "edit":
                job = await owned_job(self.bot, interaction, int(match["key"]), refusal=FOREIGN_CLICK)
                check_inputs_kept(job)
                spec = edited_spec(job, values, limit)
            else:
                spec = animate_spec(await self.animations.take(match["key"]), values, limit)
            await queue_and_announce(self.bot, interaction, validated(self.bot, spec))
        except Exception as err:
            if match["kind"] == "animate" and isinstance(err, UserFacingError | ImageRefused):
                discard(str(p) for p in self.animations.folder.glob(f"animate-{match['key']}.*"))
            await report(interaction, UserFacingError(err.message) if isinstance(err, ImageRefused) else err)

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
    bot.delivery.views = functools.partial(result_view_for, bot)
    bot.delivery.status_views = status_view
    await bot.add_cog(Veo(bot))
