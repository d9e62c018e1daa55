"""Polling: ask each backend about its running jobs, time out what stays pending too long.

A job times out only when we could look at it: when a poll says it is still running past its deadline, or when
its backend answered polls but never about it for a whole extra timeout. While we are the reason a job cannot
be observed (a credentials hold, the bot being down), its clock does not run out on it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.backends import errors as be
from bot.backends.base import GenerationState, Outcome
from bot.worker._types import CREDENTIAL_HOLDS, MAX_UNREADABLE_POLLS
from storage import Job, JobState

if TYPE_CHECKING:
    from bot.worker._core import Worker

log = logging.getLogger("bot.worker")


class PollMixin:
    """Part of `Worker`: see bot/worker/_core.py."""

    def _deadline(self: Worker, job: Job) -> float:
        """The job's timeout on the monotonic clock, fixed the first time this process sees it running."""
        deadline = self._deadlines.get(job.id)
        if deadline is None:
            started = job.submitted_at or job.created_at
            remaining = max(0.0, self.job_timeout - max(0.0, self.wall() - started))
            deadline = self._deadlines[job.id] = self.clock() + remaining
        return deadline

    async def _poll(self: Worker) -> None:
        running = await self.store.jobs_in_state(JobState.RUNNING)
        if not running:
            return
        by_backend: dict[str, list[Job]] = {}
        for job in running:
            by_backend.setdefault(job.backend or "flow", []).append(job)
        held = await self.paused()
        blocked = CREDENTIAL_HOLDS.get(held or "")
        await asyncio.gather(*(self._poll_backend(name, jobs) for name, jobs in by_backend.items() if name != blocked))

    async def _poll_backend(self: Worker, name: str, jobs: list[Job]) -> None:
        backend = self.backends.get(name)
        if backend is None:
            for job in jobs:  # taken by a backend that is no longer configured: nobody can finish it
                await self._fail(job, JobState.RUNNING, "backend_gone", name)
            return
        refs = [j.backend_ref for j in jobs if j.backend_ref]
        try:
            outcomes = await backend.poll(refs)
        except be.BackendError as err:
            await self._poll_failed(name, err)
            return
        if self._unreadable_polls.pop(name, 0):
            await self._rearm("api_changed")
        by_ref: dict[str, Outcome] = {o.ref: o for o in outcomes}
        now = self.clock()
        for job in jobs:
            outcome = by_ref.get(job.backend_ref or "")
            deadline = self._deadline(job)
            if outcome is None:
                if now > deadline + self.job_timeout:  # the backend keeps answering, never about this job
                    await self._fail(job, JobState.RUNNING, "timed_out", "never reported", to=JobState.TIMED_OUT)
                continue
            if outcome.state is GenerationState.RUNNING and now > deadline:
                await self._fail(job, JobState.RUNNING, "timed_out", "job timeout", to=JobState.TIMED_OUT)
                continue
            await self._guard(job, self._on_result(job, outcome))

    async def _poll_failed(self: Worker, name: str, err: be.BackendError) -> None:
        match err:
            case be.AccountMigrated():
                await self.pause("migrated")
            case be.CredentialsDead():
                await self.pause("cookies" if name == "flow" else "vertex_auth", detail=err.hint)
            case be.VerificationRequired():
                await self.pause("verification")
            case be.RateLimited():
                self._next_poll = self.clock() + max(self.poll_interval, err.retry_after or 0.0)
                log.warning("%s status poll rate limited; next poll in %.0fs", name, self._next_poll - self.clock())
            case be.BadResponse():
                # One garbled answer is noise; several in a row mean the backend's API changed under us.
                count = self._unreadable_polls[name] = self._unreadable_polls.get(name, 0) + 1
                log.warning("%s status response unreadable (%d in a row): %s", name, count, err)
                if count >= MAX_UNREADABLE_POLLS:
                    await self._alert_once("api_changed")
            case _:
                log.warning("%s status poll failed (%s); retrying next interval", name, type(err).__name__)

    async def _on_result(self: Worker, job: Job, outcome: Outcome) -> None:
        if outcome.state is GenerationState.SUCCEEDED:
            moved = await self.store.transition(job.id, JobState.RUNNING, JobState.DOWNLOADING)
            if moved:
                await self._changed(moved)
                self._hand(moved.id, self._deliver(moved, outcome))
        elif outcome.state is GenerationState.FAILED:
            await self._fail(job, JobState.RUNNING, outcome.failure or "unknown", outcome.detail or "FAILED")
        else:
            await self._changed(job)
