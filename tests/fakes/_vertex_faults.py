"""Faults and operation endings for the Vertex AI emulator, and Google's error envelopes (vertex-veo.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
FILTERED_SUPPORT_CODE = "42237218"
BLOCKED_SUPPORT_CODE = "29310472"

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
#: Google's prose, verbatim in spirit: tests check none of it reaches our exceptions.
FORBIDDEN_PROSE = {
    "SERVICE_DISABLED": "Vertex AI API has not been used in project 123 before or it is disabled. Enable it.",
    "BILLING_DISABLED": "This API method requires billing to be enabled. Please enable billing on project #123.",
    "IAM_PERMISSION_DENIED": "Permission 'aiplatform.endpoints.predict' denied on resource (or it may not exist).",
}
BLOCKED_MESSAGE = (
    "The prompt could not be submitted. This prompt contains words that violate Vertex AI's usage guidelines. "
    f"Try rephrasing the prompt. If you think this was an error, send feedback. Support codes: {BLOCKED_SUPPORT_CODE}"
)
FILTERED_REASON = (
    "Veo could not generate 1 videos based on the prompt provided. You will not be charged for this request. "
    f"Go to our guidelines to learn more. Support codes: {FILTERED_SUPPORT_CODE}"
)


def envelope(code: int, message: str, *, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Google's error body: ``{"error": {code, message, status, details?}}``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


def model_not_found(model: str) -> dict[str, Any]:
    return envelope(
        404,
        f"Publisher Model `projects/p/locations/l/publishers/google/models/{model}` was not found or your project "
        "does not have access to it.",
    )


FaultKind = Literal["status", "garbage", "hang", "slow", "drop"]


@dataclass(frozen=True)
class Fault:
    """What the emulator does to one request. ``accept``: create the operation first (submit route only)."""

    kind: FaultKind
    name: str
    status: int = 200
    body: dict[str, Any] | None = None
    seconds: float = 0.0
    accept: bool = False

    @classmethod
    def unauthorized(cls) -> Fault:
        details = [{"@type": ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
        return cls(
            "status", "401", 401, envelope(401, "API key not valid. Please pass a valid API key.", details=details)
        )

    @classmethod
    def forbidden(cls, reason: str = "SERVICE_DISABLED") -> Fault:
        details = [{"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com"}]
        return cls("status", f"403 {reason}", 403, envelope(403, FORBIDDEN_PROSE[reason], details=details))

    @classmethod
    def not_found(cls, model: str = "veo-3.1-fast-generate-001") -> Fault:
        return cls("status", "404", 404, model_not_found(model))

    @classmethod
    def rate_limited(cls, retry_delay: str | None = None) -> Fault:
        details = [{"@type": RETRY_INFO, "retryDelay": retry_delay}] if retry_delay is not None else None
        message = "Quota exceeded for aiplatform.googleapis.com/long_running_online_prediction_requests_per_base_model"
        return cls("status", f"429 {retry_delay}", 429, envelope(429, message, details=details))

    @classmethod
    def server_error(cls, status: int = 500, *, accept: bool = False) -> Fault:
        message = "Internal error encountered." if status == 500 else "The service is currently unavailable."
        return cls("status", f"{status} accept={accept}", status, envelope(status, message), accept=accept)

    @classmethod
    def usage_guidelines(cls) -> Fault:
        return cls("status", "400 guidelines", 400, envelope(400, BLOCKED_MESSAGE))

    @classmethod
    def bad_request(cls) -> Fault:
        return cls("status", "400", 400, envelope(400, "Request contains an invalid argument."))

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage", "garbage")

    @classmethod
    def hang(cls, *, accept: bool = False) -> Fault:
        """Never answer (until released or closed)."""
        return cls("hang", f"hang accept={accept}", accept=accept)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", f"slow {seconds}", seconds=seconds)

    @classmethod
    def drop(cls, *, accept: bool = False) -> Fault:
        """Close the connection without an answer (after creating the operation when ``accept``)."""
        return cls("drop", f"drop accept={accept}", accept=accept)


EndingKind = Literal["video", "filtered", "error", "never", "not_mp4", "gcs"]


@dataclass(frozen=True)
class Ending:
    """How an operation finishes once it has been polled ``polls_to_finish`` times."""

    kind: EndingKind = "video"
    error_code: int = 0
    error_message: str = ""

    @classmethod
    def video(cls) -> Ending:
        return cls("video")

    @classmethod
    def filtered(cls) -> Ending:
        return cls("filtered")

    @classmethod
    def blocked(cls) -> Ending:
        return cls("error", 3, BLOCKED_MESSAGE)

    @classmethod
    def error(cls, code: int, message: str = "Internal error. Support codes: 11111111") -> Ending:
        return cls("error", code, message)

    @classmethod
    def never(cls) -> Ending:
        return cls("never")

    @classmethod
    def not_mp4(cls) -> Ending:
        return cls("not_mp4")

    @classmethod
    def gcs(cls) -> Ending:
        return cls("gcs")
