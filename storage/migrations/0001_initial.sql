-- 0001: jobs, quota overrides, key-value settings and the append-only event log.
-- Times are float seconds since the epoch, taken from the store's injected clock.

CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             INTEGER NOT NULL,
    guild_id            INTEGER,
    channel_id          INTEGER NOT NULL,
    prompt              TEXT    NOT NULL,
    aspect              TEXT    NOT NULL CHECK (aspect IN ('landscape', 'portrait')),
    model               TEXT    NOT NULL CHECK (model IN ('fast', 'quality')),
    model_key           TEXT,
    seed                INTEGER NOT NULL,
    group_id            INTEGER,
    state               TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN (
                            'queued', 'submitting', 'running', 'downloading', 'delivering',
                            'delivered', 'failed', 'cancelled', 'timed_out')),
    scene_id            TEXT,
    operation_name      TEXT,
    media_name          TEXT,
    project_id          TEXT,
    protocol            TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    error_kind          TEXT,
    error_message       TEXT,
    file_path           TEXT,
    file_size           INTEGER,
    status_message_id   INTEGER,
    result_message_id   INTEGER,
    -- exactly-once posting of the video (see storage/store.py)
    delivery_nonce      TEXT CHECK (delivery_nonce IS NULL OR length(delivery_nonce) BETWEEN 1 AND 25),
    delivering_at       REAL,
    -- exactly-once posting of the failure / cancellation / timeout notice of a terminal job
    notice_nonce        TEXT CHECK (notice_nonce IS NULL OR length(notice_nonce) BETWEEN 1 AND 25),
    notice_at           REAL,
    notice_message_id   INTEGER,
    notified_at         REAL,
    created_at          REAL    NOT NULL,
    submitted_at        REAL,
    finished_at         REAL,
    updated_at          REAL    NOT NULL
);

-- Partial-index predicates must repeat, term for term and in the same (alphabetical) order, the state lists
-- that storage/store.py renders into its queries; otherwise SQLite cannot use them. A test checks the plans.

-- Quota window and "my jobs" (autocomplete, recent history) per user.
CREATE INDEX jobs_user_created ON jobs (user_id, created_at);
-- A user's unfinished jobs (active limit, status): small by construction.
CREATE INDEX jobs_user_unfinished ON jobs (user_id)
    WHERE state IN ('delivering', 'downloading', 'queued', 'running', 'submitting');
-- The queue in fair order: per user, FIFO by id.
CREATE INDEX jobs_queued ON jobs (user_id, id) WHERE state = 'queued';
-- Jobs holding a Flow slot, per user (fair-order turns, in-flight count).
CREATE INDEX jobs_in_flight ON jobs (user_id) WHERE state IN ('running', 'submitting');
-- Jobs by state in id order (polling, resume); the rowid is the implicit tail of the index.
CREATE INDEX jobs_state ON jobs (state);
-- Recent durations of delivered jobs.
CREATE INDEX jobs_state_finished ON jobs (state, finished_at);
-- Media retention: only rows that still hold a local file.
CREATE INDEX jobs_media ON jobs (finished_at) WHERE file_path IS NOT NULL;
-- Terminal jobs whose notice has not been confirmed posted.
CREATE INDEX jobs_notice_pending ON jobs (id)
    WHERE notified_at IS NULL AND state IN ('cancelled', 'failed', 'timed_out');

CREATE TABLE quota_overrides (
    user_id     INTEGER PRIMARY KEY,
    daily       INTEGER NOT NULL CHECK (daily >= 0),
    updated_at  REAL    NOT NULL
);

CREATE TABLE kv (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL    NOT NULL,
    kind        TEXT    NOT NULL,
    job_id      INTEGER REFERENCES jobs (id),
    actor_id    INTEGER,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX events_job ON events (job_id, id) WHERE job_id IS NOT NULL;

-- The event log is an audit trail: rows are only ever appended.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
