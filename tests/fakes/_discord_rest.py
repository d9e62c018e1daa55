"""The fake REST API: routes discord.py 2.7 uses, with Discord's status codes, error shapes and headers."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes._discord_commands import validate_choices_response, validate_commands
from tests.fakes._discord_models import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    MAX_CONTENT,
    MAX_NONCE,
    Channel,
    DiscordError,
    Interaction,
    Json,
    PostedMessage,
    RequestRecord,
    StoredFile,
    User,
    dumps,
    field_error,
    guess_content_type,
    normalize_template,
    utcnow,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

API_PREFIX = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UploadedFile = tuple[int, str, bytes]  # (files[n] index, filename, data)

# Message flags a bot may set on create; everything else is ignored like Discord does.
_CREATE_FLAGS = (1 << 2) | (1 << 12) | (1 << 15)
_ALLOWED_CALLBACKS = {1: {1}, 2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
_EMBED_LIMITS = {"title": 256, "description": 4096}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """discord.py compares Content-Type to exactly 'application/json': no charset."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=dumps(body).encode(), headers=all_headers)


def _error_response(err: DiscordError) -> web.Response:
    return json_response(err.body(), err.status, err.headers)


def _bucket(template: str) -> str:
    return hashlib.md5(template.encode(), usedforsecurity=False).hexdigest()


