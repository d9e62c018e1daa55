"""Issue 11.4 and 15.1 end to end: the real bot against the Flow emulator.

A migrated account holds the queue with reason "migrated" and one admin alert that points to Vertex AI; jobs
wait, nothing hammers Flow. An outage of Flow's sign-in service is an outage (never "cookies expired"), and any
credentials hold lifts by itself as soon as a refresh works again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.__main__ import backend_resources
from bot.app import VeoBot
from bot.backends.flow.errors import SessionUnreachable
from bot.logs import Redactor
from bot.settings import Settings
from bot.worker import PAUSE_KEY
from storage import JobState, Store
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings
from tests.e2e.test_admin import upload
from tests.e2e.test_commands import command, job_of, prompt, videos, wait_state
from tests.fakes.discord_server import FakeDiscord, run_bot
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome

MOVED = "moved to flow.google.com"
HOUR_OF_POLLS = 3600 // 5


@contextlib.asynccontextmanager
async def quick_bot(settings: Settings, fd: FakeDiscord) -> AsyncIterator[VeoBot]:
    """The production wiring (`backend_resources`), with the Flow backoff shortened to keep tests fast."""
    settings.ensure_data_dir()
    store = await Store.open(settings.database_path)
    try:
        async with backend_resources(settings, Redactor(), store=store, backoff=(0.02, 0.05)) as res:
            bot = VeoBot(settings=settings, http_session=res.http, store=store, resources=res)
            async with run_bot(bot, fd):
                yield bot
    finally:
        await store.close()


async def until_hold(bot: VeoBot, reason: str | None, ticks: int = 2000) -> None:
    """Let worker rounds pass (events, not sleeps) until the queue's hold is `reason`."""
    for _ in range(ticks):
        if await bot.store.kv_get(PAUSE_KEY) == reason:
            return
        await bot.worker.wait_ticks(1)
    raise AssertionError(f"the hold never became {reason!r} (it is {await bot.store.kv_get(PAUSE_KEY)!r})")


async def states(bot: VeoBot, *job_ids: int) -> list[JobState]:
    return [job.state for job_id in job_ids if (job := await bot.store.get_job(job_id)) is not None]


async def test_migrated_account_holds_the_queue_with_one_alert_and_jobs_wait(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, veo_poll_interval=0.0005, flow_max_concurrent=1)
    async with quick_bot(settings, fd) as bot:
        running = await job_of(bot, await prompt(fd, "stuck: a paper boat"))
        await wait_state(bot, running, JobState.RUNNING)
        queued = await job_of(bot, await prompt(fd, "a paper plane", user_id=OTHER_ID))

        emu.migrate_account()  # Google moves the account; the next status poll meets a 401
        emu.expire_tokens()
        await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the admin alert")
        assert await bot.store.kv_get(PAUSE_KEY) == "migrated"
        calls = {route: len(emu.calls(route)) for route in ("session", "tools", "status", "generate", "project")}
        assert calls["tools"] == 1  # asked once whether the account migrated

        await bot.worker.wait_ticks(HOUR_OF_POLLS)

        (dm,) = fd.dm_messages(ADMIN_ID)  # told once, through an hour of polling
        assert MOVED in dm.content and "Vertex AI" in dm.content and "GOOGLE_CLOUD_PROJECT" in dm.content
        assert "jobs stay queued" in dm.content
        assert await states(bot, running, queued) == [JobState.RUNNING, JobState.QUEUED]  # waiting, not failed
        assert [m for m in fd.messages if "could not be made" in m.content] == [] and videos(fd) == []
        # never retried: not one more request to labs.google or aisandbox-pa
        assert {route: len(emu.calls(route)) for route in calls} == calls
        assert [e.detail for e in await bot.store.events() if e.kind == "queue_paused"] == ["migrated"]

        overview = await command(fd, "status", user_id=OTHER_ID)
        assert "on hold" in overview.content and MOVED in overview.content
        refused = await prompt(fd, "a paper crane")
        assert refused.ephemeral and MOVED in refused.content


async def test_account_migrated_before_start_then_a_working_export_lifts_the_hold(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.migrate_account()
    settings = make_settings(tmp_path, emu, fd)
    async with quick_bot(settings, fd) as bot:
        await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the admin alert")
        assert await bot.store.kv_get(PAUSE_KEY) == "migrated"
        assert bot.credentials.account_migrated and not bot.credentials.cookies_expired

        emu.migrate_account(False)  # another team account that still gets a token
        await upload(fd, _export(emu, tmp_path))  # /veo-admin reload with the new export
        await until_hold(bot, None)
        r = await prompt(fd, "a kite over the dunes")
        assert not r.ephemeral
        await fd.wait_until(lambda: len(videos(fd)) == 1, timeout=15, what="the video")
        assert len(fd.dm_messages(ADMIN_ID)) == 1


def _export(emu: FlowEmulator, tmp_path: Path) -> bytes:
    path = tmp_path / "fresh.json"
    emu.write_cookie_file(path)
    return path.read_bytes()


async def test_a_cookie_hold_lifts_when_the_sign_in_service_comes_back_after_an_outage(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    """The hold from before a restart cannot be checked while labs.google is down; it lifts when it is up."""
    settings = make_settings(tmp_path, emu, fd)
    async with quick_bot(settings, fd) as bot:
        await bot.worker.pause("cookies")
    emu.write_cookie_file(cookie_file)  # the admin exported fresh cookies and restarted the bot...
    emu.inject("session", Fault.server_error(503), times=6)  # ...while Flow's sign-in service was down
    async with quick_bot(settings, fd) as bot:
        await bot.worker.wait_ticks(1)
        await until_hold(bot, None)
        assert len(emu.calls("session")) >= 7  # it took a few retries, and none of them needed an admin
        r = await prompt(fd, "after the outage")
        assert not r.ephemeral
        await fd.wait_until(lambda: len(videos(fd)) == 1, timeout=15, what="the video")


async def test_an_outage_reported_by_the_refresher_is_worded_as_one_and_lifts_on_recovery(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    """What the refresher hands the bot when the session endpoint stays down past the token's expiry
    (tests/test_session_outage.py shows it does): not a cookie hold, and it lifts when a refresh works."""
    async with quick_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        cog: Any = bot.get_cog("Jobs")  # the extension's own module object: isinstance would not match
        assert cog is not None
        await cog._credentials_failed(SessionUnreachable("Flow's session endpoint answered 503"))
        assert await bot.store.kv_get(PAUSE_KEY) == "flow_outage"
        (dm,) = await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the admin alert")
        assert "outage" in dm.content and "resumes by itself" in dm.content
        assert "cookies have expired" not in dm.content and "reload" not in dm.content
        overview = await command(fd, "status", user_id=USER_ID)
        assert "not answering" in overview.content

        await cog._credentials_recovered()
        assert await bot.store.kv_get(PAUSE_KEY) is None
        await bot.worker.pause("verification")  # a working session proves nothing about Flow's human check
        await cog._credentials_recovered()
        assert await bot.store.kv_get(PAUSE_KEY) == "verification"
