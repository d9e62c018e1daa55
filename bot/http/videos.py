"""`/v1/videos`: OpenAI's video API over our jobs (create, retrieve, list, content, delete, remix, extend)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from bot.http.app import ApiContext, Ctx, Key, check_prompt, queue_jobs
from bot.http.errors import ApiError, not_found
from bot.http.inputs import Body, discard, parse, read_body, read_model, save_image
from bot.http.models import (
    SECONDS,
    SIZES,
    CreateVideo,
    ErrorResponse,
    ExtendVideo,
    RemixVideo,
    Video,
    VideoDeleted,
    VideoList,
    job_id_of,
    render_video,
    status_of,
    video_id,
)
from storage import Job, JobOptions, JobState
from storage.apikeys import ApiKey

router = APIRouter(tags=["videos"])
#: Non-file form parts (a prompt, a size); files have their own cap.
MAX_FIELD = 64 * 1024

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 429)}


def _both_encodings(model: type[BaseModel], file_field: str | None) -> dict[str, Any]:
    """Document a body accepted as JSON or multipart (parsed by hand, so FastAPI cannot infer it)."""
    schema = model.model_json_schema()
    form = {**schema, "properties": dict(schema.get("properties", {}))}
    if file_field:
        form["properties"][file_field] = {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP"}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}},
        }
    }


async def owned(ctx: ApiContext, key: ApiKey, vid: str) -> Job:
    """The key's job with that video id; 404 alike for a missing job and another key's."""
    job_id = job_id_of(vid)
    job = await ctx.store.get_job(job_id) if job_id is not None else None
    if job is None or job.user_id != key.user_id:
        raise not_found()
    return job


async def answer(ctx: ApiContext, response: Response, job: Job, position: int | None = None) -> Video:
    """The video object; running jobs carry `openai-poll-after-ms` so SDK polling follows our pace."""
    video = render_video(job, retention=ctx.retention, position=position)
    if video.status in ("queued", "in_progress"):
        response.headers["openai-poll-after-ms"] = ctx.poll_after_ms()
    return video


def new_seed() -> int:
    return secrets.randbelow(2**31)


@router.post(
    "/v1/videos", response_model=Video, responses=_ERRORS, openapi_extra=_both_encodings(CreateVideo, "input_reference")
)
async def create_video(request: Request, response: Response, ctx: Ctx, key: Key) -> Video:
    """Queue a video. JSON, or multipart with `input_reference` (the first frame) as an image file."""
    body = await read_body(request, max_part=MAX_FIELD)
    saved: Path | None = None
    try:
        spec = parse(CreateVideo, body.fields)
        prompt = check_prompt(ctx, spec.prompt)
        upload = _only_file(body, "input_reference")
        if upload is not None:
            saved = await save_image(upload, cap=ctx.upload_cap, data_dir=ctx.settings.veo_data_dir)
        aspect, resolution = SIZES[spec.size]
        options = JobOptions(
            duration=SECONDS[spec.seconds],
            resolution=resolution,
            audio=spec.audio,
            negative_prompt=spec.negative_prompt or None,
            image=str(saved) if saved else None,
        )
        jobs, positions = await queue_jobs(
            ctx,
            key,
            prompt=prompt,
            aspect=aspect,
            model=_tier(spec.model),
            seeds=[spec.seed if spec.seed is not None else new_seed()],
            options=options,
        )
    except BaseException:
        await discard(saved)
        raise
    finally:
        await body.close()
    return await answer(ctx, response, jobs[0], positions.get(jobs[0].id))


def _tier(model: str) -> str:
    from bot.http.models import MODELS

    return MODELS[model]


def _only_file(body: Body, name: str) -> Any:
    extra = sorted(set(body.files) - {name})
    if extra:
        raise ApiError(400, "invalid_request", f"Unexpected file field {extra[0]!r}.")
    if name in body.fields:
        raise ApiError(400, "invalid_image", f"{name} must be an image file, sent as a multipart file part.")
    return body.files.get(name)


@router.get("/v1/videos", response_model=VideoList, responses=_ERRORS)
async def list_videos(
    ctx: Ctx,
    key: Key,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
    order: Annotated[str, Query(pattern="^desc$")] = "desc",
) -> VideoList:
    """The key's videos, newest first."""
    cursor = job_id_of(after) if after else None
    if after and cursor is None:
        raise ApiError(400, "invalid_request", "after: not a video id.")
    jobs = await ctx.keys.jobs(key, limit=limit + 1, after=cursor)
    page, more = jobs[:limit], len(jobs) > limit
    positions = await ctx.store.queue_positions() if any(j.state is JobState.QUEUED for j in page) else {}
    data = [render_video(j, retention=ctx.retention, position=positions.get(j.id)) for j in page]
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.get("/v1/videos/{vid}", response_model=Video, responses=_ERRORS)
async def retrieve_video(vid: str, response: Response, ctx: Ctx, key: Key) -> Video:
    job = await owned(ctx, key, vid)
    position = await ctx.store.queue_position(job.id) if job.state is JobState.QUEUED else None
    return await answer(ctx, response, job, position)


