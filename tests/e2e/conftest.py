"""End-to-end harness: our real bot, in-process, against the fake Discord and the Flow emulator on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import backend_resources
from bot.app import VeoBot
from bot.logs import Redactor
from bot.settings import Settings
from storage import Store
from tests.fakes.discord_server import FakeDiscord, run_bot
from tests.fakes.flow_emulator import FlowEmulator
from tests.fakes.vertex_emulator import VertexEmulator
from tests.vertex_helpers import SDK_ENV

ADMIN_ID = 1200000000000000001
USER_ID = 1200000000000000002
OTHER_ID = 1200000000000000003


@pytest.fixture
async def emu() -> AsyncIterator[FlowEmulator]:
    async with FlowEmulator(polls_to_finish=2, video_size=48 * 1024) as emulator:
        yield emulator


@pytest.fixture
async def fd() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        fake.add_user(USER_ID, "user")
        fake.add_user(OTHER_ID, "other")
        fake.add_user(ADMIN_ID, "admin")
        yield fake


def make_settings(tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": fd.token,
        "discord_api_base": fd.api_base,
        "discord_guild_id": fd.guild_id,
        "flow_cookie_file": tmp_path / "cookie.json",
        "flow_api_base": emu.api_base,
        "flow_labs_base": emu.labs_base,
        "veo_data_dir": tmp_path / "data",
        "veo_poll_interval": 0.05,
        "veo_admin_user_ids": frozenset({ADMIN_ID}),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, fd: FakeDiscord, redactor: Redactor | None = None) -> AsyncIterator[VeoBot]:
    """Build the bot exactly as `python -m bot` does, with its resources injected, and run it against the fake."""
    settings.ensure_data_dir()
    store = await Store.open(settings.database_path)
    try:
        async with backend_resources(settings, redactor or Redactor(), store=store) as res:
            bot = VeoBot(settings=settings, http_session=res.http, store=store, resources=res)
            async with run_bot(bot, fd):
                yield bot
    finally:
        await store.close()


@pytest.fixture
def cookie_file(tmp_path: Path, emu: FlowEmulator) -> Path:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    return path


@pytest.fixture
async def bot(tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path) -> AsyncIterator[VeoBot]:
    async with running_bot(make_settings(tmp_path, emu, fd), fd) as running:
        yield running


# --- the same bot on Veo on Vertex AI ----------------------------------------------------------------------


@pytest.fixture
async def vemu(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VertexEmulator]:
    for name in SDK_ENV:  # the SDK reads these: the tests use only what they pass
        monkeypatch.delenv(name, raising=False)
    async with VertexEmulator(polls_to_finish=2, video_size=48 * 1024) as emulator:
        yield emulator


def make_vertex_settings(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": fd.token,
        "discord_api_base": fd.api_base,
        "discord_guild_id": fd.guild_id,
        "veo_backend": "vertex",
        "google_cloud_project": vemu.project,
        "google_cloud_location": vemu.location,
        "google_api_key": vemu.api_key,
        "vertex_api_base": vemu.base_url,
        "flow_cookie_file": tmp_path / "no-cookie.json",
        "veo_data_dir": tmp_path / "data",
        "veo_poll_interval": 0.02,
        "veo_admin_user_ids": frozenset({ADMIN_ID}),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def vbot(tmp_path: Path, vemu: VertexEmulator, fd: FakeDiscord) -> AsyncIterator[VeoBot]:
    async with running_bot(make_vertex_settings(tmp_path, vemu, fd), fd) as running:
        yield running


# --- either backend: tests written once, run on both ---------------------------------------------------------


@pytest.fixture(params=["flow", "vertex"])
async def gen(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """The emulator of the backend under test (tests/e2e/backends.py), with what that backend needs on disk."""
    from tests.e2e.backends import Gen

    if request.param == "flow":
        async with FlowEmulator(polls_to_finish=2, video_size=48 * 1024) as flow:
            flow.write_cookie_file(tmp_path / "cookie.json")
            yield Gen("flow", tmp_path, flow=flow)
        return
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    async with VertexEmulator(polls_to_finish=2, video_size=48 * 1024) as vertex:
        yield Gen("vertex", tmp_path, vertex=vertex)
