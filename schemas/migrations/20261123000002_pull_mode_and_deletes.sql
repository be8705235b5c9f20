-- Large audiences (pull mode) and deletes.

-- How each post was delivered, fixed when it was applied: 'push' posts were written into the sync
-- timelines of the author's followers; 'pull' posts live only in the store timeline and readers merge
-- them into feeds at read time. A delete leaves a tombstone (deleted_at, empty body) so that a late
-- redelivery of the create cannot bring the post back.
ALTER TABLE posts
    ADD COLUMN delivery_mode text NOT NULL DEFAULT 'push' CHECK (delivery_mode IN ('push', 'pull')),
    ADD COLUMN deleted_at timestamptz;

-- The feed's per-source top-N for pull-mode authors.
CREATE INDEX posts_pull_by_author ON posts (author, post_id)
    WHERE delivery_mode = 'pull' AND deleted_at IS NULL;

-- Per-author delivery state. follower_count counts active follows; mode flips to 'pull' above the pull
-- threshold and back to 'push' only below the (lower) push threshold, so an author near a threshold does
-- not flap. has_pull_posts marks the authors a feed must pull from.
CREATE TABLE authors (
    author          text        PRIMARY KEY,
    follower_count  bigint      NOT NULL DEFAULT 0,
    mode            text        NOT NULL DEFAULT 'push' CHECK (mode IN ('push', 'pull')),
    has_pull_posts  boolean     NOT NULL DEFAULT false,
    mode_changed_at timestamptz
);

INSERT INTO authors (author, follower_count)
SELECT followee, count(*) FROM follows WHERE active GROUP BY followee;
