-- Issue 14: the active-call registry says which device a user is on, on what platform, in which
-- canonical state and since when; it is written when a device answers, inside the commit.
ALTER TABLE active_calls ADD COLUMN platform TEXT;
ALTER TABLE active_calls ADD COLUMN state TEXT NOT NULL DEFAULT 'ACTIVE';
ALTER TABLE active_calls ADD COLUMN since BIGINT NOT NULL DEFAULT 0;

-- Billable time runs from the bridge, not from a device's answer.
ALTER TABLE call_records ADD COLUMN bridged_at BIGINT;

-- One billing record per call, written once when the call's final history row is (the
-- primary key makes a second write a no-op). Units as spec §5.2's ledger.
CREATE TABLE billing_records (
    call_session_id  TEXT COLLATE "C" PRIMARY KEY,
    user_id          TEXT COLLATE "C" NOT NULL,
    tenant_id        TEXT NOT NULL,
    unit             TEXT NOT NULL,
    quantity         BIGINT NOT NULL,
    billable_seconds BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
