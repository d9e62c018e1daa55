"""The vertical slice: /veo prompt → the backend (Flow, Vertex AI) → polling → the video posted back."""

from __future__ import annotations

from storage import JobState
from tests.e2e.backends import Gen
from tests.e2e.conftest import USER_ID, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator

EPHEMERAL = 64


async def test_prompt_is_generated_and_posted_once(gen: Gen, fd: FakeDiscord) -> None:
    """On either backend: the command answered at once, the video posted once in the channel, pinging only the user."""
    async with running_bot(gen.settings(fd), fd) as bot:
        assert any(c["name"] == "veo" for c in fd.commands[str(fd.guild_id)])
        i = await fd.send_command("veo", "prompt", {"text": "a red fox running in snow"}, user_id=USER_ID)
        cb = await fd.wait_callback(i)
        assert cb["type"] == 4
        assert not (cb["data"].get("flags") or 0) & EPHEMERAL
        assert "a red fox running in snow" in cb["data"]["content"]
        assert cb["data"]["allowed_mentions"]["parse"] == []

        posted = await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
        (name,) = gen.refs
        assert posted.attachments[0][1] == gen.video_bytes(name)
        assert posted.attachments[0][0].endswith(".mp4")
        assert f"<@{USER_ID}>" in posted.content
        assert posted.allowed_mentions["parse"] == []
        assert [int(u) for u in posted.allowed_mentions["users"]] == [USER_ID]
        assert posted.nonce and posted.enforce_nonce
        assert gen.submits() == 1

        await bot.worker.drain()
        jobs = await bot.store.user_jobs(USER_ID)
    assert [j.state for j in jobs] == [JobState.DELIVERED]
    assert jobs[0].backend == gen.name and name in (jobs[0].backend_ref or "")
    assert jobs[0].result_message_id == posted.id
    assert len([m for m in fd.messages if m.attachments]) == 1


async def test_count_three_is_polled_in_one_batched_call(
    tmp_path, emu: FlowEmulator, fd: FakeDiscord, cookie_file
) -> None:
    from tests.e2e.conftest import make_settings

    settings = make_settings(tmp_path, emu, fd, veo_max_active_per_user=4)
    async with running_bot(settings, fd) as bot:
        i = await fd.send_command("veo", "prompt", {"text": "three cats", "count": 3}, user_id=USER_ID)
        cb = await fd.wait_callback(i)
        assert cb["type"] == 4
        await fd.wait_until(lambda: len([m for m in fd.messages if m.attachments]) == 3, timeout=15)
        await bot.worker.drain()
        seeds = {j.seed for j in await bot.store.user_jobs(USER_ID)}
    assert len(seeds) == 3
    assert len(emu.calls("generate")) == 1
    assert len(emu.calls("generate")[0].json["requests"]) == 3
    status_calls = emu.calls("status")
    assert status_calls, "polled"
    assert all(len(c.json["operations"]) == 3 for c in status_calls[:2])
    # every job polled together: as many status calls as polls_to_finish, not 3× that
    assert len(status_calls) <= emu.polls_to_finish + 1
    posted = sorted(m.attachments[0][1] for m in fd.messages if m.attachments)
    assert posted == sorted(emu.video_bytes(n) for n in emu.generations)
