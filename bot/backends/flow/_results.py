"""Result models the Flow client hands to callers: specs, poll references, submissions, poll results, credits."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from bot.backends.flow.keys import Aspect, Model

Protocol = Literal["operations", "media"]
FailureCategory = Literal["content_filter", "transient", "internal", "unknown"]

PENDING_STATUS = "MEDIA_GENERATION_STATUS_PENDING"


class GenerationSpec(BaseModel):
    """One video to generate: one element of ``requests[]``, one charge."""

    prompt: str = Field(min_length=1)
    aspect: Aspect
    model: Model
    seed: int = Field(ge=0, le=2**31 - 1)
    scene_id: str = Field(min_length=1)


class PollRef(BaseModel):
    """What a status check needs to find one generation again (persist it with the job)."""

    operation_name: str
    scene_id: str | None = None
    media_name: str | None = None
    project_id: str | None = None
    protocol: Protocol = "operations"


class Submitted(BaseModel):
    """Flow accepted one request of a generate call."""

    scene_id: str
    operation_name: str
    media_name: str | None
    protocol: Protocol
    status: str
    project_id: str | None = None

    def poll_ref(self, project_id: str | None = None) -> PollRef:
        """Build the reference a later status check needs."""
        return PollRef(
            operation_name=self.operation_name,
            scene_id=self.scene_id or None,
            media_name=self.media_name,
            project_id=project_id or self.project_id,
            protocol=self.protocol,
        )


class GenerationState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PollResult(BaseModel):
    """The state of one generation as read from a status response."""

    operation_name: str
    state: GenerationState
    raw_status: str
    fife_url: str | None = None
    media_id: str | None = None
    media_name: str | None = None
    failure_reason: str | None = None
    failure_category: FailureCategory | None = None
    remaining_credits: int | None = None


class Credits(BaseModel):
    credits: int
    tier: str