@router.get(
    "/v1/videos/{vid}/content",
    response_class=FileResponse,
    responses={**_ERRORS, 200: {"content": {"video/mp4": {}}, "description": "The MP4, streamed."}},
)
async def video_content(vid: str, ctx: Ctx, key: Key, variant: str = "video") -> FileResponse:
    """The MP4, streamed from disk; 409 until the video is completed."""
    job = await owned(ctx, key, vid)
    if variant != "video":
        raise ApiError(400, "invalid_request", "Only the `video` variant is available.")
    status = status_of(job)
    if status != "completed":
        code = "video_failed" if status == "failed" else "not_ready"
        text = "The video failed; it has no content." if status == "failed" else "The video is not finished yet."
        raise ApiError(409, code, text)
    path = Path(job.file_path) if job.file_path else None
    if path is None or not await asyncio.to_thread(path.is_file):
        raise ApiError(404, "expired", "The video's file was deleted (expired or deleted through the API).")
    headers = {"Cache-Control": "private, max-age=3600"}
    return FileResponse(path, media_type="video/mp4", filename=f"{video_id(job.id)}.mp4", headers=headers)


@router.delete("/v1/videos/{vid}", response_model=VideoDeleted, responses=_ERRORS)
async def delete_video(vid: str, ctx: Ctx, key: Key) -> VideoDeleted:
    """Cancel a queued or running video; for a finished one, delete its file."""
    job = await owned(ctx, key, vid)
    if not job.terminal:
        if await ctx.worker.cancel(job, actor_id=key.user_id) is None:
            fresh = await ctx.store.get_job(job.id)
            if fresh is None or not fresh.terminal:
                raise ApiError(409, "not_cancellable", "The video is being finished; delete it once completed.")
            job = fresh
        else:
            return VideoDeleted(id=vid, deleted=True)
    if job.file_path:
        await discard(Path(job.file_path))
        await ctx.store.update_job(job.id, file_path=None)
    return VideoDeleted(id=vid, deleted=True)


@router.post(
    "/v1/videos/{vid}/remix", response_model=Video, responses=_ERRORS, openapi_extra=_both_encodings(RemixVideo, None)
)
async def remix_video(vid: str, request: Request, response: Response, ctx: Ctx, key: Key) -> Video:
    """A new video with the source's inputs (size, length, model, seed, image) and a new prompt."""
    source = await owned(ctx, key, vid)
    prompt = check_prompt(ctx, (await read_model(request, RemixVideo, max_part=MAX_FIELD)).prompt)
    options = source.options.model_copy(update={"video": None, "extends_job": None})
    jobs, positions = await queue_jobs(
        ctx,
        key,
        prompt=prompt,
        aspect=source.aspect.value,
        model=source.model.value,
        seeds=[source.seed],
        options=options,
    )
    return await answer(ctx, response, jobs[0], positions.get(jobs[0].id))


@router.post(
    "/v1/videos/extensions", response_model=Video, responses=_ERRORS, openapi_extra=_both_encodings(ExtendVideo, None)
)
async def extend_video(request: Request, response: Response, ctx: Ctx, key: Key) -> Video:
    """Continue a completed video by about 7 s, where the backend can extend."""
    spec = await read_model(request, ExtendVideo, max_part=MAX_FIELD)
    prompt = check_prompt(ctx, spec.prompt)
    source = await owned(ctx, key, spec.video.id)
    if ctx.backend is None or not ctx.backend.can_extend():
        raise ApiError(400, "unsupported", "This backend cannot extend videos.")
    path = Path(source.file_path) if source.file_path else None
    if status_of(source) != "completed" or path is None or not await asyncio.to_thread(path.is_file):
        raise ApiError(409, "not_ready", "Only a completed video whose file is still kept can be extended.")
    options = source.options.model_copy(update={"video": str(path), "extends_job": source.id, "image": None})
    jobs, positions = await queue_jobs(
        ctx,
        key,
        prompt=prompt,
        aspect=source.aspect.value,
        model=source.model.value,
        seeds=[new_seed()],
        options=options,
    )
    return await answer(ctx, response, jobs[0], positions.get(jobs[0].id))
