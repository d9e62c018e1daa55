"""All configuration, read once from the environment (or `.env`) and passed down.

Names are fixed by the bot's outer contract (interface.md). A mistake stops start-up with one line that
names the setting; see `load_settings`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

IdList = Annotated[frozenset[int], NoDecode]


class ConfigError(Exception):
    """A configuration mistake: shown to the operator as one line, never as a traceback."""


class Settings(BaseSettings):
    """The bot's settings; field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    #: Required to run the bot (`python -m bot`); `check`, `serve` and `apikey` do without it.
    discord_token: SecretStr | None = None
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    discord_guild_id: int | None = None

    veo_backend: Literal["auto", "vertex", "flow"] = "auto"
    veo_monthly_budget_usd: float | None = Field(None, gt=0)

    google_cloud_project: str | None = None
    google_cloud_location: str = "us-central1"
    google_application_credentials: Path | None = None
    google_api_key: SecretStr | None = None
    vertex_api_base: str | None = None
    #: JSON object overriding model ids, e.g. {"fast": "veo-3.1-fast-generate-001"}.
    vertex_models: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    vertex_max_concurrent: int = Field(10, ge=1, le=100)
    #: Seconds one Vertex AI call may take; a submit that runs out is failed as unconfirmed, never re-sent.
    vertex_http_timeout: float = Field(180.0, gt=0)

    flow_cookie_file: Path = Path("cookie.json")
    flow_token_refresh_margin: float = Field(300.0, ge=0)
    flow_api_base: str = "https://aisandbox-pa.googleapis.com"
    flow_labs_base: str = "https://labs.google"
    flow_project_id: str | None = None
    flow_max_concurrent: int = Field(5, ge=1, le=100)
    flow_status_batch_size: int = Field(50, ge=1, le=500)
    #: JSON object overriding model keys, e.g. {"fast.landscape": "veo_3_1_t2v_fast"}, for when Flow renames one.
    flow_model_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    flow_http_timeout: float = Field(60.0, gt=0)

    veo_data_dir: Path = Path("data")
    veo_poll_interval: float = Field(5.0, gt=0)
    veo_job_timeout: float = Field(900.0, gt=0)
    veo_daily_quota: int = Field(10, ge=0)
    veo_max_active_per_user: int = Field(2, ge=1)
    veo_max_prompt: int = Field(2000, ge=1, le=10000)
    veo_admin_user_ids: IdList = frozenset()
    veo_admin_role_ids: IdList = frozenset()
    veo_admin_channel_id: int | None = None
    veo_media_retention_days: float = Field(7.0, ge=0)
    veo_http_port: int | None = Field(None, ge=1, le=65535)
    veo_http_host: str = Field("127.0.0.1", min_length=1)
    veo_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    veo_log_format: Literal["text", "json"] = "text"

    @field_validator("veo_admin_user_ids", "veo_admin_role_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise ValueError("expected comma-separated numeric Discord ids")
            return frozenset(int(p) for p in parts)
        return value

    @field_validator("veo_log_level", "veo_log_format", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        if isinstance(value, str):
            return value.upper() if value.lower() not in ("text", "json") else value.lower()
        return value

    @field_validator("veo_backend", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("vertex_models", mode="before")
    @classmethod
    def _parse_models(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError('expected a JSON object like {"fast": "veo-3.1-fast-generate-001"}') from err
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"fast", "quality", "lite"})
            if unknown:
                raise ValueError(f"unknown model name {unknown[0]!r}: use fast, quality or lite")
        return value

    @field_validator("discord_api_base", "flow_api_base", "flow_labs_base", "vertex_api_base", mode="after")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.rstrip("/")
            if not value.startswith(("http://", "https://")):
                raise ValueError("must be an http(s) URL")
        return value

    @field_validator(
        "discord_token",
        "discord_api_base",
        "discord_gateway_url",
        "flow_project_id",
        "google_cloud_project",
        "google_application_credentials",
        "google_api_key",
        "vertex_api_base",
        "veo_monthly_budget_usd",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("discord_guild_id", "veo_admin_channel_id", "veo_http_port", mode="before")
    @classmethod
    def _empty_id_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("flow_model_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError('expected a JSON object like {"fast.landscape": "veo_3_1_t2v_fast"}') from err
        return value

    # --- derived values -------------------------------------------------------------------------

    @property
    def backend_name(self) -> Literal["vertex", "flow"]:
        """The backend new jobs go to: VEO_BACKEND, where `auto` means Vertex AI when a project is set."""
        if self.veo_backend == "auto":
            return "vertex" if self.google_cloud_project else "flow"
        return self.veo_backend

    @property
    def gateway_url(self) -> str | None:
        """The gateway to connect to: explicit, derived from DISCORD_API_BASE, or Discord's own."""
        if self.discord_gateway_url:
            return self.discord_gateway_url
        if self.discord_api_base:
            from urllib.parse import urlsplit

            parts = urlsplit(self.discord_api_base)
            scheme = "wss" if parts.scheme == "https" else "ws"
            return f"{scheme}://{parts.netloc}/gateway"
        return None

    @property
    def database_path(self) -> Path:
        return self.veo_data_dir / "veo.sqlite3"

    @property
    def media_dir(self) -> Path:
        return self.veo_data_dir / "media"

    def is_admin(self, user_id: int, role_ids: frozenset[int] | set[int] = frozenset()) -> bool:
        """Our own admin check: configured user ids or role ids, whatever Discord's permissions say."""
        return user_id in self.veo_admin_user_ids or bool(self.veo_admin_role_ids & set(role_ids))

    def ensure_data_dir(self) -> None:
        """Create the data and media folders and prove they are writable, or raise ConfigError."""
        try:
            self.media_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.veo_data_dir, prefix=".write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise ConfigError(
                f"VEO_DATA_DIR: {self.veo_data_dir} is not a writable folder ({err.strerror or err})"
            ) from None


def load_settings(*, discord: bool = True, **overrides: object) -> Settings:
    """Build Settings or raise ConfigError with one line naming the first bad setting.

    `discord`: the command talks to Discord, so DISCORD_TOKEN is required.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        if discord and settings.discord_token is None:
            raise ConfigError("DISCORD_TOKEN is required but not set (environment or .env)")
        return settings
    except SettingsError as err:
        raise ConfigError(
            str(err).replace('error parsing value for field "', "").split('"')[0].upper() + ": unreadable value"
        ) from None
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "settings"
        if first["type"] == "missing":
            raise ConfigError(f"{name} is required but not set (environment or .env)") from None
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {msg}") from None
