"""A local fake Discord (REST + gateway on 127.0.0.1) that the real, unmodified discord.py client talks to.

    async with FakeDiscord() as fd, run_bot(MyBot(...), fd) as bot:
        i = await fd.send_command("veo", subcommand="prompt", options={"text": "a cat"})
        assert (await fd.wait_callback(i))["type"] == 5
        msg = await fd.wait_for_message(lambda m: m.attachments)

For a bot in a subprocess, pass DISCORD_API_BASE=fd.api_base and DISCORD_GATEWAY_URL=fd.gateway_url.
Strict on purpose (Discord's status codes, error shapes, limits and timing rules) so tests catch what Discord
itself would reject: 3 s to answer an interaction, 15 min interaction tokens, 25-character nonces, 25 choices,
2000-character content, per-tier upload limits, first followup after a defer replacing the "thinking" message.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import web

from tests.fakes import _discord_commands as cmds
from tests.fakes._discord_creative import CreativeMixin
from tests.fakes._discord_gateway import GatewayMixin
from tests.fakes._discord_models import (
    BOT_PERMISSIONS,
    DEFAULT_ATTACHMENT_LIMIT,
    EVERYONE_PERMISSIONS,
    Channel,
    Clock,
    DiscordError,
    FakeClock,
    Fault,
    Guild,
    Interaction,
    Json,
    Member,
    Notifier,
    PostedMessage,
    RequestRecord,
    Role,
    Snowflakes,
    StoredFile,
    User,
    guess_content_type,
    normalize_template,
)
from tests.fakes._discord_rest import API_PREFIX, RestMixin

__all__ = [
    "DiscordError",
    "FakeClock",
    "FakeDiscord",
    "Interaction",
    "PostedMessage",
    "RequestRecord",
    "run_bot",
]

DEFAULT_APP_ID = 1100000000000000001
DEFAULT_GUILD_ID = 1100000000000000002
DEFAULT_CHANNEL_ID = 1100000000000000003
DEFAULT_USER_ID = 1100000000000000004
DEFAULT_OWNER_ID = 1100000000000000005
ADMINISTRATOR = "2147483647"  # every bit below 1<<31, including ADMINISTRATOR (1<<3)


class FakeDiscord(RestMixin, GatewayMixin, CreativeMixin):
    """In-process fake Discord. All recorded state is public for assertions; see the module docstring."""

    def __init__(
        self,
        token: str = "fake-bot-token",
        app_id: int = DEFAULT_APP_ID,
        bot_user_id: int | None = None,
        guild_id: int = DEFAULT_GUILD_ID,
        channel_id: int = DEFAULT_CHANNEL_ID,
        *,
        user_id: int = DEFAULT_USER_ID,
        bot_name: str = "veo-bot",
        guild_name: str = "Fake Guild",
        channel_name: str = "general",
        clock: Clock | None = None,
        heartbeat_interval: float = 41.25,
        interaction_token_ttl: float = 15 * 60,
        nonce_window: float = 300.0,
        callback_deadline: float | None = 3.0,
        default_upload_limit: int = DEFAULT_ATTACHMENT_LIMIT,
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.bot_user_id = bot_user_id if bot_user_id is not None else app_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.default_user_id = user_id
        self.owner_id = DEFAULT_OWNER_ID
        self.clock: Clock = clock or time.monotonic
        self.heartbeat_interval = heartbeat_interval
        self.interaction_token_ttl = interaction_token_ttl
        self.nonce_window = nonce_window
        self.callback_deadline = callback_deadline
        self.default_upload_limit = default_upload_limit
        self.host = host
        self.privileged_intents_enabled = 0  # like a new app in the developer portal: none enabled

        self.snowflakes = Snowflakes()
        self._notifier = Notifier()
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.files: dict[int, StoredFile] = {}
        self.dm_closed: set[int] = set()
        self._dm_by_user: dict[int, int] = {}

        # Recordings.
        self.messages: list[PostedMessage] = []
        self.all_messages: dict[int, PostedMessage] = {}
        self.edits: list[tuple[int, Json]] = []
        self.followups: list[PostedMessage] = []
        self.original_edits: list[Json] = []
        self.webhook_edits: list[tuple[int, Json]] = []
        self.deleted: list[int] = []
        self.interactions: list[Interaction] = []
        self.interactions_by_id: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.commands: dict[str, list[Json]] = {}
        self._command_ids: dict[tuple[str, int, str], int] = {}
        self.sync_calls = 0
        self.requests: list[tuple[str, str, float]] = []
        self.request_records: list[RequestRecord] = []
        self.unknown_routes: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.faults_fired: list[tuple[str, str, int]] = []
        self.downloads: list[int] = []
        self.nonce_hits = 0
        self._nonces: dict[tuple[int, str], tuple[PostedMessage, float]] = {}
        self._gateway_init()

        self._add_user(User(self.bot_user_id, bot_name, bot=True))
        self._add_user(User(self.default_user_id, "tester", global_name="Tester"))
        self.add_guild(guild_id, name=guild_name)
        self.add_channel(channel_id, guild_id=guild_id, name=channel_name)

        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """READY points here, so tests can tell a RESUME (this path) from a fresh connect."""
        return f"ws://{self.host}:{self.port}/gateway-resume"

    async def start(self) -> None:
        app = web.Application(client_max_size=512 * 1024 * 1024, middlewares=[self._middleware])
        app.router.add_get("/gateway", self._ws_handler)
        app.router.add_get("/gateway-resume", self._ws_handler)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._download)
        for method, template, handler in self._rest_routes():
            app.router.add_route(method, API_PREFIX + template, handler)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        for conn in list(self._connections):
            conn.close(1001, "fake-discord shutting down")
        if self._connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in self._connections)), 5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ waiting
    def _notify(self) -> None:
        self._notifier.notify()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
        """Wait until predicate() is truthy and return its value; no polling sleeps.

        Waiters wake on the fake's own state changes (requests, gateway traffic, messages), so the predicate
        should read the fake's state; for the bot's in-memory state, have the bot signal an event instead.
        """
        return await self._notifier.wait_until(predicate, timeout, what)

    async def wait_for_message(
        self, predicate: Callable[[PostedMessage], bool] = lambda m: True, timeout: float = 10
    ) -> PostedMessage:
        """The first channel/DM message (already posted or future) that matches."""

        def find() -> PostedMessage | None:
            return next((m for m in self.messages if predicate(m)), None)

        return await self.wait_until(find, timeout, "a matching channel message")

    async def wait_callback(self, interaction: Interaction, timeout: float = 5) -> Json:
        await self.wait_until(lambda: interaction.callback is not None, timeout, f"callback of {interaction.id}")
        assert interaction.callback is not None
        return interaction.callback

    # ------------------------------------------------------------------ world set-up
    def _add_user(self, user: User) -> User:
        self.users[user.id] = user
        return user

    def add_user(self, user_id: int, name: str | None = None, *, bot: bool = False) -> User:
        return self._add_user(User(user_id, name or f"user{user_id}", bot=bot))

    def add_guild(self, guild_id: int, *, name: str = "Fake Guild", premium_tier: int = 0) -> Guild:
        guild = Guild(guild_id, name, owner_id=self.owner_id, premium_tier=premium_tier)
        guild.roles[guild_id] = Role(guild_id, "@everyone", str(EVERYONE_PERMISSIONS), position=0)
        guild.members[self.bot_user_id] = Member(self.bot_user_id)
        self.guilds[guild_id] = guild
        if self._current_session is not None:
            self._dispatch("GUILD_CREATE", self._guild_create_payload(guild))
        return guild

    def add_channel(self, channel_id: int, *, guild_id: int | None = None, name: str | None = None) -> Channel:
        gid = guild_id if guild_id is not None else self.guild_id
        guild = self.guilds[gid]
        channel = Channel(channel_id, name or f"channel-{channel_id}", gid, position=len(guild.channel_ids))
        self.channels[channel_id] = channel
        guild.channel_ids.append(channel_id)
        if self._current_session is not None:
            self._dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    def add_role(self, role_id: int, name: str, permissions: str = "0", *, guild_id: int | None = None) -> Role:
        guild = self.guilds[guild_id if guild_id is not None else self.guild_id]
        role = Role(role_id, name, permissions, position=len(guild.roles))
        guild.roles[role_id] = role
        if self._current_session is not None:
            self._dispatch("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()})
        return role

    def add_member(self, user_id: int, *, roles: Iterable[int] = (), guild_id: int | None = None) -> Member:
        guild = self.guilds[guild_id if guild_id is not None else self.guild_id]
        if user_id not in self.users:
            self.add_user(user_id)
        for role_id in roles:
            if role_id not in guild.roles:
                self.add_role(role_id, f"role-{role_id}", guild_id=guild.id)
        member = guild.members.get(user_id)
        if member is None:
            member = guild.members[user_id] = Member(user_id)
        member.roles = list(roles)
        return member

    @property
    def guild_premium_tier(self) -> int:
        return self.guilds[self.guild_id].premium_tier

    @guild_premium_tier.setter
    def guild_premium_tier(self, tier: int) -> None:
        if tier not in (0, 1, 2, 3):
            raise ValueError("premium tier is 0..3")
        guild = self.guilds[self.guild_id]
        guild.premium_tier = tier
        if self._current_session is not None:
            self._dispatch("GUILD_UPDATE", guild.base_payload())

    def dm_channel(self, user_id: int) -> Channel:
        """The DM channel with a user (created once, like POST /users/@me/channels)."""
        cid = self._dm_by_user.get(user_id)
        if cid is None:
            cid = self.snowflakes.next()
            self._dm_by_user[user_id] = cid
            self.channels[cid] = Channel(cid, "", None, type=1, recipient_id=user_id)
        return self.channels[cid]

    def dm_messages(self, user_id: int) -> list[PostedMessage]:
        cid = self._dm_by_user.get(user_id)
        return [m for m in self.messages if m.channel_id == cid]

    def channel_messages(self, channel_id: int | None = None) -> list[PostedMessage]:
        """Visible history of a channel (channel creates and non-ephemeral interaction messages), oldest first."""
        cid = channel_id if channel_id is not None else self.channel_id
        return sorted(
            (m for m in self.all_messages.values() if m.channel_id == cid and not m.deleted and not m.ephemeral),
            key=lambda m: m.id,
        )

    # ------------------------------------------------------------------ faults
    def inject(
        self,
        method: str,
        path_template: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: Json | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (templates match whatever the param names)."""
        self.faults.append(Fault(method.upper(), path_template, status, times, retry_after, body))

    def requests_to(self, method: str, path_template: str) -> list[RequestRecord]:
        """Every recorded REST call matching a template such as '/channels/{channel_id}/messages'."""
        norm = normalize_template(path_template)
        return [
            r
            for r in self.request_records
            if r.method == method.upper() and norm in (normalize_template(r.template or ""), r.path)
        ]

    # ------------------------------------------------------------------ interactions
    async def send_command(
        self,
        name: str,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        user_id: int | None = None,
        roles: Iterable[int] = (),
        permissions: str | None = None,
        channel_id: int | None = None,
        attachments: Mapping[str, tuple[str, bytes, str]] | None = None,
        guild: bool = True,
        locale: str = "en-US",
        validate: bool = True,
    ) -> Interaction:
        """Dispatch a CHAT_INPUT interaction; options typed from the synced definition when there is one."""
        data = self._command_data(
            name, subcommand, options or {}, attachments or {}, channel_id, guild=guild, validate=validate
        )
        return self._interaction(2, data, user_id, roles, permissions, channel_id, guild, locale)

    async def send_autocomplete(
        self,
        name: str,
        subcommand: str | None = None,
        *,
        focused: str,
        value: str = "",
        options: Mapping[str, Any] | None = None,
        user_id: int | None = None,
        roles: Iterable[int] = (),
        permissions: str | None = None,
        channel_id: int | None = None,
        guild: bool = True,
    ) -> Interaction:
        """Dispatch an APPLICATION_COMMAND_AUTOCOMPLETE interaction; the focused value is the raw typed text."""
        data = self._command_data(name, subcommand, options or {}, {}, channel_id, guild=guild, validate=False)
        leaf = data["options"]
        while leaf and leaf[0].get("type") in (cmds.SUB_COMMAND, cmds.SUB_COMMAND_GROUP):
            leaf = leaf[0].setdefault("options", [])
        command = self._find_command(name, guild)[0]
        defs = cmds.find_command_path(command, subcommand)[1] or []
        typ = next((d["type"] for d in defs if d.get("name") == focused), cmds.STRING)
        leaf.append({"type": typ, "name": focused, "value": str(value), "focused": True})
        return self._interaction(4, data, user_id, roles, permissions, channel_id, guild, "en-US")

    async def send_component(
        self,
        custom_id: str,
        *,
        user_id: int | None = None,
        message_id: int | None = None,
        channel_id: int | None = None,
        roles: Iterable[int] = (),
        permissions: str | None = None,
        values: list[str] | None = None,
    ) -> Interaction:
        """Click a component of a stored message (the newest one carrying custom_id unless message_id is given)."""
        if message_id is not None:
            msg = self.all_messages.get(message_id)
            if msg is None or msg.deleted:
                raise ValueError(f"no message {message_id} to click on")
        else:
            found = [m for m in self.all_messages.values() if not m.deleted and _find_component(m, custom_id)]
            if not found:
                raise ValueError(f"no stored message has a component {custom_id!r}")
            msg = max(found, key=lambda m: m.id)
        component = _find_component(msg, custom_id)
        if component is None:
            raise ValueError(f"message {msg.id} has no component {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled; Discord would not send the click")
        data: Json = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if values is not None:
            data["values"] = list(values)
        ch = channel_id if channel_id is not None else msg.channel_id
        extra = {"message": self._message_payload(msg)}
        return self._interaction(3, data, user_id, roles, permissions, ch, msg.guild_id is not None, "en-US", extra)

    async def send_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user_id: int | None = None,
        channel_id: int | None = None,
        roles: Iterable[int] = (),
        permissions: str | None = None,
    ) -> Interaction:
        """Submit a modal: each value becomes a text input (type 4) in its own action row."""
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        data = {"custom_id": custom_id, "components": rows}
        return self._interaction(5, data, user_id, roles, permissions, channel_id, True, "en-US")

    def _find_command(self, name: str, guild: bool) -> tuple[Json | None, bool]:
        if guild:
            for cmd in self.commands.get(str(self.guild_id), []):
                if cmd.get("name") == name and cmd.get("type", 1) == 1:
                    return cmd, True
        for cmd in self.commands.get("global", []):
            if cmd.get("name") == name and cmd.get("type", 1) == 1:
                return cmd, False
        return None, False

    def _command_data(
        self,
        name: str,
        subcommand: str | None,
        options: Mapping[str, Any],
        attachments: Mapping[str, tuple[str, bytes, str]],
        channel_id: int | None,
        *,
        guild: bool,
        validate: bool,
    ) -> Json:
        command, in_guild = self._find_command(name, guild)
        if command is None and validate and self.commands:
            raise ValueError(f"command {name!r} was never synced; Discord would not offer it")
        path, defs = cmds.find_command_path(command, subcommand)
        if command is None and subcommand:
            parts = subcommand.split()
            path = [{"type": cmds.SUB_COMMAND_GROUP, "name": p} for p in parts[:-1]]
            path.append({"type": cmds.SUB_COMMAND, "name": parts[-1]})
        by_name = {d["name"]: d for d in defs or []}
        resolved: Json = {}
        leaf: list[Json] = []
        for oname, raw in options.items():
            definition = by_name.get(oname)
            if defs is not None and definition is None:
                raise ValueError(f"/{name} {subcommand or ''} has no option {oname!r}")
            typ = definition["type"] if definition else cmds.infer_type(raw)
            value = cmds.coerce(oname, typ, raw)
            if validate and definition is not None:
                cmds.check_value(definition, value)
            self._resolve(typ, value, resolved)
            leaf.append({"type": typ, "name": oname, "value": value})
        cid = channel_id if channel_id is not None else self.channel_id
        for oname, (filename, blob, content_type) in attachments.items():
            definition = by_name.get(oname)
            if defs is not None and (definition is None or definition["type"] != cmds.ATTACHMENT):
                raise ValueError(f"/{name} {subcommand or ''} has no attachment option {oname!r}")
            fid = self.snowflakes.next()
            url = f"{self.base_url}/attachments/{cid}/{fid}/{filename}"
            stored = StoredFile(fid, filename, blob, content_type or guess_content_type(filename), url, True)
            self.files[fid] = stored
            resolved.setdefault("attachments", {})[str(fid)] = stored.payload()
            leaf.append({"type": cmds.ATTACHMENT, "name": oname, "value": str(fid)})
        if validate and defs is not None:
            given = {o["name"] for o in leaf}
            missing = [d["name"] for d in defs if d.get("required") and d["name"] not in given]
            if missing:
                raise ValueError(f"required option(s) missing: {missing}")
        nested: list[Json] = leaf
        for node in reversed(path):
            nested = [{"type": node["type"], "name": node["name"], "options": nested}]
        key = ("global" if not in_guild else str(self.guild_id), 1, name)
        data: Json = {
            "id": str(self._command_ids.setdefault(key, self.snowflakes.next())),
            "name": name,
            "type": 1,
            "options": nested,
        }
        if in_guild:
            data["guild_id"] = str(self.guild_id)
        if resolved:
            data["resolved"] = resolved
        return data

    def _resolve(self, typ: int, value: Any, resolved: Json) -> None:
        guild = self.guilds[self.guild_id]
        if typ in (cmds.USER, cmds.MENTIONABLE) and int(value) in self.users:
            uid = int(value)
            resolved.setdefault("users", {})[value] = self.users[uid].payload()
            member = guild.members.get(uid)
            if member is not None:
                payload = member.payload(self.users[uid], permissions=self._permissions_of(member.roles))
                payload.pop("user")
                resolved.setdefault("members", {})[value] = payload
        elif typ in (cmds.ROLE, cmds.MENTIONABLE) and int(value) in guild.roles:
            resolved.setdefault("roles", {})[value] = guild.roles[int(value)].payload()
        elif typ == cmds.CHANNEL and int(value) in self.channels:
            ch = self.channels[int(value)].payload()
            resolved.setdefault("channels", {})[value] = {**ch, "permissions": str(BOT_PERMISSIONS)}
        elif typ in (cmds.USER, cmds.ROLE, cmds.CHANNEL, cmds.MENTIONABLE):
            raise ValueError(f"unknown id {value} for option type {typ}")

    def _permissions_of(self, roles: Iterable[int]) -> str:
        guild = self.guilds[self.guild_id]
        perms = int(guild.roles[guild.id].permissions)
        for role_id in roles:
            role = guild.roles.get(role_id)
            if role is not None:
                perms |= int(role.permissions)
        return str(perms)

    def _interaction(
        self,
        itype: int,
        data: Json,
        user_id: int | None,
        roles: Iterable[int],
        permissions: str | None,
        channel_id: int | None,
        guild: bool,
        locale: str,
        extra: Json | None = None,
    ) -> Interaction:
        uid = user_id if user_id is not None else self.default_user_id
        if uid not in self.users:
            self.add_user(uid)
        user = self.users[uid]
        iid = self.snowflakes.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: Json = {
            "id": str(iid),
            "application_id": str(self.app_id),
            "type": itype,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "app_permissions": str(BOT_PERMISSIONS),
        }
        if data:
            payload["data"] = data
        if guild:
            cid = channel_id if channel_id is not None else self.channel_id
            channel = self.channels.get(cid)
            if channel is None or channel.guild_id is None:
                raise ValueError(f"unknown guild channel {cid}")
            g = self.guilds[channel.guild_id]
            role_list = list(roles)
            member = self.add_member(uid, roles=role_list, guild_id=g.id)
            perms = permissions if permissions is not None else self._permissions_of(role_list)
            payload.update(
                {
                    "guild_id": str(g.id),
                    "guild": {"id": str(g.id), "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "channel_id": str(cid),
                    "channel": {**channel.payload(), "permissions": perms},
                    "member": member.payload(user, permissions=perms),
                    "authorizing_integration_owners": {"0": str(g.id)},
                    "context": 0,
                    "attachment_size_limit": max(g.filesize_limit, self.default_upload_limit),
                }
            )
        else:
            channel = self.dm_channel(uid)
            cid = channel.id
            payload.update(
                {
                    "channel_id": str(cid),
                    "channel": channel.payload(self.users),
                    "user": user.payload(),
                    "authorizing_integration_owners": {"0": str(self.owner_id)},
                    "context": 1,
                    "attachment_size_limit": self.default_upload_limit,
                }
            )
        if extra:
            payload.update(extra)
        inter = Interaction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            created_at=self.clock(),
            user_id=uid,
            channel_id=cid,
            guild_id=int(payload["guild_id"]) if guild else None,
        )
        self.interactions.append(inter)
        self.interactions_by_id[iid] = inter
        self.interactions_by_token[token] = inter

        def mark_sent() -> None:
            if inter.dispatched_at is None:
                inter.dispatched_at = self.clock()

        if not self._dispatch("INTERACTION_CREATE", payload, on_sent=mark_sent):
            raise RuntimeError("no gateway session to deliver the interaction to")
        self._notify()
        return inter


