"""Fetching finished videos, posting them exactly once, and posting failure notices exactly once.

Downloads, posts and notices run per job in their own tasks, retried with capped exponential backoff, so a slow
Discord or a slow download never holds up polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bot.backends import errors as be
from bot.backends.base import Outcome
from bot.logs import job_logger
from bot.messages import failure_text
from bot.worker._types import MAX_DOWNLOAD_ATTEMPTS, DeliveryFailed
from storage import Job, JobState, RecoveryAction, new_nonce, recovery_action

if TYPE_CHECKING:
    from bot.worker._core import Worker

log = logging.getLogger("bot.worker")


class DeliverMixin:
    """Part of `Worker`: see bot/worker/_core.py."""

    async def _pick_up_deliveries(self: Worker) -> None:
        for job in await self.store.jobs_in_state(JobState.DOWNLOADING, JobState.DELIVERING):
            if job.id not in self._jobs_in_hand and self._due(job.id):
                self._hand(job.id, self._deliver(job, None))

    async def _pick_up_notices(self: Worker) -> None:
        """Failure notices still owed (a post that failed, one handed off while the job was busy)."""
        for job in await self.store.jobs_needing_notice():
            if job.id not in self._jobs_in_hand and self._due(job.id):
                self._hand(job.id, self._notify_failure(job))

    def media_path(self: Worker, job: Job) -> Path:
        return self.media_dir / f"job-{job.id}.mp4"

    async def _deliver(self: Worker, job: Job, outcome: Outcome | None) -> None:
        await self._guard(job, self._deliver_steps(job, outcome))

    async def _deliver_steps(self: Worker, job: Job, outcome: Outcome | None) -> None:
        jlog = job_logger(log, job.id)
        if job.state is JobState.DOWNLOADING:
            async with self._download_slots:
                moved = await self._download(job, outcome)
            if moved is None:
                return
            job = moved
        if job.state is not JobState.DELIVERING:
            return
        path = Path(job.file_path) if job.file_path else self.media_path(job)
        try:
            if recovery_action(job.delivering_at, self.wall()) is RecoveryAction.SEARCH_THEN_POST:
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

    async def _delivered(self: Worker, job: Job, message_id: int) -> None:
        done = await self.store.transition(
            job.id, JobState.DELIVERING, JobState.DELIVERED, result_message_id=message_id
        )
        if done is None:
            return
        job_logger(log, job.id).info("delivered (message %s)", message_id)
        self._forget(job.id)
        await self._changed(done, force=True)

    async def _download(self: Worker, job: Job, outcome: Outcome | None) -> Job | None:
        jlog = job_logger(log, job.id)
        backend = self.backends.get(job.backend or "flow")
        if backend is None or not job.backend_ref:
            await self._fail(job, JobState.DOWNLOADING, "backend_gone", job.backend or "none")
            return None
        dest = self.media_path(job)
        try:
            size = await backend.fetch(job.backend_ref, outcome, dest)
        except (be.CredentialsDead, be.VerificationRequired, be.AccountMigrated) as err:
            # Not the job's fault: hold it (no attempt counted) until an admin fixes the account.
            reason = "verification" if isinstance(err, be.VerificationRequired) else None
            if isinstance(err, be.AccountMigrated):
                reason = "migrated"
            if reason is None:
                reason = "cookies" if backend.name == "flow" else "vertex_auth"
            await self.pause(reason)
            self._retry_later(job.id)
            return None
        except be.BackendError as err:
            # The video exists: a bad URL, an HTML page or a garbled body may not repeat (the next attempt asks
            # the backend afresh). A few tries with backoff, then the requester is told.
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

    async def _fail(
        self: Worker, job: Job, frm: JobState, kind: str, detail: str, *, to: JobState = JobState.FAILED
    ) -> None:
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

    async def _after_failure(self: Worker, job: Job) -> None:
        await self._notify_failure(job)
        await self._changed(job, force=True)

    async def _notify_failure(self: Worker, job: Job) -> None:
        """Post the failure once: nonce kept before the post, a marker search after a long gap, retried later."""
        if job.notified_at is not None:
            return
        jlog = job_logger(log, job.id)
        try:
            # Fresh: a retry's notice_at is the first attempt's (kept by begin_notice), whatever `job` says.
            job = await self.store.get_job(job.id) or job
            searched = (
                job.notice_at is not None
                and recovery_action(job.notice_at, self.wall()) is RecoveryAction.SEARCH_THEN_POST
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
            text = failure_text(job.error_kind, job.error_message, backend=job.backend or self.default_backend)
            message_id = await self.delivery.post_failure(started, text)
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
