"""The background refresher of Credentials: ``run()`` keeps the token fresh, naps, backs off and reports."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.backends.flow.errors import AccountMigrated, CookiesExpired, FlowError, RateLimited

if TYPE_CHECKING:
    from bot.backends.flow._cookies import CookieFile
    from bot.backends.flow._session import Session

# Logged under the public module's name, as before the split, so log filters keep matching.
logger = logging.getLogger("bot.backends.flow.credentials")

#: What stops the refresher until reload()/replace(): dead cookies, or an account that moved away.
Halt = CookiesExpired | AccountMigrated
ErrorHandler = Callable[[Exception], Awaitable[None]]
RecoveryHandler = Callable[[], Awaitable[None]]


class RefreshLoop:
    """Mixed into Credentials, whose state it reads: the refresh loop lives here to keep that class short."""

    _halt: tuple[type[Halt], str] | None
    _halted: asyncio.Event
    _usable: asyncio.Event
    _clock: Callable[[], float]
    _sleep: Callable[[float], Awaitable[None]]
    _rng: random.Random
    _backoff_base: float
    _backoff_cap: float

    if TYPE_CHECKING:

        @property
        def expires_at(self) -> float | None: ...

        def _loaded(self) -> CookieFile: ...

        def _halt_error(self) -> Halt | None: ...

        def seconds_until_refresh(self) -> float: ...

        async def refresh(self, *, force: bool = False) -> Session: ...

    async def run(self, *, on_error: ErrorHandler | None = None, on_recovered: RecoveryHandler | None = None) -> None:
        """Keep the token fresh forever: refresh at ``expires - margin``, back off on failures.

        ``on_error`` hears, once each: dead cookies or a migrated account (found here or by any caller's
        refresh; then nothing is retried until reload()/replace()), and, once per streak, a failure that is
        not retryable or one that outlives the token (an unreachable session endpoint is a SessionUnreachable,
        an outage, never a CookiesExpired). ``on_recovered`` is called when a refresh succeeds after a
        reported failure, and on the first success of the run (a hold left from before a restart is stale
        once credentials work), so the caller can lift a hold it placed. Cancel the task to stop it.
        """
        self._loaded()
        failures = 0
        reported = False  # a failure of this streak went to on_error
        owed = True  # on_recovered is due at the next success
        while True:
            if (halt := self._halt_error()) is not None:
                await self._report(on_error, halt)
                await self._usable.wait()  # reload()/replace() switched to credentials that work
                failures, reported = 0, False
                await self._recovered(on_recovered)
                owed = False
                continue
            delay = self.seconds_until_refresh()
            if delay > 0:
                logger.debug("next Flow token refresh in %.0f s", delay)
                await self._nap(delay)
                continue
            try:
                await self.refresh(force=True)
            except (CookiesExpired, AccountMigrated):
                if self._halt is None:  # the cookies changed under us; just try again shortly
                    await self._nap(self._backoff(1, None))
                continue  # reported at the top of the loop
            except FlowError as err:
                failures += 1
                wait = self._backoff(failures, err.retry_after if isinstance(err, RateLimited) else None)
                logger.warning("Flow token refresh failed (%s); retrying in %.0f s", err, wait)
                token_dead = self.expires_at is not None and self._clock() >= self.expires_at
                if not reported and (not err.retryable or token_dead):
                    reported = owed = True
                    await self._report(on_error, err)
                await self._nap(wait)
                continue
            except Exception as err:
                failures += 1
                wait = self._backoff(failures, None)
                logger.exception("unexpected error while refreshing the Flow token; retrying in %.0f s", wait)
                if not reported:
                    reported = owed = True
                    await self._report(on_error, err)
                await self._nap(wait)
                continue
            failures, reported = 0, False
            if owed:
                owed = False
                await self._recovered(on_recovered)

    async def _nap(self, seconds: float) -> None:
        """Sleep, but wake as soon as a caller's refresh finds the cookies dead or the account migrated."""
        if self._halted.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._halted.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            # Children's cancellations come back as results; a cancel of this task still propagates.
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    @staticmethod
    async def _recovered(on_recovered: RecoveryHandler | None) -> None:
        if on_recovered is None:
            return
        try:
            await on_recovered()
        except Exception:
            logger.exception("the credentials recovery handler failed")

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        """Capped exponential backoff with full jitter (at least 1 s), never shorter than Retry-After."""
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** min(failures - 1, 30))
        wait = self._rng.uniform(min(1.0, ceiling), ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self._backoff_cap))
        return wait

    @staticmethod
    async def _report(on_error: ErrorHandler | None, err: Exception) -> None:
        if on_error is None:
            return
        try:
            await on_error(err)
        except Exception:
            logger.exception("the credentials error handler failed")
