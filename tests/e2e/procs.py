"""Running the real `python -m bot` as a subprocess against the fakes (restart and crash tests)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from storage import JobState, Store
from tests.e2e.conftest import USER_ID
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.flow_emulator import FlowEmulator
from tests.fakes.vertex_emulator import VertexEmulator

ROOT = Path(__file__).resolve().parents[2]


def bot_env(tmp_path: Path, emu: FlowEmulator | VertexEmulator, fd: FakeDiscord, **extra: str) -> dict[str, str]:
    """The environment of `python -m bot` against the fakes, on the backend whose emulator is given.

    Nothing inherited configures the bot or the google-genai SDK (which reads GOOGLE_* and GEMINI_* itself).
    """
    skip = ("DISCORD_", "FLOW_", "VEO_", "VERTEX_", "GOOGLE_", "GEMINI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DISCORD_TOKEN": fd.token,
            "DISCORD_API_BASE": fd.api_base,
            "DISCORD_GUILD_ID": str(fd.guild_id),
            "VEO_DATA_DIR": str(tmp_path / "data"),
            "VEO_POLL_INTERVAL": "0.05",
            "VEO_LOG_LEVEL": "DEBUG",
        }
    )
    if isinstance(emu, VertexEmulator):
        env.update(
            {
                "VEO_BACKEND": "vertex",
                "GOOGLE_CLOUD_PROJECT": emu.project,
                "GOOGLE_CLOUD_LOCATION": emu.location,
                "GOOGLE_API_KEY": emu.api_key,
                "VERTEX_API_BASE": emu.base_url,
            }
        )
    else:
        env.update(
            {
                "FLOW_COOKIE_FILE": str(tmp_path / "cookie.json"),
                "FLOW_API_BASE": emu.api_base,
                "FLOW_LABS_BASE": emu.labs_base,
            }
        )
    env.update(extra)
    return env


async def start_bot(tmp_path: Path, env: dict[str, str], log_name: str) -> asyncio.subprocess.Process:
    log = (tmp_path / log_name).open("wb")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
    )


async def job_states(tmp_path: Path, user_id: int = USER_ID) -> list[JobState]:
    store = await Store.open(tmp_path / "data" / "veo.sqlite3")
    try:
        return [j.state for j in await store.user_jobs(user_id, limit=50)]
    finally:
        await store.close()
