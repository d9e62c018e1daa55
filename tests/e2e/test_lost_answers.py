"""A command whose answer never reached the user must not leave jobs behind (running, counted, retried into
duplicates): they are withdrawn, quota returned, without a notice; when part of the answer did reach the user,
they are told what happened."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from storage import Job, JobState
from tests.e2e.conftest import USER_ID, make_settings, running_bot
from tests.e2e.test_commands import quota
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator, Outcome

CALLBACK = ("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
EXPIRED = {"message": "Unknown interaction", "code": 10062}
EPHEMERAL = 64


async def withdrawn(bot: object, fd: FakeDiscord, count: int) -> list[Job]:
    """Wait until the command's jobs are all cancelled (they never are when the bug is there)."""
    store = bot.store  # type: ignore[attr-defined]
    await fd.wait_until(lambda: fd.faults_fired, timeout=5, what="the injected fault")
    for _ in range(200):
        jobs = await store.jobs_in_state(*JobState)
        if len(jobs) == count and all(j.state is JobState.CANCELLED for j in jobs):
            return jobs
        await bot.worker.wait_ticks(1)  # type: ignore[attr-defined]
    raise AssertionError(f"not withdrawn: {[(j.id, j.state.value) for j in jobs]}")


@pytest.mark.parametrize("deferred", [False, True], ids=["reply", "defer"])
async def test_jobs_of_an_expired_interaction_are_withdrawn(
    tmp_path: Path,
    emu: FlowEmulator,
    fd: FakeDiscord,
    cookie_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    deferred: bool,
) -> None:
    """Discord refused the answer (10062: the interaction expired): the user saw nothing, so nothing stays."""
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        if deferred:
            monkeypatch.setattr(sys.modules["cogs.veo._queue"], "ACK_DEADLINE", 0.0)
        fd.inject(*CALLBACK, 404, body=EXPIRED, times=3)  # the error reply is refused too
        await fd.send_command("veo", "prompt", {"text": "stuck: a late lighthouse", "count": 2}, user_id=USER_ID)
        jobs = await withdrawn(bot, fd, 2)
        assert all(j.notified_at is not None and j.notice_message_id is None for j in jobs)  # no notice
        assert (await quota(bot)).used == 0
        await bot.worker.wait_ticks(3)
        assert not [m for m in fd.messages if m.channel_id == fd.channel_id]


async def test_a_status_message_the_channel_refuses_withdraws_the_jobs_and_says_so(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deferred, then the status post is refused (50013: no permission to send here): results could not be
    posted here either; the jobs are withdrawn and the private "thinking" answer says why."""
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        monkeypatch.setattr(sys.modules["cogs.veo._queue"], "ACK_DEADLINE", 0.0)
        fd.inject("POST", "/channels/{channel_id}/messages", 403)
        inter = await fd.send_command("veo", "prompt", {"text": "stuck: a closed channel"}, user_id=USER_ID)
        await withdrawn(bot, fd, 1)
        await fd.wait_until(lambda: inter.followups or inter.original_edits, timeout=5, what="the private answer")
        answer = (inter.followups[0].content if inter.followups else "") or inter.original_edits[-1]["content"]
        assert "Nothing was queued" in answer and "permission" in answer, answer
        assert (await quota(bot)).used == 0
