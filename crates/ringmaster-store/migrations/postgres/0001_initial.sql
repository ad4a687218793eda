-- Ringmaster store schema (PostgreSQL), mirroring migrations/sqlite: times are BIGINT
-- milliseconds since the epoch and JSON is TEXT (kept byte-for-byte as written). Identifiers
-- that take part in ORDER BY or cursor comparisons use COLLATE "C" so pages and tie-breaks
-- come out in the same byte order as SQLite's.

CREATE TABLE users (
    id                TEXT COLLATE "C" PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    name              TEXT NOT NULL,
    call_waiting      BOOLEAN NOT NULL DEFAULT FALSE,
    voicemail_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        BIGINT NOT NULL
);
CREATE INDEX users_by_tenant ON users (tenant_id);

-- A number routes to exactly one user across all tenants: the PSTN has one owner per number.
CREATE TABLE user_numbers (
    number   TEXT PRIMARY KEY,
    user_id  TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position BIGINT NOT NULL
);
CREATE INDEX user_numbers_by_user ON user_numbers (user_id, position);

CREATE TABLE devices (
    id            TEXT COLLATE "C" PRIMARY KEY,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform      TEXT NOT NULL,
    sip_uri       TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    push_token    TEXT,
    push_provider TEXT,
    revoked       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id, created_at, id);

-- Hot call state. `effect_seq` is the last outbox sequence handed out for this session.
CREATE TABLE sessions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    user_id       TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    doc           TEXT NOT NULL,
    state_label   TEXT NOT NULL,
    next_deadline BIGINT,
    effect_seq    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX sessions_by_deadline ON sessions (next_deadline, id) WHERE next_deadline IS NOT NULL;

-- `id` orders effects for dispatch. Ids are handed out while the session row is locked, so
-- within a session they follow `seq`.
CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    effect     TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    attempts   BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (session_id, seq)
);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';

-- Inputs already applied: webhook `data.id`s and `device:{id}:{seq}` reports.
CREATE TABLE processed_inputs (
    dedupe_key   TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
    processed_at BIGINT NOT NULL
);
CREATE INDEX processed_inputs_by_time ON processed_inputs (processed_at);

CREATE TABLE active_calls (
    user_id         TEXT COLLATE "C" NOT NULL,
    call_session_id TEXT COLLATE "C" NOT NULL,
    device_id       TEXT,
    started_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, call_session_id)
);

CREATE TABLE call_records (
    call_session_id  TEXT COLLATE "C" PRIMARY KEY,
    user_id          TEXT COLLATE "C" NOT NULL,
    tenant_id        TEXT NOT NULL,
    direction        TEXT NOT NULL,
    from_number      TEXT NOT NULL,
    to_number        TEXT NOT NULL,
    status           TEXT NOT NULL,
    answered_device  TEXT,
    started_at       BIGINT NOT NULL,
    answered_at      BIGINT,
    ended_at         BIGINT,
    hangup_cause     TEXT,
    recording_url    TEXT,
    quality          TEXT,
    billable_seconds BIGINT NOT NULL DEFAULT 0,
    billing_minutes  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX call_records_by_user ON call_records (user_id, started_at DESC, call_session_id DESC);

CREATE TABLE call_legs (
    call_control_id TEXT COLLATE "C" PRIMARY KEY,
    call_session_id TEXT COLLATE "C" NOT NULL,
    device_id       TEXT,
    status          TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    answered_at     BIGINT,
    ended_at        BIGINT,
    hangup_cause    TEXT
);
CREATE INDEX call_legs_by_session ON call_legs (call_session_id, started_at, call_control_id);

-- Append-only: rows are never updated or deleted. `seq` is one global sequence; within a call
-- it follows insertion order, which is all readers rely on.
CREATE TABLE call_timeline (
    call_session_id TEXT COLLATE "C" NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    at              BIGINT NOT NULL,
    source          TEXT NOT NULL,
    device_id       TEXT,
    kind            TEXT NOT NULL,
    from_state      TEXT,
    to_state        TEXT,
    detail          TEXT NOT NULL,
    PRIMARY KEY (call_session_id, seq)
);
