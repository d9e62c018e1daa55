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

from bot.backends.flow import errors as fe
from bot.backends.flow.redact import mask_email
from bot.errors import NotAdmin, UserFacingError
from bot.messages import flow_error_text
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
        creds = self.bot.credentials
        lines = [f"Account: {mask_email(creds.account_email)}"]
        try:
            credits = await self.bot.flow.credits()
            lines.append(f"Tier: {credits.tier} · credits: {credits.credits}")
        except fe.FlowError as err:
            lines.append(f"Credits unavailable: {flow_error_text(err)}")
        if creds.expires_at:
            lines.append(f"Token expires <t:{int(creds.expires_at)}:R>")
        return "\n".join(lines)

    @app_commands.command(
        name="reload", description="Reload Flow credentials (optionally from an uploaded cookie export)"
    )
    @app_commands.describe(file="A new cookie.json export with the authorization entry")
    async def reload(self, interaction: discord.Interaction, file: discord.Attachment | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
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
        if await self.bot.worker.paused() in ("cookies", "verification"):
            await self.bot.worker.resume(actor_id=interaction.user.id)
            resumed = "\nThe queue was on hold for credentials and has been resumed."
        summary = await self._account_summary()
        await interaction.followup.send(f"Credentials reloaded.\n{summary}{resumed}", ephemeral=True)

    @app_commands.command(name="credits", description="Show the Flow account's tier and credits")
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

    @app_commands.command(name="pause", description="Hold the queue: nothing new is sent to Flow")
    async def pause(self, interaction: discord.Interaction) -> None:
        changed = await self.bot.worker.pause("admin", actor_id=interaction.user.id)
        await self._log(interaction, "pause")
        await interaction.response.send_message(
            "Queue paused. Jobs already at Flow finish and are posted; queued jobs wait."
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
