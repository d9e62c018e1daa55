"""HTTP status → error mapping (one function) and the retry policy's arithmetic."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from bot.backends.flow.errors import (
    AuthExpired,
    BadRequest,
    BadResponse,
    CookiesExpired,
    FlowError,
    ModelNotAllowed,
    QuotaExhausted,
    RateLimited,
    UpstreamUnavailable,
    VerificationRequired,
)
from bot.backends.flow.models import ErrorBody, ErrorEnvelope

_VERIFICATION_REASONS = frozenset({"PUBLIC_ERROR_UNUSUAL_ACTIVITY", "PUBLIC_ERROR_SOMETHING_WENT_WRONG"})
_QUOTA_REASONS = frozenset({"PUBLIC_ERROR_USER_QUOTA_REACHED", "PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA_REACHED"})
_RATE_REASONS = frozenset(
    {
        "PUBLIC_ERROR_UNUSUAL_ACTIVITY_TOO_MUCH_TRAFFIC",
        "PUBLIC_ERROR_USER_REQUESTS_THROTTLED",
        "PUBLIC_ERROR_HIGH_TRAFFIC",
        "PUBLIC_ERROR_CONCURRENT_LIMIT_REACHED",
    }
)
_MODEL_DENIED = "PUBLIC_ERROR_MODEL_ACCESS_DENIED"


class HttpStatusError(Exception):
    """The cause chained under a mapped FlowError: method, path and status only (no URL query, no body)."""

    def __init__(self, method: str, path: str, status: int) -> None:
        super().__init__(f"HTTP {status} on {method} {path}")
        self.status = status


@dataclass(frozen=True)
class RpcError:
    """What we read from a Google RPC (or tRPC) error envelope."""

    status_name: str | None
    message: str
    reasons: tuple[str, ...]
    fields: tuple[str, ...]


def read_envelope(body: bytes) -> RpcError | None:
    """Parse ``{"error": {...}}`` (Google RPC) or tRPC's ``{"error": {"json": {...}}}``; None if neither."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and "json" in data["error"]:
        data = {"error": data["error"]["json"]}
    try:
        err: ErrorBody = ErrorEnvelope.model_validate(data).error
    except ValidationError:
        return None
    reasons = tuple(d.reason for d in err.details if d.reason)
    fields = tuple(
        str(v["field"])
        for d in err.details
        for v in (d.field_violations or [])
        if isinstance(v, dict) and v.get("field")
    )
    return RpcError(err.status, (err.message or "")[:300], reasons, fields)


def parse_retry_after(value: str | None, cap: float, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, cap))


def map_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    max_retry_after: float,
    cookie_auth: bool = False,
) -> FlowError:
    """Turn a non-2xx answer into one FlowError; ``details[].reason`` first, then the HTTP status."""
    rpc = read_envelope(body)
    reasons = set(rpc.reasons) if rpc else set()
    message = rpc.message if rpc else ""
    label = f"HTTP {status}" + (f" {rpc.status_name}" if rpc and rpc.status_name else "")
    reason_text = f" ({', '.join(sorted(reasons))})" if reasons else ""
    recaptcha = "recaptcha" in message.lower()

    if status == 401:
        if cookie_auth:
            return CookiesExpired(f"Flow rejected the session cookies ({label}): re-export them")
        return AuthExpired(f"Flow rejected the bearer token ({label})")
    if recaptcha or (status == 403 and reasons & _VERIFICATION_REASONS):
        return VerificationRequired(f"Flow requires verification ({label}{reason_text})")
    if reasons & _QUOTA_REASONS:
        return QuotaExhausted(f"Flow quota reached ({label}{reason_text})")
    if _MODEL_DENIED in reasons:
        return ModelNotAllowed(f"model not allowed for this account's tier ({label}{reason_text})")
    if status == 429 or reasons & _RATE_REASONS:
        retry_after = parse_retry_after(headers.get("Retry-After"), max_retry_after)
        return RateLimited(f"Flow rate limit ({label}{reason_text})", retry_after=retry_after)
    if status == 408 or status >= 500:
        return UpstreamUnavailable(f"Flow unavailable ({label})")
    if 400 <= status < 500:
        detail = f": {message}" if message else ""
        fields = f" [fields: {', '.join(rpc.fields)}]" if rpc and rpc.fields else ""
        return BadRequest(f"Flow rejected the request ({label}{reason_text}){fields}{detail}")
    return BadResponse(f"Flow answered an unexpected {label}", field_path="$status")


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
    return rand() * min(cap, base * (2**attempt))
