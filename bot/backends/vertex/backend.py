"""Veo on Vertex AI through google-genai's async client: one operation per job, polled one by one.

Why one operation per job rather than one with ``number_of_videos``: each video of a command is its own job with
its own result, Retry, quota and refund, and the safety filter removes individual samples; one operation per job
keeps that mapping exact, and concurrent submits cost no more wall time (see bench/vertex_submit.py).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from google import genai
from google.genai import types

from bot.backends.base import (
    BackendName,
    Balance,
    Cost,
    GenerationRequest,
    GenerationState,
    Outcome,
    Submission,
)
from bot.backends.errors import (
    BackendError,
    BadRequest,
    BadResponse,
    CredentialsDead,
    ModelUnavailable,
    NotSupported,
    RateLimited,
    Unavailable,
)
from bot.backends.vertex import _prices, _validate
from bot.backends.vertex._errors import map_exception, support_code
from bot.backends.vertex._files import InlineVideoOperation, write_mp4
from bot.backends.vertex._models import resolve_models
from bot.backends.vertex._schedule import PollSchedule

log = logging.getLogger(__name__)

_ASPECT: Final = {"landscape": "16:9", "portrait": "9:16"}
#: Operation error codes (google.rpc.Code) and what they mean for a job.
_TRANSIENT_CODES: Final = frozenset({4, 8, 14})  # DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE
_BLOCKED, _INTERNAL = 3, 13  # INVALID_ARGUMENT (the usage guidelines), INTERNAL


class _GcsOutput:
    """Marks a finished operation whose video went to Cloud Storage instead of coming back inline."""


_GCS_OUTPUT: Final = _GcsOutput()


class VertexBackend:
    """The Backend protocol on Vertex AI. Plain values in, so it can be built and tested without settings."""

    name: BackendName = "vertex"

    def __init__(
        self,
        *,
        project: str,
        location: str = "us-central1",
        api_key: str | None = None,
        credentials: Any = None,
        base_url: str | None = None,
        api_version: str | None = None,
        models: Mapping[str, str] | None = None,
        max_concurrent: int = 10,
        request_concurrency: int = 4,
        http_timeout: float = 180.0,
        first_poll_after: float = 30.0,
        poll_interval: float = 10.0,
        max_poll_interval: float = 30.0,
        poll_growth: float = 1.5,
        rate_limit_retries: int = 3,
        backoff_base: float = 2.0,
        backoff_cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if api_key and credentials is not None:
            raise ValueError("give either an API key or service-account credentials, not both")
        if not project:
            raise ValueError("GOOGLE_CLOUD_PROJECT is required for Vertex AI")
        self.project = project
        self.location = location
        self.models = resolve_models(models)
        self.max_concurrent = max_concurrent
        self._auth = "API key" if api_key else "service account" if credentials is not None else "default credentials"
        self._slots = asyncio.Semaphore(max(request_concurrency, 1))
        self._rate_limit_retries = rate_limit_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._schedule = PollSchedule(
            clock,
            first_after=first_poll_after,
            interval=poll_interval,
            max_interval=max_poll_interval,
            growth=poll_growth,
        )
        # Retries off in the SDK: its implicit retry after a dropped connection would re-send a paid submit.
        http_options = types.HttpOptions(
            base_url=base_url,
            api_version=api_version,
            timeout=int(http_timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(
            vertexai=True,
            project=project,
            location=location,
            api_key=api_key or None,
            credentials=credentials,
            http_options=http_options,
        )

    def __repr__(self) -> str:
        return f"VertexBackend(project={self.project!r}, location={self.location!r}, auth={self._auth!r})"

    # ----------------------------------------------------------------- what it can do

    def validate(self, request: GenerationRequest) -> None:
        _validate.validate(request)

    def estimate(self, request: GenerationRequest) -> Cost:
        return _prices.estimate(request)

    def can_extend(self) -> bool:
        return True

    def web_link(self, ref: str) -> str | None:
        """Vertex AI has no page a person could open for one operation: an oversize video stays in our media."""
        return None

    async def balance(self) -> Balance | None:
        """Vertex has no balance to read; spend is estimated by us from the price table."""
        return None

    def describe(self) -> dict[str, Any]:
        """What ``python -m bot check`` prints: never a key."""
        return {
            "project": self.project,
            "location": self.location,
            "auth": self._auth,
            "models": dict(self.models),
        }

    async def check(self) -> None:
        """Read every configured model (costs nothing): proves credentials, API, billing and model access."""
        for model_id in dict.fromkeys(self.models.values()):
            try:
                async with self._slots:
                    await self._client.aio.models.get(model=model_id)
            except Exception as err:
                raise map_exception(err, model_id=model_id, submit=False) from None

    async def close(self) -> None:
        await self._client.aio.aclose()

    # ----------------------------------------------------------------- submit

    async def submit(self, requests: Sequence[GenerationRequest]) -> list[Submission | BackendError]:
        """One operation per request, sent concurrently; after a refusal that applies to all, the rest are not sent."""
        stops: dict[str | None, BackendError] = {}

        async def one(request: GenerationRequest) -> Submission | BackendError:
            try:
                self.validate(request)
            except NotSupported as err:
                return err
            model_id = self.models[request.model]
            async with self._slots:
                stop = stops.get(None) or stops.get(model_id)
                if stop is not None:
                    return stop
                try:
                    return await self._submit_one(request, model_id)
                except (CredentialsDead, RateLimited) as err:
                    stops[None] = err
                    return err
                except ModelUnavailable as err:
                    stops[model_id] = err
                    return err
                except BackendError as err:
                    return err

        return list(await asyncio.gather(*(one(request) for request in requests)))

    async def _submit_one(self, request: GenerationRequest, model_id: str) -> Submission:
        source, config = await asyncio.to_thread(_build, request)
        attempt = 0
        while True:
            try:
                op = await self._client.aio.models.generate_videos(model=model_id, source=source, config=config)
                break
            except Exception as err:
                mapped = map_exception(err, model_id=model_id, submit=True)
            # A 429 proves the submit was not accepted: the only case we may send it again.
            if not isinstance(mapped, RateLimited):
                raise mapped
            delay = self._backoff(attempt, mapped.retry_after)
            if attempt >= self._rate_limit_retries:
                raise RateLimited(str(mapped), retry_after=delay)
            attempt += 1
            log.info("Vertex AI rate limit on job %s; retry %d in %.1f s", request.job_id, attempt, delay)
            await self._sleep(delay)
        name = op.name or ""
        if "/operations/" not in name:
            raise BadResponse("Vertex AI accepted the request but returned no operation name.", field_path="name")
        self._schedule.submitted(name)
        return Submission(ref=name)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """RetryInfo's delay when given, else capped exponential backoff with full jitter."""
        if retry_after is not None:
            return min(retry_after, self._backoff_cap)
        return self._rng.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt))

    # ----------------------------------------------------------------- poll

    async def poll(self, refs: Sequence[str]) -> list[Outcome]:
        """Poll the due refs, a bounded number at once; failed polls of one ref leave it out of the answer."""
        due = self._schedule.due(refs)
        results = await asyncio.gather(*(self._poll_one(ref) for ref in due), return_exceptions=True)
        outcomes: list[Outcome] = []
        fatal: BackendError | None = None
        for ref, result in zip(due, results, strict=True):
            if isinstance(result, Outcome):
                outcomes.append(result)
            elif isinstance(result, Unavailable):
                self._schedule.polled(ref)
            elif isinstance(result, CredentialsDead | RateLimited | BadResponse):
                self._schedule.forget(ref)  # due again at once when the caller comes back
                fatal = fatal or result
            elif isinstance(result, BaseException):
                raise result
        if fatal is not None:
            raise fatal
        return outcomes

    async def _poll_one(self, ref: str) -> Outcome:
        try:
            async with self._slots:
                op = await self._client.aio.operations.get(InlineVideoOperation(name=ref))
        except Exception as err:
            mapped = map_exception(err, model_id=_model_of(ref), submit=False)
            if isinstance(mapped, ModelUnavailable | BadRequest):
                # Vertex no longer knows this operation (or refuses its name): asking again will not help.
                self._schedule.forget(ref)
                detail = "not_found" if isinstance(mapped, ModelUnavailable) else "bad_request"
                return Outcome(ref=ref, state=GenerationState.FAILED, failure="unknown", detail=detail)
            raise mapped from None
        return self._outcome(ref, op)

    def _outcome(self, ref: str, op: types.GenerateVideosOperation) -> Outcome:
        if not op.done:
            self._schedule.polled(ref)
            return Outcome(ref=ref, state=GenerationState.RUNNING)
        self._schedule.forget(ref)
        if op.error:
            return _failed_operation(ref, op.error)
        response = op.response
        for generated in (response.generated_videos or []) if response else []:
            video = generated.video
            if video is not None and video.video_bytes:
                return Outcome(ref=ref, state=GenerationState.SUCCEEDED, handle=video.video_bytes)
            if video is not None and video.uri:
                return Outcome(ref=ref, state=GenerationState.SUCCEEDED, handle=_GCS_OUTPUT)
        if response is not None and response.rai_media_filtered_count:
            code = support_code(" ".join(response.rai_media_filtered_reasons or []))
            return Outcome(ref=ref, state=GenerationState.FAILED, failure="content_filter", detail=code)
        return Outcome(ref=ref, state=GenerationState.FAILED, failure="unknown", detail="no_video")

    # ----------------------------------------------------------------- fetch

    async def fetch(self, ref: str, outcome: Outcome | None, dest: Path) -> int:
        """Write the inline video; after a restart (no outcome) the operation is read again for its bytes."""
        if outcome is None or outcome.handle is None:
            try:
                async with self._slots:
                    op = await self._client.aio.operations.get(InlineVideoOperation(name=ref))
            except Exception as err:
                raise map_exception(err, model_id=_model_of(ref), submit=False) from None
            outcome = self._outcome(ref, op)
            if outcome.state is not GenerationState.SUCCEEDED:
                raise BadResponse(f"Vertex AI has no finished video for this operation ({outcome.state.value}).")
        if outcome.handle is _GCS_OUTPUT:
            raise BadResponse(
                "Vertex AI stored the video in Cloud Storage instead of returning it; the bot reads inline videos "
                "only, so no output storage URI may be configured."
            )
        if not isinstance(outcome.handle, bytes):
            raise BadResponse("The poll answer carries no video bytes.")
        return await asyncio.to_thread(write_mp4, outcome.handle, dest)


