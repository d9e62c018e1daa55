"""The Flow client's error hierarchy: each class is also the neutral backend error it stands for.

Every failure the client can raise is one of these, so callers branch on types, never on strings.
Messages never carry a token, a cookie value or a response body: only status codes, reasons and
field paths. User-facing wording lives elsewhere (``bot.messages``), in one place.
"""

from __future__ import annotations

from bot.backends import errors as be


class FlowError(be.BackendError):
    """Base of everything the Flow client raises."""


class CredentialsError(FlowError, be.CredentialsDead):
    """The team's Flow credentials cannot be used; an admin must act."""


class CookieFileError(CredentialsError):
    """The cookie file is missing, unreadable or malformed (a configuration mistake)."""


class CookiesExpired(CredentialsError):
    """The session cookies no longer yield a token: the admin must re-export them."""


class AccountMigrated(FlowError, be.AccountMigrated):
    """The account moved to flow.google.com (flow-api.md §0): the bot cannot drive it, never retried."""


class AuthExpired(FlowError, be.CredentialsDead):
    """Flow answered 401 even after a refresh: the bearer token is not accepted."""


class VerificationRequired(FlowError, be.VerificationRequired):
    """Flow wants a human verification (reCAPTCHA / unusual activity). We never work around it."""


class RateLimited(FlowError, be.RateLimited):
    """Flow asked us to slow down."""


class QuotaExhausted(FlowError, be.QuotaExhausted):
    """The account is out of credits or hit a daily model quota."""


class ModelNotAllowed(FlowError, be.ModelUnavailable):
    """The chosen model key is not available on the account's tier."""


class ContentRejected(FlowError, be.SafetyRejected):
    """Flow refused the prompt itself (synchronously)."""

    def __init__(self, message: str, *, filter_kind: str | None = None) -> None:
        super().__init__(message, category=filter_kind)
        self.filter_kind = filter_kind


class UpstreamUnavailable(FlowError, be.Unavailable):
    """Flow failed (5xx, timeout, connection error)."""


class SessionUnreachable(UpstreamUnavailable):
    """The session endpoint could not be reached or failed (5xx, timeout): an outage, not dead cookies.

    An UpstreamUnavailable (never sent, so ``maybe_accepted`` stays False): callers that retry an outage
    retry this one too, instead of failing jobs over a sign-in service that is down for a while.
    """


class BadResponse(FlowError, be.BadResponse):
    """Flow answered something we cannot read: its API probably changed."""


class BadRequest(FlowError, be.BadRequest):
    """Flow rejected our request body (400): our request no longer matches its API."""


class NotAVideo(BadResponse, be.NotAVideo):
    """A download returned something that is not a video (typically an HTML login page)."""


class MediaExpired(FlowError):
    """A signed media URL has expired; another download route may still work."""
