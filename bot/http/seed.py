"""The original plan's two routes, as thin views of the same jobs as `/v1/videos`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from bot.http.app import Ctx, Key, check_prompt, queue_jobs
from bot.http.inputs import read_model
from bot.http.models import (
    MODELS,
    SEED_MAX,
    SeedGenerate,
    SeedJob,
    SeedJobs,
    SeedStatusRequest,
    error_of,
    job_id_of,
    status_of,
    video_id,
)
from bot.http.videos import _ERRORS, MAX_FIELD, new_seed
from storage import JobOptions

router = APIRouter(tags=["original plan"])


@router.post("/generate-video", response_model=SeedJobs, responses=_ERRORS)
async def generate_video(request: Request, ctx: Ctx, key: Key) -> SeedJobs:
    """`{"prompt", "aspect", "model", "seed", "count"}` → the queued jobs' ids."""
    spec = await read_model(request, SeedGenerate, max_part=MAX_FIELD)
    prompt = check_prompt(ctx, spec.prompt)
    first = spec.seed if spec.seed is not None else new_seed()
    seeds = [(first + i) % (SEED_MAX + 1) for i in range(spec.count)]
    jobs, _ = await queue_jobs(
        ctx, key, prompt=prompt, aspect=spec.aspect, model=MODELS[spec.model], seeds=seeds, options=JobOptions()
    )
    return SeedJobs(jobs=[SeedJob(id=video_id(j.id), status=status_of(j)) for j in jobs])


@router.post("/generation-status", response_model=SeedJobs, responses=_ERRORS)
async def generation_status(request: Request, ctx: Ctx, key: Key) -> SeedJobs:
    """`{"ids": [...]}` → each job's status and, once completed, its content URL; others' ids are not_found."""
    spec = await read_model(request, SeedStatusRequest, max_part=MAX_FIELD)
    answers: list[SeedJob] = []
    for vid in spec.ids:
        job_id = job_id_of(vid)
        job = await ctx.store.get_job(job_id) if job_id is not None else None
        if job is None or job.user_id != key.user_id:
            answers.append(SeedJob(id=vid, status="not_found"))
            continue
        status = status_of(job)
        url = str(request.url_for("video_content", vid=vid)) if status == "completed" else None
        answers.append(SeedJob(id=vid, status=status, content_url=url, error=error_of(job)))
    return SeedJobs(jobs=answers)
