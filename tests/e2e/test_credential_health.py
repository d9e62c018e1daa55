"""Credential health: dead cookies or a verification wall pause the queue, jobs wait (not fail), users see why,
admins are told once through an hour of simulated polling, and a successful reload resumes the queue."""

from __future__ import annotations

from pathlib import Path

from bot.app import VeoBot
from bot.worker import PAUSE_KEY
from storage import JobState
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings, running_bot
from tests.e2e.test_admin import admin, export, upload
from tests.e2e.test_commands import command, job_of, prompt, videos, wait_state
from tests.fakes._flow_cookies import new_session_cookie
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome

#: An hour of polling at the default VEO_POLL_INTERVAL of 5 s.
HOUR_OF_POLLS = 3600 // 5
ADMIN_CHANNEL_ID = 1100000000000000999


def sign_in_again(emu: FlowEmulator) -> None:
    """The admin signs in to labs.google again: a new, live session cookie (the old one stays dead)."""
    emu._session_dead = False
    emu._session_cookie = new_session_cookie()


async def states(bot: VeoBot, *job_ids: int) -> list[JobState]:
    return [job.state for job_id in job_ids if (job := await bot.store.get_job(job_id)) is not None]


def notices(fd: FakeDiscord) -> list[object]:
    """Failure notices posted in the job channel."""
    return [m for m in fd.messages if m.channel_id == fd.channel_id and "could not be made" in m.content]


async def test_dead_cookies_pause_the_queue_alert_admins_once_and_a_reload_resumes(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, veo_poll_interval=0.0005, flow_max_concurrent=1)
    async with running_bot(settings, fd) as bot:
        running = await job_of(bot, await prompt(fd, "stuck: a red balloon"))
        await wait_state(bot, running, JobState.RUNNING)
        queued = await job_of(bot, await prompt(fd, "a blue balloon", user_id=OTHER_ID))
        assert await states(bot, queued) == [JobState.QUEUED]

        emu.kill_session()
        emu.expire_tokens()
        await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the admin alert")
        assert await bot.store.kv_get(PAUSE_KEY) == "cookies"
        sessions = len(emu.calls("session"))
        statuses = len(emu.calls("status"))

        await bot.worker.wait_ticks(HOUR_OF_POLLS)

        (dm,) = fd.dm_messages(ADMIN_ID)  # told once, not once per job or per poll
        assert "cookies have expired" in dm.content and "/veo-admin reload" in dm.content
        assert dm.allowed_mentions is not None and dm.allowed_mentions["parse"] == []
        assert fd.dm_messages(USER_ID) == [] and fd.dm_messages(OTHER_ID) == []
        # jobs wait: none failed, nothing posted, nothing re-sent, and Flow was not hammered meanwhile
        assert await states(bot, running, queued) == [JobState.RUNNING, JobState.QUEUED]
        assert notices(fd) == [] and videos(fd) == []
        assert len(emu.calls("generate")) == 1
        assert len(emu.calls("session")) - sessions <= 1
        assert len(emu.calls("status")) - statuses <= 1
        paused = [e for e in await bot.store.events() if e.kind == "queue_paused"]
        assert [e.detail for e in paused] == ["cookies"]

        # users see why, in /veo status (the overview and a job's details)
        r = await command(fd, "status", user_id=OTHER_ID)
        assert r.ephemeral and "on hold" in r.content and "session cookies have expired" in r.content
        assert "no estimate while the queue is on hold" in r.content
        # and new requests are refused with the reason
        refused = await prompt(fd, "a green balloon")
        assert refused.ephemeral and "session cookies have expired" in refused.content

        # the old file is no good any more: a reload without a new export is refused and changes nothing
        sign_in_again(emu)
        stale = await admin(fd, "reload")
        assert stale.ephemeral and "Nothing was changed" in stale.content
        assert await bot.store.kv_get(PAUSE_KEY) == "cookies"

        fresh = export(emu, tmp_path, "fresh.json")
        r = await upload(fd, fresh)
        assert r.ephemeral and "Credentials reloaded" in r.content and "has been resumed" in r.content, r.content
        assert await bot.store.kv_get(PAUSE_KEY) is None
        (name,) = emu.generations
        emu.set_outcome(name, Outcome.success())
        await fd.wait_until(lambda: len(videos(fd)) == 2, timeout=15, what="both videos")
        await wait_state(bot, queued, JobState.DELIVERED)
        assert await states(bot, running, queued) == [JobState.DELIVERED, JobState.DELIVERED]
        assert len(fd.dm_messages(ADMIN_ID)) == 1
        assert notices(fd) == []
        kinds = [(e.kind, e.actor_id) for e in await bot.store.events()]
        assert ("queue_resumed", ADMIN_ID) in kinds and ("admin_reload", ADMIN_ID) in kinds


