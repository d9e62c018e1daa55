"""Harness of the creative-controls suites: our real bot on the Vertex AI backend, against the Vertex emulator and
the fake Discord (with attachments on its CDN), and helpers to read what the user saw and what Vertex received."""

from __future__ import annotations

import base64
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bot.app import VeoBot
from bot.settings import Settings
from storage import Job, JobState
from tests.e2e.conftest import make_vertex_settings, running_bot
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.vertex_emulator import RecordedRequest, VertexEmulator

EPHEMERAL = 1 << 6


def vertex_settings(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord, **overrides: Any) -> Settings:
    return make_vertex_settings(tmp_path, vemu, fd, **overrides)


def vertex_bot(
    settings: Settings, fd: FakeDiscord, vemu: VertexEmulator
) -> contextlib.AbstractAsyncContextManager[VeoBot]:
    """The bot as `python -m bot` builds it, on Vertex AI (polled at VEO_POLL_INTERVAL's test cadence)."""
    return running_bot(settings, fd)


def picture(fmt: str = "PNG", size: tuple[int, int] = (48, 32), tint: int = 0) -> bytes:
    """A real image, different for each tint, so tests can tell inputs apart by their bytes."""
    img = Image.new("RGB", size)
    img.putdata(
        [((x * 5 + tint) % 256, (y * 9 + tint) % 256, tint % 256) for y in range(size[1]) for x in range(size[0])]
    )
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@dataclass
class Answer:
    """What the user saw in answer to one interaction (after a defer: the edited original)."""

    kind: int
    content: str
    ephemeral: bool
    message_id: int | None


async def answer(fd: FakeDiscord, inter: Interaction, timeout: float = 15) -> Answer:
    cb = await fd.wait_callback(inter, timeout)
    if cb["type"] == 9:
        return Answer(9, "", True, None)
    data = cb.get("data") or {}
    if cb["type"] == 5:
        await fd.wait_until(lambda: inter.original_edits or inter.followups, timeout, "the answer after a defer")
        payload = inter.original_edits[-1] if inter.original_edits else inter.followups[0].payload
        return Answer(5, payload.get("content") or "", True, None)
    assert cb["type"] == 4, cb
    original = inter.original
    return Answer(4, data.get("content") or "", bool(int(data.get("flags") or 0) & EPHEMERAL), original and original.id)


async def jobs(bot: VeoBot) -> list[Job]:
    return sorted(await bot.store.jobs_in_state(*JobState), key=lambda j: j.id)


async def wait_state(bot: VeoBot, job_id: int, *states: JobState, ticks: int = 600) -> Job:
    for _ in range(ticks):
        job = await bot.store.get_job(job_id)
        assert job is not None
        if job.state in states:
            return job
        await bot.worker.wait_ticks(1)
    raise AssertionError(f"job {job_id} never reached {states}; it is {job.state}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def submits(vemu: VertexEmulator) -> list[RecordedRequest]:
    return [r for r in vemu.calls("submit") if r.fault is None]


def inputs_dir(bot: VeoBot) -> Path:
    return bot.settings.veo_data_dir / "inputs"


def stored_inputs(bot: VeoBot) -> list[str]:
    folder = inputs_dir(bot)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def custom_ids(message: Any) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row.get("components", []) if "custom_id" in c]
