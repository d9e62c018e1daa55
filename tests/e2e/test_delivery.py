"""Delivery to Discord under restarts and long outages: each job's result or failure notice posted exactly once.

Also the shared harness of the fault suites (test_flow_faults, test_discord_faults, test_crash): a fake Discord
whose message creates can be held, the production wiring with Flow's retry backoff shortened, and counters of
posts per job marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.__main__ import backend_resources
from bot.app import VeoBot
from bot.logs import Redactor
from bot.settings import Settings
from storage import Job, JobState, Store
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings
from tests.fakes.discord_server import FakeClock, FakeDiscord, PostedMessage, run_bot
from tests.fakes.flow_emulator import FlowEmulator, Outcome

MARKER = re.compile(r"\bveo job (\d+)\b")


# --- harness -------------------------------------------------------------------------------------------------


class SlowDiscord(FakeDiscord):
    """FakeDiscord whose channel message creates can be held: before the message exists, or after (answer late)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold_before: asyncio.Event | None = None
        self.hold_after: asyncio.Event | None = None
        self.held = 0
        #: Creates abandoned by `release(drop=True)` before their message existed.
        self.dropped = 0
        self._drop: set[asyncio.Event] = set()
        #: Answers to lose: the create is done (or deduplicated) but the sender gets a 503 instead.
        self.lose_answers = 0

    async def _create_message(self, request: web.Request) -> web.Response:  # type: ignore[override]
        if await self._gate(self.hold_before):  # the sender is gone: the request never completed, nothing is created
            self.dropped += 1
            self._notify()
            return web.Response(status=503)
        response = await super()._create_message(request)
        await self._gate(self.hold_after)
        if self.lose_answers > 0 and response.status == 200:
            self.lose_answers -= 1
            return web.Response(status=503)
        return response

    async def _gate(self, gate: asyncio.Event | None) -> bool:
        """Wait while `gate` holds; True when the held request was released as dropped.

        The drop decision belongs to the gate, read after it opens: not a shared flag that the last waiter to
        leave resets before the caller can look at it.
        """
        if gate is None or gate.is_set():
            return False
        self.held += 1
        self._notify()
        try:
            await gate.wait()
        finally:
            self.held -= 1
        return gate in self._drop

    def hold(self, *, after: bool) -> None:
        """Hold the next message creates until `release()`; `after`: the message is stored, the answer waits."""
        gate = asyncio.Event()
        if after:
            self.hold_after = gate
        else:
            self.hold_before = gate

    def release(self, *, drop: bool = False) -> None:
        """Let held creates go on; `drop`: those held before creation are abandoned instead (client gone)."""
        if drop and self.hold_before is not None:
            self._drop.add(self.hold_before)
        for gate in (self.hold_before, self.hold_after):
            if gate is not None:
                gate.set()
        self.hold_before = self.hold_after = None

    async def close(self) -> None:
        self.release()
        await super().close()


@contextlib.asynccontextmanager
async def slow_discord(**kwargs: Any) -> AsyncIterator[SlowDiscord]:
    async with SlowDiscord(**kwargs) as fake:
        for uid, name in ((USER_ID, "user"), (OTHER_ID, "other"), (ADMIN_ID, "admin")):
            fake.add_user(uid, name)
        yield fake


@contextlib.asynccontextmanager
async def started_bot(
    settings: Settings, fd: FakeDiscord, *, backoff: float = 0.005, clock: Callable[[], float] = time.time
) -> AsyncIterator[VeoBot]:
    """The wiring of `python -m bot` (bot/__main__.py), with Flow's retry backoff shortened and a clock to move."""
    settings.ensure_data_dir()
    store = await Store.open(settings.database_path, clock=clock)
    try:
        async with backend_resources(settings, Redactor(), store=store, backoff=(backoff, backoff * 8)) as res:
            bot = VeoBot(settings=settings, http_session=res.http, store=store, resources=res)
            bot.worker.clock = bot.worker.wall = clock
            bot.delivery.clock = clock
            async with run_bot(bot, fd, guild_ready_timeout=0.02):
                yield bot
    finally:
        await store.close()


