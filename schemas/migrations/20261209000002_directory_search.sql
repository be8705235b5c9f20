-- People and group search (issue 22): the searchable form of display names and of group names and
-- descriptions (`schemas::search::document`, written by fanout with the profile or the group), and
-- trigram indexes for substrings of ids and names (three characters or more).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TABLE users ADD COLUMN search tsvector;
CREATE INDEX users_search ON users USING gin (search);
CREATE INDEX users_display_name_trgm ON users USING gin (lower(display_name) gin_trgm_ops);
CREATE INDEX accounts_user_id_trgm ON accounts USING gin (user_id gin_trgm_ops);
ALTER TABLE groups ADD COLUMN search tsvector;
CREATE INDEX groups_search ON groups USING gin (search);
CREATE INDEX groups_name_trgm ON groups USING gin (lower(name) gin_trgm_ops);
