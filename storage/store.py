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
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NotRequired, TypedDict, Unpack

import aiosqlite

from storage.db import connect
from storage.models import (
    ALLOWED_TRANSITIONS,
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    UNFINISHED_STATES,
    UNSUCCESSFUL_STATES,
    ActiveLimitReached,
    Aspect,
    Event,
    InvalidTransition,
    Job,
    JobOptions,
    JobState,
    ModelTier,
    QuotaExceeded,
    QuotaStatus,
    RecoveryAction,
    StorageError,
)

QUOTA_WINDOW = 86_400.0
# Discord promises nonce deduplication for "a few minutes"; stay well inside that.
NONCE_WINDOW = 120.0
MAX_NONCE_LENGTH = 25

# Columns the bot may set with update_job / transition(**fields). State, identity, request and time-stamp
# columns are managed by the store itself.
UPDATABLE_COLUMNS: frozenset[str] = frozenset(
    {
        "model_key",
        "seed",
        "scene_id",
        "operation_name",
        "media_name",
        "project_id",
        "protocol",
        "attempts",
        "error_kind",
        "error_message",
        "file_path",
        "file_size",
        "status_message_id",
        "result_message_id",
        "delivery_nonce",
        "delivering_at",
        "notice_nonce",
        "notice_at",
        "notice_message_id",
        "notified_at",
        "backend",
        "backend_ref",
    }
)


def _states(states: Iterable[JobState]) -> str:
    """Render enum members as an SQL list; only our own constants ever reach SQL this way."""
    return ", ".join(f"'{JobState(s).value}'" for s in sorted(states))


_CONSTANTS: Mapping[str, str] = MappingProxyType(
    {
        "cols": ", ".join(Job.model_fields),
        "unfinished": _states(UNFINISHED_STATES),
        "unsuccessful": _states(UNSUCCESSFUL_STATES),
        "in_flight": _states(IN_FLIGHT_STATES),
        "terminal": _states(TERMINAL_STATES),
    }
)

_Params = tuple[object, ...] | Mapping[str, object]


def _sql(template: str, **fragments: str) -> str:
    """Fill {cols}, {unfinished}, ... with our own constants and fragments built from whitelisted names.

    User values never pass through here: they always go in as parameters.
    """
    return template.format_map({**_CONSTANTS, **fragments})


# Queued jobs in fair order with their 1-based position: round-robin across users, FIFO within a user, and a
# user's jobs already holding a Flow slot count as places they have had.
# INDEXED BY pins the hot queries to their (partial) indexes: plans stay fast whatever statistics SQLite has, and
# a predicate that drifts from its index's fails loudly ("no query solution") instead of silently scanning.
_FAIR_QUEUE_SQL = _sql("""
WITH inflight AS (
    SELECT user_id, COUNT(*) AS n FROM jobs INDEXED BY jobs_in_flight WHERE state IN ({in_flight})
    GROUP BY user_id
),
ranked AS (
    SELECT q.id AS id,
           ROW_NUMBER() OVER (PARTITION BY q.user_id ORDER BY q.id) + COALESCE(f.n, 0) AS turn
    FROM jobs AS q INDEXED BY jobs_queued LEFT JOIN inflight AS f ON f.user_id = q.user_id
    WHERE q.state = 'queued'
)
SELECT id, ROW_NUMBER() OVER (ORDER BY turn, id) AS position FROM ranked ORDER BY position
""")


def new_nonce() -> str:
    """Return a fresh Discord message nonce (24 hex characters, within Discord's 25)."""
    return secrets.token_hex(12)


def recovery_action(started_at: float | None, now: float, *, window: float = NONCE_WINDOW) -> RecoveryAction:
    """Decide how to finish a post begun at `started_at` (delivering_at or notice_at) before a restart."""
    if started_at is not None and 0 <= now - started_at < window:
        return RecoveryAction.REPOST_SAME_NONCE
    return RecoveryAction.SEARCH_THEN_POST


