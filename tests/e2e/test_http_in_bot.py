"""The HTTP API inside the running bot (VEO_HTTP_PORT): one process, one store, one worker for Discord and API."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp

from bot.__main__ import start_http
from storage import JobState
from storage.apikeys import ApiKeys
from tests.e2e.conftest import USER_ID, make_settings, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_discord_and_api_jobs_share_the_bots_worker(
    tmp_path: Path, emu: FlowEmulator, fd: FakeDiscord, cookie_file: Path
) -> None:
    port = free_port()
    settings = make_settings(tmp_path, emu, fd, veo_http_port=port)
    async with running_bot(settings, fd) as bot:
        server = await start_http(settings, bot.store, bot)
        assert server is not None
        try:
            _key, secret = await ApiKeys(bot.store).create("script")
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as http:
                async with http.post(f"{base}/v1/videos", json={"prompt": "an api otter"}) as resp:
                    assert resp.status == 200, await resp.text()
                    video = await resp.json()
                i = await fd.send_command("veo", "prompt", {"text": "a discord otter"}, user_id=USER_ID)
                assert (await fd.wait_callback(i))["type"] == 4
                await fd.wait_for_message(lambda m: bool(m.attachments), timeout=15)
                await fd.wait_until(lambda: len(emu.generations) == 2, timeout=15, what="both generated")
                for _ in range(200):
                    async with http.get(f"{base}/v1/videos/{video['id']}") as resp:
                        if (await resp.json())["status"] == "completed":
                            break
                    await bot.worker.wait_ticks(1)
                async with http.get(f"{base}/v1/videos/{video['id']}/content") as resp:
                    assert resp.status == 200
                    body = await resp.read()
                async with http.get(f"{base}/health") as resp:
                    health = await resp.json()
        finally:
            await server.stop()
        await bot.worker.drain()
        states = {j.prompt: j.state for j in await bot.store.jobs_in_state(*JobState)}
    assert states == {"an api otter": JobState.DELIVERED, "a discord otter": JobState.DELIVERED}
    assert body in {emu.video_bytes(n) for n in emu.generations}
    assert health["discord"] == "connected" and health["status"] == "ok"
    # the API job was never posted to Discord
    assert [m for m in fd.messages if m.attachments and "api otter" in m.content] == []