def posts_per_job(fd: FakeDiscord) -> Counter[int]:
    """Channel posts (videos, links and failure notices) per job marker."""
    found: Counter[int] = Counter()
    for message in fd.messages:
        match = MARKER.search(message.content)
        if match:
            found[int(match.group(1))] += 1
    return found


def posts_of(fd: FakeDiscord, job_id: int) -> list[PostedMessage]:
    return [m for m in fd.messages if (match := MARKER.search(m.content)) and int(match.group(1)) == job_id]


async def all_jobs(store: Store) -> list[Job]:
    return await store.jobs_in_state(*JobState)


def settled(job: Job) -> bool:
    """Terminal, and its video or failure notice is confirmed (or deliberately skipped)."""
    return job.terminal and (job.state is JobState.DELIVERED or job.notified_at is not None)


async def wait_jobs(bot: VeoBot, predicate: Callable[[list[Job]], bool], timeout: float = 10) -> list[Job]:
    """Wait, tick by tick, until the stored jobs satisfy `predicate`; returns them."""
    async with asyncio.timeout(timeout):
        while True:
            jobs = await all_jobs(bot.store)
            if jobs and predicate(jobs):
                return jobs
            await bot.worker.wait_ticks(1)


async def wait_settled(bot: VeoBot, timeout: float = 10) -> list[Job]:
    jobs = await wait_jobs(bot, lambda js: all(settled(j) for j in js), timeout)
    await bot.worker.drain()
    await bot.delivery.idle()
    return jobs


async def prompt(fd: FakeDiscord, text: str, *, user_id: int = USER_ID, **options: Any) -> None:
    """Send /veo prompt and check that it was accepted (a public status message)."""
    interaction = await fd.send_command("veo", "prompt", {"text": text, **options}, user_id=user_id)
    callback = await fd.wait_callback(interaction)
    assert callback["type"] == 4 and not (callback["data"].get("flags") or 0) & 64, callback


async def post_chatter(fd: FakeDiscord, count: int) -> None:
    """Other traffic in the channel during an outage (posted through the REST API like any client)."""
    url = f"{fd.api_base}/channels/{fd.channel_id}/messages"
    headers = {"Authorization": f"Bot {fd.token}"}
    async with aiohttp.ClientSession() as http:
        for n in range(count):
            async with http.post(url, json={"content": f"chatter {n}"}, headers=headers) as resp:
                assert resp.status == 200


async def age_posting(db: Path, job_id: int, seconds: float) -> None:
    """Pretend the job's post began `seconds` ago (a long outage): beyond the nonce window."""
    store = await Store.open(db)
    try:
        job = await store.get_job(job_id)
        assert job is not None
        if job.delivering_at is not None:
            await store.update_job(job_id, delivering_at=job.delivering_at - seconds)
        if job.notice_at is not None:
            await store.update_job(job_id, notice_at=job.notice_at - seconds)
    finally:
        await store.close()


# --- tests ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def sfd() -> AsyncIterator[SlowDiscord]:
    async with slow_discord(clock=FakeClock()) as fake:
        yield fake


async def crash_while_posting(settings: Settings, fd: SlowDiscord, text: str) -> Job:
    """Run until the job's post has landed but its answer is held, then stop the bot there (as a crash would)."""
    async with started_bot(settings, fd) as bot:
        fd.hold(after=True)
        await prompt(fd, text)
        await fd.wait_until(lambda: fd.held >= 1, timeout=10, what="the post held")
        (job,) = await all_jobs(bot.store)
    assert job.state in (JobState.DELIVERING, JobState.FAILED), job.state
    fd.release()
    return job


