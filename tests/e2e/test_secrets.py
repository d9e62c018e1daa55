"""No secret leaves the bot: a full run with faults at DEBUG, in both log formats, in process and as `python -m bot`.

The run: a video delivered; Flow tokens expired so the next call gets 401 and forces a refresh, which also
rotates the session cookie; a failed generation; unreadable status responses; `/veo-admin credits`; an unexpected
error in a command; the cookies expiring (queue held, admin alerted by DM); an admin uploading a broken export,
then a new (chunked) one that resumes the queue. Afterwards no bearer token the
emulator issued, no cookie value of any cookie file written, and not the Discord token may appear in the logs,
in anything posted to the fake Discord (content, embeds, components, edits, callbacks), or in any exception.
The same for Veo on Vertex AI, whose run ends with its API key in none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import secrets
import signal
import sqlite3
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.logs import setup_logging
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings, make_vertex_settings, running_bot
from tests.e2e.procs import bot_env, start_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome
from tests.fakes.vertex_emulator import Ending, VertexEmulator
from tests.fakes.vertex_emulator import Fault as VertexFault
from tests.vertex_helpers import SDK_ENV

FAIL = "FAILME"


@pytest.fixture
async def fd() -> AsyncIterator[FakeDiscord]:
    """The fake with a token no built-in pattern would catch: only real care keeps it out of the output."""
    async with FakeDiscord(token="veo-test-bot-token-" + secrets.token_hex(12)) as fake:
        for uid, name in ((USER_ID, "user"), (OTHER_ID, "other"), (ADMIN_ID, "admin")):
            fake.add_user(uid, name)
        yield fake


class Secrets:
    """Every secret that existed during the run, gathered from the emulator's state and the files written."""

    def __init__(self, emu: FlowEmulator, discord_token: str) -> None:
        self.emu = emu
        self.tokens: set[str] = set()
        self.cookies: set[str] = set()
        self.discord_token = discord_token

    def add_file(self, path: Path) -> None:
        raw = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(e["name"], e["value"]) for e in raw] if isinstance(raw, list) else list(raw.items())
        for name, value in pairs:
            if name.lower() == "authorization":
                self.tokens.add(value.removeprefix("Bearer ").strip())
            else:
                self.cookies.add(value)
        chunks = [v for n, v in sorted(pairs) if n.startswith("__Secure-next-auth.session-token.")]
        if chunks:
            self.cookies.add("".join(chunks))

    def update(self, *files: Path) -> None:
        """Call before anything that forgets secrets (expire_tokens) and at the end."""
        self.tokens.update(self.emu._tokens)  # every bearer issued and still registered
        self.cookies.add(self.emu.session_cookie)
        for record in self.emu.requests:
            auth = record.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                self.tokens.add(auth[7:].strip())
            for part in record.headers.get("cookie", "").split(";"):
                _, sep, value = part.strip().partition("=")
                if sep:
                    self.cookies.add(value)
        for path in files:
            self.add_file(path)

    def all(self) -> dict[str, str]:
        """Each secret with a label; values shorter than 8 characters (like "1") are not secrets."""
        found = {f"token {t[:10]}…": t for t in self.tokens if len(t) >= 8}
        found.update({f"cookie {c[:10]}…": c for c in self.cookies if len(c) >= 8})
        found["discord token"] = self.discord_token
        return found


def assert_clean(where: str, text: str, known: Secrets) -> None:
    leaked = [label for label, value in known.all().items() if value in text]
    assert not leaked, f"{where} contains {leaked}"


def discord_output(fd: FakeDiscord) -> str:
    """Everything the bot sent to Discord, as one text."""
    parts: list[Any] = []
    for msg in fd.all_messages.values():
        parts.append([msg.content, msg.embeds, msg.components, msg.edits, [name for name, _ in msg.attachments]])
    parts.extend(edit for _, edit in fd.edits)
    parts.extend(fd.original_edits)
    parts.extend(edit for _, edit in fd.webhook_edits)
    parts.extend(i.callback for i in fd.interactions)
    return json.dumps(parts, ensure_ascii=False, default=str)


async def wait_answer(fd: FakeDiscord, i: Any, timeout: float = 10) -> str:
    """The text a user finally sees: the callback, or the followup after a deferral."""
    cb = await fd.wait_callback(i)
    if cb["type"] == 5:
        await fd.wait_until(lambda: i.followups, timeout=timeout, what="followup")
        return i.followups[0].content
    return cb["data"].get("content", "")


