"""The bot's features, one cog each, loaded from this explicit list."""

from __future__ import annotations

EXTENSIONS: tuple[str, ...] = ("cogs.errors", "cogs.jobs", "cogs.veo", "cogs.admin")
