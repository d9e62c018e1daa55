"""HTTP API harness: the real app served by uvicorn on loopback, with the real store and worker and the Flow
emulator behind the production Flow wiring (flow_resources), built the way `python -m bot serve` builds it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from bot.__main__ import backend_resources
from bot.http import ApiDelivery, ApiMetrics, RoutingDelivery, create_app
from bot.http.server import HttpServer
from bot.logs import Redactor
from bot.settings import Settings
from bot.worker import Worker
from storage import Job, JobState, Store
from storage.apikeys import ApiKey, ApiKeys
from tests.fakes.flow_emulator import FlowEmulator

WAIT = 20.0


class ShiftClock:
    """Wall time that a test can move forward (the /health cache) without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Api:
    base: str
    store: Store
    worker: Worker
    keys: ApiKeys
    emu: FlowEmulator
    settings: Settings
    clock: ShiftClock
    http: aiohttp.ClientSession

    def client(self, key: str, **kw: Any) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=f"{self.base}/v1", api_key=key, max_retries=0, **kw)

    async def new_key(self, name: str, daily: int | None = None) -> tuple[ApiKey, str]:
        return await self.keys.create(name, daily_quota=daily)

    async def job_count(self) -> int:
        return (await self.store.stats())["total"]

    async def wait_state(self, job_id: int, *states: JobState) -> Job:
        """Wait (on worker ticks, not sleeps) until the job reaches one of `states`."""
        deadline = time.monotonic() + WAIT
        while True:
            job = await self.store.get_job(job_id)
            assert job is not None
            if job.state in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} stuck in {job.state}"
            await self.worker.wait_ticks(1)


def make_settings(tmp_path: Path, emu: FlowEmulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": "unused-without-discord",
        "flow_cookie_file": tmp_path / "cookie.json",
        "flow_api_base": emu.api_base,
        "flow_labs_base": emu.labs_base,
        "veo_data_dir": tmp_path / "data",
        "veo_poll_interval": 0.05,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_api(
    tmp_path: Path, emu: FlowEmulator, *, start_worker: bool = True, backend: Any = None, **overrides: Any
) -> AsyncIterator[Api]:
    """Store, Flow wiring, worker (routing delivery without Discord) and the app on a free loopback port."""
    emu.write_cookie_file(tmp_path / "cookie.json")
    settings = make_settings(tmp_path, emu, **overrides)
    settings.ensure_data_dir()
    clock = ShiftClock()
    async with (
        await Store.open(settings.database_path) as store,
        backend_resources(settings, Redactor(), store=store) as res,
    ):
        metrics = ApiMetrics()
        worker = Worker.from_settings(settings, store, res.backends, RoutingDelivery(None, ApiDelivery(metrics)))
        app = create_app(
            store=store,
            worker=worker,
            settings=settings,
            clock=clock,
            metrics=metrics,
            backend=backend if backend is not None else res.backends[settings.backend_name],
            upload_cap=256 * 1024,
            body_cap=512 * 1024,
        )
        server = HttpServer(app, "127.0.0.1", 0)
        try:
            await server.start()
            if start_worker:
                worker.start()
            async with aiohttp.ClientSession() as http:
                yield Api(
                    base=f"http://127.0.0.1:{server.port}",
                    store=store,
                    worker=worker,
                    keys=ApiKeys(store),
                    emu=emu,
                    settings=settings,
                    clock=clock,
                    http=http,
                )
        finally:
            await server.stop()
            await worker.stop()


@pytest.fixture
async def emu() -> AsyncIterator[FlowEmulator]:
    async with FlowEmulator(polls_to_finish=2, video_size=48 * 1024) as emulator:
        yield emulator


@pytest.fixture
async def api(tmp_path: Path, emu: FlowEmulator) -> AsyncIterator[Api]:
    async with running_api(tmp_path, emu) as running:
        yield running


@pytest.fixture
async def vapi(tmp_path: Path, emu: FlowEmulator) -> AsyncIterator[Api]:
    """The API validating against Vertex-like rules (the worker still drives the Flow emulator)."""
    from tests.http.test_backend_seam import VertexLikeRules

    async with running_api(tmp_path, emu, backend=VertexLikeRules(extend=True)) as running:
        yield running


@pytest.fixture
async def key(request: pytest.FixtureRequest) -> str:
    """A key on whichever API the test uses (`api` or `vapi`)."""
    api: Api = request.getfixturevalue("vapi" if "vapi" in request.fixturenames else "api")
    _, secret = await api.new_key("tests")
    return secret


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The SDK marks `client.videos` deprecated (OpenAI's own model is retiring); the API shape stays ours."""
    for item in items:
        if "tests/http/" in str(item.fspath):
            item.add_marker(pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"))
