"""Creating jobs: group commit of concurrent commands (and their status message ids) on the database thread."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, Unpack

from storage._sql import (
    _FAIR_QUEUE_SQL,
    QUOTA_WINDOW,
    _job,
    _quota_from_row,
    _sql,
)
from storage.db import run_in_thread
from storage.models import (
    ActiveLimitReached,
    Aspect,
    Job,
    JobOptions,
    ModelTier,
    QuotaExceeded,
    StorageError,
)

if TYPE_CHECKING:
    from storage.store import Store


#: Requests per group-commit transaction: big enough that a burst costs few fsyncs, small enough that the first
#: answers go out while the next batch is being written (and the replies do not all leave at once).
MAX_CREATE_BATCH = 64


# A group-commit round is a handful of set-based statements, not a few per command: every statement is a
# hand-over of the GIL between the store's thread and a busy event loop (up to the 5 ms switch interval each).
# Only integers and plain text travel as JSON; REAL values are bound as parameters or read back with quote(),
# since SQLite's JSON number conversions are not exact for doubles.
_BATCH_QUOTA_SQL = _sql(
    "SELECT json_group_array(json_array(u.value,"
    " (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_created"
    "   WHERE user_id = u.value AND created_at > :since AND state NOT IN ({unsuccessful})),"
    " (SELECT quote(MIN(created_at)) FROM jobs INDEXED BY jobs_user_created"
    "   WHERE user_id = u.value AND created_at > :since AND state NOT IN ({unsuccessful})),"
    " (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_unfinished WHERE user_id = u.value AND state IN ({unfinished})),"
    " (SELECT daily FROM quota_overrides WHERE user_id = u.value)))"
    " FROM json_each(:users) AS u"
)


# One multi-row VALUES statement: every value bound as a parameter (text may hold NUL, which json_extract cuts).
_INSERT_JOBS_HEAD = (
    "INSERT INTO jobs (user_id, guild_id, channel_id, prompt, aspect, model, seed, state, created_at, updated_at,"
    " options, cost, cost_unit) VALUES "
)


_INSERT_JOBS_ROW = "(?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)"


_NEW_IDS_SQL = "SELECT json_group_array(id) FROM (SELECT id FROM jobs WHERE id > ? ORDER BY id)"


_SET_GROUPS_SQL = (
    "UPDATE jobs SET group_id = json_extract(g.value, '$[1]') FROM json_each(?) AS g"
    " WHERE jobs.id = json_extract(g.value, '$[0]')"
)


_CREATED_EVENTS_SQL = (
    "INSERT INTO events (at, kind, job_id, actor_id, detail) SELECT :now, 'created', json_extract(value, '$[0]'),"
    " json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(:rows) ORDER BY key"
)


_SET_STATUS_SQL = (
    "UPDATE jobs SET status_message_id = json_extract(m.value, '$[1]'), updated_at = :now FROM json_each(:marks) AS m"
    " WHERE jobs.id = json_extract(m.value, '$[0]')"
)


_NEW_JOBS_SQL = _sql("SELECT {cols} FROM jobs WHERE id IN (SELECT value FROM json_each(?))")


_NEW_POSITIONS_SQL = _sql(
    "SELECT json_group_array(json_array(id, position)) FROM ({fair}) WHERE id IN (SELECT value FROM json_each(?))",
    fair=_FAIR_QUEUE_SQL,
)


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


@dataclass(slots=True, eq=False)
class _StatusMark:
    job_ids: list[int]
    message_id: int
    future: asyncio.Future[None]


_Outcome = list[int] | QuotaExceeded | ActiveLimitReached


def _admit(request: _CreateRequest, quota: list[Any]) -> QuotaExceeded | ActiveLimitReached | None:
    """Check one request against its user's figures [used, oldest, active, override], which already count the
    requests admitted before it in the batch; count it in when admitted."""
    wanted = len(request.seeds)
    status = _quota_from_row(quota, request.daily_quota, request.max_active, request.unlimited)
    if not request.unlimited:
        if status.remaining is not None and wanted > status.remaining:
            return QuotaExceeded(status, wanted)
        # The active limit holds back a user whose jobs are in progress; it never refuses a whole request
        # (count up to 4 against a default limit of 2) from a user with nothing in progress.
        if status.max_active is not None and status.active > 0 and status.active + wanted > status.max_active:
            return ActiveLimitReached(status, wanted)
    quota[0] += wanted
    quota[2] += wanted
    return None


def _insert_jobs(db: sqlite3.Connection, batch: list[_CreateRequest], now: float) -> list[_Outcome]:
    """Check every request's quota in arrival order and insert the admitted ones' jobs and events, set-based."""
    users = sorted({request.user_id for request in batch})
    figures = json.loads(
        db.execute(_BATCH_QUOTA_SQL, {"users": json.dumps(users), "since": now - QUOTA_WINDOW}).fetchone()[0]
    )
    quota: dict[int, list[Any]] = {}
    for user, used, oldest, active, override in figures:
        quota[int(user)] = [used, None if oldest in (None, "NULL") else float(oldest), active, override]
    admitted: list[_CreateRequest] = []
    outcomes: list[_Outcome] = []
    for request in batch:
        figures_now = quota[request.user_id]
        refusal = _admit(request, figures_now)
        if figures_now[1] is None and refusal is None:
            figures_now[1] = now
        outcomes.append(refusal if refusal is not None else [])
        if refusal is None:
            admitted.append(request)
    if not admitted:
        return outcomes
    rows = [
        (r.user_id, r.guild_id, r.channel_id, r.prompt, r.aspect, r.model, seed, now, now, r.options.to_json(),
         r.cost, r.cost_unit)
        for r in admitted
        for seed in r.seeds
    ]  # fmt: skip
    before = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0])
    db.execute(_INSERT_JOBS_HEAD + ", ".join([_INSERT_JOBS_ROW] * len(rows)), [v for row in rows for v in row])
    new_ids: list[int] = json.loads(db.execute(_NEW_IDS_SQL, (before,)).fetchone()[0])
    if len(new_ids) != len(rows):
        raise StorageError(f"inserted {len(rows)} jobs but found {len(new_ids)} new rows")
    ids = iter(new_ids)
    groups: list[list[int]] = []
    events: list[list[object]] = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, list):
            mine = [next(ids) for _ in batch[i].seeds]
            outcomes[i] = mine
            if len(mine) > 1:
                groups += [[job_id, mine[0]] for job_id in mine]
            events += [
                [job_id, batch[i].user_id, f"seed {seed}"] for job_id, seed in zip(mine, batch[i].seeds, strict=True)
            ]
    if groups:
        db.execute(_SET_GROUPS_SQL, (json.dumps(groups),))
    db.execute(_CREATED_EVENTS_SQL, {"now": now, "rows": json.dumps(events)})
    return outcomes


def _commit_batch(
    batch: list[_CreateRequest],
    marks: list[_StatusMark],
    now: float,
    abandoned: threading.Event,
    db: sqlite3.Connection,
) -> tuple[list[_Outcome], dict[int, Job], dict[int, int]]:
    """One group-commit transaction: status message ids, then every request in arrival order, then their rows.

    Runs on the connection's thread. Each request sees the ones before it, so the quota race stays exact; a
    refused request changes nothing and the others go on. Any other error rolls the whole batch back, and so
    does `abandoned` (the waiting task was cancelled) when it is set before the commit.
    """
    if abandoned.is_set():
        raise asyncio.CancelledError
    db.execute("BEGIN IMMEDIATE")
    try:
        if marks:
            pairs = [[job_id, mark.message_id] for mark in marks for job_id in mark.job_ids]
            db.execute(_SET_STATUS_SQL, {"now": now, "marks": json.dumps(pairs)})
        outcomes = _insert_jobs(db, batch, now) if batch else []
        created = json.dumps([i for ids in outcomes if isinstance(ids, list) for i in ids])
        jobs = {int(r["id"]): _job(r) for r in db.execute(_NEW_JOBS_SQL, (created,))} if batch else {}
        pairs_json = db.execute(_NEW_POSITIONS_SQL, (created,)).fetchone()[0] if batch else "[]"
        positions = {int(job_id): int(position) for job_id, position in json.loads(pairs_json)}
        if abandoned.is_set():
            raise asyncio.CancelledError
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):  # no transaction open: BEGIN itself failed
            db.execute("ROLLBACK")
        raise
    return outcomes, jobs, positions


class CreateMixin:
    """Part of `Store`: see storage/store.py."""

    async def create_jobs(self: Store, **request: Unpack[JobRequest]) -> list[Job]:
        """Queue one job per seed (shared group_id when several), all or nothing, within quota and limit."""
        jobs, _positions = await self.create_jobs_with_positions(**request)
        return jobs

    async def create_jobs_with_positions(
        self: Store, **request: Unpack[JobRequest]
    ) -> tuple[list[Job], dict[int, int]]:
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
        self._start_writer()
        # Not shielded: cancelling the caller cancels this future at once, and a cancelled request that no
        # transaction has taken yet is left out of the next one. Already in one: it commits with its batch.
        return await pending.future

    def _start_writer(self: Store) -> None:
        if self._create_drainer is None or self._create_drainer.done():
            self._create_drainer = asyncio.create_task(self._drain_creates(), name="store-create-jobs")

    async def _drain_creates(self: Store) -> None:
        """Commit what commands queued (new jobs, status message ids), one transaction per round.

        The whole transaction runs as one function on the connection's thread: one round trip to it per
        round instead of several per command, so a burst never waits for the event loop between statements.
        """
        while self._create_queue or self._status_queue:
            cancelled = False
            async with self._lock:
                # Taken under the lock: everything that queued up meanwhile joins this transaction.
                live = [request for request in self._create_queue if not request.future.done()]
                batch, self._create_queue = live[:MAX_CREATE_BATCH], live[MAX_CREATE_BATCH:]
                marks, self._status_queue = self._status_queue, []
                if not batch and not marks:
                    continue
                try:
                    conn = self._require()
                    now = self._clock()
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError  # not submitted: nothing to undo
                    abandoned = threading.Event()
                    call = asyncio.ensure_future(
                        run_in_thread(conn, functools.partial(_commit_batch, batch, marks, now, abandoned))
                    )
                    try:
                        outcomes, jobs, positions = await asyncio.shield(call)
                    except asyncio.CancelledError:
                        # The transaction is on the connection's thread: it commits or rolls back as a whole.
                        # Wait for which, so that every caller learns the truth, then stop.
                        abandoned.set()
                        cancelled = True
                        outcomes, jobs, positions = await call
                except BaseException as err:  # nothing was committed: every request in the batch fails alike
                    waiting = [*batch, *marks]
                    if not isinstance(err, Exception):
                        waiting += [*self._create_queue, *self._status_queue]
                        self._create_queue, self._status_queue = [], []
                    for request in waiting:
                        if request.future.done():
                            continue
                        if isinstance(err, Exception):
                            request.future.set_exception(err)
                        else:
                            request.future.cancel()
                    if not isinstance(err, Exception):
                        raise
                    continue
            for mark in marks:
                if not mark.future.done():
                    mark.future.set_result(None)
            for request, result in zip(batch, outcomes, strict=True):
                if request.future.done():
                    continue
                if isinstance(result, BaseException):
                    request.future.set_exception(result)
                else:
                    request.future.set_result(
                        ([jobs[i] for i in result], {i: positions[i] for i in result if i in positions})
                    )
            if cancelled:
                for request in [*self._create_queue, *self._status_queue]:
                    request.future.cancel()
                self._create_queue, self._status_queue = [], []
                raise asyncio.CancelledError

    async def set_status_message(self: Store, job_ids: list[int], message_id: int) -> None:
        """Remember the status message of a command's jobs; concurrent calls share one transaction."""
        mark = _StatusMark(job_ids, message_id, asyncio.get_running_loop().create_future())
        self._status_queue.append(mark)
        self._start_writer()
        await asyncio.shield(mark.future)
