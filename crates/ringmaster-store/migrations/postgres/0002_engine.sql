-- Engine v2 (issue 11): outbox lanes with their own due times, per-target notification order,
-- quarantined (poison) sessions, and what retention needs to find closed sessions.

ALTER TABLE outbox ADD COLUMN lane TEXT NOT NULL DEFAULT 'other';
ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN order_key TEXT COLLATE "C";

-- Effects written before lanes existed: sort them by what they are.
UPDATE outbox SET lane = CASE
    WHEN effect::jsonb ->> 'type' = 'telnyx'
         AND effect::jsonb -> 'action' ->> 'kind' IN ('hangup', 'reject') THEN 'release'
    WHEN effect::jsonb ->> 'type' = 'telnyx'
         AND effect::jsonb -> 'action' ->> 'kind' IN ('dial', 'answer', 'bridge') THEN 'setup'
    WHEN effect::jsonb ->> 'type' = 'notify'
         AND effect::jsonb -> 'channel' ->> 'kind' = 'web_socket' THEN 'realtime'
    WHEN effect::jsonb ->> 'type' = 'notify'
         AND effect::jsonb -> 'channel' ->> 'kind' = 'push' THEN 'push'
    ELSE 'other' END
WHERE status = 'pending';

DROP INDEX outbox_pending;
CREATE INDEX outbox_due ON outbox (lane, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_order ON outbox (session_id, order_key, seq)
    WHERE status = 'pending' AND order_key IS NOT NULL;
CREATE INDEX outbox_finished ON outbox (created_at) WHERE status <> 'pending';

ALTER TABLE sessions ADD COLUMN closed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN quarantined_at BIGINT;
ALTER TABLE sessions ADD COLUMN quarantine_reason TEXT;
CREATE INDEX sessions_closed ON sessions (updated_at) WHERE closed;
