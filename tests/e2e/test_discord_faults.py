"""The Discord fault matrix: whatever Discord does to the post or the gateway, each job is delivered exactly once.

Real bot in-process (production wiring, test_delivery.started_bot) against the fake Discord and either backend's
emulator (the `gen` fixture: Flow and Vertex AI); only the link to Flow's project page is Flow's alone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.delivery import DEFAULT_UPLOAD_LIMIT
from bot.messages import failure_text
from storage import JobState
from tests.e2e.backends import FAILED_KIND, Gen
from tests.e2e.conftest import make_settings, make_vertex_settings
from tests.e2e.test_delivery import (
    SlowDiscord,
    advance,
    posts_of,
    posts_per_job,
    prompt,
    slow_discord,
    started_bot,
    wait_jobs,
    wait_settled,
)
from tests.fakes.discord_server import FakeClock
from tests.fakes.flow_emulator import FlowEmulator, Outcome
from tests.fakes.vertex_emulator import VertexEmulator

POST = ("POST", "/channels/{channel_id}/messages")
MIB = 1024 * 1024


@pytest.fixture
async def sfd() -> AsyncIterator[SlowDiscord]:
    async with slow_discord(clock=FakeClock()) as fake:
        yield fake


@dataclass(frozen=True)
class PostFault:
    id: str
    status: int
    times: int = 1
    retry_after: float | None = None
    state: JobState = JobState.DELIVERED
    kind: str | None = None
    #: POSTs Discord received for the job (video tries, link, notice tries).
    posts: tuple[int, int] = (2, 2)
    attachment: bool = True


POST_FAULTS = [
    PostFault("429-retry-after", 429, retry_after=0.3),
    PostFault("429-twice", 429, times=2, retry_after=0.1, posts=(3, 3)),
    PostFault("500-retried-by-discord.py", 500),
    PostFault("503-retried-by-the-worker", 503, times=3, posts=(4, 4)),
    PostFault("413-link-instead", 413, attachment=False),
    # The channel is gone or closed to us: the post can never succeed, and neither can the notice there.
    PostFault("403-missing-permissions", 403, times=2, state=JobState.FAILED, kind="delivery", posts=(2, 2)),
    PostFault("404-unknown-channel", 404, times=2, state=JobState.FAILED, kind="delivery", posts=(2, 2)),
]


@pytest.mark.parametrize("fault", [pytest.param(f, id=f.id) for f in POST_FAULTS])
async def test_post_fault(gen: Gen, sfd: SlowDiscord, fault: PostFault) -> None:
    sfd.inject(*POST, fault.status, times=fault.times, retry_after=fault.retry_after)
    async with started_bot(gen.settings(sfd), sfd) as bot:
        await prompt(sfd, "a kite over the dunes")
        (job,) = await wait_settled(bot, timeout=20)
        assert job.state is fault.state, (job.state, job.error_kind, job.error_message)
        # Settled means settled: later ticks post nothing more.
        await bot.worker.wait_ticks(5)
    assert len(sfd.faults_fired) == fault.times
    low, high = fault.posts
    assert low <= len(sfd.requests_to(*POST)) <= high, len(sfd.requests_to(*POST))
    posts = posts_of(sfd, job.id)
    if fault.state is JobState.DELIVERED:
        (post,) = posts
        assert job.result_message_id == post.id
        assert bool(post.attachments) is fault.attachment
        if not fault.attachment:  # Flow links to the project page; Vertex AI has none: say where the file is
            assert "upload limit" in post.content
            assert ("http" in post.content) is (gen.name == "flow"), post.content
            assert ("media folder" in post.content) is (gen.name == "vertex"), post.content
    else:
        assert posts == []
        assert job.error_kind == fault.kind
        assert job.notified_at is not None and job.notice_message_id is None


async def test_oversize_video_is_posted_as_a_link_with_the_reason(
    tmp_path: Path, emu: FlowEmulator, sfd: SlowDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("big", Outcome.success(video_size=DEFAULT_UPLOAD_LIMIT + MIB))
    async with started_bot(make_settings(tmp_path, emu, sfd), sfd) as bot:
        await prompt(sfd, "a big wave")
        (job,) = await wait_settled(bot)
    (post,) = posts_of(sfd, job.id)
    assert not post.attachments
    assert "11.0 MiB" in post.content and "10 MiB upload limit" in post.content
    project = json.loads(job.backend_ref or "{}")["project_id"]
    assert project and f"/project/{project}" in post.content
    assert len(sfd.requests_to(*POST)) == 1, "no doomed upload first"


async def test_oversize_vertex_video_says_where_it_is_instead_of_a_link(
    tmp_path: Path, vemu: VertexEmulator, sfd: SlowDiscord
) -> None:
    """Vertex AI has no page to link to: the post says the file is too big and where an admin finds it."""
    vemu.video_size = DEFAULT_UPLOAD_LIMIT + MIB
    async with started_bot(make_vertex_settings(tmp_path, vemu, sfd), sfd) as bot:
        await prompt(sfd, "a big wave")
        (job,) = await wait_settled(bot)
    assert job.state is JobState.DELIVERED, (job.state, job.error_kind, job.error_message)
    (post,) = posts_of(sfd, job.id)
    assert not post.attachments
    assert "11.0 MiB" in post.content and "10 MiB upload limit" in post.content and "media folder" in post.content
    assert "http" not in post.content
    assert len(sfd.requests_to(*POST)) == 1, "no doomed upload first"


async def test_boosted_guild_takes_the_bigger_file(gen: Gen, sfd: SlowDiscord) -> None:
    """Tier 2 allows 50 MiB: an 11 MiB video goes up as a file, not a link."""
    sfd.guild_premium_tier = 2
    gen.ends("big", "video", video_size=DEFAULT_UPLOAD_LIMIT + MIB)
    async with started_bot(gen.settings(sfd), sfd) as bot:
        await prompt(sfd, "a big wave")
        (job,) = await wait_settled(bot)
    (post,) = posts_of(sfd, job.id)
    (name,) = gen.refs
    assert len(post.attachments) == 1 and post.attachments[0][1] == gen.video_bytes(name)
    assert len(post.attachments[0][1]) == DEFAULT_UPLOAD_LIMIT + MIB


async def test_gateway_drop_and_resume_mid_job(gen: Gen, sfd: SlowDiscord) -> None:
    gen.set_polls_to_finish(4)
    async with started_bot(gen.settings(sfd), sfd) as bot:
        await prompt(sfd, "a train in the rain")
        await gen.wait_for_polls(1)
        await sfd.drop_connection()
        await sfd.wait_until(lambda: sfd.resume_count >= 1 and sfd.is_ready, timeout=10, what="RESUME")
        await prompt(sfd, "a second train")  # the session works again
        jobs = await wait_settled(bot)
    assert [j.state for j in jobs] == [JobState.DELIVERED, JobState.DELIVERED]
    assert posts_per_job(sfd) == {j.id: 1 for j in jobs}
    assert sfd.identify_count == 1


async def test_invalid_session_mid_job_still_delivers_once(gen: Gen, sfd: SlowDiscord) -> None:
    """INVALID_SESSION: discord.py IDENTIFYs again (after its 5 s pause); posting never depended on the gateway."""
    gen.set_polls_to_finish(4)
    gen.ends("blocked", "failed")
    async with started_bot(gen.settings(sfd), sfd) as bot:
        await prompt(sfd, "a train in the rain")
        await prompt(sfd, "a blocked train")
        await gen.wait_for_polls(1)
        await sfd.invalidate_session()
        jobs = await wait_settled(bot, timeout=15)
        assert sfd.identify_count == 1, "settled while the gateway was still away"
        await sfd.wait_until(lambda: sfd.identify_count == 2 and sfd.is_ready, timeout=10, what="a new session")
        await prompt(sfd, "a third train")
        jobs = await wait_settled(bot)
    assert sorted(j.state for j in jobs) == [JobState.DELIVERED, JobState.DELIVERED, JobState.FAILED]
    assert posts_per_job(sfd) == {j.id: 1 for j in jobs}


async def test_status_and_result_outlive_the_interaction_token(gen: Gen, sfd: SlowDiscord) -> None:
    """A job that takes longer than 15 minutes: the interaction token is dead (401), the bot token is not."""
    gen.ends("stuck", "stuck")
    async with started_bot(gen.settings(sfd), sfd) as bot:
        await prompt(sfd, "stuck: a glacier calving")
        (job,) = await wait_jobs(bot, lambda js: js[0].state is JobState.RUNNING)
        interaction = sfd.interactions[-1]
        advance(sfd, 16 * 60)
        # The webhook routes an interaction token opens are closed now.
        assert sfd.clock() - interaction.created_at > sfd.interaction_token_ttl
        (name,) = gen.refs
        gen.finish(name)
        (job,) = await wait_settled(bot)
    assert job.state is JobState.DELIVERED
    assert len(posts_of(sfd, job.id)) == 1
    webhook_calls = [r for r in sfd.request_records if r.path.startswith("/webhooks/")]
    assert webhook_calls == [], "nothing after the answer goes through the interaction token"
    edits = [p for mid, p in sfd.edits if mid == job.status_message_id]
    assert edits and "delivered" in edits[-1]["content"]


async def test_failure_notice_survives_discord_errors_and_is_posted_once(gen: Gen, sfd: SlowDiscord) -> None:
    """A notice Discord refused for a while (503) is retried with backoff, and posted once."""
    gen.ends("blocked", "failed")
    sfd.inject(*POST, 503, times=3)
    async with started_bot(gen.settings(sfd), sfd) as bot:
        await prompt(sfd, "a blocked road")
        (job,) = await wait_settled(bot)
    assert job.state is JobState.FAILED and job.error_kind == FAILED_KIND
    (notice,) = posts_of(sfd, job.id)
    assert failure_text(FAILED_KIND, job.error_message, backend=gen.name) in notice.content
    assert len(sfd.requests_to(*POST)) == 4
    assert job.notice_message_id == notice.id
