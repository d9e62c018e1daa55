"""Logging, configured once, with secrets redacted from every line and every traceback.

Redaction happens in the formatter, on the final text, so nothing slips through an argument, an
exception message or a traceback. Known patterns (bearer tokens, `ya29.` tokens, cookie headers,
Discord bot tokens) are caught without registration; exact secret values (cookie values, the Discord
token) are supplied by providers that the bot registers when it has them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

REDACTED = "[redacted]"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{16,}"),
    re.compile(r"ya29\.[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:set-)?cookie['\"]?\s*[:=]\s*['\"]?)[^\n'\"]+"),
    re.compile(r"(?i)(session-token(?:\.\d+)?=)[^;\s'\"]+"),
    # Discord bot tokens: base64 user id . timestamp . hmac
    re.compile(r"[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,40}"),
)

SecretProvider = Callable[[], Iterable[str]]


class Redactor:
    """Strips secrets from text: fixed patterns plus the current values of registered providers."""

    def __init__(self) -> None:
        self._providers: list[SecretProvider] = []

    def add_provider(self, provider: SecretProvider) -> None:
        self._providers.append(provider)

    def secrets(self) -> list[str]:
        values: set[str] = set()
        for provider in self._providers:
            try:
                values.update(v for v in provider() if v and len(v) >= 6)
            except Exception:  # noqa: S112 - a broken provider must never break logging
                continue
        return sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.secrets():
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
        return text


class RedactingFormatter(logging.Formatter):
    """Plain text lines, redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(job)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.job = f" [job {job_id}]" if job_id is not None else ""
        return self.redactor(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            data["job_id"] = job_id
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return self.redactor(json.dumps(data, ensure_ascii=False, default=str))


def setup_logging(level: str = "INFO", fmt: str = "text", *, stream: object = None) -> Redactor:
    """Install one redacting handler on the root logger and return its redactor for registration."""
    redactor = Redactor()
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else RedactingFormatter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # discord.py's HTTP logger echoes request payloads at DEBUG; keep it quiet.
    logging.getLogger("discord.http").setLevel(logging.WARNING)
    logging.getLogger("discord.gateway").setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    return redactor


def job_logger(logger: logging.Logger, job_id: int) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose lines carry the job id (`[job N]` in text, `job_id` in JSON)."""
    return logging.LoggerAdapter(logger, {"job_id": job_id})
