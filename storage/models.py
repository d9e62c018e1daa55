"""Typed rows and enums of the job store; plain data, no SQL and no Discord."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class StorageError(Exception):
    """The database cannot be used as it is; the message is one line and names the file."""


class InvalidTransition(Exception):
    """A state change that the job state machine does not allow."""


class JobState(StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class Aspect(StrEnum):
    LANDSCAPE = "landscape"
    PORTRAIT = "portrait"


class ModelTier(StrEnum):
    FAST = "fast"
    QUALITY = "quality"
    LITE = "lite"


class JobOptions(BaseModel):
    """A job's creative options beyond prompt, aspect, model and seed (the `options` JSON column).

    Input files are paths under VEO_DATA_DIR, written before the job is queued, so a restart loses nothing.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    duration: int = 8
    resolution: str = "720p"
    audio: bool = True
    negative_prompt: str | None = None
    image: str | None = None
    last_frame: str | None = None
    references: tuple[str, ...] = ()
    #: The clip to extend (our stored MP4 of `extends_job`).
    video: str | None = None
    extends_job: int | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
)
UNFINISHED_STATES: frozenset[JobState] = frozenset(JobState) - TERMINAL_STATES
# Terminal states that did not produce a video: Flow does not charge them, so they leave the quota, and the
# requester is owed a notice (posted exactly once, see storage/store.py).
UNSUCCESSFUL_STATES: frozenset[JobState] = TERMINAL_STATES - {JobState.DELIVERED}
# Jobs holding one of Flow's concurrent generation slots.
IN_FLIGHT_STATES: frozenset[JobState] = frozenset({JobState.SUBMITTING, JobState.RUNNING})

# Every edge of the job state machine; anything not listed is refused with InvalidTransition.
#   queued      -> submitting (claimed by the worker) | cancelled (user/admin) | failed (refused pre-submit)
#   submitting  -> running (Flow accepted it) | queued (the submit failed in a way that is safe to retry: back
#                  in line, attempts kept) | failed | cancelled
#   running     -> downloading (Flow finished) | failed (Flow error, content filter) | timed_out | cancelled
#   downloading -> delivering (file ready, delivery nonce stored) | failed (download failed for good)
#                  | cancelled
#   delivering  -> delivered (post confirmed) | failed (the post can never succeed, e.g. channel gone)
#   delivered, failed, cancelled, timed_out: terminal, no way out.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.SUBMITTING, JobState.CANCELLED, JobState.FAILED}),
    JobState.SUBMITTING: frozenset({JobState.RUNNING, JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.DOWNLOADING, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}),
    JobState.DOWNLOADING: frozenset({JobState.DELIVERING, JobState.FAILED, JobState.CANCELLED}),
    JobState.DELIVERING: frozenset({JobState.DELIVERED, JobState.FAILED}),
    JobState.DELIVERED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
}


class Job(BaseModel):
    """One requested video: a row of `jobs`."""

    model_config = ConfigDict(frozen=True)

    id: int
    user_id: int
    guild_id: int | None
    channel_id: int
    prompt: str
    aspect: Aspect
    model: ModelTier
    model_key: str | None
    seed: int
    group_id: int | None
    state: JobState
    scene_id: str | None
    operation_name: str | None
    media_name: str | None
    project_id: str | None
    protocol: str | None
    attempts: int
    error_kind: str | None
    error_message: str | None
    file_path: str | None
    file_size: int | None
    status_message_id: int | None
    result_message_id: int | None
    delivery_nonce: str | None
    delivering_at: float | None
    notice_nonce: str | None
    notice_at: float | None
    notice_message_id: int | None
    notified_at: float | None
    created_at: float
    submitted_at: float | None
    finished_at: float | None
    updated_at: float
    backend: str | None = None
    backend_ref: str | None = None
    options: JobOptions = JobOptions()
    cost: float = 0.0
    cost_unit: str = "credits"

    @field_validator("options", mode="before")
    @classmethod
    def _options_from_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def from_api(self) -> bool:
        """Jobs of the HTTP API belong to an API key, stored as a negative user id (never a Discord id)."""
        return self.user_id < 0


class QuotaStatus(BaseModel):
    """A user's standing against the rolling daily quota and the active-job limit (None: unlimited)."""

    model_config = ConfigDict(frozen=True)

    used: int
    limit: int | None
    remaining: int | None
    resets_at: float | None  # when the oldest counted job leaves the 24 h window; None when nothing counts
    active: int
    max_active: int | None


class Event(BaseModel):
    """One entry of the append-only audit log (job transitions and admin actions)."""

    model_config = ConfigDict(frozen=True)

    id: int
    at: float
    kind: str
    job_id: int | None
    actor_id: int | None
    detail: str


class QuotaExceeded(Exception):
    """The user's rolling 24 h quota has no room for the request; nothing was created."""

    def __init__(self, status: QuotaStatus, requested: int = 1) -> None:
        super().__init__(f"daily quota used up: {status.used}/{status.limit}, requested {requested}")
        self.status = status
        self.requested = requested


class ActiveLimitReached(Exception):
    """The user already has as many unfinished jobs as allowed; nothing was created."""

    def __init__(self, status: QuotaStatus, requested: int = 1) -> None:
        super().__init__(f"active job limit reached: {status.active}/{status.max_active}, requested {requested}")
        self.status = status
        self.requested = requested


class RecoveryAction(StrEnum):
    """What the bot must do with a job found in `delivering` at start-up (see storage/store.py)."""

    # Discord still deduplicates the stored nonce: post again with it.
    REPOST_SAME_NONCE = "repost_same_nonce"
    # The nonce window has passed: look for the job's marker first, post only if it is absent.
    SEARCH_THEN_POST = "search_then_post"
