"""Flow credentials: the cookie file, and the refresher that turns its session cookie into a bearer token.

The session endpoint (``GET {labs_base}/fx/api/auth/session``) trades the NextAuth session cookie for a
short-lived OAuth access token. Refreshes are single-flight, their results are written back to the cookie
file atomically, and a background task keeps the token (and a rotated session cookie) fresh while the bot
idles. Three failures are told apart, because each asks for something different: dead cookies (an admin
re-exports them), a migrated account (nothing to re-export: use the Vertex AI backend) and an unreachable
session endpoint (an outage: wait). Nothing here logs or raises with a token or a cookie value in it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bot.backends.flow._cookies import AUTHORIZATION_ENTRY, SESSION_COOKIE, CookieFile
from bot.backends.flow._exchange import SESSION_PATH, exchange
from bot.backends.flow._refresher import ErrorHandler as ErrorHandler
from bot.backends.flow._refresher import Halt, RefreshLoop
from bot.backends.flow._refresher import RecoveryHandler as RecoveryHandler
from bot.backends.flow._session import Session, parse_session_body
from bot.backends.flow.errors import (
    AccountMigrated,
    CookieFileError,
    CookiesExpired,
    FlowError,
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

#: Never refresh more often than this on schedule, even when Flow hands out very short-lived tokens.
MIN_REFRESH_INTERVAL = 30.0
_RETIRED_SECRETS = 32


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# -- the credentials holder ------------------------------------------------------------------------------


class Credentials(RefreshLoop):
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
        # What stopped us (dead cookies or a migrated account) as (class, message), until reload()/replace().
        self._halt: tuple[type[Halt], str] | None = None
        self._usable = asyncio.Event()
        self._usable.set()
        self._halted = asyncio.Event()  # set while _halt is; wakes the refresher to report it
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
        return self._halt is not None and self._halt[0] is CookiesExpired

    @property
    def account_migrated(self) -> bool:
        """Whether the account was found moved to flow.google.com and nobody has loaded other cookies since."""
        return self._halt is not None and self._halt[0] is AccountMigrated

    def _halt_error(self) -> Halt | None:
        """A fresh exception for what stopped us (never re-raise one instance: tracebacks would pile up)."""
        if self._halt is None:
            return None
        kind, message = self._halt
        return kind(message)

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
        if (halt := self._halt_error()) is not None:
            raise halt
        if not self._needs_refresh():
            return cookies.bearer
        now = self._clock()
        still_valid = self._session is not None and now < self._session.expires_at
        if still_valid and self._retry_at is not None and now < self._retry_at:
            return cookies.bearer  # a refresh failed moments ago; the token has not expired yet
        try:
            await self.refresh()
        except (CookiesExpired, AccountMigrated):
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
            except (CookiesExpired, AccountMigrated) as err:
                if self._cookies is cookies:
                    self._mark_halted(err)
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
        if (halt := self._halt_error()) is not None:
            raise halt
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
        if self._halt is not None:
            logger.info("Flow credentials work again")
        self._halt = None
        self._halted.clear()
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

    def _mark_halted(self, err: Halt) -> None:
        """Stop using these cookies until reload()/replace(): no request goes out for them meanwhile."""
        if self._halt is None or self._halt[0] is not type(err):
            if isinstance(err, AccountMigrated):
                logger.error("Flow account migrated: %s", err)
            else:
                logger.warning("Flow cookies expired: %s", err)
        self._halt = (type(err), str(err))
        self._usable.clear()
        self._halted.set()

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
        return await exchange(self._http, self._labs_base, cookies, client_timeout=self._timeout, clock=self._clock)

    def __repr__(self) -> str:
        if self._halt is not None:
            state = "migrated" if self.account_migrated else "expired"
        else:
            state = "fresh" if self._session else "unrefreshed"
        return f"Credentials(path={str(self._path)!r}, account={mask_email(self.account_email)!r}, {state})"
