"""RoutingDelivery: API jobs are confirmed without a post; Discord jobs wait (retryable) when there is no Discord."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.http import ApiDelivery, ApiMetrics, RoutingDelivery
from bot.worker import DeliveryFailed
from storage import Store


async def test_api_jobs_are_confirmed_and_discord_jobs_wait_without_discord(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "veo.sqlite3") as store:
        common = {
            "guild_id": None,
            "channel_id": 0,
            "prompt": "p",
            "aspect": "landscape",
            "model": "fast",
            "seeds": [1],
            "daily_quota": 5,
            "max_active": 5,
        }
        (api_job,) = await store.create_jobs(user_id=-1, **common)  # type: ignore[arg-type]
        (discord_job,) = await store.create_jobs(user_id=42, **common)  # type: ignore[arg-type]
    routing = RoutingDelivery(None, ApiDelivery(ApiMetrics()))
    assert api_job.from_api and not discord_job.from_api
    assert await routing.post_video(api_job, tmp_path / "x.mp4") == 0
    assert await routing.post_failure(api_job, "failed") == 0
    assert await routing.find_posted(api_job) == 0
    await routing.job_changed(discord_job)  # no Discord: nothing to update, no error
    for call in (
        routing.post_video(discord_job, tmp_path / "x.mp4"),
        routing.post_failure(discord_job, "t"),
        routing.find_posted(discord_job),
    ):
        with pytest.raises(DeliveryFailed) as caught:
            await call
        assert caught.value.permanent is False
    await routing.alert_admins("cookies expired")
    await routing.close()
