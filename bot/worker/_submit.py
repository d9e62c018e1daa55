"""Submitting: claim queued jobs fairly into the configured backend's free slots and send them."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bot.backends import errors as be
from bot.backends.base import Backend, GenerationRequest, Submission
from bot.logs import job_logger
from bot.messages import model_missing_alert
from bot.worker._types import MAX_SUBMIT_ATTEMPTS
from storage import Job, JobOptions, JobState

if TYPE_CHECKING:
    from bot.worker._core import Worker

log = logging.getLogger("bot.worker")


def generation_request(
    *, prompt: str, aspect: str, model: str, seed: int, options: JobOptions, job_id: int = 0
) -> GenerationRequest:
    """The neutral request for a job's fields and options (input files are paths kept with the job).

    ValueError (pydantic) when a value is outside what any backend takes: callers check their input first.
    """
    return GenerationRequest(
        job_id=job_id,
        prompt=prompt,
        aspect=aspect,  # type: ignore[arg-type]
        model=model,  # type: ignore[arg-type]
        seed=seed,
        duration=options.duration,  # type: ignore[arg-type]
        resolution=options.resolution,  # type: ignore[arg-type]
        audio=options.audio,
        negative_prompt=options.negative_prompt,
        image=Path(options.image) if options.image else None,
        last_frame=Path(options.last_frame) if options.last_frame else None,
        references=tuple(Path(p) for p in options.references),
        video=Path(options.video) if options.video else None,
    )


def request_for(job: Job) -> GenerationRequest:
    """The neutral request a stored job stands for."""
    return generation_request(
        prompt=job.prompt,
        aspect=job.aspect.value,
        model=job.model.value,
        seed=job.seed,
        options=job.options,
        job_id=job.id,
    )


#: Holds by the kind of wall a backend hit: (error type, hold reason for Flow, hold reason for Vertex AI).
def _hold_for(err: be.BackendError, backend: str) -> str | None:
    match err:
        case be.AccountMigrated():
            return "migrated"
        case be.CredentialsDead():
            return "cookies" if backend == "flow" else "vertex_auth"
        case be.VerificationRequired():
            return "verification"
        case be.QuotaExhausted():
            return "credits"
    return None


class SubmitMixin:
    """Part of `Worker`: see bot/worker/_core.py."""

    def _submit_done(self: Worker, task: asyncio.Task[int]) -> None:
        self._submitting = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("submission round failed; the next tick tries again", exc_info=task.exception())
        elif task.result():
            self.wake()  # it took a while: more may be waiting, and slots may have freed meanwhile

    async def _submit(self: Worker) -> int:
        """Claim queued jobs into the backend's free slots and send them; returns how many were claimed."""
        if self._stopping or await self.paused() or self.clock() < self._submit_not_before:
            return 0
        backend = self.backend
        if backend.name == "vertex" and await self.over_budget():
            await self.hold_for_budget()
            return 0
        free = backend.max_concurrent - await self.store.count_in_flight(backend.name)
        if free <= 0:
            return 0
        claimed = await self.store.claim_next(free)
        groups: dict[int, list[Job]] = {}
        for job in claimed:
            groups.setdefault(job.group_id or -job.id, []).append(job)
        if backend.name == "vertex" and self.monthly_budget is not None:
            groups = await self._within_budget(groups)
        # All at once: a job claimed is a job sent, so a crash leaves none in `submitting` that never went out.
        await asyncio.gather(*(self._submit_group(backend, group) for group in groups.values()))
        return len(claimed)

    async def _within_budget(self: Worker, groups: dict[int, list[Job]]) -> dict[int, list[Job]]:
        """Keep the groups the month's budget still covers; put the rest back and hold the queue."""
        kept: dict[int, list[Job]] = {}
        extra = 0.0
        over: list[Job] = []
        for key, jobs in groups.items():
            cost = sum(j.cost for j in jobs if j.cost_unit == "usd")
            if over or await self.over_budget(extra + cost):
                over.extend(jobs)
                continue
            extra += cost
            kept[key] = jobs
        if over:
            await self._requeue(over)
            await self.hold_for_budget()
        return kept

    async def _requeue(self: Worker, jobs: list[Job]) -> None:
        """Not the jobs' fault: back in line, giving back the attempt that claiming counted."""
        for job in jobs:
            await self.store.transition(job.id, JobState.SUBMITTING, JobState.QUEUED, attempts=max(0, job.attempts - 1))

    async def _submit_group(self: Worker, backend: Backend, jobs: list[Job]) -> None:
        sendable: list[Job] = []
        for job in jobs:
            try:
                backend.validate(request_for(job))
            except be.NotSupported as err:  # queued under another backend's rules
                await self._fail(job, JobState.SUBMITTING, "not_supported", str(err))
                continue
            except ValueError as err:
                await self._fail(job, JobState.SUBMITTING, "not_supported", type(err).__name__)
                continue
            sendable.append(job)
        if not sendable:
            return
        try:
            results = await backend.submit([request_for(j) for j in sendable])
        except Exception as err:
            await self._submit_failed(backend, sendable, err)
            return
        if any(isinstance(r, Submission) for r in results):
            await self._rearm("api_changed")
        for job, result in zip(sendable, results, strict=True):
            if isinstance(result, Submission):
                await self._submitted(backend, job, result)
            else:
                await self._submit_failed(backend, [job], result)

    async def _submitted(self: Worker, backend: Backend, job: Job, result: Submission) -> None:
        moved = await self.store.transition(
            job.id, JobState.SUBMITTING, JobState.RUNNING, backend=backend.name, backend_ref=result.ref
        )
        if moved:
            job_logger(log, job.id).info("submitted to %s", backend.name)
            await self._rearm(f"model:{job.model.value}")
            await self._changed(moved)
        else:
            # Cancelled while we were submitting: the backend will make it, we will not post it.
            job_logger(log, job.id).info("changed state during submit; result will be ignored")

    async def _submit_failed(self: Worker, backend: Backend, jobs: list[Job], err: BaseException) -> None:
        if not isinstance(err, be.BackendError):
            log.error("unexpected error submitting jobs %s", [j.id for j in jobs], exc_info=err)
            for job in jobs:
                await self._fail(job, JobState.SUBMITTING, "unknown", type(err).__name__)
            return
        hold = _hold_for(err, backend.name)
        if hold is not None:
            log.warning("submit deferred (%s); %d job(s) back in the queue", type(err).__name__, len(jobs))
            await self._requeue(jobs)
            # after the requeue, so status messages show "queued, on hold", not "sending"
            await self.pause(hold, detail=getattr(err, "hint", None))
            return
        kind: str
        match err:
            case be.RateLimited():
                await self._requeue(jobs)
                self._submit_not_before = self.clock() + (err.retry_after or 30.0)
                return
            case be.Unavailable() if not err.maybe_accepted:
                self._submit_not_before = self.clock() + min(60.0, self.poll_interval * 2)
                for job in jobs:  # claiming counted the attempt
                    if job.attempts >= MAX_SUBMIT_ATTEMPTS:
                        await self._fail(job, JobState.SUBMITTING, "transient", "backend unavailable")
                    else:
                        await self.store.transition(job.id, JobState.SUBMITTING, JobState.QUEUED)
                return
            case be.Unavailable():
                kind = "unconfirmed"
            case be.ModelUnavailable():
                kind = "model_not_allowed"
                if backend.name == "vertex":
                    for job in jobs:  # re-armed when this model works again (see _submitted)
                        await self._alert_once(f"model:{job.model.value}", model_missing_alert(err.model_id))
            case be.SafetyRejected():
                kind = "blocked" if backend.name == "vertex" else "rejected"
            case be.BadRequest():
                kind = "rejected"
            case be.NotSupported():
                kind = "not_supported"
            case be.BadResponse():
                kind = "api_changed"
                await self._alert_once("api_changed")
            case _:
                kind = "unknown"
        detail = str(err) if kind == "not_supported" else (getattr(err, "category", None) or type(err).__name__)
        for job in jobs:
            await self._fail(job, JobState.SUBMITTING, kind, detail)
