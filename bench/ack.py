"""Interaction ack latency: N simultaneous `/veo prompt`, the real `python -m bot` beside a do-nothing floor bot.

Run: ``.venv/bin/python bench/ack.py [--sizes 100 500] [--sequential 20] [--runs 3] [--quick] [--profile DIR]``

Three kinds of process, as in production: the fake Discord lives in this process (it measures), the Flow
emulator in a second one, and the bot under test in a third, started as users start it (``python -m bot``,
default settings apart from the fakes' addresses). Beside it, in the same run, the floor: a discord.py bot
process with the same `/veo prompt` definition that answers at once without doing anything
(`bench/_ack_procs.py`). Each burst gets a fresh bot process (fresh database) once it is READY: N commands from
N distinct users are handed to the gateway writer at once, and the latency of each is measured by the fake
Discord, from the moment it sent INTERACTION_CREATE to the moment the callback arrived. Discord's 3 s deadline
is switched off so the whole distribution is seen; answers over 3 s are counted. Ours and the floor alternate
(which goes first flips every run), and the ratio ours / floor is taken within each run before the median
over runs: the machine is shared, and a ratio within one run cancels most of its noise.

``--sequential N`` adds an unloaded row: N commands sent one after another, each once the previous one was
answered. ``--profile DIR`` samples each bot process during its bursts with py-spy (``--idle --threads``, raw collapsed
stacks in DIR) and prints the top entries of the event-loop thread: the hook lives here, not in the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_USER_BASE, ROOT, header, median, percentile, table

DEADLINE = 3.0
PROCS = Path(__file__).resolve().parent / "_ack_procs.py"
#: Let the bot's start-up work (the worker's first tick, discord.py's guild cache) finish before a burst.
SETTLE = 0.5


@dataclass
class Burst:
    samples: list[float]
    missing: int
    #: CPU time (user + system) the bot process spent from the first command sent to the last callback.
    cpu: float = 0.0

    @property
    def late(self) -> int:
        return sum(1 for s in self.samples if s > DEADLINE) + self.missing

    def figures(self) -> tuple[float, float, float]:
        return percentile(self.samples, 50), percentile(self.samples, 99), max(self.samples)


class BotProcess:
    """One bot subprocess (ours or the floor); its stderr is drained and watched for the ready line."""

    def __init__(self, argv: list[str], env: dict[str, str], ready_marker: str) -> None:
        self.argv, self.env, self.ready_marker = argv, env, ready_marker
        self.ready = asyncio.Event()
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BotProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=self.env["VEO_DATA_DIR"],
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        ready = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait({ready, self._reader}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await self.stop()
            raise SystemExit(f"{self.argv[-1]} not ready:\n" + "\n".join(self.tail))
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            if self.ready_marker in line:
                self.ready.set()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def flow_emulator(cookie: Path):  # type: ignore[no-untyped-def]
    """The Flow emulator in its own process; yields its base URLs."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROCS),
        "flow",
        str(cookie),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def bot_env(fd: object, flow: dict[str, str], cookie: Path, data_dir: Path) -> dict[str, str]:
    from tests.fakes.discord_server import FakeDiscord

    assert isinstance(fd, FakeDiscord)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FLOW_", "VEO_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DISCORD_TOKEN": fd.token,
            "DISCORD_API_BASE": fd.api_base,
            "DISCORD_GATEWAY_URL": fd.gateway_url,
            "DISCORD_GUILD_ID": str(fd.guild_id),
            "FLOW_COOKIE_FILE": str(cookie),
            "FLOW_API_BASE": flow["api_base"],
            "FLOW_LABS_BASE": flow["labs_base"],
            "VEO_DATA_DIR": str(data_dir),
        }
    )
    return env


