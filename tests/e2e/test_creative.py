"""`/veo prompt` creative options end to end: real discord.py on the fake Discord, our bot, the Vertex emulator.

Each option must reach the wire as vertex-veo.md §2 shows, and every refusal must change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage import JobState
from tests.e2e.conftest import USER_ID
from tests.e2e.creative_support import (
    answer,
    b64,
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


async def prompt(
    fd: FakeDiscord, text: str, *, files: dict[str, tuple[str, bytes, str]] | None = None, **options: Any
) -> Any:
    inter = await fd.send_command("veo", "prompt", {"text": text, **options}, attachments=files or {}, user_id=USER_ID)
    return await answer(fd, inter)


async def test_every_option_reaches_vertex_as_documented(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> None:
    first, last = picture("PNG", tint=10), picture("JPEG", tint=80)
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        r = await prompt(
            fd,
            "a lighthouse at dusk",
            files={"image": ("first.png", first, "image/png"), "last_frame": ("last.jpg", last, "image/jpeg")},
            aspect="portrait",
            model="quality",
            seed=4242,
            negative="blurry, text",
            duration=8,
            resolution="1080p",
            audio=False,
        )
        assert not r.ephemeral, r.content
        assert "frames · quality · portrait · 8 s · 1080p · no audio" in r.content and "est. $1.60" in r.content
        (job,) = await jobs(bot)
        await wait_state(bot, job.id, JobState.DELIVERED)
        (sent,) = submits(vemu)
        assert sent.path.endswith("/publishers/google/models/veo-3.1-generate-001:predictLongRunning")
        instance, params = sent.instance, sent.parameters
        assert instance["prompt"] == "a lighthouse at dusk"
        assert instance["image"] == {"bytesBase64Encoded": b64(first), "mimeType": "image/png"}
        assert instance["lastFrame"] == {"bytesBase64Encoded": b64(last), "mimeType": "image/jpeg"}
        assert "referenceImages" not in instance and "video" not in instance
        assert params["aspectRatio"] == "9:16" and params["resolution"] == "1080p"
        assert params["durationSeconds"] == 8 and params["seed"] == 4242 and params["sampleCount"] == 1
        assert params["negativePrompt"] == "blurry, text" and params["generateAudio"] is False
        assert params["personGeneration"] == "allow_adult"  # image inputs allow adults only
        result = await fd.wait_for_message(lambda m: bool(m.attachments))
        assert "frames · quality · portrait · 8 s · 1080p" in result.content


async def test_references_and_text_modes_on_the_wire(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> None:
    refs = [picture("PNG", tint=t) for t in (1, 2)] + [picture("WEBP", tint=3)]
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        r = await prompt(
            fd,
            "my mascot surfing",
            files={
                "reference1": ("a.png", refs[0], "image/png"),
                "reference2": ("b.png", refs[1], "image/png"),
                "reference3": ("c.webp", refs[2], "image/webp"),
            },
        )
        assert not r.ephemeral and "references · fast" in r.content, r.content
        r2 = await prompt(fd, "plain text", model="lite", duration=4, seed=9)
        assert not r2.ephemeral and "text · lite · landscape · 4 s · 720p" in r2.content
        for job in await jobs(bot):
            await wait_state(bot, job.id, JobState.DELIVERED)
        by_prompt = {s.instance["prompt"]: s for s in submits(vemu)}
        ref_call = by_prompt["my mascot surfing"]
        assert ref_call.instance["referenceImages"] == [
            {"image": {"bytesBase64Encoded": b64(refs[0]), "mimeType": "image/png"}, "referenceType": "ASSET"},
            {"image": {"bytesBase64Encoded": b64(refs[1]), "mimeType": "image/png"}, "referenceType": "ASSET"},
            {"image": {"bytesBase64Encoded": b64(refs[2]), "mimeType": "image/webp"}, "referenceType": "ASSET"},
        ]
        text_call = by_prompt["plain text"]
        assert text_call.path.endswith("veo-3.1-lite-generate-001:predictLongRunning")
        assert set(text_call.instance) == {"prompt"}
        assert text_call.parameters["durationSeconds"] == 4 and text_call.parameters["seed"] == 9
        assert text_call.parameters["generateAudio"] is True
        # the inputs are kept with the job, under VEO_DATA_DIR/inputs
        ref_job = next(j for j in await jobs(bot) if j.prompt == "my mascot surfing")
        assert [Path(p).read_bytes() for p in ref_job.options.references] == refs


REFUSALS: list[tuple[dict[str, Any], dict[str, str], str]] = [
    ({"model": "lite", "resolution": "4k"}, {}, "The lite model goes up to 1080p"),
    ({"resolution": "1080p", "duration": 4}, {}, "1080p needs an 8-second video"),
    ({"resolution": "4k", "duration": 6}, {}, "4k needs an 8-second video"),
    ({}, {"last_frame": "last"}, "A last frame needs a first frame too"),
    ({}, {"image": "first", "last_frame": "last", "reference1": "r"}, "Reference images cannot be combined"),
    ({"duration": 6}, {"reference1": "r"}, "Using reference images needs an 8-second video"),
    ({"model": "lite"}, {"image": "first", "last_frame": "last"}, "The lite model makes videos from text or a single"),
    ({"model": "lite"}, {"reference1": "r"}, "The lite model makes videos from text or a single"),
    ({"negative": "n" * 501}, {}, "The negative prompt is 501 characters, over the limit of 500"),
]


@pytest.mark.parametrize(("options", "files", "expected"), REFUSALS)
async def test_refusals_are_one_sentence_and_change_nothing(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord, options: dict[str, Any], files: dict[str, str], expected: str
) -> None:
    blobs = {role: (f"{name}.png", picture(tint=len(name)), "image/png") for role, name in files.items()}
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        before = await snapshot(bot)
        r = await prompt(fd, "a refused video", files=blobs, **options)
        assert r.ephemeral and r.kind == 4
        assert expected in r.content, r.content
        assert r.content.endswith(".") and ". " not in r.content, f"not one sentence: {r.content!r}"
        assert await snapshot(bot) == before
        assert fd.downloads == []  # refused before anything was fetched
        assert stored_inputs(bot) == []
        assert submits(vemu) == []


BAD_IMAGES: list[tuple[str, bytes, str, str]] = [
    ("anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", "is not a PNG, JPEG or WebP picture"),
    ("page.png", b"<!doctype html><title>hi</title>", "image/png", "is not a PNG, JPEG or WebP picture"),
    ("empty.png", b"", "image/png", "is an empty file"),
    ("cut.png", (lambda b: b[: len(b) // 2])(picture("PNG", (200, 200))), "image/png", "is damaged or cut off"),
    ("noise.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "image/png", "is damaged or cut off"),
]


@pytest.mark.parametrize(("name", "body", "ctype", "expected"), BAD_IMAGES)
async def test_bad_images_are_refused_and_nothing_is_queued(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord, name: str, body: bytes, ctype: str, expected: str
) -> None:
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        before = await snapshot(bot)
        good = ("ok.png", picture(tint=5), "image/png")
        r = await prompt(fd, "from a bad picture", files={"image": good, "reference1": (name, body, ctype)})
        assert r.ephemeral, r.content
        assert f"Reference image 1 {expected}" in r.content
        assert await snapshot(bot) == before
        assert stored_inputs(bot) == []  # the good image fetched alongside was deleted too
        assert submits(vemu) == []


async def test_an_image_gone_from_the_cdn_and_one_too_large(
    tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord
) -> None:
    async with vertex_bot(vertex_settings(tmp_path, vemu, fd), fd, vemu) as bot:
        before = await snapshot(bot)
        inter = await fd.send_command(
            "veo", "prompt", {"text": "gone"}, attachments={"image": ("x.png", picture(), "image/png")}, user_id=USER_ID
        )
        # Discord's answer and the CDN race in real life; here the file is gone before the download.
        fd.forget_file(int(inter.payload["data"]["resolved"]["attachments"].popitem()[0]))
        r = await answer(fd, inter)
        assert r.ephemeral and "could not be downloaded from Discord" in r.content
        big = ("big.png", picture() + bytes(21 * 1024 * 1024), "image/png")
        r = await prompt(fd, "huge", files={"image": big})
        assert r.ephemeral and "The image is larger than 20 MB" in r.content
        assert await snapshot(bot) == before
        assert stored_inputs(bot) == []


async def test_flow_refuses_images_before_any_download(bot: Any, fd: FakeDiscord) -> None:
    """On Flow (text only) an image, a message-menu animation or lite is refused at once, nothing fetched."""
    before = await snapshot(bot)
    r = await prompt(fd, "from a picture", files={"image": ("a.png", picture(), "image/png")})
    assert r.ephemeral and "Flow can only make videos from text here" in r.content
    r = await prompt(fd, "cheap", model="lite")
    assert r.ephemeral and "Flow has no lite model" in r.content
    msg = fd.post_user_message("pic", attachments=[("p.png", picture(), "image/png")], user_id=USER_ID)
    r = await answer(fd, await fd.send_message_command("Animate with Veo", msg.id, user_id=USER_ID))
    assert r.ephemeral and r.kind == 4 and "Flow can only make videos from text here" in r.content
    assert fd.downloads == [] and stored_inputs(bot) == []
    assert await snapshot(bot) == before
