-- Issue 19, finding 6: a refresh token carries its generation (SESSION.GENERATION.SECRET, the secret an
-- HMAC of both under the stack's key), so the reuse of any older one — not only the one just before
-- the current — is recognised and revokes the session. Sessions from before keep their two-part
-- tokens until their next refresh (generation 0).
ALTER TABLE sessions ADD COLUMN generation bigint NOT NULL DEFAULT 0;

-- Issue 19, finding 3: the address a session logged in from. When an account's failed-login budget is
-- spent, only addresses with a live session of the account may still try (a known device).
ALTER TABLE sessions ADD COLUMN login_address inet;
