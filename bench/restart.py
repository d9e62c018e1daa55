"""Restart: start-up time and time until every unfinished job was polled again, 1,000 running in 100,000.

Run: ``.venv/bin/python bench/restart.py [--jobs 100000] [--running 1000] [--runs 3] [--poll-interval 5]``

The Flow emulator knows the running generations (created through the real FlowClient first; they never
finish), and the database is filled directly with SQLite. The real `python -m bot` is started as a
subprocess against the emulator and the fake Discord; it is timed from spawn to the gateway IDENTIFY
(start-up: imports, settings, store open with its integrity check, command sync, connect) and until the
emulator has seen a status request for every one of the running operations. The baseline, in this file, is
a naive resume: read every job row, keep the running ones in Python, and poll them one request each.
Medians over ``--runs`` restarts of the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_USER_BASE, Fill, RunningJob, header, make_database, median, quiet_logs, ratio, table


async def register(emu: object, cookie: Path, n: int) -> list[RunningJob]:
    """Start n generations at the emulator through the real client; return them as running jobs."""
    import aiohttp

    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from bot.backends.flow.models import GenerationSpec

    async with aiohttp.ClientSession() as http:
        creds = Credentials(cookie, http, labs_base=emu.labs_base)  # type: ignore[attr-defined]
        await creds.load()
        client = FlowClient(http, creds, api_base=emu.api_base, labs_base=emu.labs_base)  # type: ignore[attr-defined]
        project = emu.add_project()  # type: ignore[attr-defined]
        out: list[RunningJob] = []
        for start in range(0, n, 4):
            specs = [
                GenerationSpec(
                    prompt=f"restart {i}", aspect="landscape", model="fast", seed=i, scene_id=str(uuid.uuid4())
                )
                for i in range(start, min(n, start + 4))
            ]
            for sub in await client.generate(project, specs):
                out.append(RunningJob(sub.operation_name, sub.scene_id or "", sub.media_name, project, BENCH_USER_BASE))
    return out


def polled_names(calls: list) -> set[str]:
    names: set[str] = set()
    for call in calls:
        for entry in (call.json or {}).get("operations", []):
            names.add(entry["operation"]["name"])
    return names


async def restart_once(
    tmp: Path, emu: object, fd: object, wanted: set[str], interval: float, run: int
) -> tuple[float, float, float]:
    """(start-up, first status call, every wanted operation polled): seconds from spawn."""
    from tests.e2e.procs import bot_env, start_bot

    env = bot_env(tmp, emu, fd, VEO_LOG_LEVEL="WARNING", VEO_POLL_INTERVAL=str(interval))  # type: ignore[arg-type]
    first = len(emu.calls("status"))  # type: ignore[attr-defined]
    identifies = fd.identify_count  # type: ignore[attr-defined]
    t0 = time.time()
    proc = await start_bot(tmp, env, f"run{run}.log")
    try:
        await fd.wait_until(lambda: fd.identify_count > identifies, 120, "bot connected")  # type: ignore[attr-defined]
        startup = time.time() - t0
        seen = first
        while True:
            calls = await emu.wait_for_calls("status", seen + 1)  # type: ignore[attr-defined]
            seen = len(calls)
            if wanted <= polled_names(calls[first:]):
                done = max(c.at for c in calls[first:]) - t0
                first_poll = calls[first].at - t0
                break
            if time.time() - t0 > 60 + 10 * interval:
                raise SystemExit("the restarted bot did not poll every running job")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return startup, first_poll, done


async def naive_resume(db: Path, emu: object, cookie: Path) -> float:
    """Scan every row, keep the running ones in Python, one status request per job, in turn."""
    import aiohttp
    import aiosqlite

    from bot.backends.flow.client import FlowClient
    from bot.backends.flow.credentials import Credentials
    from bot.backends.flow.models import PollRef

    t0 = time.perf_counter()
    async with aiosqlite.connect(db) as conn, conn.execute("SELECT * FROM jobs") as cur:
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in await cur.fetchall()]
    running = [r for r in rows if r["state"] == "running"]
    async with aiohttp.ClientSession() as http:
        creds = Credentials(cookie, http, labs_base=emu.labs_base)  # type: ignore[attr-defined]
        await creds.load()
        client = FlowClient(http, creds, api_base=emu.api_base, labs_base=emu.labs_base)  # type: ignore[attr-defined]
        for r in running:
            await client.check_status(
                [PollRef(operation_name=r["operation_name"], scene_id=r["scene_id"], project_id=r["project_id"])]
            )
    return time.perf_counter() - t0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--poll-interval", type=float, default=5.0, help="VEO_POLL_INTERVAL (the default: 5)")
    args = parser.parse_args()
    quiet_logs()
    header("restart: start-up and re-polling of unfinished jobs")

    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.flow_emulator import FlowEmulator

    with tempfile.TemporaryDirectory(prefix="veo-bench-restart-") as tmp_dir:
        tmp = Path(tmp_dir)
        async with FlowEmulator(polls_to_finish=10**9, video_size=4096) as emu, FakeDiscord() as fd:
            emu.credits = 10**9
            cookie = tmp / "cookie.json"
            emu.write_cookie_file(cookie)
            running = await register(emu, cookie, args.running)
            wanted = {r.operation_name for r in running}
            db = tmp / "data" / "veo.sqlite3"
            db.parent.mkdir()
            (tmp / "data" / "media").mkdir()
            start = time.perf_counter()
            await make_database(db, Fill(jobs=args.jobs, queued=0, running=running))
            print(f"filled {args.jobs:,} jobs ({len(running):,} running) in {time.perf_counter() - start:.1f} s\n")
            ours = [await restart_once(tmp, emu, fd, wanted, args.poll_interval, i) for i in range(args.runs)]
            naive = [await naive_resume(db, emu, cookie) for _ in range(args.runs)]
            tracebacks = sum(p.read_text().count("Traceback") for p in tmp.glob("run*.log"))

    startup = median(s for s, _, _ in ours)
    first_poll = median(f - s for s, f, _ in ours)
    polled = median(d for _, _, d in ours)
    after_connect = median(d - s for s, _, d in ours)
    base = median(naive)
    rows = [
        ["ours: spawn -> gateway IDENTIFY (start-up)", f"{startup:.2f} s", ""],
        ["ours: IDENTIFY -> first status call", f"{first_poll:.2f} s", ""],
        ["ours: spawn -> every running job polled", f"{polled:.2f} s", ""],
        ["ours: IDENTIFY -> every running job polled", f"{after_connect:.2f} s", ratio(base, after_connect)],
        ["naive: scan all rows, one request per job", f"{base:.2f} s", ""],
    ]
    print(table(["measure (median of runs)", "time", "naive / ours"], rows))
    print(
        f"\npoll interval {args.poll_interval:g} s; all polled within one interval of connecting: "
        f"{'yes' if after_connect <= args.poll_interval else 'no'}; tracebacks in the bot's logs: {tracebacks}"
    )
    print("goal: every unfinished job polled within one poll interval")


if __name__ == "__main__":
    asyncio.run(main())
