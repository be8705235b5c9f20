-- What search has not indexed yet (issue 22): rows stored before 20261209000001_search.sql, or by a
-- worker running with FANLINE_SKIP_SEARCH_INDEX. fanout's reindexer (fanout/src/reindex.rs) walks
-- these partial indexes in key order (from where its last batch ended: the entries of rows it wrote
-- stay behind until vacuum) and writes each row's searchable form; once the backlog is done they are
-- empty and a fan-out's insert never enters them.
-- Recalled or removed messages and deleted posts are not searchable: they are not backlog.
-- Built inside the migration's transaction, so writes to these tables wait for one scan of each. On a
-- large database, create them first with CREATE INDEX CONCURRENTLY under the same names: IF NOT EXISTS
-- then leaves them as they are.
CREATE INDEX IF NOT EXISTS messages_search_backlog ON messages (message_id)
    WHERE search IS NULL AND recalled_at IS NULL;
CREATE INDEX IF NOT EXISTS posts_search_backlog ON posts (post_id) WHERE search IS NULL AND deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS users_search_backlog ON users (user_id) WHERE search IS NULL;
CREATE INDEX IF NOT EXISTS groups_search_backlog ON groups (group_id) WHERE search IS NULL;
