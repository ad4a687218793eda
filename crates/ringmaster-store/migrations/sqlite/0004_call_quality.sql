-- Call quality analytics (issue 17): media samples and lifecycle events devices send, keyed by
-- call_session_id. Every item a device sends has a per-device sequence number; claiming it in
-- call_quality_seqs is what makes a resent batch a no-op. Figures are REAL; times are INTEGER
-- milliseconds like everywhere else.

CREATE TABLE call_quality_seqs (
    device_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    call_session_id TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX call_quality_seqs_by_time ON call_quality_seqs (received_at);

CREATE TABLE call_quality_samples (
    device_id              TEXT NOT NULL,
    seq                    INTEGER NOT NULL,
    part                   INTEGER NOT NULL,
    call_session_id        TEXT NOT NULL,
    user_id                TEXT NOT NULL,
    tenant_id              TEXT NOT NULL,
    at                     INTEGER NOT NULL,
    received_at            INTEGER NOT NULL,
    leg                    TEXT,
    direction              TEXT NOT NULL,
    codec                  TEXT NOT NULL,
    source                 TEXT NOT NULL,
    rtt_ms                 REAL NOT NULL,
    jitter_ms              REAL NOT NULL,
    loss_pct               REAL,
    burst_ratio            REAL NOT NULL,
    jitter_buffer_discards INTEGER,
    bytes                  INTEGER,
    reported_mos           REAL,
    mos                    REAL NOT NULL,
    platform               TEXT NOT NULL,
    app_version            TEXT,
    network_type           TEXT,
    PRIMARY KEY (device_id, seq, part)
);
CREATE INDEX call_quality_samples_by_call ON call_quality_samples (call_session_id, device_id, at);
CREATE INDEX call_quality_samples_by_time ON call_quality_samples (at);

CREATE TABLE call_analytics_events (
    device_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    call_session_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    at              INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    duration_ms     INTEGER,
    detail          TEXT NOT NULL,
    platform        TEXT NOT NULL,
    app_version     TEXT,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX call_analytics_events_by_call ON call_analytics_events (call_session_id, at);
CREATE INDEX call_analytics_events_by_time ON call_analytics_events (at);
