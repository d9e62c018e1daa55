-- 0004: keys of the HTTP API. Only a SHA-256 hash of each key is kept; the key itself is printed once at
-- creation. An API key's jobs are stored with user_id = -(api_keys.id), so quotas and fairness treat it as a user.

CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    hash          BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    -- videos per rolling 24 h; NULL: VEO_DAILY_QUOTA
    daily_quota   INTEGER CHECK (daily_quota IS NULL OR daily_quota >= 0),
    created_at    REAL    NOT NULL,
    last_used_at  REAL,
    revoked_at    REAL
);
-- Usage (videos requested with a key) is counted from jobs (jobs_user_created), not kept here: a counter
-- would cost every request a second committed write.