async def full_run(emu: FlowEmulator, fd: FakeDiscord, tmp_path: Path, known: Secrets) -> None:
    """Drive the whole scenario through the fakes only (works for a bot in process or in a subprocess)."""
    cookie = tmp_path / "cookie.json"
    known.update(cookie)

    def videos() -> int:
        return len([m for m in fd.messages if m.attachments])

    async def prompt(text: str) -> None:
        i = await fd.send_command("veo", "prompt", {"text": text}, user_id=USER_ID)
        await fd.wait_callback(i)

    await prompt("a calm lake at dawn")
    await fd.wait_until(lambda: videos() == 1, timeout=20, what="first video")

    # Every token dies: the next Flow call gets 401, the bot refreshes and the session cookie rotates.
    known.update(cookie)
    emu.expire_tokens()
    emu.rotate_cookie = True
    await prompt("a windy meadow")
    await fd.wait_until(lambda: videos() == 2, timeout=20, what="video after the 401")
    emu.rotate_cookie = False
    known.update(cookie)
    assert len(emu.calls("session")) >= 1

    # A failed generation and unreadable status answers on the way.
    emu.inject("status", Fault.wrong_shape(), times=1)
    emu.inject("status", Fault.malformed(), times=1)
    await prompt(f"a storm {FAIL}")
    await fd.wait_until(
        lambda: any(not m.attachments and m.channel_id == fd.channel_id for m in fd.messages),
        timeout=20,
        what="failure notice",
    )

    i = await fd.send_command("veo-admin", "credits", user_id=ADMIN_ID)
    assert "credits" in (await wait_answer(fd, i)).lower()

    # An unexpected error inside a command: Discord refuses the first answer.
    fd.inject("POST", "/interactions/{interaction_id}/{interaction_token}/callback", 400, times=1)
    i = await fd.send_command("veo", "status", user_id=USER_ID)
    assert "error id" in await wait_answer(fd, i)

    # The cookies die: the refresh fails, the queue is held and the admin gets a DM.
    known.update(cookie)
    emu.expire_tokens()
    emu.inject("session", Fault.refresh_needed(), times=None)
    await prompt("after the cookies expired")
    await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=20, what="the admin alert")
    emu.clear_faults()

    # The admin uploads a broken export, then a good one (chunked session cookie, fresh token).
    upload = tmp_path / "upload.json"
    emu.write_cookie_file(upload, chunked=True)
    known.update(cookie, upload)
    broken = json.loads(upload.read_text())
    for entry in broken:
        if entry["name"] == "authorization":
            entry["value"] = "Token " + entry["value"].removeprefix("Bearer ")
    for blob, expected in ((json.dumps(broken).encode(), "nothing was changed"), (upload.read_bytes(), "resumed")):
        i = await fd.send_command(
            "veo-admin", "reload", user_id=ADMIN_ID, attachments={"file": ("cookie.json", blob, "application/json")}
        )
        assert expected in (await wait_answer(fd, i)).lower()
    await fd.wait_until(lambda: videos() == 3, timeout=20, what="video with the uploaded credentials")
    known.update(cookie)


