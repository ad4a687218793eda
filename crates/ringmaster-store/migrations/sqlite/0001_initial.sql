-- Ringmaster store schema (SQLite). Kept close to portable SQL so the PostgreSQL backend can
-- mirror it: times are INTEGER milliseconds since the epoch, booleans are 0/1 integers, JSON
-- is TEXT, and upserts use ON CONFLICT ... DO UPDATE.

CREATE TABLE users (
    id                TEXT PRIMARY KEY NOT NULL,
    tenant_id         TEXT NOT NULL,
    name              TEXT NOT NULL,
    call_waiting      INTEGER NOT NULL DEFAULT 0,
    voicemail_enabled INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL
);
CREATE INDEX users_by_tenant ON users (tenant_id);

-- A number routes to exactly one user across all tenants: the PSTN has one owner per number.
CREATE TABLE user_numbers (
    number   TEXT PRIMARY KEY NOT NULL,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position INTEGER NOT NULL
);
CREATE INDEX user_numbers_by_user ON user_numbers (user_id, position);

CREATE TABLE devices (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform      TEXT NOT NULL,
    sip_uri       TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    push_token    TEXT,
    push_provider TEXT,
    revoked       INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id, created_at, id);

-- Hot call state. `effect_seq` is the last outbox sequence handed out for this session.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    doc           TEXT NOT NULL,
    state_label   TEXT NOT NULL,
    next_deadline INTEGER,
    effect_seq    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX sessions_by_deadline ON sessions (next_deadline, id) WHERE next_deadline IS NOT NULL;

-- `id` is the global commit order: effects are dispatched in the order they were committed.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    effect     TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (session_id, seq)
);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';

-- Inputs already applied: webhook `data.id`s and `device:{id}:{seq}` reports.
CREATE TABLE processed_inputs (
    dedupe_key   TEXT PRIMARY KEY NOT NULL,
    session_id   TEXT NOT NULL,
    processed_at INTEGER NOT NULL
);
CREATE INDEX processed_inputs_by_time ON processed_inputs (processed_at);

CREATE TABLE active_calls (
    user_id         TEXT NOT NULL,
    call_session_id TEXT NOT NULL,
    device_id       TEXT,
    started_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, call_session_id)
);

CREATE TABLE call_records (
    call_session_id  TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    direction        TEXT NOT NULL,
    from_number      TEXT NOT NULL,
    to_number        TEXT NOT NULL,
    status           TEXT NOT NULL,
    answered_device  TEXT,
    started_at       INTEGER NOT NULL,
    answered_at      INTEGER,
    ended_at         INTEGER,
    hangup_cause     TEXT,
    recording_url    TEXT,
    quality          TEXT,
    billable_seconds INTEGER NOT NULL DEFAULT 0,
    billing_minutes  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX call_records_by_user ON call_records (user_id, started_at DESC, call_session_id DESC);

CREATE TABLE call_legs (
    call_control_id TEXT PRIMARY KEY NOT NULL,
    call_session_id TEXT NOT NULL,
    device_id       TEXT,
    status          TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    answered_at     INTEGER,
    ended_at        INTEGER,
    hangup_cause    TEXT
);
CREATE INDEX call_legs_by_session ON call_legs (call_session_id, started_at, call_control_id);

-- Append-only: rows are never updated or deleted.
CREATE TABLE call_timeline (
    call_session_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    source          TEXT NOT NULL,
    device_id       TEXT,
    kind            TEXT NOT NULL,
    from_state      TEXT,
    to_state        TEXT,
    detail          TEXT NOT NULL,
    PRIMARY KEY (call_session_id, seq)
);
