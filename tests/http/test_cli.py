"""The command line: --help everywhere exits 0; `apikey create|list|revoke` against the real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Store
from storage.apikeys import ApiKeys

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FLOW_", "VEO_"))}
    base.update({"PYTHONPATH": str(ROOT), "VEO_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=base, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["check", "--help"],
        ["serve", "--help"],
        ["apikey", "--help"],
        ["apikey", "create", "--help"],
        ["apikey", "list", "--help"],
        ["apikey", "revoke", "--help"],
    ],
)
def test_help_prints_usage_and_exits_0(tmp_path: Path, args: list[str]) -> None:
    done = run(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m bot")


def test_an_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    done = run(tmp_path, "frobnicate")
    assert done.returncode == 2 and "invalid choice" in done.stderr and "Traceback" not in done.stderr


def test_serve_without_a_port_says_what_to_set(tmp_path: Path) -> None:
    done = run(tmp_path, "serve")
    assert done.returncode == 2 and "VEO_HTTP_PORT" in done.stderr and "Traceback" not in done.stderr


async def test_apikey_create_list_revoke(tmp_path: Path) -> None:
    created = run(tmp_path, "apikey", "create", "n8n", "--daily", "5")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("veo_")

    again = run(tmp_path, "apikey", "create", "n8n")
    assert again.returncode == 1 and "exists" in again.stderr and "veo_" not in again.stdout + again.stderr

    listed = run(tmp_path, "apikey", "list")
    assert listed.returncode == 0 and "n8n" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout and "veo_" not in listed.stdout

    async with await Store.open(tmp_path / "data" / "veo.sqlite3") as store:
        key = await ApiKeys(store).authenticate(secret)
        assert key is not None and key.name == "n8n" and key.daily_quota == 5

    revoked = run(tmp_path, "apikey", "revoke", "n8n")
    assert revoked.returncode == 0
    assert "revoked" in run(tmp_path, "apikey", "list").stdout
    assert run(tmp_path, "apikey", "revoke", "n8n").returncode == 1
    async with await Store.open(tmp_path / "data" / "veo.sqlite3") as store:
        assert await ApiKeys(store).authenticate(secret) is None
