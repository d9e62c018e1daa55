"""`/veo prompt`, `/veo status`, `/veo cancel`, live progress and the error handler, end to end on the fakes.

Shared helpers (`Reply`, `reply`, `snapshot`, `status_message_id`) are imported by the other e2e files.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import VeoBot
from bot.worker import PAUSE_KEY
from storage import JobState, QuotaStatus
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings, running_bot
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.flow_emulator import Fault, FlowEmulator, Outcome

EPHEMERAL = 64


@dataclass
class Reply:
    """What the user sees as the answer to one interaction."""

    kind: int  # 4: immediate message, 5: deferred then followup, 8: autocomplete choices
    content: str
    flags: int
    allowed_mentions: dict[str, Any] | None
    message_id: int | None
    choices: list[dict[str, Any]] | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


async def reply(fd: FakeDiscord, inter: Interaction, timeout: float = 10) -> Reply:
    """The interaction's visible answer: the type-4 message, or the first followup after a defer."""
    cb = await fd.wait_callback(inter, timeout)
    data = cb.get("data") or {}
    if cb["type"] == 8:
        return Reply(8, "", 0, None, None, choices=data.get("choices"))
    if cb["type"] == 5:
        await fd.wait_until(lambda: inter.followups, timeout, "the followup after a defer")
        msg = inter.followups[0]
        flags = int(msg.payload.get("flags") or 0) | int(data.get("flags") or 0)
        return Reply(5, msg.content, flags, msg.allowed_mentions, inter.original.id if inter.original else None)
    assert cb["type"] == 4, cb
    original = inter.original
    return Reply(
        4,
        data.get("content") or "",
        int(data.get("flags") or 0),
        data.get("allowed_mentions"),
        original.id if original else None,
    )


async def command(
    fd: FakeDiscord, sub: str, options: dict[str, Any] | None = None, *, name: str = "veo", **kw: Any
) -> Reply:
    inter = await fd.send_command(name, sub, options or {}, **kw)
    return await reply(fd, inter)


async def snapshot(bot: VeoBot) -> tuple[Any, ...]:
    """Everything a refusal must leave alone: job counts, the event log, the pause flag."""
    events = [(e.kind, e.job_id, e.actor_id, e.detail) for e in await bot.store.events(limit=10_000)]
    return await bot.store.stats(), events, await bot.store.kv_get(PAUSE_KEY)


async def quota(bot: VeoBot, user_id: int = USER_ID) -> QuotaStatus:
    s = bot.settings
    return await bot.store.quota_status(user_id, daily_quota=s.veo_daily_quota, max_active=s.veo_max_active_per_user)


async def prompt(fd: FakeDiscord, text: str, user_id: int = USER_ID, **options: Any) -> Reply:
    return await command(fd, "prompt", {"text": text, **options}, user_id=user_id)


def videos(fd: FakeDiscord) -> list[Any]:
    return [m for m in fd.messages if m.attachments]


async def job_of(bot: VeoBot, status: Reply) -> int:
    """The job id announced by a status message."""
    jobs = [j for j in await bot.store.jobs_in_state(*JobState) if j.status_message_id == status.message_id]
    if not jobs:
        match = re.search(r"`#(\d+)`", status.content)
        assert match, status.content
        return int(match[1])
    return jobs[0].id


async def wait_state(bot: VeoBot, job_id: int, *states: JobState, ticks: int = 400) -> None:
    """Let the worker tick until the job is in one of `states` (no sleeps: ticks are events)."""
    for _ in range(ticks):
        job = await bot.store.get_job(job_id)
        assert job is not None
        if job.state in states:
            return
        await bot.worker.wait_ticks(1)
    raise AssertionError(f"job {job_id} never reached {states}; it is {job.state}")


# --- /veo prompt refusals --------------------------------------------------------------------------------


