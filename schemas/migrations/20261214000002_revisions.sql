-- Issue 24: edits and reactions (schemas::revisions).

-- A message's current version (1 as sent) and when its sender last edited it. `change_position`: a
-- pull-mode group's members learn of an edit or a reaction from the conversation advancing, with the
-- seqs changed since their cursor (as `recall_position` does for recalls).
ALTER TABLE messages
    ADD COLUMN version         integer     NOT NULL DEFAULT 1,
    ADD COLUMN edited_at       timestamptz,
    ADD COLUMN change_position bigint;
CREATE INDEX messages_change_position ON messages (conversation_id, change_position)
    WHERE change_position IS NOT NULL;

-- One row per (message, key, user): counts are derived from the rows, never kept as counters.
CREATE TABLE message_reactions (
    conversation_id text        NOT NULL,
    seq             bigint      NOT NULL,
    key             text        NOT NULL,
    user_id         text        NOT NULL,
    reacted_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, seq, key, user_id),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages ON DELETE CASCADE
);
-- An erased user's reactions, found by user (crate::erasure).
CREATE INDEX message_reactions_by_user ON message_reactions (user_id);

-- A message whose content ends (recalled, removed, erased) loses its reactions too.
CREATE OR REPLACE FUNCTION fanline_message_content_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.attachments := NULL;
    NEW.payload := NULL;
    DELETE FROM message_attachments WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    DELETE FROM message_mentions WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    DELETE FROM message_reactions WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    RETURN NEW;
END $$;

-- Devices hear of edits and reactions through their sync timelines.
ALTER TABLE sync_entries DROP CONSTRAINT sync_entries_kind_check;
ALTER TABLE sync_entries ADD CONSTRAINT sync_entries_kind_check
    CHECK (kind IN ('post', 'message', 'recall', 'refused', 'invitation', 'edit', 'reaction')) NOT VALID;
ALTER TABLE sync_entries VALIDATE CONSTRAINT sync_entries_kind_check;
