"""`python -m bot serve` SIGKILLed while an API job runs: after the restart the job completes, Flow made it once,
and its content is served intact."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storage import JobState, Store
from storage.apikeys import ApiKeys
from tests.fakes.flow_emulator import FlowEmulator, Outcome

ROOT = Path(__file__).resolve().parents[2]
STEP = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(tmp_path: Path, emu: FlowEmulator, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FLOW_", "VEO_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "FLOW_COOKIE_FILE": str(tmp_path / "cookie.json"),
            "FLOW_API_BASE": emu.api_base,
            "FLOW_LABS_BASE": emu.labs_base,
            "VEO_DATA_DIR": str(tmp_path / "data"),
            "VEO_POLL_INTERVAL": "0.05",
            "VEO_HTTP_PORT": str(port),
        }
    )
    return env


async def start_serve(tmp_path: Path, env: dict[str, str], name: str) -> asyncio.subprocess.Process:
    log = (tmp_path / name).open("wb")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=log,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def until_up(http: aiohttp.ClientSession, base: str, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(STEP):
        while True:
            assert proc.returncode is None, "serve exited during start-up"
            try:
                async with http.get(f"{base}/health") as resp:
                    if resp.status in (200, 503):
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)  # another process: nothing to wait on but its socket


@pytest.fixture
async def emu() -> AsyncIterator[FlowEmulator]:
    async with FlowEmulator(polls_to_finish=2, video_size=96 * 1024) as emulator:
        yield emulator


async def test_sigkill_while_an_api_job_runs_then_restart_completes_it(tmp_path: Path, emu: FlowEmulator) -> None:
    emu.write_cookie_file(tmp_path / "cookie.json")
    emu.outcome_for("held", Outcome.stuck())
    (tmp_path / "data").mkdir()
    async with await Store.open(tmp_path / "data" / "veo.sqlite3") as store:
        _, secret = await ApiKeys(store).create("crash")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = serve_env(tmp_path, emu, port)
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession() as http:
        proc = await start_serve(tmp_path, env, "serve-1.log")
        try:
            await until_up(http, base, proc)
            async with http.post(f"{base}/v1/videos", headers=headers, json={"prompt": "held: a red kite"}) as r:
                assert r.status == 200
                vid = (await r.json())["id"]
            (_generate,) = await emu.wait_for_calls("generate", 1)
            await emu.wait_for_calls("status", 2)  # it is running, polled
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        async with await Store.open(tmp_path / "data" / "veo.sqlite3") as store:
            job = await store.get_job(int(vid.removeprefix("video_")))
            assert job is not None and job.state is JobState.RUNNING

        (name,) = emu.generations
        emu.set_outcome(name, Outcome.success())
        proc = await start_serve(tmp_path, env, "serve-2.log")
        try:
            await until_up(http, base, proc)
            async with asyncio.timeout(STEP):
                while True:
                    async with http.get(f"{base}/v1/videos/{vid}", headers=headers) as r:
                        video = await r.json()
                    if video["status"] not in ("queued", "in_progress"):
                        break
                    await asyncio.sleep(int(r.headers["openai-poll-after-ms"]) / 1000)  # as the SDK does
            assert video["status"] == "completed", video
            async with http.get(f"{base}/v1/videos/{vid}/content", headers=headers) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
                data = await r.read()
            assert data == emu.video_bytes(name)
            assert len(emu.calls("generate")) == 1  # made once, never re-sent
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), STEP) == 0
    async with await Store.open(tmp_path / "data" / "veo.sqlite3") as store:
        events = [e.detail for e in await store.events(job_id=int(vid.removeprefix("video_")))]
    assert events.count("delivering->delivered") == 1
