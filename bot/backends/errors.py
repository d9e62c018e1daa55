"""The backend-neutral error hierarchy: every backend raises these (or subclasses of them).

The worker branches on these types only; user-facing wording lives in ``bot.messages``, in one place.
Messages never carry a token, a key, a cookie or an upstream body: only codes, reasons, field paths and ids.
"""

from __future__ import annotations


class BackendError(Exception):
    """Base of everything a video backend raises."""

    #: Whether the same call may be tried again later with a chance of success.
    retryable: bool = False


class CredentialsDead(BackendError):
    """The backend's credentials cannot be used (expired cookies, a key not accepted, API disabled, billing
    off): the queue holds and an admin must act. ``hint`` says what to fix, in words an admin understands."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class VerificationRequired(BackendError):
    """The backend wants a human verification (reCAPTCHA, unusual activity). We never work around it."""


class AccountMigrated(BackendError):
    """The Flow account moved to flow.google.com, which the bot cannot drive. Never retried."""


class RateLimited(BackendError):
    """Slow down; ``retry_after`` seconds when the backend said how long."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExhausted(BackendError):
    """Out of credits, a daily model quota, or our own monthly budget."""


class ModelUnavailable(BackendError):
    """The model id does not exist, was retired, or the account may not use it."""

    def __init__(self, message: str, *, model_id: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id


class SafetyRejected(BackendError):
    """The prompt or its result was refused by the backend's safety rules (nothing is charged).

    ``category``: a filter kind or a support code, safe to show; never the upstream text.
    """

    def __init__(self, message: str, *, category: str | None = None) -> None:
        super().__init__(message)
        self.category = category


class Unavailable(BackendError):
    """The backend failed (5xx, timeout, connection error)."""

    retryable = True

    def __init__(self, message: str, *, maybe_accepted: bool = False) -> None:
        super().__init__(message)
        #: True when a submit may have reached the backend before the failure: it must not be re-sent.
        self.maybe_accepted = maybe_accepted


class NotSupported(BackendError):
    """The backend or model cannot do what was asked. The message is one user-facing sentence."""


class BadRequest(BackendError):
    """The backend rejected our request body (400): our request no longer matches its API."""


class BadResponse(BackendError):
    """The backend answered something we cannot read: its API probably changed."""

    def __init__(self, message: str, *, field_path: str | None = None) -> None:
        super().__init__(message)
        self.field_path = field_path


class NotAVideo(BadResponse):
    """A download returned something that is not an MP4 (an HTML page, garbage)."""
