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
