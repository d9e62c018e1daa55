"""The job lifecycle: submit queued jobs to Flow, poll them in batches, download and hand them to delivery.

One owner runs this: the worker is started and stopped with its cog. It imports neither discord nor any
cog; delivery to Discord happens through the small `Delivery` interface the bot implements.

Nothing slow holds up the loop: a submission round runs as its own task (a hung generate call does not stop
polling), and downloads, posts and failure notices run per job, retried with capped exponential backoff.

Every move goes through the store's conditional transitions, so a job another actor changed meanwhile
(a cancel, a second worker) is simply skipped. An error in one job never stops the loop; a job that keeps
failing with unexpected errors is failed after `MAX_JOB_CRASHES` attempts.

Credits are never spent twice for one job: a job caught in `submitting` by a restart, or whose generate
call ended ambiguously (timeout, 5xx after sending), fails with a reason instead of being re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from bot.backends.flow import errors as fe
from bot.backends.flow.models import GenerationSpec, GenerationState, PollRef, PollResult
from bot.logs import job_logger
from bot.messages import ADMIN_ALERTS, failure_text
from storage import Job, JobState, RecoveryAction, Store, new_nonce, recovery_action

log = logging.getLogger(__name__)

MAX_JOB_CRASHES = 3
WAKE_SETTLE = 0.02
MAX_SUBMIT_ATTEMPTS = 3
MAX_DOWNLOAD_ATTEMPTS = 5
#: Unreadable status answers in a row before the admins hear that Flow's API may have changed.
MAX_UNREADABLE_POLLS = 3
DOWNLOAD_CONCURRENCY = 3
#: How long a stopping worker waits for a generate call in flight before abandoning it.
SUBMIT_GRACE = 10.0
#: Longest wait between retries of one job's download, post or failure notice.
RETRY_CAP = 60.0
PAUSE_KEY = "queue_paused"
PROJECT_KEY = "flow_project_id"


class DeliveryFailed(Exception):
    """Posting to Discord failed; `permanent` when retrying cannot help (channel gone, no permission)."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        #: Discord's HTTP status, when it answered (413: too large for the channel).
        self.status = status


class Delivery(Protocol):
    """What the worker needs from the chat side."""

    async def post_video(self, job: Job, path: Path) -> int: ...

    async def post_failure(self, job: Job, text: str) -> int: ...

    async def find_posted(self, job: Job) -> int | None: ...

    async def job_changed(self, job: Job, *, force: bool = False) -> None: ...

    async def alert_admins(self, text: str) -> None: ...


class FlowApi(Protocol):
    """The subset of FlowClient the worker uses (lets benchmarks swap in a naive baseline)."""

    async def create_project(self, title: str = ...) -> str: ...

    async def generate(self, project_id: str, specs: list[GenerationSpec]) -> list: ...

    async def check_status(self, refs: list[PollRef]) -> list[PollResult]: ...

    async def download(self, result: PollResult, dest: Path) -> int: ...


