"""Veo on Vertex AI through the real bot: each emulator fault or ending, and what users, admins and the queue see.

The bot runs in process with production wiring (`running_bot`) against the fake Discord and the Vertex emulator,
through the real google-genai SDK. Time passes on the worker's injected monotonic clock, never by sleeping.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import VeoBot
from bot.backends.base import Backend
from bot.worker import PAUSE_KEY, month_of
from bot.worker._types import HOLD_PROBE_INTERVAL
from storage import JobState
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings, make_vertex_settings, running_bot
from tests.e2e.test_admin import admin
from tests.e2e.test_commands import job_of, prompt, videos, wait_state
from tests.fakes._vertex_faults import BLOCKED_MESSAGE, BLOCKED_SUPPORT_CODE, FILTERED_REASON, FILTERED_SUPPORT_CODE
from tests.fakes.discord_server import FakeDiscord, PostedMessage
from tests.fakes.flow_emulator import FlowEmulator
from tests.fakes.flow_emulator import Outcome as FlowOutcome
from tests.fakes.vertex_emulator import Ending, Fault, VertexEmulator

ADMIN_CHANNEL_ID = 1100000000000000999
FAST_720P_8S = 0.8  # USD: $0.10/s with audio


class Clock:
    """The worker's monotonic clock, pushed forward by the test (holds are probed every HOLD_PROBE_INTERVAL)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def with_clock(bot: VeoBot) -> Clock:
    clock = Clock()
    bot.worker.clock = clock
    return clock


def notices(fd: FakeDiscord) -> list[PostedMessage]:
    return [m for m in fd.messages if m.channel_id == fd.channel_id and "could not be made" in m.content]


async def failed_with(bot: VeoBot, fd: FakeDiscord, text: str, **options: Any) -> tuple[Any, PostedMessage]:
    """Queue one prompt, wait for its failure notice; the job and the notice."""
    job_id = await job_of(bot, await prompt(fd, text, **options))
    await wait_state(bot, job_id, JobState.FAILED, JobState.TIMED_OUT)
    await fd.wait_until(lambda: notices(fd), timeout=10, what="the failure notice")
    await bot.worker.drain()
    job = await bot.store.get_job(job_id)
    (notice,) = notices(fd)
    return job, notice


def assert_no_google_prose(text: str) -> None:
    for prose in (FILTERED_REASON, BLOCKED_MESSAGE, "Veo could not generate", "violate", "Vertex AI's usage"):
        assert prose not in text, text


def test_vertex_backend_implements_the_backend_interface() -> None:
    """Every method of the neutral interface (an oversize post asked Vertex for `web_link` and crashed)."""
    from bot.backends.vertex import VertexBackend

    backend = VertexBackend(project="p", api_key="k")
    assert isinstance(backend, Backend)


# --- credentials: 401 / 403 -----------------------------------------------------------------------------------


