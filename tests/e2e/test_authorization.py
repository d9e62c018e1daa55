"""Authorization is checked on our side: Discord's permissions can be overridden by any server admin.

Every `/veo-admin` subcommand by a user whose Discord permissions allow everything is refused and changes
nothing (database tables, the cookie file, backend traffic, channel messages), on Flow and on Vertex AI. Other
users' jobs cannot be cancelled, inspected, retried or even seen through commands, autocomplete or buttons.
Admins by role id work.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import VeoBot
from storage import Job, JobState
from tests.e2e.backends import Gen
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings, running_bot
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.flow_emulator import FlowEmulator

EPHEMERAL = 64
EVERYTHING = "2147483647"  # every permission bit Discord has below 1<<31, ADMINISTRATOR included
MANAGE_GUILD = 1 << 5
ADMIN_ROLE = 1300000000000000011
OTHER_ROLE = 1300000000000000012
TABLES = ("jobs", "kv", "events", "quota_overrides")
STUCK = "STUCK"


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}
    finally:
        conn.close()


@dataclass
class World:
    """Everything a refused command must leave as it was."""

    tables: dict[str, list[tuple[Any, ...]]]
    cookie: bytes
    #: Requests to the backend that could change something there (all but status polls).
    flow_requests: int
    channel_posts: int
    edits: int

    @classmethod
    async def capture(cls, bot: VeoBot, emu: FlowEmulator | Gen, fd: FakeDiscord) -> World:
        gen = emu if isinstance(emu, Gen) else Gen("flow", bot.settings.flow_cookie_file.parent, flow=emu)
        secret_file = gen.secret_file
        return cls(
            tables=await asyncio.to_thread(_dump, bot.settings.database_path),
            cookie=secret_file.read_bytes() if secret_file is not None else b"",
            flow_requests=gen.requests_but_polls(),
            channel_posts=len(fd.messages),
            edits=len(fd.edits),
        )


def refusal(cb: dict[str, Any]) -> str:
    assert cb["type"] == 4, cb
    assert cb["data"]["flags"] & EPHEMERAL, cb
    return cb["data"]["content"]


async def run(fd: FakeDiscord, i: Interaction) -> dict[str, Any]:
    """The interaction's whole answer: its callback, or the first followup after a deferral."""
    cb = await fd.wait_callback(i)
    if cb["type"] == 5:
        await fd.wait_until(lambda: i.followups or i.original_edits, what="the deferred answer")
        if i.followups:
            f = i.followups[0]
            return {"type": 4, "data": {"content": f.content, "flags": f.flags}}
        return {"type": 4, "data": {**i.original_edits[0], "flags": cb["data"].get("flags", 0)}}
    return cb


def new_export(gen: Gen, tmp_path: Path) -> bytes:
    """A credentials file an attacker uploads: a Flow cookie export, or a service-account-looking key file."""
    if gen.flow is None:
        return json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----x"}).encode()
    path = tmp_path / "upload.json"
    gen.flow.write_cookie_file(path, fmt="object")
    return path.read_bytes()


ADMIN_CALLS: list[tuple[str, dict[str, Any], bool]] = [
    ("reload", {}, False),
    ("reload", {}, True),
    ("credits", {}, False),
    ("pause", {}, False),
    ("resume", {}, False),
    ("quota", {"user": OTHER_ID, "daily": 500}, False),
    ("quota", {"user": USER_ID, "daily": -1}, False),
]


@pytest.fixture
async def paused_bot(gen: Gen, fd: FakeDiscord) -> AsyncIterator[VeoBot]:
    """A bot whose queue an admin paused and where USER_ID has a quota override: every command could change it."""
    async with running_bot(gen.settings(fd), fd) as bot:
        for sub, options in (("pause", {}), ("quota", {"user": USER_ID, "daily": 3})):
            i = await fd.send_command("veo-admin", sub, options, user_id=ADMIN_ID)
            refusal(await fd.wait_callback(i))
        assert await bot.worker.paused() == "admin"
        assert await bot.store.get_quota_override(USER_ID) == 3
        yield bot


async def test_admin_command_is_hidden_by_default_in_discord(bot: VeoBot, fd: FakeDiscord) -> None:
    """Defence in depth: Discord hides /veo-admin from non-managers unless a server admin overrides it."""
    (cmd,) = [c for c in fd.commands[str(fd.guild_id)] if c["name"] == "veo-admin"]
    assert int(cmd["default_member_permissions"]) == MANAGE_GUILD
    assert cmd.get("contexts") in (None, [0])