def _find_component(msg: PostedMessage, custom_id: str) -> Json | None:
    def walk(items: list[Json]) -> Json | None:
        for item in items:
            if item.get("custom_id") == custom_id:
                return item
            for key in ("components", "accessory"):
                child = item.get(key)
                children = child if isinstance(child, list) else [child] if isinstance(child, dict) else []
                if (found := walk(children)) is not None:
                    return found
        return None

    return walk(msg.components)


@contextlib.asynccontextmanager
async def run_bot(
    bot: discord.Client,
    fake: FakeDiscord,
    *,
    token: str | None = None,
    ready_timeout: float = 10,
    guild_ready_timeout: float | None = 0.2,
) -> AsyncIterator[discord.Client]:
    """Run `bot` against `fake` until the block ends; discord.py's URL globals are restored afterwards.

    guild_ready_timeout shortens discord.py's wait for more GUILD_CREATEs before on_ready (default 2 s): the
    fake sends them right after READY. Pass None to keep the bot's own setting.
    """
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    connect: asyncio.Task[None] | None = None
    try:
        if guild_ready_timeout is not None:
            bot._connection.guild_ready_timeout = guild_ready_timeout
        await bot.login(token if token is not None else fake.token)
        connect = asyncio.create_task(bot.connect(), name="fake-discord-bot-connect")
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait({connect, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if connect in done:
                connect.result()  # raises the connect error
                raise RuntimeError("bot disconnected before it was ready")
            raise TimeoutError(f"bot not ready after {ready_timeout}s")
        yield bot
    finally:
        await bot.close()
        if connect is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(connect, 10)
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
