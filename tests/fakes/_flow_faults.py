"""Fault and outcome descriptions for the Flow emulator, plus Google RPC error bodies as captured."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

# Google RPC status names by HTTP code, as the API front end pairs them.
_RPC_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_RPC_MESSAGE: dict[int, str] = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "Internal error encountered.",
    502: "The service is currently unavailable.",
    503: "The service is currently unavailable.",
    504: "The request timed out.",
}

RECAPTCHA_FAILED = "reCAPTCHA evaluation failed"

# The code-13 FAILED error of status_response_failed_code13_2026-02-08_fragment.json, verbatim.
INTERNAL_TRACE = (
    'code: \t 13\nmessage: "Error forwarded from LMRoot, PLEASE READ go/sup-lmroot-errors. '
    "Message: Failed to get combined chunks.\\n; attempt: 0 failed with error: INTERNAL: RET_CHECK failure "
    "(learning/genai/root/util/prompt_rewriter/veo3_prompt_rewriter_utils.cc:556) "
    "visual_description.contains(chunk_id) VISUAL_DESCRIPTION missing chunk: Chunk1\\n "
    "...(internal stack trace and a util.MessageSetPayload details blob follow; truncated here)"
)

VerificationVariant = Literal["unusual_activity", "something_went_wrong", "no_details", "429_recaptcha"]


def rpc_status(code: int) -> str:
    """Google's RPC status name for an HTTP code ("UNKNOWN" for codes Google does not pair)."""
    return _RPC_STATUS.get(code, "UNKNOWN")