async def test_admin_commands_by_a_non_admin_are_refused_and_change_nothing(
    paused_bot: VeoBot, gen: Gen, fd: FakeDiscord, tmp_path: Path
) -> None:
    """Every subcommand in turn, one bot: each must leave the world exactly as the previous one found it."""
    emu = gen
    before = await World.capture(paused_bot, emu, fd)
    for sub, options, upload in ADMIN_CALLS:
        attachments = {"file": ("cookie.json", new_export(gen, tmp_path), "application/json")} if upload else None
        i = await fd.send_command(
            "veo-admin", sub, options, user_id=USER_ID, permissions=EVERYTHING, attachments=attachments
        )
        content = refusal(await run(fd, i))
        assert "admin" in content.lower(), (sub, content)
        assert "credits:" not in content.lower() and "tier" not in content.lower(), (sub, content)
        assert "spend" not in content.lower() and "$" not in content, (sub, content)
        await paused_bot.worker.wait_ticks(2)
        assert await World.capture(paused_bot, emu, fd) == before, f"/veo-admin {sub} by a non-admin changed state"
        assert not i.followups, f"/veo-admin {sub}: a refused command sent more than its refusal"
    assert await paused_bot.worker.paused() == "admin"
    assert await paused_bot.store.get_quota_override(USER_ID) == 3
    assert await paused_bot.store.get_quota_override(OTHER_ID) is None


