"""Per-job buttons (persistent: all state is in the custom_id and the store) and the views that carry them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord

from bot import render
from cogs.veo._creative import check_inputs_kept, edit_form, extend_spec, spec_from_job
from cogs.veo._options import validated
from cogs.veo._queue import owned_job, queue_and_announce
from storage import UNSUCCESSFUL_STATES, Job, JobState

if TYPE_CHECKING:
    from bot.app import VeoBot

FOREIGN_CLICK = "Only the person who asked for this video, or an admin, can use its buttons. Nothing was changed."


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"veo:(?P<action>cancel|retry|edit|extend|details):(?P<job>\d+)"
):
    """Per-job buttons that survive restarts: all state is in the custom_id and the store."""

    LABELS: dict[str, tuple[str, discord.ButtonStyle]] = {
        "cancel": ("Cancel", discord.ButtonStyle.danger),
        "retry": ("Retry (new seed)", discord.ButtonStyle.primary),
        "edit": ("Edit", discord.ButtonStyle.secondary),
        "extend": ("Extend", discord.ButtonStyle.secondary),
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
            elif self.action == "edit":
                check_inputs_kept(job)
                await interaction.response.send_modal(edit_form(job, bot.settings.veo_max_prompt))
            elif self.action == "extend":
                await queue_and_announce(bot, interaction, validated(bot, await extend_spec(bot, job)))
            else:
                check_inputs_kept(job)
                await queue_and_announce(bot, interaction, validated(bot, spec_from_job(job)))
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


def result_view(job: Job, *, can_extend: bool = True) -> discord.ui.View:
    """Retry, Edit, Extend (results of a backend that can extend) and Details under a result or failure."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("retry", job.id))
    view.add_item(JobButton("edit", job.id))
    if can_extend and job.state not in UNSUCCESSFUL_STATES:
        view.add_item(JobButton("extend", job.id))
    view.add_item(JobButton("details", job.id))
    return view


def result_view_for(bot: VeoBot, job: Job) -> discord.ui.View:
    """The result view, with Extend only when the backend that made the video can extend it."""
    backend = bot.backends.get(job.backend or "") or bot.backend
    return result_view(job, can_extend=backend.can_extend())


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
