"""Fixtures of the Vertex AI tests (loaded with ``pytest_plugins``): a clean environment, emulator, backends."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.backends.vertex import VertexBackend
from tests.fakes.vertex_emulator import VertexEmulator
from tests.vertex_helpers import SDK_ENV, FakeClock, SleepRecorder


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def emu(clean_env: None) -> AsyncIterator[VertexEmulator]:
    async with VertexEmulator() as emulator:
        yield emulator


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def make_backend(
    emu: VertexEmulator, clock: FakeClock, sleeps: SleepRecorder
) -> AsyncIterator[Callable[..., VertexBackend]]:
    made: list[VertexBackend] = []

    def make(**overrides: Any) -> VertexBackend:
        kwargs: dict[str, Any] = {
            "project": emu.project,
            "location": emu.location,
            "api_key": emu.api_key,
            "base_url": emu.base_url,
            "first_poll_after": 0.0,
            "poll_interval": 0.0,
            "http_timeout": 5.0,
            "clock": clock,
            "sleep": sleeps,
            "rng": random.Random(1),
        }
        kwargs.update(overrides)
        backend = VertexBackend(**kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()
