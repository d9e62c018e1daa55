"""The Flow client's error hierarchy.

Every failure the client can raise is one of these, so callers branch on types, never on strings.
Messages never carry a token, a cookie value or a response body: only status codes, reasons and
field paths. User-facing wording lives elsewhere (``bot.messages``), in one place.
"""

from __future__ import annotations


class FlowError(Exception):
    """Base of everything the Flow client raises."""

    #: Whether the same call may be tried again later with a chance of success.
    retryable: bool = False


class CredentialsError(FlowError):
    """The team's Flow credentials cannot be used; an admin must act."""


class CookieFileError(CredentialsError):
    """The cookie file is missing, unreadable or malformed (a configuration mistake)."""


class CookiesExpired(CredentialsError):
    """The session cookies no longer yield a token: the admin must re-export them."""


class AuthExpired(FlowError):
    """Flow answered 401 even after a refresh: the bearer token is not accepted."""


class VerificationRequired(FlowError):
    """Flow wants a human verification (reCAPTCHA / unusual activity). We never work around it."""


class RateLimited(FlowError):
    """Flow asked us to slow down."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExhausted(FlowError):
    """The account is out of credits or hit a daily model quota."""


class ModelNotAllowed(FlowError):
    """The chosen model key is not available on the account's tier."""


class ContentRejected(FlowError):
    """Flow refused the prompt itself (synchronously)."""

    def __init__(self, message: str, *, filter_kind: str | None = None) -> None:
        super().__init__(message)
        self.filter_kind = filter_kind


class UpstreamUnavailable(FlowError):
    """Flow failed (5xx, timeout, connection error)."""

    retryable = True

    def __init__(self, message: str, *, maybe_accepted: bool = False) -> None:
        super().__init__(message)
        #: True when a request may have reached Flow before the failure: a generate must not be re-sent.
        self.maybe_accepted = maybe_accepted


class BadResponse(FlowError):
    """Flow answered something we cannot read: its API probably changed."""

    def __init__(self, message: str, *, field_path: str | None = None) -> None:
        super().__init__(message)
        self.field_path = field_path


class BadRequest(FlowError):
    """Flow rejected our request body (400): our request no longer matches its API."""


class NotAVideo(BadResponse):
    """A download returned something that is not a video (typically an HTML login page)."""


class MediaExpired(FlowError):
    """A signed media URL has expired; another download route may still work."""
