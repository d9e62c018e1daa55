"""Records, payload builders and small utilities shared by the fake Discord's REST and gateway halves."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

API_VERSION = 10
DISCORD_EPOCH_MS = 1420070400000
MIB = 1024 * 1024
DEFAULT_ATTACHMENT_LIMIT = 10 * MIB
# Guild.filesize_limit in discord.py 2.7 derives from premium_tier exactly like this.
PREMIUM_FILESIZE = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}
MAX_CONTENT = 2000
MAX_NONCE = 25

FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Permission bits used to build realistic defaults.
P_ADD_REACTIONS = 1 << 6
P_VIEW_CHANNEL = 1 << 10
P_SEND_MESSAGES = 1 << 11
P_EMBED_LINKS = 1 << 14
P_ATTACH_FILES = 1 << 15
P_READ_HISTORY = 1 << 16
P_EXTERNAL_EMOJIS = 1 << 18
P_CHANGE_NICKNAME = 1 << 26
P_USE_APP_COMMANDS = 1 << 31
P_SEND_IN_THREADS = 1 << 38
EVERYONE_PERMISSIONS = (
    P_ADD_REACTIONS
    | P_VIEW_CHANNEL
    | P_SEND_MESSAGES
    | P_EMBED_LINKS
    | P_ATTACH_FILES
    | P_READ_HISTORY
    | P_EXTERNAL_EMOJIS
    | P_CHANGE_NICKNAME
    | P_USE_APP_COMMANDS
    | P_SEND_IN_THREADS
)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS

INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

Json = dict[str, Any]
Clock = Callable[[], float]


def dumps(value: Any) -> str:
    """Serialise compactly, as Discord does."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="microseconds")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DiscordError(Exception):
    """An error answer in Discord's JSON shape: {"message", "code"[, "errors"]}."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: Json | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> Json:
        out: Json = {"message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def form_error(errors: Json) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", errors=errors)


def field_error(path: list[str | int], code: str, message: str) -> DiscordError:
    """A 50035 error for one field, nested like Discord nests them."""
    node: Json = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path):
        node = {str(part): node}
    return form_error(node)


class FakeClock:
    """A monotonic clock that tests can move forward (token expiry, nonce windows) without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Snowflakes:
    """Discord-style ids from the wall clock, strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        value = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        value = max(value, self._last + 1)
        self._last = value
        return value


class Notifier:
    """Wakes every waiter on any state change, so tests wait on conditions instead of sleeping."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                self._waiters.discard(fut)


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    def payload(self) -> Json:
        out: Json = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
        }
        if self.bot:
            out["bot"] = True
        return out


@dataclass
class Role:
    id: int
    name: str
    permissions: str = "0"
    position: int = 1
    managed: bool = False
    mentionable: bool = False

    def payload(self) -> Json:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": self.permissions,
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }


@dataclass
class Channel:
    id: int
    name: str
    guild_id: int | None
    type: int = 0  # 0 guild text, 1 DM
    position: int = 0
    recipient_id: int | None = None
    last_message_id: int | None = None

    def payload(self, users: dict[int, User] | None = None) -> Json:
        if self.type == 1:
            recipient = (users or {}).get(self.recipient_id or 0) or User(self.recipient_id or 0, "user")
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": _opt_str(self.last_message_id),
                "flags": 0,
                "recipients": [recipient.payload()],
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": _opt_str(self.last_message_id),
            "rate_limit_per_user": 0,
            "flags": 0,
        }


