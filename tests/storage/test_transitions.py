"""The job state machine: every edge, every forbidden pair, time stamps, events, races."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    UPDATABLE_COLUMNS,
    ActiveLimitReached,
    InvalidTransition,
    Job,
    JobState,
    Store,
    new_nonce,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "veo.sqlite3", clock=clock)
    yield s
    await s.close()


def path_to(target: JobState) -> list[JobState]:
    """Shortest chain of allowed edges from queued to `target`."""
    seen = {JobState.QUEUED: [JobState.QUEUED]}
    todo = deque([JobState.QUEUED])
    while todo:
        state = todo.popleft()
        for nxt in sorted(ALLOWED_TRANSITIONS[state]):
            if nxt not in seen:
                seen[nxt] = [*seen[state], nxt]
                todo.append(nxt)
    return seen[target]


def fields_for(to: JobState) -> dict[str, object]:
    return {"delivery_nonce": new_nonce()} if to is JobState.DELIVERING else {}


async def new_job(store: Store, user_id: int = 1) -> Job:
    (job,) = await store.create_jobs(
        user_id=user_id,
        guild_id=10,
        channel_id=20,
        prompt="a red fox in snow",
        aspect="portrait",
        model="quality",
        seeds=[7],
        daily_quota=0,
        max_active=0,
        unlimited=True,
    )
    return job


async def job_in(store: Store, state: JobState) -> Job:
    job = await new_job(store)
    chain = path_to(state)
    for frm, to in itertools.pairwise(chain):
        moved = await store.transition(job.id, frm, to, **fields_for(to))
        assert moved is not None
        job = moved
    assert job.state is state
    return job


def test_every_state_is_reachable_and_terminal_states_are_dead_ends() -> None:
    for state in JobState:
        assert path_to(state)[-1] is state
    for state in TERMINAL_STATES:
        assert ALLOWED_TRANSITIONS[state] == frozenset()
    assert JobState.DELIVERING not in set().union(*(ALLOWED_TRANSITIONS[s] for s in TERMINAL_STATES))


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(JobState, JobState)), ids=lambda s: s.value)
async def test_transition_table(store: Store, frm: JobState, to: JobState) -> None:
    job = await job_in(store, frm)
    events_before = len(await store.events(job_id=job.id))
    if to in ALLOWED_TRANSITIONS[frm]:
        moved = await store.transition(job.id, frm, to, **fields_for(to))
        assert moved is not None
        assert moved.state is to
        assert (await store.get_job(job.id)) == moved
        events = await store.events(job_id=job.id)
        assert len(events) == events_before + 1
        assert events[-1].detail.startswith(f"{frm.value}->{to.value}")
    else:
        with pytest.raises(InvalidTransition):
            await store.transition(job.id, frm, to, **fields_for(to))
        assert (await store.get_job(job.id)) == job
        assert len(await store.events(job_id=job.id)) == events_before


async def test_transition_from_the_wrong_state_changes_nothing(store: Store) -> None:
    job = await job_in(store, JobState.RUNNING)
    assert await store.transition(job.id, JobState.QUEUED, JobState.SUBMITTING) is None
    assert await store.transition(job.id, JobState.DOWNLOADING, JobState.FAILED, error_kind="x") is None
    assert (await store.get_job(job.id)) == job
    assert await store.transition(9999, JobState.QUEUED, JobState.CANCELLED) is None


async def test_time_stamps_and_attempts(store: Store, clock: Clock) -> None:
    job = await new_job(store)
    assert job.created_at == clock.now
    assert (job.attempts, job.submitted_at, job.finished_at) == (0, None, None)
    clock.now += 1
    job = await store.transition(job.id, JobState.QUEUED, JobState.SUBMITTING)
    assert job is not None
    assert (job.attempts, job.updated_at) == (1, clock.now)
    clock.now += 1
    job = await store.transition(job.id, JobState.SUBMITTING, JobState.QUEUED, error_kind="rate_limited")
    job = await store.transition(job.id, JobState.QUEUED, JobState.SUBMITTING)
    assert job is not None
    assert job.attempts == 2
    clock.now += 1
    job = await store.transition(job.id, JobState.SUBMITTING, JobState.RUNNING, operation_name="op/1")
    assert job is not None
    assert (job.submitted_at, job.operation_name) == (clock.now, "op/1")
    clock.now += 60
    job = await store.transition(job.id, JobState.RUNNING, JobState.DOWNLOADING, media_name="m1")
    clock.now += 5
    nonce = new_nonce()
    job = await store.transition(job.id, JobState.DOWNLOADING, JobState.DELIVERING, delivery_nonce=nonce)
    assert job is not None
    assert (job.delivery_nonce, job.delivering_at, job.finished_at) == (nonce, clock.now, None)
    clock.now += 2
    job = await store.transition(job.id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=55)
    assert job is not None
    assert (job.finished_at, job.result_message_id) == (clock.now, 55)
    assert job.submitted_at == clock.now - 67


@pytest.mark.parametrize("to", [JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT])
async def test_unsuccessful_end_stamps_finish_and_reason(store: Store, clock: Clock, to: JobState) -> None:
    job = await job_in(store, JobState.RUNNING)
    clock.now += 30
    done = await store.transition(
        job.id, JobState.RUNNING, to, error_kind="content_filter", error_message="Flow refused this prompt."
    )
    assert done is not None
    assert (done.finished_at, done.error_message) == (clock.now, "Flow refused this prompt.")
    assert (await store.events(job_id=job.id))[-1].detail == f"running->{to.value} (content_filter)"


async def test_delivering_requires_a_valid_nonce(store: Store) -> None:
    job = await job_in(store, JobState.DOWNLOADING)
    with pytest.raises(ValueError, match="delivery_nonce"):
        await store.transition(job.id, JobState.DOWNLOADING, JobState.DELIVERING)
    with pytest.raises(ValueError, match=r"1\.\.25"):
        await store.transition(job.id, JobState.DOWNLOADING, JobState.DELIVERING, delivery_nonce="n" * 26)
    assert (await store.get_job(job.id)) == job


@pytest.mark.parametrize("column", ["state", "id", "user_id", "prompt", "created_at", "finished_at", "bogus"])
async def test_only_whitelisted_columns_can_be_set(store: Store, column: str) -> None:
    job = await new_job(store)
    with pytest.raises(ValueError, match=column):
        await store.update_job(job.id, **{column: 1})
    with pytest.raises(ValueError, match=column):
        await store.transition(job.id, JobState.QUEUED, JobState.CANCELLED, **{column: 1})
    assert (await store.get_job(job.id)) == job


async def test_update_job_sets_columns(store: Store, clock: Clock) -> None:
    job = await new_job(store)
    clock.now += 3
    await store.update_job(job.id, status_message_id=123, scene_id="s-1", file_size=42)
    got = await store.get_job(job.id)
    assert got is not None
    assert (got.status_message_id, got.scene_id, got.file_size, got.updated_at) == (123, "s-1", 42, clock.now)
    assert got.state is JobState.QUEUED
    await store.update_job(job.id, scene_id=None)
    got = await store.get_job(job.id)
    assert got is not None
    assert got.scene_id is None
    assert "state" not in UPDATABLE_COLUMNS


async def test_two_stores_racing_for_one_job_exactly_one_wins(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "veo.sqlite3"
    first, second = await Store.open(path, clock=clock), await Store.open(path, clock=clock)
    try:
        jobs = [await new_job(first, user_id=u) for u in range(20)]
        for job in jobs:
            results = await asyncio.gather(
                first.transition(job.id, JobState.QUEUED, JobState.SUBMITTING),
                second.transition(job.id, JobState.QUEUED, JobState.SUBMITTING),
                second.transition(job.id, JobState.QUEUED, JobState.CANCELLED),
            )
            assert sum(r is not None for r in results) == 1
            events = await first.events(job_id=job.id)
            assert [e.kind for e in events] == ["created", "transition"]
    finally:
        await first.close()
        await second.close()


async def test_two_stores_claiming_share_the_queue_without_overlap(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "veo.sqlite3"
    stores = [await Store.open(path, clock=clock) for _ in range(3)]
    try:
        for u in range(12):
            await new_job(stores[0], user_id=u)
        claims = await asyncio.gather(*(s.claim_next(10) for s in stores for _ in range(2)))
        ids = [job.id for claim in claims for job in claim]
        assert len(ids) == len(set(ids)) == 12
        assert all(job.attempts == 1 for claim in claims for job in claim)
        assert await stores[1].count_in_flight() == 12
    finally:
        for s in stores:
            await s.close()


async def test_events_are_append_only(store: Store) -> None:
    job = await new_job(store)
    await store.log_event("admin_pause", actor_id=99, detail="queue paused")
    conn = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET detail = 'rewritten'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events WHERE job_id = ?", (job.id,))
        conn.rollback()
    finally:
        conn.close()
    events = await store.events()
    assert [(e.kind, e.actor_id, e.detail) for e in events] == [
        ("created", 1, "seed 7"),
        ("admin_pause", 99, "queue paused"),
    ]


async def test_events_filter_and_limit(store: Store) -> None:
    a, b = await new_job(store), await new_job(store)
    await store.transition(a.id, JobState.QUEUED, JobState.CANCELLED)
    await store.transition(b.id, JobState.QUEUED, JobState.SUBMITTING)
    await store.transition(b.id, JobState.SUBMITTING, JobState.RUNNING)
    assert [e.detail for e in await store.events(job_id=b.id)] == [
        "seed 7",
        "queued->submitting",
        "submitting->running",
    ]
    latest = await store.events(limit=2)
    assert [e.detail for e in latest] == ["queued->submitting", "submitting->running"]
    assert latest[0].id < latest[1].id


async def test_cancelled_callers_never_leave_a_transaction_open(tmp_path: Path) -> None:
    """A caller cancelled inside a write transaction rolls it back; the shared connection stays usable."""
    cancel_on_tick = {"armed": False}

    def clock() -> float:
        # The store reads its clock right after BEGIN IMMEDIATE: cancel the caller exactly there.
        if cancel_on_tick["armed"]:
            cancel_on_tick["armed"] = False
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return 1_700_000_000.0

    store = await Store.open(tmp_path / "veo.sqlite3", clock=clock)
    try:
        done = await new_job(store)
        cancel_on_tick["armed"] = True
        with pytest.raises(asyncio.CancelledError):
            await new_job(store)
        cancel_on_tick["armed"] = True
        with pytest.raises(asyncio.CancelledError):
            await store.transition(done.id, JobState.QUEUED, JobState.SUBMITTING)
        # Nothing of the cancelled calls was committed, and the connection is not stuck in a transaction.
        assert (await store.stats())["total"] == 1
        assert (await store.get_job(done.id)) == done
        other = await Store.open(tmp_path / "veo.sqlite3", clock=clock)
        try:
            assert await other.transition(done.id, JobState.QUEUED, JobState.CANCELLED) is not None
        finally:
            await other.close()
        await new_job(store)
        assert (await store.stats())["total"] == 2
    finally:
        await store.close()


async def test_callers_cancelled_at_random_points_leave_consistent_data(store: Store) -> None:
    for steps in range(0, 40, 3):
        task = asyncio.create_task(new_job(store))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await new_job(store)
    created = [e for e in await store.events(limit=1000) if e.kind == "created"]
    assert (await store.stats())["total"] == len(created) >= 1


async def test_a_burst_of_commands_is_committed_together_with_positions(store: Store) -> None:
    async def one(user_id: int) -> tuple[list[Job], dict[int, int]]:
        return await store.create_jobs_with_positions(
            user_id=user_id,
            guild_id=10,
            channel_id=20,
            prompt="p",
            aspect="landscape",
            model="fast",
            seeds=[1, 2],
            daily_quota=10,
            max_active=2,
        )

    results = await asyncio.gather(*(one(u) for u in range(1, 31)))
    all_ids = [j.id for jobs, _ in results for j in jobs]
    assert len(all_ids) == len(set(all_ids)) == 60
    expected = await store.queue_positions()
    for jobs, positions in results:
        assert {j.id for j in jobs} == set(positions)
        assert jobs[0].group_id == jobs[0].id == jobs[1].group_id
        for job in jobs:
            assert positions[job.id] == expected[job.id]
    # the second request of a user in the same burst sees the first one's jobs
    refused = await asyncio.gather(one(1), one(1), return_exceptions=True)
    assert all(isinstance(r, ActiveLimitReached) for r in refused)


async def test_a_create_cancelled_before_its_transaction_creates_nothing(store: Store) -> None:
    async with store._lock:  # hold the connection so the request waits in the queue
        task = asyncio.create_task(new_job(store))
        await asyncio.sleep(0)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.stats())["total"] == 0
    assert (await new_job(store)).id > 0
