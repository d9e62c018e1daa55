"""The one small interface every video backend implements, and the neutral values that cross it.

A backend imports neither discord nor the store: it gets requests, gives back opaque references, answers polls
and writes finished videos to files. The worker persists each job's backend name and reference, so a job
finishes on the backend that took it even if the configured backend changed across a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from bot.backends.errors import BackendError

BackendName = Literal["flow", "vertex"]
Aspect = Literal["landscape", "portrait"]
Model = Literal["fast", "quality", "lite"]
Resolution = Literal["720p", "1080p", "4k"]
Duration = Literal[4, 6, 8]
FailureKind = Literal["content_filter", "blocked", "transient", "internal", "unknown"]


class Mode(StrEnum):
    """What kind of generation a request is (shown to users, used by validation tables)."""

    TEXT = "text"
    IMAGE = "image"
    FRAMES = "frames"
    REFERENCES = "references"
    EXTEND = "extend"


class GenerationRequest(BaseModel):
    """One video to make: one job, one charge. Input files are paths under VEO_DATA_DIR, kept with the job."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    prompt: str = Field(min_length=1)
    aspect: Aspect = "landscape"
    model: Model = "fast"
    seed: int = Field(ge=0, le=2**32 - 1)
    duration: Duration = 8
    resolution: Resolution = "720p"
    audio: bool = True
    negative_prompt: str | None = None
    image: Path | None = None  # first frame
    last_frame: Path | None = None
    references: tuple[Path, ...] = ()
    video: Path | None = None  # the clip to extend

    @property
    def mode(self) -> Mode:
        if self.video is not None:
            return Mode.EXTEND
        if self.references:
            return Mode.REFERENCES
        if self.last_frame is not None:
            return Mode.FRAMES
        if self.image is not None:
            return Mode.IMAGE
        return Mode.TEXT


class Submission(BaseModel):
    """A backend took one request. ``ref`` is all it needs to find the generation again after a restart."""

    ref: str = Field(min_length=1)


class GenerationState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Outcome(BaseModel):
    """One generation's state, as one poll saw it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ref: str
    state: GenerationState
    #: Why it failed, in our own categories (set when ``state`` is FAILED).
    failure: FailureKind | None = None
    #: A filter kind or support code: safe to show and to store, never upstream prose.
    detail: str | None = None
    #: What ``fetch`` needs (a URL, inline bytes): the backend's own business, never persisted.
    handle: Any = Field(default=None, exclude=True, repr=False)


class Cost(BaseModel):
    """An estimate: USD on Vertex AI, credits on Flow."""

    model_config = ConfigDict(frozen=True)

    amount: float
    unit: Literal["usd", "credits"]


class Balance(BaseModel):
    """What an admin sees under ``/veo-admin credits`` from the backend itself (Flow: credits and tier)."""

    credits: int | None = None
    tier: str | None = None


@runtime_checkable
class Backend(Protocol):
    """What the worker, the cogs and the HTTP API need from a video backend."""

    name: BackendName
    #: Generations this backend may have in flight at once; the rest wait in our queue.
    max_concurrent: int

    def validate(self, request: GenerationRequest) -> None:
        """Raise NotSupported with one sentence saying what would work, before anything is queued."""
        ...

    def estimate(self, request: GenerationRequest) -> Cost: ...

    def can_extend(self) -> bool: ...

    async def submit(self, requests: Sequence[GenerationRequest]) -> list[Submission | BackendError]:
        """Start these generations: one entry per request, in order.

        Raising means nothing in the call was accepted as far as the error says (``Unavailable.maybe_accepted``
        says otherwise); a per-request error in the list applies to that request only.
        """
        ...

    async def poll(self, refs: Sequence[str]) -> list[Outcome]:
        """Check running generations; a ref not due for a check this round may be left out of the answer."""
        ...

    async def fetch(self, ref: str, outcome: Outcome | None, dest: Path) -> int:
        """Write the finished video to ``dest`` (atomically, checked to be an MP4); returns its size.

        ``outcome`` is the poll answer that saw it finish, or None after a restart (the backend asks again).
        """
        ...

    async def check(self) -> None:
        """A call that costs nothing and proves the credentials work; raises BackendError otherwise."""
        ...

    def web_link(self, ref: str) -> str | None:
        """Where a person can see this generation outside Discord (a video too large to upload), if anywhere."""
        ...

    async def balance(self) -> Balance | None: ...
