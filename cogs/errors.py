"""The one place that turns an exception into what the user sees.

Refusals (`UserFacingError`) are shown as they are; Flow errors get their wording from `bot.messages`;
anything unexpected is logged with its traceback and the user gets an apology with a short error id
that matches the log line. Always ephemeral, never a traceback or upstream text.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.backends.errors import BackendError
from bot.errors import NotAdmin, UserFacingError
from bot.messages import backend_error_text

if TYPE_CHECKING:
    from bot.app import VeoBot

log = logging.getLogger(__name__)


def user_text(error: BaseException) -> tuple[str, str | None]:
    """The message for the user, and an error id when the error was unexpected (and must be logged)."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    match error:
        case UserFacingError():
            return error.message, None
        case NotAdmin():
            return "Only the bot's admins can use this command.", None
        case app_commands.TransformerError():
            return "One of the options has a value this command does not accept. Check it and try again.", None
        case app_commands.CommandOnCooldown():
            return f"Slow down: try again in {error.retry_after:.0f}s.", None
        case app_commands.BotMissingPermissions():
            missing = ", ".join(p.replace("_", " ") for p in error.missing_permissions)
            return (
                f"The bot is missing permissions in this channel ({missing}). Ask a server admin to grant them.",
                None,
            )
        case app_commands.NoPrivateMessage():
            return "Use this command in a server channel.", None
        case app_commands.CheckFailure():
            return "You are not allowed to use this command here.", None
        case app_commands.CommandNotFound() | app_commands.CommandSignatureMismatch():
            return "This command is out of date. Please try again in a minute.", None
        case BackendError():
            return backend_error_text(error), None
    error_id = secrets.token_hex(4)
    return f"Sorry, something went wrong on our side (error id `{error_id}`). The admins can look it up.", error_id


async def report(interaction: discord.Interaction, error: BaseException) -> None:
    """Answer the interaction with the mapped text, ephemerally; log the unexpected."""
    text, error_id = user_text(error)
    if error_id is not None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        command = interaction.command.qualified_name if interaction.command else interaction.data.get("custom_id", "?")  # type: ignore[union-attr]
        log.error("unexpected error %s in %s", error_id, command, exc_info=original)
    if interaction.type is discord.InteractionType.autocomplete:
        return  # an autocomplete can only answer with choices; Discord shows its own "loading failed"
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as err:
        log.warning("could not send an error reply: %s", err.status)


class Errors(commands.Cog):
    """Installs `report` as the command tree's error handler."""

    def __init__(self, bot: VeoBot) -> None:
        self.bot = bot
        self._previous = bot.tree.on_error

    async def cog_load(self) -> None:
        self.bot.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def cog_unload(self) -> None:
        self.bot.tree.on_error = self._previous  # type: ignore[method-assign]

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await report(interaction, error)


async def setup(bot: VeoBot) -> None:
    await bot.add_cog(Errors(bot))
