-- Follow backfill reads a followee's most recent *pushed* posts. Without this index it would walk the
-- author's whole store timeline past pull-mode posts, which is exactly the history of large authors.
CREATE INDEX posts_push_by_author ON posts (author, post_id)
    WHERE delivery_mode = 'push' AND deleted_at IS NULL;
