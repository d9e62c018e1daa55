"""Issue 15 defects in the worker, each shown through the real bot against the Flow emulator and fake Discord.

Points: 2 (no timeout while a credentials hold stops polling), 7 (the "API changed" alert re-arms), 8 (a wall
clock stepping back stops nothing), 10 (a project-creation failure is not an ambiguous generate), 11 (cancel
against the current state). Point 6 (single-flight project creation) is shown on the Flow backend directly.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.app import VeoBot
from bot.backends.base import GenerationRequest
from bot.worker import PAUSE_KEY
from storage import JobState
from tests.e2e.conftest import ADMIN_ID, make_settings, running_bot
from tests.e2e.test_delivery import all_jobs, prompt, slow_discord, started_bot, wait_jobs, wait_settled
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome


class SteppingClock:
    """Real time plus an offset a test moves (forward: time passes at once; backward: a clock step)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def _running(bot: VeoBot) -> int:
    (job,) = await wait_jobs(bot, lambda js: len(js) == 1 and js[0].state is JobState.RUNNING)
    return job.id


async def test_a_held_job_does_not_time_out_and_is_delivered_after_the_hold(
    tmp_path: Path, emu: FlowEmulator, cookie_file: Path
) -> None:
    """Point 2: while the queue is held for credentials its running jobs are not polled, so their clock stops."""
    clock = SteppingClock()
    emu.outcome_for("stuck", Outcome.stuck())
    async with slow_discord() as sfd:
        settings = make_settings(tmp_path, emu, sfd, veo_job_timeout=60.0, veo_poll_interval=0.02)
        async with started_bot(settings, sfd, clock=clock) as bot:
            await prompt(sfd, "stuck: a slow sunrise")
            job_id = await _running(bot)
            await bot.worker.pause("cookies")
            clock.offset += 600.0  # ten minutes pass on hold: ten times the job's timeout
            await bot.worker.wait_ticks(10)
            job = await bot.store.get_job(job_id)
            assert job is not None and job.state is JobState.RUNNING, "timed out while we refused to poll it"
            (name,) = emu.generations
            emu.set_outcome(name, Outcome.success())
            await bot.worker.resume()
            (job,) = await wait_settled(bot)
    assert job.state is JobState.DELIVERED
    assert len(emu.calls("generate")) == 1


async def test_a_wall_clock_step_back_does_not_stop_polling(
    tmp_path: Path, emu: FlowEmulator, cookie_file: Path
) -> None:
    """Point 8: polls are scheduled on a monotonic clock; wall time only dates what users read."""
    clock = SteppingClock()
    async with slow_discord() as sfd:
        settings = make_settings(tmp_path, emu, sfd, veo_poll_interval=0.02)
        async with started_bot(settings, sfd) as bot:
            bot.worker.wall = clock
            emu.outcome_for("slow", Outcome.stuck())
            await prompt(sfd, "slow: a river at dusk")
            await _running(bot)
            before = len(emu.calls("status"))
            clock.offset -= 3600.0  # NTP steps the clock back an hour
            (name,) = emu.generations
            emu.set_outcome(name, Outcome.success())
            (job,) = await wait_settled(bot)
            assert len(emu.calls("status")) > before
    assert job.state is JobState.DELIVERED


async def test_a_failed_project_creation_leaves_the_jobs_to_be_submitted(
    tmp_path: Path, emu: FlowEmulator, cookie_file: Path
) -> None:
    """Point 10: generate was never sent, so nothing can have been charged: the job waits and goes out."""
    emu.inject("project", Fault.server_error(503), times=1)
    async with slow_discord() as sfd, started_bot(make_settings(tmp_path, emu, sfd), sfd) as bot:
        await prompt(sfd, "a lighthouse in fog")
        (job,) = await wait_settled(bot)
    assert job.state is JobState.DELIVERED, (job.state, job.error_kind)
    assert len(emu.calls("project")) == 2 and len(emu.calls("generate")) == 1


async def test_the_api_changed_alert_rearms_once_polls_read_again(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    """Point 7: three unreadable polls alert the admins; after readable ones, a new run of them alerts again."""
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, veo_poll_interval=0.01)
    async with running_bot(settings, fd) as bot:
        await prompt(fd, "stuck: a lantern")
        await _running(bot)
        for round_ in (1, 2):
            emu.inject("status", Fault.wrong_shape(), times=3)
            await fd.wait_until(lambda r=round_: len(fd.dm_messages(ADMIN_ID)) == r, timeout=10, what="alert")
            emu.clear_faults()
            calls = len(emu.calls("status"))
            await fd.wait_until(lambda c=calls: len(emu.calls("status")) >= c + 2, timeout=10, what="good polls")
    assert all("cannot read" in m.content for m in fd.dm_messages(ADMIN_ID))


async def test_cancel_acts_on_the_current_state(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    """Point 11: a job read as queued that moved on to running meanwhile is still cancelled, not "too late"."""
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        await prompt(fd, "stuck: a paper boat")
        (stale,) = await all_jobs(bot.store)
        await _running(bot)
        assert stale.state is JobState.QUEUED
        cancelled = await bot.worker.cancel(stale, actor_id=ADMIN_ID)
        assert cancelled is not None and cancelled.state is JobState.CANCELLED
        assert await bot.store.kv_get(PAUSE_KEY) is None


async def test_concurrent_first_submissions_create_one_flow_project(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    """Point 6: the lazily created Flow project is created once, however many groups ask for it at once."""
    settings = make_settings(tmp_path, emu, fd)
    async with running_bot(settings, fd) as bot:
        backend = bot.backends["flow"]
        requests = [GenerationRequest(job_id=i, prompt=f"cat {i}", seed=i) for i in range(4)]
        await asyncio.gather(*(backend.submit([r]) for r in requests))
    assert len(emu.calls("project")) == 1
    assert len(emu.calls("generate")) == 4
