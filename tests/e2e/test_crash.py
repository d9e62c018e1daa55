"""Crash suite: the real `python -m bot`, SIGKILLed again and again while jobs flow, restarted each time.

Over VEO_CRASH_JOBS jobs (default 50) from several users, the bot is killed once at every state boundary (a
job held in queued + submitting, running, downloading, delivering before the post lands, delivering after it
landed, and the same after a long outage), then VEO_CRASH_RANDOM_KILLS more times (default 6) at seeded random
moments (VEO_CRASH_SEED). In the end every job is terminal with a reason, none is lost, none is posted twice,
and Flow never made two videos for one job. A longer local run:

    VEO_CRASH_JOBS=300 VEO_CRASH_RANDOM_KILLS=60 .venv/bin/pytest tests/e2e/test_crash.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storage import Job, JobState, Store
from tests.e2e.conftest import OTHER_ID, USER_ID
from tests.e2e.procs import bot_env, start_bot
from tests.e2e.test_delivery import SlowDiscord, age_posting, post_chatter, posts_per_job, settled, slow_discord
from tests.fakes.discord_server import FakeClock
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome

JOBS = int(os.environ.get("VEO_CRASH_JOBS", "50"))
RANDOM_KILLS = int(os.environ.get("VEO_CRASH_RANDOM_KILLS", "6"))
SEED = int(os.environ.get("VEO_CRASH_SEED", "20240611"))
USERS = (USER_ID, OTHER_ID, 1200000000000000011, 1200000000000000012, 1200000000000000013)
BOUNDARIES = ("queued+submitting", "running", "downloading", "delivering", "delivering-landed", "long-outage")
EVERY_STATE = {JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING, JobState.DELIVERING}
BLOCKED = "blocked"
STEP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Command:
    user_id: int
    text: str
    seed: int
    count: int


@dataclass
class Crashes:
    """One bot process at a time against the fakes; every kill is recorded with the states it caught."""

    tmp_path: Path
    emu: FlowEmulator
    fd: SlowDiscord
    rng: random.Random
    pending: list[Command]
    proc: asyncio.subprocess.Process | None = None
    runs: int = 0
    sent: list[Command] = field(default_factory=list)
    caught: list[tuple[str, Counter[JobState]]] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.tmp_path / "data" / "veo.sqlite3"

    async def start(self) -> None:
        identifies = self.fd.identify_count
        self.runs += 1
        env = bot_env(
            self.tmp_path,
            self.emu,
            self.fd,
            VEO_DAILY_QUOTA="1000",
            VEO_MAX_ACTIVE_PER_USER="100",
            FLOW_MAX_CONCURRENT="8",
            VEO_JOB_TIMEOUT="600",
            VEO_LOG_LEVEL="INFO",
        )
        self.proc = await start_bot(self.tmp_path, env, f"run{self.runs}.log")
        await self.fd.wait_until(
            lambda: self.fd.identify_count > identifies and self.fd.is_ready, timeout=STEP_TIMEOUT, what="bot up"
        )

    async def kill(self, why: str) -> None:
        assert self.proc is not None
        self.proc.kill()
        assert await self.proc.wait() == -signal.SIGKILL
        self.proc = None
        self.caught.append((why, Counter(j.state for j in await self.jobs() if not j.terminal)))
        self.emu.release_hung()  # what the dead process left hanging completes at Flow's end
        self.fd.release(drop=True)  # a post held before it existed dies with its connection

    async def send(self, n: int = 1) -> None:
        """Send the next `n` commands; each is answered (accepted) before this returns."""
        for _ in range(min(n, len(self.pending))):
            cmd = self.pending.pop(0)
            options = {"text": cmd.text, "seed": cmd.seed, "count": cmd.count}
            interaction = await self.fd.send_command("veo", "prompt", options, user_id=cmd.user_id)
            callback = await self.fd.wait_callback(interaction, timeout=STEP_TIMEOUT)
            assert callback["type"] == 4 and not (callback["data"].get("flags") or 0) & 64, callback
            self.sent.append(cmd)

    async def jobs(self) -> list[Job]:
        if not self.db.exists():
            return []
        store = await Store.open(self.db)
        try:
            return await store.jobs_in_state(*JobState)
        finally:
            await store.close()

    async def until(self, route: str, count: int, timeout: float = STEP_TIMEOUT) -> None:
        """Wait until Flow has received `count` requests on `route` (held ones included)."""
        await asyncio.wait_for(self.emu.wait_for_calls(route, count), timeout)

    # --- one round per kill ----------------------------------------------------------------------------------

    async def boundary(self, kind: str, batch: int) -> None:
        """Start, send work, hold a job at `kind`, kill there."""
        await self.start()
        await self.send(batch)
        if kind == "queued+submitting":
            before = len(self.emu.calls("generate"))
            self.emu.inject("generate", Fault.hang())
            await self.send(1)
            await self.until("generate", before + 1)  # held: the submitter is busy...
            await self.send(1)  # ...so this one waits in the queue
        elif kind == "running":
            before = len(self.emu.calls("generate"))
            await self.send(1)
            await self.until("generate", before + 1)
            await self.until("status", len(self.emu.calls("status")) + 2)
        elif kind == "downloading":
            before = len(self.emu.calls("fife"))
            self.emu.inject("fife", Fault.hang())
            await self.send(1)
            await self.until("fife", before + 1)
        else:  # delivering: the post held before it exists, or after (it landed; the answer never comes)
            self.fd.hold(after=kind != "delivering")
            await self.send(1)
            await self.fd.wait_until(lambda: self.fd.held >= 1, timeout=STEP_TIMEOUT, what="a post held")
        dropped = self.fd.dropped
        await self.kill(kind)
        if kind == "delivering":  # the held post must die with the process, not land after it
            await self.fd.wait_until(lambda: self.fd.dropped > dropped, timeout=STEP_TIMEOUT, what="held post dropped")
        if kind == "long-outage":
            await self.outage()

    async def outage(self) -> None:
        """The bot stays down past Discord's nonce window while the channel moves on."""
        for job in await self.jobs():
            if job.state is JobState.DELIVERING or (job.notice_at is not None and job.notified_at is None):
                await age_posting(self.db, job.id, 600)
        assert isinstance(self.fd.clock, FakeClock)
        self.fd.clock.advance(600)
        await post_chatter(self.fd, 120)

    async def random_kill(self, batch: int) -> None:
        """Kill after a seeded random number of status polls (or when nothing is left to poll)."""
        await self.start()
        await self.send(batch)
        with contextlib.suppress(TimeoutError):
            await self.until("status", len(self.emu.calls("status")) + self.rng.randint(1, 12), timeout=4)
        await self.kill("random")

    async def finish(self) -> list[Job]:
        await self.start()
        await self.send(len(self.pending))
        while True:
            jobs = await self.jobs()
            if jobs and all(settled(j) for j in jobs):
                break
            with contextlib.suppress(TimeoutError):  # re-read the jobs on Discord traffic, or twice a second
                await self.fd.wait_until(_more(self.fd.request_records), timeout=0.5)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.proc.wait(), STEP_TIMEOUT) == 0
        self.proc = None
        return await self.jobs()


