"""The real `python -m bot` process, killed with SIGKILL mid-job and restarted: the video is posted exactly once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from storage import JobState
from tests.e2e.conftest import USER_ID
from tests.e2e.procs import bot_env, job_states, start_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator


@pytest.mark.parametrize("kill_after", ["status", "fife"])
async def test_sigkill_mid_job_then_restart_posts_exactly_once(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, kill_after: str
) -> None:
    emu.polls_to_finish = 4
    emu.write_cookie_file(tmp_path / "cookie.json")
    env = bot_env(tmp_path, emu, fd)
    proc = await start_bot(tmp_path, env, "run1.log")
    try:
        await fd.wait_until(lambda: fd.identify_count >= 1 and fd.sync_calls >= 1, timeout=20, what="bot ready")
        i = await fd.send_command("veo", "prompt", {"text": "a lighthouse at dusk"}, user_id=USER_ID)
        await fd.wait_callback(i, timeout=10)
        await emu.wait_for_calls(kill_after, 1)
    finally:
        proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    identifies = fd.identify_count

    proc = await start_bot(tmp_path, env, "run2.log")
    try:
        await fd.wait_until(lambda: fd.identify_count > identifies, timeout=20, what="bot restarted")
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=20)
        for _ in range(200):
            if await job_states(tmp_path) == [JobState.DELIVERED]:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await job_states(tmp_path) == [JobState.DELIVERED]
    videos = [m for m in fd.messages if m.attachments]
    assert len(videos) == 1
    assert len(emu.calls("generate")) == 1
    (name,) = emu.generations
    assert videos[0].attachments[0][1] == emu.video_bytes(name)
    assert "Traceback" not in (tmp_path / "run2.log").read_text()
