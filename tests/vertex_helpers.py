"""Plain helpers of the Vertex AI tests: a fake clock, a sleep recorder, requests and input images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.backends.base import GenerationRequest

SDK_ENV = (
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_GENAI_API_VERSION",
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SleepRecorder:
    """Stands in for asyncio.sleep: records the delays, sleeps not at all."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def request(job_id: int = 1, **fields: Any) -> GenerationRequest:
    base: dict[str, Any] = {"job_id": job_id, "prompt": "a cat on a skateboard", "seed": 7}
    return GenerationRequest(**(base | fields))


def write_png(path: Path, salt: bytes = b"") -> Path:
    path.write_bytes(PNG + salt)
    return path
