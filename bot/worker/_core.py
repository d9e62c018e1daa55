"""The worker's core: lifecycle, the tick, holds and alerts, per-job tasks, cancel.

The submit, poll and delivery steps live in their own modules (`_submit`, `_poll`, `_deliver`) as mixins of the
one `Worker`, which owns all the state. Scheduling (polls, retries, throttles, deadlines) runs on a monotonic
clock, so a wall-clock step stops nothing; wall time is used only to compare with times stored in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bot.backends.base import Backend
from bot.logs import job_logger
from bot.worker._deliver import DeliverMixin
from bot.worker._holds import HoldsMixin
from bot.worker._poll import PollMixin
from bot.worker._submit import SubmitMixin
from bot.worker._types import (
    MAX_JOB_CRASHES,
    WAKE_SETTLE,
    Delivery,
)
from storage import Job, JobState, Store

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger("bot.worker")

_CANCELLABLE: frozenset[JobState] = frozenset(
    {JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING}
)
_CRASHABLE: frozenset[JobState] = frozenset(
    {JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING, JobState.DELIVERING}
)


class Worker(HoldsMixin, SubmitMixin, PollMixin, DeliverMixin):
    """Moves jobs through their states: queued → submitted to a backend → polled → fetched → delivered.

    One owner runs it (the jobs cog, or `python -m bot serve`). Every move is a conditional store transition,
    so a job another actor changed meanwhile (a cancel, a second worker) is simply skipped; an error in one job
    never stops the loop, and a job that keeps failing unexpectedly is failed after `MAX_JOB_CRASHES` attempts.
    Money is never spent twice for one job: a job caught in `submitting` by a restart, or whose submit ended
    ambiguously, fails with a reason instead of being re-sent.
    """

    def __init__(
        self,
        store: Store,
        backends: Mapping[str, Backend],
        delivery: Delivery,
        *,
        default_backend: str,
        media_dir: Path,
        poll_interval: float = 5.0,
        job_timeout: float = 900.0,
        monthly_budget: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if default_backend not in backends:
            raise ValueError(f"default backend {default_backend!r} is not configured")
        self.store = store
        self.backends = dict(backends)
        self.default_backend = default_backend
        self.delivery = delivery
        self.media_dir = media_dir
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout
        self.monthly_budget = monthly_budget
        self.clock = clock
        self.wall = wall
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs_in_hand: dict[int, asyncio.Task[None]] = {}
        self._download_slots = asyncio.Semaphore(3)
        self._next_poll = 0.0
        self._next_probe = 0.0
        self._held_since: float | None = None
        self._submit_not_before = 0.0
        self._crashes: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}
        self._retries: dict[int, int] = {}
        self._deadlines: dict[int, float] = {}
        self._unreadable_polls: dict[str, int] = {}
        self._submitting: asyncio.Task[int] | None = None
        self._flags = asyncio.Lock()
        self._stopping = False
        #: Set after each completed tick; tests and benchmarks wait on it instead of sleeping.
        self.ticked = asyncio.Condition()
        self.ticks = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store, backends: Mapping[str, Backend], delivery: Delivery
    ) -> Worker:
        """The worker as `python -m bot` and `serve` build it."""
        return cls(
            store,
            backends,
            delivery,
            default_backend=settings.backend_name,
            media_dir=settings.media_dir,
            poll_interval=settings.veo_poll_interval,
            job_timeout=settings.veo_job_timeout,
            monthly_budget=settings.veo_monthly_budget_usd,
        )

    @property
    def backend(self) -> Backend:
        """The backend new jobs go to (VEO_BACKEND)."""
        return self.backends[self.default_backend]

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="veo-worker")

    async def stop(self) -> None:
        """Stop taking work; let a submit in flight answer (so its job is recorded), within reason."""
        from bot.worker._types import SUBMIT_GRACE

        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._submitting is not None:
            submitting = self._submitting
            await asyncio.wait({submitting}, timeout=SUBMIT_GRACE)
            submitting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await submitting
        tasks = list(self._jobs_in_hand.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        """Run a tick now (new job queued, queue resumed)."""
        self._wake.set()

    async def _run(self) -> None:
        try:
            await self.recover()
        except Exception:
            log.exception("recovery failed; continuing with the normal loop")
        while not self._stopping:
            try:
                await self.tick(background=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker tick failed; the loop goes on")
            delay = max(0.0, min(self._next_poll - self.clock(), self.poll_interval))
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay if delay > 0 else 0.001)
                woken = True
            if woken:  # a burst of commands wakes us many times: let it settle into one round
                await asyncio.sleep(WAKE_SETTLE)
            self._wake.clear()

    async def wait_ticks(self, n: int = 1) -> None:
        """Wait until `n` more ticks have completed."""
        target = self.ticks + n
        async with self.ticked:
            await self.ticked.wait_for(lambda: self.ticks >= target)

    async def tick(self, *, background: bool = False) -> None:
        """One round: lift holds that cleared, poll when due, submit into free slots, pick up deliveries.

        With `background` (the worker's own loop) the submission runs as its own task, one round at a time:
        a slow or hung submit call must not hold up polling, timeouts and deliveries.
        """
        now = self.clock()
        await self._check_holds(now)
        if now >= self._next_poll:
            self._next_poll = now + self.poll_interval
            await self._poll()
        if not background:
            await self._submit()
        elif self._submitting is None:
            self._submitting = asyncio.create_task(self._submit(), name="veo-submit")
            self._submitting.add_done_callback(self._submit_done)
        await self._pick_up_deliveries()
        await self._pick_up_notices()
        async with self.ticked:
            self.ticks += 1
            self.ticked.notify_all()

    async def recover(self) -> None:
        """Resume after a start: fail ambiguous submissions, finish deliveries and failure notices."""
        for job in await self.store.jobs_in_state(JobState.SUBMITTING):
            moved = await self.store.transition(
                job.id, JobState.SUBMITTING, JobState.FAILED, error_kind="interrupted", error_message="restart"
            )
            if moved:
                job_logger(log, job.id).warning("was being submitted during a restart; failed, not re-sent")
        for job in await self.store.jobs_needing_notice():
            self._hand(job.id, self._notify_failure(job))
        await self._pick_up_deliveries()

    # --- per-job tasks -----------------------------------------------------------------------------------

    def _hand(self, job_id: int, coro: Awaitable[None]) -> bool:
        """Run per-job work in its own task, one at a time per job, keeping a reference and its errors.

        Returns False (and drops `coro`) when the job already has a task.
        """
        if job_id in self._jobs_in_hand:
            coro.close()  # type: ignore[attr-defined]
            return False
        task = asyncio.create_task(coro, name=f"veo-job-{job_id}")  # type: ignore[arg-type]
        self._jobs_in_hand[job_id] = task

        def done(t: asyncio.Task[None]) -> None:
            self._jobs_in_hand.pop(job_id, None)
            if not t.cancelled() and t.exception() is not None:
                job_logger(log, job_id).error("job task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return True

    async def drain(self) -> None:
        """Wait for every per-job task in hand (tests, shutdown)."""
        while self._jobs_in_hand:
            await asyncio.gather(*list(self._jobs_in_hand.values()), return_exceptions=True)

    def _due(self, job_id: int) -> bool:
        return self.clock() >= self._retry_at.get(job_id, 0.0)

    def _retry_later(self, job_id: int) -> float:
        """Back off this job's next download/post attempt exponentially (capped); returns the delay."""
        from bot.worker._types import RETRY_CAP

        count = self._retries.get(job_id, 0)
        self._retries[job_id] = count + 1
        delay = min(RETRY_CAP, self.poll_interval * 2 ** min(count, 16))
        self._retry_at[job_id] = self.clock() + delay
        return delay

    def _forget(self, job_id: int) -> None:
        for table in (self._retry_at, self._retries, self._crashes, self._deadlines):
            table.pop(job_id, None)

    async def _guard(self, job: Job, coro: Awaitable[None]) -> None:
        """Contain an unexpected error to its job; fail the job after repeated crashes."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            count = self._crashes.get(job.id, 0) + 1
            self._crashes[job.id] = count
            job_logger(log, job.id).exception("unexpected error (%d/%d)", count, MAX_JOB_CRASHES)
            if count >= MAX_JOB_CRASHES:
                fresh = await self.store.get_job(job.id)
                if fresh is not None and fresh.state in _CRASHABLE:
                    await self._fail(fresh, fresh.state, "internal", "repeated errors")

    async def _changed(self, job: Job, *, force: bool = False) -> None:
        try:
            await self.delivery.job_changed(job, force=force)
        except Exception:
            job_logger(log, job.id).exception("status message update failed")

    # --- user actions ----------------------------------------------------------------------------------

    async def cancel(self, job: Job, *, actor_id: int) -> Job | None:
        """Cancel a job that is not yet being posted, against its current state. None when too late."""
        current: Job | None = job
        for _ in range(5):  # the job may move on between our read and our write: read again and retry
            if current is None or current.state not in _CANCELLABLE:
                return None
            moved = await self.store.transition(current.id, current.state, JobState.CANCELLED, error_kind="cancelled")
            if moved is not None:
                await self.store.finish_notice(job.id, None)
                await self.store.log_event("cancel", job_id=job.id, actor_id=actor_id)
                self._forget(job.id)
                await self._changed(moved, force=True)
                return moved
            current = await self.store.get_job(job.id)
        return None
