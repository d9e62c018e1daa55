"""The fake gateway: HELLO, IDENTIFY/READY, RESUME with replay, heartbeats, INVALID_SESSION, dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.fakes._discord_models import (
    API_VERSION,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    PRIVILEGED_INTENTS,
    Json,
    PostedMessage,
    dumps,
    iso,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11
_ALL_INTENTS = (1 << 26) - 1


@dataclass
class _Close:
    code: int
    reason: str


@dataclass(eq=False)
class GatewayConnection:
    """One websocket: a writer task drains `queue` so sync code can enqueue frames."""

    ws: web.WebSocketResponse
    path: str
    query: dict[str, str]
    queue: asyncio.Queue[str | _Close] = field(default_factory=asyncio.Queue)
    session: GatewaySession | None = None
    ready: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    closing: bool = False

    def send_op(self, op: int, data: Any) -> None:
        self.queue.put_nowait(dumps({"op": op, "d": data, "s": None, "t": None}))

    def close(self, code: int, reason: str = "") -> None:
        self.queue.put_nowait(_Close(code, reason))


@dataclass(eq=False)
class GatewaySession:
    id: str
    intents: int
    seq: int = 0
    delivered: int = 0
    history: list[tuple[int, str, Callable[[], None] | None]] = field(default_factory=list)
    connection: GatewayConnection | None = None
    valid: bool = True


class GatewayMixin:
    """Gateway half of FakeDiscord; state lives on the FakeDiscord instance."""

    def _gateway_init(self: FakeDiscord) -> None:
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0
        self.failed_resumes = 0
        self.gateway_connects: list[tuple[str, dict[str, str]]] = []
        self.gateway_closes: list[int | None] = []
        self.presence_updates: list[Json] = []
        self.identify_payloads: list[Json] = []
        self.sessions: dict[str, GatewaySession] = {}
        self._current_session: GatewaySession | None = None
        self._connections: set[GatewayConnection] = set()
        self._gateway_paused = False

    # ------------------------------------------------------------------ public surface
    @property
    def gateway_paused(self: FakeDiscord) -> bool:
        return self._gateway_paused

    @gateway_paused.setter
    def gateway_paused(self: FakeDiscord, value: bool) -> None:
        self._gateway_paused = value
        if not value:
            for session in self.sessions.values():
                self._flush(session)

    @property
    def is_ready(self: FakeDiscord) -> bool:
        """A session is live: its socket is open and READY (or RESUMED) has been sent on it."""
        s = self._current_session
        return bool(s and s.valid and s.connection and s.connection.ready and not s.connection.closed.is_set())

    @property
    def intents(self: FakeDiscord) -> int | None:
        return self._current_session.intents if self._current_session else None

    async def wait_ready(self: FakeDiscord, timeout: float = 10) -> None:
        await self.wait_until(lambda: self.is_ready, timeout=timeout, what="a READY gateway session")

    async def drop_connection(self: FakeDiscord, code: int = 4000, *, timeout: float = 10) -> None:
        """Close the live socket with a resumable code; the session stays, so the client RESUMEs."""
        conn = self._live_connection()
        conn.close(code, "fake: connection dropped")
        await asyncio.wait_for(conn.closed.wait(), timeout)

    async def invalidate_session(self: FakeDiscord, resumable: bool = False, *, timeout: float = 10) -> None:
        """Send op 9. Not resumable: the session is gone and the client must IDENTIFY again."""
        conn = self._live_connection()
        session = conn.session
        assert session is not None
        if not resumable:
            session.valid = False
            if self._current_session is session:
                self._current_session = None
        conn.send_op(OP_INVALID_SESSION, resumable)
        self._notify()
        await asyncio.wait_for(conn.closed.wait(), timeout)

    async def send_reconnect(self: FakeDiscord, *, timeout: float = 10) -> None:
        """Send op 7 RECONNECT: the client closes and RESUMEs."""
        conn = self._live_connection()
        conn.send_op(OP_RECONNECT, None)
        await asyncio.wait_for(conn.closed.wait(), timeout)

    def dispatch_event(self: FakeDiscord, event: str, data: Json) -> bool:
        """Dispatch any event to the current session (held while paused or disconnected, replayed on RESUME)."""
        return self._dispatch(event, data)

    # ------------------------------------------------------------------ internals
    def _live_connection(self: FakeDiscord) -> GatewayConnection:
        s = self._current_session
        if s is None or s.connection is None or s.connection.closed.is_set():
            raise RuntimeError("no live gateway connection")
        return s.connection

    def _dispatch(
        self: FakeDiscord,
        event: str,
        data: Json,
        *,
        session: GatewaySession | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> bool:
        session = session or self._current_session
        if session is None or not session.valid:
            return False
        session.seq += 1
        frame = dumps({"op": OP_DISPATCH, "d": data, "s": session.seq, "t": event})
        session.history.append((session.seq, frame, on_sent))
        self._flush(session)
        return True

    def _dispatch_message_event(self: FakeDiscord, event: str, msg: PostedMessage, data: Json) -> None:
        """MESSAGE_* events only reach sessions whose intents ask for them."""
        s = self._current_session
        if s is None:
            return
        needed = INTENT_DIRECT_MESSAGES if msg.guild_id is None else INTENT_GUILD_MESSAGES
        if s.intents & needed and not msg.ephemeral:
            if msg.guild_id is not None:
                data = {**data, "guild_id": str(msg.guild_id)}
            self._dispatch(event, data)

    def _flush(self: FakeDiscord, session: GatewaySession) -> None:
        conn = session.connection
        if conn is None or conn.closed.is_set() or self._gateway_paused or not session.valid:
            return
        # history[k] carries seq k + 1, so everything after `delivered` is a plain slice.
        for seq, frame, on_sent in session.history[session.delivered :]:
            conn.queue.put_nowait(frame)
            session.delivered = seq
            if on_sent is not None:
                on_sent()
        self._notify()

    async def _ws_handler(self: FakeDiscord, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        conn = GatewayConnection(ws=ws, path=request.path, query=dict(request.query))
        self._connections.add(conn)
        self.gateway_connects.append((request.path, dict(request.query)))
        writer = asyncio.create_task(self._ws_writer(conn), name="fake-discord-ws-writer")
        try:
            if request.query.get("encoding", "json") != "json" or request.query.get("v") not in (None, "10", "9"):
                conn.close(4012, "Invalid API version or encoding")
            else:
                conn.send_op(OP_HELLO, {"heartbeat_interval": int(self.heartbeat_interval * 1000)})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        payload = json.loads(msg.data)
                    except ValueError:
                        conn.close(4002, "Error while decoding payload.")
                        continue
                    self._on_op(conn, payload)
                elif msg.type is WSMsgType.BINARY:
                    conn.close(4002, "Error while decoding payload.")
        finally:
            conn.closed.set()
            if conn.closing and not writer.done():
                # A close we started: let the writer finish the closing handshake.
                await asyncio.wait({writer}, timeout=5)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if not conn.closing:
                conn.close_code = ws.close_code
            self._connections.discard(conn)
            self.gateway_closes.append(conn.close_code)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            self._notify()
        return ws

    async def _ws_writer(self: FakeDiscord, conn: GatewayConnection) -> None:
        while True:
            item = await conn.queue.get()
            if isinstance(item, _Close):
                conn.closing = True
                conn.close_code = item.code
                conn.closed.set()
                self._notify()
                await conn.ws.close(code=item.code, message=item.reason.encode())
                return
            try:
                await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    def _on_op(self: FakeDiscord, conn: GatewayConnection, payload: Any) -> None:
        if not isinstance(payload, dict):
            conn.close(4002, "Error while decoding payload.")
            return
        op = payload.get("op")
        data = payload.get("d")
        if op == OP_HEARTBEAT:
            self.heartbeat_count += 1
            conn.send_op(OP_HEARTBEAT_ACK, None)
            self._notify()
        elif op == OP_IDENTIFY:
            self._on_identify(conn, data or {})
        elif op == OP_RESUME:
            self._on_resume(conn, data or {})
        elif conn.session is None:
            conn.close(4003, "Not authenticated.")
        elif op == OP_PRESENCE:
            self.presence_updates.append(data)
        elif op == OP_REQUEST_MEMBERS:
            self._on_request_members(conn, data or {})
        elif op == OP_VOICE:
            pass
        else:
            conn.close(4001, "Unknown opcode.")

    def _on_identify(self: FakeDiscord, conn: GatewayConnection, data: Json) -> None:
        if conn.session is not None:
            conn.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            conn.close(4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents & ~_ALL_INTENTS:
            conn.close(4013, "Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents_enabled:
            conn.close(4014, "Disallowed intent(s).")
            return
        redacted = {k: v for k, v in data.items() if k != "token"}
        self.identify_payloads.append(redacted)
        self.identify_count += 1
        session = GatewaySession(id=secrets.token_hex(16), intents=intents)
        self.sessions[session.id] = session
        if self._current_session is not None:
            self._current_session.valid = False
        self._current_session = session
        conn.session = session
        session.connection = conn
        self._dispatch("READY", self._ready_payload(session, data), session=session)
        conn.ready = True
        for guild in self.guilds.values():
            self._dispatch("GUILD_CREATE", self._guild_create_payload(guild), session=session)
        self._notify()

    def _on_resume(self: FakeDiscord, conn: GatewayConnection, data: Json) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self.token:
            conn.close(4004, "Authentication failed.")
            return
        if session is None or not session.valid or session is not self._current_session:
            self.failed_resumes += 1
            conn.send_op(OP_INVALID_SESSION, False)
            self._notify()
            return
        old = session.connection
        if old is not None and old is not conn and not old.closed.is_set():
            old.close(4000, "Session resumed elsewhere")
        conn.session = session
        session.connection = conn
        seq = data.get("seq")
        session.delivered = seq if isinstance(seq, int) else 0
        self.resume_count += 1
        self._flush(session)
        self._dispatch("RESUMED", {"_trace": ["fake-discord"]}, session=session)
        conn.ready = True
        self._notify()

    def _on_request_members(self: FakeDiscord, conn: GatewayConnection, data: Json) -> None:
        guild = self.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = data.get("query")
        members = []
        for uid, member in guild.members.items():
            user = self.users[uid]
            if wanted and uid not in wanted:
                continue
            if query and not user.username.startswith(query):
                continue
            members.append(member.payload(user))
        chunk: Json = {
            "guild_id": str(guild.id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in wanted if u not in guild.members],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        self._dispatch("GUILD_MEMBERS_CHUNK", chunk, session=conn.session)

    def _ready_payload(self: FakeDiscord, session: GatewaySession, identify: Json) -> Json:
        out: Json = {
            "v": API_VERSION,
            "user": {**self.users[self.bot_user_id].payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if "shard" in identify:
            out["shard"] = identify["shard"]
        return out

    def _guild_create_payload(self: FakeDiscord, guild: Any) -> Json:
        out = guild.base_payload()
        out.update(
            {
                "unavailable": False,
                "large": False,
                "lazy": True,
                "joined_at": iso(guild.joined_at),
                "member_count": len(guild.members),
                "members": [m.payload(self.users[uid]) for uid, m in guild.members.items()],
                "channels": [
                    {k: v for k, v in self.channels[c].payload().items() if k != "guild_id"} for c in guild.channel_ids
                ],
                "threads": [],
                "voice_states": [],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        return out