def _job(row: sqlite3.Row) -> Job:
    return Job.model_validate(dict(zip(row.keys(), row, strict=True)))


def _check_fields(fields: Mapping[str, object]) -> None:
    unknown = sorted(set(fields) - UPDATABLE_COLUMNS)
    if unknown:
        raise ValueError(f"not updatable job column(s): {', '.join(unknown)}")
    for key in ("delivery_nonce", "notice_nonce"):
        nonce = fields.get(key)
        if nonce is not None and not (isinstance(nonce, str) and 0 < len(nonce) <= MAX_NONCE_LENGTH):
            raise ValueError(f"{key} must be a string of 1..{MAX_NONCE_LENGTH} characters")


def _set_clause(columns: Iterable[str]) -> str:
    """Build `a = ?, b = ?` from column names already checked against UPDATABLE_COLUMNS."""
    return ", ".join(f"{column} = ?" for column in columns)


class JobRequest(TypedDict):
    """What a command asks for; `create_jobs` takes these as keyword arguments."""

    user_id: int
    guild_id: int | None
    channel_id: int
    prompt: str
    aspect: str
    model: str
    seeds: list[int]
    daily_quota: int
    max_active: int
    unlimited: NotRequired[bool]
    options: NotRequired[JobOptions]
    #: Estimated cost of each job, in `cost_unit`.
    cost: NotRequired[float]
    cost_unit: NotRequired[str]


@dataclass(slots=True, frozen=True)
class Overview:
    """A user's view of the queue: their jobs, their queued jobs' positions, the queue length, their quota."""

    jobs: list[Job]
    positions: dict[int, int]
    queued: int
    quota: QuotaStatus
    durations: list[float]


@dataclass(slots=True, eq=False)
class _CreateRequest:
    user_id: int
    guild_id: int | None
    channel_id: int
    prompt: str
    aspect: str
    model: str
    seeds: list[int]
    daily_quota: int
    max_active: int
    unlimited: bool
    options: JobOptions
    cost: float
    cost_unit: str
    future: asyncio.Future[tuple[list[Job], dict[int, int]]]


