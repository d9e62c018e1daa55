"""Delivered media older than VEO_MEDIA_RETENTION_DAYS is deleted from disk; newer media stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cogs.jobs import prune_media
from storage import JobState
from tests.e2e.conftest import USER_ID, make_settings, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator


async def test_old_media_is_pruned_and_new_media_kept(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    settings = make_settings(tmp_path, emu, fd, veo_media_retention_days=1, veo_max_active_per_user=3)
    async with running_bot(settings, fd) as bot:
        for text in ("an old harbour", "a new harbour"):
            i = await fd.send_command("veo", "prompt", {"text": text}, user_id=USER_ID)
            await fd.wait_callback(i)
        await fd.wait_until(lambda: len([m for m in fd.messages if m.attachments]) == 2, timeout=15)
        await bot.worker.drain()
        jobs = {j.prompt: j for j in await bot.store.user_jobs(USER_ID)}
        assert {j.state for j in jobs.values()} == {JobState.DELIVERED}
        old, new = jobs["an old harbour"], jobs["a new harbour"]
        assert old.file_path and Path(old.file_path).exists()
        # age the old one by two days, as if delivered then
        store = bot.store
        async with store._lock:
            await store._require().execute("UPDATE jobs SET finished_at = finished_at - 172800 WHERE id = ?", (old.id,))
        assert await prune_media(bot) == 1
        assert not Path(old.file_path).exists()
        assert new.file_path and Path(new.file_path).exists()
        assert (await store.get_job(old.id)).file_path is None
        assert await prune_media(bot) == 0


async def test_partial_downloads_left_by_a_kill_are_pruned_after_the_grace(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    """A kill mid-download leaves `.job-N.mp4.<hex>.part`; nothing else ever deletes it."""
    settings = make_settings(tmp_path, emu, fd)
    async with running_bot(settings, fd) as bot:
        media = settings.media_dir
        stale = media / ".job-7.mp4.0123456789ab.part"
        fresh = media / ".job-8.mp4.ba9876543210.part"  # as if being written right now
        kept = media / "job-9.mp4"  # not ours to judge by age: pruned by its job's retention
        for path in (stale, fresh, kept):
            path.write_bytes(b"\0" * 1024)
        two_hours_ago = time.time() - 2 * 3600
        os.utime(stale, (two_hours_ago, two_hours_ago))
        os.utime(kept, (two_hours_ago, two_hours_ago))
        assert await prune_media(bot) == 1
        assert not stale.exists()
        assert fresh.exists() and kept.exists()


async def test_input_pictures_are_pruned_with_the_retention_unless_a_waiting_job_needs_them(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    from storage import JobOptions

    settings = make_settings(tmp_path, emu, fd, veo_media_retention_days=1)
    async with running_bot(settings, fd) as bot:
        await bot.worker.pause("admin")  # the waiting job stays queued
        inputs = settings.veo_data_dir / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        old, needed, fresh = inputs / "old.png", inputs / "needed.png", inputs / "fresh.png"
        for path in (old, needed, fresh):
            path.write_bytes(b"\x89PNG")
        two_days_ago = time.time() - 2 * 86400
        for path in (old, needed):
            os.utime(path, (two_days_ago, two_days_ago))
        await bot.store.create_jobs(
            user_id=USER_ID, guild_id=None, channel_id=1, prompt="waits", aspect="landscape", model="fast",
            seeds=[1], daily_quota=10, max_active=2, options=JobOptions(image=str(needed)),
        )  # fmt: skip
        assert await prune_media(bot) == 1
        assert not old.exists() and needed.exists() and fresh.exists()
