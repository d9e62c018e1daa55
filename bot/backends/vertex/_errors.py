"""Map google-genai and transport exceptions to the neutral hierarchy, in one place.

Nothing of Google's prose reaches our exceptions: only HTTP codes, the google.rpc ErrorInfo reason, support codes
and model ids. Exceptions are raised ``from None`` so a logged traceback cannot carry the upstream body either.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import aiohttp
import pydantic
from google.auth import exceptions as auth_exceptions
from google.genai import errors as genai_errors

from bot.backends.errors import (
    BackendError,
    BadRequest,
    BadResponse,
    CredentialsDead,
    ModelUnavailable,
    RateLimited,
    SafetyRejected,
    Unavailable,
)

log = logging.getLogger(__name__)

_SUPPORT_CODE = re.compile(r"support codes?:\s*(\d+)", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

_HINT_KEY = "Vertex AI did not accept the API key: check GOOGLE_API_KEY (a Vertex AI key of this project)."
_HINT_API = "The Vertex AI API is not enabled for this project: enable aiplatform.googleapis.com in the console."
_HINT_BILLING = "Billing is disabled for this Google Cloud project: link a billing account."
_HINT_ROLE = "The credentials lack permission: grant the service account the Vertex AI User role on the project."
_HINT_LOGIN = (
    "No usable Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account file or GOOGLE_API_KEY."
)


def support_code(text: str | None) -> str | None:
    """The first Google support code in ``text`` (safe to show and store), if any."""
    match = _SUPPORT_CODE.search(text or "")
    return match.group(1) if match else None


def _error_body(err: genai_errors.APIError) -> dict[str, Any]:
    details = err.details
    if isinstance(details, dict):
        inner = details.get("error", details)
        if isinstance(inner, dict):
            return inner
    return {}


def _detail_entries(err: genai_errors.APIError) -> list[dict[str, Any]]:
    entries = _error_body(err).get("details")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def retry_delay(err: genai_errors.APIError) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (``"retryDelay": "7s"``), if present and readable."""
    for entry in _detail_entries(err):
        if entry.get("@type") == _RETRY_INFO:
            match = _DURATION.match(str(entry.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _reason(err: genai_errors.APIError) -> str:
    for entry in _detail_entries(err):
        if entry.get("@type") == _ERROR_INFO and isinstance(entry.get("reason"), str):
            return entry["reason"]
    return ""


def _credentials_hint(err: genai_errors.APIError) -> str:
    """Say what to fix from the structured reason first, then from well-known words in the message."""
    reason = _reason(err)
    text = f"{reason} {err.message or ''}".lower()
    if "api_key" in text or "api key" in text:
        return _HINT_KEY
    if "service_disabled" in text or "has not been used" in text or ("is disabled" in text and "api" in text):
        return _HINT_API
    if "billing" in text:
        return _HINT_BILLING
    if err.code == 401:
        return _HINT_LOGIN
    return _HINT_ROLE


def map_api_error(err: genai_errors.APIError, *, model_id: str, submit: bool) -> BackendError:
    """One HTTP error answer (4xx/5xx) as a neutral error."""
    code = err.code
    log.warning("Vertex AI answered %s %s %s", code, err.status or "", _reason(err) or "")
    if code in (401, 403):
        hint = _credentials_hint(err)
        return CredentialsDead(f"Vertex AI refused the credentials ({code}). {hint}", hint=hint)
    if code == 404:
        return ModelUnavailable(
            f"Vertex AI has no model {model_id!r} for this project (404); VERTEX_MODELS can change the id.",
            model_id=model_id,
        )
    if code == 429:
        return RateLimited("Vertex AI asked to slow down (429).", retry_after=retry_delay(err))
    if code == 400 and "usage guidelines" in (err.message or "").lower():
        return SafetyRejected(
            "The prompt was blocked by Google's usage guidelines.", category=support_code(err.message)
        )
    if 400 <= code < 500:
        return BadRequest(f"Vertex AI refused the request ({code} {err.status or ''}).".replace(" )", ")"))
    return Unavailable(f"Vertex AI failed ({code}).", maybe_accepted=submit)


def map_exception(err: BaseException, *, model_id: str, submit: bool) -> BackendError:
    """Any exception from one SDK call as a neutral error (``submit``: whether the call may have started work)."""
    if isinstance(err, BackendError):
        return err
    if isinstance(err, genai_errors.APIError):
        return map_api_error(err, model_id=model_id, submit=submit)
    if isinstance(err, auth_exceptions.DefaultCredentialsError):
        return CredentialsDead("No Google credentials were found.", hint=_HINT_LOGIN)
    if isinstance(err, auth_exceptions.RefreshError):
        return CredentialsDead("Google refused to refresh the service-account token.", hint=_HINT_ROLE)
    if isinstance(err, auth_exceptions.TransportError):
        return Unavailable("Could not reach Google to refresh the token.", maybe_accepted=False)
    if isinstance(err, aiohttp.ClientConnectorError) and not isinstance(err, TimeoutError):
        # The connection was never made, so nothing was sent.
        return Unavailable("Could not connect to Vertex AI.", maybe_accepted=False)
    if isinstance(err, TimeoutError | aiohttp.ClientError):
        kind = "timed out" if isinstance(err, TimeoutError) else "dropped the connection"
        return Unavailable(f"Vertex AI {kind}.", maybe_accepted=submit)
    if isinstance(err, json.JSONDecodeError | pydantic.ValidationError | aiohttp.ContentTypeError):
        return BadResponse("Vertex AI answered something that is not the JSON we expect.")
    if _is_httpx_connect_error(err):
        return Unavailable("Could not connect to Vertex AI.", maybe_accepted=False)
    if _is_httpx_error(err):
        return Unavailable("Vertex AI request failed.", maybe_accepted=submit)
    raise err


def _is_httpx_connect_error(err: BaseException) -> bool:
    """The SDK falls back to httpx when aiohttp is missing; classify its errors without importing it."""
    return type(err).__module__.startswith("httpx") and type(err).__name__ == "ConnectError"


def _is_httpx_error(err: BaseException) -> bool:
    return type(err).__module__.startswith("httpx")
