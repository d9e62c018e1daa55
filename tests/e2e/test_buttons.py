"""The per-job buttons (Cancel on status messages, Retry and Details on results), also after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage import JobState
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID, make_settings, running_bot
from tests.e2e.test_commands import job_of, prompt, quota, reply, snapshot, videos, wait_state
from tests.fakes.discord_server import ADMINISTRATOR, FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator, Outcome


def custom_ids(message: Any) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row.get("components", []) if "custom_id" in c]


async def click(fd: FakeDiscord, custom_id: str, user_id: int, **kw: Any) -> Any:
    return await reply(fd, await fd.send_component(custom_id, user_id=user_id, **kw))


async def test_cancel_button_on_the_status_message(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        status = await prompt(fd, "stuck: a tower")
        job_id = await job_of(bot, status)
        assert custom_ids(fd.all_messages[status.message_id or 0]) == [f"veo:cancel:{job_id}"]
        await wait_state(bot, job_id, JobState.RUNNING)

        before = await snapshot(bot)
        for stranger in (OTHER_ID,):
            r = await click(fd, f"veo:cancel:{job_id}", stranger, permissions=ADMINISTRATOR)
            assert r.kind == 4 and r.ephemeral and "Only the person who asked" in r.content
        assert await snapshot(bot) == before

        r = await click(fd, f"veo:cancel:{job_id}", USER_ID)
        assert r.ephemeral and f"Cancelled job `#{job_id}`" in r.content
        job = await bot.store.get_job(job_id)
        assert job is not None and job.state is JobState.CANCELLED
        assert (await quota(bot)).used == 0
        # the status message now says cancelled and offers no button
        edit = [p for mid, p in fd.edits if mid == status.message_id][-1]
        assert "cancelled" in edit["content"] and not edit.get("components")


async def test_retry_and_details_on_a_result(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    settings = make_settings(tmp_path, emu, fd, veo_daily_quota=2)
    async with running_bot(settings, fd) as bot:
        job_id = await job_of(bot, await prompt(fd, "a paper boat", aspect="portrait", model="quality", seed=77))
        result = await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        await wait_state(bot, job_id, JobState.DELIVERED)
        assert custom_ids(result) == [f"veo:{a}:{job_id}" for a in ("retry", "edit", "details")]  # Flow: no Extend

        d = await click(fd, f"veo:details:{job_id}", USER_ID)
        assert d.ephemeral and "seed: 77" in d.content and "Model: quality" in d.content and "portrait" in d.content

        before = await snapshot(bot)
        foreign = await click(fd, f"veo:retry:{job_id}", OTHER_ID, permissions=ADMINISTRATOR)
        assert foreign.ephemeral and "Only the person who asked" in foreign.content
        foreign = await click(fd, f"veo:details:{job_id}", OTHER_ID)
        assert foreign.ephemeral and "paper boat" not in foreign.content
        assert await snapshot(bot) == before

        retry = await click(fd, f"veo:retry:{job_id}", USER_ID)
        assert retry.kind == 4 and not retry.ephemeral  # a new live status message
        new_id = await job_of(bot, retry)
        old, new = await bot.store.get_job(job_id), await bot.store.get_job(new_id)
        assert old is not None and new is not None and new_id != job_id
        assert (new.prompt, new.aspect, new.model, new.user_id) == (old.prompt, old.aspect, old.model, USER_ID)
        assert new.seed != old.seed
        await wait_state(bot, new_id, JobState.DELIVERED)

        # quotas apply to Retry: 2 of 2 used now
        before = await snapshot(bot)
        refused = await click(fd, f"veo:retry:{job_id}", USER_ID)
        assert refused.ephemeral and "used all 2 of your videos" in refused.content and "<t:" in refused.content
        assert await snapshot(bot) == before
        # an admin may act on anyone's result
        a = await click(fd, f"veo:details:{job_id}", ADMIN_ID)
        assert a.ephemeral and "paper boat" in a.content
    assert len(videos(fd)) == 2


async def test_buttons_work_after_a_full_restart(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    settings = make_settings(tmp_path, emu, fd, veo_max_active_per_user=3)
    async with running_bot(settings, fd) as bot:
        done = await job_of(bot, await prompt(fd, "a kite"))
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        await wait_state(bot, done, JobState.DELIVERED)
        stuck_status = await prompt(fd, "stuck: a glacier")
        stuck = await job_of(bot, stuck_status)
        await wait_state(bot, stuck, JobState.RUNNING)
        first_identify = fd.identify_count

    async with running_bot(settings, fd) as bot:
        assert fd.identify_count > first_identify  # a new process-equivalent: new gateway session, new views
        d = await click(fd, f"veo:details:{done}", USER_ID)
        assert d.ephemeral and f"Job #{done}" in d.content and "kite" in d.content
        c = await click(fd, f"veo:cancel:{stuck}", USER_ID)
        assert c.ephemeral and f"Cancelled job `#{stuck}`" in c.content
        job = await bot.store.get_job(stuck)
        assert job is not None and job.state is JobState.CANCELLED
        r = await click(fd, f"veo:retry:{done}", USER_ID)
        assert r.kind == 4 and not r.ephemeral
        new_id = await job_of(bot, r)
        await wait_state(bot, new_id, JobState.DELIVERED)
        foreign = await click(fd, f"veo:retry:{done}", OTHER_ID)
        assert foreign.ephemeral and "Only the person who asked" in foreign.content
    assert len(videos(fd)) == 2
    assert not [i for i in fd.interactions if i.late_callbacks]


async def test_one_status_message_for_count_two_with_a_cancel_button_per_job(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    emu.outcome_for("stuck", Outcome.stuck())
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as bot:
        status = await prompt(fd, "stuck: twin stars", count=2)
        for _ in range(100):  # the message id is stored right after the answer is sent
            jobs = [j for j in await bot.store.user_jobs(USER_ID) if j.status_message_id == status.message_id]
            if len(jobs) == 2:
                break
            await bot.worker.wait_ticks(1)
        assert len(jobs) == 2
        a, b = (j.id for j in jobs)
        message = fd.all_messages[status.message_id or 0]
        assert custom_ids(message) == [f"veo:cancel:{a}", f"veo:cancel:{b}"]
        await wait_state(bot, a, JobState.RUNNING)
        await wait_state(bot, b, JobState.RUNNING)

        r = await click(fd, f"veo:cancel:{a}", USER_ID)
        assert r.ephemeral and f"Cancelled job `#{a}`" in r.content
        await fd.wait_until(lambda: custom_ids(message) == [f"veo:cancel:{b}"], what="the button of #a removed")
        assert f"`#{a}` 🚫 cancelled" in message.content and f"`#{b}` 🎬 generating" in message.content
        for name, gen in emu.generations.items():
            if gen.seed == jobs[1].seed:
                emu.set_outcome(name, Outcome.success())
        await wait_state(bot, b, JobState.DELIVERED)
        await fd.wait_until(lambda: "✅ delivered" in message.content, what="the final edit")
        assert not custom_ids(message)
    assert len(videos(fd)) == 1
