"""Open the SQLite file safely and bring its schema up to date with numbered .sql migrations."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiosqlite

from storage.models import StorageError

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100
# How long a statement waits for another connection's write lock before giving up.
BUSY_TIMEOUT_MS = 15_000
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Read storage/migrations/NNNN_name.sql in order; numbers must run 1, 2, 3... without gaps."""
    found: list[Migration] = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration numbering gap: expected {expected:04d}, found {migration.name}")
    return found


def split_statements(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies keep their inner semicolons)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if _strip_comments(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _strip_comments(buffer):
        raise RuntimeError(f"incomplete SQL statement at end of migration: {buffer.strip()[:60]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip(" \n;")


def _check_file(path: Path) -> None:
    """Refuse a path SQLite would misuse: missing/unwritable directory, not SQLite, or cut short."""
    parent = path.parent
    if not parent.exists():
        raise StorageError(f"data directory {parent} does not exist (database {path})")
    if not parent.is_dir():
        raise StorageError(f"{parent} is not a directory (database {path})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StorageError(f"data directory {parent} is not writable (database {path})")
    if not path.exists():
        return
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise StorageError(f"database {path} is not a regular file")
    if not os.access(path, os.R_OK | os.W_OK):
        raise StorageError(f"database {path} is not readable and writable")
    size = info.st_size
    if size == 0:
        return  # SQLite's own convention: an empty file is a new database
    with path.open("rb") as fh:
        header = fh.read(HEADER_SIZE)
    if not (SQLITE_MAGIC.startswith(header) or header.startswith(SQLITE_MAGIC)):
        raise StorageError(f"database {path} is not an SQLite database")
    if len(header) < HEADER_SIZE:
        raise StorageError(f"database {path} is truncated ({size} bytes, header incomplete)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    if counter_valid and pages and size < page_size * pages and not _wal_has_frames(path):
        # With a WAL present, the pages missing from the main file may legitimately be in the log.
        raise StorageError(f"database {path} is truncated ({size} bytes, header says {pages} pages of {page_size})")


def _wal_has_frames(path: Path) -> bool:
    wal = path.with_name(path.name + "-wal")
    try:
        return wal.stat().st_size > 32  # a WAL header is 32 bytes; anything beyond is frames
    except FileNotFoundError:
        return False


async def connect(path: Path) -> aiosqlite.Connection:
    """Open `path` with WAL, foreign keys and a busy timeout, migrated to the latest schema."""
    path = Path(path)
    migrations = await asyncio.to_thread(load_migrations)
    latest = migrations[-1].version if migrations else 0
    await asyncio.to_thread(_check_file, path)
    try:
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as err:
        raise StorageError(f"cannot open database {path}: {err}") from err
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys = ON")
        # Read-only checks first, so that a refused file is never written to (not even the WAL flag).
        _check_version(path, await _user_version(conn), latest)
        await _quick_check(conn, path)
        async with conn.execute("PRAGMA journal_mode = WAL") as cur:
            row = await cur.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise StorageError(f"database {path} cannot use WAL journal mode")
        # FULL: a committed delivery nonce survives a power cut, not only a process crash.
        await conn.execute("PRAGMA synchronous = FULL")
        await migrate(conn, path, migrations)
    except StorageError:
        await conn.close()
        raise
    except sqlite3.OperationalError as err:
        await conn.close()
        if "locked" in str(err) or "busy" in str(err):
            raise StorageError(f"database {path} is locked by another process: {_one_line(err)}") from err
        raise StorageError(f"cannot use database {path}: {_one_line(err)}") from err
    except sqlite3.DatabaseError as err:
        await conn.close()
        raise StorageError(f"database {path} is unreadable or corrupt: {_one_line(err)}") from err
    except BaseException:
        await conn.close()
        raise
    return conn


async def migrate(conn: aiosqlite.Connection, path: Path, migrations: list[Migration]) -> int:
    """Apply every pending migration in one transaction; return the resulting schema version."""
    latest = migrations[-1].version if migrations else 0
    version = await _user_version(conn)
    _check_version(path, version, latest)
    if version == latest:
        return version
    # Foreign keys off for the migration (SQLite's table-rebuild procedure needs it), checked before commit.
    await conn.execute("PRAGMA foreign_keys = OFF")
    await conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = await _user_version(conn)
        _check_version(path, version, latest)
        for migration in migrations:
            if migration.version <= version:
                continue
            for statement in split_statements(migration.sql):
                await conn.execute(statement)
            log.info("applied migration %s to %s", migration.name, path)
        async with conn.execute("PRAGMA foreign_key_check") as cur:
            if await cur.fetchone() is not None:
                raise StorageError(f"migrating {path} would break a foreign key; nothing was changed")
        await conn.execute(f"PRAGMA user_version = {latest:d}")
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    finally:
        await conn.execute("PRAGMA foreign_keys = ON")
    return latest


def _check_version(path: Path, version: int, latest: int) -> None:
    if version > latest:
        raise StorageError(
            f"database {path} has schema version {version}, newer than this bot's {latest}; upgrade the bot"
        )


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _quick_check(conn: aiosqlite.Connection, path: Path) -> None:
    """Refuse a damaged file at start-up rather than failing on some later query."""
    async with conn.execute("PRAGMA quick_check(1)") as cur:
        row = await cur.fetchone()
    result = str(row[0]) if row else "no result"
    if result != "ok":
        raise StorageError(f"database {path} is corrupt: {_one_line(result)}")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:200]