async def test_prompt_refusals_are_ephemeral_and_change_nothing(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    settings = make_settings(tmp_path, emu, fd, veo_max_prompt=50)
    async with running_bot(settings, fd) as bot:
        before = await snapshot(bot)
        cases = {
            "   ": "empty",
            "\u200b\u200d\u2060\ufeff": "empty",
            " \u200b \n\t ": "empty",
            "x" * 51: "51 characters; the limit is 50",
        }
        for text, expected in cases.items():
            r = await prompt(fd, text)
            assert r.kind == 4 and r.ephemeral, (text, r)
            assert expected in r.content, r.content
            assert "Traceback" not in r.content
        assert await snapshot(bot) == before
        assert not emu.calls("generate")
        # exactly at the limit is accepted
        ok = await prompt(fd, "y" * 50)
        assert not ok.ephemeral and "y" * 50 in ok.content.replace("\\", "")


async def test_daily_quota_refusal_says_when_it_resets(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, veo_daily_quota=1)
    async with running_bot(settings, fd) as bot:
        first = await prompt(fd, "stuck: a windmill")
        assert not first.ephemeral
        job = await bot.store.get_job(await job_of(bot, first))
        assert job is not None
        before = await snapshot(bot)
        r = await prompt(fd, "another windmill")
        assert r.ephemeral
        assert "used all 1 of your videos" in r.content
        assert f"<t:{int(job.created_at + 86400)}:R>" in r.content
        stats, events, paused = await snapshot(bot)
        assert stats["total"] == before[0]["total"] and paused is None
        assert not [e for e in events if e[0] == "created" and e not in before[1]]
        # the admin is unlimited
        admin = await prompt(fd, "stuck: the admin's windmill", user_id=ADMIN_ID)
        assert not admin.ephemeral


async def test_active_limit_refusal(tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, veo_max_active_per_user=1)
    async with running_bot(settings, fd) as bot:
        assert not (await prompt(fd, "stuck: a slow river")).ephemeral
        before = (await bot.store.stats())["total"]
        r = await prompt(fd, "a second river")
        assert r.ephemeral
        assert "You asked for 1 video but already have 1 in progress" in r.content, r.content
        assert "/veo cancel" in r.content
        assert (await bot.store.stats())["total"] == before


async def test_every_offered_count_works_with_the_defaults(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    """count is offered as 1-4 while VEO_MAX_ACTIVE_PER_USER is 2: one request of up to 4 is accepted when the
    user has nothing in progress; the limit stops further requests while theirs run, and says what would work."""
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        assert bot.settings.veo_max_active_per_user == 2
        four = await prompt(fd, "stuck: four rivers", user_id=OTHER_ID, count=4)
        assert not four.ephemeral, four.content
        one = await prompt(fd, "stuck: one river")
        assert not one.ephemeral, one.content
        r = await prompt(fd, "two more rivers", count=2)
        assert r.ephemeral
        assert "You asked for 2 videos but already have 1 in progress" in r.content, r.content
        assert "try count 1" in r.content
        assert len(await bot.store.user_jobs(OTHER_ID)) == 4


async def test_quota_refusal_says_what_is_left_and_what_would_work(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        # 8 of the user's 10 videos already counted (queued for them by an admin-sized request)
        used = await bot.store.create_jobs(
            user_id=USER_ID, guild_id=fd.guild_id, channel_id=fd.channel_id, prompt="stuck: earlier",
            aspect="landscape", model="fast", seeds=list(range(8)), daily_quota=10, max_active=2, unlimited=True,
        )  # fmt: skip
        r = await prompt(fd, "three more", count=3)
        assert r.ephemeral
        assert "You asked for 3 videos but have 2 left" in r.content, r.content
        assert f"<t:{int(used[0].created_at + 86400)}:R>" in r.content
        assert "try count 2" in r.content


async def test_paused_queue_refuses_with_each_reason(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    from bot.messages import PAUSE_REASONS

    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        for reason, text in PAUSE_REASONS.items():
            await bot.store.kv_set(PAUSE_KEY, reason)
            before = await snapshot(bot)
            r = await prompt(fd, "a paused cat")
            assert r.ephemeral and r.kind == 4
            assert "on hold" in r.content and text in r.content and "Nothing was queued" in r.content
            assert await snapshot(bot) == before
        assert not emu.calls("generate")


async def test_mentions_in_the_prompt_never_ping(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    text = f"@everyone and @here look: <@&{fd.guild_id}> <@{OTHER_ID}> <@!{ADMIN_ID}> **bold** `code`"
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        status = await prompt(fd, text)
        assert not status.ephemeral
        assert status.allowed_mentions is not None and status.allowed_mentions["parse"] == []
        assert not status.allowed_mentions.get("users") and not status.allowed_mentions.get("roles")
        msg = fd.all_messages[status.message_id or 0]
        assert not msg.pings_everyone and not msg.pinged_user_ids and not msg.pinged_role_ids
        for raw in ("@everyone", "@here", f"<@&{fd.guild_id}>", f"<@{OTHER_ID}>", f"<@!{ADMIN_ID}>"):
            assert raw not in status.content, raw
        posted = await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        assert posted.allowed_mentions is not None and posted.allowed_mentions["parse"] == []
        assert posted.pinged_user_ids == {USER_ID}
        assert not posted.pings_everyone and not posted.pinged_role_ids
        assert "@everyone" not in posted.content and f"<@{OTHER_ID}>" not in posted.content
        await bot.worker.drain()
        (job,) = await bot.store.user_jobs(USER_ID)
        assert job.prompt == text  # stored verbatim; only the rendering is made inert


# --- /veo status --------------------------------------------------------------------------------------------


async def test_status_lists_jobs_positions_estimate_and_quota(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, flow_max_concurrent=1, veo_max_active_per_user=3)
    async with running_bot(settings, fd) as bot:
        empty = await command(fd, "status", user_id=USER_ID)
        assert empty.ephemeral and "No jobs yet" in empty.content and "10 of 10" in empty.content

        done = await prompt(fd, "warm-up: a beach")
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        done_id = await job_of(bot, done)
        await wait_state(bot, done_id, JobState.DELIVERED)
        running = await job_of(bot, await prompt(fd, "stuck: a mountain"))
        await wait_state(bot, running, JobState.RUNNING)
        queued = await job_of(bot, await prompt(fd, "a valley"))
        other = await job_of(bot, await prompt(fd, "someone else's secret lake", user_id=OTHER_ID))

        r = await command(fd, "status", user_id=USER_ID)
        assert r.ephemeral and r.kind == 4
        lines = r.content.splitlines()
        assert any(f"`#{running}`" in ln and "generating" in ln and "elapsed" in ln for ln in lines), r.content
        q = next(ln for ln in lines if f"`#{queued}`" in ln)
        # round-robin: the other user, with nothing at Flow, goes before our second job
        assert "queued" in q and "position 2" in q and "waiting" in q and "estimate: ready in about" in q, q
        assert any(f"`#{done_id}`" in ln and "delivered" in ln for ln in lines)
        assert f"#{other}" not in r.content and "secret lake" not in r.content
        assert "Queue: 2 waiting" in r.content  # the other user's job is queued behind ours
        assert "takes about" in r.content
        status = await quota(bot)
        assert status.remaining == 7
        assert "Quota: 7 of 10 videos left" in r.content
        assert f"<t:{int(status.resets_at or 0)}:R>" in r.content

        d = await command(fd, "status", {"job": done_id}, user_id=USER_ID)
        assert d.ephemeral
        job = await bot.store.get_job(done_id)
        assert job is not None and job.result_message_id
        assert f"seed: {job.seed}" in d.content and "Model: fast" in d.content
        assert f"/channels/{fd.guild_id}/{fd.channel_id}/{job.result_message_id}" in d.content
        assert "position 2" in (await command(fd, "status", {"job": queued}, user_id=USER_ID)).content


async def test_status_of_someone_elses_job_reveals_nothing(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        theirs = await job_of(bot, await prompt(fd, "stuck: a very private garden", user_id=OTHER_ID))
        await wait_state(bot, theirs, JobState.RUNNING)
        before = await snapshot(bot)
        foreign = await command(fd, "status", {"job": theirs}, user_id=USER_ID)
        missing = await command(fd, "status", {"job": theirs + 1000}, user_id=USER_ID)
        assert foreign.ephemeral and missing.ephemeral
        # indistinguishable from a job that does not exist
        assert foreign.content == missing.content.replace(str(theirs + 1000), str(theirs))
        assert "garden" not in foreign.content and str(OTHER_ID) not in foreign.content
        assert await snapshot(bot) == before
        # an admin may look
        admin = await command(fd, "status", {"job": theirs}, user_id=ADMIN_ID)
        assert "garden" in admin.content


async def test_status_shows_a_failed_jobs_reason(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("blocked", Outcome.failed("PUBLIC_ERROR_DANGER_FILTER"))
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        job_id = await job_of(bot, await prompt(fd, "blocked: something"))
        await wait_state(bot, job_id, JobState.FAILED)
        d = await command(fd, "status", {"job": job_id}, user_id=USER_ID)
        assert d.ephemeral and "failed" in d.content and "safety filter" in d.content
        assert "PUBLIC_ERROR" not in d.content
        assert "10 of 10" in (await command(fd, "status", user_id=USER_ID)).content  # a failure is not charged


async def test_job_autocomplete_offers_only_the_users_recent_jobs(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        await bot.store.kv_set(PAUSE_KEY, "admin")  # keep every job queued
        store = bot.store
        mine = [
            j.id
            for j in await store.create_jobs(
                user_id=USER_ID,
                guild_id=fd.guild_id,
                channel_id=fd.channel_id,
                prompt="a dog number",
                aspect="landscape",
                model="fast",
                seeds=list(range(30)),
                daily_quota=100,
                max_active=100,
            )
        ]
        theirs = await store.create_jobs(
            user_id=OTHER_ID,
            guild_id=fd.guild_id,
            channel_id=fd.channel_id,
            prompt="a cat",
            aspect="landscape",
            model="fast",
            seeds=[1, 2, 3],
            daily_quota=100,
            max_active=100,
        )
        for sub in ("status", "cancel"):
            inter = await fd.send_autocomplete("veo", sub, focused="job", value="", user_id=USER_ID)
            r = await reply(fd, inter)
            assert r.kind == 8 and r.choices is not None
            values = [int(c["value"]) for c in r.choices]
            assert 0 < len(values) <= 25
            assert set(values) <= set(mine)
            assert values == sorted(mine, reverse=True)[: len(values)]  # newest first
            assert all(len(c["name"]) <= 100 for c in r.choices)
        prefix = str(mine[0])[:-1] if len(str(mine[0])) > 1 else str(mine[0])
        r = await reply(
            fd, await fd.send_autocomplete("veo", "status", focused="job", value=str(mine[3]), user_id=USER_ID)
        )
        assert r.choices is not None and int(r.choices[0]["value"]) == mine[3]
        r = await reply(fd, await fd.send_autocomplete("veo", "status", focused="job", value=prefix, user_id=OTHER_ID))
        assert r.choices is not None and {int(c["value"]) for c in r.choices} <= {j.id for j in theirs}


# --- /veo cancel ---------------------------------------------------------------------------------------------


async def test_cancel_queued_gives_quota_back_and_strangers_are_refused(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, flow_max_concurrent=1)
    async with running_bot(settings, fd) as bot:
        running = await job_of(bot, await prompt(fd, "stuck: first"))
        await wait_state(bot, running, JobState.RUNNING)
        queued = await job_of(bot, await prompt(fd, "second"))
        assert (await quota(bot)).used == 2

        before = await snapshot(bot)
        stranger = await command(fd, "cancel", {"job": queued}, user_id=OTHER_ID)
        assert stranger.ephemeral and "no job" in stranger.content
        assert await snapshot(bot) == before

        r = await command(fd, "cancel", {"job": queued}, user_id=USER_ID)
        assert r.ephemeral and f"Cancelled job `#{queued}`" in r.content
        job = await bot.store.get_job(queued)
        assert job is not None and job.state is JobState.CANCELLED
        assert (await quota(bot)).used == 1
        assert any(e.kind == "cancel" and e.actor_id == USER_ID for e in await bot.store.events(job_id=queued))

        again = await command(fd, "cancel", {"job": queued}, user_id=USER_ID)
        assert again.ephemeral and "already cancelled" in again.content

        # an admin may cancel someone else's job
        a = await command(fd, "cancel", {"job": running}, user_id=ADMIN_ID)
        assert a.ephemeral and "Cancelled" in a.content and "Flow has no cancel call" in a.content
        assert any(e.kind == "cancel" and e.actor_id == ADMIN_ID for e in await bot.store.events(job_id=running))
        assert (await quota(bot)).used == 0
        assert len(emu.calls("generate")) == 1  # the queued one never reached Flow


async def test_cancel_while_running_is_not_posted_even_when_flow_finishes(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    emu.polls_to_finish = 1
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        job_id = await job_of(bot, await prompt(fd, "stuck: a comet"))
        await wait_state(bot, job_id, JobState.RUNNING)
        # hold the next status poll at Flow, finish the video meanwhile, cancel, then let the poll answer
        polls = len(emu.calls("status"))
        emu.inject("status", Fault.hang())
        await emu.wait_for_calls("status", polls + 1)
        (name,) = emu.generations
        emu.set_outcome(name, Outcome.success())
        r = await command(fd, "cancel", {"job": job_id}, user_id=USER_ID)
        assert r.ephemeral and "Flow has no cancel call" in r.content and "will not be posted" in r.content
        emu.release_hung()
        await bot.worker.wait_ticks(5)
        await bot.worker.drain()
        assert emu.generations[name].state == "SUCCESSFUL"  # Flow made it...
        assert videos(fd) == []  # ...and it was not posted
        job = await bot.store.get_job(job_id)
        assert job is not None and job.state is JobState.CANCELLED
        assert not [m for m in fd.messages if f"veo job {job_id}" in m.content]
        assert (await quota(bot)).used == 0


async def test_cancel_after_delivery_is_too_late(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        job_id = await job_of(bot, await prompt(fd, "a quick one"))
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        await wait_state(bot, job_id, JobState.DELIVERED)
        before = await snapshot(bot)
        r = await command(fd, "cancel", {"job": job_id}, user_id=USER_ID)
        assert r.ephemeral and "too late" in r.content.lower() and "delivered" in r.content
        assert await snapshot(bot) == before
        assert (await quota(bot)).used == 1


# --- live progress -------------------------------------------------------------------------------------------


def status_edits(fd: FakeDiscord, message_id: int | None) -> list[dict[str, Any]]:
    return [p for mid, p in fd.edits if mid == message_id]


async def test_status_message_moves_from_queued_to_delivered_with_few_edits(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.polls_to_finish = 12
    settings = make_settings(tmp_path, emu, fd, veo_poll_interval=0.02)
    async with running_bot(settings, fd) as bot:
        status = await prompt(fd, "a long sunset")
        assert "queued" in status.content and "position 1" in status.content
        job_id = await job_of(bot, status)
        posted = await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        await wait_state(bot, job_id, JobState.DELIVERED)
        await fd.wait_until(
            lambda: any("delivered" in p.get("content", "") for p in status_edits(fd, status.message_id))
        )
        edits = status_edits(fd, status.message_id)
        patches = fd.requests_to("PATCH", "/channels/{channel_id}/messages/{message_id}")
        assert len(patches) >= len(edits) > 0
        assert any("generating" in p.get("content", "") for p in edits)
        final = edits[-1]
        assert f"/channels/{fd.guild_id}/{fd.channel_id}/{posted.id}" in final["content"]
        assert final["allowed_mentions"]["parse"] == []
        assert not final.get("components")  # nothing left to cancel
        assert len(emu.calls("status")) >= 12
        assert len(edits) <= 4, [e["content"] for e in edits]  # throttled, not one per poll


async def test_status_message_shows_the_failure_reason(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("blocked", Outcome.failed("PUBLIC_ERROR_PROMINENT_PEOPLE"))
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        status = await prompt(fd, "blocked: a famous face")
        job_id = await job_of(bot, status)
        await wait_state(bot, job_id, JobState.FAILED)
        await fd.wait_until(lambda: any("failed" in p.get("content", "") for p in status_edits(fd, status.message_id)))
        final = status_edits(fd, status.message_id)[-1]["content"]
        assert "prominent-people filter" in final and "PUBLIC_ERROR" not in final
        notice = await fd.wait_for_message(lambda m: f"veo job {job_id}" in m.content)
        assert notice.pinged_user_ids == {USER_ID}


# --- the error handler -----------------------------------------------------------------------------------------


async def test_unexpected_error_gets_an_apology_with_an_id_and_a_logged_traceback(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, emu, fd)
    async with running_bot(settings, fd) as bot:
        assert "10 of 10" in (await command(fd, "status", user_id=USER_ID)).content
        # break the database under the running bot: a real, unplanned failure
        with sqlite3.connect(settings.database_path) as conn:
            conn.execute("ALTER TABLE quota_overrides RENAME TO quota_overrides_gone")
        caplog.set_level(logging.ERROR, logger="cogs.errors")
        r = await command(fd, "status", user_id=USER_ID)
        assert r.ephemeral
        match = re.search(r"error id `([0-9a-f]{8})`", r.content)
        assert match, r.content
        assert "Sorry" in r.content
        for leak in ("Traceback", "sqlite", "OperationalError", "quota_overrides"):
            assert leak not in r.content
        records = [rec for rec in caplog.records if match[1] in rec.getMessage()]
        assert records and records[0].exc_info is not None
        assert "OperationalError" in caplog.text and "Traceback" in caplog.text
        with sqlite3.connect(settings.database_path) as conn:
            conn.execute("ALTER TABLE quota_overrides_gone RENAME TO quota_overrides")
        assert bot.store is not None
