-- A delete that arrives before its post used to leave a tombstone *row in posts*, keyed by the post id
-- alone: whoever deleted an id first blocked the post of that id, whoever its author was (issue 19: an
-- attacker guessing the next ids suppressed other authors' posts). Tombstones now name the author who
-- deleted, and only that author's post of that id is suppressed (it is stored deleted when it arrives).
CREATE TABLE post_tombstones (
    post_id    text        NOT NULL,
    author     text        NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, author)
);

-- Move the old tombstones out of posts. A tombstone row is a deleted post that was never created: no
-- idempotency key and not even its author's own sync entry (every created post has one). Rows of
-- posts that were really created and then deleted stay where they are.
CREATE TEMPORARY TABLE old_tombstones ON COMMIT DROP AS
SELECT p.post_id, p.author, p.deleted_at
FROM posts p
WHERE p.deleted_at IS NOT NULL
  AND p.message_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM sync_entries s WHERE s.post_id = p.post_id)
  AND NOT EXISTS (SELECT 1 FROM post_aliases a WHERE a.post_id = p.post_id);

INSERT INTO post_tombstones (post_id, author, deleted_at)
SELECT post_id, author, deleted_at FROM old_tombstones
ON CONFLICT DO NOTHING;

DELETE FROM posts p USING old_tombstones t WHERE p.post_id = t.post_id;
