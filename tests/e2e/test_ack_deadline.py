"""When the store is slow (a burst), /veo prompt defers before Discord's deadline and finishes with an edit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import USER_ID, make_settings, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator

EPHEMERAL = 64


async def test_slow_store_defers_then_edits_the_status_in(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        # discord.py loads extensions as fresh module objects: patch the one the bot runs
        monkeypatch.setattr(sys.modules["cogs.veo._queue"], "ACK_DEADLINE", 0.0)
        i = await fd.send_command("veo", "prompt", {"text": "a slow burst"}, user_id=USER_ID)
        cb = await fd.wait_callback(i)
        assert cb["type"] == 5  # deferred, privately
        assert cb["data"]["flags"] & EPHEMERAL
        status = await fd.wait_for_message(lambda m: "a slow burst" in m.content and not m.attachments)
        assert status.allowed_mentions["parse"] == []
        assert not status.ephemeral
        await fd.wait_until(lambda: i.original_edits, what="the private answer points at the status")
        assert str(status.id) in i.original_edits[-1]["content"]
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        (job,) = await bot.store.user_jobs(USER_ID)
        assert job.status_message_id == status.id


async def test_slow_store_refusal_stays_private(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(make_settings(tmp_path, emu, fd, veo_daily_quota=0), fd) as bot:
        monkeypatch.setattr(sys.modules["cogs.veo._queue"], "ACK_DEADLINE", 0.0)
        i = await fd.send_command("veo", "prompt", {"text": "over quota"}, user_id=USER_ID)
        cb = await fd.wait_callback(i)
        assert cb["type"] == 5
        assert cb["data"]["flags"] & EPHEMERAL
        await fd.wait_until(lambda: i.original_edits, what="the refusal")
        assert "Your quota is 0 videos" in i.original_edits[-1]["content"]
        assert not [m for m in fd.messages if m.channel_id == fd.channel_id]
        assert (await bot.store.stats())["total"] == 0
