-- Search (docs/search-research.md): the searchable form of each message and post, built by fanout
-- (`schemas::search::document`: folded words, Chinese as overlapping two-character pieces), NULL once
-- the message is recalled or removed, or the post deleted. Rows stored before this migration have
-- none until a rebuild (`fanout replay` into an empty database) writes them.
CREATE EXTENSION IF NOT EXISTS btree_gin;
ALTER TABLE messages ADD COLUMN search tsvector;
-- A user's search runs per conversation they are in: the conversation narrows the index scan.
CREATE INDEX messages_search ON messages USING gin (conversation_id, search);
ALTER TABLE posts ADD COLUMN search tsvector;
CREATE INDEX posts_search ON posts USING gin (author, search);
