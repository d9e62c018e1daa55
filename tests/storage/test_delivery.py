"""Exactly-once posting: the delivery protocol of storage/store.py at every crash point."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storage import (
    NONCE_WINDOW,
    Job,
    JobState,
    RecoveryAction,
    Store,
    new_nonce,
    recovery_action,
)

T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Message:
    id: int
    content: str
    nonce: str
    created_at: float


@dataclass
class FakeChannel:
    """Discord's message create as far as it matters here: a repeated nonce within the window is deduplicated."""

    clock: Clock
    dedupe_window: float = 300.0
    messages: list[Message] = field(default_factory=list)

    def create(self, content: str, nonce: str) -> Message:
        for message in self.messages:
            if message.nonce == nonce and self.clock() - message.created_at < self.dedupe_window:
                return message
        message = Message(len(self.messages) + 1000, content, nonce, self.clock())
        self.messages.append(message)
        return message

    def history(self, after: float) -> list[Message]:
        return [m for m in self.messages if m.created_at > after]


class Crash(Exception):
    """The process dies here."""


def marker(job_id: int) -> str:
    return f"veo-{job_id}.mp4"


async def deliver(store: Store, channel: FakeChannel, job: Job, crash_at: str | None = None) -> None:
    """The bot's side of the protocol for a downloaded job, with an optional crash point."""
    if crash_at == "before_nonce":
        raise Crash
    moved = await store.transition(job.id, JobState.DOWNLOADING, JobState.DELIVERING, delivery_nonce=new_nonce())
    assert moved is not None
    if crash_at == "before_post":
        raise Crash
    message = channel.create(f"<@{moved.user_id}> {marker(moved.id)}", moved.delivery_nonce or "")
    if crash_at == "after_post":
        raise Crash
    assert await store.transition(job.id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=message.id)
    if crash_at == "after_commit":
        raise Crash


async def recover(store: Store, channel: FakeChannel, crash_during_repost: bool = False) -> None:
    """The bot's start-up recovery, exactly as the store's module docstring prescribes."""
    for job in await store.unfinished_jobs():
        if job.state is JobState.DOWNLOADING:
            await deliver(store, channel, job)
        elif job.state is JobState.DELIVERING:
            assert job.delivery_nonce is not None
            action = recovery_action(job.delivering_at, store.now())
            if action is RecoveryAction.REPOST_SAME_NONCE:
                message = channel.create(marker(job.id), job.delivery_nonce)
            else:
                assert job.delivering_at is not None
                found = [m for m in channel.history(job.delivering_at - 60) if marker(job.id) in m.content]
                if found:
                    message = found[0]
                else:
                    assert await store.renew_delivery(job.id) is not None
                    message = channel.create(marker(job.id), job.delivery_nonce)
                    if crash_during_repost:
                        raise Crash
            assert await store.transition(job.id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=message.id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "veo.sqlite3", clock=clock)
    yield s
    await s.close()


async def downloaded_job(store: Store) -> Job:
    (job,) = await store.create_jobs(
        user_id=11,
        guild_id=1,
        channel_id=2,
        prompt="a comet over the sea",
        aspect="landscape",
        model="fast",
        seeds=[3],
        daily_quota=10,
        max_active=2,
    )
    state = JobState.QUEUED
    for nxt in (JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING):
        moved = await store.transition(job.id, state, nxt)
        assert moved is not None
        job, state = moved, nxt
    await store.update_job(job.id, file_path="/media/x.mp4", file_size=1234)
    return job


def test_fake_channel_only_deduplicates_within_its_window(clock: Clock) -> None:
    """Control: the fake behaves like Discord, so a blind repost after a long outage would double."""
    channel = FakeChannel(clock)
    first = channel.create("a", "n1")
    clock.now += 10
    assert channel.create("a", "n1") is first
    clock.now += 600
    assert channel.create("a", "n1") is not first
    assert len(channel.messages) == 2


