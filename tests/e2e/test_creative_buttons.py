"""Retry, Edit, Extend and Details on results, and the "Animate with Veo" message menu, end to end on the Vertex
emulator; also across a restart of the bot (forms and buttons live in custom_ids and the store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage import JobState
from tests.e2e.conftest import ADMIN_ID, OTHER_ID, USER_ID
from tests.e2e.creative_support import (
    answer,
    b64,
    custom_ids,
    jobs,
    picture,
    stored_inputs,
    submits,
    vertex_bot,
    vertex_settings,
    wait_state,
)
from tests.e2e.test_commands import snapshot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.vertex_emulator import VertexEmulator


async def first_result(bot: Any, fd: FakeDiscord, text: str, files: dict[str, Any], **options: Any) -> Any:
    inter = await fd.send_command("veo", "prompt", {"text": text, **options}, attachments=files, user_id=USER_ID)
    r = await answer(fd, inter)
    assert not r.ephemeral, r.content
    job = (await jobs(bot))[-1]
    await wait_state(bot, job.id, JobState.DELIVERED)
    return await bot.store.get_job(job.id)


async def click(fd: FakeDiscord, custom_id: str, user_id: int = USER_ID, **kw: Any) -> Any:
    inter = await fd.send_component(custom_id, user_id=user_id, **kw)
    return inter, await answer(fd, inter)


async def test_retry_edit_and_details_keep_every_option(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> None:
    image = picture(tint=33)
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        src = await first_result(
            bot,
            fd,
            "a kite over dunes",
            {"image": ("k.png", image, "image/png")},
            model="quality",
            aspect="portrait",
            resolution="1080p",
            negative="people",
            audio=False,
            seed=11,
        )
        result = await fd.wait_for_message(lambda m: bool(m.attachments))
        assert custom_ids(result) == [f"veo:{a}:{src.id}" for a in ("retry", "edit", "extend", "details")]

        # a stranger's clicks change nothing
        before = await snapshot(bot)
        for action in ("retry", "edit", "extend", "details"):
            _, r = await click(fd, f"veo:{action}:{src.id}", OTHER_ID)
            assert r.ephemeral and "Only the person who asked" in r.content
        assert await snapshot(bot) == before

        _, r = await click(fd, f"veo:retry:{src.id}")
        assert not r.ephemeral and "image · quality · portrait · 8 s · 1080p · no audio" in r.content
        retry = (await jobs(bot))[-1]
        assert retry.seed != src.seed and retry.options == src.options and retry.prompt == src.prompt

        click_edit, r = await click(fd, f"veo:edit:{src.id}")
        assert r.kind == 9
        modal = fd.modal_of(click_edit)
        assert modal["custom_id"] == f"veo:edit:{src.id}"
        submit = await fd.submit_modal(click_edit, {"prompt": "a red kite over dunes", "negative": "birds"})
        r = await answer(fd, submit)
        assert not r.ephemeral, r.content
        edit = (await jobs(bot))[-1]
        assert edit.prompt == "a red kite over dunes" and edit.options.negative_prompt == "birds"
        assert edit.options.image == src.options.image and edit.options.resolution == "1080p"
        assert edit.model.value == "quality" and edit.seed != src.seed

        for job in (retry, edit):
            await wait_state(bot, job.id, JobState.DELIVERED)
        sent = {s.instance["prompt"]: s for s in submits(vemu)}
        assert sent["a red kite over dunes"].instance["image"]["bytesBase64Encoded"] == b64(image)
        assert sent["a red kite over dunes"].parameters["negativePrompt"] == "birds"
        assert sorted(s.parameters["seed"] for s in submits(vemu)) == sorted([11, retry.seed, edit.seed])

        _, d = await click(fd, f"veo:details:{src.id}")
        assert d.ephemeral
        for text in (
            "Mode: image",
            "duration: 8 s",
            "resolution: 1080p",
            "audio: off",
            "Avoid: people",
            "Inputs: first frame",
            "Cost: est. $1.60",
            "generated in",
            "seed: 11",
        ):
            assert text in d.content, (text, d.content)
        # /veo status with the job id shows the same
        status = await answer(fd, await fd.send_command("veo", "status", {"job": src.id}, user_id=USER_ID))
        assert "Mode: image" in status.content and "Cost: est. $1.60" in status.content
        overview = await answer(fd, await fd.send_command("veo", "status", {}, user_id=USER_ID))
        assert f"`#{src.id}` ✅ delivered" in overview.content
        assert "image · 8 s · 1080p · est. $1.60" in overview.content


async def test_extend_continues_the_stored_clip_until_the_limit(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        src = await first_result(bot, fd, "a river", {}, duration=8)
        chain = [src]
        for _ in range(4):  # 8 s -> 15 -> 22 -> 29 -> 36 s: each step extends a clip of at most 30 s
            parent = chain[-1]
            _, r = await click(fd, f"veo:extend:{parent.id}")
            assert not r.ephemeral, r.content
            assert f"extension of job #{parent.id}" in r.content
            job = (await jobs(bot))[-1]
            assert job.options.extends_job == parent.id and job.options.video == parent.file_path
            chain.append(await wait_state(bot, job.id, JobState.DELIVERED))
        calls = submits(vemu)
        for parent, call in zip(chain[:-1], calls[1:], strict=True):
            assert call.instance["video"] == {
                "bytesBase64Encoded": b64(Path(parent.file_path or "").read_bytes()),
                "mimeType": "video/mp4",
            }
            assert call.parameters["durationSeconds"] == 8
        before = await snapshot(bot)
        _, r = await click(fd, f"veo:extend:{chain[-1].id}")
        assert r.ephemeral and "already about 36 s long" in r.content and "up to 30 s" in r.content
        assert await snapshot(bot) == before


async def test_extend_refusals_pruned_and_failed(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> None:
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        src = await first_result(bot, fd, "a glacier", {})
        Path(src.file_path or "").unlink()  # what media pruning does after VEO_MEDIA_RETENTION_DAYS
        before = await snapshot(bot)
        _, r = await click(fd, f"veo:extend:{src.id}")
        assert r.ephemeral and f"The video of job #{src.id} was deleted" in r.content
        assert await snapshot(bot) == before
        assert len(submits(vemu)) == 1

        lite = await first_result(bot, fd, "a lite clip", {}, model="lite")
        _, r = await click(fd, f"veo:extend:{lite.id}")
        assert r.ephemeral and "The lite model makes videos from text or a single image only" in r.content
        assert await snapshot(bot) != before  # the lite job itself was new
        assert len(await jobs(bot)) == 2


async def test_buttons_and_forms_work_after_a_restart(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> None:
    settings = vertex_settings(tmp_path, vemu, fd, veo_max_active_per_user=10)
    image = picture("JPEG", tint=99)
    async with vertex_bot(settings, fd, vemu) as bot:
        src = await first_result(bot, fd, "a heron", {"image": ("h.jpg", image, "image/jpeg")})
        click_edit, r = await click(fd, f"veo:edit:{src.id}")
        assert r.kind == 9
        menu_msg = fd.post_user_message("look", attachments=[("p.png", picture(tint=7), "image/png")], user_id=USER_ID)
        menu = await fd.send_message_command("Animate with Veo", menu_msg.id, user_id=USER_ID)
        assert (await answer(fd, menu)).kind == 9
        await bot.get_cog("Veo").animations.settled()  # type: ignore[union-attr]
        assert any(n.startswith("animate-") for n in stored_inputs(bot))
    async with vertex_bot(settings, fd, vemu) as bot:
        # a form opened before the restart is submitted after it
        r = await answer(fd, await fd.submit_modal(click_edit, {"prompt": "a heron, edited"}))
        assert not r.ephemeral, r.content
        r = await answer(fd, await fd.submit_modal(menu, {"prompt": "the picture comes alive"}))
        assert not r.ephemeral, r.content
        for action in ("retry", "extend"):
            _, r = await click(fd, f"veo:{action}:{src.id}")
            assert not r.ephemeral, r.content
        _, d = await click(fd, f"veo:details:{src.id}")
        assert d.ephemeral and "Mode: image" in d.content
        new = (await jobs(bot))[1:]
        assert [j.prompt for j in new] == ["a heron, edited", "the picture comes alive", "a heron", "a heron"]
        assert new[3].options.extends_job == src.id
        for job in new:
            await wait_state(bot, job.id, JobState.DELIVERED)
        sent = {s.instance["prompt"]: s for s in submits(vemu)}
        assert sent["a heron, edited"].instance["image"]["bytesBase64Encoded"] == b64(image)
        assert sent["the picture comes alive"].instance["image"]["bytesBase64Encoded"] == b64(picture(tint=7))


async def test_animate_with_veo_message_menu(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> None:
    other_channel = fd.add_channel(1300000000000000077, name="art").id
    png = picture(tint=120)
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        assert any(c.get("type") == 3 and c["name"] == "Animate with Veo" for c in fd.commands[str(fd.guild_id)])
        msg = fd.post_user_message(
            "my drawing",
            attachments=[("notes.txt", b"hi", "text/plain"), ("d.png", png, "image/png")],
            user_id=OTHER_ID,
            channel_id=other_channel,
        )
        menu = await fd.send_message_command("Animate with Veo", msg.id, user_id=USER_ID)
        assert (await answer(fd, menu)).kind == 9
        modal = fd.modal_of(menu)
        assert modal["title"] == "Animate with Veo"
        r = await answer(
            fd, await fd.submit_modal(menu, {"prompt": "it starts to rain", "aspect": "portrait", "model": "lite"})
        )
        assert not r.ephemeral and "image · lite · portrait" in r.content, r.content
        (job,) = await jobs(bot)
        assert job.channel_id == other_channel and job.user_id == USER_ID
        await wait_state(bot, job.id, JobState.DELIVERED)
        (call,) = submits(vemu)
        assert call.instance["image"] == {"bytesBase64Encoded": b64(png), "mimeType": "image/png"}
        assert call.parameters["aspectRatio"] == "9:16" and call.path.endswith(
            "veo-3.1-lite-generate-001:predictLongRunning"
        )
        result = await fd.wait_for_message(lambda m: bool(m.attachments))
        assert result.channel_id == other_channel

        # no picture: refused at once, no form
        words = fd.post_user_message("just words", user_id=OTHER_ID)
        r = await answer(fd, await fd.send_message_command("Animate with Veo", words.id, user_id=USER_ID))
        assert r.ephemeral and "has no picture" in r.content

        # a picture that is not one: refused at submit, nothing queued, nothing kept
        fake = fd.post_user_message("fake", attachments=[("x.png", b"<html>no</html>", "image/png")], user_id=OTHER_ID)
        before = await snapshot(bot)
        menu = await fd.send_message_command("Animate with Veo", fake.id, user_id=USER_ID)
        await answer(fd, menu)
        r = await answer(fd, await fd.submit_modal(menu, {"prompt": "move"}))
        assert r.ephemeral and "The picture in that message is not a PNG, JPEG or WebP picture" in r.content
        assert await snapshot(bot) == before
        kept = [n for n in stored_inputs(bot) if n.startswith("animate-")]
        assert kept == [Path(job.options.image or "").name]  # only the good picture, kept with its job


async def test_quota_applies_to_each_button(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> None:
    settings = vertex_settings(tmp_path, vemu, fd, veo_daily_quota=1)
    async with vertex_bot(settings, fd, vemu) as bot:
        src = await first_result(bot, fd, "one only", {"image": ("o.png", picture(), "image/png")})
        before = await snapshot(bot)
        for action in ("retry", "extend"):
            _, r = await click(fd, f"veo:{action}:{src.id}")
            assert r.ephemeral and "used all 1 of your videos" in r.content, r.content
        click_edit, _ = await click(fd, f"veo:edit:{src.id}")
        r = await answer(fd, await fd.submit_modal(click_edit, {"prompt": "again"}))
        assert r.ephemeral and "used all 1 of your videos" in r.content
        assert await snapshot(bot) == before
        # an admin is not limited, and may use anyone's buttons
        _, r = await click(fd, f"veo:retry:{src.id}", ADMIN_ID)
        assert not r.ephemeral