def database_text(path: Path) -> str:
    """Every row of every table: what `/veo status` or a later admin could ever be shown."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return json.dumps({t: conn.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}, default=str)
    finally:
        conn.close()


class ExceptionCollector(logging.Handler):
    """Keeps the raw (unredacted) exceptions attached to log records, with their causes and contexts."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.add(record.exc_info[1])

    def add(self, exc: BaseException) -> None:
        self.texts.append("".join(traceback.format_exception(exc)))
        seen: set[int] = set()
        stack: list[BaseException | None] = [exc]
        while stack:
            current = stack.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            self.texts.append(f"{type(current).__name__}: {current!s} {current!r} {current.args!r}")
            stack.extend([current.__cause__, current.__context__])


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_full_run_in_process_leaks_nothing(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path, fmt: str
) -> None:
    emu.outcome_for(FAIL, Outcome.failed())
    known = Secrets(emu, fd.token)
    stream = io.StringIO()
    redactor = setup_logging("DEBUG", fmt, stream=stream)
    redactor.add_provider(lambda: [fd.token])  # as bot.__main__.run_bot registers it
    collector = ExceptionCollector()
    logging.getLogger().addHandler(collector)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), BaseException):
            collector.add(context["exception"])
        collector.texts.append(str(context.get("message", "")))

    loop.set_exception_handler(on_loop_error)
    try:
        settings = make_settings(tmp_path, emu, fd, veo_log_level="DEBUG", veo_log_format=fmt)
        async with running_bot(settings, fd, redactor) as bot:
            await full_run(emu, fd, tmp_path, known)
            await bot.worker.drain()
            known.update(cookie_file)
            reprs = [repr(bot.credentials), str(bot.credentials), repr(bot.settings), str(bot.settings)]
            reprs += [repr(bot.credentials.session), repr(bot.flow)]
        known.update(cookie_file)
    finally:
        loop.set_exception_handler(previous)

    logs = stream.getvalue()
    assert logs.count("\n") > 20, "expected a DEBUG-level log of the run"
    assert "unexpected error" in logs and "Traceback" in logs, "the unexpected error should be logged in full"
    if fmt == "json":
        for line in logs.splitlines():
            json.loads(line)
    assert len(known.tokens) >= 3 and len(known.cookies) >= 5
    assert_clean("the log", logs, known)
    assert_clean("what was posted to Discord", discord_output(fd), known)
    assert_clean("the reprs of settings, credentials, session and client", "\n".join(reprs), known)
    assert_clean("the database", await asyncio.to_thread(database_text, settings.database_path), known)
    assert collector.texts, "expected exceptions during a run with faults"
    for text in collector.texts:
        assert_clean("an exception", text, known)


async def test_full_run_as_a_subprocess_leaks_nothing(tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord) -> None:
    emu.outcome_for(FAIL, Outcome.failed())
    emu.write_cookie_file(tmp_path / "cookie.json")
    known = Secrets(emu, fd.token)
    env = bot_env(tmp_path, emu, fd, VEO_LOG_LEVEL="DEBUG", VEO_LOG_FORMAT="json")
    env["VEO_ADMIN_USER_IDS"] = str(ADMIN_ID)
    proc = await start_bot(tmp_path, env, "bot.log")
    try:
        await fd.wait_until(lambda: fd.identify_count >= 1 and fd.sync_calls >= 1, timeout=20, what="bot ready")
        await full_run(emu, fd, tmp_path, known)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
    known.update(tmp_path / "cookie.json")
    logs = (tmp_path / "bot.log").read_text(encoding="utf-8")
    lines = logs.splitlines()
    assert len(lines) > 20
    for line in lines:
        json.loads(line)
    assert any(json.loads(line)["level"] == "DEBUG" for line in lines)
    assert_clean("the subprocess log", logs, known)
    assert_clean("what was posted to Discord", discord_output(fd), known)


# --- Veo on Vertex AI: the API key ------------------------------------------------------------------------------


class VertexSecrets(Secrets):
    """The Vertex AI API key (no pattern gives it away) and the Discord token."""

    def __init__(self, vemu: VertexEmulator, discord_token: str) -> None:
        self.vemu = vemu
        self.tokens = {vemu.api_key, vemu.bearer_token}
        self.cookies = set()
        self.discord_token = discord_token

    def update(self, *files: Path) -> None:
        pass