class Store:
    """Durable jobs, quotas, settings and the audit log on one SQLite file."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._clock = clock
        self._lock = asyncio.Lock()
        self._kv_cache: dict[str, str | None] = {}
        self._create_queue: list[_CreateRequest] = []
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

    async def create_jobs(self, **request: Unpack[JobRequest]) -> list[Job]:
        """Queue one job per seed (shared group_id when several), all or nothing, within quota and limit."""
        jobs, _positions = await self.create_jobs_with_positions(**request)
        return jobs

    async def create_jobs_with_positions(self, **request: Unpack[JobRequest]) -> tuple[list[Job], dict[int, int]]:
        """`create_jobs`, also returning the new jobs' queue positions: all a command needs in one call.

        Concurrent callers are committed together (group commit): every request waiting when a transaction
        starts is checked and inserted in it, in arrival order, so each still sees the ones before it (the
        quota race stays exact) while a burst of commands costs one transaction and one fsync, not one each.
        """
        if not request["seeds"]:
            raise ValueError("at least one seed is required")
        pending = _CreateRequest(
            user_id=request["user_id"],
            guild_id=request["guild_id"],
            channel_id=request["channel_id"],
            prompt=request["prompt"],
            aspect=Aspect(request["aspect"]).value,
            model=ModelTier(request["model"]).value,
            seeds=[int(seed) for seed in request["seeds"]],
            daily_quota=request["daily_quota"],
            max_active=request["max_active"],
            unlimited=request.get("unlimited", False),
            options=request.get("options") or JobOptions(),
            cost=float(request.get("cost", 0.0)),
            cost_unit=request.get("cost_unit", "credits"),
            future=asyncio.get_running_loop().create_future(),
        )
        self._create_queue.append(pending)
        if self._create_drainer is None or self._create_drainer.done():
            self._create_drainer = asyncio.create_task(self._drain_creates(), name="store-create-jobs")
        try:
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            # Not yet taken into a transaction: withdraw it. Already in one: it commits with its batch.
            if pending in self._create_queue:
                self._create_queue.remove(pending)
            raise

    async def _drain_creates(self) -> None:
        while self._create_queue:
            batch: list[_CreateRequest] = []
            outcomes: list[tuple[_CreateRequest, list[int] | BaseException]] = []
            try:
                async with self._write() as conn:
                    # Taken under the lock: everything that queued up meanwhile joins this transaction.
                    batch, self._create_queue = self._create_queue, []
                    now = self._clock()
                    for request in batch:
                        try:
                            outcomes.append((request, await self._insert_jobs(conn, request, now)))
                        except (QuotaExceeded, ActiveLimitReached) as refusal:
                            outcomes.append((request, refusal))
                    created = [i for _, ids in outcomes if isinstance(ids, list) for i in ids]
                    id_list = json.dumps(created)
                    rows = await self._rows(
                        conn, _sql("SELECT {cols} FROM jobs WHERE id IN (SELECT value FROM json_each(?))"), (id_list,)
                    )
                    position_rows = await self._rows(
                        conn,
                        _sql(
                            "SELECT id, position FROM ({fair}) WHERE id IN (SELECT value FROM json_each(?))",
                            fair=_FAIR_QUEUE_SQL,
                        ),
                        (id_list,),
                    )
            except BaseException as err:  # nothing was committed: every request in the batch fails alike
                for request in batch:
                    if request.future.done():
                        continue
                    if isinstance(err, Exception):
                        request.future.set_exception(err)
                    else:
                        request.future.cancel()
                if not isinstance(err, Exception):
                    for request in self._create_queue:
                        request.future.cancel()
                    self._create_queue = []
                    raise
                continue
            jobs = {int(r["id"]): _job(r) for r in rows}
            positions = {int(r[0]): int(r[1]) for r in position_rows}
            for request, result in outcomes:
                if request.future.done():
                    continue
                if isinstance(result, BaseException):
                    request.future.set_exception(result)
                else:
                    request.future.set_result(
                        ([jobs[i] for i in result], {i: positions[i] for i in result if i in positions})
                    )

    async def _insert_jobs(self, conn: aiosqlite.Connection, request: _CreateRequest, now: float) -> list[int]:
        wanted = len(request.seeds)
        status = await self._quota_status(
            conn, request.user_id, request.daily_quota, request.max_active, request.unlimited, now
        )
        if not request.unlimited:
            if status.remaining is not None and wanted > status.remaining:
                raise QuotaExceeded(status, wanted)
            # The active limit holds back a user whose jobs are in progress; it never refuses a whole request
            # (count up to 4 against a default limit of 2) from a user with nothing in progress.
            if status.max_active is not None and status.active > 0 and status.active + wanted > status.max_active:
                raise ActiveLimitReached(status, wanted)
        ids: list[int] = []
        for seed in request.seeds:
            row = await self._one(
                conn,
                "INSERT INTO jobs (user_id, guild_id, channel_id, prompt, aspect, model, seed, state, group_id,"
                " created_at, updated_at, options, cost, cost_unit)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    request.user_id,
                    request.guild_id,
                    request.channel_id,
                    request.prompt,
                    request.aspect,
                    request.model,
                    seed,
                    ids[0] if ids else None,
                    now,
                    now,
                    request.options.to_json(),
                    request.cost,
                    request.cost_unit,
                ),
            )
            assert row is not None
            ids.append(int(row[0]))
        if wanted > 1:
            await conn.execute("UPDATE jobs SET group_id = ? WHERE id = ?", (ids[0], ids[0]))
        await conn.executemany(
            "INSERT INTO events (at, kind, job_id, actor_id, detail) VALUES (?, 'created', ?, ?, ?)",
            [(now, job_id, request.user_id, f"seed {seed}") for job_id, seed in zip(ids, request.seeds, strict=True)],
        )
        return ids

    async def set_status_message(self, job_ids: list[int], message_id: int) -> None:
        """Remember the status message of a command's jobs, in one statement."""
        async with self._lock:
            await self._require().execute(
                "UPDATE jobs SET status_message_id = ?, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
                (message_id, self._clock(), json.dumps(job_ids)),
            )

    async def get_job(self, job_id: int) -> Job | None:
        jobs = await self._jobs(_sql("SELECT {cols} FROM jobs WHERE id = ?"), (job_id,))
        return jobs[0] if jobs else None

    async def group_jobs(self, job: Job) -> list[Job]:
        """Every job of `job`'s group (one request with count > 1) in id order; just the job when ungrouped."""
        if job.group_id is None:
            current = await self.get_job(job.id)
            return [current] if current is not None else []
        return await self._jobs(
            _sql("SELECT {cols} FROM jobs INDEXED BY jobs_group WHERE group_id = ? ORDER BY id"), (job.group_id,)
        )

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

    async def count_in_flight(self, backend: str | None = None) -> int:
        """Jobs holding one of a backend's generation slots (submitting + running); all backends when None.

        A job being submitted has no backend yet: it counts against every backend until its submit answers.
        """
        return int(
            await self._scalar(
                _sql(
                    "SELECT COUNT(*) FROM jobs INDEXED BY jobs_in_flight WHERE state IN ({in_flight})"
                    " AND (:backend IS NULL OR backend IS NULL OR backend = :backend)"
                ),
                {"backend": backend},
            )
            or 0
        )

    async def spend(
        self, unit: str, since: float, *, user_id: int | None = None, submitted_only: bool = False
    ) -> float:
        """Estimated spend in `unit` of jobs created since `since` that made (or may still make) a video.

        A submit that may have been accepted but was never confirmed (``unconfirmed``, ``interrupted``) counts:
        the money may be gone. `submitted_only`: only jobs a backend took, not those still in our queue.
        """
        value = await self._scalar(
            _sql(
                "SELECT TOTAL(cost) FROM jobs INDEXED BY jobs_spend WHERE cost > 0 AND cost_unit = :unit"
                " AND created_at >= :since AND (state NOT IN ({unsuccessful}) OR error_kind IN ({maybe_charged}))"
                " AND (:user IS NULL OR user_id = :user)"
                " AND (:submitted = 0 OR backend IS NOT NULL OR error_kind IN ({maybe_charged}))",
                maybe_charged="'interrupted', 'unconfirmed'",
            ),
            {"unit": unit, "since": since, "user": user_id, "submitted": int(submitted_only)},
        )
        return float(value or 0.0)

    async def jobs_in_state(self, *states: JobState, limit: int | None = None) -> list[Job]:
        """Jobs in any of `states`, oldest first (e.g. the running jobs to poll in one batch)."""
        if not states:
            return []
        return await self._jobs(
            _sql(
                "SELECT {cols} FROM jobs INDEXED BY jobs_state WHERE state IN ({states}) ORDER BY id LIMIT ?",
                states=_states(states),
            ),
            (-1 if limit is None else limit,),
        )

    async def unfinished_jobs(self) -> list[Job]:
        """Every job not yet in a terminal state, oldest first: what a restart must resume."""
        return await self.jobs_in_state(*UNFINISHED_STATES)

    async def user_jobs(self, user_id: int, *, limit: int = 10) -> list[Job]:
        """A user's unfinished jobs (oldest first), then their most recent finished ones."""
        async with self._read() as conn:
            return await self._user_jobs(conn, user_id, limit)

    async def _user_jobs(self, conn: aiosqlite.Connection, user_id: int, limit: int) -> list[Job]:
        rows = await self._rows(
            conn,
            _sql(
                "SELECT {cols} FROM jobs INDEXED BY jobs_user_unfinished"
                " WHERE user_id = ? AND state IN ({unfinished})"
                " ORDER BY id LIMIT ?"
            ),
            (user_id, limit),
        )
        if len(rows) < limit:
            rows += await self._rows(
                conn,
                _sql(
                    "SELECT {cols} FROM jobs INDEXED BY jobs_user_created"
                    " WHERE user_id = ? AND state IN ({terminal})"
                    " ORDER BY created_at DESC, id DESC LIMIT ?"
                ),
                (user_id, limit - len(rows)),
            )
        return [_job(r) for r in rows]

    async def user_overview(
        self, user_id: int, *, daily_quota: int, max_active: int, unlimited: bool = False, limit: int = 10
    ) -> Overview:
        """Everything `/veo status` shows, read from one snapshot in one call (it is the hottest read)."""
        async with self._read() as conn:
            jobs = await self._user_jobs(conn, user_id, limit)
            queued_ids = json.dumps([j.id for j in jobs if j.state is JobState.QUEUED])
            positions: dict[int, int] = {}
            if queued_ids != "[]":
                for r in await self._rows(
                    conn,
                    _sql(
                        "SELECT id, position FROM ({fair}) WHERE id IN (SELECT value FROM json_each(?))",
                        fair=_FAIR_QUEUE_SQL,
                    ),
                    (queued_ids,),
                ):
                    positions[int(r[0])] = int(r[1])
            count = await self._one(conn, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
            queued = int(count[0]) if count else 0
            quota = await self._quota_status(conn, user_id, daily_quota, max_active, unlimited, self._clock())
            durations = await self._durations(conn, 20)
        return Overview(jobs=jobs, positions=positions, queued=queued, quota=quota, durations=durations)

    async def recent_user_jobs(self, user_id: int, query: str = "", limit: int = 25) -> list[Job]:
        """A user's jobs, newest first, whose id starts with or prompt contains `query` (for autocomplete)."""
        text = query.strip()
        digits = text.removeprefix("#")
        return await self._jobs(
            _sql(
                "SELECT {cols} FROM jobs INDEXED BY jobs_user_created WHERE user_id = :user AND (:text = ''"
                " OR substr(CAST(id AS TEXT), 1, length(:id)) = :id"
                " OR instr(lower(prompt), lower(:text)) > 0)"
                " ORDER BY created_at DESC, id DESC LIMIT :limit"
            ),
            {"user": user_id, "text": text, "id": digits if digits.isdigit() else None, "limit": limit},
        )

    async def queue_positions(self) -> dict[int, int]:
        """Map each queued job id to its 1-based place in the fair order."""
        async with self._lock:
            rows = await self._rows(self._require(), _FAIR_QUEUE_SQL)
        return {int(r[0]): int(r[1]) for r in rows}

    async def queue_position(self, job_id: int) -> int | None:
        """The job's 1-based place in the fair order; None when it is not queued."""
        value = await self._scalar(_sql("SELECT position FROM ({fair}) WHERE id = ?", fair=_FAIR_QUEUE_SQL), (job_id,))
        return int(value) if isinstance(value, int) else None

    # -- quotas ---------------------------------------------------------------------------------------------

    async def quota_status(
        self, user_id: int, *, daily_quota: int, max_active: int, unlimited: bool = False
    ) -> QuotaStatus:
        async with self._read() as conn:
            return await self._quota_status(conn, user_id, daily_quota, max_active, unlimited, self._clock())

    async def _quota_status(
        self,
        conn: aiosqlite.Connection,
        user_id: int,
        daily_quota: int,
        max_active: int,
        unlimited: bool,
        now: float,
    ) -> QuotaStatus:
        # One statement, not three: this runs inside every command's transaction.
        row = await self._one(
            conn,
            _sql(
                "SELECT (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_created"
                "        WHERE user_id = :user AND created_at > :since AND state NOT IN ({unsuccessful})),"
                " (SELECT MIN(created_at) FROM jobs INDEXED BY jobs_user_created"
                "        WHERE user_id = :user AND created_at > :since AND state NOT IN ({unsuccessful})),"
                " (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_unfinished"
                "        WHERE user_id = :user AND state IN ({unfinished})),"
                " (SELECT daily FROM quota_overrides WHERE user_id = :user)"
            ),
            {"user": user_id, "since": now - QUOTA_WINDOW},
        )
        assert row is not None
        used, oldest, active, override = int(row[0]), row[1], int(row[2]), row[3]
        if unlimited:
            return QuotaStatus(used=used, limit=None, remaining=None, resets_at=None, active=active, max_active=None)
        limit = int(override) if override is not None else daily_quota
        return QuotaStatus(
            used=used,
            limit=limit,
            remaining=max(0, limit - used),
            resets_at=float(oldest) + QUOTA_WINDOW if oldest is not None else None,
            active=active,
            max_active=max_active,
        )

    async def set_quota_override(self, user_id: int, daily: int | None, *, actor_id: int | None = None) -> None:
        """Give a user their own daily quota (None: back to the default); logged as an admin action."""
        if daily is not None and daily < 0:
            raise ValueError("daily quota cannot be negative")
        async with self._write() as conn:
            now = self._clock()
            if daily is None:
                await conn.execute("DELETE FROM quota_overrides WHERE user_id = ?", (user_id,))
            else:
                await conn.execute(
                    "INSERT INTO quota_overrides (user_id, daily, updated_at) VALUES (?, ?, ?) ON CONFLICT"
                    " (user_id) DO UPDATE SET daily = excluded.daily, updated_at = excluded.updated_at",
                    (user_id, daily, now),
                )
            shown = "default" if daily is None else str(daily)
            await self._append_event(conn, now, "quota_override", None, actor_id, f"user {user_id}: {shown}")

    async def get_quota_override(self, user_id: int) -> int | None:
        value = await self._scalar("SELECT daily FROM quota_overrides WHERE user_id = ?", (user_id,))
        return int(value) if isinstance(value, int) else None

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

    async def events(self, *, job_id: int | None = None, limit: int = 100) -> list[Event]:
        """The latest `limit` events (of one job, or all), in the order they happened."""
        async with self._lock:
            rows = await self._rows(
                self._require(),
                "SELECT * FROM (SELECT id, at, kind, job_id, actor_id, detail FROM events"
                " WHERE (?1 IS NULL OR job_id = ?1) ORDER BY id DESC LIMIT ?2) ORDER BY id",
                (job_id, limit),
            )
        return [Event.model_validate(dict(zip(r.keys(), r, strict=True))) for r in rows]

    # -- admin and maintenance ------------------------------------------------------------------------------

    async def stats(self) -> dict[str, int]:
        """Job count per state (every state present, zero included) plus "total"."""
        async with self._lock:
            rows = await self._rows(self._require(), "SELECT state, COUNT(*) FROM jobs GROUP BY state")
        counts = {state.value: 0 for state in JobState}
        for state, count in rows:
            counts[str(state)] = int(count)
        counts["total"] = sum(counts.values())
        return counts

    async def recent_durations(self, limit: int = 20) -> list[float]:
        """Seconds from submission to delivery of the most recently delivered jobs, newest first."""
        async with self._lock:
            return await self._durations(self._require(), limit)

    async def _durations(self, conn: aiosqlite.Connection, limit: int) -> list[float]:
        rows = await self._rows(
            conn,
            "SELECT finished_at - submitted_at FROM jobs INDEXED BY jobs_state_finished WHERE state = 'delivered'"
            " AND submitted_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        )
        return [float(r[0]) for r in rows]

    async def media_to_prune(self, older_than: float, *, limit: int | None = None) -> list[Job]:
        """Finished jobs still holding a local file, finished more than `older_than` seconds ago, oldest first.

        Delivered jobs mostly, but also failed or cancelled ones that had downloaded a file, so nothing
        leaks. After deleting the file, clear it with ``update_job(id, file_path=None)``; that keeps the
        index behind this query small.
        """
        return await self._jobs(
            _sql(
                "SELECT {cols} FROM jobs INDEXED BY jobs_media WHERE file_path IS NOT NULL AND finished_at < ?"
                " AND state IN ({terminal}) ORDER BY finished_at LIMIT ?"
            ),
            (self._clock() - older_than, -1 if limit is None else limit),
        )
