"""Soak: many jobs through the whole pipeline with ~10% random faults at Flow and Discord, on loopback.

Run: ``.venv/bin/python bench/soak.py [--jobs 500] [--fault-rate 0.1] [--seed 1] [--concurrency 40]``
(quick: ``--jobs 50``)

The real `python -m bot` runs as a subprocess against the Flow emulator and the fake Discord in this process.
Commands come from distinct users, with at most ``--concurrency`` jobs unanswered at a time. Before each
command, with probability ``--fault-rate``, one fault is armed for the next request of its route: at Flow a 429
or 5xx on generate, a 5xx, 429 or malformed body on status, a 5xx, cut-off body or dropped connection on the
video download; at Discord a 429 or 5xx on message create. Prints jobs/minute, posts per job (every job must
get exactly one: its video or its failure notice), Flow requests per job and the bot process's peak RSS.
Not a test and not in CI: it prints figures and exits non-zero when a job got no post or two.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_USER_BASE, MiB, PeakSampler, header, job_ids_in, quiet_logs, table

MESSAGES = "/channels/{channel_id}/messages"


def fault_menu() -> list[tuple[str, str, object]]:
    """(where, route, fault) choices; Discord faults are (status, retry_after)."""
    from tests.fakes.flow_emulator import Fault

    return [
        ("flow", "generate", Fault.rate_limited(retry_after=1)),
        ("flow", "generate", Fault.server_error(503)),
        ("flow", "status", Fault.server_error(500)),
        ("flow", "status", Fault.rate_limited(retry_after=1)),
        ("flow", "status", Fault.malformed()),
        ("flow", "fife", Fault.server_error(503)),
        ("flow", "fife", Fault.truncated()),
        ("flow", "fife", Fault.disconnect()),
        ("discord", MESSAGES, (429, 0.3)),
        ("discord", MESSAGES, (500, None)),
        ("discord", MESSAGES, (502, None)),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=40, help="jobs sent but not yet posted, at most")
    parser.add_argument("--max-concurrent", type=int, default=20, help="FLOW_MAX_CONCURRENT")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="VEO_POLL_INTERVAL")
    parser.add_argument("--video-kb", type=int, default=256)
    args = parser.parse_args()
    quiet_logs()
    header(f"soak: {args.jobs} jobs, {args.fault_rate:.0%} faults")

    from storage import Store
    from tests.e2e.procs import bot_env, start_bot
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.flow_emulator import FlowEmulator

    rng = random.Random(args.seed)
    menu = fault_menu()
    armed: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="veo-bench-soak-") as tmp_dir:
        tmp = Path(tmp_dir)
        async with FlowEmulator(polls_to_finish=2, video_size=args.video_kb * 1024) as emu, FakeDiscord() as fd:
            emu.credits = 10**9
            emu.write_cookie_file(tmp / "cookie.json")
            env = bot_env(
                tmp,
                emu,
                fd,
                VEO_LOG_LEVEL="WARNING",
                VEO_POLL_INTERVAL=str(args.poll_interval),
                FLOW_MAX_CONCURRENT=str(args.max_concurrent),
            )
            proc = await start_bot(tmp, env, "bot.log")
            try:
                await fd.wait_until(lambda: fd.identify_count >= 1 and fd.sync_calls >= 1, 60, "bot ready")
                with PeakSampler(proc.pid, interval=0.05) as rss:

                    def posts() -> collections.Counter[int]:
                        return collections.Counter(
                            job_id
                            for m in fd.messages
                            if m.channel_id == fd.channel_id
                            for job_id in job_ids_in(m.content)
                        )

                    start = time.time()
                    for i in range(args.jobs):
                        await fd.wait_until(lambda n=i: n - len(posts()) < args.concurrency, 600, "room to send")
                        if rng.random() < args.fault_rate:
                            where, route, fault = rng.choice(menu)
                            if where == "flow":
                                emu.inject(route, fault)  # type: ignore[arg-type]
                                armed[f"flow {route} {fault.name}"] += 1  # type: ignore[attr-defined]
                            else:
                                status, retry_after = fault  # type: ignore[misc]
                                fd.inject("POST", route, status, retry_after=retry_after)
                                armed[f"discord message create {status}"] += 1
                        inter = await fd.send_command(
                            "veo", "prompt", {"text": f"soak {i}"}, user_id=BENCH_USER_BASE + i
                        )
                        await fd.wait_callback(inter, timeout=30)
                    await fd.wait_until(lambda: len(posts()) >= args.jobs, 600, "a post for every job")
                    elapsed = time.time() - start
                    await asyncio.sleep(2)  # a late duplicate would show up here
                    counts = posts()
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            requests = collections.Counter(r.route for r in emu.requests)
            faults_fired = sum(1 for r in emu.requests if r.fault) + len(fd.faults_fired)
            store = await Store.open(tmp / "data" / "veo.sqlite3")
            try:
                jobs = [j for u in range(args.jobs) for j in await store.user_jobs(BENCH_USER_BASE + u, limit=5)]
            finally:
                await store.close()
            log = (tmp / "bot.log").read_text(errors="replace")

    states = collections.Counter(j.state.value for j in jobs)
    kinds = collections.Counter(j.error_kind for j in jobs if j.error_kind)
    per_job = collections.Counter(counts.get(j.id, 0) for j in jobs)
    n = len(jobs)
    rows = [
        ["jobs", n],
        ["jobs/minute", f"{n / elapsed * 60:.0f}"],
        ["posts per job (histogram)", dict(sorted(per_job.items()))],
        ["end states", dict(states)],
        ["failure kinds", dict(kinds)],
        ["Flow requests per job", f"{len(emu.requests) / n:.2f}"],
        ["Flow requests by route", dict(requests)],
        ["faults armed / fired", f"{sum(armed.values())} / {faults_fired}"],
        ["bot peak RSS", f"{rss.peak / MiB:.0f} MiB (at ready {rss.baseline / MiB:.0f} MiB)"],
        ["tracebacks in the bot's log", log.count("Traceback")],
    ]
    print(table(["figure", "value"], rows))
    print("\nfaults armed:", dict(armed))
    terminal = {"delivered", "failed", "cancelled", "timed_out"}
    exactly_once = n == args.jobs and set(per_job) == {1} and set(states) <= terminal
    print(f"\nevery job in a terminal state and posted exactly once: {'yes' if exactly_once else 'NO'}")
    if not exactly_once:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
