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
from datetime import UTC, datetime
from pathlib import Path

from bot.backends import errors as be
from bot.backends.base import Backend
from bot.logs import job_logger
from bot.messages import ADMIN_ALERTS
from bot.worker._deliver import DeliverMixin
from bot.worker._poll import PollMixin
from bot.worker._submit import SubmitMixin
from bot.worker._types import (
    BUDGET_HOLD_KEY,
    BUDGET_OVERRIDE_KEY,
    CREDENTIAL_HOLDS,
    HOLD_PROBE_INTERVAL,
    MAX_JOB_CRASHES,
    PAUSE_DETAIL_KEY,
    PAUSE_KEY,
    WAKE_SETTLE,
    Delivery,
)
from storage import Job, JobState, Store

log = logging.getLogger("bot.worker")

_CANCELLABLE: frozenset[JobState] = frozenset(
    {JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING}
)
_CRASHABLE: frozenset[JobState] = frozenset(
    {JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING, JobState.DELIVERING}
)


def month_of(wall: float) -> tuple[str, float]:
    """The calendar month (UTC) of `wall` as "YYYY-MM", and its first second."""
    moment = datetime.fromtimestamp(wall, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), start.timestamp()


class Worker(SubmitMixin, PollMixin, DeliverMixin):
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

    # --- holds -----------------------------------------------------------------------------------------

    async def paused(self) -> str | None:
        return await self.store.kv_get(PAUSE_KEY)

    async def pause(self, reason: str, *, actor_id: int | None = None, detail: str | None = None) -> bool:
        """Hold the queue. Returns True when this call paused it (admins are alerted only then)."""
        async with self._flags:  # concurrent failures (several groups hit one wall) alert once
            current = await self.paused()
            if current == reason or (current and reason != "admin"):
                return False
            self._next_probe = self.clock() + HOLD_PROBE_INTERVAL  # before the hold is visible to a tick
            if reason in CREDENTIAL_HOLDS:
                self._held_since = self.clock()
            await self.store.kv_set(PAUSE_KEY, reason)
            await self.store.kv_set(PAUSE_DETAIL_KEY, detail)
        await self.store.log_event("queue_paused", actor_id=actor_id, detail=reason)
        log.warning("queue paused: %s", reason)
        if reason in ADMIN_ALERTS:
            text = ADMIN_ALERTS[reason] + (f"\n{detail}" if detail else "")
            try:
                await self.delivery.alert_admins(text)
            except Exception:
                log.exception("could not alert the admins")
        await self._show_hold()
        return True

    async def resume(self, *, actor_id: int | None = None) -> bool:
        reason = await self.paused()
        if reason is None:
            return False
        await self.store.kv_set(PAUSE_KEY, None)
        await self.store.kv_set(PAUSE_DETAIL_KEY, None)
        if reason in CREDENTIAL_HOLDS and self._held_since is not None:
            # Its jobs were not polled meanwhile: that time does not count against their timeouts.
            held = self.clock() - self._held_since
            for job_id in self._deadlines:
                self._deadlines[job_id] += held
        self._held_since = None
        if reason == "budget" and actor_id is not None:
            # An admin lifted the budget hold: do not re-apply the budget for the rest of this month.
            await self.store.kv_set(BUDGET_OVERRIDE_KEY, month_of(self.wall())[0])
        await self.store.log_event("queue_resumed", actor_id=actor_id, detail=reason)
        log.info("queue resumed (was: %s)", reason)
        self._submit_not_before = 0.0
        await self._show_hold()
        self.wake()
        return True

    async def _check_holds(self, now: float) -> None:
        """Lift a hold whose cause went away: credentials that work again, a new budget month."""
        if now < self._next_probe:
            return
        reason = await self.paused()
        if reason is None or self.clock() < self._next_probe:
            return
        self._next_probe = now + HOLD_PROBE_INTERVAL
        if reason == "budget":
            # Only a new month lifts it: the spend so far may be under the budget while the next job is not.
            month = month_of(self.wall())[0]
            held_for = await self.store.kv_get(BUDGET_HOLD_KEY)
            if held_for is None:
                await self.store.kv_set(BUDGET_HOLD_KEY, month)
            elif held_for != month:
                log.info("a new month: the budget hold lifts")
                await self.resume()
            return
        name = CREDENTIAL_HOLDS.get(reason)
        backend = self.backends.get(name) if name else None
        if backend is None:
            return
        try:
            await backend.check()
        except be.BackendError as err:
            log.info("queue stays on hold (%s): %s", reason, type(err).__name__)
            return
        log.info("the %s credentials work again: the hold lifts", name)
        await self.resume()

    async def hold_for_budget(self) -> None:
        """Hold the queue for this month's budget (admins told once); it lifts next month or on an admin resume."""
        await self.store.kv_set(BUDGET_HOLD_KEY, month_of(self.wall())[0])
        await self.pause("budget")

    async def over_budget(self, extra: float = 0.0) -> bool:
        """Whether this month's estimated Vertex AI spend (plus `extra`) passes VEO_MONTHLY_BUDGET_USD."""
        if self.monthly_budget is None:
            return False
        month, start = month_of(self.wall())
        if await self.store.kv_get(BUDGET_OVERRIDE_KEY) == month:
            return False
        spent = await self.store.spend("usd", start, submitted_only=True)
        return spent + extra > self.monthly_budget + 1e-9

    async def _show_hold(self) -> None:
        """Refresh the status message of every waiting job once, so users see the hold (or its end)."""
        seen: set[int] = set()
        for job in await self.store.jobs_in_state(JobState.QUEUED):
            if job.status_message_id and job.status_message_id not in seen:
                seen.add(job.status_message_id)
                await self._changed(job)

    async def _alert_once(self, key: str, text: str | None = None) -> None:
        """Tell the admins once while the condition lasts; `_rearm` when it clears."""
        flag = f"alerted:{key}"
        async with self._flags:
            if await self.store.kv_get(flag):
                return
            await self.store.kv_set(flag, str(self.wall()))
        try:
            await self.delivery.alert_admins(text or ADMIN_ALERTS[key])
        except Exception:
            log.exception("could not alert the admins")

    async def _rearm(self, key: str) -> None:
        """The condition behind an alert cleared: the next occurrence alerts again."""
        flag = f"alerted:{key}"
        if await self.store.kv_get(flag):
            await self.store.kv_set(flag, None)

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
