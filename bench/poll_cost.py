"""Flow status calls per poll tick and per delivered video: the worker's batched poller beside one call per job.

Run: ``.venv/bin/python bench/poll_cost.py [--jobs 10 100 1000] [--runs 3] [--polls-to-finish 3]``

Both pollers drive the same real `Worker`, `FlowClient`, `Store` and Flow emulator on loopback; the baseline
only swaps the Flow client for one whose ``check_status`` sends one request per operation (each request is
the real client's, so retries and parsing are identical). The worker's clock is moved one poll interval per
tick, so no sleeping is involved. The Discord side is a counter: it posts nothing and costs no Flow calls.
Per tick counts are exact; times are medians over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_USER_BASE, CountingDelivery, ManualClock, header, median, quiet_logs, table

POLL_INTERVAL = 5.0


class OneCallPerJob:
    """The naive poller's Flow client: the real client, asked about one operation per status request."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def check_status(self, refs: list) -> list:
        results = await asyncio.gather(*(self._inner.check_status([ref]) for ref in refs))  # type: ignore[attr-defined]
        return [r for batch in results for r in batch]


@dataclass
class Run:
    per_tick: list[int]
    status_calls: int
    delivered: int
    tick_seconds: list[float]
    generate_calls: int


async def one_run(jobs: int, naive: bool, polls_to_finish: int, batch: int) -> Run:
    import aiohttp

    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from bot.worker import Worker
    from storage import JobState, Store
    from tests.fakes.flow_emulator import FlowEmulator

    with tempfile.TemporaryDirectory(prefix="veo-bench-poll-") as tmp_dir:
        tmp = Path(tmp_dir)
        async with FlowEmulator(polls_to_finish=polls_to_finish, video_size=4096) as emu:
            emu.credits = 10**9
            emu.write_cookie_file(tmp / "cookie.json")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http:
                creds = Credentials(tmp / "cookie.json", http, labs_base=emu.labs_base)
                await creds.load()
                client = FlowClient(
                    http, creds, api_base=emu.api_base, labs_base=emu.labs_base, status_batch_size=batch
                )
                flow = OneCallPerJob(client) if naive else client
                store = await Store.open(tmp / "veo.sqlite3")
                clock = ManualClock()
                delivery = CountingDelivery(expected=jobs)
                worker = Worker(
                    store,
                    flow,  # type: ignore[arg-type]
                    delivery,
                    media_dir=tmp / "media",
                    poll_interval=POLL_INTERVAL,
                    max_concurrent=jobs,  # Settings caps FLOW_MAX_CONCURRENT at 100; the worker takes any
                    project_id=emu.add_project(),
                    clock=clock,
                )
                (tmp / "media").mkdir()
                try:
                    for i in range(jobs):
                        await store.create_jobs(
                            user_id=BENCH_USER_BASE + i,
                            guild_id=1,
                            channel_id=2,
                            prompt=f"poll bench {i}",
                            aspect="landscape",
                            model="fast",
                            seeds=[i],
                            daily_quota=10,
                            max_active=2,
                        )
                    await worker.tick()  # nothing to poll yet; submits every job
                    running = len(await store.jobs_in_state(JobState.RUNNING))
                    if running != jobs:
                        raise SystemExit(f"only {running} of {jobs} jobs reached Flow")
                    per_tick: list[int] = []
                    tick_seconds: list[float] = []
                    while await store.jobs_in_state(JobState.RUNNING):
                        clock.advance(POLL_INTERVAL)
                        before = len(emu.calls("status"))
                        start = time.perf_counter()
                        await worker.tick()
                        tick_seconds.append(time.perf_counter() - start)
                        per_tick.append(len(emu.calls("status")) - before)
                        if len(per_tick) > polls_to_finish + 5:
                            raise SystemExit("jobs did not finish")
                    await asyncio.wait_for(delivery.done.wait(), 120)
                    await worker.drain()
                finally:
                    await worker.stop()
                    await store.close()
            return Run(
                per_tick=per_tick,
                status_calls=len(emu.calls("status")),
                delivered=len(delivery.videos),
                tick_seconds=tick_seconds,
                generate_calls=len(emu.calls("generate")),
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--polls-to-finish", type=int, default=3, help="status polls a generation needs at Flow")
    parser.add_argument("--batch", type=int, default=50, help="FLOW_STATUS_BATCH_SIZE (the bot's default: 50)")
    args = parser.parse_args()
    quiet_logs()
    header("poll cost: Flow status calls, batched worker vs one call per job")
    print(f"each generation needs {args.polls_to_finish} status polls; FLOW_STATUS_BATCH_SIZE={args.batch}")
    rows = []
    for jobs in args.jobs:
        ours = [await one_run(jobs, False, args.polls_to_finish, args.batch) for _ in range(args.runs)]
        naive = [await one_run(jobs, True, args.polls_to_finish, args.batch) for _ in range(args.runs)]
        for label, runs in (("batched (ours)", ours), ("one per job", naive)):
            r = runs[0]
            if any(x.delivered != jobs for x in runs):
                raise SystemExit(f"{label}: not every job was delivered")
            full_ticks = [n for n in r.per_tick if n]
            rows.append(
                [
                    jobs,
                    label,
                    max(full_ticks),
                    f"{r.status_calls / r.delivered:.2f}",
                    f"{median(median(x.tick_seconds) for x in runs) * 1000:.0f} ms",
                    f"{r.generate_calls}",
                ]
            )
        o, n = ours[0], naive[0]
        per_tick_ratio = max(n.per_tick) / max(o.per_tick)
        rows.append(
            [
                jobs,
                "ratio (baseline / ours)",
                f"{per_tick_ratio:.1f}x",
                f"{n.status_calls / o.status_calls:.1f}x",
                "",
                "",
            ]
        )
        expected = math.ceil(jobs / args.batch)
        if max(o.per_tick) != expected:
            print(f"note: {jobs} jobs took {max(o.per_tick)} status calls per tick, expected {expected}")
    print()
    print(
        table(
            [
                "running jobs",
                "poller",
                "status calls/tick",
                "status calls/video",
                "tick time (median)",
                "generate calls",
            ],
            rows,
        )
    )
    print("\ngoal: >= 50x fewer status calls at 100 jobs")


if __name__ == "__main__":
    asyncio.run(main())