async def test_verification_wall_pauses_and_alerts_the_admin_channel_once(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    fd.add_channel(ADMIN_CHANNEL_ID, name="veo-admins")
    emu.inject("generate", Fault.verification(), times=None)
    settings = make_settings(tmp_path, emu, fd, veo_poll_interval=0.002, veo_admin_channel_id=ADMIN_CHANNEL_ID)
    async with running_bot(settings, fd) as bot:
        first = await job_of(bot, await prompt(fd, "a lighthouse"))
        second = await job_of(bot, await prompt(fd, "a harbour", user_id=OTHER_ID))
        await fd.wait_for_message(lambda m: m.channel_id == ADMIN_CHANNEL_ID, timeout=10)
        assert await bot.store.kv_get(PAUSE_KEY) == "verification"
        await bot.worker.wait_ticks(1)
        generates = len(emu.calls("generate"))
        assert generates in (1, 2)  # one per group already claimed when the wall went up

        await bot.worker.wait_ticks(200)

        alerts = [m for m in fd.messages if m.channel_id == ADMIN_CHANNEL_ID]
        assert len(alerts) == 1 and "verification" in alerts[0].content
        assert alerts[0].allowed_mentions is not None and alerts[0].allowed_mentions["parse"] == []
        assert fd.dm_messages(ADMIN_ID) == []  # the channel is configured: no DMs
        assert await states(bot, first, second) == [JobState.QUEUED, JobState.QUEUED]
        assert len(emu.calls("generate")) == generates  # not retried while paused
        assert notices(fd) == []

        r = await command(fd, "status", {"job": first}, user_id=USER_ID)
        assert r.ephemeral and "queued" in r.content
        overview = await command(fd, "status", user_id=USER_ID)
        assert "human verification" in overview.content

        emu.clear_faults()  # the admin completed the check in a browser
        r = await admin(fd, "reload")
        assert "has been resumed" in r.content
        await fd.wait_until(lambda: len(videos(fd)) == 2, timeout=15, what="both videos")
        assert len([m for m in fd.messages if m.channel_id == ADMIN_CHANNEL_ID]) == 1


async def test_status_message_of_a_waiting_job_says_why(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.inject("generate", Fault.verification(), times=None)
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        status = await prompt(fd, "a windmill at night")
        await fd.wait_until(lambda: fd.dm_messages(ADMIN_ID), timeout=10, what="the admin alert")
        await bot.worker.wait_ticks(5)
        message = fd.all_messages[status.message_id or 0]
        assert "on hold" in message.content and "verification" in message.content


async def test_a_cookie_hold_is_lifted_at_start_when_the_new_file_works(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    settings = make_settings(tmp_path, emu, fd)
    async with running_bot(settings, fd) as bot:
        await bot.worker.pause("cookies")
        assert await bot.worker.paused() == "cookies"
    emu.write_cookie_file(cookie_file)  # the admin replaced the file and restarted the bot
    async with running_bot(settings, fd) as bot:
        await bot.worker.wait_ticks(1)  # the worker starts only after the hold was checked
        assert await bot.worker.paused() is None
        r = await prompt(fd, "after the restart")
        assert not r.ephemeral
        await fd.wait_until(lambda: len(videos(fd)) == 1, timeout=15, what="the video")