async def vertex_full_run(vemu: VertexEmulator, fd: FakeDiscord) -> None:
    """A video; a filtered one; a prompt blocked at submit; a 429 then a 500 after accepting; an unreadable poll;
    a 401 that holds the queue (admin alerted) and `/veo-admin reload` that lifts it; `/veo-admin credits`;
    an unexpected error in a command."""

    def channel_posts() -> int:
        return len([m for m in fd.messages if m.channel_id == fd.channel_id])

    async def prompt(text: str, user_id: int = USER_ID) -> None:
        i = await fd.send_command("veo", "prompt", {"text": text}, user_id=user_id)
        await fd.wait_callback(i)

    vemu.ending_for(FAIL, Ending.filtered())
    await prompt("a calm lake at dawn")
    await fd.wait_until(lambda: channel_posts() == 1, timeout=20, what="first video")
    await prompt(f"a storm {FAIL}")
    await fd.wait_until(lambda: channel_posts() == 2, timeout=20, what="the filter notice")
    vemu.inject("submit", VertexFault.usage_guidelines())
    await prompt("a blocked prompt")
    await fd.wait_until(lambda: channel_posts() == 3, timeout=20, what="the blocked notice")
    vemu.inject("submit", VertexFault.rate_limited("0.01s"))
    vemu.inject("submit", VertexFault.server_error(500, accept=True))
    await prompt("an unconfirmed prompt", user_id=OTHER_ID)
    await fd.wait_until(lambda: channel_posts() == 4, timeout=20, what="the unconfirmed notice")
    vemu.inject("poll", VertexFault.garbage())
    await prompt("after a garbled poll", user_id=OTHER_ID)
    await fd.wait_until(lambda: channel_posts() == 5, timeout=20, what="the video after a garbled poll")

    i = await fd.send_command("veo-admin", "credits", user_id=ADMIN_ID)
    assert "estimated spend" in (await wait_answer(fd, i)).lower()
    fd.inject("POST", "/interactions/{interaction_id}/{interaction_token}/callback", 400, times=1)
    i = await fd.send_command("veo", "status", user_id=USER_ID)
    assert "error id" in await wait_answer(fd, i)

    vemu.inject("submit", VertexFault.unauthorized())
    await prompt("after the key was refused")
    await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=20, what="the admin alert")
    i = await fd.send_command("veo-admin", "reload", user_id=ADMIN_ID)
    assert "resumed" in (await wait_answer(fd, i)).lower()
    await fd.wait_until(lambda: channel_posts() == 6, timeout=20, what="the video after the reload")


@pytest.fixture
async def secret_vemu(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VertexEmulator]:
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    key = "vertex-key-" + secrets.token_hex(16)  # not shaped like a Google key: only real care hides it
    async with VertexEmulator(api_key=key, polls_to_finish=2) as emulator:
        yield emulator


@pytest.mark.usefixtures("root_logging")
async def test_vertex_full_run_in_process_leaks_no_api_key(
    tmp_path: Path, secret_vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    known = VertexSecrets(secret_vemu, fd.token)
    stream = io.StringIO()
    redactor = setup_logging("DEBUG", "text", stream=stream)
    redactor.add_provider(lambda: [fd.token])
    collector = ExceptionCollector()
    logging.getLogger().addHandler(collector)
    settings = make_vertex_settings(tmp_path, secret_vemu, fd, veo_log_level="DEBUG")
    async with running_bot(settings, fd, redactor) as bot:
        await vertex_full_run(secret_vemu, fd)
        await bot.worker.drain()
        reprs = [repr(bot.settings), str(bot.settings), repr(bot.backend), str(bot.backend)]
    logs = stream.getvalue()
    assert logs.count("\n") > 20 and "Traceback" in logs, "expected a DEBUG-level log with the unexpected error"
    assert {r.auth for r in secret_vemu.requests} == {"api_key"}
    assert_clean("the log", logs, known)
    assert_clean("what was posted to Discord", discord_output(fd), known)
    assert_clean("the reprs of settings and backend", "\n".join(reprs), known)
    assert_clean("the database", await asyncio.to_thread(database_text, settings.database_path), known)
    assert collector.texts, "expected exceptions during a run with faults"
    for text in collector.texts:
        assert_clean("an exception", text, known)


async def test_vertex_full_run_as_a_subprocess_leaks_no_api_key(
    tmp_path: Path, secret_vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    known = VertexSecrets(secret_vemu, fd.token)
    env = bot_env(tmp_path, secret_vemu, fd, VEO_LOG_LEVEL="DEBUG", VEO_LOG_FORMAT="json")
    env["VEO_ADMIN_USER_IDS"] = str(ADMIN_ID)
    proc = await start_bot(tmp_path, env, "bot.log")
    try:
        await fd.wait_until(lambda: fd.identify_count >= 1 and fd.sync_calls >= 1, timeout=20, what="bot ready")
        await vertex_full_run(secret_vemu, fd)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
    logs = (tmp_path / "bot.log").read_text(encoding="utf-8")
    lines = logs.splitlines()
    assert len(lines) > 20 and any(json.loads(line)["level"] == "DEBUG" for line in lines)
    assert_clean("the subprocess log", logs, known)
    assert_clean("what was posted to Discord", discord_output(fd), known)
    assert_clean("the database", await asyncio.to_thread(database_text, tmp_path / "data" / "veo.sqlite3"), known)
