-- Engine v2 (issue 11): outbox lanes with their own due times, per-target notification order,
-- quarantined (poison) sessions, and what retention needs to find closed sessions.

ALTER TABLE outbox ADD COLUMN lane TEXT NOT NULL DEFAULT 'other';
ALTER TABLE outbox ADD COLUMN next_attempt_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN order_key TEXT;

-- Effects written before lanes existed: sort them by what they are.
UPDATE outbox SET lane = CASE
    WHEN json_extract(effect, '$.type') = 'telnyx'
         AND json_extract(effect, '$.action.kind') IN ('hangup', 'reject') THEN 'release'
    WHEN json_extract(effect, '$.type') = 'telnyx'
         AND json_extract(effect, '$.action.kind') IN ('dial', 'answer', 'bridge') THEN 'setup'
    WHEN json_extract(effect, '$.type') = 'notify'
         AND json_extract(effect, '$.channel.kind') = 'web_socket' THEN 'realtime'
    WHEN json_extract(effect, '$.type') = 'notify'
         AND json_extract(effect, '$.channel.kind') = 'push' THEN 'push'
    ELSE 'other' END
WHERE status = 'pending' AND json_valid(effect);

DROP INDEX outbox_pending;
CREATE INDEX outbox_due ON outbox (lane, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_order ON outbox (session_id, order_key, seq)
    WHERE status = 'pending' AND order_key IS NOT NULL;
CREATE INDEX outbox_finished ON outbox (created_at) WHERE status <> 'pending';

ALTER TABLE sessions ADD COLUMN closed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN quarantined_at INTEGER;
ALTER TABLE sessions ADD COLUMN quarantine_reason TEXT;
CREATE INDEX sessions_closed ON sessions (updated_at) WHERE closed;
