-- Fanline core schema: store timelines (posts), the follow graph and per-user sync timelines.
-- Only the fanout service writes these tables; the reader only reads them.

-- Store timeline: every post, readable per author in post_id order (post ids sort by creation time).
CREATE TABLE posts (
    post_id     text        PRIMARY KEY,
    author      text        NOT NULL,
    body        text        NOT NULL,
    -- Client-chosen idempotency key; a retried request with the same (author, message_id) is one post.
    message_id  text,
    created_at  timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX posts_author_message_id ON posts (author, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX posts_author_post_id ON posts (author, post_id);

-- Ingest is stateless, so a retried post (same author and message_id) reaches Kafka again under a new
-- post id. The first one applied wins; later ids are kept here so that they still resolve to the post.
CREATE TABLE post_aliases (
    alias_post_id text PRIMARY KEY,
    post_id       text NOT NULL REFERENCES posts (post_id) ON DELETE CASCADE
);

-- Follow graph. An unfollow keeps the row (active = false) together with the Kafka position of the event
-- that set the state, so that replaying an older follow/unfollow cannot flip the edge back.
CREATE TABLE follows (
    followee      text        NOT NULL,
    follower      text        NOT NULL,
    active        boolean     NOT NULL,
    src_partition integer     NOT NULL,
    src_offset    bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (followee, follower)
);
CREATE INDEX follows_follower ON follows (follower, followee) WHERE active;

-- Sync timelines. seq comes from one sequence that is drawn only while holding a transaction-scoped
-- advisory lock, so seqs are assigned in commit order: a reader that has seen seq N of a user can never
-- later find a smaller seq of that user appear. CACHE 1 is deliberate: a per-session cache would hand out
-- values out of commit order.
CREATE SEQUENCE sync_seq AS bigint CACHE 1;

CREATE TABLE sync_entries (
    user_id text   NOT NULL,
    seq     bigint NOT NULL,
    post_id text   NOT NULL,
    author  text   NOT NULL,
    PRIMARY KEY (user_id, seq),
    UNIQUE (user_id, post_id)
);
