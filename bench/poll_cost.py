"""Status requests per delivered video: Flow's batched poller beside one call per job, and Vertex AI's per-operation
schedule beside a naive fixed-interval poller.

Run: ``.venv/bin/python bench/poll_cost.py [--jobs 10 100 1000] [--vertex-jobs 10 100] [--runs 3]``

Every poller drives the same real `Worker`, backend, `Store` and emulator on loopback; only the polling policy
differs. The worker's clock (and the Vertex backend's) is moved one poll interval per tick, so nothing sleeps.
The Discord side is a counter: it posts nothing and costs no requests. Counts are exact; times are medians over
``--runs`` runs.

- Flow: the baseline swaps the Flow client for one whose ``check_status`` sends one request per operation (each
  request is the real client's, so retries and parsing are identical).
- Vertex AI has no batch status call, so every poll is one request per operation. Ours is the `VertexBackend`'s
  schedule as `python -m bot` builds it at the default VEO_POLL_INTERVAL of 5 s (no poll before 30 s, then
  10 s growing by 1.5x up to 30 s, 4 requests at once); the baseline is the same backend polling every running
  operation every tick. The emulator finishes each operation a seeded 40-90 s (simulated) after its submit.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_USER_BASE, CountingDelivery, ManualClock, header, median, quiet_logs, table

POLL_INTERVAL = 5.0
#: Simulated seconds a Veo operation takes on Vertex AI (uniform, seeded).
VERTEX_DONE_AFTER = (40.0, 90.0)
#: The environment the google-genai SDK reads by itself; the bench passes everything explicitly.
SDK_ENV = (
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_GENAI_API_VERSION",
)


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
    #: Simulated seconds from an operation being done to the poll that saw it (Vertex only).
    notice_delays: list[float]


async def queue_jobs(store: Any, jobs: int) -> None:
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


async def drive(
    worker: Any, store: Any, clock: ManualClock, delivery: CountingDelivery, jobs: int, polls: Any, max_ticks: int
) -> tuple[list[int], list[float]]:
    """Submit every job, then tick one poll interval at a time until none runs; per-tick poll counts and times."""
    from storage import JobState

    await worker.tick()  # nothing to poll yet; submits every job
    running = len(await store.jobs_in_state(JobState.RUNNING))
    if running != jobs:
        raise SystemExit(f"only {running} of {jobs} jobs reached the backend")
    per_tick: list[int] = []
    tick_seconds: list[float] = []
    while await store.jobs_in_state(JobState.RUNNING):
        clock.advance(POLL_INTERVAL)
        before = polls()
        start = time.perf_counter()
        await worker.tick()
        tick_seconds.append(time.perf_counter() - start)
        per_tick.append(polls() - before)
        if len(per_tick) > max_ticks:
            raise SystemExit("jobs did not finish")
    await asyncio.wait_for(delivery.done.wait(), 120)
    await worker.drain()
    return per_tick, tick_seconds


# --- Flow ---------------------------------------------------------------------------------------------


async def flow_run(jobs: int, naive: bool, polls_to_finish: int, batch: int) -> Run:
    import aiohttp

    from bot.backends.flow.backend import FlowBackend
    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from bot.worker import Worker
    from storage import Store
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
                backend = FlowBackend(
                    OneCallPerJob(client) if naive else client,  # type: ignore[arg-type]
                    creds,
                    max_concurrent=jobs,  # Settings caps FLOW_MAX_CONCURRENT at 100; the backend takes any
                    project_id=emu.add_project(),
                )
                store = await Store.open(tmp / "veo.sqlite3")
                clock = ManualClock()
                delivery = CountingDelivery(expected=jobs)
                worker = Worker(
                    store,
                    {"flow": backend},  # type: ignore[dict-item]
                    delivery,
                    default_backend="flow",
                    media_dir=tmp / "media",
                    poll_interval=POLL_INTERVAL,
                    clock=clock,
                )
                (tmp / "media").mkdir()
                try:
                    await queue_jobs(store, jobs)
                    per_tick, tick_seconds = await drive(
                        worker, store, clock, delivery, jobs, lambda: len(emu.calls("status")), polls_to_finish + 5
                    )
                finally:
                    await worker.stop()
                    await store.close()
            return Run(
                per_tick=per_tick,
                status_calls=len(emu.calls("status")),
                delivered=len(delivery.videos),
                tick_seconds=tick_seconds,
                generate_calls=len(emu.calls("generate")),
                notice_delays=[],
            )


def flow_rows(jobs: int, ours: list[Run], naive: list[Run], batch: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for label, runs in (("batched (ours)", ours), ("one per job", naive)):
        r = runs[0]
        if any(x.delivered != jobs for x in runs):
            raise SystemExit(f"flow {label}: not every job was delivered")
        rows.append(
            [
                jobs,
                label,
                max(n for n in r.per_tick if n),
                f"{r.status_calls / r.delivered:.2f}",
                f"{median(median(x.tick_seconds) for x in runs) * 1000:.0f} ms",
                f"{r.generate_calls}",
            ]
        )
    o, n = ours[0], naive[0]
    rows.append(
        [
            jobs,
            "ratio (baseline / ours)",
            f"{max(n.per_tick) / max(o.per_tick):.1f}x",
            f"{n.status_calls / o.status_calls:.1f}x",
            "",
            "",
        ]
    )
    expected = math.ceil(jobs / batch)
    if max(o.per_tick) != expected:
        print(f"note: {jobs} jobs took {max(o.per_tick)} status calls per tick, expected {expected}")
    return rows


# --- Vertex AI ----------------------------------------------------------------------------------------


def timed_vertex_emulator(clock: ManualClock, seed: int, **kwargs: Any) -> Any:
    """The Vertex emulator, with operations that finish a seeded 40-90 s (on `clock`) after their submit."""
    from tests.fakes.vertex_emulator import VertexEmulator

    class TimedVertex(VertexEmulator):
        def __init__(self) -> None:
            super().__init__(clock=clock, polls_to_finish=1, **kwargs)
            self.rng = random.Random(seed)
            self.done_at: dict[str, float] = {}
            self.noticed: dict[str, float] = {}

        def _submit(self, match: Any, body: Any) -> Any:
            op = super()._submit(match, body)
            self.done_at[op.name] = clock() + self.rng.uniform(*VERTEX_DONE_AFTER)
            return op

        def _poll_answer(self, match: Any, body: Any) -> Any:
            name = body.get("operationName") if isinstance(body, dict) else None
            done_at = self.done_at.get(name) if isinstance(name, str) else None
            if done_at is not None and clock() < done_at:
                return _running(name)
            if done_at is not None:
                self.noticed.setdefault(name, clock() - done_at)
            return super()._poll_answer(match, body)

    return TimedVertex()


def _running(name: str) -> Any:
    import json

    from aiohttp import web

    return web.Response(text=json.dumps({"name": name, "done": False}), content_type="application/json")


def vertex_backend(emu: Any, clock: ManualClock, jobs: int, naive: bool) -> Any:
    """Ours: the schedule `bot.__main__.vertex_backend` derives from VEO_POLL_INTERVAL. Naive: every tick."""
    from bot.backends.vertex import VertexBackend

    if naive:
        schedule = {"first_poll_after": 0.0, "poll_interval": 0.0, "max_poll_interval": 0.0, "poll_growth": 1.0}
    else:
        schedule = {
            "first_poll_after": 6 * POLL_INTERVAL,
            "poll_interval": 2 * POLL_INTERVAL,
            "max_poll_interval": 6 * POLL_INTERVAL,
        }
    return VertexBackend(
        project=emu.project,
        location=emu.location,
        api_key=emu.api_key,
        base_url=emu.base_url,
        max_concurrent=jobs,  # every job runs at once (VERTEX_MAX_CONCURRENT is capped at 100 by Settings)
        clock=clock,
        **schedule,  # type: ignore[arg-type]
    )


async def vertex_run(jobs: int, naive: bool, seed: int) -> Run:
    from bot.worker import Worker
    from storage import Store

    for name in SDK_ENV:
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="veo-bench-poll-") as tmp_dir:
        tmp = Path(tmp_dir)
        clock = ManualClock()
        async with timed_vertex_emulator(clock, seed, video_size=4096) as emu:
            backend = vertex_backend(emu, clock, jobs, naive)
            store = await Store.open(tmp / "veo.sqlite3")
            delivery = CountingDelivery(expected=jobs)
            worker = Worker(
                store,
                {"vertex": backend},
                delivery,
                default_backend="vertex",
                media_dir=tmp / "media",
                poll_interval=POLL_INTERVAL,
                clock=clock,
            )
            (tmp / "media").mkdir()
            max_ticks = math.ceil(VERTEX_DONE_AFTER[1] / POLL_INTERVAL) + 10
            try:
                await queue_jobs(store, jobs)
                per_tick, tick_seconds = await drive(
                    worker, store, clock, delivery, jobs, lambda: emu.count("poll"), max_ticks
                )
            finally:
                await worker.stop()
                await backend.close()
                await store.close()
            return Run(
                per_tick=per_tick,
                status_calls=emu.count("poll"),
                delivered=len(delivery.videos),
                tick_seconds=tick_seconds,
                generate_calls=emu.count("submit"),
                notice_delays=list(emu.noticed.values()),
            )


def vertex_rows(jobs: int, ours: list[Run], naive: list[Run]) -> list[list[object]]:
    rows: list[list[object]] = []
    for label, runs in (("schedule (ours)", ours), ("every tick", naive)):
        if any(x.delivered != jobs for x in runs):
            raise SystemExit(f"vertex {label}: not every job was delivered")
        rows.append(
            [
                jobs,
                label,
                f"{median(x.status_calls / x.delivered for x in runs):.2f}",
                f"{median((x.status_calls + x.generate_calls) / x.delivered for x in runs):.2f}",
                max(runs[0].per_tick),
                f"{median(median(x.notice_delays) for x in runs):.1f} s",
                f"{median(median(x.tick_seconds) for x in runs) * 1000:.0f} ms",
            ]
        )
    # Same seed per run index, so each ratio compares the two pollers on the same operations.
    pairs = list(zip(ours, naive, strict=True))
    polls = median(n.status_calls / o.status_calls for o, n in pairs)
    requests = median((n.status_calls + n.generate_calls) / (o.status_calls + o.generate_calls) for o, n in pairs)
    rows.append([jobs, "ratio (baseline / ours)", f"{polls:.1f}x", f"{requests:.1f}x", "", "", ""])
    return rows


# --- main ---------------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="*", default=[10, 100, 1000], help="Flow running jobs")
    parser.add_argument("--vertex-jobs", type=int, nargs="*", default=[10, 100], help="Vertex AI running jobs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--polls-to-finish", type=int, default=3, help="status polls a generation needs at Flow")
    parser.add_argument("--batch", type=int, default=50, help="FLOW_STATUS_BATCH_SIZE (the bot's default: 50)")
    args = parser.parse_args()
    quiet_logs()
    header("poll cost: status requests per delivered video, ours vs a naive poller")
    if args.jobs:
        print(f"Flow: each generation needs {args.polls_to_finish} status polls; FLOW_STATUS_BATCH_SIZE={args.batch}")
        rows: list[list[object]] = []
        for jobs in args.jobs:
            ours = [await flow_run(jobs, False, args.polls_to_finish, args.batch) for _ in range(args.runs)]
            naive = [await flow_run(jobs, True, args.polls_to_finish, args.batch) for _ in range(args.runs)]
            rows += flow_rows(jobs, ours, naive, args.batch)
        headers = ["running jobs", "poller", "status calls/tick", "status calls/video", "tick time", "generate calls"]
        print()
        print(table(headers, rows))
        print("\ngoal: >= 50x fewer status calls at 100 jobs\n")
    if args.vertex_jobs:
        low, high = VERTEX_DONE_AFTER
        print(f"Vertex AI: operations finish {low:.0f}-{high:.0f} s after submit; one tick = {POLL_INTERVAL:.0f} s")
        rows = []
        for jobs in args.vertex_jobs:
            ours = [await vertex_run(jobs, False, seed) for seed in range(args.runs)]
            naive = [await vertex_run(jobs, True, seed) for seed in range(args.runs)]
            rows += vertex_rows(jobs, ours, naive)
        headers = [
            "running jobs",
            "poller",
            "polls/video",
            "requests/video",
            "peak polls/tick",
            "notice delay",
            "tick time",
        ]
        print()
        print(table(headers, rows))
        print("\nrequests = submits + polls; notice delay = median simulated seconds from done to the poll that saw it")


if __name__ == "__main__":
    asyncio.run(main())
