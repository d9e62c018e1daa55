"""Opening, migrating and refusing database files."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from storage import StorageError, Store, connect, load_migrations
from storage.db import Migration, migrate, split_statements

LATEST = load_migrations()[-1].version


def schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    conn.close()
    return rows


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "veo.sqlite3", clock=lambda: 1000.0)
    yield s
    await s.close()


async def make_populated(path: Path, jobs: int = 400) -> None:
    s = await Store.open(path, clock=lambda: 1000.0)
    for user in range(4):
        await s.create_jobs(
            user_id=user,
            guild_id=1,
            channel_id=2,
            prompt=f"prompt of user {user} " + "x" * 300,
            aspect="landscape",
            model="fast",
            seeds=list(range(jobs // 4)),
            daily_quota=0,
            max_active=0,
            unlimited=True,
        )
    await s.close()


def assert_one_line_naming(err: StorageError, path: Path) -> None:
    message = str(err)
    assert "\n" not in message
    assert str(path) in message


async def test_fresh_file_gets_latest_schema_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    conn = await connect(path)
    try:
        async with conn.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with conn.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1
        async with conn.execute("PRAGMA busy_timeout") as cur:
            assert (await cur.fetchone())[0] >= 1000
        async with conn.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == LATEST
    finally:
        await conn.close()
    names = {name for _, name, _ in schema(path)}
    assert {"jobs", "quota_overrides", "kv", "events", "events_no_update", "events_no_delete"} <= names
    assert {"jobs_user_created", "jobs_user_unfinished", "jobs_queued", "jobs_in_flight", "jobs_media"} <= names


async def test_reopening_is_a_no_op_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    store = await Store.open(path)
    await store.kv_set("flow_project_id", "p-1")
    await store.close()
    before = schema(path)
    for _ in range(2):
        store = await Store.open(path)
        assert await store.kv_get("flow_project_id") == "p-1"
        await store.close()
    assert schema(path) == before
    assert user_version(path) == LATEST


async def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    stores = await asyncio.gather(*(Store.open(path) for _ in range(6)))
    try:
        await stores[0].kv_set("k", "v")
        assert await stores[-1].kv_get("k") == "v"
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert user_version(path) == LATEST


async def test_older_database_is_brought_forward_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    first = load_migrations()[:1]
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        assert await migrate(conn, path, first) == 1
        await conn.execute(
            "INSERT INTO jobs (user_id, channel_id, prompt, aspect, model, seed, created_at, updated_at)"
            " VALUES (1, 2, 'old row', 'landscape', 'fast', 3, 10.0, 10.0)"
        )
    finally:
        await conn.close()
    assert user_version(path) == 1
    store = await Store.open(path)
    try:
        job = await store.get_job(1)
        assert job is not None
        assert job.prompt == "old row"
    finally:
        await store.close()
    assert user_version(path) == LATEST
    assert "jobs_group" in {name for _, name, _ in schema(path)}


async def test_failing_migration_rolls_back_entirely(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    broken = [
        Migration(1, "0001_ok.sql", "CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);"),
        Migration(2, "0002_bad.sql", "CREATE TABLE b (y INTEGER);\nINSERT INTO nowhere VALUES (1);"),
    ]
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="nowhere"):
            await migrate(conn, path, broken)
        assert not conn.in_transaction
    finally:
        await conn.close()
    assert user_version(path) == 0
    assert schema(path) == []


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    script = (
        "-- comment; with a semicolon\nCREATE TABLE t (x);\n"
        "CREATE TRIGGER t_no BEFORE DELETE ON t\nBEGIN\n    SELECT RAISE(ABORT, 'no');\nEND;\n"
    )
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER")
    assert statements[1].endswith("END;")


def test_migration_files_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


async def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    await (await Store.open(path)).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="newer") as info:
        await Store.open(path)
    assert_one_line_naming(info.value, path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all, just some text\n" * 100, os.urandom(8192), b"SQLite format 2\x00" + bytes(84)],
    ids=["text", "random", "wrong-magic"],
)
async def test_garbage_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "veo.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StorageError, match="not an SQLite database") as info:
        await Store.open(path)
    assert_one_line_naming(info.value, path)
    assert path.read_bytes() == content
    assert not path.with_name("veo.sqlite3-wal").exists()


@pytest.mark.parametrize("keep", [0.5, 0.9, 60 / 4096], ids=["half", "most", "inside-header"])
async def test_truncated_file_is_refused_untouched(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "veo.sqlite3"
    await make_populated(path)
    assert not path.with_name("veo.sqlite3-wal").exists() or path.with_name("veo.sqlite3-wal").stat().st_size == 0
    data = path.read_bytes()
    assert len(data) > 40_000
    cut = data[: max(1, int(len(data) * keep))]
    path.write_bytes(cut)
    with pytest.raises(StorageError, match="truncated") as info:
        await Store.open(path)
    assert_one_line_naming(info.value, path)
    assert path.read_bytes() == cut


async def test_damaged_pages_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    await make_populated(path)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page * 2 : page * 2 + 200] = b"\xff" * 200  # scribble over the start of page 3 (a b-tree page)
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError) as info:
        await Store.open(path)
    assert_one_line_naming(info.value, path)
    assert "corrupt" in str(info.value)


async def test_missing_directory_is_refused_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "veo.sqlite3"
    with pytest.raises(StorageError, match="does not exist") as info:
        await Store.open(path)
    assert_one_line_naming(info.value, path)
    assert not path.parent.exists()


async def test_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("oops")
    path = tmp_path / "data" / "veo.sqlite3"
    with pytest.raises(StorageError, match="not a directory") as info:
        await Store.open(path)
    assert_one_line_naming(info.value, path)


async def test_database_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    path.mkdir()
    with pytest.raises(StorageError, match="not a regular file") as info:
        await Store.open(path)
    assert_one_line_naming(info.value, path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to any directory")
async def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="not writable") as info:
            await Store.open(data / "veo.sqlite3")
        assert_one_line_naming(info.value, data / "veo.sqlite3")
    finally:
        data.chmod(0o700)


async def test_empty_file_is_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "veo.sqlite3"
    path.touch()
    store = await Store.open(path)
    await store.close()
    assert user_version(path) == LATEST


async def test_closed_store_raises_storage_error(store: Store) -> None:
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.get_job(1)
    await store.close()  # idempotent
