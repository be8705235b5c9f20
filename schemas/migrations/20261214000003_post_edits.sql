-- Issue 24: posts edited by their authors (schemas::revisions::PostEdited). Feeds and timelines read
-- the current text; the version counts edits as a message's does.
ALTER TABLE posts
    ADD COLUMN version   integer     NOT NULL DEFAULT 1,
    ADD COLUMN edited_at timestamptz;