@pytest.mark.parametrize("crash_at", ["before_nonce", "before_post", "after_post", "after_commit"])
@pytest.mark.parametrize("downtime", [5.0, 3600.0], ids=["quick-restart", "long-outage"])
async def test_crash_at_any_point_posts_exactly_once(
    tmp_path: Path, clock: Clock, crash_at: str, downtime: float
) -> None:
    path = tmp_path / "veo.sqlite3"
    channel = FakeChannel(clock)
    store = await Store.open(path, clock=clock)
    job = await downloaded_job(store)
    with pytest.raises(Crash):
        await deliver(store, channel, job, crash_at)
    await store.close()

    clock.now += downtime
    store = await Store.open(path, clock=clock)
    try:
        seen = await store.get_job(job.id)
        assert seen is not None
        expected_state = {
            "before_nonce": JobState.DOWNLOADING,
            "before_post": JobState.DELIVERING,
            "after_post": JobState.DELIVERING,
            "after_commit": JobState.DELIVERED,
        }[crash_at]
        assert seen.state is expected_state
        if seen.state is JobState.DELIVERING:
            assert seen.delivery_nonce is not None
            assert seen.delivering_at == T0
        await recover(store, channel)
        done = await store.get_job(job.id)
        assert done is not None
        assert done.state is JobState.DELIVERED
        posted = [m for m in channel.messages if marker(job.id) in m.content]
        assert len(posted) == 1
        assert done.result_message_id == posted[0].id
        assert await store.unfinished_jobs() == []
    finally:
        await store.close()


