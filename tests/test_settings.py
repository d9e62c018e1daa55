from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "FLOW_", "VEO_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "x" * 30)
    s = load_settings()
    assert s.flow_cookie_file == Path("cookie.json")
    assert s.flow_token_refresh_margin == 300
    assert s.flow_api_base == "https://aisandbox-pa.googleapis.com"
    assert s.flow_labs_base == "https://labs.google"
    assert s.flow_max_concurrent == 5
    assert s.veo_data_dir == Path("data")
    assert s.veo_poll_interval == 5
    assert s.veo_job_timeout == 900
    assert s.veo_daily_quota == 10
    assert s.veo_max_active_per_user == 2
    assert s.veo_max_prompt == 2000
    assert s.veo_admin_user_ids == frozenset()
    assert s.veo_media_retention_days == 7
    assert s.veo_log_level == "INFO"
    assert s.veo_log_format == "text"
    assert s.gateway_url is None
    assert s.discord_token.get_secret_value() == "x" * 30
    assert "x" * 30 not in repr(s)


def test_id_lists_and_gateway_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    monkeypatch.setenv("VEO_ADMIN_USER_IDS", "1, 22,333")
    monkeypatch.setenv("VEO_ADMIN_ROLE_IDS", "")
    monkeypatch.setenv("DISCORD_API_BASE", "http://127.0.0.1:8123/api/v10/")
    monkeypatch.setenv("VEO_LOG_FORMAT", "JSON")
    s = load_settings()
    assert s.veo_admin_user_ids == {1, 22, 333}
    assert s.veo_admin_role_ids == frozenset()
    assert s.discord_api_base == "http://127.0.0.1:8123/api/v10"
    assert s.gateway_url == "ws://127.0.0.1:8123/gateway"
    assert s.veo_log_format == "json"
    assert s.is_admin(22) and not s.is_admin(4)


def test_admin_by_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    monkeypatch.setenv("VEO_ADMIN_ROLE_IDS", "77")
    s = load_settings()
    assert s.is_admin(1, frozenset({77}))
    assert not s.is_admin(1, frozenset({78}))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("VEO_POLL_INTERVAL", "0", "VEO_POLL_INTERVAL"),
        ("VEO_POLL_INTERVAL", "-1", "VEO_POLL_INTERVAL"),
        ("VEO_ADMIN_USER_IDS", "12,abc", "VEO_ADMIN_USER_IDS"),
        ("FLOW_MAX_CONCURRENT", "many", "FLOW_MAX_CONCURRENT"),
        ("VEO_LOG_FORMAT", "xml", "VEO_LOG_FORMAT"),
        ("FLOW_API_BASE", "ftp://x", "FLOW_API_BASE"),
        ("FLOW_MODEL_KEYS", "{not json", "FLOW_MODEL_KEYS"),
    ],
)
def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_missing_token() -> None:
    with pytest.raises(ConfigError, match="DISCORD_TOKEN is required"):
        load_settings()


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    s = Settings(discord_token="t", veo_data_dir=blocker / "data")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="VEO_DATA_DIR"):
        s.ensure_data_dir()


def test_data_dir_created(tmp_path: Path) -> None:
    s = Settings(discord_token="t", veo_data_dir=tmp_path / "d")  # type: ignore[arg-type]
    s.ensure_data_dir()
    assert (tmp_path / "d" / "media").is_dir()


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FLOW_", "VEO_"))}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_cli_missing_token_is_one_line(tmp_path: Path) -> None:
    result = run_cli(env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DISCORD_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_cookie_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli(env={"DISCORD_TOKEN": "t", "FLOW_COOKIE_FILE": str(tmp_path / "nope.json")}, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "nope.json" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_cli_unwritable_data_dir(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    result = run_cli(env={"DISCORD_TOKEN": "t", "VEO_DATA_DIR": str(tmp_path / "blocker" / "d")}, cwd=tmp_path)
    assert result.returncode == 2
    assert "VEO_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr
