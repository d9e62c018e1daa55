"""Exceptions that carry a message meant for the user who ran a command."""

from __future__ import annotations

from discord import app_commands


class UserFacingError(app_commands.AppCommandError):
    """A refusal: shown ephemerally as-is, changes nothing, not logged as an error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAdmin(app_commands.CheckFailure):
    """The user is not in VEO_ADMIN_USER_IDS / VEO_ADMIN_ROLE_IDS."""