async def test_crash_during_repost_after_a_long_outage_still_posts_once(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "veo.sqlite3"
    channel = FakeChannel(clock)
    store = await Store.open(path, clock=clock)
    job = await downloaded_job(store)
    with pytest.raises(Crash):
        await deliver(store, channel, job, "before_post")
    await store.close()

    clock.now += 3600  # long outage: search, nothing found, renew, post ... and crash again
    store = await Store.open(path, clock=clock)
    with pytest.raises(Crash):
        await recover(store, channel, crash_during_repost=True)
    renewed = await store.get_job(job.id)
    assert renewed is not None
    assert renewed.delivering_at == clock.now
    await store.close()

    clock.now += 30  # quick restart: the renewed window makes the same-nonce repost safe
    store = await Store.open(path, clock=clock)
    try:
        await recover(store, channel)
        assert len(channel.messages) == 1
        done = await store.get_job(job.id)
        assert done is not None
        assert (done.state, done.result_message_id) == (JobState.DELIVERED, channel.messages[0].id)
    finally:
        await store.close()


def test_recovery_action_window() -> None:
    assert recovery_action(None, T0) is RecoveryAction.SEARCH_THEN_POST
    assert recovery_action(T0, T0) is RecoveryAction.REPOST_SAME_NONCE
    assert recovery_action(T0, T0 + NONCE_WINDOW - 0.01) is RecoveryAction.REPOST_SAME_NONCE
    assert recovery_action(T0, T0 + NONCE_WINDOW) is RecoveryAction.SEARCH_THEN_POST
    assert recovery_action(T0, T0 - 5) is RecoveryAction.SEARCH_THEN_POST  # clock went backwards: be safe
    assert recovery_action(T0, T0 + 50, window=30) is RecoveryAction.SEARCH_THEN_POST


def test_nonces_fit_discord() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(0 < len(n) <= 25 for n in nonces)


async def test_renew_delivery_only_touches_delivering_jobs(store: Store, clock: Clock) -> None:
    job = await downloaded_job(store)
    assert await store.renew_delivery(job.id) is None
    await store.transition(job.id, JobState.DOWNLOADING, JobState.DELIVERING, delivery_nonce="abc")
    clock.now += 500
    renewed = await store.renew_delivery(job.id)
    assert renewed is not None
    assert (renewed.delivering_at, renewed.delivery_nonce) == (clock.now, "abc")


async def test_failure_notice_is_owed_once(store: Store, clock: Clock) -> None:
    failed = await downloaded_job(store)
    await store.transition(failed.id, JobState.DOWNLOADING, JobState.FAILED, error_kind="download")
    delivered = await downloaded_job(store)
    await store.transition(delivered.id, JobState.DOWNLOADING, JobState.DELIVERING, delivery_nonce="n")
    await store.transition(delivered.id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=5)
    assert [j.id for j in await store.jobs_needing_notice()] == [failed.id]

    started = await store.begin_notice(failed.id, "first")
    assert started is not None
    assert (started.notice_nonce, started.notice_at) == ("first", T0)
    clock.now += 400
    again = await store.begin_notice(failed.id, "second")
    assert again is not None
    # A retry keeps the nonce and the start of its window: re-stamping would never let the window pass.
    assert (again.notice_nonce, again.notice_at) == ("first", T0)
    renewed = await store.begin_notice(failed.id, "third", renew=True)  # after a search found nothing
    assert renewed is not None
    assert (renewed.notice_nonce, renewed.notice_at) == ("first", clock.now)

    assert await store.finish_notice(failed.id, 777) is True
    assert await store.finish_notice(failed.id, 778) is False
    final = await store.get_job(failed.id)
    assert final is not None
    assert (final.notice_message_id, final.notified_at) == (777, clock.now)
    assert await store.jobs_needing_notice() == []
    assert await store.begin_notice(failed.id, "fourth") is None
    assert await store.begin_notice(delivered.id, "x") is None
    with pytest.raises(ValueError, match="notice_nonce"):
        await store.begin_notice(failed.id, "")


async def test_notice_can_be_closed_without_posting(store: Store) -> None:
    (job,) = await store.create_jobs(
        user_id=1,
        guild_id=None,
        channel_id=2,
        prompt="p",
        aspect="portrait",
        model="fast",
        seeds=[1],
        daily_quota=1,
        max_active=1,
    )
    await store.transition(job.id, JobState.QUEUED, JobState.CANCELLED)
    assert [j.id for j in await store.jobs_needing_notice(limit=5)] == [job.id]
    assert await store.finish_notice(job.id, None) is True
    assert await store.jobs_needing_notice() == []


CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from storage import JobState, Store

armed = False

def clock():
    if armed:
        os.kill(os.getpid(), signal.SIGKILL)
    return 1_700_000_000.0

async def main():
    global armed
    store = await Store.open(Path(sys.argv[1]), clock=clock)
    (job,) = await store.create_jobs(user_id=1, guild_id=None, channel_id=2, prompt="p", aspect="landscape",
                                     model="fast", seeds=[1], daily_quota=10, max_active=2)
    for frm, to in [("queued", "submitting"), ("submitting", "running"), ("running", "downloading")]:
        await store.transition(job.id, JobState(frm), JobState(to))
    await store.transition(job.id, JobState.DOWNLOADING, JobState.DELIVERING, delivery_nonce="child-nonce")
    print(job.id, flush=True)
    armed = True
    if sys.argv[2] == "inside_step3":
        # The clock is read inside the step-3 transaction, after BEGIN IMMEDIATE: die holding the write lock.
        await store.transition(job.id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=1)
    else:
        store.now()  # die right after step 1 committed, without closing anything
    raise SystemExit("not killed")

asyncio.run(main())
"""


@pytest.mark.parametrize("kill_point", ["after_step1", "inside_step3"])
async def test_sigkill_keeps_committed_steps_and_drops_the_open_one(
    tmp_path: Path, clock: Clock, kill_point: str
) -> None:
    path = tmp_path / "veo.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), kill_point, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    job_id = int(out.decode().split()[0])

    clock.now = T0 + 10
    store = await Store.open(path, clock=clock)  # must not wait for the dead process's lock
    try:
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.state, job.delivery_nonce, job.result_message_id) == (JobState.DELIVERING, "child-nonce", None)
        assert recovery_action(job.delivering_at, store.now()) is RecoveryAction.REPOST_SAME_NONCE
        assert (await store.events(job_id=job_id))[-1].detail == "downloading->delivering"
        assert await store.transition(job_id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=9)
    finally:
        await store.close()
