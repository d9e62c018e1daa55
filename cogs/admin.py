"""`/veo-admin`: credentials, credits, holding the queue and quota overrides.

Its own top-level command, so Discord's `default_permissions` applies, and our own check of the
configured admin ids on every call, because server admins can override Discord's defaults.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.backends.errors import BackendError
from bot.backends.flow import errors as fe
from bot.backends.flow.redact import mask_email
from bot.errors import NotAdmin, UserFacingError
from bot.messages import BACKEND_NAMES, backend_error_text, flow_error_text
from bot.worker import month_of
from cogs.veo import is_admin

if TYPE_CHECKING:
    from bot.app import VeoBot

log = logging.getLogger(__name__)

MAX_UPLOAD = 1024 * 1024


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Admin(commands.GroupCog, group_name="veo-admin", group_description="Veo bot administration"):
    def __init__(self, bot: VeoBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        if not is_admin(self.bot, interaction.user):
            log.warning(
                "refused /veo-admin for user %s (not in VEO_ADMIN_USER_IDS / VEO_ADMIN_ROLE_IDS)", interaction.user.id
            )
            raise NotAdmin()
        return True

    async def _log(self, interaction: discord.Interaction, kind: str, detail: str = "") -> None:
        await self.bot.store.log_event(f"admin_{kind}", actor_id=interaction.user.id, detail=detail)

    async def _account_summary(self) -> str:
        if self.bot.backend.name == "vertex":
            return await self._spend_summary()
        creds, flow = self.bot.credentials, self.bot.flow
        if creds is None or flow is None:
            return "Flow is not configured."
        lines = [f"Account: {mask_email(creds.account_email)}"]
        try:
            credits = await flow.credits()
            lines.append(f"Tier: {credits.tier} · credits: {credits.credits}")
        except fe.FlowError as err:
            lines.append(f"Credits unavailable: {flow_error_text(err)}")
        if creds.expires_at:
            lines.append(f"Token expires <t:{int(creds.expires_at)}:R>")
        return "\n".join(lines)

    async def _spend_summary(self) -> str:
        """Vertex AI: estimated spend today and this month (UTC) against the budget."""
        store, wall = self.bot.store, self.bot.worker.wall()
        _month, month_start = month_of(wall)
        day_start = wall - wall % 86400
        today = await store.spend("usd", day_start, submitted_only=True)
        month = await store.spend("usd", month_start, submitted_only=True)
        budget = self.bot.settings.veo_monthly_budget_usd
        lines = [
            f"Backend: Veo on Vertex AI ({self.bot.settings.google_cloud_project}, "
            f"{self.bot.settings.google_cloud_location})",
            f"Estimated spend today: ${today:.2f} · this month: ${month:.2f}"
            + (f" of ${budget:.2f} ({month / budget:.0%})" if budget else " (no monthly budget set)"),
            "-# Estimates from the price table; Google's bill is the authority.",
        ]
        return "\n".join(lines)

    @app_commands.command(
        name="reload", description="Reload credentials (Flow: optionally from an uploaded cookie export)"
    )
    @app_commands.describe(file="A new cookie.json export with the authorization entry")
    async def reload(self, interaction: discord.Interaction, file: discord.Attachment | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self.bot.credentials is None:
            await self._reload_vertex(interaction, file)
            return
        try:
            if file is not None:
                if file.size > MAX_UPLOAD:
                    await self._log(interaction, "reload_refused", "too large")
                    raise UserFacingError(
                        "That file is over 1 MiB; a cookie export is much smaller. Nothing was changed."
                    )
                data = await file.read()
                await self.bot.credentials.replace(data)
            else:
                await self.bot.credentials.reload()
        except fe.FlowError as err:
            # validated in full before anything is replaced: the cookie file and the live token are untouched
            await self._log(interaction, "reload_refused", type(err).__name__)
            raise UserFacingError(f"{flow_error_text(err)} Nothing was changed.") from None
        await self._log(interaction, "reload", "upload" if file else "file")
        resumed = ""
        if await self.bot.worker.paused() in ("cookies", "verification", "migrated"):
            await self.bot.worker.resume(actor_id=interaction.user.id)
            resumed = "\nThe queue was on hold for credentials and has been resumed."
        summary = await self._account_summary()
        await interaction.followup.send(f"Credentials reloaded.\n{summary}{resumed}", ephemeral=True)

    async def _reload_vertex(self, interaction: discord.Interaction, file: discord.Attachment | None) -> None:
        """Vertex AI credentials are re-read from disk and checked; they are never uploaded through Discord."""
        if file is not None:
            raise UserFacingError(
                "Vertex AI credentials are never uploaded through Discord: update the key file or GOOGLE_API_KEY on "
                "the server, then run `/veo-admin reload` without a file. Nothing was changed."
            )
        backend = self.bot.backend
        reread = getattr(backend, "reload", None)
        try:
            if reread is not None:
                await reread()
            await backend.check()
        except BackendError as err:
            await self._log(interaction, "reload_refused", type(err).__name__)
            raise UserFacingError(f"{backend_error_text(err)} Nothing was changed.") from None
        await self._log(interaction, "reload", "vertex")
        resumed = ""
        if await self.bot.worker.paused() == "vertex_auth":
            await self.bot.worker.resume(actor_id=interaction.user.id)
            resumed = "\nThe queue was on hold for credentials and has been resumed."
        await interaction.followup.send(f"Vertex AI credentials work.{resumed}", ephemeral=True)

    @app_commands.command(name="credits", description="Show credits (Flow) or estimated spend (Vertex AI)")
    async def credits(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._log(interaction, "credits")
        stats = await self.bot.store.stats()
        paused = await self.bot.worker.paused()
        summary = await self._account_summary()
        queue = ", ".join(f"{k}: {v}" for k, v in sorted(stats.items()) if v)
        await interaction.followup.send(
            f"{summary}\nJobs: {queue or 'none'}\nQueue: {'on hold (' + paused + ')' if paused else 'running'}",
            ephemeral=True,
        )

    @app_commands.command(name="pause", description="Hold the queue: nothing new is sent to the video service")
    async def pause(self, interaction: discord.Interaction) -> None:
        changed = await self.bot.worker.pause("admin", actor_id=interaction.user.id)
        await self._log(interaction, "pause")
        where = BACKEND_NAMES.get(self.bot.backend.name, "the video service")
        await interaction.response.send_message(
            f"Queue paused. Jobs already at {where} finish and are posted; queued jobs wait."
            if changed
            else "The queue is already on hold.",
            ephemeral=True,
        )

    @app_commands.command(name="resume", description="Release the queue")
    async def resume(self, interaction: discord.Interaction) -> None:
        changed = await self.bot.worker.resume(actor_id=interaction.user.id)
        await self._log(interaction, "resume")
        await interaction.response.send_message(
            "Queue resumed." if changed else "The queue was not on hold.", ephemeral=True
        )

    @app_commands.command(name="quota", description="Set a user's daily video quota")
    @app_commands.describe(user="Whose quota", daily="Videos per 24 h (-1 restores the default)")
    async def quota(
        self, interaction: discord.Interaction, user: discord.User, daily: app_commands.Range[int, -1, 1000]
    ) -> None:
        if not -1 <= daily <= 1000:
            raise UserFacingError("`daily` must be 0 to 1000, or -1 to restore the default. Nothing was changed.")
        value = None if daily < 0 else daily
        await self.bot.store.set_quota_override(user.id, value, actor_id=interaction.user.id)
        await self._log(interaction, "quota", f"user={user.id} daily={value}")
        text = (
            f"{user.mention} is back to the default quota ({self.bot.settings.veo_daily_quota} per 24 h)."
            if value is None
            else f"{user.mention} can now make {value} videos per 24 h."
        )
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: VeoBot) -> None:
    await bot.add_cog(Admin(bot))
