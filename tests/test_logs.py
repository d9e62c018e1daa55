from __future__ import annotations

import io
import json
import logging

import pytest

from bot.logs import REDACTED, job_logger, setup_logging

TOKEN = "ya29.a0AfB_byC-secret-token-value-1234567890"
COOKIE = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..cookie-secret"
DISCORD = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_redacted_in_lines_and_tracebacks(fmt: str) -> None:
    stream = io.StringIO()
    redactor = setup_logging("DEBUG", fmt, stream=stream)
    redactor.add_provider(lambda: ["plain-cookie-value-xyz"])
    log = logging.getLogger("test.redact")
    log.debug("header authorization: Bearer %s", TOKEN)
    log.info("cookie __Secure-next-auth.session-token=%s; other=1", COOKIE)
    log.info("discord token %s", DISCORD)
    log.info("value plain-cookie-value-xyz seen")
    try:
        raise RuntimeError(f"failed with {TOKEN}")
    except RuntimeError:
        log.exception("boom")
    out = stream.getvalue()
    for secret in (TOKEN, COOKIE, DISCORD, "plain-cookie-value-xyz", "secret-token"):
        assert secret not in out
    assert REDACTED in out
    if fmt == "json":
        lines = [json.loads(line) for line in out.splitlines()]
        assert {line["level"] for line in lines} >= {"DEBUG", "INFO", "ERROR"}


@pytest.mark.usefixtures("restore_root")
def test_job_id_in_lines() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    job_logger(logging.getLogger("test.job"), 42).info("delivered")
    assert json.loads(stream.getvalue())["job_id"] == 42
    stream2 = io.StringIO()
    setup_logging("INFO", "text", stream=stream2)
    job_logger(logging.getLogger("test.job"), 7).info("queued")
    assert "[job 7]" in stream2.getvalue()
