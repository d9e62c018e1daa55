"""Durable job store: the only package that speaks SQL; plain typed rows in and out, no Discord, no Flow."""

from __future__ import annotations

from storage._create import MAX_CREATE_BATCH, JobRequest
from storage._queries import Overview
from storage._sql import (
    MAX_NONCE_LENGTH,
    NONCE_WINDOW,
    QUOTA_WINDOW,
    UPDATABLE_COLUMNS,
    new_nonce,
    recovery_action,
)
from storage.db import BUSY_TIMEOUT_MS, connect, load_migrations
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
from storage.store import Store

DATABASE_FILENAME = "veo.sqlite3"

__all__ = [
    "ALLOWED_TRANSITIONS",
    "BUSY_TIMEOUT_MS",
    "DATABASE_FILENAME",
    "IN_FLIGHT_STATES",
    "MAX_CREATE_BATCH",
    "MAX_NONCE_LENGTH",
    "NONCE_WINDOW",
    "QUOTA_WINDOW",
    "TERMINAL_STATES",
    "UNFINISHED_STATES",
    "UNSUCCESSFUL_STATES",
    "UPDATABLE_COLUMNS",
    "ActiveLimitReached",
    "Aspect",
    "Event",
    "InvalidTransition",
    "Job",
    "JobOptions",
    "JobRequest",
    "JobState",
    "ModelTier",
    "Overview",
    "QuotaExceeded",
    "QuotaStatus",
    "RecoveryAction",
    "StorageError",
    "Store",
    "connect",
    "load_migrations",
    "new_nonce",
    "recovery_action",
]
