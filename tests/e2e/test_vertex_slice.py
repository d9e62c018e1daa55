"""The vertical slice on Veo on Vertex AI: /veo prompt → the real google-genai SDK → the emulator → the post."""

from __future__ import annotations

from pathlib import Path

from bot.app import VeoBot
from storage import JobState
from tests.e2e.conftest import USER_ID, make_vertex_settings, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.vertex_emulator import VertexEmulator

EPHEMERAL = 64


async def test_prompt_is_generated_on_vertex_and_posted_once(
    vbot: VeoBot, fd: FakeDiscord, vemu: VertexEmulator
) -> None:
    i = await fd.send_command("veo", "prompt", {"text": "a red fox running in snow"}, user_id=USER_ID)
    cb = await fd.wait_callback(i)
    assert cb["type"] == 4 and not (cb["data"].get("flags") or 0) & EPHEMERAL

    posted = await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
    (name,) = vemu.operations
    assert posted.attachments[0][1] == vemu.video_bytes(name)
    assert f"<@{USER_ID}>" in posted.content
    assert [int(u) for u in posted.allowed_mentions["users"]] == [USER_ID]
    assert vemu.count("submit") == 1
    (submit,) = vemu.calls("submit")
    assert submit.instance["prompt"] == "a red fox running in snow"
    assert submit.parameters["sampleCount"] == 1 and submit.parameters["aspectRatio"] == "16:9"

    await vbot.worker.drain()
    (job,) = await vbot.store.user_jobs(USER_ID)
    assert job.state is JobState.DELIVERED and job.backend == "vertex" and job.backend_ref == name
    assert job.cost_unit == "usd" and job.cost == 0.8  # fast, 720p, audio, 8 s at $0.10/s


async def test_count_three_is_three_operations_each_its_own_job(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    settings = make_vertex_settings(tmp_path, vemu, fd, veo_max_active_per_user=4)
    async with running_bot(settings, fd) as bot:
        i = await fd.send_command("veo", "prompt", {"text": "three cats", "count": 3}, user_id=USER_ID)
        assert (await fd.wait_callback(i))["type"] == 4
        await fd.wait_until(lambda: len([m for m in fd.messages if m.attachments]) == 3, timeout=15)
        await bot.worker.drain()
        jobs = await bot.store.user_jobs(USER_ID)
    assert vemu.count("submit") == 3
    assert {j.backend_ref for j in jobs} == set(vemu.operations)
    assert len({j.seed for j in jobs}) == 3
    posted = sorted(m.attachments[0][1] for m in fd.messages if m.attachments)
    assert posted == sorted(vemu.video_bytes(n) for n in vemu.operations)


async def test_status_shows_the_users_spend_and_admin_credits_the_months_against_the_budget(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    from tests.e2e.conftest import ADMIN_ID
    from tests.e2e.test_commands import command

    settings = make_vertex_settings(tmp_path, vemu, fd, veo_monthly_budget_usd=10.0)
    async with running_bot(settings, fd) as bot:
        i = await fd.send_command("veo", "prompt", {"text": "a tide pool", "model": "quality"}, user_id=USER_ID)
        assert (await fd.wait_callback(i))["type"] == 4
        await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        await bot.worker.drain()
        status = await command(fd, "status", user_id=USER_ID)
        credits = await command(fd, "credits", name="veo-admin", user_id=ADMIN_ID)
    assert "Your estimated spend this month: $3.20." in status.content  # quality, 720p, sound, 8 s at $0.40/s
    assert "this month: $3.20 of $10.00 (32%)" in credits.content
    assert "today: $3.20" in credits.content
