"""Request and response bodies of the HTTP API (OpenAI's video API shape), and how they map onto our jobs."""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage import Job, JobState

VIDEO_PREFIX = "video_"
SEED_MAX = 2**32 - 1
MAX_NEGATIVE = 500

#: Accepted `model` values: our tiers and the Vertex AI ids that name them.
MODELS: dict[str, str] = {
    "fast": "fast",
    "quality": "quality",
    "lite": "lite",
    "veo-3.1-fast-generate-001": "fast",
    "veo-3.1-generate-001": "quality",
    "veo-3.1-lite-generate-001": "lite",
}
#: Accepted `size` values: (aspect, resolution).
SIZES: dict[str, tuple[str, str]] = {
    "1280x720": ("landscape", "720p"),
    "720x1280": ("portrait", "720p"),
    "1920x1080": ("landscape", "1080p"),
    "1080x1920": ("portrait", "1080p"),
    "3840x2160": ("landscape", "4k"),
    "2160x3840": ("portrait", "4k"),
}
SECONDS: dict[str, int] = {"4": 4, "6": 6, "8": 8}
#: Characters that render as nothing (as the Discord side counts them): a prompt made only of them is empty.
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    return all(c.isspace() or c in _BLANK_LETTERS or unicodedata.category(c) in _BLANK_CATEGORIES for c in text)


def size_of(aspect: str, resolution: str) -> str:
    return next(s for s, v in SIZES.items() if v == (aspect, resolution))


def video_id(job_id: int) -> str:
    return f"{VIDEO_PREFIX}{job_id}"


def job_id_of(value: str) -> int | None:
    """Our job id from a video id; None for anything we never issued (answered as a plain 404)."""
    digits = value.removeprefix(VIDEO_PREFIX)
    if value == digits or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class CreateVideo(_Input):
    """`POST /v1/videos` (JSON, or the same fields as multipart form parts plus `input_reference`)."""

    prompt: str = Field(description="What the video shows.")
    model: str = Field("fast", description="fast, quality, lite, or a Vertex AI model id naming one of them.")
    seconds: str = Field("8", description='"4", "6" or "8".')
    size: str = Field("1280x720", description=", ".join(SIZES))
    negative_prompt: str | None = Field(None, max_length=MAX_NEGATIVE, description="What to avoid.")
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    audio: bool = True

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"unknown model; use one of {', '.join(MODELS)}")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value not in SIZES:
            raise ValueError(f"unknown size; use one of {', '.join(SIZES)}")
        return value

    @field_validator("seconds")
    @classmethod
    def _secs(cls, value: str) -> str:
        if value not in SECONDS:
            raise ValueError('seconds is "4", "6" or "8"')
        return value


class RemixVideo(_Input):
    """`POST /v1/videos/{id}/remix`: the same inputs as the source video, a new prompt."""

    prompt: str


class VideoRef(_Input):
    id: str


class ExtendVideo(_Input):
    """`POST /v1/videos/extensions`: continue a completed video (where the backend can extend)."""

    prompt: str
    video: VideoRef
    seconds: str | None = None


class SeedGenerate(_Input):
    """The original plan's `POST /generate-video`."""

    prompt: str
    aspect: Literal["landscape", "portrait"] = "landscape"
    model: str = "fast"
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    count: int = Field(1, ge=1, le=4)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return CreateVideo._model(value)


class SeedStatusRequest(_Input):
    ids: list[str] = Field(min_length=1, max_length=100)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Video(BaseModel):
    """The video object of OpenAI's API, plus `queue_position`."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None
    expires_at: int | None
    size: str
    seconds: str
    prompt: str
    error: ErrorBody | None
    remixed_from_video_id: str | None = None
    queue_position: int | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


class SeedJob(BaseModel):
    id: str
    status: str
    content_url: str | None = None
    error: ErrorBody | None = None


class SeedJobs(BaseModel):
    jobs: list[SeedJob]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    backend: str
    database: Literal["ok", "failed"]
    credentials: Literal["ok", "failed", "unknown"]
    queue: dict[str, int | str | None]
    discord: Literal["connected", "disconnected", "not configured"]


_RUNNING = {JobState.SUBMITTING, JobState.RUNNING, JobState.DOWNLOADING, JobState.DELIVERING}
_PROGRESS = {
    JobState.QUEUED: 0,
    JobState.SUBMITTING: 5,
    JobState.RUNNING: 50,
    JobState.DOWNLOADING: 90,
    JobState.DELIVERING: 95,
}
#: Failure codes clients can branch on; the message says it in words.
_FAILURE = {
    "cancelled": ("cancelled", "The video was cancelled."),
    "timed_out": ("timeout", "The video took too long and was given up."),
    "content_filter": ("content_policy_violation", "The prompt or its result was refused by the safety rules."),
    "blocked": ("content_policy_violation", "The prompt or its result was refused by the safety rules."),
}


def status_of(job: Job) -> Literal["queued", "in_progress", "completed", "failed"]:
    if job.state is JobState.QUEUED:
        return "queued"
    if job.state in _RUNNING:
        return "in_progress"
    return "completed" if job.state is JobState.DELIVERED else "failed"


def error_of(job: Job) -> ErrorBody | None:
    if job.state not in (JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT):
        return None
    kind = "timed_out" if job.state is JobState.TIMED_OUT else job.error_kind or "unknown"
    code, message = _FAILURE.get(kind, ("generation_failed", "The video could not be made."))
    return ErrorBody(code=code, message=message)


def render_video(job: Job, *, retention: float, position: int | None = None) -> Video:
    status = status_of(job)
    completed = int(job.finished_at) if status == "completed" and job.finished_at else None
    expires = int(job.finished_at + retention) if completed is not None and job.finished_at else None
    return Video(
        id=video_id(job.id),
        model=job.model.value,
        status=status,
        progress=100 if status == "completed" else _PROGRESS.get(job.state, 0),
        created_at=int(job.created_at),
        completed_at=completed,
        expires_at=expires,
        size=size_of(job.aspect.value, job.options.resolution),
        seconds=str(job.options.duration),
        prompt=job.prompt,
        error=error_of(job),
        queue_position=position,
    )