def _more(records: list[object]) -> Callable[[], bool]:
    seen = len(records)
    return lambda: len(records) > seen


def commands(rng: random.Random, jobs: int) -> list[Command]:
    """Prompts from several users, some of several videos, about one in eight blocked by a filter."""
    out: list[Command] = []
    total = 0
    while total < jobs:
        n = len(out)
        count = min(rng.choice((1, 1, 1, 2)), jobs - total)
        blocked = rng.random() < 0.125
        text = f"crash prompt {n}" + (f" {BLOCKED}" if blocked else "")
        out.append(Command(USERS[n % len(USERS)], text, seed=n * 10, count=count))
        total += count
    return out


@pytest.fixture
async def crash_fd() -> AsyncIterator[SlowDiscord]:
    async with slow_discord(clock=FakeClock()) as fake:
        for uid in USERS:
            fake.add_user(uid)
        yield fake


async def test_sigkill_at_every_boundary_and_at_random_loses_nothing_and_posts_once(
    tmp_path: Path, crash_fd: SlowDiscord
) -> None:
    rng = random.Random(SEED)
    fd = crash_fd
    async with FlowEmulator(polls_to_finish=3, video_size=16 * 1024, credits=100 * 20 * JOBS) as emu:
        emu.outcome_for(BLOCKED, Outcome.failed("PUBLIC_ERROR_DANGER_FILTER"))
        emu.write_cookie_file(tmp_path / "cookie.json")
        plan = commands(rng, JOBS)
        kills = [*BOUNDARIES, *["random"] * RANDOM_KILLS]
        batch = max(1, len(plan) // (len(kills) + 1))
        crashes = Crashes(tmp_path, emu, fd, rng, pending=plan)
        try:
            for kind in kills:
                if kind == "random":
                    await crashes.random_kill(batch)
                else:
                    await crashes.boundary(kind, batch)
            jobs = await crashes.finish()
        finally:
            if crashes.proc is not None:
                crashes.proc.kill()
                await crashes.proc.wait()
            emu.release_hung()
            fd.release()

    # Every accepted job exists, is terminal, and says why.
    assert len(jobs) == sum(c.count for c in crashes.sent) == JOBS
    for job in jobs:
        assert job.terminal, job
        if job.state is JobState.DELIVERED:
            assert job.result_message_id is not None
        else:
            assert job.error_kind and job.notified_at is not None, job
    # Exactly one post per job (its video, link or failure notice), and the recorded one is that post.
    assert posts_per_job(fd) == {j.id: 1 for j in jobs}
    by_id = {m.id: m for m in fd.messages}
    for job in jobs:
        message = by_id[job.result_message_id or job.notice_message_id or 0]
        assert f"veo job {job.id}" in message.content
        assert bool(message.attachments) is (job.state is JobState.DELIVERED)
    # Flow made at most one video per job, and each delivered job's video is the one it made.
    made = Counter((g.prompt, g.seed) for g in emu.generations.values())
    assert max(made.values()) == 1, [k for k, n in made.items() if n > 1]
    for job in jobs:
        if job.state is JobState.DELIVERED:
            (gen,) = [g for g in emu.generations.values() if (g.prompt, g.seed) == (job.prompt, job.seed)]
            assert by_id[job.result_message_id or 0].attachments[0][1] == emu.video_bytes(gen.name)
        elif job.error_kind == "content_filter":
            assert BLOCKED in job.prompt
    # The post held before it existed really died with its process (it did not land behind the kill).
    assert fd.dropped >= 1
    # Every boundary was caught by at least one kill.
    states = set().union(*(set(c) for _, c in crashes.caught))
    assert states >= EVERY_STATE, crashes.caught
    logs = "".join((tmp_path / f"run{n}.log").read_text() for n in range(1, crashes.runs + 1))
    assert "Traceback" not in logs
