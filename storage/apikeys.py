"""HTTP API keys and the API's own job queries, over the same connection (and lock) as `Store`.

A key is ``veo_`` plus 32 random bytes (URL-safe base64); only its SHA-256 hash is stored, and a lookup compares
hashes in constant time. An API key's jobs are ordinary jobs whose owner is ``-(key id)`` (see ``Job.from_api``),
so quotas, the active limit, fairness and recovery are the store's own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3

from pydantic import BaseModel, ConfigDict

from storage._sql import _job, _sql
from storage.models import Job
from storage.store import Store

KEY_PREFIX = "veo_"
#: last_used_at is written at most this often per key: a busy client must not turn every read into a write.
LAST_USED_RESOLUTION = 60.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ApiKey(BaseModel):
    """One key's record; never the key itself."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    daily_quota: int | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    #: Videos requested with the key (counted from its jobs by `list` and `get`; 0 elsewhere).
    usage_count: int = 0

    @property
    def user_id(self) -> int:
        """The owner id of this key's jobs in the store: negative, never a Discord id."""
        return -self.id


class KeyExists(Exception):
    """A key with that name exists already (revoked ones included: names are never reused)."""


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError("a key name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _key(row: sqlite3.Row) -> ApiKey:
    return ApiKey.model_validate({k: row[k] for k in row.keys() if k != "hash"})  # noqa: SIM118 - a Row iterates values


class ApiKeys:
    """Create, look up, list and revoke keys; the API's job listing."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, name: str, *, daily_quota: int | None = None) -> tuple[ApiKey, str]:
        """Make a key; returns its record and the key, which is shown once and never stored."""
        check_name(name)
        if daily_quota is not None and daily_quota < 0:
            raise ValueError("daily quota cannot be negative")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._store._write() as conn:
            now = self._store.now()
            try:
                row = await self._store._one(
                    conn,
                    "INSERT INTO api_keys (name, hash, daily_quota, created_at) VALUES (?, ?, ?, ?)"
                    " RETURNING id, name, hash, daily_quota, created_at, last_used_at, revoked_at, 0 AS usage_count",
                    (name, hash_key(key), daily_quota, now),
                )
            except sqlite3.IntegrityError as err:
                raise KeyExists(f"an API key named {name!r} exists already") from err
            assert row is not None
            await self._store._append_event(conn, now, "apikey_created", None, None, name)
        return _key(row), key

    async def authenticate(self, key: str) -> ApiKey | None:
        """The live key matching `key`, or None (unknown or revoked). Stamps last use, coarsely."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        digest = hash_key(key)
        async with self._store._lock:
            conn = self._store._require()
            row = await self._store._one(
                conn,
                "SELECT id, name, hash, daily_quota, created_at, last_used_at, revoked_at, 0 AS usage_count"
                " FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
                (digest,),
            )
            # The index found the row by hash; compare again in constant time all the same.
            if row is None or not hmac.compare_digest(bytes(row["hash"]), digest):
                return None
            found = _key(row)
            now = self._store.now()
            if found.last_used_at is None or now - found.last_used_at >= LAST_USED_RESOLUTION:
                await conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, found.id))
        return found

    async def list(self) -> list[ApiKey]:
        async with self._store._lock:
            rows = await self._store._rows(
                self._store._require(),
                "SELECT id, name, hash, daily_quota, created_at, last_used_at, revoked_at,"
                " (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_created WHERE user_id = -api_keys.id) AS usage_count"
                " FROM api_keys ORDER BY id",
            )
        return [_key(r) for r in rows]

    async def get(self, name: str) -> ApiKey | None:
        async with self._store._lock:
            row = await self._store._one(
                self._store._require(),
                "SELECT id, name, hash, daily_quota, created_at, last_used_at, revoked_at,"
                " (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_created WHERE user_id = -api_keys.id) AS usage_count"
                " FROM api_keys WHERE name = ?",
                (name,),
            )
        return _key(row) if row is not None else None

    async def revoke(self, name: str) -> bool:
        """Revoke a key at once (the next request with it is refused); False when no live key has that name."""
        async with self._store._write() as conn:
            now = self._store.now()
            row = await self._store._one(
                conn,
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING id",
                (now, name),
            )
            if row is not None:
                await self._store._append_event(conn, now, "apikey_revoked", None, None, name)
        return row is not None

    async def jobs(self, key: ApiKey, *, limit: int, after: int | None = None) -> list[Job]:
        """A key's jobs, newest first; `after` continues a listing below that job id."""
        async with self._store._lock:
            rows = await self._store._rows(
                self._store._require(),
                _sql(
                    "SELECT {cols} FROM jobs INDEXED BY jobs_user_created WHERE user_id = :user"
                    " AND (:after IS NULL OR id < :after) ORDER BY created_at DESC, id DESC LIMIT :limit"
                ),
                {"user": key.user_id, "after": after, "limit": limit},
            )
        return [_job(r) for r in rows]

    async def probe_writable(self) -> None:
        """Take SQLite's write lock and let it go: proves the database accepts writes (for /health)."""
        async with self._store._write():
            pass
