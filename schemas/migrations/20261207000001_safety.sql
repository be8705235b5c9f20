-- Issue 20: private groups, blocks and mutes. Every column here is written by fanout only, in the
-- transaction of the event that changes it (keys and ordering: schemas/src/safety.rs).

-- Group policies. Groups from before join rules were open and showed members their whole history;
-- they stay open, with the (safer) `joined` visibility. A dissolved group keeps its row, so its id is
-- never given out again.
ALTER TABLE groups
    ADD COLUMN join_rule text NOT NULL DEFAULT 'open'
        CHECK (join_rule IN ('open', 'invite', 'approval')),
    ADD COLUMN history text NOT NULL DEFAULT 'joined' CHECK (history IN ('joined', 'shared')),
    ADD COLUMN dissolved_at timestamptz;

-- A member silenced by an owner or admin: their messages written before this time are refused.
ALTER TABLE group_members ADD COLUMN muted_until timestamptz;

-- Invitations (by an owner or admin, waiting for the user) and join requests (by the user, waiting for
-- an owner or admin): at most one per group and user; accepting either makes a member and removes it.
CREATE TABLE group_pending (
    group_id   text        NOT NULL REFERENCES groups (group_id),
    user_id    text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('invitation', 'request')),
    by_user    text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_pending_by_user ON group_pending (user_id, created_at DESC, group_id);

-- Blocks between users: direct messages between the two are refused while one stands.
CREATE TABLE blocks (
    blocker    text        NOT NULL,
    target     text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (blocker, target)
);

-- A block's effect on a follow edge, set by the edge's own events (keyed by the followee): while either
-- flag is set the edge is inactive and a follow of it is refused.
ALTER TABLE follows
    ADD COLUMN blocked_by_follower boolean NOT NULL DEFAULT false,
    ADD COLUMN blocked_by_followee boolean NOT NULL DEFAULT false;

-- A muted conversation keeps its own unread count but leaves the user's total.
ALTER TABLE conversation_members ADD COLUMN muted boolean NOT NULL DEFAULT false;
DROP VIEW conversation_state;
CREATE VIEW conversation_state AS
SELECT cm.user_id,
       cm.conversation_id,
       cm.from_seq,
       cm.read_seq,
       cm.active,
       cm.derived,
       CASE WHEN cm.derived AND cm.active THEN c.last_seq ELSE cm.delivered_seq END AS delivered_seq,
       CASE WHEN cm.derived AND cm.active THEN
           greatest(0, c.last_seq - greatest(cm.read_seq, cm.from_seq))
           - (SELECT count(*) FROM messages m
              WHERE m.conversation_id = cm.conversation_id AND m.recalled_at IS NOT NULL
                AND m.seq > greatest(cm.read_seq, cm.from_seq) AND m.seq <= c.last_seq)
       ELSE cm.unread END AS unread,
       CASE WHEN cm.derived AND cm.active
           THEN greatest(cm.last_activity, coalesce(c.last_at, cm.last_activity))
       ELSE cm.last_activity END AS activity,
       cm.muted
FROM conversation_members cm
JOIN conversations c ON c.conversation_id = cm.conversation_id;

-- Moderation. Reports: a filing and its resolution merge into one row in either order (they are keyed
-- by different users, so neither waits for the other).
CREATE TABLE reports (
    report_id   text        PRIMARY KEY,
    reporter    text,
    kind        text        CHECK (kind IN ('message', 'post', 'user', 'group')),
    subject     text,
    context     text,
    reason      text,
    created_at  timestamptz,
    resolved_by text,
    resolution  text,
    resolved_at timestamptz
);
-- The queue: open reports, oldest first.
CREATE INDEX reports_open ON reports (created_at, report_id) WHERE resolved_at IS NULL;

-- Accounts an operator disabled: they cannot log in, their sessions end and their access tokens are
-- refused (each service polls this small table; docs/limits.md has the bound).
CREATE TABLE disabled_accounts (
    user_id     text        PRIMARY KEY,
    disabled_by text        NOT NULL,
    reason      text,
    disabled_at timestamptz NOT NULL
);

-- An invitation reaches the invitee's devices as a sync entry (kind 'invitation', the group's
-- conversation, author = who invited), like a message.
-- NOT VALID, then VALIDATE: the check of the existing rows runs without blocking writes.
ALTER TABLE sync_entries DROP CONSTRAINT sync_entries_kind_check;
ALTER TABLE sync_entries ADD CONSTRAINT sync_entries_kind_check
    CHECK (kind IN ('post', 'message', 'recall', 'refused', 'invitation')) NOT VALID;
ALTER TABLE sync_entries VALIDATE CONSTRAINT sync_entries_kind_check;
