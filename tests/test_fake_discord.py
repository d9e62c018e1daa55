"""Proves the fake Discord by driving a tiny real discord.py bot (not our bot) against it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_server import FakeClock, FakeDiscord, run_bot

MIB = 1024 * 1024
REQUESTER = 1200000000000000001
ADMIN_ROLE = 1200000000000000009


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"veo:(?P<action>\w+):(?P<job>\d+)"):
    """A per-job button that survives restarts: its state lives in the custom_id only."""

    def __init__(self, action: str, job: int) -> None:
        super().__init__(discord.ui.Button(label=action.title(), custom_id=f"veo:{action}:{job}"))
        self.action = action
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        if self.action == "retry":
            await interaction.response.edit_message(content=f"retrying {self.job}", view=None)
        else:
            await interaction.response.send_message(f"{self.action} {self.job}", ephemeral=True)


def build_veo_group(bot: TinyBot) -> app_commands.Group:
    veo = app_commands.Group(name="veo", description="Generate videos")

    @veo.command(name="prompt", description="Queue a video")
    async def prompt(
        interaction: discord.Interaction,
        text: str,
        count: app_commands.Range[int, 1, 4] = 1,
        aspect: Literal["landscape", "portrait"] = "landscape",
    ) -> None:
        bot.record("prompt", (text, count, aspect))
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"queued {text!r} x{count}")
        await interaction.edit_original_response(content=f"queued {count} job(s)")
        original = await interaction.original_response()
        bot.record("original_content", original.content)

    @veo.command(name="hello", description="Ephemeral reply")
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("only you can see this", ephemeral=True)

    @veo.command(name="later", description="Defer and hand the interaction to the test")
    async def later(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        bot.captured.set_result(interaction)

    @veo.command(name="status", description="Show a job")
    async def status(interaction: discord.Interaction, job: str) -> None:
        await interaction.response.send_message(f"job {job}", ephemeral=True)

    @status.autocomplete("job")
    async def status_job(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f"job {j}", value=str(j)) for j in (12, 120, 7) if str(j).startswith(current)]

    return veo


def build_admin_group(bot: TinyBot) -> app_commands.Group:
    admin = app_commands.Group(
        name="veo-admin", description="Admin", default_permissions=discord.Permissions(manage_guild=True)
    )

    @admin.command(name="reload", description="Upload a cookie export")
    async def reload(interaction: discord.Interaction, file: discord.Attachment) -> None:
        data = await file.read()
        roles = [r.id for r in interaction.user.roles if not r.is_default()]
        bot.record("upload", (file.filename, data, interaction.user.id, roles))
        await interaction.response.send_message(f"read {len(data)} bytes", ephemeral=True)

    return admin


class TinyBot(commands.Bot):
    """Guilds intent only, no message content; syncs to the fake's guild, globally, or not at all."""

    def __init__(self, *, sync: Literal["guild", "global", "none"] = "guild", guild_id: int = 0) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents(guilds=True),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.sync_mode = sync
        self.sync_guild_id = guild_id
        self.seen: dict[str, Any] = {}
        self.seen_changed = asyncio.Event()
        self.captured: asyncio.Future[discord.Interaction] = asyncio.get_running_loop().create_future()
        self.resumed = asyncio.Event()
        self.guild_updated = asyncio.Event()

    def record(self, key: str, value: Any) -> None:
        self.seen[key] = value
        self.seen_changed.set()

    async def wait_seen(self, key: str, timeout: float = 5) -> Any:
        """Bot-side state does not wake the fake's waiters, so the bot signals its own."""
        async with asyncio.timeout(timeout):
            while key not in self.seen:
                self.seen_changed.clear()
                await self.seen_changed.wait()
        return self.seen[key]

    async def setup_hook(self) -> None:
        self.tree.add_command(build_veo_group(self))
        self.tree.add_command(build_admin_group(self))
        self.add_dynamic_items(JobButton)
        if self.sync_mode == "guild":
            guild = discord.Object(self.sync_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        elif self.sync_mode == "global":
            await self.tree.sync()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY by default; the fake has no identify rate limit."""

    async def on_resumed(self) -> None:
        self.resumed.set()

    async def on_guild_update(self, before: discord.Guild, after: discord.Guild) -> None:
        self.guild_updated.set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(clock=clock) as fd:
        yield fd
    assert fd.unknown_routes == []


@contextlib.asynccontextmanager
async def tiny_bot(fake: FakeDiscord, **kwargs: Any) -> AsyncIterator[TinyBot]:
    bot = TinyBot(guild_id=fake.guild_id, **kwargs)
    async with run_bot(bot, fake):
        yield bot


async def test_login_ready_and_guild_cache(fake: FakeDiscord) -> None:
    fake.add_channel(1300000000000000001, name="videos")
    fake.add_role(ADMIN_ROLE, "veo-admins", permissions="32")
    old_base = discord.http.Route.BASE
    async with tiny_bot(fake, sync="none") as bot:
        await fake.wait_ready()
        assert fake.api_base == discord.http.Route.BASE
        assert bot.user is not None
        assert bot.user.id == fake.bot_user_id
        assert bot.application_id == fake.app_id
        guild = bot.get_guild(fake.guild_id)
        assert guild is not None
        assert not guild.unavailable
        assert {c.name for c in guild.text_channels} == {"general", "videos"}
        assert guild.get_role(ADMIN_ROLE) is not None
        assert guild.get_role(ADMIN_ROLE).permissions.manage_guild
        assert guild.filesize_limit == 10 * MIB
        # discord.py heartbeats right after HELLO; the fake's op 11 is queued before READY, so it is processed.
        assert fake.heartbeat_count >= 1
        assert bot.latency != float("inf")
        assert fake.identify_count == 1
        assert fake.resume_count == 0
        assert fake.intents == discord.Intents(guilds=True).value
        assert "token" not in fake.identify_payloads[0]
        assert fake.gateway_connects[0][0] == "/gateway"
        assert fake.gateway_connects[0][1]["v"] == "10"
        assert [r.path for r in fake.request_records] == ["/users/@me", "/oauth2/applications/@me"]
        assert all(r.authorized for r in fake.request_records)
    assert old_base == discord.http.Route.BASE  # run_bot restored the globals
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"


async def test_command_sync_guild_and_global(fake: FakeDiscord) -> None:
    async with tiny_bot(fake, sync="guild") as bot:
        scope = str(fake.guild_id)
        veo = next(c for c in fake.commands[scope] if c["name"] == "veo")
        prompt = next(o for o in veo["options"] if o["name"] == "prompt")
        assert prompt["type"] == 1
        opts = {o["name"]: o for o in prompt["options"]}
        assert opts["text"]["type"] == 3
        assert opts["text"]["required"] is True
        assert (opts["count"]["type"], opts["count"]["min_value"], opts["count"]["max_value"]) == (4, 1, 4)
        assert [c["value"] for c in opts["aspect"]["choices"]] == ["landscape", "portrait"]
        admin = next(c for c in fake.commands[scope] if c["name"] == "veo-admin")
        assert str(admin["default_member_permissions"]) == "32"  # raw payload: discord.py sends an int
        assert "global" not in fake.commands

        synced = await bot.tree.sync()
        assert {c.name for c in synced} == {"veo", "veo-admin"}
        assert all(c.id for c in synced)
        assert fake.sync_calls == 2
        fetched = await bot.tree.fetch_commands()
        assert {c.id for c in fetched} == {c.id for c in synced}  # ids stay stable per name

        # One bad command (26 choices) makes the whole bulk overwrite fail, and nothing is replaced.
        bad = app_commands.Command(name="bad", description="too many choices", callback=_bad_callback)
        bad._params["pick"].choices = [app_commands.Choice(name=str(i), value=str(i)) for i in range(26)]
        bot.tree.add_command(bad)
        with pytest.raises(app_commands.CommandSyncFailure) as info:
            await bot.tree.sync()
        assert info.value.status == 400
        assert info.value.code == 50035
        assert {c["name"] for c in fake.commands["global"]} == {"veo", "veo-admin"}
        assert fake.sync_calls == 2


async def _bad_callback(interaction: discord.Interaction, pick: str) -> None:
    raise AssertionError("never invoked")


async def test_slash_command_defer_followup_edit_original(fake: FakeDiscord) -> None:
    async with tiny_bot(fake) as bot:
        i = await fake.send_command("veo", subcommand="prompt", options={"text": "a cat", "count": 2})
        cb = await fake.wait_callback(i)
        assert cb == {"type": 5}
        await bot.wait_seen("original_content")
        assert bot.seen["prompt"] == ("a cat", 2, "landscape")  # typed from the synced definition
        options = i.payload["data"]["options"][0]
        assert options["type"] == 1
        assert options["name"] == "prompt"
        assert {o["name"]: o["type"] for o in options["options"]} == {"text": 3, "count": 4}
        assert i.dispatched_at is not None
        assert i.callback_at is not None
        assert i.callback_at >= i.dispatched_at
        assert [m.content for m in fake.followups] == ["queued 'a cat' x2"]
        assert [e["content"] for e in fake.original_edits] == ["queued 2 job(s)"]
        assert bot.seen["original_content"] == "queued 2 job(s)"
        assert i.original is not None
        assert i.original.content == "queued 2 job(s)"
        assert fake.messages == []  # nothing went through the bot-token channel route


async def test_ephemeral_reply(fake: FakeDiscord) -> None:
    async with tiny_bot(fake):
        i = await fake.send_command("veo", subcommand="hello")
        cb = await fake.wait_callback(i)
        assert cb["type"] == 4
        assert cb["data"]["content"] == "only you can see this"
        assert cb["data"]["flags"] & 64
        assert i.original is not None
        assert i.original.ephemeral
        assert fake.channel_messages() == []  # ephemeral messages are not in the channel history


async def test_channel_message_with_file_and_allowed_mentions(fake: FakeDiscord) -> None:
    video = bytes(range(256)) * 1000
    async with tiny_bot(fake, sync="none") as bot:
        channel = bot.get_partial_messageable(fake.channel_id)
        sent = await channel.send(
            f"<@{REQUESTER}> your video is ready @everyone <@{fake.default_user_id}>",
            file=discord.File(io.BytesIO(video), filename="veo-42.mp4"),
            allowed_mentions=discord.AllowedMentions(users=[discord.Object(REQUESTER)], everyone=False, roles=False),
        )
        posted = fake.messages[0]
        assert posted.id == sent.id
        assert posted.attachments == [("veo-42.mp4", video)]
        assert posted.allowed_mentions == {"parse": [], "users": [REQUESTER]}  # discord.py sends ints
        assert posted.pinged_user_ids == {REQUESTER}
        assert not posted.pings_everyone
        assert posted.author_id == fake.bot_user_id
        post = fake.requests_to("POST", "/channels/{channel_id}/messages")
        assert len(post) == 1
        assert sent.attachments[0].filename == "veo-42.mp4"
        assert sent.attachments[0].size == len(video)
        assert sent.attachments[0].content_type == "video/mp4"
        assert await sent.attachments[0].read() == video  # served back by the fake


async def test_nonce_enforce_dedupes_within_window(fake: FakeDiscord, clock: FakeClock) -> None:
    async with tiny_bot(fake, sync="none") as bot:
        channel = bot.get_partial_messageable(fake.channel_id)
        first = await channel.send("job 7 done", nonce="veo-job-7")
        again = await channel.send("job 7 done", nonce="veo-job-7")
        assert again.id == first.id
        assert len(fake.messages) == 1
        assert fake.nonce_hits == 1
        assert fake.messages[0].nonce == "veo-job-7"
        assert fake.messages[0].enforce_nonce
        clock.advance(fake.nonce_window + 1)
        third = await channel.send("job 7 done", nonce="veo-job-7")
        assert third.id > first.id  # snowflakes increase over time
        assert len(fake.messages) == 2
        with pytest.raises(discord.HTTPException) as info:
            await channel.send("x", nonce="n" * 26)  # Discord caps nonces at 25 characters
        assert info.value.status == 400
        assert info.value.code == 50035


async def test_rate_limited_create_is_retried(fake: FakeDiscord) -> None:
    async with tiny_bot(fake, sync="none") as bot:
        fake.inject("POST", "/channels/{channel_id}/messages", 429, retry_after=0.05)
        await bot.get_partial_messageable(fake.channel_id).send("after a 429")
        attempts = fake.requests_to("POST", "/channels/{channel_id}/messages")
        assert [r.status for r in attempts] == [429, 200]
        assert [m.content for m in fake.messages] == ["after a 429"]


async def test_request_entity_too_large(fake: FakeDiscord) -> None:
    async with tiny_bot(fake, sync="none") as bot:
        channel = bot.get_partial_messageable(fake.channel_id)
        fake.inject("POST", "/channels/{channel_id}/messages", 413)
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(file=discord.File(io.BytesIO(b"small"), filename="a.mp4"))
        assert (info.value.status, info.value.code) == (413, 40005)

        big = b"\0" * (10 * MIB + 1)  # over the 10 MiB default: a real 413, no injection
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(file=discord.File(io.BytesIO(big), filename="big.mp4"))
        assert (info.value.status, info.value.code) == (413, 40005)
        assert fake.messages == []

        fake.guild_premium_tier = 2  # GUILD_UPDATE reaches the client's cache
        guild = bot.get_guild(fake.guild_id)
        assert guild is not None
        await asyncio.wait_for(bot.guild_updated.wait(), 5)
        assert guild.filesize_limit == 50 * MIB
        await channel.send(file=discord.File(io.BytesIO(big), filename="big.mp4"))
        assert len(fake.messages) == 1
        assert len(fake.messages[0].attachments[0][1]) == len(big)


async def test_component_click_reaches_dynamic_item_after_restart(fake: FakeDiscord) -> None:
    async with tiny_bot(fake, sync="none") as bot:
        view = discord.ui.View(timeout=None)
        view.add_item(JobButton("cancel", 42))
        view.add_item(JobButton("retry", 42))
        sent = await bot.get_partial_messageable(fake.channel_id).send("job 42 running", view=view)
    assert fake.messages[0].components[0]["components"][0]["custom_id"] == "veo:cancel:42"

    async with tiny_bot(fake, sync="none"):  # a fresh process: no view in memory, only the dynamic item
        click = await fake.send_component("veo:cancel:42", user_id=REQUESTER)
        cb = await fake.wait_callback(click)
        assert cb["type"] == 4
        assert cb["data"]["content"] == "cancel 42"
        assert cb["data"]["flags"] & 64
        assert click.payload["message"]["id"] == str(sent.id)
        assert click.payload["member"]["user"]["id"] == str(REQUESTER)

        retry = await fake.send_component("veo:retry:42", message_id=sent.id)
        cb = await fake.wait_callback(retry)
        assert cb["type"] == 7
        assert fake.messages[0].content == "retrying 42"
        assert fake.messages[0].components == []
    with pytest.raises(ValueError, match="no stored message"):
        await fake.send_component("veo:cancel:999")


async def test_autocomplete(fake: FakeDiscord) -> None:
    async with tiny_bot(fake):
        i = await fake.send_autocomplete("veo", subcommand="status", focused="job", value="12")
        cb = await fake.wait_callback(i)
        assert cb["type"] == 8
        assert cb["data"]["choices"] == [{"name": "job 12", "value": "12"}, {"name": "job 120", "value": "120"}]
        assert i.payload["type"] == 4


async def test_attachment_option_is_downloadable(fake: FakeDiscord) -> None:
    fake.add_role(ADMIN_ROLE, "veo-admins")
    cookie = b'[{"name": "x", "value": "y"}]'
    async with tiny_bot(fake) as bot:
        i = await fake.send_command(
            "veo-admin",
            subcommand="reload",
            attachments={"file": ("cookie.json", cookie, "application/json")},
            user_id=REQUESTER,
            roles=[ADMIN_ROLE],
            permissions="0",
        )
        cb = await fake.wait_callback(i)
        assert cb["data"]["content"] == f"read {len(cookie)} bytes"
        assert bot.seen["upload"] == ("cookie.json", cookie, REQUESTER, [ADMIN_ROLE])
        assert len(fake.downloads) == 1
        with pytest.raises(ValueError, match="required"):
            await fake.send_command("veo-admin", subcommand="reload")
        with pytest.raises(ValueError, match="max_value"):
            await fake.send_command("veo", subcommand="prompt", options={"text": "x", "count": 5})


async def test_drop_connection_resumes_and_replays(fake: FakeDiscord) -> None:
    async with tiny_bot(fake) as bot:
        await fake.drop_connection(code=4000)
        # Dispatched while the client is away: held in the session and replayed after RESUME.
        i = await fake.send_command("veo", subcommand="hello")
        await fake.wait_until(lambda: fake.resume_count == 1 and fake.is_ready)
        cb = await fake.wait_callback(i)
        assert cb["type"] == 4
        await asyncio.wait_for(bot.resumed.wait(), 5)
        assert fake.identify_count == 1
        assert fake.gateway_connects[-1][0] == "/gateway-resume"  # READY's resume_gateway_url was used
        assert 4000 in fake.gateway_closes


async def test_invalidate_session_reidentifies(fake: FakeDiscord) -> None:
    async with tiny_bot(fake):
        await fake.invalidate_session(resumable=False)
        await fake.wait_until(lambda: fake.identify_count == 2 and fake.is_ready)
        assert fake.resume_count == 0
        i = await fake.send_command("veo", subcommand="hello")
        assert (await fake.wait_callback(i))["type"] == 4

        await fake.invalidate_session(resumable=True)
        await fake.wait_until(lambda: fake.resume_count == 1 and fake.is_ready)
        assert fake.identify_count == 2


async def test_expired_interaction_token(fake: FakeDiscord, clock: FakeClock) -> None:
    async with tiny_bot(fake) as bot:
        i = await fake.send_command("veo", subcommand="later")
        assert (await fake.wait_callback(i))["type"] == 5
        interaction = await asyncio.wait_for(bot.captured, 5)
        await interaction.followup.send("still in time")
        clock.advance(fake.interaction_token_ttl + 1)
        with pytest.raises(discord.HTTPException) as info:
            await interaction.followup.send("too late")
        assert (info.value.status, info.value.code) == (401, 50027)
        with pytest.raises(discord.HTTPException) as info:
            await interaction.edit_original_response(content="too late")
        assert (info.value.status, info.value.code) == (401, 50027)
        assert [m.content for m in fake.followups] == ["still in time"]
        # The bot token still works for the channel: that is how late results must be delivered.
        await bot.get_partial_messageable(fake.channel_id).send("delivered with the bot token")
        assert len(fake.messages) == 1


async def test_late_callback_is_unknown_interaction(fake: FakeDiscord, clock: FakeClock) -> None:
    async with tiny_bot(fake):
        fake.gateway_paused = True
        i = await fake.send_command("veo", subcommand="hello")
        assert i.dispatched_at is None
        clock.advance(3.5)  # Discord's 3 s to answer have passed before the bot even sees it
        fake.gateway_paused = False
        await fake.wait_until(lambda: i.late_callbacks == 1)
        assert i.callback is None
        assert fake.requests_to("POST", "/interactions/{id}/{token}/callback")[0].status == 404


async def test_channel_history_dm_and_rest_edges(fake: FakeDiscord) -> None:
    async with tiny_bot(fake, sync="none") as bot:
        channel = bot.get_partial_messageable(fake.channel_id)
        sent = [await channel.send(f"m{n}") for n in range(5)]
        newest = [m.id async for m in channel.history(limit=3)]
        assert newest == [m.id for m in reversed(sent[2:])]
        after = [m.content async for m in channel.history(after=sent[1], oldest_first=True)]
        assert after == ["m2", "m3", "m4"]
        edited = await sent[0].edit(content="m0 (edited)")
        assert edited.edited_at is not None
        assert [(mid, p["content"]) for mid, p in fake.edits] == [(sent[0].id, "m0 (edited)")]
        await sent[1].delete()
        assert sent[1].id not in [m.id for m in fake.channel_messages()]
        with pytest.raises(discord.NotFound):
            await channel.fetch_message(sent[1].id)

        user = await bot.fetch_user(fake.default_user_id)
        await user.send("psst")
        assert [m.content for m in fake.dm_messages(fake.default_user_id)] == ["psst"]
        fake.dm_closed.add(fake.default_user_id)
        with pytest.raises(discord.Forbidden):
            await user.send("again")
        with pytest.raises(discord.HTTPException) as info:
            await channel.send("x" * 2001)
        assert info.value.code == 50035
        with pytest.raises(discord.NotFound):
            await bot.get_partial_messageable(42424242424242424).send("nowhere")


async def test_auth_unknown_routes_and_content_type(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.api_base + "/users/@me") as resp:
            assert resp.status == 401
            assert resp.headers["Content-Type"] == "application/json"
            assert await resp.json() == {"message": "401: Unauthorized", "code": 0}
        headers = {"Authorization": f"Bot {fake.token}"}
        async with http.get(fake.api_base + "/users/@me", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["id"] == str(fake.bot_user_id)
        async with http.get(fake.api_base + "/no/such/route", headers=headers) as resp:
            assert resp.status == 404
            assert await resp.json() == {"message": "404: Not Found", "code": 0}
    assert fake.unknown_routes == [("GET", "/no/such/route")]
    fake.unknown_routes.clear()  # the fixture asserts none were hit
