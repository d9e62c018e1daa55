"""Delivered media older than VEO_MEDIA_RETENTION_DAYS is deleted from disk; newer media stays."""

from __future__ import annotations

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
