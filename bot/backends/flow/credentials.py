"""Flow credentials: the cookie file, and the refresher that turns its session cookie into a bearer token.

The session endpoint (``GET {labs_base}/fx/api/auth/session``) trades the NextAuth session cookie for a
short-lived OAuth access token. Refreshes are single-flight, their results are written back to the cookie
file atomically, and a background task keeps the token (and a rotated session cookie) fresh while the bot
idles. Nothing here logs or raises with a token or a cookie value in it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr
from yarl import URL

from bot.backends.flow._cookies import (
    AUTHORIZATION_ENTRY,
    MAX_COOKIE_FILE_BYTES,
    SESSION_COOKIE,
    CookieFile,
    is_session_cookie,
    session_chunk_index,
)
from bot.backends.flow.errors import (
    BadResponse,
    CookieFileError,
    CookiesExpired,
    FlowError,
    RateLimited,
    UpstreamUnavailable,
)
from bot.backends.flow.redact import mask_email

__all__ = [
    "AUTHORIZATION_ENTRY",
    "SESSION_COOKIE",
    "SESSION_PATH",
    "CookieFile",
    "Credentials",
    "Session",
    "parse_session_body",
]

logger = logging.getLogger(__name__)

SESSION_PATH = "/fx/api/auth/session"
#: Never refresh more often than this on schedule, even when Flow hands out very short-lived tokens.
MIN_REFRESH_INTERVAL = 30.0
_MAX_SESSION_BODY = MAX_COOKIE_FILE_BYTES
_ERROR_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_RETIRED_SECRETS = 32


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
        raise CookiesExpired("Flow's session is empty: the cookies have expired or were signed out; re-export them")
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


def _parse_set_cookies(headers: list[str], now: float) -> list[_SetCookie]:
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


def _apply_set_cookies(cookies: CookieFile, changes: list[_SetCookie]) -> CookieFile:
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


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


# -- the credentials holder ------------------------------------------------------------------------------


class Credentials:
    """The team's Flow credentials: the current bearer token, the cookies, and their refresher."""

    def __init__(
        self,
        path: Path,
        http: aiohttp.ClientSession,
        *,
        labs_base: str,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        request_timeout: float = 30.0,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self._path = Path(path)
        self._http = http
        self._labs_base = labs_base.rstrip("/")
        self._margin = float(refresh_margin)
        self._clock = clock
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng or random.Random()

        self._cookies: CookieFile | None = None
        self._session: Session | None = None
        self._due_at: float | None = None
        self._generation = 0
        self._inflight: asyncio.Task[Session] | None = None
        self._lock = asyncio.Lock()
        self._expired: str | None = None  # the message of the CookiesExpired that stopped us, until fixed
        self._usable = asyncio.Event()
        self._usable.set()
        # A token Flow rejected and then handed back unchanged: (digest, generation); don't refresh it again.
        self._stuck: tuple[bytes, int] | None = None
        self._retry_at: float | None = None  # bearer() does not retry a failed refresh before this time
        self._retired: deque[str] = deque(maxlen=_RETIRED_SECRETS)

    # -- state -----------------------------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The last successful refresh, or None before the first."""
        return self._session

    @property
    def expires_at(self) -> float | None:
        return self._session.expires_at if self._session else None

    @property
    def account_email(self) -> str | None:
        return self._session.email if self._session else None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def cookies_expired(self) -> bool:
        """Whether the cookies were found expired and nobody has reloaded or replaced them yet."""
        return self._expired is not None

    def cookie_header(self) -> str:
        """The ``Cookie`` header value for requests to FLOW_LABS_BASE."""
        return self._loaded().cookie_header()

    def secret_values(self) -> list[str]:
        """Every secret we hold (bearer, cookie values, recent ones), for the log redaction filter."""
        values: list[str] = []
        if self._cookies is not None:
            values.append(self._cookies.bearer)
            values.extend(value for _, value in self._cookies.cookies())
        values.extend(self._retired)
        seen: set[str] = set()
        # Very short values ("1", "en") are not secrets and would garble every log line if redacted.
        return [v for v in values if len(v) >= 8 and not (v in seen or seen.add(v))]

    def _loaded(self) -> CookieFile:
        if self._cookies is None:
            raise RuntimeError("Credentials.load() has not been called")
        return self._cookies

    def _needs_refresh(self) -> bool:
        return self._session is None or self._due_at is None or self._clock() >= self._due_at

    def seconds_until_refresh(self) -> float:
        """How long until the token is due for a refresh (0 when due now)."""
        if self._needs_refresh() or self._due_at is None:
            return 0.0
        return max(0.0, self._due_at - self._clock())

    # -- loading ---------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the cookie file (CookieFileError on any problem); the expiry stays unknown until a refresh."""
        cookies = await CookieFile.load(self._path)
        self._retire()
        self._cookies = cookies
        self._session = None
        self._due_at = None
        logger.info("Flow cookie file %s loaded (%d cookies)", self._path, len(cookies.cookies()))

    # -- the token -------------------------------------------------------------------------------------

    async def bearer(self) -> str:
        """The current token, refreshed first when its expiry is unknown or within the refresh margin."""
        cookies = self._loaded()
        if self._expired is not None:
            raise CookiesExpired(self._expired)
        if not self._needs_refresh():
            return cookies.bearer
        now = self._clock()
        still_valid = self._session is not None and now < self._session.expires_at
        if still_valid and self._retry_at is not None and now < self._retry_at:
            return cookies.bearer  # a refresh failed moments ago; the token has not expired yet
        try:
            await self.refresh()
        except CookiesExpired:
            raise
        except FlowError as err:
            if not still_valid:
                raise
            self._retry_at = now + MIN_REFRESH_INTERVAL
            logger.warning("Flow token refresh failed (%s); the current token stays in use until it expires", err)
        return self._loaded().bearer

    async def refresh(self, *, force: bool = False) -> Session:
        """Refresh the token (when due, or always with ``force``); concurrent callers share one request."""
        self._loaded()
        if not force and self._session is not None and not self._needs_refresh():
            return self._session
        task = self._inflight
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh_now(self._generation))
            task.add_done_callback(self._refresh_done)
            self._inflight = task
        return await asyncio.shield(task)

    def _refresh_done(self, task: asyncio.Task[Session]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here; every waiter gets it through the shield

    async def _refresh_now(self, generation: int) -> Session:
        async with self._lock:
            if self._generation != generation and self._session is not None:
                return self._session  # reload()/replace() refreshed while we queued
            cookies = self._loaded()
            try:
                session, updated = await self._exchange(cookies)
            except CookiesExpired as err:
                if self._cookies is cookies:
                    self._mark_expired(err)
                raise
            self._switch(updated, session)
            if updated != cookies:
                await self._persist(updated)
            return session

    async def token_rejected(self, token: str) -> str:
        """Flow said 401 to ``token``: refresh once unless a newer token exists; return the token to retry."""
        cookies = self._loaded()
        if token != cookies.bearer:
            return cookies.bearer
        if self._expired is not None:
            raise CookiesExpired(self._expired)
        if self._inflight is None and self._stuck == (_digest(token), self._generation):
            return token  # already refreshed for this rejection and Flow handed back the same token
        await self.refresh(force=True)
        current = self._loaded().bearer
        if current == token:
            self._stuck = (_digest(token), self._generation)
            logger.warning("Flow rejected the token, and the session endpoint handed back the same one")
        return current

    # -- switching credentials -------------------------------------------------------------------------

    async def reload(self) -> Session:
        """Re-read the file from disk and force a refresh with it; on failure the current credentials stay."""
        cookies = await CookieFile.load(self._path)
        return await self._adopt(cookies, must_save=False)

    async def replace(self, data: bytes) -> Session:
        """Adopt an uploaded export: parse, refresh, save atomically, switch; a failure changes nothing."""
        cookies = CookieFile.parse(data, source="uploaded cookie file")
        return await self._adopt(cookies, must_save=True)

    async def _adopt(self, cookies: CookieFile, *, must_save: bool) -> Session:
        async with self._lock:
            session, updated = await self._exchange(cookies)
            if must_save:
                await updated.save(self._path)
            self._switch(updated, session)
            if not must_save and updated != cookies:
                await self._persist(updated)
        logger.info("Flow credentials switched to %s", mask_email(session.email))
        return session

    def _switch(self, cookies: CookieFile, session: Session) -> None:
        """Make a freshly refreshed cookie file and session current; schedule the next refresh."""
        if self._cookies is not None:
            current = {cookies.bearer, *(value for _, value in cookies.cookies())}
            outgoing = [self._cookies.bearer, *(value for _, value in self._cookies.cookies())]
            self._retired.extend(value for value in outgoing if value not in current)
        now = self._clock()
        lifetime = session.expires_at - now
        lead = min(self._margin, max(lifetime, 0.0) / 2)
        self._due_at = max(session.expires_at - lead, now + MIN_REFRESH_INTERVAL)
        self._cookies = cookies
        self._session = session
        self._generation += 1
        self._retry_at = None
        if self._expired is not None:
            logger.info("Flow credentials work again")
        self._expired = None
        self._usable.set()
        if lifetime <= 0:
            logger.warning(
                "Flow's token for %s already expired at %s: check the system clock",
                mask_email(session.email),
                _iso(session.expires_at),
            )
        logger.info(
            "Flow token refreshed for %s; expires %s (in %.0f s); next refresh in %.0f s",
            mask_email(session.email),
            _iso(session.expires_at),
            lifetime,
            self._due_at - now,
        )

    def _retire(self) -> None:
        """Keep the outgoing secrets known to the log filter for a while."""
        if self._cookies is not None:
            self._retired.append(self._cookies.bearer)
            self._retired.extend(value for _, value in self._cookies.cookies())

    def _mark_expired(self, err: CookiesExpired) -> None:
        if self._expired is None:
            logger.warning("Flow cookies expired: %s", err)
        self._expired = str(err)
        self._usable.clear()

    async def _persist(self, cookies: CookieFile) -> None:
        """Write the refreshed file; a failure is logged, the in-memory token stays usable."""
        try:
            await cookies.save(self._path)
        except CookieFileError as err:
            logger.error("%s; the new token is kept in memory only", err)
        else:
            logger.debug("cookie file %s updated", self._path)

    # -- HTTP ------------------------------------------------------------------------------------------

    async def _exchange(self, cookies: CookieFile) -> tuple[Session, CookieFile]:
        """Ask the session endpoint for a token with ``cookies``; return it and the updated cookie file."""
        url = URL(self._labs_base + SESSION_PATH)
        headers = {"Cookie": cookies.cookie_header(), "Accept": "application/json"}
        jar = self._http.cookie_jar
        if url.host:
            jar.clear_domain(url.host)  # our Cookie header is the truth; a jar would merge stale values in
        logger.debug("requesting a Flow token from %s%s", url.host, SESSION_PATH)
        try:
            async with self._http.get(url, headers=headers, timeout=self._timeout) as resp:
                status = resp.status
                content_type = resp.headers.get("Content-Type", "")
                set_cookies = resp.headers.getall("Set-Cookie", [])
                retry_after = resp.headers.get("Retry-After")
                body = await self._read_body(resp)
        except TimeoutError as err:
            raise UpstreamUnavailable("Flow's session endpoint timed out") from err
        except aiohttp.ClientError as err:
            raise UpstreamUnavailable(f"could not reach Flow's session endpoint ({type(err).__name__})") from err
        finally:
            if url.host:
                jar.clear_domain(url.host)

        if status in (401, 403):
            raise CookiesExpired(f"Flow's session endpoint answered {status}: the cookies were refused; re-export them")
        if status == 429:
            raise RateLimited("Flow's session endpoint answered 429", retry_after=_retry_after(retry_after))
        if status >= 500:
            raise UpstreamUnavailable(f"Flow's session endpoint answered {status}")
        if status != 200:
            raise BadResponse(f"Flow's session endpoint answered {status}: its API may have changed")
        session = parse_session_body(body, content_type)
        updated = cookies.with_token(session.access_token.get_secret_value())
        try:
            updated = _apply_set_cookies(updated, _parse_set_cookies(set_cookies, self._clock()))
        except (CookieFileError, ValueError) as err:
            logger.warning("ignored cookies Flow set that cannot be stored (%s)", type(err).__name__)
        return session, updated

    @staticmethod
    async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > _MAX_SESSION_BODY:
                raise BadResponse("Flow's session response is larger than 1 MiB", field_path="$")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- the background refresher ----------------------------------------------------------------------

    async def run(self, *, on_error: Callable[[Exception], Awaitable[None]] | None = None) -> None:
        """Keep the token fresh forever: refresh at ``expires - margin``, back off on failures.

        Expired cookies are reported once through ``on_error``; then we wait for reload()/replace().
        A failure that is not retryable, or a token that expires while retries keep failing, is also
        reported once per streak. Cancel the task to stop it.
        """
        self._loaded()
        failures = 0
        reported = False
        while True:
            if self._expired is not None:
                await self._usable.wait()
                failures, reported = 0, False
                continue
            delay = self.seconds_until_refresh()
            if delay > 0:
                logger.debug("next Flow token refresh in %.0f s", delay)
                await self._sleep(delay)
                continue
            try:
                await self.refresh(force=True)
            except CookiesExpired as err:
                if self._expired is None:  # the cookies changed under us; just try again shortly
                    await self._sleep(self._backoff(1, None))
                    continue
                await self._report(on_error, err)
                continue
            except FlowError as err:
                failures += 1
                wait = self._backoff(failures, err.retry_after if isinstance(err, RateLimited) else None)
                logger.warning("Flow token refresh failed (%s); retrying in %.0f s", err, wait)
                token_dead = self.expires_at is not None and self._clock() >= self.expires_at
                if not reported and (not err.retryable or token_dead):
                    reported = True
                    await self._report(on_error, err)
                await self._sleep(wait)
                continue
            except Exception as err:
                failures += 1
                wait = self._backoff(failures, None)
                logger.exception("unexpected error while refreshing the Flow token; retrying in %.0f s", wait)
                if not reported:
                    reported = True
                    await self._report(on_error, err)
                await self._sleep(wait)
                continue
            failures, reported = 0, False

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        """Capped exponential backoff with full jitter (at least 1 s), never shorter than Retry-After."""
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** min(failures - 1, 30))
        wait = self._rng.uniform(min(1.0, ceiling), ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self._backoff_cap))
        return wait

    @staticmethod
    async def _report(on_error: Callable[[Exception], Awaitable[None]] | None, err: Exception) -> None:
        if on_error is None:
            return
        try:
            await on_error(err)
        except Exception:
            logger.exception("the credentials error handler failed")

    def __repr__(self) -> str:
        state = "expired" if self._expired else ("fresh" if self._session else "unrefreshed")
        return f"Credentials(path={str(self._path)!r}, account={mask_email(self.account_email)!r}, {state})"
