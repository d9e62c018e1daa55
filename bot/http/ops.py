"""`GET /health` (no auth) and `GET /metrics` (Prometheus text)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from bot.http.app import ApiContext, Ctx
from bot.http.models import Health
from storage import JobState

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
#: Pause reasons that mean the backend's credentials are not usable.
_DEAD = frozenset({"cookies", "verification", "migrated", "flow_outage", "vertex_auth"})
CHECK_TIMEOUT = 10.0


async def credentials_ok(ctx: ApiContext) -> bool | None:
    """Whether the backend's credentials work, checked at most every `health_ttl` seconds; None: unknown."""
    check = ctx.backend.check if ctx.backend is not None else ctx.credential_check
    if check is None:
        return None
    async with ctx.check_lock:
        now = ctx.clock()
        if ctx.checked_at is not None and now - ctx.checked_at < ctx.health_ttl:
            return ctx.credentials_ok
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT)
            ok = True
        except Exception as err:  # any failure is "not usable"; the type alone is logged, never its text
            log.warning("health: backend credential check failed (%s)", type(err).__name__)
            ok = False
        ctx.checked_at, ctx.credentials_ok = ctx.clock(), ok
        ctx.metrics.set_credentials(ctx.backend_name, ok)
        return ok


async def database_ok(ctx: ApiContext) -> bool:
    try:
        await asyncio.wait_for(ctx.keys.probe_writable(), CHECK_TIMEOUT)
        return True
    except Exception as err:
        log.warning("health: database not writable (%s)", type(err).__name__)
        return False


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(ctx: Ctx) -> JSONResponse:
    """Database writable, backend credentials usable, Discord connected (when configured), queue depth."""
    db = await database_ok(ctx)
    creds = await credentials_ok(ctx)
    paused = await ctx.worker.paused() if db else None
    if paused in _DEAD:
        creds = False
        ctx.metrics.set_credentials(ctx.backend_name, False)
    stats = await ctx.store.stats() if db else {}
    discord = (
        "not configured"
        if ctx.discord_connected is None
        else ("connected" if ctx.discord_connected() else "disconnected")
    )
    degraded = not db or creds is False or discord == "disconnected"
    body = Health(
        status="degraded" if degraded else "ok",
        backend=ctx.backend_name,
        database="ok" if db else "failed",
        credentials="unknown" if creds is None else ("ok" if creds else "failed"),
        queue={
            "queued": stats.get(JobState.QUEUED.value, 0),
            "running": sum(stats.get(s.value, 0) for s in (JobState.SUBMITTING, JobState.RUNNING)),
            "paused": paused,
        },
        discord=discord,  # type: ignore[arg-type]
    )
    return JSONResponse(body.model_dump(), status_code=503 if degraded else 200)


@router.get("/metrics", response_class=Response)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus text: jobs by state, generations, generation seconds, queue depth, credentials, spend."""
    paused = await ctx.worker.paused()
    text = await ctx.metrics.render(ctx.store, paused=paused is not None, now=ctx.clock())
    return Response(text, media_type=CONTENT_TYPE_LATEST)
