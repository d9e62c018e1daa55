"""Group commit of the acknowledgement path: new jobs and status message ids, one transaction per round."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Job, Store
from storage.db import run_in_thread
from storage.store import MAX_CREATE_BATCH


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
