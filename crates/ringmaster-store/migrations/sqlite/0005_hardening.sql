-- A push token belongs to one device: registering it clears it from any other device, which
-- looks devices up by token.
CREATE INDEX devices_by_push_token ON devices (push_token) WHERE push_token IS NOT NULL;
-- The cap on a user's unfinished calls counts them by status.
CREATE INDEX call_records_by_user_status ON call_records (user_id, status);
