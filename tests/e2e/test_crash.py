"""Crash suite: the real `python -m bot`, SIGKILLed again and again while jobs flow, restarted each time.

It runs on both backends (Flow and Veo on Vertex AI), each against its emulator; only how a job is held at a
boundary differs (tests/e2e/test_crash.py `FlowSide` / `VertexSide`).

Over VEO_CRASH_JOBS jobs (default 50) from several users, the bot is killed once at every state boundary (a
job held in queued + submitting, running, downloading, delivering before the post lands, delivering after it
landed, and the same after a long outage), then VEO_CRASH_RANDOM_KILLS more times (default 6) at seeded random
moments (VEO_CRASH_SEED). In the end every job is terminal with a reason, none is lost, none is posted twice,
and the backend never made two videos for one job. A longer local run:

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
from typing import Any

import pytest

from storage import Job, JobState, Store
from tests.e2e.conftest import OTHER_ID, USER_ID
from tests.e2e.procs import bot_env, start_bot
from tests.e2e.test_delivery import SlowDiscord, age_posting, post_chatter, posts_per_job, settled, slow_discord
from tests.fakes.discord_server import FakeClock
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome
from tests.fakes.vertex_emulator import Ending, VertexEmulator
from tests.fakes.vertex_emulator import Fault as VertexFault

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
class FlowSide:
    """How the crash rounds hold a Flow job at a boundary, and what Flow made."""

    emu: FlowEmulator
    submit_route = "generate"
    poll_route = "status"

    def env(self) -> dict[str, str]:
        return {"FLOW_MAX_CONCURRENT": "8"}

    def hang_submit(self) -> None:
        self.emu.inject("generate", Fault.hang())

    async def hold_download(self, crashes: Crashes) -> None:
        before = len(self.emu.calls("fife"))
        self.emu.inject("fife", Fault.hang())
        await crashes.send(1)
        await crashes.until("fife", before + 1)

    def after_kill(self) -> None:
        self.emu.release_hung()  # what the dead process left hanging completes at Flow's end

    def made(self) -> dict[str, tuple[str, int]]:
        """Every generation the backend made: its name → (prompt, seed)."""
        return {name: (g.prompt, g.seed) for name, g in self.emu.generations.items()}


@dataclass
class VertexSide:
    """Vertex AI returns the video inside the poll answer: a download is held by bytes that are not an MP4 (the
    bot retries, re-reading the operation), which turn into the real video once the bot is dead."""

    emu: VertexEmulator
    submit_route = "submit"
    poll_route = "poll"
    held_text: str | None = None

    def env(self) -> dict[str, str]:
        return {"VERTEX_MAX_CONCURRENT": "8"}

    def hang_submit(self) -> None:
        self.emu.inject("submit", VertexFault.hang(accept=True))  # the worst case: Vertex started the operation

    async def hold_download(self, crashes: Crashes) -> None:
        self.held_text = crashes.pending[0].text
        self.emu.ending_for(self.held_text, Ending.not_mp4(), first=True)
        await crashes.send(1)
        emu = self.emu

        def refetched() -> bool:  # the bot read a finished operation again: its first download failed
            held = {n for n, op in emu.operations.items() if op.ending.kind == "not_mp4"}
            reads = Counter((r.json or {}).get("operationName") for r in emu.calls("poll"))
            return any(reads[name] > emu.polls_to_finish for name in held)

        await asyncio.wait_for(emu.wait_until(refetched), STEP_TIMEOUT)

    def after_kill(self) -> None:
        self.emu.release_hung()
        if self.held_text is not None:
            self.emu.forget_ending(self.held_text)
            self.held_text = None
        for name, op in self.emu.operations.items():
            if op.ending.kind == "not_mp4":
                self.emu.set_ending(name, Ending.video())

    def made(self) -> dict[str, tuple[str, int]]:
        return {n: (op.instance["prompt"], op.parameters["seed"]) for n, op in self.emu.operations.items()}


@dataclass
class Crashes:
    """One bot process at a time against the fakes; every kill is recorded with the states it caught."""

    tmp_path: Path
    emu: FlowEmulator | VertexEmulator
    side: FlowSide | VertexSide
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
            VEO_JOB_TIMEOUT="600",
            VEO_LOG_LEVEL="INFO",
            **self.side.env(),
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
        self.side.after_kill()
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
        """Wait until the backend has received `count` requests on `route` (held ones included)."""
        await asyncio.wait_for(self.emu.wait_for_calls(route, count), timeout)

    # --- one round per kill ----------------------------------------------------------------------------------

    async def boundary(self, kind: str, batch: int) -> None:
        """Start, send work, hold a job at `kind`, kill there."""
        await self.start()
        await self.send(batch)
        submit, poll = self.side.submit_route, self.side.poll_route
        if kind == "queued+submitting":
            before = len(self.emu.calls(submit))
            self.side.hang_submit()
            await self.send(1)
            await self.until(submit, before + 1)  # held: the submitter is busy...
            await self.send(1)  # ...so this one waits in the queue
        elif kind == "running":
            before = len(self.emu.calls(submit))
            await self.send(1)
            await self.until(submit, before + 1)
            await self.until(poll, len(self.emu.calls(poll)) + 2)
        elif kind == "downloading":
            await self.side.hold_download(self)
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
            poll = self.side.poll_route
            await self.until(poll, len(self.emu.calls(poll)) + self.rng.randint(1, 12), timeout=4)
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


@contextlib.asynccontextmanager
async def crash_backend(name: str, tmp_path: Path) -> AsyncIterator[tuple[FlowEmulator | VertexEmulator, Any]]:
    """The emulator of `name` with its side, blocked prompts ending in a safety filter."""
    if name == "flow":
        async with FlowEmulator(polls_to_finish=3, video_size=16 * 1024, credits=100 * 20 * JOBS) as flow:
            flow.outcome_for(BLOCKED, Outcome.failed("PUBLIC_ERROR_DANGER_FILTER"))
            flow.write_cookie_file(tmp_path / "cookie.json")
            yield flow, FlowSide(flow)
        return
    async with VertexEmulator(polls_to_finish=3, video_size=16 * 1024) as vertex:
        vertex.ending_for(BLOCKED, Ending.filtered())
        yield vertex, VertexSide(vertex)


@pytest.mark.parametrize("backend", ["flow", "vertex"])
async def test_sigkill_at_every_boundary_and_at_random_loses_nothing_and_posts_once(
    tmp_path: Path, crash_fd: SlowDiscord, backend: str
) -> None:
    rng = random.Random(SEED)
    fd = crash_fd
    async with crash_backend(backend, tmp_path) as (emu, side):
        plan = commands(rng, JOBS)
        kills = [*BOUNDARIES, *["random"] * RANDOM_KILLS]
        batch = max(1, len(plan) // (len(kills) + 1))
        crashes = Crashes(tmp_path, emu, side, fd, rng, pending=plan)
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
        made = side.made()

    # Every accepted job exists, is terminal, and says why.
    assert len(jobs) == sum(c.count for c in crashes.sent) == JOBS
    for job in jobs:
        assert job.terminal, job
        assert job.backend in (None, backend), job
        if job.state is JobState.DELIVERED:
            assert job.result_message_id is not None
        else:
            assert job.error_kind and job.notified_at is not None, job
    # Exactly one post per job (its video, link or failure notice), and the recorded one is that post.
    per_job = posts_per_job(fd)
    assert per_job == {j.id: 1 for j in jobs}
    by_id = {m.id: m for m in fd.messages}
    for job in jobs:
        message = by_id[job.result_message_id or job.notice_message_id or 0]
        assert f"veo job {job.id}" in message.content
        assert bool(message.attachments) is (job.state is JobState.DELIVERED)
    # The backend made at most one video per job, and each delivered job's video is the one it made.
    counts = Counter(made.values())
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    for job in jobs:
        if job.state is JobState.DELIVERED:
            (name,) = [n for n, key in made.items() if key == (job.prompt, job.seed)]
            assert by_id[job.result_message_id or 0].attachments[0][1] == emu.video_bytes(name)
        elif job.error_kind == "content_filter":
            assert BLOCKED in job.prompt
    # The post held before it existed really died with its process (it did not land behind the kill).
    assert fd.dropped >= 1
    # Every boundary was caught by at least one kill.
    states = set().union(*(set(c) for _, c in crashes.caught))
    assert states >= EVERY_STATE, crashes.caught
    logs = "".join((tmp_path / f"run{n}.log").read_text() for n in range(1, crashes.runs + 1))
    assert "Traceback" not in logs
    outcomes = Counter(j.error_kind or j.state.value for j in jobs)
    print(  # the figures the report quotes (pytest -s)
        f"\ncrash suite on {backend}: {len(crashes.caught)} SIGKILLs, {crashes.runs} runs, {len(jobs)} jobs, "
        f"{len(made)} generations, posts per job {set(per_job.values())}, outcomes {dict(outcomes)}"
    )
