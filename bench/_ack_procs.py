"""The processes `bench/ack.py` runs beside the bot: the Flow emulator, and the floor bot.

    python bench/_ack_procs.py flow COOKIE_PATH   # prints {"api_base": ..., "labs_base": ...}, runs until stdin closes
    python bench/_ack_procs.py floor   # env: DISCORD_TOKEN, DISCORD_API_BASE, DISCORD_GATEWAY_URL, DISCORD_GUILD_ID

The floor is a discord.py bot that does nothing: it declares `/veo prompt` exactly as `cogs/veo.py` does (same
group, options, types, ranges and choices, so discord.py parses and transforms the same payload) and answers at
once. It has the bot's intents and `guild_ready_timeout`, so the gateway traffic it handles is the same too.
Whatever it costs is what discord.py, aiohttp and this machine cost per interaction: the floor no bot can beat.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Literal

import discord
import yarl
from discord import app_commands
from discord.ext import commands

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED_MAX = 2_147_483_647
READY_LINE = "floor ready"


class FloorVeo(commands.GroupCog, group_name="veo", group_description="Generate videos with Veo through Google Flow"):
    """`/veo prompt` with the real command's signature; the handler answers without doing anything."""

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
        await interaction.response.send_message(f"Got it: {text[:100]}")


class FloorBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            guild_ready_timeout=0.5,
        )
        self.guild_id = guild_id

    async def setup_hook(self) -> None:
        await self.add_cog(FloorVeo())
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        print(READY_LINE, file=sys.stderr, flush=True)


def run_floor() -> None:
    api_base = os.environ["DISCORD_API_BASE"]
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
    bot = FloorBot(int(os.environ["DISCORD_GUILD_ID"]))
    bot.run(os.environ["DISCORD_TOKEN"], log_handler=None)


async def serve_flow(cookie: Path) -> None:
    from tests.fakes.flow_emulator import FlowEmulator

    async with FlowEmulator(video_size=4096) as emu:
        emu.credits = 10**12
        emu.write_cookie_file(cookie)
        print(json.dumps({"api_base": emu.api_base, "labs_base": emu.labs_base}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "flow":
        asyncio.run(serve_flow(Path(sys.argv[2])))
    elif role == "floor":
        run_floor()
    else:
        sys.exit(f"usage: {sys.argv[0]} flow COOKIE_PATH | floor")
