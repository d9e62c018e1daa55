"""The FastAPI application: built by `create_app` from injected resources, no globals.

Routes are thin: parse and validate (bot/http/inputs.py, models.py), call the store or the worker, render.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Request

from bot.backends.base import Backend, GenerationRequest
from bot.backends.errors import BackendError, NotSupported
from bot.http import errors
from bot.http.errors import ApiError
from bot.http.metrics import ApiMetrics
from bot.http.models import is_blank
from bot.messages import pause_text
from bot.settings import Settings
from bot.worker import generation_request
from storage import ActiveLimitReached, Job, JobOptions, QuotaExceeded, Store
from storage.apikeys import ApiKey, ApiKeys

UPLOAD_CAP = 10 * 1024 * 1024
#: The whole request: an upload at the cap plus the form around it.
BODY_CAP = UPLOAD_CAP + 1024 * 1024
#: How long a credential check answers /health before it is asked again.
HEALTH_TTL = 30.0
#: Retry-After for a key at its active-job limit: about one generation.
ACTIVE_RETRY_AFTER = 60


class WorkerLike(Protocol):
    """What the API needs from the worker."""

    def wake(self) -> None: ...

    async def cancel(self, job: Job, *, actor_id: int) -> Job | None: ...

    async def paused(self) -> str | None: ...


@dataclass
class ApiContext:
    """Everything the routes use, injected once."""

    store: Store
    keys: ApiKeys
    worker: WorkerLike
    settings: Settings
    backend: Backend | None
    clock: Callable[[], float]
    metrics: ApiMetrics
    backend_name: str
    credential_check: Callable[[], Awaitable[None]] | None
    discord_connected: Callable[[], bool] | None
    upload_cap: int
    health_ttl: float
    checked_at: float | None = None
    credentials_ok: bool | None = None
    check_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def retention(self) -> float:
        return self.settings.veo_media_retention_days * 86_400

    def poll_after_ms(self) -> str:
        return str(int(min(10_000, max(100, self.settings.veo_poll_interval * 1000))))


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


async def authenticated(request: Request, ctx: Ctx) -> ApiKey:
    """The caller's live key from `Authorization: Bearer <key>`, or 401; the key never reaches a log."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "missing_api_key",
            "Send your key as `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = await ctx.keys.authenticate(token.strip())
    if key is None:
        raise ApiError(
            401,
            "invalid_api_key",
            "The API key is not valid (unknown or revoked).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


Key = Annotated[ApiKey, Depends(authenticated)]


def check_prompt(ctx: ApiContext, prompt: str) -> str:
    if not prompt or is_blank(prompt):
        raise ApiError(400, "invalid_prompt", "prompt is required and must not be empty.")
    if len(prompt) > ctx.settings.veo_max_prompt:
        raise ApiError(400, "invalid_prompt", f"prompt is longer than {ctx.settings.veo_max_prompt} characters.")
    return prompt


def estimate(ctx: ApiContext, request: GenerationRequest) -> tuple[float, str]:
    """Validate against what the backend can do (400 with its sentence) and estimate the cost."""
    if ctx.backend is None:
        return 0.0, "credits"
    try:
        ctx.backend.validate(request)
        cost = ctx.backend.estimate(request)
    except NotSupported as err:
        raise ApiError(400, "unsupported", str(err)) from None
    except BackendError as err:
        raise ApiError(400, "unsupported", type(err).__name__) from None
    return cost.amount, cost.unit


async def queue_jobs(
    ctx: ApiContext,
    key: ApiKey,
    *,
    prompt: str,
    aspect: str,
    model: str,
    seeds: list[int],
    options: JobOptions,
) -> tuple[list[Job], dict[int, int]]:
    """Queue jobs for a key through the store's own quota and limit checks, or refuse and change nothing."""
    paused = await ctx.worker.paused()
    if paused:
        status = 429 if paused == "budget" else 503
        raise ApiError(
            status,
            "queue_on_hold",
            f"The queue is on hold: {pause_text(paused)} Nothing was queued.",
            headers={"Retry-After": "300"},
        )
    request = generation_request(prompt=prompt, aspect=aspect, model=model, seed=seeds[0], options=options)
    cost, unit = estimate(ctx, request)
    try:
        jobs, positions = await ctx.store.create_jobs_with_positions(
            user_id=key.user_id,
            guild_id=None,
            channel_id=0,
            prompt=prompt,
            aspect=aspect,
            model=model,
            seeds=seeds,
            daily_quota=key.daily_quota if key.daily_quota is not None else ctx.settings.veo_daily_quota,
            max_active=ctx.settings.veo_max_active_per_user,
            options=options,
            cost=cost,
            cost_unit=unit,
        )
    except QuotaExceeded as err:
        wait = max(1, math.ceil((err.status.resets_at or ctx.clock() + 3600) - ctx.clock()))
        raise ApiError(
            429,
            "quota_exceeded",
            f"This key has used its {err.status.limit} videos for the last 24 hours.",
            headers={"Retry-After": str(wait)},
        ) from None
    except ActiveLimitReached as err:
        raise ApiError(
            429,
            "too_many_active",
            f"This key already has {err.status.active} videos in progress (the limit is {err.status.max_active}).",
            headers={"Retry-After": str(ACTIVE_RETRY_AFTER)},
        ) from None
    ctx.worker.wake()
    return jobs, positions


def create_app(
    *,
    store: Store,
    worker: WorkerLike,
    settings: Settings,
    backend: Backend | None = None,
    clock: Callable[[], float] = time.time,
    metrics: ApiMetrics | None = None,
    backend_name: str | None = None,
    credential_check: Callable[[], Awaitable[None]] | None = None,
    discord_connected: Callable[[], bool] | None = None,
    upload_cap: int = UPLOAD_CAP,
    body_cap: int | None = None,
    health_ttl: float = HEALTH_TTL,
) -> FastAPI:
    """The HTTP API over the given store, worker and backend.

    `credential_check` proves the backend's credentials for /health when no backend object is given (it uses
    `backend.check()` otherwise); `discord_connected` is None when this process has no Discord side.
    """
    from bot.http import ops, seed, videos

    app = FastAPI(
        title="Veo bot HTTP API",
        version="1",
        summary="Veo 3 videos through the bot's queue, in the shape of OpenAI's video API.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.ctx = ApiContext(
        store=store,
        keys=ApiKeys(store),
        worker=worker,
        settings=settings,
        backend=backend,
        clock=clock,
        metrics=metrics or ApiMetrics(),
        backend_name=backend_name or (backend.name if backend is not None else "flow"),
        credential_check=credential_check,
        discord_connected=discord_connected,
        upload_cap=upload_cap,
        health_ttl=health_ttl,
    )
    errors.install(app)
    app.add_middleware(errors.BodyLimit, limit=body_cap or upload_cap + 1024 * 1024)
    app.include_router(videos.router)
    app.include_router(seed.router)
    app.include_router(ops.router)
    return app
