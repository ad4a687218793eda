-- Issue 14: the active-call registry says which device a user is on, on what platform, in which
-- canonical state and since when; it is written when a device answers, inside the commit.
ALTER TABLE active_calls ADD COLUMN platform TEXT;
ALTER TABLE active_calls ADD COLUMN state TEXT NOT NULL DEFAULT 'ACTIVE';
ALTER TABLE active_calls ADD COLUMN since BIGINT NOT NULL DEFAULT 0;
