-- The refresh token a session had before its last refresh. Presented again, it means two parties hold
-- the session's tokens (one of them stole it): the session is revoked.
ALTER TABLE sessions ADD COLUMN previous_hash bytea;