async def test_refused_key_holds_the_queue_alerts_once_and_the_hold_lifts_by_itself(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    settings = make_vertex_settings(tmp_path, vemu, fd, veo_poll_interval=0.002)
    real_key = vemu.api_key
    vemu.api_key = "AIza-rotated-by-someone-else"  # the bot's key is no longer accepted: every call gets 401
    async with running_bot(settings, fd) as bot:
        clock = with_clock(bot)
        first = await job_of(bot, await prompt(fd, "a lighthouse"))
        second = await job_of(bot, await prompt(fd, "a harbour", user_id=OTHER_ID))
        await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the admin alert")
        assert await bot.store.kv_get(PAUSE_KEY) == "vertex_auth"
        submits, reads = vemu.count("submit"), vemu.count("model")
        assert submits in (1, 2)  # the second of one round is not sent after the first was refused

        await bot.worker.wait_ticks(200)  # well short of a probe: nothing is retried meanwhile
        assert (vemu.count("submit"), vemu.count("model")) == (submits, reads)
        clock.advance(HOLD_PROBE_INTERVAL + 1)  # a probe while the key is still refused: the hold stays
        await bot.worker.wait_ticks(3)
        assert vemu.count("model") > reads and await bot.store.kv_get(PAUSE_KEY) == "vertex_auth"

        (dm,) = fd.dm_messages(ADMIN_ID)  # told once, in words that say what to fix
        assert "GOOGLE_API_KEY" in dm.content and "resumes by itself" in dm.content
        assert real_key not in dm.content and vemu.api_key not in dm.content
        assert [j.state for j in await bot.store.user_jobs(USER_ID)] == [JobState.QUEUED]
        assert [j.state for j in await bot.store.user_jobs(OTHER_ID)] == [JobState.QUEUED]
        assert notices(fd) == [] and videos(fd) == []
        refused = await prompt(fd, "a third one")
        assert refused.ephemeral and "Google Cloud refused" in refused.content

        vemu.api_key = real_key  # the admin fixed the key
        clock.advance(HOLD_PROBE_INTERVAL + 1)
        await fd.wait_until(lambda: len(videos(fd)) == 2, timeout=15, what="both videos")
        await wait_state(bot, first, JobState.DELIVERED)
        await wait_state(bot, second, JobState.DELIVERED)
        resumed = [e.detail for e in await bot.store.events() if e.kind == "queue_resumed"]
    assert resumed == ["vertex_auth"]
    assert len(fd.dm_messages(ADMIN_ID)) == 1
    assert len(vemu.operations) == 2


async def test_api_disabled_403_alerts_the_admin_channel_once_with_the_fix(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    fd.add_channel(ADMIN_CHANNEL_ID, name="veo-admins")
    for route in ("submit", "model"):
        vemu.inject(route, Fault.forbidden("SERVICE_DISABLED"), times=None)
    settings = make_vertex_settings(tmp_path, vemu, fd, veo_admin_channel_id=ADMIN_CHANNEL_ID)
    async with running_bot(settings, fd) as bot:
        clock = with_clock(bot)
        job_id = await job_of(bot, await prompt(fd, "a quiet forest"))
        await fd.wait_for_message(lambda m: m.channel_id == ADMIN_CHANNEL_ID, timeout=10)
        for _ in range(3):  # three probes, all refused
            clock.advance(HOLD_PROBE_INTERVAL + 1)
            await bot.worker.wait_ticks(2)
        alerts = [m for m in fd.messages if m.channel_id == ADMIN_CHANNEL_ID]
        assert len(alerts) == 1 and "enable aiplatform.googleapis.com" in alerts[0].content
        assert "has not been used in project" not in alerts[0].content  # Google's prose stays out
        assert fd.dm_messages(ADMIN_ID) == []
        assert (await bot.store.get_job(job_id)).state is JobState.QUEUED  # type: ignore[union-attr]
        vemu.clear_faults()  # the admin enabled the API
        clock.advance(HOLD_PROBE_INTERVAL + 1)
        await wait_state(bot, job_id, JobState.DELIVERED)
    assert len([m for m in fd.messages if m.channel_id == ADMIN_CHANNEL_ID]) == 1


# --- models, rate limits, ambiguous submits --------------------------------------------------------------------


async def test_unknown_model_fails_the_job_and_tells_the_admins_once_which_id(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    retired = "veo-3.0-generate-preview"
    settings = make_vertex_settings(tmp_path, vemu, fd, vertex_models={"quality": retired})
    async with running_bot(settings, fd) as bot:
        for user in (USER_ID, OTHER_ID):
            await prompt(fd, "a glacier", user_id=user, model="quality")
        await fd.wait_until(lambda: len(notices(fd)) == 2, timeout=10, what="two failure notices")
        delivered = await job_of(bot, await prompt(fd, "a fast glacier"))  # other models still work
        await wait_state(bot, delivered, JobState.DELIVERED)
        await bot.worker.drain()
        failed = [j for j in await bot.store.jobs_in_state(JobState.FAILED)]
    assert [j.error_kind for j in failed] == ["model_not_allowed", "model_not_allowed"]
    for notice in notices(fd):
        assert "not available to the team's Google Cloud project" in notice.content
    (dm,) = fd.dm_messages(ADMIN_ID)
    assert retired in dm.content and "VERTEX_MODELS" in dm.content
    assert await bot.store.kv_get(PAUSE_KEY) is None


async def test_rate_limited_submit_waits_and_is_sent_again_never_failed(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    vemu.inject("submit", Fault.rate_limited("0.01s"), times=6)  # more than the backend's own retries
    async with running_bot(make_vertex_settings(tmp_path, vemu, fd), fd) as bot:
        job_id = await job_of(bot, await prompt(fd, "a busy street"))
        await wait_state(bot, job_id, JobState.DELIVERED, JobState.FAILED)
        job = await bot.store.get_job(job_id)
    assert job is not None and job.state is JobState.DELIVERED, (job.state, job.error_kind)
    assert vemu.count("submit") == 7 and len(vemu.operations) == 1
    assert notices(fd) == [] and len(videos(fd)) == 1


AMBIGUOUS = [
    pytest.param(Fault.server_error(500, accept=True), id="500-after-accepting"),
    pytest.param(Fault.server_error(503, accept=True), id="503-after-accepting"),
    pytest.param(Fault.drop(accept=True), id="connection-dropped-after-accepting"),
    pytest.param(Fault.hang(accept=True), id="hung-submit"),
]


@pytest.mark.parametrize("fault", AMBIGUOUS)
async def test_submit_that_may_have_been_accepted_fails_unconfirmed_and_is_never_resent(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord, fault: Fault
) -> None:
    vemu.inject("submit", fault)
    settings = make_vertex_settings(tmp_path, vemu, fd, vertex_http_timeout=0.5)
    async with running_bot(settings, fd) as bot:
        job, notice = await failed_with(bot, fd, "a storm at sea")
        await bot.worker.wait_ticks(20)
    assert job.state is JobState.FAILED and job.error_kind == "unconfirmed"
    assert "did not confirm" in notice.content and "not sent again" in notice.content
    assert vemu.count("submit") == 1 and len(vemu.operations) == 1


# --- endings ------------------------------------------------------------------------------------------------------


async def test_filtered_video_is_reported_as_not_charged_and_costs_nothing(
    vbot: VeoBot, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    vemu.ending_for("filtered", Ending.filtered())
    job, notice = await failed_with(vbot, fd, "a filtered scene")
    assert job.error_kind == "content_filter" and job.cost == FAST_720P_8S
    assert "Google's safety filter removed this video; you were not charged" in notice.content
    assert FILTERED_SUPPORT_CODE in notice.content
    assert_no_google_prose(notice.content)
    assert await vbot.store.spend("usd", month_of(time.time())[1], submitted_only=True) == 0.0


@pytest.mark.parametrize("where", ["operation-error-code-3", "synchronous-400"])
async def test_prompt_blocked_by_the_usage_guidelines(
    vbot: VeoBot, vemu: VertexEmulator, fd: FakeDiscord, where: str
) -> None:
    if where == "synchronous-400":
        vemu.inject("submit", Fault.usage_guidelines())
    else:
        vemu.ending_for("blocked", Ending.blocked())
    job, notice = await failed_with(vbot, fd, "a blocked scene")
    assert job.error_kind == "blocked"
    assert "The prompt was blocked by Google's usage guidelines" in notice.content
    assert BLOCKED_SUPPORT_CODE in notice.content
    assert_no_google_prose(notice.content)
    assert vemu.count("submit") == 1


async def test_bytes_that_are_not_an_mp4_end_in_a_download_notice_after_retries(
    vbot: VeoBot, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    vemu.ending_for("html", Ending.not_mp4())
    job, notice = await failed_with(vbot, fd, "an html page")
    assert job.error_kind == "download" and "could not be downloaded" in notice.content
    (op,) = vemu.operations.values()
    assert op.polls >= 5, "the operation is read again for each download attempt"
    assert videos(fd) == [] and vemu.count("submit") == 1


async def test_operation_that_never_finishes_times_out_and_the_user_is_told(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    vemu.ending_for("forever", Ending.never())
    async with running_bot(make_vertex_settings(tmp_path, vemu, fd, veo_job_timeout=60), fd) as bot:
        clock = with_clock(bot)
        job_id = await job_of(bot, await prompt(fd, "a forever loop"))
        await wait_state(bot, job_id, JobState.RUNNING)
        await vemu.wait_for_calls("poll", 2)
        assert (await bot.store.get_job(job_id)).state is JobState.RUNNING  # type: ignore[union-attr]
        clock.advance(61)
        await wait_state(bot, job_id, JobState.TIMED_OUT)
        await fd.wait_until(lambda: notices(fd), timeout=10, what="the timeout notice")
    (notice,) = notices(fd)
    assert "did not finish this video in time" in notice.content
    assert vemu.count("submit") == 1


# --- budget and spend ---------------------------------------------------------------------------------------------


async def test_budget_holds_the_second_job_alerts_once_and_an_admin_resume_lets_it_through(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    settings = make_vertex_settings(tmp_path, vemu, fd, veo_monthly_budget_usd=1.0)
    async with running_bot(settings, fd) as bot:
        clock = with_clock(bot)
        first = await job_of(bot, await prompt(fd, "the first sunrise"))
        await wait_state(bot, first, JobState.DELIVERED)
        second = await job_of(bot, await prompt(fd, "the second sunrise", user_id=OTHER_ID))
        await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the budget alert")
        assert await bot.store.kv_get(PAUSE_KEY) == "budget"
        for _ in range(3):  # hours pass within the month: the hold neither lifts nor alerts again
            clock.advance(HOLD_PROBE_INTERVAL + 1)
            await bot.worker.wait_ticks(3)
        assert await bot.store.kv_get(PAUSE_KEY) == "budget"
        assert (await bot.store.get_job(second)).state is JobState.QUEUED  # type: ignore[union-attr]
        (dm,) = fd.dm_messages(ADMIN_ID)
        assert "VEO_MONTHLY_BUDGET_USD" in dm.content and "/veo-admin resume" in dm.content

        credits = await admin(fd, "credits")
        assert credits.ephemeral
        assert "Estimated spend today: $0.80" in credits.content, credits.content
        assert "this month: $0.80 of $1.00 (80%)" in credits.content
        assert "on hold (budget)" in credits.content

        refused = await admin(fd, "resume", user_id=USER_ID)  # not an admin: nothing changes
        assert refused.ephemeral and await bot.store.kv_get(PAUSE_KEY) == "budget"
        resumed = await admin(fd, "resume")
        assert "resumed" in resumed.content.lower()
        await wait_state(bot, second, JobState.DELIVERED)
        credits = await admin(fd, "credits")
        assert "this month: $1.60 of $1.00 (160%)" in credits.content
    assert len(fd.dm_messages(ADMIN_ID)) == 1 and vemu.count("submit") == 2


# --- switching backends across a restart ----------------------------------------------------------------------------


async def test_a_running_flow_job_finishes_on_flow_after_a_switch_to_vertex(
    tmp_path: Path, emu: FlowEmulator, vemu: VertexEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("slow", FlowOutcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        on_flow = await job_of(bot, await prompt(fd, "a slow flow river"))
        await wait_state(bot, on_flow, JobState.RUNNING)
    (name,) = emu.generations
    emu.set_outcome(name, FlowOutcome.success())
    both = make_vertex_settings(
        tmp_path, vemu, fd, flow_cookie_file=cookie_file, flow_api_base=emu.api_base, flow_labs_base=emu.labs_base
    )
    async with running_bot(both, fd) as bot:
        on_vertex = await job_of(bot, await prompt(fd, "a vertex river", user_id=OTHER_ID))
        await wait_state(bot, on_flow, JobState.DELIVERED)
        await wait_state(bot, on_vertex, JobState.DELIVERED)
        jobs = {j.id: j for j in await bot.store.jobs_in_state(JobState.DELIVERED)}
    assert jobs[on_flow].backend == "flow" and jobs[on_vertex].backend == "vertex"
    assert len(emu.calls("generate")) == 1 and vemu.count("submit") == 1
    posted = {m.attachments[0][1] for m in videos(fd)}
    assert posted == {emu.video_bytes(name), vemu.video_bytes(jobs[on_vertex].backend_ref or "")}


async def test_budget_hold_lifts_by_itself_in_the_next_month(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    # The worker's calendar jumps a month while the store's stays put: a long timeout keeps the job from expiring.
    settings = make_vertex_settings(tmp_path, vemu, fd, veo_monthly_budget_usd=1.0, veo_job_timeout=60 * 86400)
    async with running_bot(settings, fd) as bot:
        clock = with_clock(bot)
        first = await job_of(bot, await prompt(fd, "the first sunset"))
        await wait_state(bot, first, JobState.DELIVERED)
        second = await job_of(bot, await prompt(fd, "the second sunset", user_id=OTHER_ID))
        await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the budget alert")
        now = time.time()
        bot.worker.wall = lambda: now + 32 * 86400  # the calendar moves on to the next month
        clock.advance(HOLD_PROBE_INTERVAL + 1)
        await wait_state(bot, second, JobState.DELIVERED)
        resumed = [(e.detail, e.actor_id) for e in await bot.store.events() if e.kind == "queue_resumed"]
    assert resumed == [("budget", None)]
    assert len(fd.dm_messages(ADMIN_ID)) == 1


async def test_admin_pause_on_vertex_speaks_of_vertex_not_flow(vbot: VeoBot, fd: FakeDiscord) -> None:
    paused = await admin(fd, "pause")
    assert paused.ephemeral and "Queue paused" in paused.content
    assert "Flow" not in paused.content and "Google Cloud" in paused.content, paused.content
    (cmd,) = [c for c in fd.commands[str(fd.guild_id)] if c["name"] == "veo-admin"]
    descriptions = {o["name"]: o["description"] for o in cmd["options"]}
    assert "Flow" not in descriptions["pause"], descriptions["pause"]
