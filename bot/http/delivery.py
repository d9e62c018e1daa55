"""Delivery of HTTP API jobs, and a router that sends each finished job to its own side.

An API job has nobody to post to: its client polls `GET /v1/videos/{id}` and fetches `/content`. "Posting" it
only confirms, so the worker marks it delivered (or its failure notified) and the file stays at `job.file_path`
under VEO_DATA_DIR/media until VEO_MEDIA_RETENTION_DAYS.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bot.http.metrics import ApiMetrics
from bot.worker import Delivery, DeliveryFailed
from storage import Job

log = logging.getLogger(__name__)

#: The "message id" recorded for an API job's result or notice: there is no message.
NO_MESSAGE = 0


class ApiDelivery:
    """The worker's Delivery for jobs owned by an API key."""

    def __init__(self, metrics: ApiMetrics | None = None) -> None:
        self.metrics = metrics

    async def post_video(self, job: Job, path: Path) -> int:
        return NO_MESSAGE

    async def post_failure(self, job: Job, text: str) -> int:
        return NO_MESSAGE

    async def find_posted(self, job: Job) -> int | None:
        # Nothing is ever posted, so "posting" again is harmless: report it done.
        return NO_MESSAGE

    async def job_changed(self, job: Job, *, force: bool = False) -> None:
        if self.metrics is not None:
            self.metrics.job_changed(job)

    async def alert_admins(self, text: str) -> None:
        log.warning("admin alert (no Discord to send it to): %s", text)


class RoutingDelivery:
    """Discord jobs to Discord, API jobs to the API. Without Discord (`serve`), Discord jobs wait."""

    def __init__(self, discord: Delivery | None, api: ApiDelivery) -> None:
        self.discord = discord
        self.api = api

    def _discord(self) -> Delivery:
        if self.discord is None:
            raise DeliveryFailed("Discord is not connected in this process", permanent=False)
        return self.discord

    async def post_video(self, job: Job, path: Path) -> int:
        if job.from_api:
            return await self.api.post_video(job, path)
        return await self._discord().post_video(job, path)

    async def post_failure(self, job: Job, text: str) -> int:
        if job.from_api:
            return await self.api.post_failure(job, text)
        return await self._discord().post_failure(job, text)

    async def find_posted(self, job: Job) -> int | None:
        if job.from_api:
            return await self.api.find_posted(job)
        return await self._discord().find_posted(job)

    async def job_changed(self, job: Job, *, force: bool = False) -> None:
        await self.api.job_changed(job, force=force)  # metrics see every job
        if not job.from_api and self.discord is not None:
            await self.discord.job_changed(job, force=force)

    async def alert_admins(self, text: str) -> None:
        if self.discord is not None:
            await self.discord.alert_admins(text)
        else:
            await self.api.alert_admins(text)

    async def close(self) -> None:
        """Close the Discord side's background work (status editors), when it has any."""
        close = getattr(self.discord, "close", None)
        if close is not None:
            await close()
