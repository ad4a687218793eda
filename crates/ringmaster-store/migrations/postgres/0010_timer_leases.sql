-- Leased session timers (issue 15): a node claims due sessions by writing its id and an
-- expiry, and another node skips a session while its lease holds, so a timer is ticked by one
-- node at a time and a dead node's timers come back when their lease runs out. A commit of the
-- session clears `timer_lease_until`, so its next deadline is claimable at once.
ALTER TABLE sessions ADD COLUMN timer_lease_owner TEXT;
ALTER TABLE sessions ADD COLUMN timer_lease_until BIGINT;
