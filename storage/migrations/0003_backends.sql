-- 0003: backends. Each job records the backend that took it and that backend's reference (so a restart finishes
-- it where it started), its creative options (JSON), its estimated cost, and where it came from; `lite` joins the
-- models. SQLite cannot change a CHECK constraint in place: the table is rebuilt (foreign keys are off during
-- migrations and checked before commit, see storage/db.py).

CREATE TABLE jobs_new (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             INTEGER NOT NULL,
    guild_id            INTEGER,
    channel_id          INTEGER NOT NULL,
    prompt              TEXT    NOT NULL,
    aspect              TEXT    NOT NULL CHECK (aspect IN ('landscape', 'portrait')),
    model               TEXT    NOT NULL CHECK (model IN ('fast', 'quality', 'lite')),
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
    delivery_nonce      TEXT CHECK (delivery_nonce IS NULL OR length(delivery_nonce) BETWEEN 1 AND 25),
    delivering_at       REAL,
    notice_nonce        TEXT CHECK (notice_nonce IS NULL OR length(notice_nonce) BETWEEN 1 AND 25),
    notice_at           REAL,
    notice_message_id   INTEGER,
    notified_at         REAL,
    created_at          REAL    NOT NULL,
    submitted_at        REAL,
    finished_at         REAL,
    updated_at          REAL    NOT NULL,
    -- the backend that took the job ('flow', 'vertex'; NULL until submitted) and its reference to the generation
    backend             TEXT CHECK (backend IS NULL OR backend IN ('flow', 'vertex')),
    backend_ref         TEXT,
    -- creative options as JSON (storage/models.py JobOptions): duration, resolution, audio, negative prompt,
    -- input files under VEO_DATA_DIR, the job extended
    options             TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(options)),
    -- estimated cost when queued: USD on Vertex AI, credits on Flow; a job that made no video costs nothing
    cost                REAL    NOT NULL DEFAULT 0 CHECK (cost >= 0),
    cost_unit           TEXT    NOT NULL DEFAULT 'credits' CHECK (cost_unit IN ('usd', 'credits'))
);

INSERT INTO jobs_new (
    id, user_id, guild_id, channel_id, prompt, aspect, model, model_key, seed, group_id, state, scene_id,
    operation_name, media_name, project_id, protocol, attempts, error_kind, error_message, file_path, file_size,
    status_message_id, result_message_id, delivery_nonce, delivering_at, notice_nonce, notice_at, notice_message_id,
    notified_at, created_at, submitted_at, finished_at, updated_at, backend, backend_ref)
SELECT
    id, user_id, guild_id, channel_id, prompt, aspect, model, model_key, seed, group_id, state, scene_id,
    operation_name, media_name, project_id, protocol, attempts, error_kind, error_message, file_path, file_size,
    status_message_id, result_message_id, delivery_nonce, delivering_at, notice_nonce, notice_at, notice_message_id,
    notified_at, created_at, submitted_at, finished_at, updated_at,
    CASE WHEN operation_name IS NOT NULL THEN 'flow' END,
    CASE WHEN operation_name IS NOT NULL THEN json_object(
        'operation_name', operation_name, 'scene_id', scene_id, 'media_name', media_name,
        'project_id', project_id, 'protocol', COALESCE(protocol, 'operations')) END
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE INDEX jobs_user_created ON jobs (user_id, created_at);
CREATE INDEX jobs_user_unfinished ON jobs (user_id)
    WHERE state IN ('delivering', 'downloading', 'queued', 'running', 'submitting');
CREATE INDEX jobs_queued ON jobs (user_id, id) WHERE state = 'queued';
CREATE INDEX jobs_in_flight ON jobs (user_id) WHERE state IN ('running', 'submitting');
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_state_finished ON jobs (state, finished_at);
CREATE INDEX jobs_media ON jobs (finished_at) WHERE file_path IS NOT NULL;
CREATE INDEX jobs_notice_pending ON jobs (id)
    WHERE notified_at IS NULL AND state IN ('cancelled', 'failed', 'timed_out');
CREATE INDEX jobs_group ON jobs (group_id) WHERE group_id IS NOT NULL;
-- Estimated spend per backend over a period (budget, /veo-admin credits, /veo status).
CREATE INDEX jobs_spend ON jobs (cost_unit, created_at) WHERE cost > 0;
