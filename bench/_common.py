"""Shared helpers of the benchmark scripts: statistics, RSS sampling, a bulk database fill, the bot on the fakes.

Not a test helper: benchmarks are run by hand, print figures and never assert a wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import random
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from bot.app import VeoBot
    from bot.settings import Settings
    from storage import Job
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.flow_emulator import FlowEmulator

MiB = 1024 * 1024
DAY = 86_400.0
#: First of the many user ids benchmarks send commands as (one job each keeps every user inside quota).
BENCH_USER_BASE = 1300000000000000000


# --- statistics ---------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio(baseline: float, ours: float) -> str:
    """How many times better ours is than the baseline (baseline / ours), for 'lower is better' figures."""
    if ours <= 0:
        return "inf"
    return f"{baseline / ours:.1f}x"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def header(title: str, argv: Sequence[str] | None = None) -> None:
    print(f"== {title}")
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"command: {' '.join(argv if argv is not None else [Path(sys.executable).name, *sys.argv])}")
    print()


def quiet_logs(level: int = logging.ERROR) -> None:
    """Keep the bot's per-job INFO/WARNING lines (and discord.py's) out of the figures."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in ("bot", "cogs", "storage", "discord", "aiohttp"):
        logging.getLogger(name).setLevel(level)


# --- memory -------------------------------------------------------------------------------------------


class PeakSampler:
    """Sample a process's RSS (this one by default) in a background thread; keeps the peak."""

    def __init__(self, pid: int | None = None, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.baseline = self._proc.memory_info().rss
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# --- a large job history ------------------------------------------------------------------------------


@dataclass
class RunningJob:
    """A job to put in the database as running at Flow (a generation the emulator knows)."""

    operation_name: str
    scene_id: str
    media_name: str | None
    project_id: str
    user_id: int


@dataclass
class Fill:
    jobs: int
    queued: int = 300
    running: list[RunningJob] = field(default_factory=list)
    users: int = 1_000
    heavy_user: int = 1
    seed: int = 7


def fill_jobs(path: Path, spec: Fill, now: float, channel_id: int = 5678, guild_id: int = 1234) -> None:
    """Bulk-load a 30-day history into an already migrated database (blocking: call via asyncio.to_thread).

    Mostly delivered jobs, some failed/cancelled/timed out, `spec.queued` queued ones, and `spec.running`
    running ones (submitted a minute ago, so they do not time out). One heavy user owns 5% of the history.
    """
    rng = random.Random(spec.seed)
    rows: list[tuple[object, ...]] = []
    finished = spec.jobs - spec.queued - len(spec.running)
    if finished < 0:
        raise ValueError("more queued and running jobs than jobs")
    for i in range(spec.jobs):
        user = spec.heavy_user if i % 20 == 0 else rng.randrange(2, spec.users + 1)
        created = now - 30 * DAY + (30 * DAY - 600) * i / spec.jobs
        op = scene = media = project = None
        attempts = 1
        notified = None
        if i < finished:
            state = rng.choices(["delivered", "failed", "cancelled", "timed_out"], weights=[86, 9, 4, 1])[0]
            submitted = created + rng.uniform(1, 30)
            done = submitted + rng.uniform(40, 200)
            file_path = f"/data/media/{i}.mp4" if state == "delivered" and created > now - 8 * DAY else None
            op = f"operations/{i}"
            notified = done if state != "delivered" else None
        elif i < finished + len(spec.running):
            run = spec.running[i - finished]
            state, submitted, done, file_path = "running", now - 60, None, None
            created = now - 90
            user = run.user_id
            op, scene, media, project = run.operation_name, run.scene_id, run.media_name, run.project_id
        else:
            state, submitted, done, file_path, attempts = "queued", None, None, None, 0
        rows.append(
            (
                user,
                guild_id,
                channel_id,
                f"prompt {i}: a slow pan across a misty valley at sunrise, cinematic, 35mm",
                "landscape" if i % 3 else "portrait",
                "fast" if i % 4 else "quality",
                rng.randrange(2**31),
                state,
                op,
                scene,
                media,
                project,
                "operations" if op else None,
                attempts,
                file_path,
                created,
                submitted,
                done,
                done or created,
                notified,
                "flow" if op else None,
                _flow_ref(op, scene, media, project) if op else None,
            )
        )
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO jobs (user_id, guild_id, channel_id, prompt, aspect, model, seed, state, operation_name,"
                " scene_id, media_name, project_id, protocol, attempts, file_path, created_at, submitted_at,"
                " finished_at, updated_at, notified_at, backend, backend_ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO events (at, kind, job_id, actor_id, detail) VALUES (?, 'created', ?, ?, 'seed')",
                [(row[15], job_id, row[0]) for job_id, row in enumerate(rows, start=1)],
            )
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _flow_ref(operation: str, scene: str | None, media: str | None, project: str | None) -> str:
    """A Flow job's backend reference, as FlowBackend writes it (its PollRef as JSON)."""
    import json

    ref = {"operation_name": operation, "scene_id": scene, "media_name": media, "project_id": project}
    return json.dumps({**ref, "protocol": "operations"})


async def make_database(path: Path, spec: Fill, now: float | None = None) -> None:
    """Create, migrate and fill a database file."""
    from storage import Store

    await (await Store.open(path)).close()
    await asyncio.to_thread(fill_jobs, path, spec, time.time() if now is None else now)


# --- the real bot on the fakes ------------------------------------------------------------------------


def bot_settings(tmp: Path, emu: FlowEmulator, fd: FakeDiscord, **overrides: Any) -> Settings:
    """Settings as the end-to-end tests build them (cookie file written here)."""
    from tests.e2e.conftest import make_settings

    emu.write_cookie_file(tmp / "cookie.json")
    return make_settings(tmp, emu, fd, **overrides)


@contextlib.asynccontextmanager
async def bench_bot(settings: Settings, fd: FakeDiscord) -> AsyncIterator[VeoBot]:
    """The bot exactly as `python -m bot` builds it, in this process, against the fake Discord."""
    from tests.e2e.conftest import running_bot

    async with running_bot(settings, fd) as bot:
        yield bot


def job_ids_in(text: str) -> list[int]:
    """Job ids named by the bot's marker ("veo job N") in a posted message."""
    import re

    return [int(m) for m in re.findall(r"\bveo job (\d+)\b", text or "")]


@dataclass
class CountingDelivery:
    """A chat side for the worker alone (poll-cost runs): counts what would be posted, posts nothing."""

    videos: dict[int, int] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def _check(self) -> None:
        if len(self.videos) + len(self.failures) >= self.expected:
            self.done.set()

    async def post_video(self, job: Job, path: Path) -> int:
        size = (await asyncio.to_thread(path.stat)).st_size
        self.videos[job.id] = size
        self._check()
        return 10_000 + job.id

    async def post_failure(self, job: Job, text: str) -> int:
        self.failures[job.id] = text
        self._check()
        return 20_000 + job.id

    async def find_posted(self, job: Job) -> int | None:
        return None

    async def job_changed(self, job: Job, *, force: bool = False) -> None:
        return None

    async def alert_admins(self, text: str) -> None:
        return None


class ManualClock:
    """A clock the benchmark moves forward itself (poll ticks without sleeping)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
