"""Bad cookie files and bad database files: a one-line reason, no value echoed, nothing changed.

In process: `CookieFile.parse` over hypothesis-generated JSON, bytes and exports with wrong types or chunked
session cookies; `Store.open` over truncated and garbage databases. As a subprocess: `python -m bot` with
each kind of bad file exits non-zero with one line on stderr and leaves the file byte-for-byte as it was.
The subprocesses are started together (module fixture) so the set costs about one interpreter start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.backends.flow.credentials import SESSION_COOKIE, CookieFile
from bot.backends.flow.errors import CookieFileError
from storage import JobState, StorageError, Store, load_migrations
from tests.fakes._flow_cookies import cookie_file_content, new_session_cookie

ROOT = Path(__file__).resolve().parents[1]
DISCORD_TOKEN = "MTIwMDAwMDAwMDAwMDAwMDAx.GzYxWv.q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9"
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Secret-looking values are tagged so a test can tell whether any of them was echoed back.
SECRETS = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=10, max_size=16).map(lambda s: f"SECRET{s}")
NAMES = st.text("abcdefghijklmnopqrstuvwxyz_-.0123456789", min_size=1, max_size=20)
LEAVES = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | SECRETS
COOKIE_KEYS = st.sampled_from(["name", "value", "domain", "path", "expirationDate", "session", "authorization"])
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES | COOKIE_KEYS, inner, max_size=4),
    max_leaves=12,
)
COOKIE_LIKE = st.lists(
    st.dictionaries(COOKIE_KEYS, LEAVES | NAMES | st.just(SESSION_COOKIE) | st.just("authorization"), max_size=6),
    max_size=5,
)


def strings_in(value: Any, *, under: str | None = None) -> list[tuple[str, str | None]]:
    """Every string leaf with the dict key it sits under."""
    if isinstance(value, str):
        return [(value, under)]
    if isinstance(value, list):
        return [pair for item in value for pair in strings_in(item, under=under)]
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in strings_in(item, under=key)]
    return []


def secret_values(raw: Any) -> set[str]:
    """Tagged strings that are values, not names (a cookie's name may be quoted in an error; its value never)."""
    pairs = strings_in(raw)
    names = {s for s, key in pairs if key == "name"}
    return {s for s, _ in pairs if s.startswith("SECRET")} - names


def assert_one_line_without(err: CookieFileError | StorageError, secrets: set[str]) -> str:
    text = str(err)
    assert text.strip(), "an empty error message"
    assert "\n" not in text and "\r" not in text, text
    assert "Traceback" not in text
    for secret in secrets:
        assert secret not in text, f"value echoed: {text}"
        assert secret[6:] not in text, f"value echoed: {text}"
    return text


def parse_or_error(data: bytes, secrets: set[str]) -> CookieFile | None:
    try:
        cookies = CookieFile.parse(data)
    except CookieFileError as err:
        assert_one_line_without(err, secrets)
        return None
    for secret in secrets:
        assert secret not in repr(cookies)
    return cookies


# ---------------------------------------------------------------------------------------------- cookie files


@FAST
@given(JSON | COOKIE_LIKE, st.sampled_from([None, 2]))
def test_random_json_parses_or_fails_with_one_line_and_no_value(raw: Any, indent: int | None) -> None:
    parse_or_error(json.dumps(raw, indent=indent).encode(), secret_values(raw))


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes_parse_or_fail_with_one_line(data: bytes) -> None:
    parse_or_error(data, set())


def test_binary_file_is_refused_as_not_text() -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    with pytest.raises(CookieFileError, match="not UTF-8") as info:
        CookieFile.parse(data)
    assert_one_line_without(info.value, set())


@pytest.mark.parametrize("size", [1024 * 1024 + 1, 8 * 1024 * 1024])
def test_huge_file_is_refused_without_echo(size: int) -> None:
    secret = "SECRET" + "Q" * 20
    session = secret + "x" * (size - len(secret))
    data = json.dumps([{"name": SESSION_COOKIE, "value": session}, {"name": "authorization", "value": "Bearer y"}])
    with pytest.raises(CookieFileError, match="1 MiB") as info:
        CookieFile.parse(data.encode())
    assert_one_line_without(info.value, {secret})


def base_export(secret: str) -> list[dict[str, Any]]:
    return [
        {"domain": "labs.google", "name": "_ga", "value": secret + "ga", "path": "/"},
        {"domain": "labs.google", "name": SESSION_COOKIE, "value": secret + "session", "path": "/"},
        {"name": "authorization", "value": f"Bearer ya29.{secret}token"},
    ]


WRONG = st.sampled_from([None, True, 0, 1.5, [], ["x"], {}, {"v": "x"}])


@st.composite
def wrong_types(draw: st.DrawFn) -> tuple[Any, str]:
    """A valid export with exactly one thing of the wrong type or shape."""
    secret = draw(SECRETS)
    raw: Any = base_export(secret)
    where = draw(st.sampled_from(["value", "name", "entry", "top", "auth", "object-value"]))
    index = draw(st.integers(0, 2))
    if where == "value":
        raw[index]["value"] = draw(WRONG)
    elif where == "name":
        raw[index]["name"] = draw(WRONG.filter(lambda w: w is not None) | st.just(""))
    elif where == "entry":
        raw[index] = draw(WRONG.filter(lambda w: not isinstance(w, dict)) | st.just(secret + "entry"))
    elif where == "top":
        raw = draw(WRONG.filter(lambda w: not isinstance(w, list | dict)) | st.just(secret + "top"))
    elif where == "auth":
        raw[2]["value"] = draw(
            st.sampled_from(["Bearer", "Bearer   ", f"Token {secret}", f"Bearer two words {secret}", f"{secret}"])
        )
    else:
        raw = {e["name"]: e["value"] for e in raw}
        raw[draw(st.sampled_from(sorted(raw)))] = draw(WRONG)
    return raw, secret


@FAST
@given(wrong_types())
def test_wrong_types_are_refused_with_one_line_and_no_value(case: tuple[Any, str]) -> None:
    raw, secret = case
    with pytest.raises(CookieFileError) as info:
        CookieFile.parse(json.dumps(raw).encode())
    assert_one_line_without(info.value, {secret, secret + "ga", secret + "session", secret + "token"})


@st.composite
def chunked_exports(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Session cookies split into `.N` chunks (any order, gaps, empty ones), maybe beside a whole one."""
    indexes = draw(st.lists(st.integers(0, 12), min_size=1, max_size=5, unique=True))
    chunks = {f"{SESSION_COOKIE}.{i}": draw(SECRETS | st.just("")) for i in indexes}
    if draw(st.booleans()):
        chunks[SESSION_COOKIE] = draw(SECRETS | st.just(""))
    entries = [{"name": name, "value": value, "domain": "labs.google"} for name, value in chunks.items()]
    entries.append({"name": "_ga", "value": draw(SECRETS), "domain": ".labs.google"})
    entries.append({"name": "authorization", "value": f"Bearer ya29.{draw(SECRETS)}"})
    return draw(st.permutations(entries)), chunks


@FAST
@given(chunked_exports())
def test_chunked_session_cookies_are_kept_or_refused(case: tuple[list[dict[str, Any]], dict[str, str]]) -> None:
    entries, chunks = case
    secrets = secret_values(entries)
    cookies = parse_or_error(json.dumps(entries).encode(), secrets)
    if any(chunks.values()):
        assert cookies is not None, "a session with a non-empty chunk was refused"
        assert cookies.session_cookies() == {e["name"]: e["value"] for e in entries if e["name"] in chunks}
        header = cookies.cookie_header()
        order = [e["name"] for e in entries if e["name"] != "authorization"]
        assert [part.split("=", 1)[0] for part in header.split("; ")] == order
        assert json.loads(cookies.to_bytes()) == entries
    else:
        assert cookies is None, "a session made only of empty cookies was accepted"


# ---------------------------------------------------------------------------------------------- database files


def make_database(path: Path) -> bytes:
    """A real, closed database with a few jobs in it (several pages), as the bot leaves it."""

    async def build() -> None:
        store = await Store.open(path)
        try:
            for n in range(6):
                jobs = await store.create_jobs(
                    user_id=1,
                    guild_id=2,
                    channel_id=3,
                    prompt=f"prompt {n} " + "words " * 300,
                    aspect="landscape",
                    model="fast",
                    seeds=[n],
                    daily_quota=100,
                    max_active=100,
                )
                await store.transition(jobs[0].id, JobState.QUEUED, JobState.CANCELLED, error_kind="cancelled")
        finally:
            await store.close()

    asyncio.run(build())
    return path.read_bytes()


@pytest.fixture(scope="module")
def good_db(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    data = make_database(tmp_path_factory.mktemp("gooddb") / "veo.sqlite3")
    assert len(data) >= 4 * 4096, "want a database of several pages"
    return data


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dbcases")


async def open_refused(path: Path, data: bytes) -> str:
    """Store.open must refuse the file with one line naming it, and leave the folder exactly as it was."""
    folder = path.parent
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path.write_bytes(data)
    with pytest.raises(StorageError) as info:
        await Store.open(path)
    text = assert_one_line_without(info.value, set())
    assert str(path) in text
    assert path.read_bytes() == data, "the refused database was modified"
    assert sorted(p.name for p in folder.iterdir()) == [path.name], "files were created beside it"
    return text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.floats(0.0, 1.0, exclude_max=True), page_aligned=st.booleans())
async def test_truncated_database_is_refused_untouched(
    good_db: bytes, db_dir: Path, cut: float, page_aligned: bool
) -> None:
    size = max(1, int(len(good_db) * cut))
    if page_aligned:
        size = max(4096, size - size % 4096)
    assume(size < len(good_db))
    text = await open_refused(db_dir / "trunc" / "veo.sqlite3", good_db[:size])
    assert "truncated" in text or "corrupt" in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=8192) | st.binary(min_size=1, max_size=4096).map(lambda b: b"SQLite " + b))
async def test_garbage_database_is_refused_untouched(db_dir: Path, data: bytes) -> None:
    await open_refused(db_dir / "garbage" / "veo.sqlite3", data)


async def test_corrupt_page_is_refused_untouched(good_db: bytes, db_dir: Path) -> None:
    data = bytearray(good_db)
    data[2 * 4096 : 3 * 4096] = random.Random(7).randbytes(4096)
    text = await open_refused(db_dir / "corrupt" / "veo.sqlite3", bytes(data))
    assert "corrupt" in text


def newer_schema(good_db: bytes, path: Path) -> bytes:
    path.write_bytes(good_db)
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA user_version = {load_migrations()[-1].version + 1}")
        conn.commit()
    finally:
        conn.close()
    return path.read_bytes()


async def test_newer_schema_is_refused_untouched(good_db: bytes, db_dir: Path) -> None:
    data = newer_schema(good_db, db_dir / "newer.sqlite3")
    text = await open_refused(db_dir / "newer" / "veo.sqlite3", data)
    assert "schema version" in text and "upgrade" in text


# ---------------------------------------------------------------------------------------------- python -m bot


@dataclass
class Case:
    name: str
    kind: str  # "cookie" or "database"
    target: Path  # the bad file
    before: bytes | None  # its bytes (None: a directory)
    secrets: set[str]
    proc: subprocess.Popen[bytes]
    result: tuple[int, str, str] | None = None


def good_cookie(path: Path, secret: str) -> set[str]:
    content = cookie_file_content(new_session_cookie(), bearer=f"ya29.{secret}", chunked=False, fmt="list", expiry=0)
    path.write_text(json.dumps(content), encoding="utf-8")
    return {e["value"] for e in content if len(e["value"]) >= 8} | {f"ya29.{secret}"}


def bad_cookie_files(secret: str) -> dict[str, bytes | None]:
    """One start-up per way of failing (every wording is covered in process above): unreadable content, wrong kind."""
    return {"binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + secret.encode() + bytes(range(256)), "directory": None}


def bot_env(folder: Path, cookie: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FLOW_", "VEO_"))}
    dead = "http://127.0.0.1:9"  # nothing listens: start-up must stop before any network call
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "DISCORD_API_BASE": dead + "/api/v10",
            "FLOW_API_BASE": dead,
            "FLOW_LABS_BASE": dead,
            "FLOW_COOKIE_FILE": str(cookie),
            "VEO_DATA_DIR": str(folder / "data"),
        }
    )
    return env


def launch(folder: Path, cookie: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot"],
        cwd=folder,
        env=bot_env(folder, cookie),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, good_db: bytes) -> Iterator[dict[str, Case]]:
    """Every bad-file start-up, all running at once."""
    secret = "SECRETq7Zt4Kp9Lm2Wx8"
    cases: dict[str, Case] = {}
    for name, content in bad_cookie_files(secret).items():
        folder = tmp_path_factory.mktemp(f"cookie-{name}")
        cookie = folder / "cookie.json"
        if content is None:
            cookie.mkdir()
        else:
            cookie.write_bytes(content)
        cases[f"cookie-{name}"] = Case(name, "cookie", cookie, content, {secret}, launch(folder, cookie))

    databases: dict[str, bytes | None] = {
        "truncated": good_db[: len(good_db) // 2],
        "garbage": random.Random(3).randbytes(16 * 1024),
        "newer-schema": newer_schema(good_db, tmp_path_factory.mktemp("newer") / "veo.sqlite3"),
        "directory": None,
    }
    for name, content in databases.items():
        folder = tmp_path_factory.mktemp(f"db-{name}")
        cookie = folder / "cookie.json"
        cookie_secrets = good_cookie(cookie, secret)
        target = folder / "data" / "veo.sqlite3"
        target.parent.mkdir()
        if content is None:
            target.mkdir()
        else:
            target.write_bytes(content)
        cases[f"db-{name}"] = Case(name, "database", target, content, cookie_secrets, launch(folder, cookie))
    try:
        yield cases
    finally:
        for case in cases.values():
            if case.proc.poll() is None:
                case.proc.kill()
                case.proc.wait()


def finished(case: Case) -> tuple[int, str, str]:
    if case.result is not None:
        return case.result
    try:
        out, err = case.proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        case.proc.kill()
        out, err = case.proc.communicate()
        pytest.fail(f"python -m bot kept running with the bad {case.kind} file {case.name}: {err.decode()[-500:]}")
    case.result = case.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    return case.result


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO)\s")


def assert_refused_start(case: Case) -> str:
    """Non-zero exit, one line that is not a routine log record, no traceback, no secret, the file untouched."""
    code, out, err = finished(case)
    assert code not in (0, None) and code > 0, f"exit code {code}"
    lines = [line for line in err.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1, f"stderr should hold one line, got {len(lines)}:\n{err[:2000]}"
    line = lines[0]
    assert "Traceback" not in err and "Error:" not in line.split(":", 1)[0]
    assert not out.strip(), out
    for secret in (*case.secrets, DISCORD_TOKEN):
        assert secret not in err, f"secret echoed: {line}"
    if case.before is None:
        assert case.target.is_dir() and not any(case.target.iterdir())
    else:
        assert case.target.read_bytes() == case.before, "the bad file was modified"
    return line


@pytest.mark.parametrize("name", ["binary", "directory"])
def test_bot_refuses_to_start_with_a_bad_cookie_file(launched: dict[str, Case], name: str) -> None:
    case = launched[f"cookie-{name}"]
    line = assert_refused_start(case)
    assert str(case.target) in line, f"the message should name the file: {line}"
    assert len(finished(case)[2].strip().splitlines()) == 1


DATABASE_CASES = ["truncated", "garbage", "newer-schema", "directory"]


@pytest.mark.parametrize("name", DATABASE_CASES)
def test_bot_refuses_to_start_with_a_bad_database(launched: dict[str, Case], name: str) -> None:
    case = launched[f"db-{name}"]
    line = assert_refused_start(case)
    assert str(case.target) in line, f"the message should name the file: {line}"
    siblings = sorted(p.name for p in case.target.parent.iterdir())
    assert siblings == ["media", "veo.sqlite3"], f"files created beside the refused database: {siblings}"


def test_bad_database_stderr_is_exactly_one_line(launched: dict[str, Case]) -> None:
    for name in DATABASE_CASES:
        err = finished(launched[f"db-{name}"])[2]
        assert len(err.strip().splitlines()) == 1, err
