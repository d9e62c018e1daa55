"""The official `openai` SDK (`client.videos`) against the running API: create, poll, content, list, delete, remix."""

from __future__ import annotations

import hashlib

import pytest
from openai import NotFoundError

from storage import JobState
from tests.http.conftest import Api


async def poll_until_done(api: Api, client, video):  # type: ignore[no-untyped-def]
    """Retrieve after each worker tick, as a client would after `openai-poll-after-ms`; returns (video, statuses)."""
    seen = [video.status]
    while video.status in ("queued", "in_progress"):
        await api.worker.wait_ticks(1)
        video = await client.videos.retrieve(video.id)
        if video.status != seen[-1]:
            seen.append(video.status)
    return video, seen


async def test_create_poll_and_download_the_exact_bytes_flow_served(api: Api, key: str) -> None:
    client = api.client(key)
    video = await client.videos.create(prompt="a red balloon over the sea", model="fast", seconds="8", size="1280x720")
    print(f"create -> {video.id} status={video.status} model={video.model} size={video.size} seconds={video.seconds}")
    assert video.object == "video" and video.status == "queued" and video.progress == 0
    assert video.model == "fast" and video.size == "1280x720" and video.seconds == "8"

    raw = await client.videos.with_raw_response.retrieve(video.id)
    assert raw.headers.get("openai-poll-after-ms") == "100"  # VEO_POLL_INTERVAL 0.05 s, floored at 100 ms

    video, statuses = await poll_until_done(api, client, video)
    print(f"polls -> {' -> '.join(statuses)}")
    assert statuses[-1] == "completed" and video.progress == 100 and video.error is None
    assert video.completed_at is not None and video.expires_at == video.completed_at + 7 * 86_400
    done = await client.videos.with_raw_response.retrieve(video.id)
    assert "openai-poll-after-ms" not in done.headers

    content = await client.videos.download_content(video.id)
    data = content.read()
    (generation,) = api.emu.generations
    served = api.emu.video_bytes(generation)
    print(
        f"content -> {len(data)} bytes sha256={hashlib.sha256(data).hexdigest()[:16]} (emulator served {len(served)})"
    )
    assert data == served
    job = await api.store.get_job(int(video.id.removeprefix("video_")))
    assert job is not None and job.state is JobState.DELIVERED and job.user_id < 0 and job.channel_id == 0


async def test_list_newest_first_with_paging_delete_cancels_and_remix_keeps_the_inputs(api: Api, key: str) -> None:
    client = api.client(key)
    first = await client.videos.create(prompt="a lighthouse", size="720x1280", seconds="8", model="quality")
    second = await client.videos.create(prompt="a harbour at dusk")

    page = await client.videos.list(limit=1)
    assert [v.id for v in page.data] == [second.id] and page.has_more
    listed = [v.id async for v in client.videos.list(limit=1)]  # the SDK follows `after` across pages
    assert listed == [second.id, first.id]

    deleted = await client.videos.delete(second.id)
    assert deleted.deleted and deleted.id == second.id and deleted.object == "video.deleted"
    cancelled = await client.videos.retrieve(second.id)
    assert cancelled.status == "failed" and cancelled.error is not None and cancelled.error.code == "cancelled"

    remix = await client.videos.remix(first.id, prompt="a lighthouse in a storm")
    assert remix.id != first.id and remix.prompt == "a lighthouse in a storm"
    assert (remix.size, remix.seconds, remix.model) == ("720x1280", "8", "quality")
    src = await api.store.get_job(int(first.id.removeprefix("video_")))
    new = await api.store.get_job(int(remix.id.removeprefix("video_")))
    assert src is not None and new is not None and new.seed == src.seed and new.options == src.options

    finished, _ = await poll_until_done(api, client, remix)
    assert finished.status == "completed"
    job = await api.store.get_job(int(remix.id.removeprefix("video_")))
    assert job is not None and job.file_path is not None
    await client.videos.delete(remix.id)  # a finished video: its file goes
    assert not (await api.store.get_job(job.id)).file_path  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        await client.videos.download_content(remix.id)
