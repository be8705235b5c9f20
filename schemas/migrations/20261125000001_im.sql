-- IM on timelines: users, groups and their members, conversations (1:1 and group) with a gap-free
-- message seq, messages, and per-member read state (the contact list with exact unread counts).
-- Every row is written by fanout only, in the transaction of the event that changes it.

-- Profiles: the whole profile per event, last writer (by Kafka position) wins.
CREATE TABLE users (
    user_id       text        PRIMARY KEY,
    display_name  text        NOT NULL,
    age           smallint,
    gender        text,
    signature     text,
    src_partition integer     NOT NULL,
    src_offset    bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    group_id     text        PRIMARY KEY,
    name         text        NOT NULL,
    group_type   text,
    description  text,
    owner        text        NOT NULL,
    created_at   timestamptz NOT NULL,
    member_count bigint      NOT NULL DEFAULT 0
);

-- Membership, with the Kafka position of the event that last set it (a replayed older event cannot
-- undo a newer one; all of a group's events share its key and so a partition).
CREATE TABLE group_members (
    group_id      text        NOT NULL REFERENCES groups (group_id),
    user_id       text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    active        boolean     NOT NULL,
    src_partition integer     NOT NULL,
    src_offset    bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id)
);

-- One row per conversation: `last_seq` is the gap-free message counter (1, 2, 3 …), advanced only by
-- an applied message, in Kafka order (a conversation's events share a key).
CREATE TABLE conversations (
    conversation_id text        PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('direct', 'group')),
    last_seq        bigint      NOT NULL DEFAULT 0,
    last_at         timestamptz
);

-- Message contents, once per message (the index rows live in sync_entries, one per recipient). A recall
-- keeps the row as a tombstone (recalled_at set, body emptied).
CREATE TABLE messages (
    conversation_id text        NOT NULL,
    seq             bigint      NOT NULL,
    message_id      text        NOT NULL UNIQUE,
    sender          text        NOT NULL,
    body            text        NOT NULL,
    client_msg_id   text,
    created_at      timestamptz NOT NULL,
    recalled_at     timestamptz,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_client_msg_id ON messages (conversation_id, sender, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

-- Ingest is stateless: a retried send (same client_msg_id) reaches Kafka under a new message id. The
-- first applied wins; the later ids resolve to it here.
CREATE TABLE message_aliases (
    alias_message_id text PRIMARY KEY,
    message_id       text NOT NULL
);

-- Messages fanout refused (a sender who is not a member, a group that does not exist): never delivered;
-- the sender's devices get a `refused` entry in their sync timeline.
CREATE TABLE refused_messages (
    message_id      text        PRIMARY KEY,
    conversation_id text        NOT NULL,
    sender          text        NOT NULL,
    reason          text        NOT NULL,
    refused_at      timestamptz NOT NULL DEFAULT now()
);

-- The contact list: one row per conversation a user takes part in. Messages with seq in
-- (from_seq, delivered_seq] were delivered to them; `unread` counts those after read_seq that are
-- neither theirs nor recalled, and is kept exact in the transaction of every message, read marker,
-- recall and membership change. A user who left keeps the row (active = false, unread 0).
CREATE TABLE conversation_members (
    user_id         text        NOT NULL,
    conversation_id text        NOT NULL,
    from_seq        bigint      NOT NULL DEFAULT 0,
    delivered_seq   bigint      NOT NULL DEFAULT 0,
    read_seq        bigint      NOT NULL DEFAULT 0,
    unread          bigint      NOT NULL DEFAULT 0 CHECK (unread >= 0),
    active          boolean     NOT NULL DEFAULT true,
    last_activity   timestamptz NOT NULL,
    -- The Kafka position of the last read marker applied: a replayed older marker is stale. (Clamping
    -- alone is not enough: an old marker that was clamped to what was delivered then would, replayed,
    -- be clamped to what was delivered since and mark newer messages read.)
    read_src_partition integer  NOT NULL DEFAULT -1,
    read_src_offset    bigint   NOT NULL DEFAULT -1,
    PRIMARY KEY (user_id, conversation_id)
);
-- The contact list, most recent first, and the total over it.
CREATE INDEX conversation_members_recent
    ON conversation_members (user_id, last_activity DESC, conversation_id DESC);
CREATE INDEX conversation_members_by_conversation
    ON conversation_members (conversation_id, user_id) WHERE active;

-- Sync timelines carry messages too: one inbox per user for posts, messages, recalls and refusals.
-- kind 'post': post_id set (as before); 'message', 'recall', 'refused': message_id and conversation set
-- (conv_seq for messages and recalls).
ALTER TABLE sync_entries
    ALTER COLUMN post_id DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'post'
        CHECK (kind IN ('post', 'message', 'recall', 'refused')),
    ADD COLUMN conversation_id text,
    ADD COLUMN conv_seq bigint,
    ADD COLUMN message_id text;
-- One message (or recall, refusal) entry per user: a redelivered event adds nothing.
CREATE UNIQUE INDEX sync_entries_message ON sync_entries (user_id, message_id, kind)
    WHERE message_id IS NOT NULL;
