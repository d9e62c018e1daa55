"""Flow credentials: the cookie file, its atomic rewrite, and the token refresher over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.backends.flow.credentials import (
    SESSION_COOKIE,
    CookieFile,
    Credentials,
    Session,
    parse_session_body,
)
from bot.backends.flow.errors import (
    BadResponse,
    CookieFileError,
    CookiesExpired,
    FlowError,
    RateLimited,
    SessionUnreachable,
)
from bot.backends.flow.redact import mask_email
from tests.fakes.flow_emulator import Fault, FlowEmulator

CAPTURES = Path("/work/shared/flow-captures")
if not CAPTURES.is_dir():  # a fresh clone keeps the captures next to the repo, when at all
    CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "flow-captures"

TOKEN = "ya29.a0-FILE-TOKEN-d41d8cd98f00b204e9800998ecf8427e"
SESSION_VALUE = "eyJhbGciOiJkaXIi.SESSION-COOKIE-VALUE-7f3a9c.b64"
CHUNK0 = "eyJhbGciOiJkaXIi.CHUNK-ZERO-VALUE-19ab27"
CHUNK1 = "CHUNK-ONE-VALUE-8e1f0c.tail"
OTHER_VALUE = "NID-OTHER-COOKIE-VALUE-5521"
SECRETS = (TOKEN, SESSION_VALUE, CHUNK0, CHUNK1, OTHER_VALUE)
ACCEPTED = {SESSION_VALUE, CHUNK0 + CHUNK1}
LABS_HOST = "labs.google"


# -- cookie exports --------------------------------------------------------------------------------------


def list_export(*, chunked: bool = False, token: str = TOKEN) -> list[dict[str, Any]]:
    """A browser-extension style export with fields and entries we do not know about."""

    def cookie(name: str, value: str, **extra: Any) -> dict[str, Any]:
        return {
            "domain": LABS_HOST,
            "expirationDate": 1893456000.5,
            "hostOnly": True,
            "httpOnly": True,
            "name": name,
            "path": "/",
            "sameSite": "lax",
            "secure": True,
            "session": False,
            "storeId": "0",
            "value": value,
            **extra,
        }

    session = (
        [cookie(f"{SESSION_COOKIE}.0", CHUNK0), cookie(f"{SESSION_COOKIE}.1", CHUNK1)]
        if chunked
        else [cookie(SESSION_COOKIE, SESSION_VALUE, id=7)]
    )
    return [
        cookie("__Host-next-auth.csrf-token", "csrf-token-value-0001", partitionKey={"topLevelSite": "x"}),
        *session,
        {"name": "authorization", "value": f"Bearer {token}", "note": "added by hand"},
        cookie("NID", OTHER_VALUE, domain=".google.com", hostOnly=False),
        cookie("_ga", "GA1.1.12345"),
    ]


def object_export(*, chunked: bool = False) -> dict[str, str]:
    session = (
        {f"{SESSION_COOKIE}.0": CHUNK0, f"{SESSION_COOKIE}.1": CHUNK1} if chunked else {SESSION_COOKIE: SESSION_VALUE}
    )
    return {"_ga": "GA1.1.12345", **session, "authorization": f"Bearer {TOKEN}", "NID": OTHER_VALUE}


def dump(raw: Any) -> bytes:
    return json.dumps(raw, indent=2).encode()


def write_export(path: Path, raw: Any) -> bytes:
    data = dump(raw)
    path.write_bytes(data)
    path.chmod(0o600)
    return data


def no_secrets_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# -- malformed cookie files ------------------------------------------------------------------------------


def _entries_with(*changes: tuple[int, dict[str, Any] | None]) -> bytes:
    entries: list[Any] = list_export()
    for index, replacement in changes:
        entries[index] = replacement
    return dump([e for e in entries if e is not None])


MALFORMED: list[tuple[str, bytes, str]] = [
    ("not_json", b'[{"name": "a", "value": "' + SESSION_VALUE.encode() + b'",]', "is not valid JSON (line 1"),
    ("binary_not_utf8", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" + TOKEN.encode(), "is not UTF-8 text"),
    ("binary_utf8_not_json", b"\x00\x01\x02" + TOKEN.encode(), "is not valid JSON"),
    ("empty_file", b"  \n\t", "is empty"),
    ("netscape_cookies_txt", b"# Netscape HTTP Cookie File\n.labs.google\tTRUE\t/\tTRUE\t0\tx\ty\n", "Netscape"),
    ("top_level_string", dump(TOKEN), "not text"),
    ("top_level_number", b"42", "not a number"),
    ("top_level_null", b"null", "not null"),
    ("empty_list", b"[]", "holds no cookies (an empty list)"),
    ("empty_object", b"{}", "holds no cookies (an empty object)"),
    ("entry_not_object", dump([*list_export(), TOKEN]), "entry 6 is text, not a cookie object"),
    ("entry_is_list", dump([[SESSION_COOKIE, SESSION_VALUE], *list_export()]), "entry 1 is a list"),
    ("name_missing", _entries_with((0, {"value": SESSION_VALUE})), "entry 1 has no 'name'"),
    ("name_wrong_type", _entries_with((0, {"name": 3, "value": SESSION_VALUE})), "has a 'name' that is a number"),
    ("value_missing", _entries_with((3, {"name": "NID"})), "entry 4 (cookie 'NID') has no 'value'"),
    ("value_wrong_type", _entries_with((3, {"name": "NID", "value": ["x"]})), "'value' that is a list"),
    ("authorization_value_wrong_type", _entries_with((2, {"name": "authorization", "value": 1})), "is a number"),
    ("object_value_wrong_type", dump({**object_export(), "NID": {"v": OTHER_VALUE}}), "cookie 'NID' has a value that"),
    ("no_session_cookie", _entries_with((1, None)), "has no session cookie"),
    ("empty_session_cookie", _entries_with((1, {"name": SESSION_COOKIE, "value": ""})), "is empty: export"),
    ("no_authorization", _entries_with((2, None)), "has no 'authorization' entry"),
    (
        "authorization_without_bearer",
        _entries_with((2, {"name": "authorization", "value": TOKEN})),
        "must start with 'Bearer '",
    ),
    (
        "authorization_empty_token",
        _entries_with((2, {"name": "authorization", "value": "Bearer   "})),
        "has 'Bearer ' but no token",
    ),
    (
        "authorization_token_with_space",
        _entries_with((2, {"name": "authorization", "value": f"Bearer {TOKEN} {TOKEN}"})),
        "contains spaces",
    ),
    (
        "two_authorization_entries",
        dump([*list_export(), {"name": "Authorization", "value": f"Bearer {TOKEN}"}]),
        "has 2 'authorization' entries",
    ),
    (
        "value_breaks_cookie_header",
        _entries_with((3, {"name": "NID", "value": f"{OTHER_VALUE}; evil=1"})),
        "cannot be sent in a Cookie header",
    ),
    ("name_breaks_cookie_header", _entries_with((3, {"name": "N ID", "value": "1"})), "has a name that cannot"),
    ("over_1_mib", dump([*list_export(), {"name": "big", "value": "x" * (1024 * 1024)}]), "larger than 1 MiB"),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_cookie_file_is_one_clear_line(data: bytes, expected: str) -> None:
    with pytest.raises(CookieFileError) as caught:
        CookieFile.parse(data, source="cookie file x.json")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("cookie file x.json")
    assert "\n" not in message
    no_secrets_in(message)
    assert caught.value.__cause__ is None  # a decode error's context would carry the document


def test_malformed_messages_are_distinct() -> None:
    messages = set()
    for _name, data, _expected in MALFORMED:
        with pytest.raises(CookieFileError) as caught:
            CookieFile.parse(data)
        messages.add(str(caught.value))
    assert len(messages) == len(MALFORMED)


async def test_load_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(CookieFileError, match=r"nope\.json does not exist"):
        await CookieFile.load(path)


async def test_load_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CookieFileError, match="is a directory") as caught:
        await CookieFile.load(tmp_path)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
async def test_load_unreadable_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "cookie.json"
    write_export(path, list_export())
    path.chmod(0o000)
    with pytest.raises(CookieFileError, match="permission denied") as caught:
        await CookieFile.load(path)
    assert str(path) in str(caught.value)


async def test_load_permission_denied_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cookie.json"
    write_export(path, list_export())

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)  # works when the tests run as root, unlike chmod 000
    with pytest.raises(CookieFileError, match="permission denied") as caught:
        await CookieFile.load(path)
    assert str(path) in str(caught.value)


async def test_load_fifo_is_not_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "cookie.json"
    os.mkfifo(path)
    with pytest.raises(CookieFileError, match="is not a regular file"):
        await CookieFile.load(path)  # and does not block reading it


async def test_load_file_over_1_mib_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "cookie.json"
    path.write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(CookieFileError, match="larger than 1 MiB") as caught:
        await CookieFile.load(path)
    assert str(path) in str(caught.value)


async def test_load_malformed_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "cookie.json"
    path.write_bytes(b"[]")
    with pytest.raises(CookieFileError, match=f"cookie file {path} holds no cookies"):
        await CookieFile.load(path)


# -- accepted formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["list", "object"])
@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "chunked"])
def test_both_formats_whole_and_chunked_are_accepted(fmt: str, chunked: bool) -> None:
    raw = list_export(chunked=chunked) if fmt == "list" else object_export(chunked=chunked)
    cookies = CookieFile.parse(dump(raw))
    assert cookies.format == fmt
    assert cookies.bearer == TOKEN
    header = cookies.cookie_header()
    if chunked:
        assert f"{SESSION_COOKIE}.0={CHUNK0}; {SESSION_COOKIE}.1={CHUNK1}" in header
    else:
        assert f"{SESSION_COOKIE}={SESSION_VALUE}" in header
    assert f"NID={OTHER_VALUE}" in header
    assert "authorization" not in header.lower()
    assert TOKEN not in header


def test_utf8_bom_and_lowercase_bearer_are_accepted() -> None:
    raw = object_export()
    raw["authorization"] = f"bearer  {TOKEN} "
    cookies = CookieFile.parse(b"\xef\xbb\xbf" + dump(raw))
    assert cookies.bearer == TOKEN


def test_repr_shows_names_not_values() -> None:
    text = repr(CookieFile.parse(dump(list_export())))
    assert "NID" in text
    no_secrets_in(text)


def test_cookie_file_is_immutable() -> None:
    cookies = CookieFile.parse(dump(list_export()))
    with pytest.raises(AttributeError):
        cookies._format = "object"  # type: ignore[misc]
    with pytest.raises(TypeError):
        CookieFile()


@pytest.mark.parametrize("fmt", ["list", "object"])
def test_round_trip_keeps_every_entry_field_and_order(fmt: str) -> None:
    raw = list_export() if fmt == "list" else object_export()
    cookies = CookieFile.parse(dump(raw))
    assert json.loads(cookies.to_bytes()) == raw
    updated = json.loads(cookies.with_token("ya29.new-token").to_bytes())
    if fmt == "list":
        assert [list(e) for e in updated] == [list(e) for e in raw]
        assert updated[2] == {**raw[2], "value": "Bearer ya29.new-token"}
        assert updated[:2] + updated[3:] == raw[:2] + raw[3:]
    else:
        assert list(updated) == list(raw)
        assert updated == {**raw, "authorization": "Bearer ya29.new-token"}


def test_with_cookies_updates_in_place_and_appends_new() -> None:
    raw = list_export()
    cookies = CookieFile.parse(dump(raw)).with_cookies({"NID": "nid-2", "fresh": "f-1"}, expires={"NID": 2e9})
    out = json.loads(cookies.to_bytes())
    assert [e["name"] for e in out] == [e["name"] for e in raw] + ["fresh"]
    assert out[3] == {**raw[3], "value": "nid-2", "expirationDate": 2e9}
    assert out[-1]["value"] == "f-1"
    assert out[-1]["domain"] == LABS_HOST  # placed where the export's cookies live
    with pytest.raises(ValueError, match="with_token"):
        cookies.with_cookies({"authorization": "Bearer x"})


def test_session_rename_whole_to_chunked_keeps_position_and_fields() -> None:
    raw = list_export()
    cookies = CookieFile.parse(dump(raw)).with_session_cookies(
        {f"{SESSION_COOKIE}.1": "new-b", f"{SESSION_COOKIE}.0": "new-a"}
    )
    out = json.loads(cookies.to_bytes())
    names = [e["name"] for e in out]
    assert names == [raw[0]["name"], f"{SESSION_COOKIE}.0", f"{SESSION_COOKIE}.1", *[e["name"] for e in raw[2:]]]
    assert out[1] == {**raw[1], "name": f"{SESSION_COOKIE}.0", "value": "new-a"}
    assert list(out[2]) == list(raw[1])
    assert cookies.session_cookies() == {f"{SESSION_COOKIE}.0": "new-a", f"{SESSION_COOKIE}.1": "new-b"}


def test_session_rename_chunked_to_whole() -> None:
    cookies = CookieFile.parse(dump(object_export(chunked=True))).with_session_cookies({SESSION_COOKIE: "whole"})
    out = json.loads(cookies.to_bytes())
    assert list(out) == ["_ga", SESSION_COOKIE, "authorization", "NID"]


# -- atomic save -----------------------------------------------------------------------------------------


def _stray_files(folder: Path, keep: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p != keep)


async def test_save_is_0600_and_keeps_unknown_entries(tmp_path: Path) -> None:
    path = tmp_path / "cookie.json"
    path.write_bytes(dump(list_export()))
    path.chmod(0o644)
    cookies = CookieFile.parse(path.read_bytes()).with_token("ya29.saved")
    await cookies.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    out = json.loads(path.read_bytes())
    assert out == json.loads(cookies.to_bytes())
    assert out[0]["partitionKey"] == {"topLevelSite": "x"}
    assert out[2]["note"] == "added by hand"
    assert _stray_files(tmp_path, path) == []


async def test_save_new_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    old = os.umask(0)
    try:
        await CookieFile.parse(dump(object_export())).save(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600


async def test_save_through_a_symlink_updates_the_target(tmp_path: Path) -> None:
    real = tmp_path / "secrets" / "cookie.json"
    real.parent.mkdir()
    real.write_bytes(dump(object_export()))
    link = tmp_path / "cookie.json"
    link.symlink_to(real)
    await CookieFile.parse(link.read_bytes()).with_token("ya29.linked").save(link)
    assert link.is_symlink()
    assert CookieFile.parse(real.read_bytes()).bearer == "ya29.linked"


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
async def test_save_failing_midway_leaves_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / "cookie.json"
    original = write_export(path, list_export())

    def boom(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, step, boom)
    with pytest.raises(CookieFileError, match="No space left on device") as caught:
        await CookieFile.parse(original).with_token("ya29.never-written").save(path)
    monkeypatch.undo()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == original
    assert _stray_files(tmp_path, path) == []


# -- a local session endpoint ----------------------------------------------------------------------------


class Clock:
    """An injected clock; sleeping on it only advances it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class StepSleep:
    """An injected sleep that holds each request until the test lets that much time pass."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.requests: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()
        self.held: tuple[float, asyncio.Future[None]] | None = None

    async def __call__(self, delay: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.requests.put((delay, done))
        await done

    async def next(self) -> float:
        """Wait until the code under test sleeps; hold it there and return how long it asked for."""
        assert self.held is None, "release() the previous sleep first"
        self.held = await asyncio.wait_for(self.requests.get(), 5)
        return self.held[0]

    def release(self) -> None:
        """Let the held sleep's time pass on the clock, and wake the sleeper."""
        assert self.held is not None
        delay, done = self.held
        self.held = None
        self.clock.now += delay
        done.set_result(None)

    async def step(self) -> float:
        delay = await self.next()
        self.release()
        return delay


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SessionEndpoint:
    """``GET /fx/api/auth/session`` as NextAuth answers it, with switches for each failure we classify."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lifetime = 3600.0
        self.mode = "ok"
        self.status = 200
        self.set_cookies: list[str] = []
        self.same_token = False
        self.gate: asyncio.Event | None = None
        self.calls: list[dict[str, str]] = []
        self.issued: list[str] = []
        self.accepted = set(ACCEPTED)
        self.runner: web.AppRunner | None = None
        self.labs_base = ""
        self.closing = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/fx/api/auth/session", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.labs_base = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self.closing.set()
        if self.runner is not None:
            await self.runner.cleanup()

    def _session_value(self, request: web.Request) -> str:
        chunks = sorted(
            (name for name in request.cookies if name.startswith(f"{SESSION_COOKIE}.")),
            key=lambda n: int(n.rsplit(".", 1)[1]),
        )
        if chunks:
            return "".join(request.cookies[n] for n in chunks)
        return request.cookies.get(SESSION_COOKIE, "")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(dict(request.headers))
        if self.gate is not None:
            await self.gate.wait()
        if self.mode == "hang":
            await self.closing.wait()
        if self.status != 200:
            return web.json_response({"message": "nope"}, status=self.status, headers={"Retry-After": "7"})
        user = {"name": "Example User", "email": "someone@example.com", "image": "https://x/a.png"}
        stale = "ya29.STALE-TOKEN-in-refresh-needed"
        bodies: dict[str, Any] = {
            "empty": {},
            "null": None,
            "no_token": {"user": user, "expires": iso(self.clock.now + 60)},
            "no_email": {"user": {"name": "x"}, "expires": iso(self.clock.now + 60), "access_token": stale},
            "refresh_needed": {
                "user": {"email": "someone@example.com"},
                "access_token": stale,
                "expires": "2000-01-01T00:00:00Z",
                "error": "ACCESS_TOKEN_REFRESH_NEEDED",
            },
            "bad_expires": {"user": user, "expires": "soon", "access_token": stale},
        }
        if self.mode == "html":
            return web.Response(text="<!DOCTYPE html><html>Sign in</html>", content_type="text/html")
        if self.mode == "garbage":
            return web.Response(text='{"user": ', content_type="application/json")
        if self.mode in bodies:
            return web.json_response(bodies[self.mode])
        if self._session_value(request) not in self.accepted:
            return web.json_response({})
        if self.same_token and self.issued:
            token = self.issued[-1]
        else:
            token = f"ya29.FRESH-{len(self.issued) + 1}-c2VjcmV0LXRva2Vu"
        self.issued.append(token)
        response = web.json_response(
            {"user": user, "expires": iso(self.clock.now + self.lifetime), "access_token": token}
        )
        for header in self.set_cookies:
            response.headers.add("Set-Cookie", header)
        return response


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def endpoint(clock: Clock) -> AsyncIterator[SessionEndpoint]:
    server = SessionEndpoint(clock)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def cookie_path(tmp_path: Path) -> Path:
    path = tmp_path / "cookie.json"
    write_export(path, list_export())
    return path


MakeCreds = Callable[..., Awaitable[Credentials]]


@pytest.fixture
def make_creds(cookie_path: Path, http: aiohttp.ClientSession, endpoint: SessionEndpoint, clock: Clock) -> MakeCreds:
    async def make(**kwargs: Any) -> Credentials:
        options: dict[str, Any] = {"labs_base": endpoint.labs_base, "clock": clock, "rng": random.Random(7)}
        options.update(kwargs)
        creds = Credentials(options.pop("path", cookie_path), http, **options)
        await creds.load()
        return creds

    return make


# -- refresh ---------------------------------------------------------------------------------------------


async def test_refresh_gets_token_and_persists_it(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path, clock: Clock
) -> None:
    creds = await make_creds()
    assert creds.session is None
    assert creds.expires_at is None
    before = json.loads(cookie_path.read_bytes())

    assert await creds.bearer() == "ya29.FRESH-1-c2VjcmV0LXRva2Vu"
    session = creds.session
    assert isinstance(session, Session)
    assert session.email == creds.account_email == "someone@example.com"
    assert creds.expires_at == clock.now + 3600
    request = endpoint.calls[0]
    assert request["Accept"] == "application/json"
    assert f"{SESSION_COOKIE}={SESSION_VALUE}" in request["Cookie"]
    assert TOKEN not in request["Cookie"]
    assert "Authorization" not in request
    after = json.loads(cookie_path.read_bytes())
    assert after[2]["value"] == "Bearer ya29.FRESH-1-c2VjcmV0LXRva2Vu"
    assert after[:2] + after[3:] == before[:2] + before[3:]
    assert [list(e) for e in after] == [list(e) for e in before]
    assert cookie_path.stat().st_mode & 0o777 == 0o600
    assert await creds.bearer() == "ya29.FRESH-1-c2VjcmV0LXRva2Vu"
    assert len(endpoint.calls) == 1  # fresh: no second request


async def test_chunked_export_is_sent_as_chunks(
    make_creds: MakeCreds, endpoint: SessionEndpoint, tmp_path: Path
) -> None:
    path = tmp_path / "chunked.json"
    write_export(path, object_export(chunked=True))
    creds = await make_creds(path=path)
    await creds.refresh()
    cookie = endpoint.calls[0]["Cookie"]
    assert f"{SESSION_COOKIE}.0={CHUNK0}" in cookie
    assert f"{SESSION_COOKIE}.1={CHUNK1}" in cookie
    assert json.loads(path.read_bytes())["authorization"] == "Bearer ya29.FRESH-1-c2VjcmV0LXRva2Vu"


def test_session_captures_parse() -> None:
    for name in ("session_success_2026-02.json", "session_success_2026-08-27.json"):
        session = parse_session_body((CAPTURES / name).read_bytes())
        assert session.email == "user@example.com"
        assert session.access_token.get_secret_value() == "ya29.REDACTED"
        assert session.expires_at > datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_session_body((CAPTURES / "session_success_2026-02.json").read_bytes()).expires_at == (
        datetime(2026, 2, 6, 19, 42, 31, tzinfo=UTC).timestamp()
    )
    with pytest.raises(CookiesExpired, match="ACCESS_TOKEN_REFRESH_NEEDED"):
        parse_session_body((CAPTURES / "session_access_token_refresh_needed_FIXTURE.json").read_bytes())


@pytest.mark.parametrize(
    ("mode", "status", "match"),
    [
        ("refresh_needed", 200, "ACCESS_TOKEN_REFRESH_NEEDED"),
        ("empty", 200, "session is empty"),
        ("null", 200, "session is empty"),
        ("no_token", 200, "no access token"),
        ("no_email", 200, "no signed-in user"),
        ("html", 200, "web page"),
        ("ok", 401, "answered 401"),
        ("ok", 403, "answered 403"),
    ],
)
async def test_dead_session_is_cookies_expired(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path, mode: str, status: int, match: str
) -> None:
    before = cookie_path.read_bytes()
    creds = await make_creds()
    endpoint.mode, endpoint.status = mode, status
    with pytest.raises(CookiesExpired, match=match) as caught:
        await creds.refresh()
    assert "re-export" in str(caught.value)
    assert creds.cookies_expired
    assert creds.session is None
    assert cookie_path.read_bytes() == before  # the stale token was not trusted or stored
    with pytest.raises(CookiesExpired):  # known dead: no request until the cookies are replaced
        await creds.bearer()
    assert len(endpoint.calls) == 1


async def test_wrong_session_cookie_is_cookies_expired(make_creds: MakeCreds, endpoint: SessionEndpoint) -> None:
    endpoint.accepted = {"something-else"}
    creds = await make_creds()
    with pytest.raises(CookiesExpired, match="session is empty"):
        await creds.bearer()


@pytest.mark.parametrize(
    ("mode", "status", "error", "retryable"),
    [
        ("ok", 500, SessionUnreachable, True),
        ("ok", 503, SessionUnreachable, True),
        ("ok", 429, RateLimited, True),
        ("garbage", 200, BadResponse, False),
        ("bad_expires", 200, BadResponse, False),
        ("ok", 404, BadResponse, False),
    ],
)
async def test_refresh_failures_are_classified(
    make_creds: MakeCreds,
    endpoint: SessionEndpoint,
    mode: str,
    status: int,
    error: type[FlowError],
    retryable: bool,
) -> None:
    creds = await make_creds()
    endpoint.mode, endpoint.status = mode, status
    with pytest.raises(error) as caught:
        await creds.refresh()
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert not creds.cookies_expired
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 7
    if mode == "bad_expires":
        assert caught.value.field_path == "expires"  # type: ignore[attr-defined]


async def test_refresh_timeout_is_session_unreachable(make_creds: MakeCreds, endpoint: SessionEndpoint) -> None:
    creds = await make_creds(request_timeout=0.2)
    endpoint.mode = "hang"
    with pytest.raises(SessionUnreachable, match="timed out"):
        await creds.refresh()


async def test_refresh_connection_refused_is_session_unreachable(make_creds: MakeCreds, cookie_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    creds = await make_creds(labs_base=f"http://127.0.0.1:{port}")
    with pytest.raises(SessionUnreachable, match="could not reach"):
        await creds.refresh()


async def test_rotated_session_cookie_is_persisted(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path, clock: Clock
) -> None:
    before = json.loads(cookie_path.read_bytes())
    endpoint.set_cookies = [
        f"{SESSION_COOKIE}=ROTATED-SESSION-1; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax",
        "__Host-next-auth.csrf-token=csrf-2; Path=/; HttpOnly; Secure",
    ]
    creds = await make_creds()
    await creds.refresh()
    after = json.loads(cookie_path.read_bytes())
    assert [e["name"] for e in after] == [e["name"] for e in before]
    assert after[1] == {**before[1], "value": "ROTATED-SESSION-1", "expirationDate": clock.now + 2592000}
    assert after[0]["value"] == "csrf-2"
    assert after[3:] == before[3:]
    assert f"{SESSION_COOKIE}=ROTATED-SESSION-1" in creds.cookie_header()

    endpoint.accepted = {"ROTATED-SESSION-1"}
    endpoint.set_cookies = []
    await creds.refresh(force=True)
    assert f"{SESSION_COOKIE}=ROTATED-SESSION-1" in endpoint.calls[-1]["Cookie"]


async def test_rotation_from_whole_to_chunked_and_back(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path
) -> None:
    endpoint.set_cookies = [
        f"{SESSION_COOKIE}.0=PART-A; Path=/; Secure; HttpOnly",
        f"{SESSION_COOKIE}.1=PART-B; Path=/; Secure; HttpOnly",
        f"{SESSION_COOKIE}=; Path=/; Max-Age=0",
    ]
    creds = await make_creds()
    await creds.refresh()
    names = [e["name"] for e in json.loads(cookie_path.read_bytes())]
    assert names[1:3] == [f"{SESSION_COOKIE}.0", f"{SESSION_COOKIE}.1"]
    assert SESSION_COOKIE not in names

    endpoint.accepted = {"PART-APART-B"}
    endpoint.set_cookies = [f"{SESSION_COOKIE}=WHOLE-AGAIN; Path=/; Secure"]  # NextAuth may not expire the chunks
    await creds.refresh(force=True)
    assert "PART-A" in endpoint.calls[-1]["Cookie"]
    names = [e["name"] for e in json.loads(cookie_path.read_bytes())]
    assert [n for n in names if "session-token" in n] == [SESSION_COOKIE]


async def test_deleting_the_session_cookie_keeps_the_old_one(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path
) -> None:
    endpoint.set_cookies = [f"{SESSION_COOKIE}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
    creds = await make_creds()
    await creds.refresh()
    assert f"{SESSION_COOKIE}={SESSION_VALUE}" in creds.cookie_header()


async def test_persist_failure_keeps_token_in_memory(
    make_creds: MakeCreds, cookie_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = cookie_path.read_bytes()
    creds = await make_creds()

    def boom(*_args: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", boom)
    with caplog.at_level(logging.ERROR):
        assert await creds.bearer() == "ya29.FRESH-1-c2VjcmV0LXRva2Vu"
    assert cookie_path.read_bytes() == original
    assert "Read-only file system" in caplog.text


async def test_bearer_keeps_a_valid_token_when_refresh_fails_inside_the_margin(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    creds = await make_creds()
    token = await creds.bearer()
    clock.now = creds.expires_at - 100  # type: ignore[operator]  # due, but not expired
    endpoint.status = 503
    assert await creds.bearer() == token
    assert await creds.bearer() == token
    assert len(endpoint.calls) == 2  # one failed attempt, then a pause before the next
    clock.now += 31
    endpoint.status = 200
    assert await creds.bearer() == "ya29.FRESH-2-c2VjcmV0LXRva2Vu"
    clock.now = creds.expires_at + 1  # type: ignore[operator]
    endpoint.status = 503
    with pytest.raises(SessionUnreachable):  # an expired token is not handed out
        await creds.bearer()


# -- single flight ---------------------------------------------------------------------------------------


async def test_20_concurrent_bearer_callers_during_expiry_make_one_request(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    creds = await make_creds()
    await creds.refresh()
    assert len(endpoint.calls) == 1
    clock.now = creds.expires_at - 299  # type: ignore[operator]  # inside the 300 s margin
    endpoint.gate = asyncio.Event()
    callers = [asyncio.create_task(creds.bearer()) for _ in range(20)]
    while len(endpoint.calls) < 2:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # everyone has had time to pile up on the same refresh
    endpoint.gate.set()
    tokens = await asyncio.gather(*callers)
    assert len(endpoint.calls) == 2
    assert set(tokens) == {"ya29.FRESH-2-c2VjcmV0LXRva2Vu"}


async def test_token_rejected_by_20_callers_refreshes_once(make_creds: MakeCreds, endpoint: SessionEndpoint) -> None:
    creds = await make_creds()
    old = await creds.bearer()
    endpoint.gate = asyncio.Event()
    callers = [asyncio.create_task(creds.token_rejected(old)) for _ in range(20)]
    while len(endpoint.calls) < 2:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    endpoint.gate.set()
    assert set(await asyncio.gather(*callers)) == {"ya29.FRESH-2-c2VjcmV0LXRva2Vu"}
    assert await creds.token_rejected(old) == "ya29.FRESH-2-c2VjcmV0LXRva2Vu"  # late caller: newer one exists
    assert len(endpoint.calls) == 2


async def test_token_rejected_when_flow_hands_back_the_same_token(
    make_creds: MakeCreds, endpoint: SessionEndpoint
) -> None:
    creds = await make_creds()
    token = await creds.bearer()
    endpoint.same_token = True
    assert await creds.token_rejected(token) == token
    assert await creds.token_rejected(token) == token
    assert len(endpoint.calls) == 2  # one refresh for the rejection, not one per rejection


async def test_refresh_waiter_cancelled_does_not_cancel_the_refresh(
    make_creds: MakeCreds, endpoint: SessionEndpoint
) -> None:
    creds = await make_creds()
    endpoint.gate = asyncio.Event()
    first = asyncio.create_task(creds.refresh())
    second = asyncio.create_task(creds.refresh())
    while not endpoint.calls:
        await asyncio.sleep(0.005)
    first.cancel()
    endpoint.gate.set()
    session = await second
    assert session.access_token.get_secret_value() == "ya29.FRESH-1-c2VjcmV0LXRva2Vu"
    assert len(endpoint.calls) == 1


# -- the background refresher ----------------------------------------------------------------------------


async def test_run_refreshes_at_expires_minus_margin(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    sleep = StepSleep(clock)
    creds = await make_creds(sleep=sleep, refresh_margin=300)
    task = asyncio.create_task(creds.run())
    try:
        start = clock.now
        assert await sleep.next() == pytest.approx(3600 - 300)  # refreshed first: expiry was unknown
        assert len(endpoint.calls) == 1
        sleep.release()
        assert await sleep.next() == pytest.approx(3300)
        assert len(endpoint.calls) == 2
        assert endpoint.calls[1]["Cookie"] == endpoint.calls[0]["Cookie"]
        assert creds.expires_at == pytest.approx(start + 3300 + 3600)
        assert await creds.bearer() == "ya29.FRESH-2-c2VjcmV0LXRva2Vu"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(endpoint.calls) == 2


async def test_run_short_lived_tokens_do_not_spin(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    endpoint.lifetime = 120  # shorter than twice the margin: refresh half-way instead of at once
    sleep = StepSleep(clock)
    creds = await make_creds(sleep=sleep, refresh_margin=300)
    task = asyncio.create_task(creds.run())
    try:
        assert await sleep.step() == pytest.approx(60)
        assert await sleep.next() == pytest.approx(60)
        assert len(endpoint.calls) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_backs_off_on_upstream_errors_then_recovers(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    sleep = StepSleep(clock)
    errors: list[Exception] = []

    async def on_error(err: Exception) -> None:
        errors.append(err)

    creds = await make_creds(sleep=sleep, backoff_base=2.0, backoff_cap=10.0)
    endpoint.status = 503
    task = asyncio.create_task(creds.run(on_error=on_error))
    try:
        delays = []
        for attempt in range(1, 6):
            delays.append(await sleep.next())
            assert len(endpoint.calls) == attempt
            if attempt < 5:
                sleep.release()
        for attempt, delay in enumerate(delays, start=1):
            assert 1.0 <= delay <= min(10.0, 2.0 * 2 ** (attempt - 1))
        assert max(delays) > 2.0  # it does grow
        assert errors == []  # retryable, and no token has expired yet: nothing to alert about
        endpoint.status = 200
        sleep.release()
        assert await sleep.next() == pytest.approx(3300, abs=0.01)
        assert len(endpoint.calls) == 6
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_honours_retry_after_up_to_the_cap(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    sleep = StepSleep(clock)
    creds = await make_creds(sleep=sleep, backoff_base=1.0, backoff_cap=60.0)
    endpoint.status = 429  # Retry-After: 7
    task = asyncio.create_task(creds.run())
    try:
        assert await sleep.next() >= 7
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_reports_expired_cookies_once_and_waits_for_replace(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    sleep = StepSleep(clock)
    errors: list[Exception] = []

    async def on_error(err: Exception) -> None:
        errors.append(err)

    creds = await make_creds(sleep=sleep)
    endpoint.mode = "refresh_needed"
    task = asyncio.create_task(creds.run(on_error=on_error))
    try:
        while not errors:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert [type(e) for e in errors] == [CookiesExpired]
        assert len(endpoint.calls) == 1  # waiting, not polling
        assert sleep.requests.empty()

        endpoint.mode = "ok"
        await creds.replace(dump(list_export()))
        assert await sleep.next() == pytest.approx(3300)  # resumed on its own
        assert len(endpoint.calls) == 2
        assert len(errors) == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_reports_non_retryable_errors_once(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    sleep = StepSleep(clock)
    errors: list[Exception] = []

    async def on_error(err: Exception) -> None:
        errors.append(err)
        raise RuntimeError("a broken handler must not stop the refresher")

    creds = await make_creds(sleep=sleep)
    endpoint.mode = "garbage"
    task = asyncio.create_task(creds.run(on_error=on_error))
    try:
        await sleep.step()
        await sleep.next()
        assert len(endpoint.calls) == 2
        assert [type(e) for e in errors] == [BadResponse]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_cancelled_while_refreshing_ends_cleanly(
    make_creds: MakeCreds, endpoint: SessionEndpoint, clock: Clock
) -> None:
    creds = await make_creds(sleep=StepSleep(clock))
    endpoint.gate = asyncio.Event()
    task = asyncio.create_task(creds.run())
    while not endpoint.calls:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    endpoint.gate.set()
    assert (await creds.refresh()).email == "someone@example.com"  # the shared refresh was not poisoned


# -- reload and replace ----------------------------------------------------------------------------------


async def test_replace_with_a_good_export_saves_and_switches(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path
) -> None:
    creds = await make_creds()
    await creds.refresh()
    endpoint.accepted = {"NEW-EXPORT-SESSION"}
    raw = object_export()
    raw[SESSION_COOKIE] = "NEW-EXPORT-SESSION"
    session = await creds.replace(dump(raw))
    assert session.access_token.get_secret_value() == "ya29.FRESH-2-c2VjcmV0LXRva2Vu"
    assert await creds.bearer() == "ya29.FRESH-2-c2VjcmV0LXRva2Vu"
    saved = json.loads(cookie_path.read_bytes())
    assert saved == {**raw, "authorization": "Bearer ya29.FRESH-2-c2VjcmV0LXRva2Vu"}  # its own format
    assert cookie_path.stat().st_mode & 0o777 == 0o600
    assert "NEW-EXPORT-SESSION" in creds.cookie_header()


@pytest.mark.parametrize("failure", ["malformed", "dead_cookies", "upstream_down", "unwritable"])
async def test_replace_with_a_bad_export_changes_nothing(
    make_creds: MakeCreds,
    endpoint: SessionEndpoint,
    cookie_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    creds = await make_creds()
    await creds.refresh()
    on_disk = cookie_path.read_bytes()
    bearer, header, session = await creds.bearer(), creds.cookie_header(), creds.session
    raw = object_export()
    raw[SESSION_COOKIE] = "UPLOADED-SESSION"
    data = dump(raw)
    expected: type[Exception] = CookiesExpired
    if failure == "malformed":
        data, expected = b'{"authorization": "Bearer x"}', CookieFileError
    elif failure == "upstream_down":
        endpoint.status, expected = 502, SessionUnreachable
    elif failure == "unwritable":
        endpoint.accepted.add("UPLOADED-SESSION")
        expected = CookieFileError
        monkeypatch.setattr(os, "fsync", lambda _fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(expected):
        await creds.replace(data)
    monkeypatch.undo()
    assert cookie_path.read_bytes() == on_disk
    assert (await creds.bearer(), creds.cookie_header(), creds.session) == (bearer, header, session)
    assert not creds.cookies_expired


async def test_reload_reads_the_file_and_refreshes(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path
) -> None:
    creds = await make_creds()
    await creds.refresh()
    raw = list_export(chunked=True)
    write_export(cookie_path, raw)
    session = await creds.reload()
    assert session.access_token.get_secret_value() == "ya29.FRESH-2-c2VjcmV0LXRva2Vu"
    assert f"{SESSION_COOKIE}.0={CHUNK0}" in endpoint.calls[-1]["Cookie"]
    assert CookieFile.parse(cookie_path.read_bytes()).bearer == "ya29.FRESH-2-c2VjcmV0LXRva2Vu"


async def test_reload_failure_keeps_previous_credentials(
    make_creds: MakeCreds, endpoint: SessionEndpoint, cookie_path: Path
) -> None:
    creds = await make_creds()
    await creds.refresh()
    bearer, session = await creds.bearer(), creds.session
    cookie_path.write_bytes(b"[]")
    with pytest.raises(CookieFileError, match="holds no cookies"):
        await creds.reload()
    write_export(cookie_path, list_export())
    endpoint.mode = "empty"
    with pytest.raises(CookiesExpired):
        await creds.reload()
    assert (await creds.bearer(), creds.session) == (bearer, session)
    assert not creds.cookies_expired


async def test_reload_revives_expired_credentials(make_creds: MakeCreds, endpoint: SessionEndpoint) -> None:
    creds = await make_creds()
    endpoint.mode = "refresh_needed"
    with pytest.raises(CookiesExpired):
        await creds.bearer()
    endpoint.mode = "ok"
    await creds.reload()
    assert not creds.cookies_expired
    assert await creds.bearer() == "ya29.FRESH-1-c2VjcmV0LXRva2Vu"
    assert len(endpoint.calls) == 2


# -- secrets ---------------------------------------------------------------------------------------------


def test_mask_email() -> None:
    assert mask_email("abcdef@example.com") == "ab***@example.com"
    assert mask_email("a@example.com") == "a***@example.com"
    assert mask_email(None) == "(unknown account)"
    assert mask_email("no-at-sign") == "***"


async def test_no_secret_in_logs_or_errors(
    make_creds: MakeCreds,
    endpoint: SessionEndpoint,
    cookie_path: Path,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    creds = await make_creds()
    endpoint.set_cookies = [f"{SESSION_COOKIE}.0=ROTATED-SECRET-PART-A; Path=/", f"{SESSION_COOKIE}.1=PART-B2"]
    first = await creds.bearer()
    endpoint.accepted.add("ROTATED-SECRET-PART-APART-B2")
    endpoint.set_cookies = []
    await creds.token_rejected(first)
    for mode, status in [("garbage", 200), ("ok", 500), ("html", 200), ("refresh_needed", 200)]:
        endpoint.mode, endpoint.status = mode, status
        try:
            await creds.refresh(force=True)
        except FlowError as err:
            errors.append(err)
    endpoint.mode, endpoint.status = "ok", 200
    for bad in MALFORMED:
        try:
            await creds.replace(bad[1])
        except FlowError as err:
            errors.append(err)
    await creds.reload()

    secrets = {*SECRETS, *endpoint.issued, "ya29.STALE-TOKEN-in-refresh-needed", "ROTATED-SECRET-PART-A"}
    assert set(creds.secret_values()) >= {await creds.bearer(), first, SESSION_VALUE, OTHER_VALUE}
    assert len(errors) == 4 + len(MALFORMED)
    texts = [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors), repr(creds), repr(creds.session)]
    texts += [str(e.__cause__) for e in errors if e.__cause__ is not None]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "so***@example.com" in caplog.text  # what it logs instead
    assert "someone@example.com" not in caplog.text


# -- against the Flow emulator ---------------------------------------------------------------------------


@pytest.fixture
async def emu(clock: Clock) -> AsyncIterator[FlowEmulator]:
    emulator = FlowEmulator(clock=clock)
    await emulator.start()
    yield emulator
    await emulator.close()


async def _emu_creds(
    emu: FlowEmulator, http: aiohttp.ClientSession, path: Path, clock: Clock, **kwargs: Any
) -> Credentials:
    creds = Credentials(path, http, labs_base=emu.labs_base, clock=clock, rng=random.Random(1), **kwargs)
    await creds.load()
    return creds


async def _credits_status(emu: FlowEmulator, http: aiohttp.ClientSession, token: str) -> int:
    async with http.get(f"{emu.api_base}/v1/credits", headers={"authorization": f"Bearer {token}"}) as resp:
        return resp.status


@pytest.mark.parametrize("fmt", ["list", "object"])
@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "chunked"])
async def test_emulator_token_from_refresh_is_accepted(
    emu: FlowEmulator, http: aiohttp.ClientSession, tmp_path: Path, clock: Clock, fmt: Any, chunked: bool
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path, chunked=chunked, fmt=fmt)
    before = json.loads(path.read_bytes())
    creds = await _emu_creds(emu, http, path, clock)
    token = await creds.bearer()
    assert await _credits_status(emu, http, token) == 200
    assert creds.expires_at == pytest.approx(clock.now + emu.token_lifetime, abs=1)
    assert len(emu.calls("session")) == 1
    after = json.loads(path.read_bytes())
    if fmt == "list":
        assert [e["name"] for e in after] == [e["name"] for e in before]
        assert [e for e in after if e["name"] != "authorization"] == [e for e in before if e["name"] != "authorization"]
    else:
        assert list(after) == list(before)
        assert after == {**before, "authorization": f"Bearer {token}"}
    assert CookieFile.parse(path.read_bytes()).bearer == token


async def test_emulator_rotated_cookie_chunked_to_whole_is_kept_and_used(
    emu: FlowEmulator, http: aiohttp.ClientSession, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path, chunked=True)
    creds = await _emu_creds(emu, http, path, clock)
    emu.rotate_cookie = True
    await creds.refresh()
    on_disk = CookieFile.parse(path.read_bytes())
    assert on_disk.session_cookies() == {SESSION_COOKIE: emu.session_cookie}
    emu.rotate_cookie = False
    await creds.refresh(force=True)  # only the rotated cookie is accepted now
    reloaded = await _emu_creds(emu, http, path, clock)  # and a restart picks it up from the file
    assert await _credits_status(emu, http, await reloaded.bearer()) == 200
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("arrange", "error"),
    [
        ("kill_session", CookiesExpired),
        ("refresh_needed", CookiesExpired),
        ("fault_refresh_needed", CookiesExpired),
        ("fault_empty_session", CookiesExpired),
        ("fault_html", CookiesExpired),
        ("fault_401", CookiesExpired),
        ("fault_server_error", SessionUnreachable),
        ("fault_disconnect", SessionUnreachable),
        ("fault_rate_limited", RateLimited),
        ("fault_malformed", BadResponse),
    ],
)
async def test_emulator_session_faults_are_classified(
    emu: FlowEmulator,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    clock: Clock,
    arrange: str,
    error: type[FlowError],
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    original = path.read_bytes()
    creds = await _emu_creds(emu, http, path, clock)
    faults = {
        "fault_refresh_needed": Fault.refresh_needed(),
        "fault_empty_session": Fault.empty_session(),
        "fault_html": Fault.html(),
        "fault_401": Fault.unauthorized(),
        "fault_server_error": Fault.server_error(503),
        "fault_disconnect": Fault.disconnect(),
        "fault_rate_limited": Fault.rate_limited(3),
        "fault_malformed": Fault.malformed(),
    }
    if arrange == "kill_session":
        emu.kill_session()
    elif arrange == "refresh_needed":
        emu.refresh_needed()
    else:  # aiohttp itself re-sends an idempotent GET once after a dropped connection
        emu.inject("session", faults[arrange], times=2 if arrange == "fault_disconnect" else 1)
    with pytest.raises(error) as caught:
        await creds.bearer()
    assert type(caught.value) is error
    assert path.read_bytes() == original
    assert creds.cookies_expired is (error is CookiesExpired)
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 3


async def test_emulator_hung_session_times_out(
    emu: FlowEmulator, http: aiohttp.ClientSession, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    creds = await _emu_creds(emu, http, path, clock, request_timeout=0.2)
    emu.inject("session", Fault.hang())
    with pytest.raises(SessionUnreachable, match="timed out"):
        await creds.refresh()


async def test_emulator_20_callers_during_expiry_one_session_request(
    emu: FlowEmulator, http: aiohttp.ClientSession, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    creds = await _emu_creds(emu, http, path, clock)
    first = await creds.bearer()
    clock.now = creds.expires_at - 10  # type: ignore[operator]
    emu.inject("session", Fault.hang())
    callers = [asyncio.create_task(creds.bearer()) for _ in range(20)]
    while emu.hung_count < 1:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    emu.release_hung()
    tokens = set(await asyncio.gather(*callers))
    assert len(emu.calls("session")) == 2
    assert len(tokens) == 1
    assert tokens != {first}
    assert await _credits_status(emu, http, tokens.pop()) == 200


async def test_emulator_401_then_token_rejected_gives_a_working_token(
    emu: FlowEmulator, http: aiohttp.ClientSession, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    creds = await _emu_creds(emu, http, path, clock)
    token = await creds.bearer()
    emu.expire_tokens()
    assert await _credits_status(emu, http, token) == 401
    retry = await asyncio.gather(*(creds.token_rejected(token) for _ in range(20)))
    assert len(set(retry)) == 1
    assert len(emu.calls("session")) == 2
    assert await _credits_status(emu, http, retry[0]) == 200


async def test_emulator_run_keeps_the_token_fresh_and_waits_after_expiry(
    emu: FlowEmulator, http: aiohttp.ClientSession, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "cookie.json"
    emu.write_cookie_file(path)
    sleep = StepSleep(clock)
    errors: list[Exception] = []

    async def on_error(err: Exception) -> None:
        errors.append(err)

    creds = await _emu_creds(emu, http, path, clock, sleep=sleep, refresh_margin=300)
    task = asyncio.create_task(creds.run(on_error=on_error))
    try:
        assert await sleep.next() == pytest.approx(emu.token_lifetime - 300, abs=1)
        emu.refresh_needed()
        sleep.release()
        while not errors:
            await asyncio.sleep(0.005)
        assert [type(e) for e in errors] == [CookiesExpired]
        assert len(emu.calls("session")) == 2
        with pytest.raises(CookiesExpired):
            await creds.bearer()

        emu.refresh_needed(False)  # the admin signs in again and uploads a new export
        upload = tmp_path / "upload.json"
        emu.write_cookie_file(upload, fmt="object")
        await creds.replace(upload.read_bytes())
        assert await sleep.next() == pytest.approx(emu.token_lifetime - 300, abs=1)
        token = await creds.bearer()
        assert await _credits_status(emu, http, token) == 200
        assert json.loads(path.read_bytes())["authorization"] == f"Bearer {token}"
        assert len(errors) == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
