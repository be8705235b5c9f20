-- Issue 24: content types, attachments, replies, forwarding and mentions (schemas::content).

ALTER TABLE messages
    ADD COLUMN content_type text    NOT NULL DEFAULT 'text',
    ADD COLUMN attachments  jsonb,
    ADD COLUMN payload      jsonb,
    ADD COLUMN reply_to     bigint,
    ADD COLUMN forwarded    boolean NOT NULL DEFAULT false;

ALTER TABLE posts
    ADD COLUMN content_type text NOT NULL DEFAULT 'text',
    ADD COLUMN attachments  jsonb,
    ADD COLUMN payload      jsonb;

-- Which live messages and posts hold an attachment: who may download it (reader), and what keeps it
-- from the orphan sweep (fanout's attachment sweeper). A row exists exactly while its message or post
-- is live: removed with it (retention: ON DELETE CASCADE) or when it is recalled, removed by a
-- moderator, erased or deleted (the triggers below), whatever code path did it.
CREATE TABLE message_attachments (
    conversation_id text   NOT NULL,
    seq             bigint NOT NULL,
    attachment_id   text   NOT NULL,
    PRIMARY KEY (conversation_id, seq, attachment_id),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages ON DELETE CASCADE
);
CREATE INDEX message_attachments_by_id ON message_attachments (attachment_id);

CREATE TABLE post_attachments (
    post_id       text NOT NULL REFERENCES posts ON DELETE CASCADE,
    attachment_id text NOT NULL,
    PRIMARY KEY (post_id, attachment_id)
);
CREATE INDEX post_attachments_by_id ON post_attachments (attachment_id);

-- Attachments that lost a reference: the sweeper deletes the object if nothing references it any
-- more (a forwarded copy may still), then the row.
CREATE TABLE attachment_garbage (
    attachment_id text        PRIMARY KEY,
    since         timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION fanline_attachment_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO attachment_garbage (attachment_id) VALUES (OLD.attachment_id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER message_attachment_released AFTER DELETE ON message_attachments
    FOR EACH ROW EXECUTE FUNCTION fanline_attachment_released();
CREATE TRIGGER post_attachment_released AFTER DELETE ON post_attachments
    FOR EACH ROW EXECUTE FUNCTION fanline_attachment_released();

-- Mentions of users in messages (`user_id` '*' = @all): a member's unread mentions are the rows above
-- their read seq, counted where the contact list is read — derived, so never drifting, reset by the
-- read marker itself, and independent of mute.
CREATE TABLE message_mentions (
    conversation_id text   NOT NULL,
    user_id         text   NOT NULL,
    seq             bigint NOT NULL,
    sender          text   NOT NULL,
    PRIMARY KEY (conversation_id, user_id, seq),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages ON DELETE CASCADE
);
CREATE INDEX message_mentions_by_message ON message_mentions (conversation_id, seq);

-- A message whose content ends (recalled, removed, erased) loses its attachments, payload and mentions.
CREATE FUNCTION fanline_message_content_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.attachments := NULL;
    NEW.payload := NULL;
    DELETE FROM message_attachments WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    DELETE FROM message_mentions WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    RETURN NEW;
END $$;
CREATE TRIGGER message_content_ended BEFORE UPDATE OF recalled_at, erased_at ON messages
    FOR EACH ROW
    WHEN ((OLD.recalled_at IS NULL AND NEW.recalled_at IS NOT NULL)
          OR (OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL))
    EXECUTE FUNCTION fanline_message_content_ended();

CREATE FUNCTION fanline_post_content_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.attachments := NULL;
    NEW.payload := NULL;
    DELETE FROM post_attachments WHERE post_id = NEW.post_id;
    RETURN NEW;
END $$;
CREATE TRIGGER post_content_ended BEFORE UPDATE OF deleted_at ON posts
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
    EXECUTE FUNCTION fanline_post_content_ended();

-- The attachment sweeper's place in the store's key space (ids are ULIDs: time-ordered), so that each
-- round lists only objects uploaded since the last.
CREATE TABLE attachment_sweep (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    swept_through text    NOT NULL
);
