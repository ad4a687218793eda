-- Several nodes on one database (issue 15): leased outbox rows, cross-node wake-ups and one
-- dial budget per Telnyx connection.

-- A node claims due rows by writing its id and an expiry; another node skips a row while its
-- lease holds, so a row is dispatched by one node at a time, and a dead node's rows come back
-- when their lease runs out. Finishing, failing or deferring a row clears its lease. The
-- claim reads through `outbox_due` and filters leases there: few pending rows are leased.
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until BIGINT;

-- New outbox rows wake every node's dispatcher (LISTEN ringmaster_outbox). The notification
-- is sent when the inserting transaction commits, and one per statement is enough: a woken
-- dispatcher reads every due row. Channels are per database, so the payload names the schema
-- and a listener ignores other schemas' rows.
CREATE FUNCTION ringmaster_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ringmaster_outbox', current_schema());
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ringmaster_outbox_notify();

-- The dial budget shared by every node: per Telnyx connection, the last `max_dials` slots
-- granted (a ring buffer, `head` is the oldest), so a new slot is at least one window after
-- the slot `max_dials` before it, as the in-process schedule does.
CREATE TABLE dial_budget (
    account    TEXT COLLATE "C" PRIMARY KEY,
    max_dials  BIGINT NOT NULL,
    window_ms  BIGINT NOT NULL,
    head       BIGINT NOT NULL,
    last_grant BIGINT NOT NULL,
    grants     BIGINT[] NOT NULL
);
