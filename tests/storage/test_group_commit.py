"""Group commit of the acknowledgement path: new jobs and status message ids, one transaction per round."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import MAX_CREATE_BATCH, ActiveLimitReached, Job, Store
from storage.db import run_in_thread


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "veo.sqlite3")
    yield s
    await s.close()


async def new_jobs(store: Store, user_id: int, count: int = 1) -> list[Job]:
    return await store.create_jobs(
        user_id=user_id,
        guild_id=10,
        channel_id=20,
        prompt="a red fox in snow",
        aspect="landscape",
        model="fast",
        seeds=list(range(1, count + 1)),
        daily_quota=10,
        max_active=4,
    )


async def test_status_message_ids_and_new_jobs_of_a_burst_are_all_stored(store: Store) -> None:
    first = [await new_jobs(store, user, 2) for user in range(1, 6)]
    await asyncio.gather(
        *(store.set_status_message([j.id for j in jobs], 9000 + i) for i, jobs in enumerate(first)),
        *(new_jobs(store, user) for user in range(10, 10 + 2 * MAX_CREATE_BATCH + 3)),
    )
    for i, jobs in enumerate(first):
        assert [(await store.get_job(j.id)).status_message_id for j in jobs] == [9000 + i] * 2  # type: ignore[union-attr]
    assert (await store.stats())["total"] == 10 + 2 * MAX_CREATE_BATCH + 3


async def test_a_batch_abandoned_before_the_thread_ran_it_commits_nothing(store: Store) -> None:
    """Cancelled while its transaction waits for the connection's thread: rolled back, callers cancelled."""
    release = threading.Event()
    conn = store._require()
    busy = asyncio.ensure_future(run_in_thread(conn, lambda _db: release.wait(10)))
    creating = asyncio.create_task(new_jobs(store, 1))
    for _ in range(50):  # a few turns of the loop: the drainer takes the request and hands it to the thread
        if store._create_drainer is not None and not store._create_queue:
            break
        await asyncio.sleep(0)
    assert store._create_drainer is not None and not store._create_queue
    store._create_drainer.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await creating
    assert await busy
    assert (await store.stats())["total"] == 0
    assert len(await new_jobs(store, 1)) == 1  # the connection is usable and not inside a transaction


async def test_one_round_keeps_values_exact_and_sees_earlier_requests(tmp_path: Path) -> None:
    """Set-based rounds: text, REALs and ids come back exactly as `get_job` reads them; a later request of the
    same user in the same round is checked against the earlier one's jobs."""
    now = 1764874800.1234567
    store = await Store.open(tmp_path / "veo.sqlite3", clock=lambda: now)
    prompt = "a\x00b 🦊 \u202e é \\\" ' \n end"

    async def one(user: int, seeds: list[int], cost: float = 1.2000000000000002) -> tuple[list[Job], dict[int, int]]:
        return await store.create_jobs_with_positions(
            user_id=user,
            guild_id=None,
            channel_id=5,
            prompt=prompt,
            aspect="portrait",
            model="quality",
            seeds=seeds,
            daily_quota=10,
            max_active=2,
            cost=cost,
            cost_unit="usd",
        )

    try:
        first, second, third = await asyncio.gather(
            one(1, [1, 2, 3]), one(1, [4]), one(2, [5], 0.1), return_exceptions=True
        )
        assert isinstance(second, ActiveLimitReached)
        assert (second.status.active, second.status.resets_at) == (3, now + 86_400)
        assert not isinstance(first, BaseException) and not isinstance(third, BaseException)
        jobs = [*first[0], *third[0]]
        assert [(j.seed, j.cost, j.prompt, j.created_at) for j in jobs] == [
            (1, 1.2000000000000002, prompt, now),
            (2, 1.2000000000000002, prompt, now),
            (3, 1.2000000000000002, prompt, now),
            (5, 0.1, prompt, now),
        ]
        assert {j.group_id for j in first[0]} == {first[0][0].id} and third[0][0].group_id is None
        for job in jobs:
            assert await store.get_job(job.id) == job
        assert {**first[1], **third[1]} == await store.queue_positions()
        created = [(e.job_id, e.actor_id, e.detail) for e in await store.events() if e.kind == "created"]
        assert created == [(j.id, j.user_id, f"seed {j.seed}") for j in jobs]
    finally:
        await store.close()
