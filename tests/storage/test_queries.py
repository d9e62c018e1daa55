"""Fair queue order, queue positions, and the read queries the bot relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Job, JobState, Store, new_nonce

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
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


async def queue(store: Store, user_id: int, count: int = 1, prompt: str = "a lighthouse") -> list[Job]:
    return await store.create_jobs(
        user_id=user_id,
        guild_id=1,
        channel_id=2,
        prompt=prompt,
        aspect="landscape",
        model="fast",
        seeds=list(range(count)),
        daily_quota=0,
        max_active=0,
        unlimited=True,
    )


async def advance(store: Store, job: Job, *chain: JobState, **fields: object) -> Job:
    state = job.state
    for nxt in chain:
        extra = {"delivery_nonce": new_nonce()} if nxt is JobState.DELIVERING else {}
        moved = await store.transition(job.id, state, nxt, **extra)
        assert moved is not None
        job, state = moved, nxt
    if fields:
        await store.update_job(job.id, **fields)
        got = await store.get_job(job.id)
        assert got is not None
        job = got
    return job


TO_DELIVERED = (
    JobState.SUBMITTING,
    JobState.RUNNING,
    JobState.DOWNLOADING,
    JobState.DELIVERING,
    JobState.DELIVERED,
)


async def test_one_big_batch_cannot_starve_a_later_user(store: Store) -> None:
    a_jobs = [job for _ in range(20) for job in await queue(store, user_id=1)]
    (b_job,) = await queue(store, user_id=2)
    first = await store.claim_next(1)
    second = await store.claim_next(1)
    assert [first[0].id, second[0].id] == [a_jobs[0].id, b_job.id]
    # A's remaining jobs follow in FIFO order.
    rest = await store.claim_next(100)
    assert [j.id for j in rest] == [j.id for j in a_jobs[1:]]
    assert await store.claim_next(5) == []


async def test_claiming_several_at_once_interleaves_users(store: Store) -> None:
    a = await queue(store, user_id=1, count=4)
    b = await queue(store, user_id=2, count=2)
    (c,) = await queue(store, user_id=3)
    claimed = await store.claim_next(5)
    assert [j.id for j in claimed] == [a[0].id, b[0].id, c.id, a[1].id, b[1].id]
    assert all(j.state is JobState.SUBMITTING and j.attempts == 1 for j in claimed)
    assert await store.count_in_flight() == 5


async def test_queue_positions_follow_the_fair_order(store: Store) -> None:
    a = await queue(store, user_id=1, count=3)
    b = await queue(store, user_id=2, count=2)
    (c,) = await queue(store, user_id=3)
    expected = [a[0], b[0], c, a[1], b[1], a[2]]
    assert await store.queue_positions() == {j.id: i for i, j in enumerate(expected, start=1)}
    assert await store.queue_position(c.id) == 3
    await store.transition(a[0].id, JobState.QUEUED, JobState.CANCELLED)
    assert await store.queue_position(a[0].id) is None
    # A's next job takes A's first turn; the order of everyone else is unchanged.
    assert await store.queue_positions() == {a[1].id: 1, b[0].id: 2, c.id: 3, a[2].id: 4, b[1].id: 5}
    assert await store.queue_position(424242) is None


async def test_jobs_already_at_flow_count_as_turns_taken(store: Store) -> None:
    a = await queue(store, user_id=1, count=3)
    await advance(store, a[0], JobState.SUBMITTING, JobState.RUNNING)
    await advance(store, a[1], JobState.SUBMITTING)
    (b,) = await queue(store, user_id=2)
    positions = await store.queue_positions()
    assert positions == {b.id: 1, a[2].id: 2}
    assert [j.id for j in await store.claim_next(2)] == [b.id, a[2].id]


async def test_requeued_job_keeps_its_place_within_the_user(store: Store) -> None:
    a = await queue(store, user_id=1, count=2)
    (claimed,) = await store.claim_next(1)
    assert claimed.id == a[0].id
    await store.transition(claimed.id, JobState.SUBMITTING, JobState.QUEUED, error_kind="flow_busy")
    (again,) = await store.claim_next(1)
    assert (again.id, again.attempts) == (a[0].id, 2)


async def test_jobs_in_state_unfinished_and_stats(store: Store) -> None:
    jobs = await queue(store, user_id=1, count=6)
    await advance(store, jobs[0], *TO_DELIVERED)
    await advance(store, jobs[1], JobState.SUBMITTING, JobState.RUNNING)
    await advance(store, jobs[2], JobState.SUBMITTING, JobState.RUNNING)
    await advance(store, jobs[3], JobState.CANCELLED)
    await advance(store, jobs[4], JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING)
    running = await store.jobs_in_state(JobState.RUNNING)
    assert [j.id for j in running] == [jobs[1].id, jobs[2].id]
    assert [j.id for j in await store.jobs_in_state(JobState.RUNNING, limit=1)] == [jobs[1].id]
    assert await store.jobs_in_state() == []
    assert [j.id for j in await store.unfinished_jobs()] == [jobs[1].id, jobs[2].id, jobs[4].id, jobs[5].id]
    stats = await store.stats()
    assert stats == {
        "queued": 1,
        "submitting": 0,
        "running": 2,
        "downloading": 1,
        "delivering": 0,
        "delivered": 1,
        "failed": 0,
        "cancelled": 1,
        "timed_out": 0,
        "total": 6,
    }
    assert await store.count_in_flight() == 2


async def test_user_jobs_lists_unfinished_first_then_most_recent(store: Store, clock: Clock) -> None:
    old = []
    for _ in range(4):
        (job,) = await queue(store, user_id=1)
        old.append(await advance(store, job, *TO_DELIVERED))
        clock.now += 10
    (pending,) = await queue(store, user_id=1)
    await queue(store, user_id=2)
    listed = await store.user_jobs(1, limit=3)
    assert [j.id for j in listed] == [pending.id, old[3].id, old[2].id]
    assert [j.id for j in await store.user_jobs(1, limit=1)] == [pending.id]
    assert len(await store.user_jobs(1)) == 5
    assert await store.user_jobs(99) == []


async def test_recent_user_jobs_for_autocomplete(store: Store, clock: Clock) -> None:
    ids = []
    for prompt in ["A Cat on a skateboard", "dog surfing", "cathedral at night"]:
        ids.append((await queue(store, user_id=1, prompt=prompt))[0].id)
        clock.now += 1
    await queue(store, user_id=2, prompt="cat of another user")
    assert [j.id for j in await store.recent_user_jobs(1)] == ids[::-1]
    assert [j.id for j in await store.recent_user_jobs(1, "CAT")] == [ids[2], ids[0]]
    assert [j.id for j in await store.recent_user_jobs(1, f"#{ids[1]}")] == [ids[1]]
    assert [j.id for j in await store.recent_user_jobs(1, str(ids[1]))] == [ids[1]]
    assert [j.id for j in await store.recent_user_jobs(1, "cat", limit=1)] == [ids[2]]
    assert await store.recent_user_jobs(1, "%") == []
    assert await store.recent_user_jobs(1, "zebra") == []


async def test_recent_durations_come_from_delivered_jobs(store: Store, clock: Clock) -> None:
    durations = []
    for seconds in (40.0, 55.0, 70.0):
        (job,) = await queue(store, user_id=1)
        job = await advance(store, job, JobState.SUBMITTING, JobState.RUNNING)
        clock.now += seconds
        await advance(store, job, JobState.DOWNLOADING, JobState.DELIVERING, JobState.DELIVERED)
        durations.append(seconds)
        clock.now += 1
    (failed,) = await queue(store, user_id=1)
    failed = await advance(store, failed, JobState.SUBMITTING, JobState.RUNNING)
    clock.now += 999
    await advance(store, failed, JobState.FAILED)
    assert await store.recent_durations() == durations[::-1]
    assert await store.recent_durations(limit=2) == durations[:0:-1]


async def test_media_to_prune(store: Store, clock: Clock) -> None:
    day = 86_400.0
    old_delivered, old_failed, old_no_file, recent, unfinished = await queue(store, user_id=1, count=5)
    old_delivered = await advance(store, old_delivered, *TO_DELIVERED, file_path="/m/1.mp4", file_size=10)
    old_failed = await advance(
        store, old_failed, JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING, file_path="/m/2.mp4"
    )
    old_failed = await advance(store, old_failed, JobState.FAILED)
    await advance(store, old_no_file, *TO_DELIVERED)
    await advance(store, unfinished, JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING, file_path="/m/5")
    clock.now += 6 * day
    await advance(store, recent, *TO_DELIVERED, file_path="/m/4.mp4")
    clock.now += 1.5 * day
    prune = await store.media_to_prune(7 * day)
    assert [j.id for j in prune] == [old_delivered.id, old_failed.id]
    await store.update_job(old_delivered.id, file_path=None)
    assert [j.id for j in await store.media_to_prune(7 * day)] == [old_failed.id]
    assert [j.id for j in await store.media_to_prune(0.5 * day)] == [old_failed.id, recent.id]
    assert [j.id for j in await store.media_to_prune(0.5 * day, limit=1)] == [old_failed.id]


async def test_kv_settings(store: Store) -> None:
    assert await store.kv_get("queue_paused") is None
    await store.kv_set("queue_paused", "1")
    await store.kv_set("flow_project_id", "proj-123")
    await store.kv_set("queue_paused", "0")
    assert (await store.kv_get("queue_paused"), await store.kv_get("flow_project_id")) == ("0", "proj-123")
    await store.kv_set("queue_paused", None)
    assert await store.kv_get("queue_paused") is None
    await store.kv_set("absent", None)


async def test_user_overview_matches_the_separate_queries(store: Store, clock: Clock) -> None:
    await queue(store, 1, 3)
    mine = await queue(store, 2, 4)
    await advance(store, mine[0], *TO_DELIVERED)
    clock.now += 60
    overview = await store.user_overview(2, daily_quota=10, max_active=5)
    assert [j.id for j in overview.jobs] == [j.id for j in await store.user_jobs(2)]
    everything = await store.queue_positions()
    assert overview.positions == {j.id: everything[j.id] for j in mine[1:]}
    assert overview.queued == len(everything) == 6
    assert overview.quota == await store.quota_status(2, daily_quota=10, max_active=5)
    assert overview.durations == await store.recent_durations(20)
    empty = await store.user_overview(3, daily_quota=10, max_active=5)
    assert (empty.jobs, empty.positions, empty.queued) == ([], {}, 6)
