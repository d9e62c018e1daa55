"""Rolling daily quota, active limit, overrides, admins, and the all-or-nothing check-and-insert."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import (
    QUOTA_WINDOW,
    ActiveLimitReached,
    Job,
    JobState,
    QuotaExceeded,
    Store,
    new_nonce,
)

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


async def request(
    store: Store,
    user_id: int = 1,
    *,
    count: int = 1,
    daily_quota: int = 10,
    max_active: int = 100,
    unlimited: bool = False,
) -> list[Job]:
    return await store.create_jobs(
        user_id=user_id,
        guild_id=5,
        channel_id=6,
        prompt="waves at dusk",
        aspect="landscape",
        model="fast",
        seeds=list(range(count)),
        daily_quota=daily_quota,
        max_active=max_active,
        unlimited=unlimited,
    )


async def finish(store: Store, job: Job, end: JobState) -> None:
    """Drive a job from queued to `end` along allowed edges."""
    chains = {
        JobState.DELIVERED: [
            JobState.SUBMITTING,
            JobState.RUNNING,
            JobState.DOWNLOADING,
            JobState.DELIVERING,
            JobState.DELIVERED,
        ],
        JobState.FAILED: [JobState.SUBMITTING, JobState.RUNNING, JobState.FAILED],
        JobState.TIMED_OUT: [JobState.SUBMITTING, JobState.RUNNING, JobState.TIMED_OUT],
        JobState.CANCELLED: [JobState.CANCELLED],
    }
    state = JobState.QUEUED
    for nxt in chains[end]:
        extra = {"delivery_nonce": new_nonce()} if nxt is JobState.DELIVERING else {}
        assert await store.transition(job.id, state, nxt, **extra) is not None
        state = nxt


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "separate-connections"])
async def test_fifty_simultaneous_requests_with_quota_ten_create_exactly_ten(
    tmp_path: Path, clock: Clock, shared: bool
) -> None:
    path = tmp_path / "veo.sqlite3"
    first = await Store.open(path, clock=clock)
    stores = [first] * 50 if shared else [first, *[await Store.open(path, clock=clock) for _ in range(49)]]
    try:
        results = await asyncio.gather(
            *(request(s, user_id=42, daily_quota=10, max_active=50) for s in stores), return_exceptions=True
        )
        created = [r for r in results if isinstance(r, list)]
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert (len(created), len(refused)) == (10, 40)
        assert all(e.status.used == 10 and e.status.remaining == 0 for e in refused)
        assert (await first.stats())["total"] == 10
        assert len({job.id for jobs in created for job in jobs}) == 10
    finally:
        for s in set(stores):
            await s.close()


async def test_simultaneous_requests_respect_the_active_limit(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "veo.sqlite3"
    stores = [await Store.open(path, clock=clock) for _ in range(10)]
    try:
        results = await asyncio.gather(
            *(request(s, daily_quota=100, max_active=2) for s in stores for _ in range(2)), return_exceptions=True
        )
        assert sum(isinstance(r, list) for r in results) == 2
        assert sum(isinstance(r, ActiveLimitReached) for r in results) == 18
    finally:
        for s in stores:
            await s.close()


async def test_rolling_window_frees_a_slot_when_the_oldest_job_turns_24h(store: Store, clock: Clock) -> None:
    first = (await request(store, daily_quota=3))[0]
    clock.now += 3600
    await request(store, daily_quota=3, count=2)
    with pytest.raises(QuotaExceeded) as info:
        await request(store, daily_quota=3)
    status = info.value.status
    assert (status.used, status.limit, status.remaining) == (3, 3, 0)
    assert status.resets_at == first.created_at + QUOTA_WINDOW
    clock.now = first.created_at + QUOTA_WINDOW - 0.001
    with pytest.raises(QuotaExceeded):
        await request(store, daily_quota=3)
    clock.now = first.created_at + QUOTA_WINDOW
    await request(store, daily_quota=3)
    status = await store.quota_status(1, daily_quota=3, max_active=100)
    assert (status.used, status.remaining, status.resets_at) == (3, 0, T0 + 3600 + QUOTA_WINDOW)


async def test_unsuccessful_jobs_do_not_count_but_delivered_and_unfinished_do(store: Store) -> None:
    jobs = await request(store, count=6, daily_quota=10)
    await finish(store, jobs[0], JobState.FAILED)
    await finish(store, jobs[1], JobState.CANCELLED)
    await finish(store, jobs[2], JobState.TIMED_OUT)
    await finish(store, jobs[3], JobState.DELIVERED)
    status = await store.quota_status(1, daily_quota=10, max_active=100)
    assert (status.used, status.remaining, status.active) == (3, 7, 2)  # delivered + two still queued
    assert status.resets_at == T0 + QUOTA_WINDOW


async def test_request_is_all_or_nothing(store: Store) -> None:
    await request(store, count=2, daily_quota=4)
    with pytest.raises(QuotaExceeded) as info:
        await request(store, count=3, daily_quota=4)
    assert info.value.requested == 3
    assert info.value.status.remaining == 2
    with pytest.raises(ActiveLimitReached) as active:
        await request(store, count=2, daily_quota=4, max_active=3)
    assert (active.value.status.active, active.value.status.max_active) == (2, 3)
    assert (await store.stats())["total"] == 2
    assert len(await request(store, count=2, daily_quota=4)) == 2


async def test_active_limit_counts_unfinished_jobs_only(store: Store) -> None:
    a, b = await request(store, count=2, max_active=2)
    with pytest.raises(ActiveLimitReached):
        await request(store, max_active=2)
    await finish(store, a, JobState.DELIVERED)
    (c,) = await request(store, max_active=2)
    await finish(store, b, JobState.FAILED)
    await finish(store, c, JobState.CANCELLED)
    assert len(await request(store, count=2, max_active=2)) == 2


async def test_override_replaces_the_default_and_can_be_removed(store: Store) -> None:
    assert await store.get_quota_override(1) is None
    await store.set_quota_override(1, 1, actor_id=900)
    assert await store.get_quota_override(1) == 1
    await request(store, daily_quota=10)
    with pytest.raises(QuotaExceeded) as info:
        await request(store, daily_quota=10)
    assert info.value.status.limit == 1
    await request(store, user_id=2, daily_quota=10)  # other users keep the default
    await store.set_quota_override(1, 0)
    assert (await store.quota_status(1, daily_quota=10, max_active=5)).remaining == 0
    await store.set_quota_override(1, None)
    assert await store.get_quota_override(1) is None
    assert (await store.quota_status(1, daily_quota=10, max_active=5)).remaining == 9
    admin_events = [e for e in await store.events() if e.kind == "quota_override"]
    assert [(e.actor_id, e.detail) for e in admin_events] == [
        (900, "user 1: 1"),
        (None, "user 1: 0"),
        (None, "user 1: default"),
    ]
    with pytest.raises(ValueError, match="negative"):
        await store.set_quota_override(1, -1)


async def test_unlimited_skips_both_checks(store: Store) -> None:
    await store.set_quota_override(7, 0)
    for _ in range(3):
        await request(store, user_id=7, count=4, daily_quota=1, max_active=1, unlimited=True)
    status = await store.quota_status(7, daily_quota=1, max_active=1, unlimited=True)
    assert (status.used, status.limit, status.remaining, status.max_active, status.active) == (12, None, None, None, 12)
    limited = await store.quota_status(7, daily_quota=1, max_active=1)
    assert (limited.limit, limited.remaining) == (0, 0)


async def test_group_id_is_shared_only_by_multi_seed_requests(store: Store) -> None:
    group = await request(store, count=4)
    single = await request(store)
    assert {j.group_id for j in group} == {group[0].id}
    assert [j.seed for j in group] == [0, 1, 2, 3]
    assert single[0].group_id is None
    assert [e.kind for e in await store.events()] == ["created"] * 5
    await store.transition(group[2].id, JobState.QUEUED, JobState.CANCELLED)
    members = await store.group_jobs(group[2])
    assert [j.id for j in members] == [j.id for j in group]
    assert members[2].state is JobState.CANCELLED
    assert [j.id for j in await store.group_jobs(single[0])] == [single[0].id]


async def test_bad_requests_are_refused_before_touching_the_database(store: Store) -> None:
    with pytest.raises(ValueError, match="seed"):
        await request(store, count=0)
    with pytest.raises(ValueError, match="square"):
        await store.create_jobs(
            user_id=1,
            guild_id=None,
            channel_id=1,
            prompt="p",
            aspect="square",
            model="fast",
            seeds=[1],
            daily_quota=1,
            max_active=1,
        )
    assert (await store.stats())["total"] == 0


async def test_fresh_user_status(store: Store) -> None:
    status = await store.quota_status(5, daily_quota=10, max_active=2)
    assert (status.used, status.limit, status.remaining, status.resets_at, status.active, status.max_active) == (
        0,
        10,
        10,
        None,
        0,
        2,
    )