async def test_non_admin_with_an_admin_looking_role_is_refused(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    fd.add_role(OTHER_ROLE, "Administrator", permissions=EVERYTHING)
    settings = make_settings(tmp_path, emu, fd, veo_admin_role_ids=frozenset({ADMIN_ROLE}))
    async with running_bot(settings, fd) as bot:
        before = await World.capture(bot, emu, fd)
        i = await fd.send_command("veo-admin", "pause", user_id=OTHER_ID, roles=[OTHER_ROLE])
        assert "admin" in refusal(await fd.wait_callback(i)).lower()
        assert await World.capture(bot, emu, fd) == before
        assert await bot.worker.paused() is None


async def test_admin_by_role_id_is_allowed(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    fd.add_role(ADMIN_ROLE, "veo admins", permissions="0")
    settings = make_settings(
        tmp_path, emu, fd, veo_admin_user_ids=frozenset(), veo_admin_role_ids=frozenset({ADMIN_ROLE})
    )
    async with running_bot(settings, fd) as bot:
        i = await fd.send_command("veo-admin", "pause", user_id=USER_ID, roles=[ADMIN_ROLE])
        assert "paused" in refusal(await fd.wait_callback(i)).lower()
        assert await bot.worker.paused() == "admin"
        i = await fd.send_command(
            "veo-admin", "quota", {"user": OTHER_ID, "daily": 7}, user_id=USER_ID, roles=[ADMIN_ROLE]
        )
        refusal(await fd.wait_callback(i))
        assert await bot.store.get_quota_override(OTHER_ID) == 7
        i = await fd.send_command("veo-admin", "credits", user_id=USER_ID, roles=[ADMIN_ROLE])
        assert "credits" in refusal(await run(fd, i)).lower()
        # The same user without the role, whatever Discord says, is not an admin.
        i = await fd.send_command("veo-admin", "resume", user_id=USER_ID, permissions=EVERYTHING)
        assert "admin" in refusal(await fd.wait_callback(i)).lower()
        assert await bot.worker.paused() == "admin"


# ---------------------------------------------------------------------------------------------- other users' jobs


@pytest.fixture
async def two_jobs(gen: Gen, fd: FakeDiscord) -> AsyncIterator[tuple[VeoBot, Job, Job]]:
    """USER_ID's jobs: one stuck at the backend (cancellable, with a Cancel button), one delivered (Retry, Details)."""
    gen.ends(STUCK, "stuck")
    async with running_bot(gen.settings(fd), fd) as bot:
        for text in (f"{STUCK} a secret garden", "a private lighthouse"):
            i = await fd.send_command("veo", "prompt", {"text": text}, user_id=USER_ID)
            assert not (await fd.wait_callback(i))["data"].get("flags")
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        await bot.worker.drain()
        jobs = {j.prompt: j for j in await bot.store.user_jobs(USER_ID)}
        running, delivered = jobs[f"{STUCK} a secret garden"], jobs["a private lighthouse"]
        assert running.state is JobState.RUNNING and delivered.state is JobState.DELIVERED
        yield bot, running, delivered


def no_such_job(job_id: int) -> str:
    return f"`#{job_id}`"


async def test_cancel_and_status_of_another_users_job_reveal_nothing(
    two_jobs: tuple[VeoBot, Job, Job], gen: Gen, fd: FakeDiscord
) -> None:
    emu = gen
    bot, running, delivered = two_jobs
    missing = delivered.id + 1000
    before = await World.capture(bot, emu, fd)
    answers: dict[tuple[str, int], str] = {}
    for command in ("cancel", "status"):
        for job_id in (running.id, delivered.id, missing):
            i = await fd.send_command("veo", command, {"job": job_id}, user_id=OTHER_ID, permissions=EVERYTHING)
            answers[command, job_id] = refusal(await fd.wait_callback(i))
    for (command, job_id), text in answers.items():
        # Word for word the answer for a job that does not exist: nothing tells the job is there.
        assert text.replace(str(job_id), "N") == answers[command, missing].replace(str(missing), "N")
        assert "secret garden" not in text and "lighthouse" not in text and str(USER_ID) not in text
    await bot.worker.wait_ticks(2)
    after = await World.capture(bot, emu, fd)
    assert after == before
    assert (await bot.store.get_job(running.id)).state is JobState.RUNNING  # type: ignore[union-attr]


async def test_another_users_jobs_are_not_listed(two_jobs: tuple[VeoBot, Job, Job], fd: FakeDiscord) -> None:
    _, running, delivered = two_jobs
    i = await fd.send_command("veo", "status", user_id=OTHER_ID)
    text = refusal(await fd.wait_callback(i))
    assert "No jobs yet" in text
    assert "secret garden" not in text and f"#{running.id}`" not in text and f"#{delivered.id}`" not in text
    for value in ("", str(running.id), "secret"):
        i = await fd.send_autocomplete("veo", "cancel", focused="job", value=value, user_id=OTHER_ID)
        cb = await fd.wait_callback(i)
        assert cb["type"] == 8
        assert cb["data"]["choices"] == [], cb


async def test_buttons_on_another_users_job_are_refused(
    two_jobs: tuple[VeoBot, Job, Job], gen: Gen, fd: FakeDiscord
) -> None:
    emu = gen
    bot, running, delivered = two_jobs
    assert running.status_message_id and delivered.result_message_id
    clicks = [
        (f"veo:cancel:{running.id}", running.status_message_id),
        (f"veo:retry:{delivered.id}", delivered.result_message_id),
        (f"veo:details:{delivered.id}", delivered.result_message_id),
    ]
    before = await World.capture(bot, emu, fd)
    for custom_id, message_id in clicks:
        i = await fd.send_component(custom_id, user_id=OTHER_ID, message_id=message_id, permissions=EVERYTHING)
        text = refusal(await fd.wait_callback(i))
        assert "garden" not in text and "lighthouse" not in text and "seed" not in text, text
        assert "admin" in text.lower() or "no job" in text.lower(), text
    await bot.worker.wait_ticks(2)
    assert await World.capture(bot, emu, fd) == before
    assert await bot.store.user_jobs(OTHER_ID) == []

    # Controls: the owner sees the details, an admin may cancel.
    i = await fd.send_component(f"veo:details:{delivered.id}", user_id=USER_ID, message_id=delivered.result_message_id)
    assert "a private lighthouse" in refusal(await fd.wait_callback(i))
    i = await fd.send_component(f"veo:cancel:{running.id}", user_id=ADMIN_ID, message_id=running.status_message_id)
    assert "Cancelled" in refusal(await fd.wait_callback(i))
    assert (await bot.store.get_job(running.id)).state is JobState.CANCELLED  # type: ignore[union-attr]


async def test_admin_command_from_a_dm_is_refused(paused_bot: VeoBot, gen: Gen, fd: FakeDiscord) -> None:
    """A forged or stale client may send /veo-admin outside a server: no member, no roles, still refused."""
    emu = gen
    before = await World.capture(paused_bot, emu, fd)
    for uid in (USER_ID, OTHER_ID):
        i = await fd.send_command("veo-admin", "resume", user_id=uid, guild=False, validate=False)
        content = refusal(await fd.wait_callback(i))
        assert "admin" in content.lower() or "server" in content.lower(), content
    await paused_bot.worker.wait_ticks(2)
    assert await World.capture(paused_bot, emu, fd) == before
