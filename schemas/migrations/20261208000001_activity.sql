-- 1 + M delivery (docs/design.md "1 + M"): fan-out writes the inboxes of active users only.
--
-- One row per user whose activity is known (an account's registration, or a reader's `user_active`).
-- A user without a row is active: ids from before activity was tracked keep their delivery.
CREATE TABLE user_activity (
    user_id        text        PRIMARY KEY,
    last_active_at timestamptz NOT NULL,
    active         boolean     NOT NULL DEFAULT true,
    -- The home feed reads posts with ids below this one from the followed authors' store timelines
    -- instead of the inbox: set on a return to the start of its backfill window, below which posts
    -- missed while dormant were not copied.
    feed_pull_below text
);
-- The sweeper's question: who has been silent for the active window.
CREATE INDEX user_activity_stale ON user_activity (last_active_at) WHERE active;

-- Whether the follower is active, on every follow edge, so that a fan-out finds the active audience
-- through one index range (changed on the rare flips between active and dormant, not on activity).
ALTER TABLE follows ADD COLUMN follower_active boolean NOT NULL DEFAULT true;
CREATE INDEX follows_active_audience ON follows (followee, follower) WHERE active AND follower_active;

-- The same for group members: a dormant member's inbox gets no group messages; `dormant_seq` is the
-- group's seq when they went dormant, where their return's backfill starts.
ALTER TABLE conversation_members
    ADD COLUMN dormant boolean NOT NULL DEFAULT false,
    ADD COLUMN dormant_seq bigint;
CREATE INDEX conversation_members_awake ON conversation_members (conversation_id, user_id)
    WHERE active AND NOT dormant;
