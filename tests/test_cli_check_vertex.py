"""`python -m bot check` on Veo on Vertex AI, as a subprocess against the Vertex emulator (issue 11 point 5)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.fakes._vertex_faults import Fault
from tests.fakes.vertex_emulator import VertexEmulator
from tests.vertex_helpers import SDK_ENV

ROOT = Path(__file__).resolve().parents[1]


async def check(tmp_path: Path, emu: VertexEmulator | None, **extra: str) -> tuple[int, str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD_", "FLOW_", "VEO_", "VERTEX_")) and k not in SDK_ENV
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "HOME": str(tmp_path),  # no gcloud application-default credentials from the machine
            "DISCORD_TOKEN": "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz0123456789",
            "GOOGLE_CLOUD_PROJECT": emu.project if emu else "test-project",
            "GOOGLE_CLOUD_LOCATION": emu.location if emu else "us-central1",
            "VEO_DATA_DIR": str(tmp_path / "data"),
        }
    )
    if emu is not None:
        env.update({"VERTEX_API_BASE": emu.base_url, "GOOGLE_API_KEY": emu.api_key})
    env.update(extra)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "check", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_prints_project_location_auth_and_models_never_the_key(tmp_path: Path) -> None:
    async with VertexEmulator() as emu:
        code, out, err = await check(tmp_path, emu)
        reads = emu.count("model")
    assert code == 0, err
    assert f"project: {emu.project}" in out and "location: us-central1" in out
    assert "API key" in out
    for model in ("veo-3.1-fast-generate-001", "veo-3.1-generate-001", "veo-3.1-lite-generate-001"):
        assert model in out
    assert reads == 3  # every configured model read once; nothing that costs money
    assert emu.api_key not in out + err


async def test_check_with_a_retired_model_names_it_and_the_setting(tmp_path: Path) -> None:
    async with VertexEmulator() as emu:
        code, out, err = await check(tmp_path, emu, VERTEX_MODELS=json.dumps({"fast": "veo-3.0-fast-generate-preview"}))
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("check failed")]
    assert "veo-3.0-fast-generate-preview" in line and "VERTEX_MODELS" in line
    assert emu.api_key not in out + err


async def test_check_with_a_refused_key_says_what_to_fix(tmp_path: Path) -> None:
    async with VertexEmulator() as emu:
        emu.inject("model", Fault.forbidden(), times=None)
        code, out, err = await check(tmp_path, emu)
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("check failed")]
    assert "Google Cloud refused" in line and "enable" in line.lower()
    assert emu.api_key not in out + err


async def test_no_credentials_at_all_is_one_configuration_line(tmp_path: Path) -> None:
    code, _out, err = await check(tmp_path, None)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("configuration error:") and "GOOGLE_API_KEY or GOOGLE_APPLICATION_CREDENTIALS" in line


async def test_a_missing_service_account_file_is_one_configuration_line(tmp_path: Path) -> None:
    code, _out, err = await check(tmp_path, None, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "nope.json"))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "nope.json" in line and "does not exist" in line and "Traceback" not in err


async def test_an_unreadable_service_account_file_is_one_configuration_line(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account", "private_key": "-----BEGIN', encoding="utf-8")
    code, _out, err = await check(tmp_path, None, GOOGLE_APPLICATION_CREDENTIALS=str(key))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "key.json" in line and "BEGIN" not in line and "Traceback" not in err


async def test_vertex_without_a_project_is_one_configuration_line(tmp_path: Path) -> None:
    code, _out, err = await check(tmp_path, None, VEO_BACKEND="vertex", GOOGLE_CLOUD_PROJECT="")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line == (
        "configuration error: VEO_BACKEND=vertex needs GOOGLE_CLOUD_PROJECT "
        "(a Google Cloud project with the Vertex AI API enabled)"
    )


async def test_check_needs_no_discord_token_but_run_does(tmp_path: Path) -> None:
    async with VertexEmulator() as emu:
        code, _out, err = await check(tmp_path, emu, DISCORD_TOKEN="")
    assert code == 0, err
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "VEO_")) and k not in SDK_ENV}
    env.update({"PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "VEO_DATA_DIR": str(tmp_path / "data")})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err_run = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert (
        err_run.decode().strip() == "configuration error: DISCORD_TOKEN is required but not set (environment or .env)"
    )
