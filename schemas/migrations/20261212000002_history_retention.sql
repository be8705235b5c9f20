-- Retention of store timelines (issue 23; docs/design.md "Store timeline retention").
--
-- `history_floor`: the highest seq removed from the conversation by retention (0: nothing). History
-- pages stop above it and say that older messages were removed; seqs above it are untouched.
ALTER TABLE conversations ADD COLUMN history_floor bigint NOT NULL DEFAULT 0;
-- The newest removed message's time: a replayed message this old is one retention removed.
ALTER TABLE conversations ADD COLUMN history_floor_at timestamptz;

-- A group owner's retention in days (NULL: the deployment's, FANLINE_HISTORY_RETENTION_DAYS).
ALTER TABLE groups ADD COLUMN retention_days integer CHECK (retention_days > 0);
CREATE INDEX groups_with_retention ON groups (group_id) WHERE retention_days IS NOT NULL;

-- Which conversations hold messages older than a cutoff: messages are appended in time order, so a
-- BRIN index answers by block ranges at almost no cost to inserts (a B-tree would add an index write
-- to every message for a question asked once a minute).
CREATE INDEX messages_created_brin ON messages USING brin (created_at);

-- Posts: every post of the author with an id below this one was removed by retention (NULL: none).
ALTER TABLE authors ADD COLUMN posts_removed_below text;
