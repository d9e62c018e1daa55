"""Issue 15.1: an unreachable session endpoint is an outage, not dead cookies, and recovery is announced.

The real Credentials refresher against the Flow emulator with faults on the session endpoint, on an injected
clock and sleep, so "long enough for the token to expire" takes no wall time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.backends import errors as be
from bot.backends.flow.credentials import Credentials
from bot.backends.flow.errors import CookiesExpired, SessionUnreachable
from tests.fakes.flow_emulator import Fault, FlowEmulator
from tests.test_credentials import Clock, StepSleep


class Refresher:
    """The background refresher, with what it reported recorded."""

    def __init__(self, creds: Credentials, sleep: StepSleep) -> None:
        self.creds = creds
        self.sleep = sleep
        self.errors: list[Exception] = []
        self.reported = asyncio.Event()
        self.recoveries = 0
        self.task: asyncio.Task[None] | None = None

    async def _on_error(self, err: Exception) -> None:
        self.errors.append(err)
        self.reported.set()

    async def _on_recovered(self) -> None:
        self.recoveries += 1

    def start(self) -> None:
        self.task = asyncio.create_task(self.creds.run(on_error=self._on_error, on_recovered=self._on_recovered))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task


@pytest.fixture
async def emu(clock: Clock) -> AsyncIterator[FlowEmulator]:
    async with FlowEmulator(clock=clock) as emulator:
        yield emulator


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def refresher(emu: FlowEmulator, clock: Clock, tmp_path: Path) -> AsyncIterator[Refresher]:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    sleep = StepSleep(clock)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        creds = Credentials(
            path,
            http,
            labs_base=emu.labs_base,
            clock=clock,
            sleep=sleep,
            rng=random.Random(3),
            backoff_base=2.0,
            backoff_cap=120.0,
        )
        await creds.load()
        running = Refresher(creds, sleep)
        running.start()
        try:
            yield running
        finally:
            await running.stop()


async def _until_reported(r: Refresher, limit: int = 50) -> int:
    """Let backoff sleeps pass until the refresher reports something; returns how many it took."""
    for steps in range(1, limit + 1):
        await r.sleep.next()
        if r.errors:
            return steps
        r.sleep.release()
    raise AssertionError("the refresher never reported the failure")


async def test_unreachable_session_endpoint_is_reported_as_an_outage_and_recovery_is_announced(
    refresher: Refresher, emu: FlowEmulator, clock: Clock
) -> None:
    r = refresher
    assert await r.sleep.next() == pytest.approx(emu.token_lifetime - 300, abs=1)  # first refresh worked
    assert r.recoveries == 1  # the first success since start: a hold left from before may go
    expires_at = r.creds.expires_at
    assert expires_at is not None

    emu.inject("session", Fault.server_error(503), times=None)  # labs.google's sign-in service goes down
    r.sleep.release()
    await _until_reported(r)
    assert clock.now >= expires_at  # reported only once the token had run out
    (err,) = r.errors
    assert isinstance(err, SessionUnreachable) and isinstance(err, be.Unavailable)
    assert not isinstance(err, be.CredentialsDead)  # not "the cookies expired": they did not
    assert not r.creds.cookies_expired
    with pytest.raises(SessionUnreachable):
        await r.creds.bearer()

    emu.clear_faults()  # the outage ends: the next retry works without anyone reloading anything
    r.sleep.release()
    assert await r.sleep.next() == pytest.approx(emu.token_lifetime - 300, abs=1)
    assert r.recoveries == 2  # told once that credentials work again
    assert r.errors == [err]
    token = await r.creds.bearer()
    async with aiohttp.ClientSession() as http:
        headers = {"authorization": f"Bearer {token}"}
        async with http.get(f"{emu.api_base}/v1/credits", headers=headers) as resp:
            assert resp.status == 200
    r.sleep.release()
    assert await r.sleep.next() == pytest.approx(emu.token_lifetime - 300, abs=1)
    assert r.recoveries == 2  # a routine refresh is not a recovery


@pytest.mark.parametrize("fault", [Fault.disconnect(), Fault.hang()], ids=["disconnect", "timeout"])
async def test_dropped_or_timed_out_session_requests_are_an_outage_too(
    emu: FlowEmulator, clock: Clock, tmp_path: Path, fault: Fault
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    async with aiohttp.ClientSession() as http:
        creds = Credentials(path, http, labs_base=emu.labs_base, clock=clock, request_timeout=0.2)
        await creds.load()
        emu.inject("session", fault, times=None)
        with pytest.raises(SessionUnreachable):
            await creds.refresh()
        assert not creds.cookies_expired
        emu.clear_faults()
        emu.release_hung()


async def test_a_dead_session_during_the_streak_is_still_reported_as_expired_cookies(
    refresher: Refresher, emu: FlowEmulator
) -> None:
    r = refresher
    await r.sleep.next()
    emu.inject("session", Fault.server_error(502), times=2)
    emu.kill_session()
    r.sleep.release()
    for _ in range(2):
        await r.sleep.step()
    await asyncio.wait_for(r.reported.wait(), 5)  # the third attempt reaches the (dead) session
    await asyncio.sleep(0)
    assert [type(e) for e in r.errors] == [CookiesExpired]
    assert r.creds.cookies_expired
    assert r.sleep.requests.empty()  # waiting for a reload, not retrying