def _ratelimit_headers(template: str, *, remaining: int, reset_after: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": _bucket(template),
    }


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """Parse multipart/form-data into (name, filename, data) without a stream (the body is already read)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise DiscordError(400, 50035, "Invalid Form Body")
    delimiter = b"--" + match.group(1).encode()
    parts: list[tuple[str, str | None, bytes]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        data = data.removesuffix(b"\r\n")
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                disposition = line
        name_m = re.search(r'\bname="([^"]*)"', disposition)
        file_m = re.search(r'\bfilename="([^"]*)"', disposition)
        if name_m is None:
            continue
        parts.append((name_m.group(1), file_m.group(1) if file_m else None, data))
    return parts


class RestMixin:
    """REST half of FakeDiscord; state lives on the FakeDiscord instance."""

    # ------------------------------------------------------------------ wiring
    def _rest_routes(self: FakeDiscord) -> list[tuple[str, str, Handler]]:
        m, w = "/channels/{channel_id}/messages", "/webhooks/{webhook_id}/{webhook_token}"
        return [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/users/@me", self._get_me),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/users/{user_id}", self._get_user),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/applications/{application_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands),
            ("POST", "/interactions/{interaction_id}/{interaction_token}/callback", self._callback),
            ("POST", w, self._create_followup),
            ("GET", w + "/messages/@original", self._webhook_message),
            ("PATCH", w + "/messages/@original", self._webhook_message),
            ("DELETE", w + "/messages/@original", self._webhook_message),
            ("GET", w + "/messages/{message_id}", self._webhook_message),
            ("PATCH", w + "/messages/{message_id}", self._webhook_message),
            ("DELETE", w + "/messages/{message_id}", self._webhook_message),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", m, self._list_messages),
            ("POST", m, self._create_message),
            ("GET", m + "/{message_id}", self._get_message),
            ("PATCH", m + "/{message_id}", self._edit_message),
            ("DELETE", m + "/{message_id}", self._delete_message),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("GET", "/guilds/{guild_id}", self._get_guild),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
        ]

    @web.middleware
    async def _middleware(self: FakeDiscord, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status in (404, 405):
                    self.unknown_routes.append((request.method, request.path))
                    self._notify()
                    return json_response({"message": f"{exc.status}: {exc.reason}", "code": 0}, exc.status)
                raise
        path = request.path[len(API_PREFIX) :]
        match_info = request.match_info
        template: str | None = None
        if match_info.http_exception is None:
            canonical = match_info.route.resource.canonical if match_info.route.resource else ""
            template = canonical[len(API_PREFIX) :]
        record = RequestRecord(request.method, path, template, dict(request.query), self.clock())
        self.request_records.append(record)
        self.requests.append((request.method, path, record.at))
        try:
            await request.read()
            if template is None:
                self.unknown_routes.append((request.method, path))
                status = match_info.http_exception.status if match_info.http_exception else 404
                text = "405: Method Not Allowed" if status == 405 else "404: Not Found"
                raise DiscordError(status, 0, text)
            record.authorized = request.headers.get("Authorization") == f"Bot {self.token}"
            if not record.authorized and not self._token_authenticated(template):
                raise DiscordError(401, 0, "401: Unauthorized")
            fault = self._take_fault(request.method, template, path)
            if fault is not None:
                response = fault
            else:
                response = await handler(request)
                if response.status < 300:
                    response.headers.update(_ratelimit_headers(template, remaining=4, reset_after=1.0))
        except DiscordError as err:
            response = _error_response(err)
        record.status = response.status
        self._notify()
        return response

    @staticmethod
    def _token_authenticated(template: str) -> bool:
        """Interaction callbacks and webhook-token routes authenticate by the token in the path."""
        return template.startswith(("/interactions/", "/webhooks/{webhook_id}/{webhook_token}"))

    def _take_fault(self: FakeDiscord, method: str, template: str, path: str) -> web.Response | None:
        norm = normalize_template(template)
        for fault in self.faults:
            if fault.times <= 0 or fault.method != method:
                continue
            if normalize_template(fault.template) not in (norm, normalize_template(path)):
                continue
            fault.times -= 1
            self.faults_fired.append((method, path, fault.status))
            return self._fault_response(fault.status, fault.retry_after, fault.body, template)
        return None

    @staticmethod
    def _fault_response(status: int, retry_after: float | None, body: Json | None, template: str) -> web.Response:
        headers: dict[str, str] = {}
        if status == 429:
            ra = 0.05 if retry_after is None else retry_after
            default: Json = {"message": "You are being rate limited.", "retry_after": ra, "global": False}
            headers.update(_ratelimit_headers(template, remaining=0, reset_after=ra))
            headers.update({"Retry-After": str(math.ceil(ra)), "X-RateLimit-Scope": "user", "Via": "1.1 google"})
        elif status == 413:
            default = {"message": "Request entity too large", "code": 40005}
        elif status == 401:
            default = {"message": "401: Unauthorized", "code": 0}
        elif status == 403:
            default = {"message": "Missing Permissions", "code": 50013}
        elif status == 404:
            default = {"message": "404: Not Found", "code": 0}
        else:
            default = {"message": f"{status}: fake-discord injected error", "code": 0}
        return json_response(default if body is None else body, status, headers)

    # ------------------------------------------------------------------ body helpers
    async def _read_payload(self: FakeDiscord, request: web.Request) -> tuple[Json, list[UploadedFile]]:
        body = await request.read()
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            payload: Any = {}
            files: list[UploadedFile] = []
            for name, filename, data in parse_multipart(body, ctype):
                if name == "payload_json":
                    payload = self._loads(data)
                elif (m := re.fullmatch(r"files\[(\d+)\]", name)) is not None:
                    files.append((int(m.group(1)), filename or f"file{m.group(1)}", data))
                else:
                    raise field_error([name], "UNKNOWN_FIELD", "Unknown multipart field")
            return self._require_object(payload), files
        if not body:
            return {}, []
        if not ctype.startswith("application/json"):
            raise DiscordError(400, 50109, "The request body contains invalid JSON.")
        return self._require_object(self._loads(body)), []

    @staticmethod
    def _loads(data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from exc

    @staticmethod
    def _require_object(value: Any) -> Json:
        if not isinstance(value, dict):
            raise DiscordError(400, 50109, "The request body contains invalid JSON.")
        return value

    def _store_files(
        self: FakeDiscord, payload: Json, uploads: list[UploadedFile], channel_id: int, limit: int
    ) -> list[StoredFile]:
        meta = {}
        for att in payload.get("attachments") or []:
            if isinstance(att, dict) and str(att.get("id", "")).isdigit() and int(att["id"]) < 1000:
                meta[int(att["id"])] = att
        stored = []
        for index, filename, data in uploads:
            if len(data) > limit:
                raise DiscordError(413, 40005, "Request entity too large")
            name = str(meta.get(index, {}).get("filename") or filename)
            fid = self.snowflakes.next()
            url = f"{self.base_url}/attachments/{channel_id}/{fid}/{name}"
            f = StoredFile(fid, name, data, guess_content_type(name), url)
            self.files[fid] = f
            stored.append(f)
        return stored

    @staticmethod
    def _validate_message(payload: Json, *, files: int, existing: PostedMessage | None = None) -> None:
        content = payload.get("content")
        if content is not None and not isinstance(content, str):
            raise field_error(["content"], "BASE_TYPE_STRING", "Must be a string.")
        if content is not None and len(content) > MAX_CONTENT:
            raise field_error(["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
        embeds = payload.get("embeds") or []
        if len(embeds) > 10:
            raise field_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for i, embed in enumerate(embeds):
            total = 0
            for key, limit in _EMBED_LIMITS.items():
                text = embed.get(key) or ""
                total += len(text)
                if len(text) > limit:
                    raise field_error(["embeds", i, key], "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer.")
            fields = embed.get("fields") or []
            if len(fields) > 25:
                raise field_error(["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer.")
            for j, fld in enumerate(fields):
                total += len(fld.get("name") or "") + len(fld.get("value") or "")
                if len(fld.get("name") or "") > 256 or len(fld.get("value") or "") > 1024:
                    raise field_error(["embeds", i, "fields", j], "BASE_TYPE_MAX_LENGTH", "Field too long.")
            total += len((embed.get("footer") or {}).get("text") or "")
            total += len((embed.get("author") or {}).get("name") or "")
            if total > 6000:
                raise field_error(["embeds", i], "MESSAGE_EMBEDS_TOO_LONG", "Embed size exceeds maximum size of 6000")
        rows = payload.get("components") or []
        if len(rows) > 5 and not (payload.get("flags", 0) & (1 << 15)):
            raise field_error(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for i, row in enumerate(rows):
            for j, comp in enumerate(row.get("components") or []):
                cid = comp.get("custom_id")
                if cid is not None and not 1 <= len(str(cid)) <= 100:
                    raise field_error(
                        ["components", i, "components", j, "custom_id"],
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )
        am = payload.get("allowed_mentions")
        if isinstance(am, dict):
            parse = am.get("parse") or []
            for kind in ("users", "roles"):
                if kind in parse and am.get(kind):
                    raise field_error(
                        ["allowed_mentions"],
                        "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                        f'parse:["{kind}"] and {kind}: [ids] are mutually exclusive.',
                    )
        nonce = payload.get("nonce")
        if nonce is not None and (
            isinstance(nonce, bool)
            or not isinstance(nonce, str | int)
            or (isinstance(nonce, str) and len(nonce) > MAX_NONCE)
        ):
            raise field_error(["nonce"], "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_NONCE} in length.")
        if existing is None and not (
            content or embeds or rows or files or payload.get("sticker_ids") or payload.get("poll")
        ):
            raise DiscordError(400, 50006, "Cannot send an empty message")

    def _new_message(
        self: FakeDiscord,
        payload: Json,
        files: list[StoredFile],
        *,
        channel_id: int,
        kind: str,
        flags: int,
        interaction: Interaction | None = None,
        message_type: int = 0,
    ) -> PostedMessage:
        channel = self.channels[channel_id]
        msg = PostedMessage(
            id=self.snowflakes.next(),
            channel_id=channel_id,
            author_id=self.bot_user_id,
            content=payload.get("content") or "",
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            allowed_mentions=payload.get("allowed_mentions"),
            nonce=payload.get("nonce"),
            enforce_nonce=bool(payload.get("enforce_nonce")),
            attachments=[(f.filename, f.data) for f in files],
            flags=flags,
            payload=payload,
            created_at=self.clock(),
            kind=kind,
            interaction_id=interaction.id if interaction else None,
            webhook_id=self.app_id if kind != "channel" else None,
            guild_id=channel.guild_id,
            files=files,
            message_type=message_type,
        )
        if interaction is not None:
            user = interaction.payload.get("member", {}).get("user") or interaction.payload.get("user")
            msg.interaction_metadata = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
            }
            if kind == "followup" and interaction.original is not None:
                msg.interaction_metadata["original_response_message_id"] = str(interaction.original.id)
        self.all_messages[msg.id] = msg
        if not msg.ephemeral:
            channel.last_message_id = msg.id
        self._dispatch_message_event("MESSAGE_CREATE", msg, self._message_payload(msg))
        return msg

    def _apply_edit(self: FakeDiscord, msg: PostedMessage, payload: Json, uploads: list[UploadedFile]) -> None:
        limit = self._upload_limit(msg.channel_id)
        self._validate_message(payload, files=len(uploads), existing=msg)
        new_files = self._store_files(payload, uploads, msg.channel_id, limit)
        if "content" in payload:
            msg.content = payload["content"] or ""
        for key in ("embeds", "components"):
            if key in payload:
                setattr(msg, key, list(payload[key] or []))
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        if "flags" in payload and payload["flags"] is not None:
            msg.flags = (msg.flags & ~_CREATE_FLAGS) | (int(payload["flags"]) & _CREATE_FLAGS)
        if "attachments" in payload:
            keep = {str(a.get("id")) for a in payload["attachments"] or [] if isinstance(a, dict)}
            msg.files = [f for f in msg.files if str(f.id) in keep]
        msg.files = msg.files + new_files
        msg.attachments = [(f.filename, f.data) for f in msg.files]
        msg.flags &= ~FLAG_LOADING
        msg.edited_at = self.clock()
        msg.edited_timestamp = utcnow()
        msg.edits.append(payload)
        self._dispatch_message_event("MESSAGE_UPDATE", msg, self._message_payload(msg))

    def _message_payload(self: FakeDiscord, msg: PostedMessage) -> Json:
        return msg.to_payload(self.users, application_id=self.app_id)

    def _upload_limit(self: FakeDiscord, channel_id: int) -> int:
        channel = self.channels.get(channel_id)
        if channel is None or channel.guild_id is None:
            return self.default_upload_limit
        return max(self.guilds[channel.guild_id].filesize_limit, self.default_upload_limit)

    def _channel(self: FakeDiscord, request: web.Request) -> Channel:
        channel = self.channels.get(_int(request.match_info["channel_id"]))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _channel_message(self: FakeDiscord, request: web.Request) -> PostedMessage:
        channel = self._channel(request)
        msg = self.all_messages.get(_int(request.match_info["message_id"]))
        if msg is None or msg.deleted or msg.ephemeral or msg.channel_id != channel.id:
            raise DiscordError(404, 10008, "Unknown Message")
        return msg

    # ------------------------------------------------------------------ simple reads
    async def _get_gateway(self: FakeDiscord, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self: FakeDiscord, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _get_me(self: FakeDiscord, request: web.Request) -> web.Response:
        user = self.users[self.bot_user_id].payload()
        return json_response({**user, "verified": True, "mfa_enabled": False, "locale": "en-US", "email": None})

    async def _get_user(self: FakeDiscord, request: web.Request) -> web.Response:
        user = self.users.get(_int(request.match_info["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(user.payload())

    async def _get_application(self: FakeDiscord, request: web.Request) -> web.Response:
        owner = User(self.owner_id, "owner")
        return json_response(
            {
                "id": str(self.app_id),
                "name": self.users[self.bot_user_id].username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": owner.payload(),
                "team": None,
                "bot": self.users[self.bot_user_id].payload(),
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "tags": [],
                "approximate_guild_count": len(self.guilds),
                "integration_types_config": {"0": {}},
            }
        )

    async def _get_channel(self: FakeDiscord, request: web.Request) -> web.Response:
        return json_response(self._channel(request).payload(self.users))

    async def _get_guild(self: FakeDiscord, request: web.Request) -> web.Response:
        guild = self._guild(request)
        out = guild.base_payload()
        out.update({"approximate_member_count": len(guild.members), "approximate_presence_count": 0})
        return json_response(out)

    async def _get_guild_channels(self: FakeDiscord, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([self.channels[c].payload() for c in guild.channel_ids])

    async def _get_guild_roles(self: FakeDiscord, request: web.Request) -> web.Response:
        return json_response([r.payload() for r in self._guild(request).roles.values()])

    async def _get_member(self: FakeDiscord, request: web.Request) -> web.Response:
        guild = self._guild(request)
        uid = _int(request.match_info["user_id"])
        member = guild.members.get(uid)
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return json_response(member.payload(self.users[uid]))

    def _guild(self: FakeDiscord, request: web.Request) -> Any:
        guild = self.guilds.get(_int(request.match_info["guild_id"]))
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def _typing(self: FakeDiscord, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def _create_dm(self: FakeDiscord, request: web.Request) -> web.Response:
        payload, _ = await self._read_payload(request)
        uid = _int(str(payload.get("recipient_id", "")))
        if uid not in self.users:
            raise DiscordError(400, 50033, "Invalid Recipient(s)")
        return json_response(self.dm_channel(uid).payload(self.users))

    # ------------------------------------------------------------------ commands
    def _command_scope(self: FakeDiscord, request: web.Request) -> str:
        if _int(request.match_info["application_id"]) != self.app_id:
            raise DiscordError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return "global"
        if _int(guild_id) not in self.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return str(_int(guild_id))

    def _command_objects(self: FakeDiscord, scope: str) -> list[Json]:
        out = []
        for cmd in self.commands.get(scope, []):
            key = (scope, int(cmd.get("type", 1)), str(cmd.get("name")))
            cid = self._command_ids.setdefault(key, self.snowflakes.next())
            obj = {
                "type": 1,
                "description": "",
                "default_member_permissions": None,
                "nsfw": False,
                **cmd,
                "id": str(cid),
                "application_id": str(self.app_id),
                "version": str(cid),
            }
            if obj["default_member_permissions"] is not None:
                obj["default_member_permissions"] = str(obj["default_member_permissions"])
            if scope != "global":
                obj["guild_id"] = scope
            out.append(obj)
        return out

    async def _get_commands(self: FakeDiscord, request: web.Request) -> web.Response:
        return json_response(self._command_objects(self._command_scope(request)))

    async def _put_commands(self: FakeDiscord, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = await request.read()
        commands = self._loads(body) if body else []
        validate_commands(commands)
        self.commands[scope] = commands
        self.sync_calls += 1
        return json_response(self._command_objects(scope))

    # ------------------------------------------------------------------ channel messages
    async def _create_message(self: FakeDiscord, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel.type == 1 and channel.recipient_id in self.dm_closed:
            raise DiscordError(403, 50007, "Cannot send messages to this user")
        payload, uploads = await self._read_payload(request)
        self._validate_message(payload, files=len(uploads))
        nonce = payload.get("nonce")
        now = self.clock()
        if nonce is not None and payload.get("enforce_nonce"):
            seen = self._nonces.get((channel.id, str(nonce)))
            if seen is not None and now - seen[1] <= self.nonce_window and not seen[0].deleted:
                self.nonce_hits += 1
                return json_response(self._message_payload(seen[0]))
        files = self._store_files(payload, uploads, channel.id, self._upload_limit(channel.id))
        flags = int(payload.get("flags") or 0) & _CREATE_FLAGS
        msg = self._new_message(payload, files, channel_id=channel.id, kind="channel", flags=flags)
        if nonce is not None and payload.get("enforce_nonce"):
            self._nonces[(channel.id, str(nonce))] = (msg, now)
        self.messages.append(msg)
        return json_response(self._message_payload(msg))

    async def _get_message(self: FakeDiscord, request: web.Request) -> web.Response:
        return json_response(self._message_payload(self._channel_message(request)))

    async def _edit_message(self: FakeDiscord, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        payload, uploads = await self._read_payload(request)
        self._apply_edit(msg, payload, uploads)
        self.edits.append((msg.id, payload))
        return json_response(self._message_payload(msg))

    async def _delete_message(self: FakeDiscord, request: web.Request) -> web.Response:
        msg = self._channel_message(request)
        self._delete(msg)
        return web.Response(status=204)

    def _delete(self: FakeDiscord, msg: PostedMessage) -> None:
        msg.deleted = True
        self.deleted.append(msg.id)
        if not msg.ephemeral:
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            self._dispatch_message_event("MESSAGE_DELETE", msg, data)

    async def _list_messages(self: FakeDiscord, request: web.Request) -> web.Response:
        channel = self._channel(request)
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
        except ValueError as exc:
            raise field_error(["limit"], "NUMBER_TYPE_COERCE", "Value is not int.") from exc
        if not 1 <= limit <= 100:
            raise field_error(["limit"], "NUMBER_TYPE_MAX", "Must be between 1 and 100.")
        visible = sorted(
            (m for m in self.all_messages.values() if m.channel_id == channel.id and not m.deleted and not m.ephemeral),
            key=lambda m: m.id,
        )
        if "around" in q:
            around = _int(q["around"])
            older = [m for m in visible if m.id <= around][-((limit + 1) // 2) :]
            newer = [m for m in visible if m.id > around][: limit - len(older)]
            picked = older + newer
        elif "after" in q:
            after = _int(q["after"])
            picked = [m for m in visible if m.id > after][:limit]
        else:
            before = _int(q["before"]) if "before" in q else None
            picked = [m for m in visible if before is None or m.id < before][-limit:]
        # Like Discord: history does not (reliably) carry a message's nonce; only the create answer and the
        # MESSAGE_CREATE event echo it. Recovery must not depend on it.
        return json_response([_without_nonce(self._message_payload(m)) for m in reversed(picked)])

    # ------------------------------------------------------------------ interactions
    async def _callback(self: FakeDiscord, request: web.Request) -> web.Response:
        inter = self.interactions_by_id.get(_int(request.match_info["interaction_id"]))
        if inter is None:
            raise DiscordError(404, 10062, "Unknown interaction")
        if request.match_info["interaction_token"] != inter.token:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        payload, uploads = await self._read_payload(request)
        if inter.callback is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        now = self.clock()
        if self.callback_deadline is not None and now - inter.created_at > self.callback_deadline:
            inter.late_callbacks += 1
            raise DiscordError(404, 10062, "Unknown interaction")
        ctype = payload.get("type")
        if ctype not in _ALLOWED_CALLBACKS.get(inter.type, set()):
            raise field_error(["type"], "INTERACTION_RESPONSE_TYPE_INVALID", f"Invalid response type {ctype!r}")
        data = payload.get("data") or {}
        resource: Json = {"type": ctype}
        if ctype == 4:
            self._validate_message(data, files=len(uploads))
            files = self._store_files(data, uploads, inter.channel_id, self._interaction_limit(inter))
            flags = int(data.get("flags") or 0) & (_CREATE_FLAGS | FLAG_EPHEMERAL)
            mtype = 20 if inter.type == 2 else 0
            inter.original = self._new_message(
                data,
                files,
                channel_id=inter.channel_id,
                kind="interaction",
                flags=flags,
                interaction=inter,
                message_type=mtype,
            )
        elif ctype == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            mtype = 20 if inter.type == 2 else 0
            inter.original = self._new_message(
                {},
                [],
                channel_id=inter.channel_id,
                kind="interaction",
                flags=flags,
                interaction=inter,
                message_type=mtype,
            )
        elif ctype in (6, 7):
            source = self.all_messages.get(int(inter.payload.get("message", {}).get("id", 0)))
            if source is None:
                raise DiscordError(400, 50035, "Invalid Form Body")
            if ctype == 7:
                self._apply_edit(source, data, uploads)
            inter.original = source
        elif ctype == 8:
            validate_choices_response(data)
        elif ctype == 9:
            for key in ("custom_id", "title", "components"):
                if not data.get(key):
                    raise field_error(["data", key], "BASE_TYPE_REQUIRED", "This field is required")
        inter.callback = payload
        inter.callback_at = now
        inter.callback_files = [(name, blob) for _, name, blob in uploads]
        if inter.original is not None and ctype in (4, 5, 7):
            resource["message"] = self._message_payload(inter.original)
        self._notify()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        orig = inter.original
        return json_response(
            {
                "interaction": {
                    "id": str(inter.id),
                    "type": inter.type,
                    "activity_instance_id": None,
                    "response_message_id": str(orig.id) if orig and ctype in (4, 5) else None,
                    "response_message_loading": ctype == 5,
                    "response_message_ephemeral": bool(orig and orig.ephemeral and ctype in (4, 5)),
                },
                "resource": resource,
            }
        )

    def _interaction_limit(self: FakeDiscord, inter: Interaction) -> int:
        return int(inter.payload.get("attachment_size_limit", self.default_upload_limit))

    def _webhook_interaction(self: FakeDiscord, request: web.Request) -> Interaction:
        inter = self.interactions_by_token.get(request.match_info["webhook_token"])
        if _int(request.match_info["webhook_id"]) != self.app_id or inter is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if self.clock() - inter.created_at > self.interaction_token_ttl:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if inter.callback is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        return inter

    async def _create_followup(self: FakeDiscord, request: web.Request) -> web.Response:
        inter = self._webhook_interaction(request)
        payload, uploads = await self._read_payload(request)
        self._validate_message(payload, files=len(uploads))
        orig = inter.original
        if orig is not None and orig.flags & FLAG_LOADING and inter.callback_type == 5:
            # After a deferred (thinking) response the first followup replaces the loading message.
            self._apply_edit(orig, payload, uploads)
            # Record what was posted; the original itself keeps changing with later edits.
            msg = copy.copy(orig)
            msg.payload, msg.kind, msg.edits, msg.files = payload, "followup", [], list(orig.files)
        else:
            files = self._store_files(payload, uploads, inter.channel_id, self._interaction_limit(inter))
            flags = int(payload.get("flags") or 0) & (_CREATE_FLAGS | FLAG_EPHEMERAL)
            msg = self._new_message(
                payload, files, channel_id=inter.channel_id, kind="followup", flags=flags, interaction=inter
            )
        inter.followups.append(msg)
        self.followups.append(msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(self._message_payload(msg))
        return web.Response(status=204)

    async def _webhook_message(self: FakeDiscord, request: web.Request) -> web.Response:
        inter = self._webhook_interaction(request)
        raw_id = request.match_info.get("message_id")
        if raw_id is None:  # @original
            msg = inter.original
        else:
            mid = _int(raw_id)
            candidates = [*inter.followups, *([inter.original] if inter.original else [])]
            msg = next((m for m in candidates if m.id == mid), None)
        if msg is None or msg.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(self._message_payload(msg))
        if request.method == "DELETE":
            self._delete(msg)
            return web.Response(status=204)
        payload, uploads = await self._read_payload(request)
        self._apply_edit(msg, payload, uploads)
        if raw_id is None:
            self.original_edits.append(payload)
            inter.original_edits.append(payload)
        else:
            self.webhook_edits.append((msg.id, payload))
        return json_response(self._message_payload(msg))

    # ------------------------------------------------------------------ attachments (not under /api)
    async def _download(self: FakeDiscord, request: web.Request) -> web.StreamResponse:
        stored = self.files.get(_int(request.match_info["attachment_id"]))
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(stored.id)
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})


def _without_nonce(payload: Json) -> Json:
    payload.pop("nonce", None)
    return payload


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise field_error(["id"], "NUMBER_TYPE_COERCE", f"Value {value!r} is not snowflake.") from exc