def _failed_operation(ref: str, error: Mapping[str, Any]) -> Outcome:
    code = error.get("code")
    code = code if isinstance(code, int) else None
    found = support_code(error.get("message") if isinstance(error.get("message"), str) else None)
    if code == _BLOCKED:
        failure = "blocked"
    elif code in _TRANSIENT_CODES:
        failure = "transient"
    elif code == _INTERNAL:
        failure = "internal"
    else:
        failure = "unknown"
    detail = found or (f"code {code}" if code is not None else None)
    return Outcome(ref=ref, state=GenerationState.FAILED, failure=failure, detail=detail)


def _model_of(ref: str) -> str:
    """The model id inside an operation name (``.../models/MODEL/operations/ID``)."""
    head = ref.rpartition("/operations/")[0]
    return head.rpartition("/models/")[2] or head


def _image(path: Path) -> types.Image:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return types.Image(image_bytes=_read(path), mime_type=mime)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise BadRequest(f"The input file {path.name} cannot be read.") from None


def _build(request: GenerationRequest) -> tuple[types.GenerateVideosSource, types.GenerateVideosConfig]:
    """The SDK call's arguments (blocking: reads the input files, so run it in a thread)."""
    source = types.GenerateVideosSource(
        prompt=request.prompt,
        image=_image(request.image) if request.image is not None else None,
        video=(
            types.Video(video_bytes=_read(request.video), mime_type="video/mp4") if request.video is not None else None
        ),
    )
    references = [
        types.VideoGenerationReferenceImage(image=_image(path), reference_type="ASSET") for path in request.references
    ]
    config = types.GenerateVideosConfig(
        number_of_videos=1,
        duration_seconds=request.duration,
        resolution=request.resolution,
        aspect_ratio=_ASPECT[request.aspect],
        seed=request.seed,
        generate_audio=request.audio,
        negative_prompt=request.negative_prompt or None,
        # allow_adult is the one value valid for image inputs and in every region (EU/UK/CH/MENA included).
        person_generation="allow_adult",
        last_frame=_image(request.last_frame) if request.last_frame is not None else None,
        reference_images=references or None,
    )
    return source, config
