"""`python -m bot check` as a subprocess against the Flow emulator."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.fakes.flow_emulator import Fault, FlowEmulator

ROOT = Path(__file__).resolve().parents[1]


async def check(tmp_path: Path, emu: FlowEmulator, **extra: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FLOW_", "VEO_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DISCORD_TOKEN": "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz0123456789",
            "FLOW_COOKIE_FILE": str(tmp_path / "cookie.json"),
            "FLOW_API_BASE": emu.api_base,
            "FLOW_LABS_BASE": emu.labs_base,
            "VEO_DATA_DIR": str(tmp_path / "data"),
            "VEO_LOG_LEVEL": "DEBUG",
        }
    )
    env.update(extra)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def secrets_of(path: Path) -> list[str]:
    import json

    entries = json.loads(path.read_text())
    return [e["value"].removeprefix("Bearer ") for e in entries if len(e["value"]) >= 8]


async def test_check_prints_account_tier_credits_and_expiry(tmp_path: Path) -> None:
    async with FlowEmulator(tier="PAYGATE_TIER_TWO", credits=4321) as emu:
        emu.write_cookie_file(tmp_path / "cookie.json")
        before = secrets_of(tmp_path / "cookie.json")
        code, out, err = await check(tmp_path, emu)
        after = secrets_of(tmp_path / "cookie.json")
    assert code == 0, err
    assert "tier: PAYGATE_TIER_TWO" in out
    assert "credits: 4321" in out
    assert "token expires: " in out
    assert "account: " in out and "@" in out
    assert emu.user["email"] not in out  # masked
    for secret in before + after:
        assert secret not in out
        assert secret not in err
    assert len(emu.calls("session")) == 1
    assert len(emu.calls("credits")) == 1
    assert (tmp_path / "cookie.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("kill_session", "cookies have expired"),
        ("refresh_needed", "cookies have expired"),
        ("credits_down", "not answering"),
    ],
)
async def test_check_fails_with_one_line(tmp_path: Path, setup: str, expected: str) -> None:
    async with FlowEmulator() as emu:
        emu.write_cookie_file(tmp_path / "cookie.json")
        if setup == "kill_session":
            emu.kill_session()
        elif setup == "refresh_needed":
            emu.refresh_needed()
        else:
            emu.inject("credits", Fault.server_error(503), times=None)
        code, _out, err = await check(tmp_path, emu)
    assert code == 1
    assert expected in err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("check failed")]


async def test_check_without_authorization_entry(tmp_path: Path) -> None:
    async with FlowEmulator() as emu:
        emu.write_cookie_file(tmp_path / "cookie.json", with_authorization=False)
        code, _out, err = await check(tmp_path, emu)
    assert code == 2
    assert "authorization" in err
    assert err.strip().count("\n") == 0
    assert not emu.calls("session")


MIGRATED_SENTENCE = (
    "This Flow account moved to flow.google.com, which the bot cannot drive; "
    "use the Vertex AI backend (set GOOGLE_CLOUD_PROJECT)"
)


async def test_check_on_a_migrated_account_says_so_in_one_line(tmp_path: Path) -> None:
    async with FlowEmulator() as emu:
        emu.write_cookie_file(tmp_path / "cookie.json")
        emu.migrate_account()
        code, out, err = await check(tmp_path, emu)
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("check failed")]
    assert MIGRATED_SENTENCE in line and "(AccountMigrated)" in line
    assert "Traceback" not in err and "ok:" not in out
    assert len(emu.calls("session")) == 1 and len(emu.calls("tools")) == 1  # asked once, never retried
    assert not emu.calls("credits")


@pytest.mark.parametrize("sign_in_redirect", [False, True], ids=["tool_page", "sign_in_redirect"])
async def test_check_on_expired_cookies_is_not_called_migrated(tmp_path: Path, sign_in_redirect: bool) -> None:
    async with FlowEmulator() as emu:
        emu.write_cookie_file(tmp_path / "cookie.json")
        emu.kill_session()
        emu.tool_page_signs_in = sign_in_redirect
        code, _out, err = await check(tmp_path, emu)
    assert code == 1
    assert "cookies have expired" in err and "flow.google.com" not in err
    assert len(emu.calls("tools")) == 1
