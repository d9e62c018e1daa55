"""Service-account credentials from a key file, with a one-line error that names the file and never its content."""

from __future__ import annotations

import json
from pathlib import Path

from google.oauth2 import service_account

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class CredentialsFileError(ValueError):
    """GOOGLE_APPLICATION_CREDENTIALS points at a file we cannot use; the message is one line for stderr."""


def load_service_account(path: str | Path) -> service_account.Credentials:
    """Read a service-account key file (blocking: call it at start-up or in a thread)."""
    path = Path(path)
    where = f"GOOGLE_APPLICATION_CREDENTIALS: {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsFileError(f"{where} does not exist; point it at a service-account key file.") from None
    except IsADirectoryError:
        raise CredentialsFileError(f"{where} is a directory, not a service-account key file.") from None
    except (OSError, UnicodeDecodeError):
        raise CredentialsFileError(f"{where} cannot be read; check its permissions.") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise CredentialsFileError(f"{where} is not JSON; download the key file again.") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise CredentialsFileError(f"{where} is not a service-account key file (type must be service_account).")
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
    except (ValueError, KeyError, TypeError):
        raise CredentialsFileError(
            f"{where} is malformed (missing fields or an unreadable private key); download the key file again."
        ) from None
