"""What the session endpoint answers, read: the token and user, rotated cookies, and a migrated account.

Kept apart from the refresher (``credentials.py``) so each stays readable: these are pure functions over
bytes and headers, with the classification of flow-api.md §0–§1. Nothing here logs a secret.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr
from yarl import URL

from bot.backends.flow._cookies import AUTHORIZATION_ENTRY, CookieFile, is_session_cookie, session_chunk_index
from bot.backends.flow.errors import AccountMigrated, BadResponse, CookiesExpired

__all__ = [
    "MIGRATED_MESSAGE",
    "TOOL_PATH",
    "Session",
    "apply_set_cookies",
    "is_empty_session",
    "migration_verdict",
    "parse_session_body",
    "parse_set_cookies",
]

logger = logging.getLogger(__name__)

#: The Flow tool page; for a migrated account labs.google redirects it to flow.google.com (flow-api.md §0).
TOOL_PATH = "/fx/tools/flow"
MIGRATED_HOST = "flow.google.com"
MIGRATED_MESSAGE = (
    "this Flow account moved to flow.google.com, which the bot cannot drive; "
    "use the Vertex AI backend (set GOOGLE_CLOUD_PROJECT)"
)
EMPTY_SESSION_MESSAGE = "Flow's session is empty: the cookies have expired or were signed out; re-export them"
_ERROR_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Session(BaseModel):
    """What the session endpoint told us on the last successful refresh."""

    model_config = ConfigDict(frozen=True)

    email: str | None = None
    name: str | None = None
    expires_at: float
    access_token: SecretStr


# -- the session response --------------------------------------------------------------------------------


def _looks_like_html(body: bytes, content_type: str) -> bool:
    head = body.lstrip()[:64].lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html", b"<head", b"<body"))


def _parse_expires(raw: object) -> float:
    """``expires`` as epoch seconds: ISO 8601 (``...Z``) as Flow sends it, or a number to be lenient."""
    if isinstance(raw, bool):
        raise ValueError("not a time")
    if isinstance(raw, int | float):
        return float(raw) / 1000.0 if raw > 1e11 else float(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("not a time")
    moment = datetime.fromisoformat(raw.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_session_body(body: bytes, content_type: str = "application/json") -> Session:
    """Read a 200 from the session endpoint; classify what cannot be used.

    CookiesExpired: an HTML page, ``{}``/``null``, any ``error`` (``ACCESS_TOKEN_REFRESH_NEEDED``, even with a
    stale token present), no ``access_token`` or no ``user.email``. BadResponse: unreadable JSON or a field of
    the wrong shape (with its path).
    """
    if _looks_like_html(body, content_type):
        raise CookiesExpired(
            "Flow's session endpoint answered with a web page instead of JSON: "
            "the cookies have probably expired; re-export them"
        )
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise BadResponse("Flow's session endpoint answered with unreadable JSON", field_path="$") from None
    if data is None or data == {}:
        raise CookiesExpired(EMPTY_SESSION_MESSAGE)
    if not isinstance(data, dict):
        raise BadResponse("Flow's session response is not a JSON object", field_path="$")

    error = data.get("error")
    if error:
        code = error if isinstance(error, str) and _ERROR_CODE_RE.match(error) else "an error"
        raise CookiesExpired(f"Flow could not refresh the access token ({code}): re-export the cookies")

    user = data.get("user")
    if user is not None and not isinstance(user, dict):
        raise BadResponse("Flow's session response has an unexpected 'user'", field_path="user")
    user = user or {}
    email = user.get("email")
    if email is not None and not isinstance(email, str):
        raise BadResponse("Flow's session response has an unexpected 'user.email'", field_path="user.email")
    name = user.get("name")

    token = data.get("access_token")
    if token is not None and not isinstance(token, str):
        raise BadResponse("Flow's session response has an unexpected 'access_token'", field_path="access_token")
    if not token or not token.strip():
        raise CookiesExpired("Flow's session has no access token: the cookies have expired; re-export them")
    if not email:
        raise CookiesExpired("Flow's session has no signed-in user: the cookies have expired; re-export them")
    token = token.strip()
    if any(ch.isspace() or not ch.isprintable() or not ch.isascii() for ch in token):
        raise BadResponse("Flow's session response has an unreadable 'access_token'", field_path="access_token")

    try:
        expires_at = _parse_expires(data.get("expires"))
    except (ValueError, OverflowError, OSError):
        raise BadResponse("Flow's session response has no readable 'expires' time", field_path="expires") from None

    return Session(
        email=email,
        name=name if isinstance(name, str) else None,
        expires_at=expires_at,
        access_token=SecretStr(token),
    )


class _SetCookie(BaseModel):
    """One cookie change from a ``Set-Cookie`` header: a new value, or a deletion (``value`` is None)."""

    name: str
    value: str | None
    expires_at: float | None = None


def parse_set_cookies(headers: list[str], now: float) -> list[_SetCookie]:
    """Read ``Set-Cookie`` headers the way a browser would store them; unparsable ones are skipped."""
    changes: list[_SetCookie] = []
    for header in headers:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            logger.debug("ignored a Set-Cookie header that could not be parsed")
            continue
        for name, morsel in jar.items():
            expires_at: float | None = None
            if morsel["max-age"]:
                try:
                    expires_at = now + int(morsel["max-age"])
                except ValueError:
                    expires_at = None
            if expires_at is None and morsel["expires"]:
                try:
                    expires_at = parsedate_to_datetime(morsel["expires"]).timestamp()
                except (TypeError, ValueError, IndexError):
                    expires_at = None
            value = morsel.coded_value
            deleted = value in ("", '""') or (expires_at is not None and expires_at <= now)
            changes.append(_SetCookie(name=name, value=None if deleted else value, expires_at=expires_at))
    return changes


def apply_set_cookies(cookies: CookieFile, changes: list[_SetCookie]) -> CookieFile:
    """Store rotated cookies: the session family as a whole (whole <-> chunked renames), others by name."""
    if not changes:
        return cookies
    expires = {c.name: c.expires_at for c in changes if c.expires_at is not None and c.value is not None}
    session_sets = {c.name: c.value for c in changes if is_session_cookie(c.name) and c.value is not None}
    session_dels = {c.name for c in changes if is_session_cookie(c.name) and c.value is None}
    other_sets = {
        c.name: c.value
        for c in changes
        if not is_session_cookie(c.name) and c.value is not None and c.name.lower() != AUTHORIZATION_ENTRY
    }
    existing = {name for name, _ in cookies.cookies()}
    other_dels = {c.name for c in changes if not is_session_cookie(c.name) and c.value is None} & existing

    if session_sets or session_dels:
        family = cookies.session_cookies()
        if session_sets:
            indexes = [session_chunk_index(name) for name in session_sets]
            chunked = [i for i in indexes if i is not None]
            if None in indexes and not chunked:
                family = {n: v for n, v in family.items() if session_chunk_index(n) is None}
            elif chunked and None not in indexes:
                top = max(chunked)
                family = {
                    n: v
                    for n, v in family.items()
                    if (i := session_chunk_index(n)) is not None and (i <= top or n in session_sets)
                }
        family.update(session_sets)
        for name in session_dels:
            family.pop(name, None)
        if family:
            cookies = cookies.with_session_cookies(family, expires=expires)
            logger.info("Flow rotated the session cookie (%d part(s)); it will be saved", len(family))
        else:
            logger.warning("Flow's session response deleted the session cookie; keeping the previous one")
    if other_sets:
        cookies = cookies.with_cookies(other_sets, expires=expires)
    if other_dels:
        cookies = cookies.without_cookies(other_dels)
    return cookies


def is_empty_session(body: bytes, content_type: str = "application/json") -> bool:
    """A 200 that holds no session at all (``{}``, ``null``, or neither ``access_token`` nor ``user``).

    Dead cookies and a migrated account both answer this way; only the tool page tells them apart.
    A body with an ``error`` (refresh needed) or an HTML page is something else.
    """
    if _looks_like_html(body, content_type):
        return False
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if data is None:
        return True
    return isinstance(data, dict) and not data.get("error") and not data.get("access_token") and not data.get("user")


def migration_verdict(status: int, location: str | None) -> CookiesExpired | AccountMigrated:
    """What the tool page says about an account whose session came back empty.

    A redirect to flow.google.com (or a subdomain): the account migrated. Anything else (200, a redirect to
    a sign-in page, an error): the cookies expired, as before the migration existed.
    """
    if status in _REDIRECTS and location:
        try:
            host = (URL(location).host or "").lower().rstrip(".")
        except ValueError:
            host = ""
        if host == MIGRATED_HOST or host.endswith("." + MIGRATED_HOST):
            return AccountMigrated(MIGRATED_MESSAGE)
    return CookiesExpired(EMPTY_SESSION_MESSAGE)
