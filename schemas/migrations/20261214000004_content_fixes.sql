-- Review of issue 24's content (docs/design.md "Rich messages").

-- An attachment released again while the sweep handles its earlier release keeps a row: the sweep
-- deletes only the rows it read (same `since`), so the later release is swept next round.
CREATE OR REPLACE FUNCTION fanline_attachment_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO attachment_garbage (attachment_id) VALUES (OLD.attachment_id)
    ON CONFLICT (attachment_id) DO UPDATE SET since = clock_timestamp();
    RETURN NULL;
END $$;

-- A message whose content ends loses all of it: its type too (a recalled picture previews as nothing,
-- not "[image]"), and an erased one its edit history (the deletion and an edit apply on different
-- keys: in either order the tombstone reads the same).
CREATE OR REPLACE FUNCTION fanline_message_content_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.attachments := NULL;
    NEW.payload := NULL;
    NEW.content_type := 'text';
    IF NEW.erased_at IS NOT NULL THEN
        NEW.version := 1;
        NEW.edited_at := NULL;
    END IF;
    DELETE FROM message_attachments WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    DELETE FROM message_mentions WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    DELETE FROM message_reactions WHERE conversation_id = NEW.conversation_id AND seq = NEW.seq;
    RETURN NEW;
END $$;
