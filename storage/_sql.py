"""The store's SQL building blocks: constants, whitelisted fragments, row conversion, nonces."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from storage.models import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    UNFINISHED_STATES,
    UNSUCCESSFUL_STATES,
    Job,
    JobState,
    QuotaStatus,
    RecoveryAction,
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


# A user's quota figures in one statement, not three (`/veo status`, `quota_status`; rounds use the batch form).
_QUOTA_SQL = _sql(
    "SELECT (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_created"
    "        WHERE user_id = :user AND created_at > :since AND state NOT IN ({unsuccessful})),"
    " (SELECT MIN(created_at) FROM jobs INDEXED BY jobs_user_created"
    "        WHERE user_id = :user AND created_at > :since AND state NOT IN ({unsuccessful})),"
    " (SELECT COUNT(*) FROM jobs INDEXED BY jobs_user_unfinished"
    "        WHERE user_id = :user AND state IN ({unfinished})),"
    " (SELECT daily FROM quota_overrides WHERE user_id = :user)"
)


def _quota_from_row(row: Sequence[Any], daily_quota: int, max_active: int, unlimited: bool) -> QuotaStatus:
    """QuotaStatus from [used, oldest created_at in the window, active, override]."""
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
