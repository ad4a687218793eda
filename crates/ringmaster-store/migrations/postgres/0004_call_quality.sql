-- Call quality analytics (issue 17): media samples and lifecycle events devices send, keyed by
-- call_session_id. Every item a device sends has a per-device sequence number; claiming it in
-- call_quality_seqs is what makes a resent batch a no-op. Mirrors migrations/sqlite: figures
-- are DOUBLE PRECISION, times BIGINT milliseconds, ordered ids COLLATE "C".

CREATE TABLE call_quality_seqs (
    device_id       TEXT COLLATE "C" NOT NULL,
    seq             BIGINT NOT NULL,
    call_session_id TEXT COLLATE "C" NOT NULL,
    received_at     BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX call_quality_seqs_by_time ON call_quality_seqs (received_at);

CREATE TABLE call_quality_samples (
    device_id              TEXT COLLATE "C" NOT NULL,
    seq                    BIGINT NOT NULL,
    part                   BIGINT NOT NULL,
    call_session_id        TEXT COLLATE "C" NOT NULL,
    user_id                TEXT NOT NULL,
    tenant_id              TEXT NOT NULL,
    at                     BIGINT NOT NULL,
    received_at            BIGINT NOT NULL,
    leg                    TEXT COLLATE "C",
    direction              TEXT NOT NULL,
    codec                  TEXT NOT NULL,
    source                 TEXT NOT NULL,
    rtt_ms                 DOUBLE PRECISION NOT NULL,
    jitter_ms              DOUBLE PRECISION NOT NULL,
    loss_pct               DOUBLE PRECISION,
    burst_ratio            DOUBLE PRECISION NOT NULL,
    jitter_buffer_discards BIGINT,
    bytes                  BIGINT,
    reported_mos           DOUBLE PRECISION,
    mos                    DOUBLE PRECISION NOT NULL,
    platform               TEXT NOT NULL,
    app_version            TEXT,
    network_type           TEXT,
    PRIMARY KEY (device_id, seq, part)
);
CREATE INDEX call_quality_samples_by_call ON call_quality_samples (call_session_id, device_id, at);
CREATE INDEX call_quality_samples_by_time ON call_quality_samples (at);

CREATE TABLE call_analytics_events (
    device_id       TEXT COLLATE "C" NOT NULL,
    seq             BIGINT NOT NULL,
    call_session_id TEXT COLLATE "C" NOT NULL,
    user_id         TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    at              BIGINT NOT NULL,
    received_at     BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    duration_ms     BIGINT,
    detail          TEXT NOT NULL,
    platform        TEXT NOT NULL,
    app_version     TEXT,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX call_analytics_events_by_call ON call_analytics_events (call_session_id, at);
CREATE INDEX call_analytics_events_by_time ON call_analytics_events (at);