async def test_a_post_held_before_it_existed_dies_with_the_crash_and_is_posted_once_after(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    """The crash case the crash suite relies on: the bot dies while its post is still in flight, so nothing lands."""
    settings = make_settings(tmp_path, emu, sfd)
    async with started_bot(settings, sfd) as bot:
        sfd.hold(after=False)
        await prompt(sfd, "a lantern in the fog")
        await sfd.wait_until(lambda: sfd.held >= 1, timeout=10, what="the post held")
        (job,) = await all_jobs(bot.store)
    assert job.state is JobState.DELIVERING
    sfd.release(drop=True)
    await sfd.wait_until(lambda: sfd.dropped == 1, timeout=5, what="the held post dropped")
    assert posts_per_job(sfd) == {}

    async with started_bot(settings, sfd) as bot:
        (done,) = await wait_settled(bot)
    assert done.state is JobState.DELIVERED
    (posted,) = posts_of(sfd, job.id)
    assert done.result_message_id == posted.id
    assert sfd.nonce_hits == 0  # the first post never existed: nothing for Discord to deduplicate


@pytest.mark.parametrize("outcome", ["video", "failure"])
async def test_long_outage_recovery_finds_the_landed_post_behind_newer_messages(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path, outcome: str
) -> None:
    """The post landed, the bot died before recording it, and came back after the nonce window: no second post."""
    if outcome == "failure":
        emu.outcome_for("blocked", Outcome.failed("PUBLIC_ERROR_SEXUAL"))
    settings = make_settings(tmp_path, emu, sfd)
    job = await crash_while_posting(settings, sfd, "blocked lighthouse" if outcome == "failure" else "lighthouse")
    (landed,) = posts_of(sfd, job.id)
    await age_posting(settings.database_path, job.id, 600)
    advance(sfd, 600)  # Discord forgot the nonce too
    await post_chatter(sfd, 130)  # more than one page of history newer than our post

    async with started_bot(settings, sfd) as bot:
        (done,) = await wait_settled(bot)
    assert posts_per_job(sfd) == {job.id: 1}
    if outcome == "video":
        assert done.state is JobState.DELIVERED and done.result_message_id == landed.id
    else:
        assert done.state is JobState.FAILED and done.notice_message_id == landed.id
    assert sfd.nonce_hits == 0


@pytest.mark.parametrize("outcome", ["video", "failure"])
async def test_a_prompt_quoting_the_marker_does_not_pass_for_the_post(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path, outcome: str
) -> None:
    """Prompts are quoted in the bot's own messages: `veo job N` in one must not make job N count as posted."""
    if outcome == "failure":
        emu.outcome_for("blocked", Outcome.failed("PUBLIC_ERROR_SEXUAL"))
    settings = make_settings(tmp_path, emu, sfd)
    text = "a sign that reads veo job 1" + (" blocked" if outcome == "failure" else "")
    async with started_bot(settings, sfd) as bot:
        sfd.hold(after=False)
        await prompt(sfd, text)  # its status message, by the bot, quotes "veo job 1"
        await sfd.wait_until(lambda: sfd.held >= 1, timeout=10, what="the post held")
        (job,) = await all_jobs(bot.store)
    assert job.id == 1
    sfd.release(drop=True)  # the post died with the bot
    await sfd.wait_until(lambda: sfd.dropped == 1, timeout=5, what="the held post dropped")
    await age_posting(settings.database_path, job.id, 600)
    advance(sfd, 600)

    async with started_bot(settings, sfd) as bot:
        (done,) = await wait_settled(bot)
    ours = [m for m in sfd.messages if m.attachments or "could not be made" in m.content]
    assert len(ours) == 1, [m.content for m in sfd.messages]
    if outcome == "video":
        assert done.state is JobState.DELIVERED and done.result_message_id == ours[0].id
    else:
        assert done.state is JobState.FAILED and done.notice_message_id == ours[0].id


async def test_a_failure_notice_whose_answers_are_lost_is_posted_once(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    """The notice lands but Discord's answers are lost for longer than the nonce window: retries must search,
    not re-post with a nonce Discord has forgotten (each retry used to restart the window)."""
    emu.outcome_for("blocked", Outcome.failed("PUBLIC_ERROR_SEXUAL"))
    settings = make_settings(tmp_path, emu, sfd)
    assert isinstance(sfd.clock, FakeClock)
    sfd.lose_answers = 8  # 8 x 50 s: well past Discord's (fake's 300 s) deduplication window
    async with started_bot(settings, sfd, clock=sfd.clock) as bot:
        await prompt(sfd, "a blocked lighthouse")
        async with asyncio.timeout(20):
            while not all(settled(j) for j in await all_jobs(bot.store)):
                advance(sfd, 50)  # past any retry backoff
                await bot.worker.wait_ticks(1)
        await bot.worker.drain()
        (job,) = await all_jobs(bot.store)
    assert job.state is JobState.FAILED
    (notice,) = posts_of(sfd, job.id)
    assert job.notice_message_id == notice.id


async def test_recovery_waits_when_history_cannot_be_read(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    """History unreadable after a long outage: neither guess "not posted" (double post) nor give up; retry."""
    settings = make_settings(tmp_path, emu, sfd)
    job = await crash_while_posting(settings, sfd, "a harbour at night")
    (landed,) = posts_of(sfd, job.id)
    await age_posting(settings.database_path, job.id, 600)
    advance(sfd, 600)
    sfd.inject("GET", "/channels/{channel_id}/messages", 503, times=3)

    async with started_bot(settings, sfd) as bot:
        (done,) = await wait_settled(bot)
    assert len(sfd.faults_fired) == 3
    assert done.state is JobState.DELIVERED and done.result_message_id == landed.id
    assert posts_per_job(sfd) == {job.id: 1}


async def test_restart_within_nonce_window_reposts_with_the_same_nonce(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    settings = make_settings(tmp_path, emu, sfd)
    job = await crash_while_posting(settings, sfd, "a quiet forest")
    (landed,) = posts_of(sfd, job.id)
    async with started_bot(settings, sfd) as bot:
        (done,) = await wait_settled(bot)
    assert done.result_message_id == landed.id
    assert sfd.nonce_hits == 1
    assert posts_per_job(sfd) == {job.id: 1}


async def test_status_edits_are_throttled_while_running(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    emu.polls_to_finish = 25
    settings = make_settings(tmp_path, emu, sfd)
    async with started_bot(settings, sfd) as bot:
        await prompt(sfd, "a slow sunrise")
        (job,) = await wait_settled(bot)
    assert len(emu.calls("status")) >= 25
    edits = [payload for mid, payload in sfd.edits if mid == job.status_message_id]
    # One edit when it starts running, none per poll, one forced when it is delivered.
    assert 1 <= len(edits) <= 3, len(edits)
    assert "delivered" in edits[-1]["content"]


async def test_slow_status_edits_do_not_hold_up_the_worker(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    """Discord rate limiting the status message must not stop polling, downloading and posting."""
    settings = make_settings(tmp_path, emu, sfd)
    async with started_bot(settings, sfd) as bot:
        sfd.inject("PATCH", "/channels/{channel_id}/messages/{message_id}", 429, retry_after=30, times=1)
        await prompt(sfd, "a paper boat")
        await sfd.wait_for_message(lambda m: bool(m.attachments), timeout=10)
        assert len(sfd.faults_fired) == 1  # the edit is still waiting out its 30 s rate limit
        (job,) = await wait_jobs(bot, lambda js: js[0].state is JobState.DELIVERED)
        assert posts_per_job(sfd) == {job.id: 1}
        assert len(sfd.faults_fired) == 1


def advance(fd: FakeDiscord, seconds: float) -> None:
    assert isinstance(fd.clock, FakeClock)
    fd.clock.advance(seconds)