@dataclass
class Member:
    user_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: dt.datetime = field(default_factory=utcnow)

    def payload(self, user: User, permissions: str | None = None) -> Json:
        out: Json = {
            "user": user.payload(),
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if permissions is not None:
            out["permissions"] = permissions
        return out


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    roles: dict[int, Role] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    members: dict[int, Member] = field(default_factory=dict)
    joined_at: dt.datetime = field(default_factory=utcnow)

    @property
    def filesize_limit(self) -> int:
        return PREMIUM_FILESIZE.get(self.premium_tier, DEFAULT_ATTACHMENT_LIMIT)

    def base_payload(self) -> Json:
        """The REST / GUILD_UPDATE shape (no channels or members)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": [0, 2, 7, 14][self.premium_tier],
            "preferred_locale": "en-US",
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }


@dataclass
class StoredFile:
    """An uploaded file, served back by the fake at `url`."""

    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    ephemeral: bool = False

    def payload(self) -> Json:
        out: Json = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.ephemeral:
            out["ephemeral"] = True
        return out


def guess_content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


_USER_MENTION = re.compile(r"<@!?(\d{15,20})>")
_ROLE_MENTION = re.compile(r"<@&(\d{15,20})>")


@dataclass
class PostedMessage:
    """A message the fake stored: a channel/DM create, an interaction response, or a followup."""

    id: int
    channel_id: int
    author_id: int
    content: str
    embeds: list[Json]
    components: list[Json]
    allowed_mentions: Json | None
    nonce: str | int | None
    enforce_nonce: bool
    attachments: list[tuple[str, bytes]]
    flags: int
    payload: Json
    created_at: float
    # Extras beyond the brief.
    kind: str = "channel"  # "channel" (bot-token create), "interaction" (original), "followup"
    interaction_id: int | None = None
    webhook_id: int | None = None
    guild_id: int | None = None
    files: list[StoredFile] = field(default_factory=list)
    timestamp: dt.datetime = field(default_factory=utcnow)
    edited_at: float | None = None
    edited_timestamp: dt.datetime | None = None
    edits: list[Json] = field(default_factory=list)
    deleted: bool = False
    message_type: int = 0
    interaction_metadata: Json | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def mentioned_user_ids(self) -> set[int]:
        """User ids written as mentions in the content (whether or not they ping)."""
        return {int(m) for m in _USER_MENTION.findall(self.content or "")}

    @property
    def pinged_user_ids(self) -> set[int]:
        """Users Discord would notify, after applying allowed_mentions (absent means parse everything)."""
        mentioned = self.mentioned_user_ids
        am = self.allowed_mentions
        if am is None:
            return mentioned
        if "users" in am.get("parse", []):
            return mentioned
        allowed = {int(u) for u in am.get("users", [])}
        return mentioned & allowed

    @property
    def pinged_role_ids(self) -> set[int]:
        mentioned = {int(m) for m in _ROLE_MENTION.findall(self.content or "")}
        am = self.allowed_mentions
        if am is None or "roles" in am.get("parse", []):
            return mentioned
        return mentioned & {int(r) for r in am.get("roles", [])}

    @property
    def pings_everyone(self) -> bool:
        """@everyone/@here in content with "everyone" parsing allowed (the bot's permission is not modelled)."""
        content = self.content or ""
        if "@everyone" not in content and "@here" not in content:
            return False
        am = self.allowed_mentions
        return am is None or "everyone" in am.get("parse", [])

    def to_payload(self, users: dict[int, User], *, application_id: int) -> Json:
        author = users.get(self.author_id) or User(self.author_id, "bot", bot=True)
        out: Json = {
            "id": str(self.id),
            "type": self.message_type,
            "channel_id": str(self.channel_id),
            "author": author.payload(),
            "content": self.content,
            "timestamp": iso(self.timestamp),
            "edited_timestamp": iso(self.edited_timestamp) if self.edited_timestamp else None,
            "tts": False,
            "mention_everyone": self.pings_everyone,
            "mentions": [(users.get(uid) or User(uid, f"user{uid}")).payload() for uid in sorted(self.pinged_user_ids)],
            "mention_roles": [str(r) for r in sorted(self.pinged_role_ids)],
            "attachments": [f.payload() for f in self.files],
            "embeds": self.embeds,
            "pinned": False,
            "flags": self.flags,
            "components": self.components,
        }
        if self.nonce is not None:
            out["nonce"] = self.nonce
        if self.webhook_id is not None:
            out["webhook_id"] = str(self.webhook_id)
            out["application_id"] = str(application_id)
        if self.interaction_metadata is not None:
            out["interaction_metadata"] = self.interaction_metadata
        return out


@dataclass
class Interaction:
    """One interaction the fake dispatched, and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: Json
    created_at: float
    user_id: int
    channel_id: int
    guild_id: int | None
    dispatched_at: float | None = None
    callback: Json | None = None
    callback_at: float | None = None
    callback_files: list[tuple[str, bytes]] = field(default_factory=list)
    original: PostedMessage | None = None
    original_edits: list[Json] = field(default_factory=list)
    followups: list[PostedMessage] = field(default_factory=list)
    late_callbacks: int = 0

    @property
    def callback_type(self) -> int | None:
        return None if self.callback is None else int(self.callback.get("type", 0))


@dataclass
class Fault:
    method: str
    template: str
    status: int
    times: int
    retry_after: float | None
    body: Json | None


@dataclass
class RequestRecord:
    method: str
    path: str
    template: str | None
    query: dict[str, str]
    at: float
    status: int = 0
    authorized: bool = False


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


def normalize_template(template: str) -> str:
    """'/channels/{channel_id}/messages' and '/channels/{id}/messages' compare equal."""
    return re.sub(r"\{[^}]*\}", "{}", template.rstrip("/"))