async def burst(fd: object, n: int, *, one_at_a_time: bool = False) -> Burst:
    """Hand n commands from n users to the gateway writer at once (or each once the previous one was
    answered); collect send -> callback latencies."""
    from tests.fakes.discord_server import FakeDiscord

    assert isinstance(fd, FakeDiscord)
    sent = []
    for i in range(n):
        sent.append(await fd.send_command("veo", "prompt", {"text": f"ack bench {i}"}, user_id=BENCH_USER_BASE + i))
        if one_at_a_time:
            await fd.wait_callback(sent[-1], timeout=30)
    await fd.wait_until(lambda: all(i.callback is not None for i in sent), 120, "every callback")
    if any(i.callback_type != 4 for i in sent):
        kinds = collections.Counter(i.callback_type for i in sent)
        raise SystemExit(f"not every interaction was answered with a message: {dict(kinds)}")
    samples = [i.callback_at - i.dispatched_at for i in sent if i.callback_at and i.dispatched_at]
    return Burst(samples, n - len(samples))


class Profiler:
    """py-spy attached to one bot process for the length of a burst (raw collapsed stacks)."""

    def __init__(self, pid: int, out: Path | None) -> None:
        self.pid, self.out = pid, out
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Profiler:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if self.out is not None:
            self.proc = await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(self.pid), "--rate", "500", "--idle", "--threads", "--nonblocking",
                "--format", "raw", "-o", str(self.out),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.sleep(0.5)  # py-spy has no "attached" signal; it attaches well within this
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(self.proc.wait(), 30)


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def count_jobs(db: Path) -> tuple[int, int]:
    """Jobs in the bot's database after it stopped, and how many of them know their status message."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT COUNT(*), COUNT(status_message_id) FROM jobs").fetchone()
        return int(row[0]), int(row[1])
    finally:
        conn.close()


async def measure(
    who: str, n: int, one_at_a_time: bool, flow: dict[str, str], cookie: Path, profile: Path | None
) -> Burst:
    from tests.fakes.discord_server import FakeDiscord

    with tempfile.TemporaryDirectory(prefix=f"veo-bench-ack-{who}-") as tmp:
        data = Path(tmp)
        async with FakeDiscord(callback_deadline=None) as fd:
            env = bot_env(fd, flow, cookie, data)
            if who == "ours":
                argv, marker = [sys.executable, "-m", "bot"], "connected as"
            else:
                argv, marker = [sys.executable, str(PROCS), "floor"], "floor ready"
            async with BotProcess(argv, env, marker) as bot:
                await asyncio.sleep(SETTLE)
                async with Profiler(bot.pid, profile):
                    # A full collection of this process's garbage (earlier runs' fakes) must not pause the
                    # measuring side in the middle of a burst.
                    gc.collect()
                    gc.disable()
                    try:
                        before = cpu_seconds(bot.pid)
                        result = await burst(fd, n, one_at_a_time=one_at_a_time)
                        result.cpu = cpu_seconds(bot.pid) - before
                    finally:
                        gc.enable()
        if who == "ours":
            jobs, with_status = await asyncio.to_thread(count_jobs, data / "veo.sqlite3")
            if jobs != n:
                raise SystemExit(f"ours: {jobs} jobs stored for {n} acknowledged commands")
            if with_status != n:
                print(f"note: {n - with_status} of {n} jobs have no status message id after SIGTERM")
    return result


#: Leaf functions where a thread waits rather than works.
IDLE_LEAVES = frozenset({"select", "wait", "get", "_worker"})


def frame_name(frame: str) -> str:
    """'Class.method (/path/to/module.py:123)' -> 'Class.method (module.py)'."""
    func, _, where = frame.partition(" (")
    return f"{func} ({where.rpartition('/')[2].split(':')[0].rstrip(')')})"


def top_entries(path: Path, limit: int = 16) -> str:
    """The event-loop thread's hottest functions in a py-spy raw profile, as shares of its busy samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        if "MainThread" not in thread or not frames:
            continue
        names = [frame_name(f) for f in frames]
        if names[-1].split(" (")[0].rpartition(".")[2] in IDLE_LEAVES:
            idle += int(count)
            continue
        busy += int(count)
        for name in set(names):
            inclusive[name] += int(count)
        own[names[-1]] += int(count)
    head = f"event-loop thread: {busy} busy samples, {idle} idle (in select) at 500 Hz"
    skip = ("_run_once", "run_forever", "run_until_complete", "Runner.run", "run (runners", "<module>", "_run_code",
            "_run_module_as_main", "main (", "Handle._run", "Client.run", "run_floor", "run_bot")  # fmt: skip
    hot = [(n, c) for n, c in inclusive.most_common() if not n.startswith(skip) and " main (" not in n][:limit]
    rows = [
        [f"{100 * c / max(1, busy):.0f}%", n[:72], f"{100 * sc / max(1, busy):.0f}%", sn[:72]]
        for (n, c), (sn, sc) in zip(hot, own.most_common(limit), strict=False)
    ]
    return head + "\n" + table(["incl", "function", "self", "function"], rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=20, help="also send this many one at a time (0: skip)")
    parser.add_argument("--quick", action="store_true", help="one run of each size")
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of each burst into this directory")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    header("ack latency: N simultaneous /veo prompt from N users, INTERACTION_CREATE sent -> callback received")
    print(f"ours: `python -m bot` in its own process; floor: do-nothing discord.py bot; median of {runs} run(s)\n")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    cases = [(n, False) for n in args.sizes] + ([(args.sequential, True)] if args.sequential else [])
    results: dict[tuple[str, int, bool], list[Burst]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="veo-bench-ack-") as tmp:
        cookie = Path(tmp) / "cookie.json"
        async with flow_emulator(cookie) as flow:
            for run in range(runs):
                for n, one in cases:
                    for who in ("floor", "ours") if run % 2 == 0 else ("ours", "floor"):
                        name = f"{who}-{n}{'-sequential' if one else ''}-run{run + 1}.txt"
                        out = args.profile / name if args.profile else None
                        results[who, n, one].append(await measure(who, n, one, flow, cookie, out))
    rows = []
    for n, one in cases:
        ours, floor = results["ours", n, one], results["floor", n, one]
        o = [median(b.figures()[k] for b in ours) for k in range(3)]
        f = [median(b.figures()[k] for b in floor) for k in range(3)]
        r = [median(a.figures()[k] / b.figures()[k] for a, b in zip(ours, floor, strict=True)) for k in range(3)]
        late = (max(b.late for b in ours), max(b.late for b in floor))
        cpu = [median(b.cpu for b in bursts) / n * 1000 for bursts in (ours, floor)]
        label = f"{n} one at a time" if one else f"{n} at once"
        rows.append([label, "ours", *(f"{x * 1000:.0f} ms" for x in o), late[0], f"{cpu[0]:.2f} ms"])
        rows.append(["", "floor", *(f"{x * 1000:.0f} ms" for x in f), late[1], f"{cpu[1]:.2f} ms"])
        rows.append(["", "ours / floor (per run, median)", *(f"{x:.2f}x" for x in r), "", f"{cpu[0] / cpu[1]:.2f}x"])
        per_run = ", ".join(
            f"{a.figures()[1] * 1000:.0f}/{b.figures()[1] * 1000:.0f}" for a, b in zip(ours, floor, strict=True)
        )
        rows.append(["", f"p99 ours/floor per run: {per_run} ms", "", "", "", "", ""])
    print(table(["commands", "bot", "p50", "p99", "max", "over 3 s (worst run)", "bot CPU per command"], rows))
    print("\ngoals: p99 within 1.5x the floor at 100; at 500 none over 3 s and p99 within 2x the floor")
    if args.profile:
        for path in sorted(args.profile.glob("*.txt")):
            print(f"\n-- profile {path.name}\n{top_entries(path)}")


if __name__ == "__main__":
    asyncio.run(main())