def error_envelope(
    code: int,
    *,
    message: str | None = None,
    status: str | None = None,
    reason: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build `{"error": {code, message, status, details?}}`; `reason` adds one ErrorInfo detail."""
    error: dict[str, Any] = {
        "code": code,
        "message": message if message is not None else _RPC_MESSAGE.get(code, "Unknown error."),
        "status": status or rpc_status(code),
    }
    all_details = list(details or [])
    if reason is not None:
        all_details.append({"@type": ERROR_INFO, "reason": reason})
    if all_details:
        error["details"] = all_details
    return {"error": error}


def bad_request_envelope(violations: list[tuple[str | None, str]]) -> dict[str, Any]:
    """400 INVALID_ARGUMENT with `google.rpc.BadRequest.fieldViolations`, messages joined by newlines."""
    field_violations: list[dict[str, str]] = []
    for path, description in violations:
        violation: dict[str, str] = {}
        if path:
            violation["field"] = path
        violation["description"] = description
        field_violations.append(violation)
    return error_envelope(
        400,
        message="\n".join(description for _, description in violations),
        details=[{"@type": BAD_REQUEST, "fieldViolations": field_violations}],
    )


def verification_envelope(variant: str) -> tuple[int, dict[str, Any]]:
    """The captured reCAPTCHA bodies: 403 with or without ErrorInfo, or the 429 that says the same."""
    if variant == "unusual_activity":
        return 403, error_envelope(403, message=RECAPTCHA_FAILED, reason="PUBLIC_ERROR_UNUSUAL_ACTIVITY")
    if variant == "something_went_wrong":
        return 403, error_envelope(403, message=RECAPTCHA_FAILED, reason="PUBLIC_ERROR_SOMETHING_WENT_WRONG")
    if variant == "no_details":
        return 403, error_envelope(403, message=RECAPTCHA_FAILED)
    if variant == "429_recaptcha":
        return 429, error_envelope(
            429, message=RECAPTCHA_FAILED, reason="PUBLIC_ERROR_UNUSUAL_ACTIVITY_TOO_MUCH_TRAFFIC"
        )
    raise ValueError(f"unknown verification variant: {variant!r}")


def unauthorized_envelope() -> dict[str, Any]:
    """401 UNAUTHENTICATED, as error_401_unauthenticated_DOC-ASSERTED.json."""
    return error_envelope(401)


def quota_envelope() -> dict[str, Any]:
    """429 with PUBLIC_ERROR_USER_QUOTA_REACHED (also used for "not enough credits": a guess)."""
    return error_envelope(429, reason="PUBLIC_ERROR_USER_QUOTA_REACHED")


def model_denied_envelope() -> dict[str, Any]:
    """403 PUBLIC_ERROR_MODEL_ACCESS_DENIED."""
    return error_envelope(403, reason="PUBLIC_ERROR_MODEL_ACCESS_DENIED")


def sample_bad_request_envelope() -> dict[str, Any]:
    """The fieldViolations body of error_400_invalid_argument_fieldViolations_2026-08-27.json."""
    return bad_request_envelope(
        [
            (
                "requests[0].video_input",
                "Invalid JSON payload received. Unknown name \"name\" at 'requests[0].video_input': Cannot find field.",
            ),
            (None, 'Invalid JSON payload received. Unknown name "useV2ModelConfig": Cannot find field.'),
        ]
    )


FaultKind = Literal[
    "status",
    "malformed",
    "wrong_shape",
    "html",
    "hang",
    "slow",
    "disconnect",
    "refresh_needed",
    "empty_session",
    "truncated",
]


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of Flow; build with the class methods, hand to `FlowEmulator.inject`."""

    kind: FaultKind
    code: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_bytes: int | None = None
    label: str = ""

    @property
    def name(self) -> str:
        """A short name for recordings, e.g. "status:429" or "hang"."""
        return self.label or (f"status:{self.code}" if self.kind == "status" else self.kind)

    @classmethod
    def status(cls, code: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Fault:
        """Answer `code` with `body` (default: the Google envelope for that code) and extra headers."""
        return cls(
            "status",
            code=code,
            body=body if body is not None else error_envelope(code),
            headers=dict(headers or {}),
        )

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("status", code=401, body=unauthorized_envelope(), label="unauthorized")

    @classmethod
    def rate_limited(cls, retry_after: float | None = 2) -> Fault:
        """429 RESOURCE_EXHAUSTED; Retry-After in whole seconds when integral, else as a decimal."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = _format_seconds(retry_after)
        body = error_envelope(429, reason="PUBLIC_ERROR_USER_REQUESTS_THROTTLED")
        return cls("status", code=429, body=body, headers=headers, label="rate_limited")

    @classmethod
    def server_error(cls, code: int = 500) -> Fault:
        return cls("status", code=code, body=error_envelope(code), label=f"server_error:{code}")

    @classmethod
    def verification(cls, variant: VerificationVariant = "unusual_activity") -> Fault:
        code, body = verification_envelope(variant)
        return cls("status", code=code, body=body, label=f"verification:{variant}")

    @classmethod
    def quota(cls) -> Fault:
        return cls("status", code=429, body=quota_envelope(), label="quota")

    @classmethod
    def model_denied(cls) -> Fault:
        return cls("status", code=403, body=model_denied_envelope(), label="model_denied")

    @classmethod
    def bad_request(cls) -> Fault:
        return cls("status", code=400, body=sample_bad_request_envelope(), label="bad_request")

    @classmethod
    def malformed(cls) -> Fault:
        """200 application/json whose body is cut off mid-object."""
        return cls("malformed")

    @classmethod
    def wrong_shape(cls, body: dict[str, Any] | None = None) -> Fault:
        """200 valid JSON of an unexpected shape; default body is chosen per route by the emulator."""
        return cls("wrong_shape", body=body)

    @classmethod
    def html(cls) -> Fault:
        """200 text/html "Sign in" page."""
        return cls("html")

    @classmethod
    def hang(cls) -> Fault:
        """Hold the request until `release_hung()` (then answer normally) or `close()` (then drop it)."""
        return cls("hang")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally after `seconds` (server-side asyncio.sleep)."""
        return cls("slow", seconds=seconds)

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection without sending a response."""
        return cls("disconnect")

    @classmethod
    def truncated(cls, after_bytes: int | None = None) -> Fault:
        """fife only: full Content-Length, then the connection drops after `after_bytes` (default: half)."""
        return cls("truncated", after_bytes=after_bytes)

    @classmethod
    def refresh_needed(cls) -> Fault:
        """One-shot session body with a stale token and `"error": "ACCESS_TOKEN_REFRESH_NEEDED"`."""
        return cls("refresh_needed")

    @classmethod
    def empty_session(cls) -> Fault:
        """One-shot session body `{}` (what dead cookies get)."""
        return cls("empty_session")


OutcomeKind = Literal["success", "failed", "stuck"]


@dataclass(frozen=True)
class Outcome:
    """How a generation ends once it has been polled `polls_to_finish` times."""

    kind: OutcomeKind
    code: int = 0
    reason: str = ""
    failure_reasons: tuple[str, ...] = ()
    video_size: int | None = None

    @classmethod
    def success(cls, video_size: int | None = None) -> Outcome:
        """SUCCESSFUL; `video_size` overrides the emulator's default size for this generation."""
        return cls("success", video_size=video_size)

    @classmethod
    def failed(cls, reason: str = "PUBLIC_ERROR_DANGER_FILTER", failure_reasons: list[str] | None = None) -> Outcome:
        """FAILED with error {code: 3, message: reason}; media failureReasons: reason sans prefix."""
        reasons = failure_reasons if failure_reasons is not None else [reason.removeprefix("PUBLIC_ERROR_")]
        return cls("failed", code=3, reason=reason, failure_reasons=tuple(reasons))

    @classmethod
    def internal(cls) -> Outcome:
        """FAILED with the code-13 internal trace of the capture fragment."""
        return cls("failed", code=13, reason=INTERNAL_TRACE)

    @classmethod
    def stuck(cls) -> Outcome:
        """ACTIVE forever."""
        return cls("stuck")

    @classmethod
    def media_failed(
        cls, reason: str = "PUBLIC_ERROR_IP_INPUT_IMAGE", failure_reasons: list[str] | None = None
    ) -> Outcome:
        """FAILED like the media-era gflow-cli fragment (`failureReasons: ["IP_PROHIBITED"]`)."""
        reasons = failure_reasons if failure_reasons is not None else ["IP_PROHIBITED"]
        return cls("failed", code=3, reason=reason, failure_reasons=tuple(reasons))


def _format_seconds(seconds: float) -> str:
    if math.isfinite(seconds) and float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:g}"
