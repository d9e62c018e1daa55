"""Proves the fake Discord's context menus, user attachments and modals with a tiny real discord.py bot."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_server import FakeDiscord, run_bot

USER = 1200000000000000001
PNG = b"\x89PNG\r\n\x1a\n" + b"fake-png-bytes" * 10


class AnimateModal(discord.ui.Modal, title="Animate with Veo"):
    prompt: discord.ui.Label[Any] = discord.ui.Label(
        text="Prompt", component=discord.ui.TextInput(custom_id="prompt", max_length=200)
    )
    aspect: discord.ui.Label[Any] = discord.ui.Label(
        text="Aspect",
        component=discord.ui.Select(
            custom_id="aspect",
            options=[
                discord.SelectOption(label="Landscape", value="landscape", default=True),
                discord.SelectOption(label="Portrait", value="portrait"),
            ],
            required=False,
        ),
    )

    def __init__(self, bot: CreativeBot, url: str) -> None:
        super().__init__(custom_id="animate:1")
        self.bot = bot
        self.url = url

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.prompt.component, discord.ui.TextInput)
        assert isinstance(self.aspect.component, discord.ui.Select)
        self.bot.record("animate", (self.prompt.component.value, list(self.aspect.component.values), self.url))
        await interaction.response.send_message("queued", ephemeral=True)


class EditModal(discord.ui.Modal, title="Edit and retry"):
    def __init__(self, bot: CreativeBot, job: int, prompt: str) -> None:
        super().__init__(custom_id=f"edit:{job}")
        self.bot = bot
        self.text: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Prompt", custom_id="text", default=prompt, style=discord.TextStyle.paragraph
        )
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        message_id = interaction.message.id if interaction.message else None
        self.bot.record("edit", (self.text.value, message_id))
        await interaction.response.send_message("edited", ephemeral=True)


class EditButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"t:edit:(?P<job>\d+)"):
    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Edit", custom_id=f"t:edit:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> EditButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: CreativeBot = interaction.client  # type: ignore[assignment]
        await interaction.response.send_modal(EditModal(bot, self.job, "a red fox"))


class CreativeBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents(guilds=True))
        self.guild_id = guild_id
        self.seen: dict[str, Any] = {}
        self.changed = asyncio.Event()

    def record(self, key: str, value: Any) -> None:
        self.seen[key] = value
        self.changed.set()

    async def wait_seen(self, key: str) -> Any:
        async with asyncio.timeout(5):
            while key not in self.seen:
                self.changed.clear()
                await self.changed.wait()
        return self.seen[key]

    async def setup_hook(self) -> None:
        async def animate(interaction: discord.Interaction, message: discord.Message) -> None:
            images = [a for a in message.attachments if (a.content_type or "").startswith("image/")]
            if not images:
                await interaction.response.send_message("no image", ephemeral=True)
                return
            await interaction.response.send_modal(AnimateModal(self, images[0].url))

        self.tree.add_command(app_commands.ContextMenu(name="Animate with Veo", callback=animate))
        self.add_dynamic_items(EditButton)
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fd:
        yield fd
    assert fd.unknown_routes == []


@contextlib.asynccontextmanager
async def creative_bot(fake: FakeDiscord) -> AsyncIterator[CreativeBot]:
    async with run_bot(CreativeBot(fake.guild_id), fake) as bot:
        yield bot  # type: ignore[misc]


async def test_message_menu_opens_a_modal_whose_submit_reaches_the_bot(fake: FakeDiscord) -> None:
    async with creative_bot(fake) as bot:
        synced = fake.commands[str(fake.guild_id)]
        assert {"name": "Animate with Veo", "type": 3}.items() <= synced[0].items()
        msg = fake.post_user_message("my cat", attachments=[("cat.png", PNG, "image/png")], user_id=USER)
        i = await fake.send_message_command("Animate with Veo", msg.id, user_id=USER)
        assert (await fake.wait_callback(i))["type"] == 9
        modal = fake.modal_of(i)
        assert modal["title"] == "Animate with Veo"
        with pytest.raises(ValueError, match="not among its options"):
            await fake.submit_modal(i, {"prompt": "x", "aspect": "square"})
        with pytest.raises(ValueError, match="required"):
            await fake.submit_modal(i, {"prompt": ""})
        with pytest.raises(ValueError, match="no input"):
            await fake.submit_modal(i, {"nope": "x"})
        s = await fake.submit_modal(i, {"prompt": "it walks", "aspect": "portrait"})
        assert s.type == 5 and s.user_id == USER
        prompt, aspect, url = await bot.wait_seen("animate")
        assert (prompt, aspect) == ("it walks", ["portrait"])
        assert (await fake.wait_callback(s))["data"]["flags"] == 64
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert await resp.read() == PNG
        fake.forget_file(msg.files[0].id)
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 404


async def test_message_menu_on_a_message_without_an_image(fake: FakeDiscord) -> None:
    async with creative_bot(fake):
        msg = fake.post_user_message("just words", user_id=USER)
        i = await fake.send_message_command("Animate with Veo", msg.id, user_id=USER)
        assert (await fake.wait_callback(i))["data"]["content"] == "no image"
        with pytest.raises(ValueError, match="no context menu command"):
            await fake.send_message_command("Nope", msg.id)


async def test_button_modal_is_prefilled_and_carries_the_message(fake: FakeDiscord) -> None:
    async with creative_bot(fake) as bot:
        channel = bot.get_partial_messageable(fake.channel_id)
        view = discord.ui.View(timeout=None)
        view.add_item(EditButton(7))
        sent = await channel.send("result", view=view)
        click = await fake.send_component("t:edit:7", user_id=USER)
        await fake.wait_callback(click)
        modal = fake.modal_of(click)
        row = modal["components"][0]
        assert row["type"] == 1 and row["components"][0]["value"] == "a red fox"
        s = await fake.submit_modal(click, {})  # unchanged prefilled value
        assert await bot.wait_seen("edit") == ("a red fox", sent.id)
        bot.seen.clear()
        click = await fake.send_component("t:edit:7", user_id=USER)
        await fake.wait_callback(click)
        await fake.submit_modal(click, {"text": "a blue fox"})
        assert (await bot.wait_seen("edit"))[0] == "a blue fox"
        assert s.payload["message"]["id"] == str(sent.id)


def test_context_menu_names_may_have_spaces_but_slash_names_may_not() -> None:
    from tests.fakes._discord_commands import validate_commands
    from tests.fakes._discord_models import DiscordError

    validate_commands([{"name": "Animate with Veo", "type": 3}])
    with pytest.raises(DiscordError):
        validate_commands([{"name": "Animate with Veo", "type": 1, "description": "x"}])
    with pytest.raises(DiscordError):
        validate_commands([{"name": "x" * 33, "type": 3}])
