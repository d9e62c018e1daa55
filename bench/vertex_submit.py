"""One operation per job vs one operation with ``number_of_videos``, against the Vertex emulator.

Both deliver 4 videos of one command; the emulator answers each request after a fixed latency. Prints wall time
to accepted, requests, and request/response bytes. Run: ``python bench/vertex_submit.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from google import genai  # noqa: E402
from google.genai import types  # noqa: E402

from bot.backends.base import GenerationRequest, Submission  # noqa: E402
from bot.backends.vertex import VertexBackend  # noqa: E402
from tests.fakes.vertex_emulator import Fault, VertexEmulator  # noqa: E402

COUNT = 4
LATENCY = 0.25  # seconds the emulator takes per request
VIDEO = 2 * 1024 * 1024


async def per_job(emu: VertexEmulator) -> tuple[float, float]:
    backend = VertexBackend(
        project=emu.project, api_key=emu.api_key, base_url=emu.base_url, first_poll_after=0, poll_interval=0
    )
    try:
        started = time.perf_counter()
        subs = await backend.submit([GenerationRequest(job_id=i, prompt="a cat", seed=i) for i in range(COUNT)])
        accepted = time.perf_counter() - started
        refs = [s.ref for s in subs if isinstance(s, Submission)]
        done = await backend.poll(refs)
        assert len(done) == COUNT and all(o.handle for o in done)
        return accepted, time.perf_counter() - started
    finally:
        await backend.close()


async def one_operation(emu: VertexEmulator) -> tuple[float, float]:
    client = genai.Client(
        vertexai=True,
        project=emu.project,
        location=emu.location,
        api_key=emu.api_key,
        http_options=types.HttpOptions(base_url=emu.base_url, retry_options=types.HttpRetryOptions(attempts=1)),
    )
    try:
        started = time.perf_counter()
        op = await client.aio.models.generate_videos(
            model="veo-3.1-fast-generate-001",
            source=types.GenerateVideosSource(prompt="a cat"),
            config=types.GenerateVideosConfig(number_of_videos=COUNT, duration_seconds=8),
        )
        accepted = time.perf_counter() - started
        op = await client.aio.operations.get(op)
        assert op.response is not None and len(op.response.generated_videos or []) == COUNT
        return accepted, time.perf_counter() - started
    finally:
        await client.aio.aclose()


async def main() -> None:
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        os.environ.pop(name, None)
    print(f"{COUNT} videos of {VIDEO // 1024} KiB, {LATENCY * 1000:.0f} ms per request")
    for label, run in (("one operation per job", per_job), ("one operation, number_of_videos", one_operation)):
        async with VertexEmulator(video_size=VIDEO) as emu:
            emu.inject("submit", Fault.slow(LATENCY), times=None)
            emu.inject("poll", Fault.slow(LATENCY), times=None)
            accepted, finished = await run(emu)
            sent = sum(len(str(r.json)) for r in emu.requests)
            print(
                f"{label:34s} accepted {accepted * 1000:6.0f} ms  done {finished * 1000:6.0f} ms  "
                f"submits {emu.count('submit')}  polls {emu.count('poll')}  request bytes {sent}"
            )


if __name__ == "__main__":
    asyncio.run(main())
