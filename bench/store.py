"""Benchmark the job store at scale: status query and state transition latency over 100,000 jobs.

Run: ``python bench/store.py [--jobs 100000] [--runs 5] [--iterations 300]``. The database lives in a
temporary directory. Each run measures every operation `--iterations` times; the report gives the median over
runs of each run's p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import JobState, Store

DAY = 86_400.0
USERS = 1_000
HEAVY_USER = 1  # one user with a much longer history than the rest
QUEUED = 300
IN_FLIGHT = 5


def fill(path: Path, jobs: int, now: float, seed: int = 7) -> None:
    """Bulk-load a realistic history (30 days, mostly delivered) straight into the migrated schema."""
    rng = random.Random(seed)
    rows: list[tuple[object, ...]] = []
    events: list[tuple[object, ...]] = []
    finished = jobs - QUEUED - IN_FLIGHT
    for i in range(jobs):
        user = HEAVY_USER if i % 20 == 0 else rng.randrange(2, USERS + 1)
        created = now - 30 * DAY + (30 * DAY - 600) * i / jobs
        if i < finished:
            state = rng.choices(["delivered", "failed", "cancelled", "timed_out"], weights=[86, 9, 4, 1])[0]
            submitted = created + rng.uniform(1, 30)
            done = submitted + rng.uniform(40, 200)
            file_path = f"/data/media/{i}.mp4" if state == "delivered" and created > now - 8 * DAY else None
        elif i < finished + IN_FLIGHT:
            state, submitted, done, file_path = "running", created + 5, None, None
        else:
            state, submitted, done, file_path = "queued", None, None, None
        rows.append(
            (
                user,
                1234,
                5678,
                f"prompt {i}: a slow pan across a misty valley at sunrise, cinematic, 35mm",
                "landscape" if i % 3 else "portrait",
                "fast" if i % 4 else "quality",
                rng.randrange(2**31),
                state,
                f"operations/{i}" if submitted else None,
                1 if submitted else 0,
                file_path,
                created,
                submitted,
                done,
                done or created,
                done if state in ("failed", "cancelled", "timed_out") else None,
            )
        )
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO jobs (user_id, guild_id, channel_id, prompt, aspect, model, seed, state, operation_name,"
            " attempts, file_path, created_at, submitted_at, finished_at, updated_at, notified_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        for job_id, row in enumerate(rows, start=1):
            events.append((row[11], "created", job_id, row[0], "seed"))
            if row[7] != "queued":
                events.append((row[11], "transition", job_id, None, "queued->submitting"))
                events.append((row[11], "transition", job_id, None, f"running->{row[7]}"))
        conn.executemany("INSERT INTO events (at, kind, job_id, actor_id, detail) VALUES (?, ?, ?, ?, ?)", events)
    conn.close()


async def timed(fn: Callable[[], Awaitable[object]], iterations: int) -> tuple[float, float]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "veo.sqlite3"
        now = time.time()
        await (await Store.open(path)).close()  # create and migrate
        start = time.perf_counter()
        fill(path, args.jobs, now)
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - start:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        start = time.perf_counter()
        store = await Store.open(path)
        print(f"open (checks + quick_check + migrations): {(time.perf_counter() - start) * 1000:.0f} ms")
        try:
            queued = await store.jobs_in_state(JobState.QUEUED)
            typical_user = queued[len(queued) // 2].user_id
            typical_job = queued[len(queued) // 2].id
            heavy_job = next(j.id for j in queued if j.user_id == HEAVY_USER)
            heavy_count = (await store.quota_status(HEAVY_USER, daily_quota=10, max_active=2)).used
            print(f"queue: {len(queued)} queued; heavy user {HEAVY_USER}: {heavy_count} jobs in the last 24 h")

            def status(user: int, job_id: int) -> Callable[[], Awaitable[object]]:
                async def run() -> None:
                    await store.user_jobs(user, limit=10)
                    await store.quota_status(user, daily_quota=10, max_active=2)
                    await store.queue_position(job_id)

                return run

            bounce_id = queued[-1].id
            direction = [JobState.QUEUED, JobState.SUBMITTING]

            async def transition() -> None:
                moved = await store.transition(bounce_id, direction[0], direction[1])
                assert moved is not None
                direction.reverse()

            ops: dict[str, Callable[[], Awaitable[object]]] = {
                "status query (typical user)": status(typical_user, typical_job),
                "status query (heavy user)": status(HEAVY_USER, heavy_job),
                "state transition": transition,
                "claim_next(5) + requeue": None,  # filled below
                "running jobs to poll": lambda: store.jobs_in_state(JobState.RUNNING, limit=50),
                "autocomplete (heavy user)": lambda: store.recent_user_jobs(HEAVY_USER, "valley", 25),
                "stats": store.stats,
                "media_to_prune": lambda: store.media_to_prune(7 * DAY),
            }

            async def claim_and_requeue() -> None:
                for job in await store.claim_next(5):
                    await store.transition(job.id, JobState.SUBMITTING, JobState.QUEUED)

            ops["claim_next(5) + requeue"] = claim_and_requeue

            results: dict[str, list[tuple[float, float]]] = {name: [] for name in ops}
            for _ in range(args.runs):
                for name, fn in ops.items():
                    iterations = args.iterations if "claim" not in name else max(20, args.iterations // 10)
                    results[name].append(await timed(fn, iterations))
            print(f"\nmedian over {args.runs} runs of {args.iterations} iterations each:")
            print(f"{'operation':32} {'p50 ms':>9} {'p99 ms':>9}")
            for name, runs in results.items():
                p50 = statistics.median(r[0] for r in runs) * 1000
                p99 = statistics.median(r[1] for r in runs) * 1000
                print(f"{name:32} {p50:9.3f} {p99:9.3f}")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
