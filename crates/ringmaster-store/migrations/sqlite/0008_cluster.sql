-- Several nodes on one database (issue 15): leased outbox rows. A claimer writes its id and an
-- expiry; another claimer skips a row while its lease holds. Finishing, failing or deferring a
-- row clears its lease. (The wake-up trigger and the shared dial budget are PostgreSQL's: an
-- SQLite file has one process.)
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until INTEGER;
