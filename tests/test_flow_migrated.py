"""Issue 11.4: the Flow backend recognises an account that moved to flow.google.com (flow-api.md §0).

The real Credentials and FlowClient against the Flow emulator's migrated mode; the verdict rules on their own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.backends import errors as be
from bot.backends.flow._session import MIGRATED_MESSAGE, migration_verdict
from bot.backends.flow.client import FlowClient
from bot.backends.flow.credentials import Credentials
from bot.backends.flow.errors import AccountMigrated, CookiesExpired
from bot.messages import ADMIN_ALERTS, PAUSE_REASONS, flow_error_text
from tests.fakes.flow_emulator import Fault, FlowEmulator
from tests.test_credentials import Clock, StepSleep


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def emu(clock: Clock) -> AsyncIterator[FlowEmulator]:
    async with FlowEmulator(clock=clock) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def cookie_path(tmp_path: Path, emu: FlowEmulator) -> Path:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    return path


async def make_creds(
    emu: FlowEmulator, http: aiohttp.ClientSession, path: Path, clock: Clock, **kw: object
) -> Credentials:
    creds = Credentials(path, http, labs_base=emu.labs_base, clock=clock, rng=random.Random(5), **kw)  # type: ignore[arg-type]
    await creds.load()
    return creds


@pytest.mark.parametrize(
    ("status", "location", "migrated"),
    [
        (308, "https://flow.google.com/tools/flow", True),
        (301, "https://flow.google.com/", True),
        (302, "https://www.flow.google.com/x", True),
        (308, "https://FLOW.GOOGLE.COM./", True),
        (302, "/fx/api/auth/signin?callbackUrl=%2Ffx%2Ftools%2Fflow", False),
        (307, "https://accounts.google.com/ServiceLogin", False),
        (308, "https://flow.google.com.example.net/", False),
        (308, "https://example.net/?next=https://flow.google.com/", False),
        (200, "https://flow.google.com/", False),
        (308, None, False),
        (404, None, False),
        (0, None, False),
    ],
)
def test_migration_verdict(status: int, location: str | None, migrated: bool) -> None:
    verdict = migration_verdict(status, location)
    assert isinstance(verdict, AccountMigrated if migrated else CookiesExpired)


async def test_migrated_account_is_its_own_error_and_is_never_asked_again(
    emu: FlowEmulator, http: aiohttp.ClientSession, cookie_path: Path, clock: Clock
) -> None:
    before = cookie_path.read_bytes()
    emu.migrate_account()
    creds = await make_creds(emu, http, cookie_path, clock)
    with pytest.raises(AccountMigrated) as caught:
        await creds.bearer()
    assert str(caught.value) == MIGRATED_MESSAGE
    assert isinstance(caught.value, be.AccountMigrated) and not caught.value.retryable
    assert not isinstance(caught.value, be.CredentialsDead)  # no cookie export will fix it
    assert creds.account_migrated and not creds.cookies_expired
    (probe,) = emu.calls("tools")
    assert "cookie" in probe.headers  # the page redirects per account, so it is asked with the cookies
    assert cookie_path.read_bytes() == before
    for attempt in (creds.bearer(), creds.token_rejected(creds._loaded().bearer)):  # what client calls use
        with pytest.raises(AccountMigrated):
            await attempt
    assert len(emu.calls("session")) == 1 and len(emu.calls("tools")) == 1
    with pytest.raises(AccountMigrated):  # an explicit refresh (start-up, `check`) does ask again
        await creds.refresh(force=True)
    assert "migrated" in repr(creds)


@pytest.mark.parametrize("arrange", ["kill_session", "sign_in_redirect", "empty_once", "probe_fails"])
async def test_an_empty_session_that_is_not_a_migration_is_expired_cookies(
    emu: FlowEmulator, http: aiohttp.ClientSession, cookie_path: Path, clock: Clock, arrange: str
) -> None:
    if arrange in ("kill_session", "sign_in_redirect"):
        emu.kill_session()
        emu.tool_page_signs_in = arrange == "sign_in_redirect"
    elif arrange == "empty_once":
        emu.inject("session", Fault.empty_session())
    else:  # the probe cannot tell: an empty session still means what it meant before the migration
        emu.inject("session", Fault.empty_session())
        emu.inject("tools", Fault.server_error(503))
    creds = await make_creds(emu, http, cookie_path, clock)
    with pytest.raises(CookiesExpired, match="session is empty"):
        await creds.bearer()
    assert creds.cookies_expired and not creds.account_migrated
    assert len(emu.calls("tools")) == 1


async def test_a_refresh_needed_session_is_not_probed(
    emu: FlowEmulator, http: aiohttp.ClientSession, cookie_path: Path, clock: Clock
) -> None:
    emu.migrate_account()  # even for a migrated account: an `error` body is a different answer
    emu.inject("session", Fault.refresh_needed())
    creds = await make_creds(emu, http, cookie_path, clock)
    with pytest.raises(CookiesExpired, match="ACCESS_TOKEN_REFRESH_NEEDED"):
        await creds.bearer()
    assert emu.calls("tools") == []


async def test_client_calls_meet_the_migration_through_a_401(
    emu: FlowEmulator, http: aiohttp.ClientSession, cookie_path: Path, clock: Clock
) -> None:
    creds = await make_creds(emu, http, cookie_path, clock)
    client = FlowClient(http, creds, api_base=emu.api_base, labs_base=emu.labs_base)
    assert (await client.credits()).credits == emu.credits
    emu.migrate_account()
    with pytest.raises(AccountMigrated):
        await client.credits()  # 401 -> one refresh -> empty session -> 308 to flow.google.com
    with pytest.raises(AccountMigrated):
        await client.credits()
    assert len(emu.calls("credits")) == 2  # the second call never left the bot
    assert len(emu.calls("session")) == 2 and len(emu.calls("tools")) == 1


async def test_emulator_migrated_routes(emu: FlowEmulator, http: aiohttp.ClientSession, cookie_path: Path) -> None:
    emu.migrate_account()
    cookie = f"__Secure-next-auth.session-token={emu.session_cookie}"
    async with http.get(f"{emu.labs_base}/fx/api/auth/session", headers={"Cookie": cookie}) as resp:
        assert resp.status == 200 and await resp.json() == {}
    async with http.get(f"{emu.labs_base}/fx/tools/flow", allow_redirects=False) as resp:
        assert resp.status == 308 and resp.headers["Location"].startswith("https://flow.google.com/")
    async with http.get(f"{emu.api_base}/v1/credits", headers={"authorization": f"Bearer {emu.issue_token()}"}) as r:
        assert r.status == 401
    url = f"{emu.labs_base}/fx/api/trpc/project.createProject"
    body = {"json": {"projectTitle": "x", "toolName": "PINHOLE"}}
    async with http.post(url, json=body, headers={"Cookie": cookie}) as r:
        assert r.status == 404
    emu.migrate_account(False)
    async with http.get(f"{emu.labs_base}/fx/tools/flow", allow_redirects=False) as resp:
        assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]


async def test_refresher_reports_a_migration_once_then_waits_for_other_credentials(
    emu: FlowEmulator, http: aiohttp.ClientSession, cookie_path: Path, clock: Clock, tmp_path: Path
) -> None:
    sleep = StepSleep(clock)
    errors: list[Exception] = []
    reported = asyncio.Event()
    recovered: list[int] = []

    async def on_error(err: Exception) -> None:
        errors.append(err)
        reported.set()

    async def on_recovered() -> None:
        recovered.append(1)

    creds = await make_creds(emu, http, cookie_path, clock, sleep=sleep)
    task = asyncio.create_task(creds.run(on_error=on_error, on_recovered=on_recovered))
    try:
        await sleep.next()  # the first refresh worked; the refresher naps until the next one
        assert recovered == [1]
        emu.migrate_account()
        emu.expire_tokens()
        with pytest.raises(AccountMigrated):  # a caller meets the migration mid-nap...
            await creds.token_rejected(creds._loaded().bearer)
        await asyncio.wait_for(reported.wait(), 5)  # ...and the refresher wakes to report it, once
        assert [type(e) for e in errors] == [AccountMigrated]
        sessions = len(emu.calls("session"))
        await asyncio.sleep(0)
        assert len(emu.calls("session")) == sessions  # not retried
        assert sleep.requests.qsize() <= 1  # at most the cancelled nap; no backoff sleeps

        emu.migrate_account(False)  # an admin uploads the export of an account that still works
        upload = tmp_path / "upload.json"
        emu.write_cookie_file(upload)
        await creds.replace(upload.read_bytes())
        for _ in range(3):
            await asyncio.sleep(0)
        assert recovered == [1, 1]
        assert [type(e) for e in errors] == [AccountMigrated]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_wording_points_to_vertex_ai() -> None:
    text = flow_error_text(AccountMigrated(MIGRATED_MESSAGE))
    assert text.startswith("This Flow account moved to flow.google.com, which the bot cannot drive")
    assert "use the Vertex AI backend (set GOOGLE_CLOUD_PROJECT)" in text
    assert "moved to flow.google.com" in ADMIN_ALERTS["migrated"] and "Vertex AI" in ADMIN_ALERTS["migrated"]
    assert "flow.google.com" in PAUSE_REASONS["migrated"]
