"""`/veo status` and a job transition over a 100,000-job database, beside the same SQL without indexes.

Run: ``.venv/bin/python bench/status.py [--jobs 100000] [--runs 5] [--iterations 300]``

"Status" is what `cogs/veo.py` runs for `/veo status`: user_overview() (one snapshot: the user's jobs, their
positions, the queue length, quota and recent durations) and kv_get(queue_paused), through the real `Store`.
A transition is queued -> submitting and back (each one conditional UPDATE + event insert in BEGIN
IMMEDIATE, committed with synchronous=FULL).
The baseline replays exactly the statements the Store sent (captured with SQLite's trace hook, bound values
included) on a copy of the database whose job indexes were dropped, with the store's `INDEXED BY` clauses
removed (SQLite refuses `INDEXED BY` a missing index). Figures are the median over runs of each run's p50/p99.
(bench/store.py by another engineer times more store operations, without a baseline.)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Fill, RunningJob, header, make_database, median, percentile, quiet_logs, ratio, table

HEAVY_USER = 1
_INDEXED_BY = re.compile(r"\s+INDEXED BY \w+", re.IGNORECASE)


async def timed(fn: Callable[[], Awaitable[object]], iterations: int) -> tuple[float, float]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return percentile(samples, 50), percentile(samples, 99)


def drop_job_indexes(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")]
        for name in names:
            conn.execute(f'DROP INDEX "{name}"')
        conn.commit()
    finally:
        conn.close()
    return names


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    quiet_logs()
    header("store: /veo status and a job transition at scale")

    from bot.worker import PAUSE_KEY
    from storage import JobState, Store
    from storage.db import connect

    with tempfile.TemporaryDirectory(prefix="veo-bench-status-") as tmp_dir:
        tmp = Path(tmp_dir)
        path, bare = tmp / "veo.sqlite3", tmp / "bare.sqlite3"
        in_flight = [RunningJob(f"op-{i}", f"scene-{i}", None, "project", 2 + i) for i in range(5)]
        start = time.perf_counter()
        await make_database(path, Fill(jobs=args.jobs, queued=300, running=in_flight, heavy_user=HEAVY_USER))
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - start:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        shutil.copy(path, bare)
        dropped = drop_job_indexes(bare)
        print(f"baseline copy without indexes: dropped {', '.join(dropped)}\n")

        store = await Store.open(path)
        conn = await connect(bare)
        try:
            queued = await store.jobs_in_state(JobState.QUEUED)
            typical_user = queued[len(queued) // 2].user_id
            bounce = queued[-1].id

            def status(user: int) -> Callable[[], Awaitable[object]]:
                async def run() -> None:
                    await store.user_overview(user, daily_quota=10, max_active=2)
                    await store.kv_get(PAUSE_KEY)

                return run

            direction = [JobState.QUEUED, JobState.SUBMITTING]

            async def transition() -> None:
                if await store.transition(bounce, direction[0], direction[1]) is None:
                    raise SystemExit("transition did not apply")
                direction.reverse()

            async def capture(fn: Callable[[], Awaitable[object]]) -> list[str]:
                """The statements `fn` sends, bound values inlined, INDEXED BY removed."""
                seen: list[str] = []
                raw = store._conn  # the Store's own connection: only its trace shows the exact SQL
                assert raw is not None
                await raw.set_trace_callback(seen.append)
                await fn()
                await raw.set_trace_callback(None)
                return [_INDEXED_BY.sub("", s) for s in seen]

            def replay(statements: list[list[str]]) -> Callable[[], Awaitable[object]]:
                turn = [0]

                async def run() -> None:
                    for sql in statements[turn[0] % len(statements)]:
                        async with conn.execute(sql) as cur:
                            await cur.fetchall()
                    turn[0] += 1

                return run

            ops: dict[str, tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]] = {}
            for label, user in (("/veo status (typical user)", typical_user), ("/veo status (heavy user)", HEAVY_USER)):
                ops[label] = (status(user), replay([await capture(status(user))]))
            forward = await capture(transition)
            back = await capture(transition)
            ops["job transition"] = (transition, replay([forward, back]))

            results: dict[str, dict[str, list[tuple[float, float]]]] = {k: {"ours": [], "bare": []} for k in ops}
            for _ in range(args.runs):
                for label, (ours, bare_fn) in ops.items():
                    results[label]["ours"].append(await timed(ours, args.iterations))
                    results[label]["bare"].append(await timed(bare_fn, max(10, args.iterations // 10)))
        finally:
            await store.close()
            await conn.close()

    rows = []
    for label, res in results.items():
        o50, o99 = median(r[0] for r in res["ours"]), median(r[1] for r in res["ours"])
        b50, b99 = median(r[0] for r in res["bare"]), median(r[1] for r in res["bare"])
        rows.append(
            [label, f"{o50 * 1000:.2f}", f"{o99 * 1000:.2f}", f"{b50 * 1000:.2f}", f"{b99 * 1000:.2f}", ratio(b99, o99)]
        )
    print(f"{args.jobs:,} jobs; median over {args.runs} runs of {args.iterations} iterations (baseline: a tenth)\n")
    print(table(["operation", "ours p50 ms", "ours p99 ms", "no-index p50 ms", "no-index p99 ms", "p99 ratio"], rows))
    print("\ngoal: p99 < 10 ms")


if __name__ == "__main__":
    asyncio.run(main())