class Worker:
    """Moves jobs through their states; see the module docstring."""

    def __init__(
        self,
        store: Store,
        flow: FlowApi,
        delivery: Delivery,
        *,
        media_dir: Path,
        poll_interval: float = 5.0,
        job_timeout: float = 900.0,
        max_concurrent: int = 5,
        project_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.flow = flow
        self.delivery = delivery
        self.media_dir = media_dir
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout
        self.max_concurrent = max_concurrent
        self._project_id = project_id
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs_in_hand: dict[int, asyncio.Task[None]] = {}
        self._download_slots = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self._next_poll = 0.0
        self._submit_not_before = 0.0
        self._crashes: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}
        self._retries: dict[int, int] = {}
        self._unreadable_polls = 0
        self._submitting: asyncio.Task[int] | None = None
        self._flags = asyncio.Lock()
        self._stopping = False
        #: Set after each completed tick; tests and benchmarks wait on it instead of sleeping.
        self.ticked = asyncio.Condition()
        self.ticks = 0

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="veo-worker")

    async def stop(self) -> None:
        """Stop taking work; let in-flight downloads/deliveries finish their current step."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._submitting is not None:
            # A generate in flight: let it answer (so the job is recorded as running), within reason.
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

    # --- one round -----------------------------------------------------------------------------------

    async def tick(self, *, background: bool = False) -> None:
        """One round: time out, poll when due, submit into free slots, pick up pending deliveries.

        With `background` (the worker's own loop) the submission runs as its own task, one round at a time:
        a slow or hung generate call must not hold up polling, timeouts and deliveries.
        """
        now = self.clock()
        if now >= self._next_poll:
            self._next_poll = now + self.poll_interval
            await self._expire_stuck()
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

    # --- submit --------------------------------------------------------------------------------------

    async def paused(self) -> str | None:
        return await self.store.kv_get(PAUSE_KEY)

    async def pause(self, reason: str, *, actor_id: int | None = None) -> bool:
        """Hold the queue. Returns True when this call paused it (admins are alerted only then)."""
        async with self._flags:  # concurrent failures (several groups hit one wall) alert once
            current = await self.paused()
            if current == reason or (current and reason != "admin"):
                return False
            await self.store.kv_set(PAUSE_KEY, reason)
        await self.store.log_event("queue_paused", actor_id=actor_id, detail=reason)
        log.warning("queue paused: %s", reason)
        if reason in ADMIN_ALERTS:
            try:
                await self.delivery.alert_admins(ADMIN_ALERTS[reason])
            except Exception:
                log.exception("could not alert the admins")
        await self._show_hold()
        return True

    async def resume(self, *, actor_id: int | None = None) -> bool:
        if await self.paused() is None:
            return False
        await self.store.kv_set(PAUSE_KEY, None)
        await self.store.log_event("queue_resumed", actor_id=actor_id)
        log.info("queue resumed")
        self._submit_not_before = 0.0
        await self._show_hold()
        self.wake()
        return True

    async def _show_hold(self) -> None:
        """Refresh the status message of every waiting job once, so users see the hold (or its end)."""
        seen: set[int] = set()
        for job in await self.store.jobs_in_state(JobState.QUEUED):
            if job.status_message_id and job.status_message_id not in seen:
                seen.add(job.status_message_id)
                await self._changed(job)

    async def project_id(self) -> str:
        """The Flow project: from settings, else the one we created once and remembered."""
        if self._project_id:
            return self._project_id
        stored = await self.store.kv_get(PROJECT_KEY)
        if stored:
            self._project_id = stored
            return stored
        created = await self.flow.create_project("Veo bot")
        await self.store.kv_set(PROJECT_KEY, created)
        self._project_id = created
        return created

    def _submit_done(self, task: asyncio.Task[int]) -> None:
        self._submitting = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("submission round failed; the next tick tries again", exc_info=task.exception())
        elif task.result():
            self.wake()  # it took a while: more may be waiting, and slots may have freed meanwhile

    async def _submit(self) -> int:
        """Claim queued jobs into free Flow slots and send them; returns how many were claimed."""
        if self._stopping or await self.paused() or self.clock() < self._submit_not_before:
            return 0
        free = self.max_concurrent - await self.store.count_in_flight()
        if free <= 0:
            return 0
        claimed = await self.store.claim_next(free)
        groups: dict[int, list[Job]] = {}
        for job in claimed:
            groups.setdefault(job.group_id or -job.id, []).append(job)
        # All at once: a job claimed is a job sent, so a crash leaves none in `submitting` that never went out.
        await asyncio.gather(*(self._submit_group(group) for group in groups.values()))
        return len(claimed)

    async def _submit_group(self, jobs: list[Job]) -> None:
        specs = [
            GenerationSpec(prompt=j.prompt, aspect=j.aspect, model=j.model, seed=j.seed, scene_id=str(uuid.uuid4()))
            for j in jobs
        ]
        try:
            project = await self.project_id()
            submitted = await self.flow.generate(project, specs)
        except Exception as err:
            await self._submit_failed(jobs, err)
            return
        by_scene = {s.scene_id: s for s in submitted}
        for job, spec in zip(jobs, specs, strict=True):
            sub = by_scene.get(spec.scene_id)
            if sub is None and len(jobs) == len(submitted) == 1:
                sub = submitted[0]
            if sub is None:
                await self._fail(job, JobState.SUBMITTING, "api_changed", "no operation for our scene")
                continue
            moved = await self.store.transition(
                job.id,
                JobState.SUBMITTING,
                JobState.RUNNING,
                scene_id=spec.scene_id,
                operation_name=sub.operation_name,
                media_name=sub.media_name,
                protocol=sub.protocol,
                project_id=project,
            )
            if moved:
                job_logger(log, job.id).info("submitted to Flow")
                await self._changed(moved)
            else:
                # Cancelled while we were submitting: Flow will make it, we will not post it.
                job_logger(log, job.id).info("changed state during submit; result will be ignored")

    async def _submit_failed(self, jobs: list[Job], err: Exception) -> None:
        now = self.clock()
        requeue = False
        hold: str | None = None
        match err:
            case fe.CookiesExpired() | fe.AuthExpired() | fe.CookieFileError():
                requeue, hold = True, "cookies"
            case fe.VerificationRequired():
                requeue, hold = True, "verification"
            case fe.QuotaExhausted():
                requeue, hold = True, "credits"
            case fe.RateLimited():
                requeue = True
                self._submit_not_before = now + (err.retry_after or 30.0)
            case fe.UpstreamUnavailable() if not err.maybe_accepted:
                self._submit_not_before = now + min(60.0, self.poll_interval * 2)
                for job in jobs:  # claiming counted the attempt
                    if job.attempts >= MAX_SUBMIT_ATTEMPTS:
                        await self._fail(job, JobState.SUBMITTING, "transient", "flow unavailable")
                    else:
                        await self.store.transition(job.id, JobState.SUBMITTING, JobState.QUEUED)
                return
            case fe.UpstreamUnavailable():
                kind = "unconfirmed"
            case fe.ModelNotAllowed():
                kind = "model_not_allowed"
            case fe.ContentRejected() | fe.BadRequest():
                kind = "rejected"
            case fe.BadResponse():
                kind = "api_changed"
                await self._alert_once("api_changed")
            case fe.FlowError():
                kind = "unknown"
            case _:
                log.error("unexpected error submitting jobs %s", [j.id for j in jobs], exc_info=err)
                kind = "unknown"
        if requeue:
            log.warning("submit deferred (%s); %d job(s) back in the queue", type(err).__name__, len(jobs))
            for job in jobs:  # not the job's fault: give back the attempt that claiming counted
                await self.store.transition(
                    job.id, JobState.SUBMITTING, JobState.QUEUED, attempts=max(0, job.attempts - 1)
                )
            if hold is not None:  # after the requeue, so status messages show "queued, on hold", not "sending"
                await self.pause(hold)
            return
        for job in jobs:
            await self._fail(job, JobState.SUBMITTING, kind, type(err).__name__)

    # --- poll ----------------------------------------------------------------------------------------

    async def _expire_stuck(self) -> None:
        now = self.clock()
        for job in await self.store.jobs_in_state(JobState.RUNNING):
            started = job.submitted_at or job.created_at
            if now - started > self.job_timeout:
                await self._fail(job, JobState.RUNNING, "timed_out", "job timeout", to=JobState.TIMED_OUT)

    async def _poll(self) -> None:
        if await self.paused() == "cookies":
            return  # nothing can succeed until an admin reloads the cookies; don't knock on Flow's door
        running = await self.store.jobs_in_state(JobState.RUNNING)
        if not running:
            return
        refs = [
            PollRef(
                operation_name=j.operation_name or "",
                scene_id=j.scene_id,
                media_name=j.media_name,
                project_id=j.project_id,
                protocol=j.protocol or "operations",
            )
            for j in running
            if j.operation_name
        ]
        try:
            results = await self.flow.check_status(refs)
        except (fe.CookiesExpired, fe.AuthExpired):
            await self.pause("cookies")
            return
        except fe.VerificationRequired:
            await self.pause("verification")
            return
        except fe.RateLimited as err:
            self._next_poll = self.clock() + max(self.poll_interval, err.retry_after or 0.0)
            log.warning("status poll rate limited; next poll in %.0fs", self._next_poll - self.clock())
            return
        except fe.BadResponse as err:
            # One garbled answer is noise; several in a row mean Flow's API changed under us.
            self._unreadable_polls += 1
            log.warning("status response unreadable (%d in a row): %s", self._unreadable_polls, err)
            if self._unreadable_polls >= MAX_UNREADABLE_POLLS:
                await self._alert_once("api_changed")
            return
        except fe.FlowError as err:
            log.warning("status poll failed (%s); retrying next interval", type(err).__name__)
            return
        self._unreadable_polls = 0
        by_name = {r.operation_name: r for r in results}
        for job in running:
            result = by_name.get(job.operation_name or "")
            if result is None:
                continue
            await self._guard(job, self._on_result(job, result))

    async def _on_result(self, job: Job, result: PollResult) -> None:
        if result.state is GenerationState.SUCCEEDED:
            moved = await self.store.transition(job.id, JobState.RUNNING, JobState.DOWNLOADING)
            if moved:
                await self._changed(moved)
                self._hand(moved.id, self._deliver(moved, result))
        elif result.state is GenerationState.FAILED:
            kind = result.failure_category or "unknown"
            await self._fail(job, JobState.RUNNING, kind, result.failure_reason or "FAILED")
        else:
            await self._changed(job)

    # --- download & deliver ----------------------------------------------------------------------------

    async def _pick_up_deliveries(self) -> None:
        for job in await self.store.jobs_in_state(JobState.DOWNLOADING, JobState.DELIVERING):
            if job.id not in self._jobs_in_hand and self._due(job.id):
                self._hand(job.id, self._deliver(job, None))

    async def _pick_up_notices(self) -> None:
        """Failure notices still owed (a post that failed, one handed off while the job was busy)."""
        for job in await self.store.jobs_needing_notice():
            if job.id not in self._jobs_in_hand and self._due(job.id):
                self._hand(job.id, self._notify_failure(job))

    def _due(self, job_id: int) -> bool:
        return self.clock() >= self._retry_at.get(job_id, 0.0)

    def _retry_later(self, job_id: int) -> float:
        """Back off this job's next download/post attempt exponentially (capped); returns the delay."""
        count = self._retries.get(job_id, 0)
        self._retries[job_id] = count + 1
        delay = min(RETRY_CAP, self.poll_interval * 2 ** min(count, 16))
        self._retry_at[job_id] = self.clock() + delay
        return delay

    def _forget(self, job_id: int) -> None:
        self._retry_at.pop(job_id, None)
        self._retries.pop(job_id, None)
        self._crashes.pop(job_id, None)

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

    def media_path(self, job: Job) -> Path:
        return self.media_dir / f"job-{job.id}.mp4"

    async def _deliver(self, job: Job, result: PollResult | None) -> None:
        await self._guard(job, self._deliver_steps(job, result))

    async def _deliver_steps(self, job: Job, result: PollResult | None) -> None:
        jlog = job_logger(log, job.id)
        if job.state is JobState.DOWNLOADING:
            async with self._download_slots:
                moved = await self._download(job, result)
            if moved is None:
                return
            job = moved
        if job.state is not JobState.DELIVERING:
            return
        path = Path(job.file_path) if job.file_path else self.media_path(job)
        try:
            if recovery_action(job.delivering_at, self.clock()) is RecoveryAction.SEARCH_THEN_POST:
                found = await self.delivery.find_posted(job)
                if found is not None:
                    jlog.info("already posted before the restart (message %s)", found)
                    await self._delivered(job, found)
                    return
                renewed = await self.store.renew_delivery(job.id)
                if renewed is None:
                    return
                job = renewed
            if not await asyncio.to_thread(path.exists):
                await self._fail(job, JobState.DELIVERING, "download", "media file missing")
                return
            message_id = await self.delivery.post_video(job, path)
        except DeliveryFailed as err:
            if err.permanent:
                await self._fail(job, JobState.DELIVERING, "delivery", str(err))
            else:
                delay = self._retry_later(job.id)
                jlog.warning("posting failed (%s); retrying in %.0fs", err, delay)
            return
        await self._delivered(job, message_id)

    async def _delivered(self, job: Job, message_id: int) -> None:
        done = await self.store.transition(
            job.id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=message_id
        )
        if done is None:
            return
        job_logger(log, job.id).info("delivered (message %s)", message_id)
        self._forget(job.id)
        await self._changed(done, force=True)

    async def _download(self, job: Job, result: PollResult | None) -> Job | None:
        jlog = job_logger(log, job.id)
        try:
            if result is None:
                ref = PollRef(
                    operation_name=job.operation_name or "",
                    scene_id=job.scene_id,
                    media_name=job.media_name,
                    project_id=job.project_id,
                    protocol=job.protocol or "operations",
                )
                fresh = await self.flow.check_status([ref])
                result = next((r for r in fresh if r.state is GenerationState.SUCCEEDED), None)
                if result is None:
                    await self._fail(job, JobState.DOWNLOADING, "download", "no longer available")
                    return None
            dest = self.media_path(job)
            size = await self.flow.download(result, dest)
        except (fe.CookiesExpired, fe.AuthExpired, fe.CookieFileError, fe.VerificationRequired) as err:
            # Not the job's fault: hold it (no attempt counted) until an admin fixes the account.
            await self.pause("verification" if isinstance(err, fe.VerificationRequired) else "cookies")
            self._retry_later(job.id)
            return None
        except fe.FlowError as err:
            # The video exists: a bad URL, an HTML page or a garbled body may not repeat (the next attempt asks
            # Flow for fresh URLs). A few tries with backoff, then the requester is told.
            attempts = job.attempts + 1
            if attempts >= MAX_DOWNLOAD_ATTEMPTS:
                await self._fail(job, JobState.DOWNLOADING, "download", type(err).__name__)
            else:
                await self.store.update_job(job.id, attempts=attempts)
                delay = self._retry_later(job.id)
                jlog.warning("download failed (%s), attempt %d; retrying in %.1fs", type(err).__name__, attempts, delay)
            return None
        moved = await self.store.transition(
            job.id,
            JobState.DOWNLOADING,
            JobState.DELIVERING,
            file_path=str(dest),
            file_size=size,
            delivery_nonce=new_nonce(),
        )
        if moved is None:
            jlog.info("changed state during download (cancelled?); not posting")
            with contextlib.suppress(OSError):
                await asyncio.to_thread(dest.unlink)
        return moved

    # --- failures ------------------------------------------------------------------------------------

    async def _fail(self, job: Job, frm: JobState, kind: str, detail: str, *, to: JobState = JobState.FAILED) -> None:
        moved = await self.store.transition(job.id, frm, to, error_kind=kind, error_message=detail[:200])
        if moved is None:
            return
        job_logger(log, job.id).info("%s: %s (%s)", to.value, kind, detail[:200])
        self._forget(job.id)
        if self._jobs_in_hand.get(job.id) is asyncio.current_task():
            await self._after_failure(moved)
        elif not self._hand(job.id, self._after_failure(moved)):
            await self._changed(moved)  # the job is busy elsewhere; the notice sweep posts its notice
        # Otherwise off the tick: a slow Discord must not hold up polling, and one task per job posts.

    async def _after_failure(self, job: Job) -> None:
        await self._notify_failure(job)
        await self._changed(job, force=True)

    async def _notify_failure(self, job: Job) -> None:
        """Post the failure once: nonce kept before the post, a marker search after a long gap, retried later."""
        if job.notified_at is not None:
            return
        jlog = job_logger(log, job.id)
        try:
            # Fresh: a retry's notice_at is the first attempt's (kept by begin_notice), whatever `job` says.
            job = await self.store.get_job(job.id) or job
            searched = (
                job.notice_at is not None
                and recovery_action(job.notice_at, self.clock()) is RecoveryAction.SEARCH_THEN_POST
            )
            if searched:
                found = await self.delivery.find_posted(job)
                if found is not None:
                    await self.store.finish_notice(job.id, found)
                    self._forget(job.id)
                    return
            started = await self.store.begin_notice(job.id, new_nonce(), renew=searched)
            if started is None:
                return
            message_id = await self.delivery.post_failure(started, failure_text(job.error_kind, job.error_message))
        except DeliveryFailed as err:
            if err.permanent:
                jlog.warning("cannot post the failure notice here (%s); giving up on it", err)
                await self.store.finish_notice(job.id, None)
            else:
                delay = self._retry_later(job.id)
                jlog.warning("could not post the failure notice (%s); retrying in %.0fs", err, delay)
            return
        await self.store.finish_notice(job.id, message_id)
        self._forget(job.id)

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

    async def _alert_once(self, key: str) -> None:
        flag = f"alerted:{key}"
        async with self._flags:
            if await self.store.kv_get(flag):
                return
            await self.store.kv_set(flag, str(self.clock()))
        try:
            await self.delivery.alert_admins(ADMIN_ALERTS[key])
        except Exception:
            log.exception("could not alert the admins")

    # --- user actions ----------------------------------------------------------------------------------

    async def cancel(self, job: Job, *, actor_id: int) -> Job | None:
        """Cancel a job that is not yet being posted. Returns the cancelled job, or None when too late."""
        if job.state not in _CANCELLABLE:
            return None
        moved = await self.store.transition(job.id, job.state, JobState.CANCELLED, error_kind="cancelled")
        if moved is not None:
            await self.store.finish_notice(job.id, None)
            await self.store.log_event("cancel", job_id=job.id, actor_id=actor_id)
            await self._changed(moved, force=True)
        return moved


_CANCELLABLE: frozenset[JobState] = frozenset(
    {JobState.QUEUED, JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING}
)
_CRASHABLE: frozenset[JobState] = frozenset(
    {JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING, JobState.DELIVERING}
)
