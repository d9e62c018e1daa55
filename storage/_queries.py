"""Reading jobs: queues, users' views, quotas, spend, statistics and the audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosqlite

from storage._sql import (
    _FAIR_QUEUE_SQL,
    _QUOTA_SQL,
    QUOTA_WINDOW,
    _job,
    _quota_from_row,
    _sql,
    _states,
)
from storage.models import (
    UNFINISHED_STATES,
    Event,
    Job,
    JobState,
    QuotaStatus,
)

if TYPE_CHECKING:
    from storage.store import Store


@dataclass(slots=True, frozen=True)
class Overview:
    """A user's view of the queue: their jobs, their queued jobs' positions, the queue length, their quota."""

    jobs: list[Job]
    positions: dict[int, int]
    queued: int
    quota: QuotaStatus
    durations: list[float]


class QueryMixin:
    """Part of `Store`: see storage/store.py."""

    async def get_job(self: Store, job_id: int) -> Job | None:
        jobs = await self._jobs(_sql("SELECT {cols} FROM jobs WHERE id = ?"), (job_id,))
        return jobs[0] if jobs else None

    async def group_jobs(self: Store, job: Job) -> list[Job]:
        """Every job of `job`'s group (one request with count > 1) in id order; just the job when ungrouped."""
        if job.group_id is None:
            current = await self.get_job(job.id)
            return [current] if current is not None else []
        return await self._jobs(
            _sql("SELECT {cols} FROM jobs INDEXED BY jobs_group WHERE group_id = ? ORDER BY id"), (job.group_id,)
        )

    async def count_in_flight(self: Store, backend: str | None = None) -> int:
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

    async def jobs_in_state(self: Store, *states: JobState, limit: int | None = None) -> list[Job]:
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

    async def unfinished_jobs(self: Store) -> list[Job]:
        """Every job not yet in a terminal state, oldest first: what a restart must resume."""
        return await self.jobs_in_state(*UNFINISHED_STATES)

    async def user_jobs(self: Store, user_id: int, *, limit: int = 10) -> list[Job]:
        """A user's unfinished jobs (oldest first), then their most recent finished ones."""
        async with self._read() as conn:
            return await self._user_jobs(conn, user_id, limit)

    async def _user_jobs(self: Store, conn: aiosqlite.Connection, user_id: int, limit: int) -> list[Job]:
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

    async def recent_user_jobs(self: Store, user_id: int, query: str = "", limit: int = 25) -> list[Job]:
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

    async def queue_positions(self: Store) -> dict[int, int]:
        """Map each queued job id to its 1-based place in the fair order."""
        async with self._lock:
            rows = await self._rows(self._require(), _FAIR_QUEUE_SQL)
        return {int(r[0]): int(r[1]) for r in rows}

    async def queue_position(self: Store, job_id: int) -> int | None:
        """The job's 1-based place in the fair order; None when it is not queued."""
        value = await self._scalar(_sql("SELECT position FROM ({fair}) WHERE id = ?", fair=_FAIR_QUEUE_SQL), (job_id,))
        return int(value) if isinstance(value, int) else None

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
        row = await self._one(conn, _QUOTA_SQL, {"user": user_id, "since": now - QUOTA_WINDOW})
        assert row is not None
        return _quota_from_row(row, daily_quota, max_active, unlimited)

    async def set_quota_override(self: Store, user_id: int, daily: int | None, *, actor_id: int | None = None) -> None:
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

    async def get_quota_override(self: Store, user_id: int) -> int | None:
        value = await self._scalar("SELECT daily FROM quota_overrides WHERE user_id = ?", (user_id,))
        return int(value) if isinstance(value, int) else None

    async def events(self: Store, *, job_id: int | None = None, limit: int = 100) -> list[Event]:
        """The latest `limit` events (of one job, or all), in the order they happened."""
        async with self._lock:
            rows = await self._rows(
                self._require(),
                "SELECT * FROM (SELECT id, at, kind, job_id, actor_id, detail FROM events"
                " WHERE (?1 IS NULL OR job_id = ?1) ORDER BY id DESC LIMIT ?2) ORDER BY id",
                (job_id, limit),
            )
        return [Event.model_validate(dict(zip(r.keys(), r, strict=True))) for r in rows]

    async def stats(self: Store) -> dict[str, int]:
        """Job count per state (every state present, zero included) plus "total"."""
        async with self._lock:
            rows = await self._rows(self._require(), "SELECT state, COUNT(*) FROM jobs GROUP BY state")
        counts = {state.value: 0 for state in JobState}
        for state, count in rows:
            counts[str(state)] = int(count)
        counts["total"] = sum(counts.values())
        return counts

    async def recent_durations(self: Store, limit: int = 20) -> list[float]:
        """Seconds from submission to delivery of the most recently delivered jobs, newest first."""
        async with self._lock:
            return await self._durations(self._require(), limit)

    async def _durations(self: Store, conn: aiosqlite.Connection, limit: int) -> list[float]:
        rows = await self._rows(
            conn,
            "SELECT finished_at - submitted_at FROM jobs INDEXED BY jobs_state_finished WHERE state = 'delivered'"
            " AND submitted_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        )
        return [float(r[0]) for r in rows]

    async def media_to_prune(self: Store, older_than: float, *, limit: int | None = None) -> list[Job]:
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
