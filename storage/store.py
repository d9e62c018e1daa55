"""The job repository: every query the bot needs, over one aiosqlite connection.

State machine
-------------
Jobs move only along `ALLOWED_TRANSITIONS` (storage/models.py). Each move is one conditional
``UPDATE jobs SET state = :to ... WHERE id = :id AND state = :from`` inside ``BEGIN IMMEDIATE``, together
with an appended event, so of two workers (or two processes) racing for one job exactly one sees its row
change; the other gets ``None``. Entering ``submitting`` counts an attempt, entering ``running`` stamps
``submitted_at`` (first time only), entering ``delivering`` stamps ``delivering_at``, and entering a terminal
state stamps ``finished_at``.

Exactly-once delivery of a video
--------------------------------
Discord deduplicates a message create that repeats a ``nonce`` (at most 25 characters) when the request says
``enforce_nonce: true``, but only for a few minutes. The store keeps the nonce *before* the post:

1. ``transition(id, DOWNLOADING, DELIVERING, delivery_nonce=new_nonce())`` commits the nonce and
   ``delivering_at`` (durably: WAL with ``synchronous=FULL``).
2. The bot posts the video with that nonce and ``enforce_nonce=True``; the message carries a marker naming
   the job id (an exact token such as the attachment name ``veo-<id>.mp4``, never a bare number that ``#12``
   and ``#123`` would share).
3. ``transition(id, DELIVERING, DELIVERED, result_message_id=msg.id)``.

A crash at any point, and what the restarted bot finds in ``unfinished_jobs()``:

* before step 1 commits: the job is still ``downloading`` with no nonce, and nothing was posted. Download
  again (or reuse ``file_path``) and start at step 1 with a fresh nonce.
* after step 1 (before or during step 2, or after step 2 but before step 3 commits): the job is
  ``delivering``. ``recovery_action(job.delivering_at, store.now())`` says what to do:

  - ``REPOST_SAME_NONCE`` (within ``NONCE_WINDOW`` seconds): post again with the stored nonce. If the first
    post landed, Discord returns that message instead of creating a second one; then do step 3.
  - ``SEARCH_THEN_POST`` (the window may have passed): list the bot's own messages in ``channel_id`` created
    after ``delivering_at`` minus a minute (a snowflake ``after=`` bound makes the search complete rather
    than "recent"). If one is the bot's post of this job (recognised by something a user cannot write: the
    job's button custom_ids, see bot/delivery.py), do step 3 with its id. Otherwise call
    ``renew_delivery(id)`` *before* posting (so a crash during this re-post is covered by the nonce again),
    post with the stored nonce, and do step 3.
* after step 3 commits: the job is ``delivered`` and is never posted again.

Exactly-once notice of a failure
--------------------------------
Terminal jobs without a video (failed, cancelled, timed out) owe their requester one notice. The same three
steps use their own columns: ``begin_notice(id, new_nonce())`` keeps ``notice_nonce`` and stamps
``notice_at`` before the first post (a retry keeps both; only ``renew=True``, after a search found nothing,
restarts the window); the post carries the marker; ``finish_notice(id, message_id)`` stamps
``notified_at``. ``jobs_needing_notice()`` lists the jobs still owed one, and
``recovery_action(job.notice_at, now)`` chooses between a same-nonce repost and a search. A notice the bot
decides not to post (say the user cancelled and was answered in the interaction) is closed with
``finish_notice(id, None)``.

Quotas and fairness
-------------------
A job counts against its user's rolling 24 h quota from ``created_at`` unless it ended failed, cancelled or
timed out (Flow does not charge those). Unfinished jobs count against the active limit: a request is refused
when the user already has jobs in progress and they plus the request would exceed it, while one request of
any offered size is accepted from a user with nothing in progress (count goes up to 4, the limit defaults to 2).
``create_jobs`` checks and inserts inside one ``BEGIN IMMEDIATE`` transaction, so concurrent requests over any number of
connections never overshoot. The queue is served round-robin across users and FIFO within a user: a queued
job's turn is its place in its user's queue plus the number of that user's jobs already holding a Flow slot;
jobs are taken by turn, then id.

Concurrency
-----------
One ``Store`` owns one connection; an ``asyncio.Lock`` keeps callers' statements and transactions from
interleaving on it. Separate ``Store`` instances (or processes) on one file coordinate through SQLite's write
lock (``BEGIN IMMEDIATE`` plus a busy timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from storage._create import CreateMixin, _CreateRequest, _StatusMark
from storage._queries import QueryMixin
from storage._sql import (
    _FAIR_QUEUE_SQL,
    _check_fields,
    _job,
    _Params,
    _set_clause,
    _sql,
)
from storage.db import connect
from storage.models import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    UNSUCCESSFUL_STATES,
    InvalidTransition,
    Job,
    JobState,
    StorageError,
)


class Store(CreateMixin, QueryMixin):
    """Durable jobs, quotas, settings and the audit log on one SQLite file."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._clock = clock
        self._lock = asyncio.Lock()
        self._kv_cache: dict[str, str | None] = {}
        self._create_queue: list[_CreateRequest] = []
        self._status_queue: list[_StatusMark] = []
        self._create_drainer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], float] = time.time) -> Store:
        """Open (creating and migrating when needed) the database; StorageError for an unusable file."""
        path = Path(path)
        conn = await connect(path)
        return cls(conn, path, clock)

    @property
    def path(self) -> Path:
        return self._path

    def now(self) -> float:
        """Return the store's clock; use it for recovery decisions so that tests can move time."""
        return self._clock()

    async def close(self) -> None:
        """Close the connection once the statement or transaction in progress is done."""
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageError(f"database {self._path} is closed")
        return self._conn

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            conn = self._require()
            try:
                await conn.execute(begin)
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                # Also on cancellation: aiosqlite runs statements in order, so this lands after the one in
                # progress and the shared connection is never left inside a transaction.
                await self._rollback(conn)
                raise

    def _read(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """Run several reads on one consistent snapshot."""
        return self._transaction("BEGIN")

    def _write(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """Run a read-check-write sequence holding SQLite's write lock from the start."""
        return self._transaction("BEGIN IMMEDIATE")

    @staticmethod
    async def _rollback(conn: aiosqlite.Connection) -> None:
        with contextlib.suppress(sqlite3.OperationalError):  # no transaction open: BEGIN itself failed
            await conn.execute("ROLLBACK")

    @staticmethod
    async def _rows(conn: aiosqlite.Connection, sql: str, params: _Params = ()) -> list[sqlite3.Row]:
        async with conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: _Params = ()) -> sqlite3.Row | None:
        async with conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def _jobs(self, sql: str, params: _Params = ()) -> list[Job]:
        async with self._lock:
            rows = await self._rows(self._require(), sql, params)
        return [_job(r) for r in rows]

    async def _scalar(self, sql: str, params: _Params = ()) -> object:
        async with self._lock:
            row = await self._one(self._require(), sql, params)
        return row[0] if row is not None else None

    @staticmethod
    async def _append_event(
        conn: aiosqlite.Connection,
        at: float,
        kind: str,
        job_id: int | None,
        actor_id: int | None,
        detail: str,
    ) -> None:
        await conn.execute(
            "INSERT INTO events (at, kind, job_id, actor_id, detail) VALUES (?, ?, ?, ?, ?)",
            (at, kind, job_id, actor_id, detail),
        )

    # -- jobs -----------------------------------------------------------------------------------------------

    async def transition(self, job_id: int, frm: JobState, to: JobState, **fields: object) -> Job | None:
        """Move a job from `frm` to `to` (setting `fields` too); None when it was not in `frm`."""
        frm, to = JobState(frm), JobState(to)
        if to not in ALLOWED_TRANSITIONS[frm]:
            raise InvalidTransition(f"job {job_id}: {frm.value} -> {to.value} is not allowed")
        _check_fields(fields)
        if to is JobState.DELIVERING and not fields.get("delivery_nonce"):
            raise ValueError("entering delivering requires delivery_nonce (stored before the post)")
        async with self._write() as conn:
            now = self._clock()
            stamps = ["state = ?", "updated_at = ?"]
            params: list[object] = [to.value, now]
            if to is JobState.SUBMITTING and "attempts" not in fields:
                stamps.append("attempts = attempts + 1")
            if to is JobState.RUNNING:
                stamps.append("submitted_at = COALESCE(submitted_at, ?)")
                params.append(now)
            if to is JobState.DELIVERING and "delivering_at" not in fields:
                stamps.append("delivering_at = ?")
                params.append(now)
            if to in TERMINAL_STATES:
                stamps.append("finished_at = ?")
                params.append(now)
            if fields:
                stamps.append(_set_clause(fields))
                params.extend(fields.values())
            sql = _sql("UPDATE jobs SET {sets} WHERE id = ? AND state = ? RETURNING {cols}", sets=", ".join(stamps))
            row = await self._one(conn, sql, (*params, job_id, frm.value))
            if row is None:
                return None
            job = _job(row)
            detail = f"{frm.value}->{to.value}"
            if job.error_kind and to in UNSUCCESSFUL_STATES:
                detail += f" ({job.error_kind})"
            await self._append_event(conn, now, "transition", job_id, None, detail)
        return job

    async def update_job(self, job_id: int, **fields: object) -> None:
        """Set non-state columns (see UPDATABLE_COLUMNS); ValueError for any other name."""
        _check_fields(fields)
        if not fields:
            return
        sql = _sql("UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?", sets=_set_clause(fields))
        async with self._lock:
            await self._require().execute(sql, (*fields.values(), self._clock(), job_id))

    async def renew_delivery(self, job_id: int) -> Job | None:
        """Restart the nonce window of a delivering job just before re-posting it after a marker search."""
        async with self._lock:
            now = self._clock()
            row = await self._one(
                self._require(),
                _sql(
                    "UPDATE jobs SET delivering_at = ?, updated_at = ? WHERE id = ? AND state = 'delivering'"
                    " RETURNING {cols}"
                ),
                (now, now, job_id),
            )
        return _job(row) if row is not None else None

    async def begin_notice(self, job_id: int, nonce: str, *, renew: bool = False) -> Job | None:
        """Keep the notice nonce and the start of its window before posting the notice (existing ones win).

        A retry must not restart the window: `notice_at` is when the first post may have landed, which is what
        tells a same-nonce repost (Discord still deduplicates) from a search. Only `renew`, after a search found
        nothing, restarts it, just before the re-post (as `renew_delivery` does for videos).
        """
        _check_fields({"notice_nonce": nonce})
        stamp = "?" if renew else "COALESCE(notice_at, ?)"
        async with self._lock:
            now = self._clock()
            row = await self._one(
                self._require(),
                _sql(
                    "UPDATE jobs SET notice_nonce = COALESCE(notice_nonce, ?), notice_at = {stamp}, updated_at = ?"
                    " WHERE id = ? AND notified_at IS NULL AND state IN ({unsuccessful}) RETURNING {cols}",
                    stamp=stamp,
                ),
                (nonce, now, now, job_id),
            )
        return _job(row) if row is not None else None

    async def finish_notice(self, job_id: int, message_id: int | None) -> bool:
        """Record the job's notice as posted (or deliberately skipped); False if it already was."""
        async with self._lock:
            now = self._clock()
            row = await self._one(
                self._require(),
                _sql(
                    "UPDATE jobs SET notice_message_id = ?, notified_at = ?, updated_at = ?"
                    " WHERE id = ? AND notified_at IS NULL AND state IN ({unsuccessful}) RETURNING id"
                ),
                (message_id, now, now, job_id),
            )
        return row is not None

    async def jobs_needing_notice(self, limit: int | None = None) -> list[Job]:
        """Failed, cancelled or timed-out jobs whose notice is not confirmed posted yet, oldest first."""
        return await self._jobs(
            _sql(
                "SELECT {cols} FROM jobs INDEXED BY jobs_notice_pending"
                " WHERE notified_at IS NULL AND state IN ({unsuccessful})"
                " ORDER BY id LIMIT ?"
            ),
            (-1 if limit is None else limit,),
        )

    async def claim_next(self, limit: int) -> list[Job]:
        """Atomically move up to `limit` queued jobs, in fair order, to submitting and return them."""
        if limit <= 0:
            return []
        async with self._write() as conn:
            now = self._clock()
            picked = [int(r[0]) for r in await self._rows(conn, _FAIR_QUEUE_SQL + " LIMIT ?", (limit,))]
            if not picked:
                return []
            rows = await self._rows(
                conn,
                _sql(
                    "UPDATE jobs SET state = 'submitting', attempts = attempts + 1, updated_at = ?"
                    " WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued' RETURNING {cols}"
                ),
                (now, json.dumps(picked)),
            )
            await conn.executemany(
                "INSERT INTO events (at, kind, job_id, actor_id, detail)"
                " VALUES (?, 'transition', ?, NULL, 'queued->submitting')",
                [(now, r["id"]) for r in rows],
            )
        order = {job_id: i for i, job_id in enumerate(picked)}
        return sorted((_job(r) for r in rows), key=lambda j: order[j.id])

    # -- quotas ---------------------------------------------------------------------------------------------

    # -- settings and audit log -----------------------------------------------------------------------------

    async def kv_get(self, key: str) -> str | None:
        """A setting. Cached after the first read: this process is the database's only writer of settings,
        and hot paths (every command checks whether the queue is paused) then skip the connection."""
        if key in self._kv_cache:
            return self._kv_cache[key]
        value = await self._scalar("SELECT value FROM kv WHERE key = ?", (key,))
        result = str(value) if value is not None else None
        self._kv_cache[key] = result
        return result

    async def kv_set(self, key: str, value: str | None) -> None:
        """Set a setting; None removes it."""
        async with self._lock:
            conn = self._require()
            if value is None:
                await conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            else:
                await conn.execute(
                    "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key)"
                    " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    (key, value, self._clock()),
                )
            self._kv_cache[key] = value

    async def log_event(
        self, kind: str, *, job_id: int | None = None, actor_id: int | None = None, detail: str = ""
    ) -> None:
        async with self._lock:
            await self._append_event(self._require(), self._clock(), kind, job_id, actor_id, detail)

    # -- admin and maintenance ------------------------------------------------------------------------------
